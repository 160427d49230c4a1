//! Writing an output file all at once or not at all, so that a failed or interrupted run never
//! leaves a half-written tensor file where the user expects a result (or where a previous,
//! good one was).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use crate::TensorFileError;
use crate::error::io_error;

/// Runs `write` on a temporary file in `path`'s folder, then renames it over `path`.
///
/// The temporary file lives in the same folder because a rename is only atomic within one file
/// system. It is named `.<file name>.<random>.tmp`, so a leftover from a crash (the only case in
/// which one survives: on any error it is deleted) is recognisable. The data is synced before
/// the rename so that, after a power loss, `path` holds either the old file or the whole new one.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), TensorFileError>,
) -> Result<(), TensorFileError> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path.file_name().unwrap_or(path.as_os_str());
    let prefix = format!(".{}.", file_name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The mode `File::create` would give (0o666 less the umask); tempfile's default, 0o600,
        // would make every output private to its writer.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let temp = builder
        .tempfile_in(folder)
        .map_err(|error| io_error(path, error))?;
    let (file, temp_path) = temp.into_parts();
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    let file = out
        .into_inner()
        .map_err(|error| io_error(path, error.into_error()))?;
    file.sync_all().map_err(|error| io_error(path, error))?;
    temp_path
        .persist(path)
        .map_err(|error| io_error(path, error.error))
}
