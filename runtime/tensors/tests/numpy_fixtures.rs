//! Files written by real NumPy (tests/fixtures, made by make_fixtures.py) read back as exactly
//! the values the script recorded in expected.json.

use std::error::Error;
use std::path::{Path, PathBuf};

use attnc_tensors::{ElementType, HostTensor, TensorFileError, read_tensors};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Checks one tensor against its expected.json entry: dtype name, shape and the float64 bit
/// pattern of every value (exact, and NaN-safe, unlike comparing parsed decimals).
fn assert_matches(file: &str, name: &str, tensor: &HostTensor, expected: &Value) {
    let context = format!("{file}: {name}");
    assert_eq!(
        Some(tensor.dtype().name()),
        expected["dtype"].as_str(),
        "{context}"
    );
    let shape: Option<Vec<usize>> = expected["shape"].as_array().map(|dims| {
        dims.iter()
            .filter_map(|dim| dim.as_u64().and_then(|dim| usize::try_from(dim).ok()))
            .collect()
    });
    assert_eq!(Some(tensor.shape().to_vec()), shape, "{context}");
    let bits: Option<Vec<u64>> = expected["f64_bits"]
        .as_array()
        .map(|bits| bits.iter().filter_map(Value::as_u64).collect());
    let actual: Vec<u64> = tensor
        .to_f64_vec()
        .iter()
        .map(|value| value.to_bits())
        .collect();
    assert_eq!(Some(actual), bits, "{context}");
}

#[test]
fn reads_exactly_what_numpy_wrote() -> Result<(), Box<dyn Error>> {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json"))?)?;
    let files = expected["files"]
        .as_object()
        .ok_or("expected.json has no files")?;
    // Every fixture but the deliberately unsupported one must have an expectation.
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(fixtures())? {
        let file_name = entry?.file_name().to_string_lossy().into_owned();
        if (file_name.ends_with(".npy") || file_name.ends_with(".npz")) && file_name != "int16.npy"
        {
            on_disk.push(file_name);
        }
    }
    on_disk.sort();
    let mut listed: Vec<&String> = files.keys().collect();
    listed.sort();
    assert_eq!(listed, on_disk.iter().collect::<Vec<_>>());
    for (file, tensors) in files {
        let tensors = tensors.as_object().ok_or("a file entry is not an object")?;
        let read = read_tensors(fixtures().join(file))?;
        let mut expected_names: Vec<&String> = tensors.keys().collect();
        expected_names.sort();
        let names: Vec<&String> = read.iter().map(|(name, _)| name).collect();
        assert_eq!(
            names, expected_names,
            "{file}: tensors come back sorted by name"
        );
        for (name, tensor) in read {
            // The one file that carries bf16 as a uint16 view; the caller relabels it.
            let tensor = if file == "bf16_as_uint16.npy" {
                assert_eq!(tensor.dtype(), ElementType::U16);
                tensor.reinterpret_u16_as_bf16()?
            } else {
                tensor
            };
            assert_matches(file, &name, &tensor, &tensors[&name]);
        }
    }
    Ok(())
}

#[test]
fn an_unsupported_numpy_dtype_is_named_in_the_error() {
    let path = fixtures().join("int16.npy");
    match read_tensors(&path) {
        Err(error @ TensorFileError::UnsupportedDtype { .. }) => assert_eq!(
            error.to_string(),
            format!(
                "{}: tensor 'int16' has element type '<i2' (int16), which attnc cannot read",
                path.display()
            )
        ),
        other => panic!("expected UnsupportedDtype, got {other:?}"),
    }
}
