//! NumPy's `.npz` archives, to and from named tensors: a zip file whose member `name.npy` holds
//! tensor `name`, as `np.savez` and `np.savez_compressed` write them. The `zip` crate reads and
//! writes the archive; each member goes through [`crate::npy`].

use std::io::{Cursor, Read, Seek, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::error::io_error;
use crate::{HostTensor, TensorFileError, npy};

/// How much of a member is inflated before its header is checked: a NumPy header (version 1)
/// is at most 64 KiB.
const HEADER_PEEK: u64 = (64 << 10) + 16;

/// The largest inflate ratio accepted for a member over [`MAX_RATIO_FREE_BYTES`]. Deflate
/// reaches about 1000:1 on constant bytes, while floats compress by a few times at most.
const MAX_RATIO: u64 = 100;
const MAX_RATIO_FREE_BYTES: u64 = 16 << 20;

/// Decodes every member of the archive image `bytes`, in archive order.
pub(crate) fn read(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<(String, HostTensor)>, TensorFileError> {
    let corrupt = |tensor: Option<&str>, detail: String| TensorFileError::Corrupt {
        path: path.to_path_buf(),
        tensor: tensor.map(str::to_owned),
        detail,
    };
    let mut archive = ZipArchive::new(Cursor::new(bytes))
        .map_err(|error| corrupt(None, format!("not a readable zip archive: {error}")))?;
    // The zip crate indexes members by name and keeps only one of each; NumPy would silently
    // use the last. np.savez cannot write such a file, so it was damaged or made by hand.
    if archive.has_duplicate_names() {
        return Err(corrupt(
            None,
            "two members have the same name, so one tensor would be lost".to_owned(),
        ));
    }
    let mut tensors = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let mut member = archive
            .by_index(index)
            .map_err(|error| corrupt(None, format!("zip member {index}: {error}")))?;
        let member_name = member
            .name()
            .map_err(|error| corrupt(None, format!("zip member {index}: {error}")))?
            .into_owned();
        let Some(name) = npyz::npz::array_name_from_file_name(&member_name) else {
            return Err(TensorFileError::UnexpectedNpzMember {
                path: path.to_path_buf(),
                member: member_name,
            });
        };
        let name = name.to_owned();
        // Grows with the data actually inflated, never with the size the archive claims, so a
        // damaged size field cannot trigger a huge allocation. The zip crate checks the CRC.
        // First only the header: the size the member declares must be the size its array
        // has, so a member that would inflate to far more (a zip bomb) is refused before its
        // data is inflated; and no member inflates past what it declares.
        let declared = member.size();
        let compressed = member.compressed_size();
        if declared > MAX_RATIO_FREE_BYTES && declared / compressed.max(1) > MAX_RATIO {
            return Err(corrupt(
                Some(&name),
                format!(
                    "the zip member declares {declared} bytes from {compressed} compressed: over {MAX_RATIO} times, as a zip bomb is (tensor data compresses far less); refused before inflating it. Save real data of this kind with np.savez (uncompressed)"
                ),
            ));
        }
        let read_error = |error: std::io::Error| corrupt(Some(&name), error.to_string());
        let mut npy_image = Vec::new();
        (&mut member)
            .take(HEADER_PEEK.min(declared.saturating_add(1)))
            .read_to_end(&mut npy_image)
            .map_err(read_error)?;
        let described = npy::image_len(&npy_image).map_err(|p| p.in_tensor(path, &name))?;
        if let Some(described) = described
            && described != declared
        {
            return Err(corrupt(
                Some(&name),
                format!(
                    "the zip member declares {declared} bytes, but its .npy header describes {described}"
                ),
            ));
        }
        (&mut member)
            .take(
                declared
                    .saturating_add(1)
                    .saturating_sub(npy_image.len() as u64),
            )
            .read_to_end(&mut npy_image)
            .map_err(read_error)?;
        if npy_image.len() as u64 > declared {
            return Err(corrupt(
                Some(&name),
                format!("the zip member inflates past the {declared} bytes it declares"),
            ));
        }
        let tensor = npy::decode(npy_image).map_err(|problem| problem.in_tensor(path, &name))?;
        tensors.push((name, tensor));
    }
    Ok(tensors)
}

/// Writes `tensors` as an archive into `out`, in the given order.
///
/// Members are stored uncompressed like `np.savez` (not `savez_compressed`): activations barely
/// compress, and stored members keep writing and reading fast. Zip64 is always on, as NumPy does,
/// so a member over 4 GiB needs no special case.
pub(crate) fn write(
    path: &Path,
    tensors: &[(String, HostTensor)],
    out: &mut (impl Write + Seek),
) -> Result<(), TensorFileError> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .large_file(true);
    let mut archive = ZipWriter::new(out);
    for (name, tensor) in tensors {
        archive
            .start_file(npyz::npz::file_name_from_array_name(name), options)
            .map_err(|error| io_error(path, error.into()))?;
        npy::encode(tensor, &mut archive).map_err(|error| io_error(path, error))?;
    }
    archive
        .finish()
        .map_err(|error| io_error(path, error.into()))?;
    Ok(())
}
