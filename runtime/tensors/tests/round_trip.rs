//! Every format × every element type: what is written is read back bit for bit.

mod support;

use std::error::Error;
use std::path::Path;

use attnc_tensors::{ElementType, HostTensor, read_tensors, write_tensors};

/// Shapes that exercise a scalar, an empty tensor and a 3-d one.
const SHAPES: [&[usize]; 3] = [&[], &[0, 3], &[3, 5, 2]];

fn assert_round_trip(
    path: &Path,
    tensors: Vec<(String, HostTensor)>,
) -> Result<(), Box<dyn Error>> {
    write_tensors(path, &tensors)?;
    let mut expected = tensors;
    expected.sort_by(|(left, _), (right, _)| left.cmp(right));
    assert_eq!(read_tensors(path)?, expected, "{}", path.display());
    Ok(())
}

#[test]
fn npy_round_trips_every_type_and_shape() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let mut rng = support::rng(1);
    for dtype in ElementType::ALL {
        for (index, shape) in SHAPES.iter().enumerate() {
            let name = format!("{dtype}_{index}");
            let tensor = support::random_bits(&mut rng, dtype, shape)?;
            assert_round_trip(
                &dir.path().join(format!("{name}.npy")),
                vec![(name, tensor)],
            )?;
        }
    }
    Ok(())
}

#[test]
fn npz_and_safetensors_round_trip_every_type_in_one_file() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let mut rng = support::rng(2);
    for extension in ["npz", "safetensors"] {
        let mut tensors = Vec::new();
        // Reverse order, so the test also sees that reading sorts by name.
        for dtype in ElementType::ALL.into_iter().rev() {
            for (index, shape) in SHAPES.iter().enumerate() {
                let tensor = support::random_bits(&mut rng, dtype, shape)?;
                tensors.push((format!("{dtype}_{index}"), tensor));
            }
        }
        assert_round_trip(&dir.path().join(format!("all.{extension}")), tensors)?;
    }
    Ok(())
}

#[test]
fn an_empty_tensor_list_round_trips_in_multi_tensor_formats() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    for extension in ["npz", "safetensors"] {
        assert_round_trip(&dir.path().join(format!("empty.{extension}")), Vec::new())?;
    }
    Ok(())
}

#[test]
fn writing_replaces_an_existing_file() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let mut rng = support::rng(3);
    let path = dir.path().join("o.npz");
    let first = support::random_bits(&mut rng, ElementType::F32, &[4])?;
    write_tensors(&path, &[("first".to_owned(), first)])?;
    let second = support::random_bits(&mut rng, ElementType::Bf16, &[2, 2])?;
    assert_round_trip(&path, vec![("second".to_owned(), second)])?;
    let entries: Vec<_> = std::fs::read_dir(dir.path())?.collect::<Result<_, _>>()?;
    assert_eq!(
        entries.len(),
        1,
        "no temporary file may remain: {entries:?}"
    );
    Ok(())
}

#[test]
fn bf16_in_npy_is_written_as_a_two_byte_void() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("b.npy");
    let tensor = HostTensor::from_f64(ElementType::Bf16, vec![2], &[1.5, -2.25])?;
    write_tensors(&path, &[("b".to_owned(), tensor)])?;
    let bytes = std::fs::read(&path)?;
    let header = String::from_utf8_lossy(&bytes[..bytes.len() - 4]);
    assert!(header.contains("'descr': '|V2'"), "{header}");
    assert_eq!(bytes[bytes.len() - 4..], [0xC0, 0x3F, 0x10, 0xC0]);
    Ok(())
}
