//! Damaged files fail with an error, never a panic: every truncation of a valid file of each
//! format, and byte flips in each format's header (and, for .npz, everywhere).

mod support;

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use attnc_tensors::{ElementType, TensorFileError, read_tensors, write_tensors};

/// Replacement bytes tried at each header position: bit flips, plus characters that keep a
/// Python literal or JSON header syntactically plausible (digits, brackets, quotes, commas).
const REPLACEMENTS: [u8; 10] = [0xFF, 0x00, b'9', b'(', b'[', b'{', b'\'', b'"', b',', b'-'];

/// A valid file of each format: two tensors (one for .npy) of different types and shapes.
fn valid_file(dir: &Path, extension: &str) -> Result<(PathBuf, Vec<u8>), Box<dyn Error>> {
    let mut rng = support::rng(7);
    let path = dir.join(format!("valid.{extension}"));
    let mut tensors = vec![(
        "q".to_owned(),
        support::random_bits(&mut rng, ElementType::F16, &[2, 3])?,
    )];
    if extension != "npy" {
        let ids = support::random_bits(&mut rng, ElementType::I32, &[3])?;
        tensors.push(("ids".to_owned(), ids));
    }
    write_tensors(&path, &tensors)?;
    let bytes = fs::read(&path)?;
    Ok((path, bytes))
}

/// Reads `bytes` as a file named `name`; a panic inside fails the test by itself.
fn read_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), TensorFileError> {
    let path = dir.join(name);
    fs::write(&path, bytes).map_err(|error| TensorFileError::Io {
        path: path.clone(),
        error,
    })?;
    read_tensors(&path).map(drop)
}

fn assert_every_truncation_is_corrupt(extension: &str, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let name = format!("cut.{extension}");
    for length in 0..bytes.len() {
        match read_bytes(dir.path(), &name, &bytes[..length]) {
            Err(TensorFileError::Corrupt { .. }) => {}
            other => panic!("{name} cut to {length} bytes: expected Corrupt, got {other:?}"),
        }
    }
    Ok(())
}

/// Flips each byte in `range` to each replacement. Any outcome but a panic is acceptable (a
/// flip inside padding may leave a valid file), but a file that still reads must have kept
/// its tensor count.
fn assert_flips_never_panic(
    extension: &str,
    bytes: &[u8],
    range: std::ops::Range<usize>,
    tensor_count: usize,
) -> Result<usize, Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(format!("flipped.{extension}"));
    let mut errors = 0;
    for position in range {
        for replacement in REPLACEMENTS {
            let mut damaged = bytes.to_vec();
            damaged[position] = if replacement == 0xFF {
                !damaged[position]
            } else {
                replacement
            };
            fs::write(&path, &damaged)?;
            match read_tensors(&path) {
                Ok(tensors) => assert!(
                    tensors.len() <= tensor_count,
                    "{extension} byte {position} → {replacement}: read {} tensors",
                    tensors.len()
                ),
                Err(_) => errors += 1,
            }
        }
    }
    Ok(errors)
}

#[test]
fn truncated_npy_files_are_corrupt() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let (_, bytes) = valid_file(dir.path(), "npy")?;
    assert_every_truncation_is_corrupt("npy", &bytes)
}

#[test]
fn truncated_npz_files_are_corrupt() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let (_, bytes) = valid_file(dir.path(), "npz")?;
    assert_every_truncation_is_corrupt("npz", &bytes)?;
    // And one written by NumPy with deflate, so the inflating path is cut too.
    let numpy_compressed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compressed.npz");
    assert_every_truncation_is_corrupt("npz", &fs::read(numpy_compressed)?)
}

#[test]
fn truncated_safetensors_files_are_corrupt() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let (_, bytes) = valid_file(dir.path(), "safetensors")?;
    assert_every_truncation_is_corrupt("safetensors", &bytes)
}

#[test]
fn flipped_npy_header_bytes_never_panic() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let (_, bytes) = valid_file(dir.path(), "npy")?;
    let header_len = 10 + usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let errors = assert_flips_never_panic("npy", &bytes, 0..header_len, 1)?;
    assert!(
        errors > header_len,
        "most flips must be caught, only {errors} were"
    );
    Ok(())
}

#[test]
fn flipped_safetensors_header_bytes_never_panic() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let (_, bytes) = valid_file(dir.path(), "safetensors")?;
    let json_len = u64::from_le_bytes(bytes[..8].try_into()?);
    let header_len = 8 + usize::try_from(json_len)?;
    let errors = assert_flips_never_panic("safetensors", &bytes, 0..header_len, 2)?;
    assert!(
        errors > header_len,
        "most flips must be caught, only {errors} were"
    );
    Ok(())
}

#[test]
fn flipped_npz_bytes_anywhere_never_panic() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let (_, bytes) = valid_file(dir.path(), "npz")?;
    // The whole archive: zip headers, the .npy headers inside, and the data (which the CRC
    // guards, so flips there must all fail).
    let errors = assert_flips_never_panic("npz", &bytes, 0..bytes.len(), 2)?;
    assert!(
        errors > bytes.len(),
        "most flips must be caught, only {errors} were"
    );
    Ok(())
}

#[test]
fn a_header_claiming_an_unaddressable_shape_is_corrupt() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let text =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let padded = (10 + text.len() + 1).next_multiple_of(64) - 10;
    bytes.extend(u16::try_from(padded)?.to_le_bytes());
    bytes.extend(text.as_bytes());
    bytes.resize(10 + padded - 1, b' ');
    bytes.push(b'\n');
    match read_bytes(dir.path(), "huge.npy", &bytes) {
        Err(TensorFileError::Corrupt { tensor, .. }) => assert_eq!(tensor.as_deref(), Some("huge")),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    Ok(())
}

/// A deflated `.npz` member whose header and declared size agree but which inflates 1000:1
/// (a zip bomb: 64 MiB of zeros from about 64 kB) is refused before it is inflated.
#[test]
fn a_zip_bomb_member_is_refused_before_inflating() -> Result<(), Box<dyn Error>> {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bomb.npz");
    let count = 16usize << 20; // f32 elements: 64 MiB
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({count},), }}");
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let padded = (10 + header.len() + 1).div_ceil(64) * 64 - 10;
    npy.extend((padded as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.resize(10 + padded - 1, b' ');
    npy.push(b'\n');
    let mut zip = zip::ZipWriter::new(fs::File::create(&path)?);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("q.npy", options)?;
    zip.write_all(&npy)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        zip.write_all(&zeros)?;
    }
    zip.finish()?;
    assert!(fs::metadata(&path)?.len() < 1 << 20, "the archive is small");
    let error = read_tensors(&path)
        .expect_err("a bomb is refused")
        .to_string();
    assert!(error.contains("refused before inflating"), "{error}");
    Ok(())
}

/// A member whose declared size disagrees with its header is refused from the header alone.
#[test]
fn a_member_declaring_another_size_than_its_header_is_refused() -> Result<(), Box<dyn Error>> {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("short.npz");
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let padded = (10 + header.len() + 1).div_ceil(64) * 64 - 10;
    npy.extend((padded as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.resize(10 + padded - 1, b' ');
    npy.push(b'\n');
    npy.extend([1u8; 40]);
    let mut zip = zip::ZipWriter::new(fs::File::create(&path)?);
    zip.start_file("q.npy", zip::write::SimpleFileOptions::default())?;
    zip.write_all(&npy)?;
    zip.finish()?;
    let error = read_tensors(&path).expect_err("refused").to_string();
    assert!(error.contains("its .npy header describes"), "{error}");
    Ok(())
}
