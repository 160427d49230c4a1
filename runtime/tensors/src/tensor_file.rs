//! The crate's entry points: read or write a tensor file, the format chosen by its extension.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::atomic_write::write_atomically;
use crate::error::io_error;
use crate::{HostTensor, TensorFileError, npy, npz, safetensors_file};

/// The file formats this crate reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorFormat {
    /// One array (`np.save`); its tensor is named after the file stem.
    Npy,
    /// Several arrays (`np.savez`, `np.savez_compressed`).
    Npz,
    Safetensors,
}

impl TensorFormat {
    /// Picks the format from the extension (ASCII case-insensitive), so a caller can reject an
    /// output path before spending a kernel run on it.
    pub fn from_path(path: &Path) -> Result<Self, TensorFileError> {
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("npy") => Ok(TensorFormat::Npy),
            Some("npz") => Ok(TensorFormat::Npz),
            Some("safetensors") => Ok(TensorFormat::Safetensors),
            _ => Err(TensorFileError::UnknownExtension {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Reads every tensor in the file at `path`, sorted by name (byte order of the UTF-8 names), so
/// that the result does not depend on how the writer happened to order them.
///
/// The whole file is read into memory first: tensors are loaded whole anyway, and it makes
/// every later failure a statement about the file's contents ([`TensorFileError::Corrupt`] and
/// friends) rather than an I/O error. A `.npy` file yields one tensor named after its stem
/// (`q.npy` gives `q`).
pub fn read_tensors(path: impl AsRef<Path>) -> Result<Vec<(String, HostTensor)>, TensorFileError> {
    let path = path.as_ref();
    let format = TensorFormat::from_path(path)?;
    let bytes = fs::read(path).map_err(|error| io_error(path, error))?;
    let mut tensors = match format {
        TensorFormat::Npy => {
            let name = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tensor = npy::decode(bytes).map_err(|problem| problem.in_tensor(path, &name))?;
            vec![(name, tensor)]
        }
        TensorFormat::Npz => npz::read(path, &bytes)?,
        TensorFormat::Safetensors => safetensors_file::read(path, &bytes)?,
    };
    // Names are unique already: safetensors keys tensors by name, and `npz::read` rejects an
    // archive with two members of one name.
    tensors.sort_by(|(left, _), (right, _)| left.cmp(right));
    Ok(tensors)
}

/// Writes `tensors` to `path` in the format its extension names, replacing any existing file
/// atomically: on any error, `path` is left as it was and no temporary file remains.
///
/// A `.npy` file takes exactly one tensor, whose name is not stored (the file stem plays that
/// role when reading). `.npz` members keep the given order; `.safetensors` orders them itself.
pub fn write_tensors(
    path: impl AsRef<Path>,
    tensors: &[(String, HostTensor)],
) -> Result<(), TensorFileError> {
    let path = path.as_ref();
    let format = TensorFormat::from_path(path)?;
    reject_duplicates(path, tensors)?;
    match format {
        TensorFormat::Npy => {
            let [(_, tensor)] = tensors else {
                return Err(TensorFileError::NpyHoldsOneTensor {
                    path: path.to_path_buf(),
                    count: tensors.len(),
                });
            };
            write_atomically(path, |out| {
                npy::encode(tensor, out).map_err(|error| io_error(path, error))
            })
        }
        TensorFormat::Npz => write_atomically(path, |out| npz::write(path, tensors, out)),
        TensorFormat::Safetensors => {
            // Encoding valid tensors with unique names fails only on a header over the crate's
            // 100 MB limit (about a million tensors): report it like a failed write.
            let image = safetensors_file::encode(tensors)
                .map_err(|error| io_error(path, std::io::Error::other(error)))?;
            write_atomically(path, |out| {
                out.write_all(&image).map_err(|error| io_error(path, error))
            })
        }
    }
}

/// Fails on a name that appears twice among `tensors`: `.safetensors` would silently
/// keep one of them, and NumPy would silently load only the last from an `.npz`.
fn reject_duplicates(path: &Path, tensors: &[(String, HostTensor)]) -> Result<(), TensorFileError> {
    let mut sorted: Vec<&String> = tensors.iter().map(|(name, _)| name).collect();
    sorted.sort();
    match sorted.windows(2).find(|pair| pair[0] == pair[1]) {
        Some(pair) => Err(TensorFileError::DuplicateName {
            path: path.to_path_buf(),
            tensor: pair[0].clone(),
        }),
        None => Ok(()),
    }
}
