//! The `.attnb` kernel bundle: one file holding a compiled kernel's manifest and code.
//!
//! `attnc build --target … -o NAME.attnb` writes it; a runtime reads it with [`Bundle::read`]
//! and gets a validated [`KernelManifest`] and the code sections its launches name. Nothing in
//! a damaged file can crash the reader: every length is checked before it is used, the body is
//! checksummed, and the manifest is validated before it is handed out.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic      8 bytes   "ATTNB\0\r\n" (the \r\n catches text-mode copies)
//! version    u32       FORMAT_VERSION
//! sections   u32       number of sections, at most MAX_SECTIONS
//! checksum   u64       FNV-1a 64 of every byte after this field
//! table      per section: name length u32, name (UTF-8), data length u64
//! data       the sections' bytes, in table order
//! ```
//!
//! Section `manifest.json` holds the manifest; the others hold code (`kernel.ptx`,
//! `kernel.spv`), named by each launch's `code` field.

use attnc_kernel_abi::{KernelManifest, TargetId};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"ATTNB\0\r\n";
/// The version of the file layout above (the manifest carries its own ABI version).
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_SECTION: &str = "manifest.json";
const MAX_SECTIONS: u32 = 64;
const MAX_NAME: u32 = 256;
const HEADER: usize = 8 + 4 + 4 + 8;

/// A compiled kernel: its manifest and its code sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub manifest: KernelManifest,
    /// Code sections by name, in file order.
    pub sections: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not an attnc kernel bundle (the file does not start with the .attnb magic bytes)")]
    NotABundle,
    #[error(
        "the bundle is truncated: {what} needs {needed} bytes at offset {at}, the file has {len}"
    )]
    Truncated {
        what: String,
        at: usize,
        needed: usize,
        len: usize,
    },
    #[error(
        "bundle format version {found}; this runtime reads version {FORMAT_VERSION} (rebuild the bundle with a matching attnc)"
    )]
    Version { found: u32 },
    #[error("the bundle is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "the bundle is corrupt: its checksum is {found:016x}, its contents give {computed:016x}"
    )]
    Checksum { found: u64, computed: u64 },
    #[error("the bundle's manifest is invalid: {0}")]
    Manifest(String),
    #[error("the bundle was built for {found}, not for {wanted}")]
    WrongTarget { found: TargetId, wanted: String },
}

/// FNV-1a, 64 bits: enough to tell a damaged file from a good one (not a signature).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Bundle {
    /// The bytes of a code section.
    pub fn section(&self, name: &str) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.as_slice())
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BundleError> {
        let manifest = serde_json::to_vec_pretty(&self.manifest)
            .map_err(|e| BundleError::Manifest(e.to_string()))?;
        let mut all: Vec<(&str, &[u8])> = vec![(MANIFEST_SECTION, manifest.as_slice())];
        all.extend(
            self.sections
                .iter()
                .map(|(n, d)| (n.as_str(), d.as_slice())),
        );
        let mut body = Vec::new();
        for (name, data) in &all {
            body.extend_from_slice(&(name.len() as u32).to_le_bytes());
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(&(data.len() as u64).to_le_bytes());
        }
        for (_, data) in &all {
            body.extend_from_slice(data);
        }
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(all.len() as u32).to_le_bytes());
        out.extend_from_slice(&fnv1a64(&body).to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Writes the file atomically (a temporary file renamed into place).
    pub fn write(&self, path: &Path) -> Result<(), BundleError> {
        let io = |source| BundleError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes = self.to_bytes()?;
        let tmp = path.with_extension("attnb.tmp");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    pub fn read(path: &Path) -> Result<Bundle, BundleError> {
        let bytes = std::fs::read(path).map_err(|source| BundleError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Bundle::from_bytes(&bytes)
    }

    /// Reads a bundle and checks that its code is for `wanted` (`target.to_string()` must
    /// equal it, or `accept` must hold for the target).
    pub fn read_for(
        path: &Path,
        wanted: &str,
        accept: impl Fn(&TargetId) -> bool,
    ) -> Result<Bundle, BundleError> {
        let b = Bundle::read(path)?;
        if !accept(&b.manifest.target) {
            return Err(BundleError::WrongTarget {
                found: b.manifest.target,
                wanted: wanted.to_string(),
            });
        }
        Ok(b)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let mut r = Reader { bytes, at: 0 };
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(BundleError::NotABundle);
        }
        r.at = MAGIC.len();
        let version = r.u32("the format version")?;
        if version != FORMAT_VERSION {
            return Err(BundleError::Version { found: version });
        }
        let count = r.u32("the section count")?;
        if count == 0 || count > MAX_SECTIONS {
            return Err(BundleError::Corrupt(format!(
                "it claims {count} sections (1 to {MAX_SECTIONS} are possible)"
            )));
        }
        let found = r.u64("the checksum")?;
        let computed = fnv1a64(&bytes[r.at..]);
        let mut table = Vec::new();
        for k in 0..count {
            let len = r.u32(&format!("the name length of section {k}"))?;
            if len > MAX_NAME {
                return Err(BundleError::Corrupt(format!(
                    "section {k} has a name of {len} bytes"
                )));
            }
            let name = r.take(len as usize, &format!("the name of section {k}"))?;
            let name = std::str::from_utf8(name)
                .map_err(|_| BundleError::Corrupt(format!("the name of section {k} is not UTF-8")))?
                .to_string();
            let size = r.u64(&format!("the length of section `{name}`"))?;
            table.push((name, size));
        }
        let mut sections = Vec::new();
        for (name, size) in table {
            let size = usize::try_from(size).map_err(|_| {
                BundleError::Corrupt(format!("section `{name}` claims {size} bytes"))
            })?;
            let data = r.take(size, &format!("section `{name}`"))?.to_vec();
            sections.push((name, data));
        }
        if r.at != bytes.len() {
            return Err(BundleError::Corrupt(format!(
                "{} bytes follow the last section",
                bytes.len() - r.at
            )));
        }
        if found != computed {
            return Err(BundleError::Checksum { found, computed });
        }
        let position = sections
            .iter()
            .position(|(n, _)| n == MANIFEST_SECTION)
            .ok_or_else(|| BundleError::Corrupt("it has no manifest section".into()))?;
        let (_, manifest) = sections.remove(position);
        let manifest: KernelManifest =
            serde_json::from_slice(&manifest).map_err(|e| BundleError::Manifest(e.to_string()))?;
        manifest.validate().map_err(BundleError::Manifest)?;
        for l in &manifest.launches {
            if !sections.iter().any(|(n, _)| *n == l.code) {
                return Err(BundleError::Manifest(format!(
                    "launch `{}` names code section `{}`, which the bundle lacks",
                    l.signature.name, l.code
                )));
            }
        }
        Ok(Bundle { manifest, sections })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], BundleError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(BundleError::Truncated {
                what: what.to_string(),
                at: self.at,
                needed: n,
                len: self.bytes.len(),
            });
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32, BundleError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, BundleError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}
