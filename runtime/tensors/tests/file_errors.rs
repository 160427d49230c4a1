//! The errors a caller maps to user-facing messages, each naming the file (and tensor), and
//! the guarantee that a failed write leaves nothing behind.

use std::error::Error;
use std::fs;
use std::io;
use std::path::Path;

use attnc_tensors::{
    ElementType, HostTensor, TensorFileError, TensorFormat, read_tensors, write_tensors,
};

fn tensor(values: &[f64]) -> Result<HostTensor, Box<dyn Error>> {
    Ok(HostTensor::from_f64(
        ElementType::F32,
        vec![values.len()],
        values,
    )?)
}

fn entries(dir: &Path) -> Result<Vec<String>, Box<dyn Error>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

#[test]
fn npy_takes_exactly_one_tensor_and_writes_nothing_otherwise() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("o.npy");
    let two = [
        ("a".to_owned(), tensor(&[1.0])?),
        ("b".to_owned(), tensor(&[2.0])?),
    ];
    for given in [&two[..], &[]] {
        match write_tensors(&path, given) {
            Err(error @ TensorFileError::NpyHoldsOneTensor { .. }) => assert_eq!(
                error.to_string(),
                format!(
                    "{}: a .npy file holds exactly one tensor, but {} were given; \
                     use .npz or .safetensors",
                    path.display(),
                    given.len()
                )
            ),
            other => panic!("expected NpyHoldsOneTensor, got {other:?}"),
        }
    }
    assert!(entries(dir.path())?.is_empty());
    Ok(())
}

#[test]
fn duplicate_names_are_rejected_before_writing() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let twins = [
        ("k".to_owned(), tensor(&[1.0])?),
        ("q".to_owned(), tensor(&[2.0])?),
        ("k".to_owned(), tensor(&[3.0])?),
    ];
    for file in ["o.npz", "o.safetensors"] {
        let path = dir.path().join(file);
        match write_tensors(&path, &twins) {
            Err(error @ TensorFileError::DuplicateName { .. }) => assert_eq!(
                error.to_string(),
                format!("{}: tensor name 'k' appears more than once", path.display())
            ),
            other => panic!("expected DuplicateName, got {other:?}"),
        }
    }
    assert!(entries(dir.path())?.is_empty());
    Ok(())
}

#[test]
fn unknown_extensions_are_rejected_for_reading_and_writing() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("weights.pt");
    fs::write(&path, b"not a tensor file")?;
    let expected = format!(
        "{}: unknown tensor file extension; expected .npy, .npz or .safetensors",
        path.display()
    );
    for result in [read_tensors(&path).map(drop), write_tensors(&path, &[])] {
        match result {
            Err(error @ TensorFileError::UnknownExtension { .. }) => {
                assert_eq!(error.to_string(), expected);
            }
            other => panic!("expected UnknownExtension, got {other:?}"),
        }
    }
    assert_eq!(
        TensorFormat::from_path(Path::new("A.SafeTensors"))?,
        TensorFormat::Safetensors
    );
    assert!(TensorFormat::from_path(Path::new("npz")).is_err());
    Ok(())
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("absent.npz");
    match read_tensors(&path) {
        Err(TensorFileError::Io { path: named, error }) => {
            assert_eq!(named, path);
            assert_eq!(error.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_failed_rename_leaves_no_temporary_file() -> Result<(), Box<dyn Error>> {
    // The target is a non-empty folder, so everything succeeds except the final rename.
    let dir = tempfile::tempdir()?;
    let target = dir.path().join("o.safetensors");
    fs::create_dir(&target)?;
    fs::write(target.join("keep"), b"")?;
    let result = write_tensors(&target, &[("o".to_owned(), tensor(&[1.0, 2.0])?)]);
    assert!(
        matches!(result, Err(TensorFileError::Io { .. })),
        "{result:?}"
    );
    assert_eq!(entries(dir.path())?, ["o.safetensors"]);
    assert_eq!(entries(&target)?, ["keep"]);
    Ok(())
}

#[test]
fn a_non_array_npz_member_is_named() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("odd.npz");
    let mut archive = zip::ZipWriter::new(fs::File::create(&path)?);
    archive.start_file("notes.txt", zip::write::SimpleFileOptions::default())?;
    io::Write::write_all(&mut archive, b"hello")?;
    archive.finish()?;
    match read_tensors(&path) {
        Err(error @ TensorFileError::UnexpectedNpzMember { .. }) => assert_eq!(
            error.to_string(),
            format!(
                "{}: member 'notes.txt' is not a .npy array; an .npz file holds only .npy members",
                path.display()
            )
        ),
        other => panic!("expected UnexpectedNpzMember, got {other:?}"),
    }
    Ok(())
}

#[test]
fn damage_inside_a_tensor_names_the_tensor() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("flags.safetensors");
    let flags = HostTensor::from_f64(ElementType::Bool, vec![3], &[1.0, 0.0, 1.0])?;
    write_tensors(&path, &[("flags".to_owned(), flags)])?;
    // A bool byte of 7 is valid safetensors framing but not a valid bool.
    let mut bytes = fs::read(&path)?;
    let last = bytes.len() - 1;
    bytes[last] = 7;
    fs::write(&path, bytes)?;
    match read_tensors(&path) {
        Err(error @ TensorFileError::Corrupt { .. }) => assert_eq!(
            error.to_string(),
            format!(
                "{}: tensor 'flags': corrupt or truncated file: \
                 byte 7 at flat index 2 is not a bool (0 or 1)",
                path.display()
            )
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    Ok(())
}

#[test]
fn an_unsupported_safetensors_dtype_is_named() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bytes.safetensors");
    let header = br#"{"raw":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend([5, 6]);
    fs::write(&path, bytes)?;
    match read_tensors(&path) {
        Err(error @ TensorFileError::UnsupportedDtype { .. }) => assert_eq!(
            error.to_string(),
            format!(
                "{}: tensor 'raw' has element type U8, which attnc cannot read",
                path.display()
            )
        ),
        other => panic!("expected UnsupportedDtype, got {other:?}"),
    }
    Ok(())
}

#[test]
fn an_npz_with_two_members_of_one_name_is_rejected() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("twins.npz");
    let tensors = [
        ("a".to_owned(), tensor(&[1.0])?),
        ("b".to_owned(), tensor(&[2.0])?),
    ];
    write_tensors(&path, &tensors)?;
    // Rename member b.npy to a.npy in its local and central headers; the CRCs cover only data.
    let mut bytes = fs::read(&path)?;
    for start in 0..bytes.len() - 4 {
        if bytes[start..].starts_with(b"b.npy") {
            bytes[start] = b'a';
        }
    }
    fs::write(&path, bytes)?;
    match read_tensors(&path) {
        Err(error @ TensorFileError::Corrupt { .. }) => assert_eq!(
            error.to_string(),
            format!(
                "{}: corrupt or truncated file: two members have the same name, \
                 so one tensor would be lost",
                path.display()
            )
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    Ok(())
}
