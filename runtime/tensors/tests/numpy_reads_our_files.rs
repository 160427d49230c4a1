//! Extra check, skipped without a Python venv: NumPy itself loads the .npy and .npz files this
//! crate writes, and the documented recipe turns bf16 (`|V2`) into the exact float32 values.
//!
//! Uses `$ATTNC_TEST_PYTHON`, else the workspace's `.venv/bin/python` (see
//! tests/fixtures/make_fixtures.py for how to make it).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

use attnc_tensors::{ElementType, HostTensor, write_tensors};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// Loads every array of the files named on the command line and prints, per file and array,
/// NumPy's dtype string, the shape and the float64 bit patterns, converting bf16 exactly as the
/// crate docs tell users to.
const LOADER: &str = r#"
import json, sys
import numpy as np

def describe(array):
    if array.dtype == np.dtype("V2"):
        u = array.view(np.uint16)
        array = (u.astype(np.uint32) << 16).view(np.float32)
    flat = array.astype(np.float64).reshape(-1)
    return {"shape": list(array.shape), "f64_bits": flat.view(np.uint64).tolist()}

out = {}
for path in sys.argv[1:]:
    loaded = np.load(path)
    arrays = dict(loaded.items()) if path.endswith(".npz") else {"": loaded}
    out[path] = {name: dict(describe(a), dtype=a.dtype.str) for name, a in arrays.items()}
print(json.dumps(out))
"#;

fn python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("ATTNC_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(python));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    venv.exists().then_some(venv)
}

/// Random finite, nonzero values the type holds exactly: NaN payloads would not survive the
/// trip through another program's f64.
fn random_values(
    rng: &mut impl Rng,
    dtype: ElementType,
    shape: &[usize],
) -> Result<HostTensor, Box<dyn Error>> {
    let count: usize = shape.iter().product();
    let values: Vec<f64> = (0..count)
        .map(|_| {
            let magnitude = match dtype {
                ElementType::Bool => return f64::from(rng.random_range(0..2u8)),
                ElementType::U16 => return f64::from(rng.random_range(1..=u16::MAX)),
                ElementType::I32 | ElementType::I64 => f64::from(rng.random_range(1..1_000_000u32)),
                _ => rng.random_range(0.01..100.0),
            };
            if rng.random() { magnitude } else { -magnitude }
        })
        .collect();
    Ok(HostTensor::from_f64(dtype, shape.to_vec(), &values)?)
}

/// The dtype string NumPy reports for each element type as this crate writes it.
fn numpy_dtype(dtype: ElementType) -> &'static str {
    match dtype {
        ElementType::F32 => "<f4",
        ElementType::F16 => "<f2",
        ElementType::Bf16 => "|V2",
        ElementType::I32 => "<i4",
        ElementType::F64 => "<f8",
        ElementType::I64 => "<i8",
        ElementType::U16 => "<u2",
        ElementType::Bool => "|b1",
    }
}

fn assert_numpy_sees(loaded: &Value, tensor: &HostTensor, context: &str) {
    assert_eq!(
        loaded["dtype"].as_str(),
        Some(numpy_dtype(tensor.dtype())),
        "{context}"
    );
    let shape: Vec<usize> = tensor.shape().to_vec();
    let loaded_shape: Option<Vec<usize>> = loaded["shape"].as_array().map(|dims| {
        dims.iter()
            .filter_map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect()
    });
    assert_eq!(loaded_shape, Some(shape), "{context}");
    let bits: Vec<u64> = tensor.to_f64_vec().iter().map(|v| v.to_bits()).collect();
    let loaded_bits: Option<Vec<u64>> = loaded["f64_bits"]
        .as_array()
        .map(|bits| bits.iter().filter_map(Value::as_u64).collect());
    assert_eq!(loaded_bits, Some(bits), "{context}");
}

#[test]
fn numpy_loads_what_this_crate_writes() -> Result<(), Box<dyn Error>> {
    let Some(python) = python() else {
        println!("skipped: no Python venv at .venv and ATTNC_TEST_PYTHON unset");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut archive = Vec::new();
    let mut npy_files = Vec::new();
    for dtype in ElementType::ALL {
        let tensor = random_values(&mut rng, dtype, &[3, 2])?;
        let npy = dir.path().join(format!("{dtype}.npy"));
        write_tensors(&npy, &[(dtype.name().to_owned(), tensor.clone())])?;
        npy_files.push((npy, tensor.clone()));
        archive.push((dtype.name().to_owned(), tensor));
    }
    let npz = dir.path().join("all.npz");
    write_tensors(&npz, &archive)?;

    let mut command = Command::new(&python);
    command.arg("-c").arg(LOADER).arg(&npz);
    command.args(npy_files.iter().map(|(path, _)| path));
    let output = command.output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let loaded: Value = serde_json::from_slice(&output.stdout)?;
    let npz_key = npz.to_string_lossy();
    for (name, tensor) in &archive {
        assert_numpy_sees(
            &loaded[npz_key.as_ref()][name],
            tensor,
            &format!("all.npz: {name}"),
        );
    }
    for (path, tensor) in &npy_files {
        let key = path.to_string_lossy();
        assert_numpy_sees(&loaded[key.as_ref()][""], tensor, &key);
    }
    Ok(())
}
