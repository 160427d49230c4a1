//! `--inputs` and `--shape`: reads the user's tensors and checks them against the manifest's
//! declared inputs, with the rules and (as near as the manifest allows) the messages of
//! `attnc run` (tools/attnc/src/tensor_inputs.rs), which checks against the compiler's graph and
//! so cannot serve here.
//!
//! Before the dims are bound: every input named, no extra tensors, dtypes and ranks as declared.
//! Then [`attnc_kernel_abi::KernelManifest::bind`] binds the dims from the shapes (and
//! `--shape`) and checks them. After: finite values (unless `--allow-nonfinite`) and values
//! inside declared ranges. A bf16 input may come as bf16 or as its bits in a uint16 array, since
//! NumPy has no bf16; uint16 is taken only where bf16 is declared.

use crate::problem::Problem;
use attnc_device::Tensors;
use attnc_kernel_abi::{Bound, DimValues, ElementType, Expr, KernelManifest, TensorDecl};
use attnc_tensors::{HostTensor, TensorFormat, read_tensors};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads `--shape B=2,H=4,S=128`.
pub fn parse_shape(text: &str) -> Result<DimValues, String> {
    let mut dims = DimValues::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not NAME=VALUE"))?;
        let value: i64 = value
            .trim()
            .parse()
            .map_err(|_| format!("`{}` in `{part}` is not an integer", value.trim()))?;
        if dims.insert(name.trim().to_string(), value).is_some() {
            return Err(format!("`{}` is given twice", name.trim()));
        }
    }
    Ok(dims)
}

/// `bf16[B, H, S, D]`.
pub fn decl_text(t: &TensorDecl) -> String {
    let axes: Vec<String> = t.shape.iter().map(Expr::to_string).collect();
    format!("{}[{}]", t.element, axes.join(", "))
}

/// Reads `path` and matches its tensors to the manifest's inputs by name, dtype and rank.
pub fn read_inputs(path: &Path, manifest: &KernelManifest) -> Result<Tensors, Vec<Problem>> {
    let file = path.display();
    let mut tensors = read_tensors(path)
        .map_err(|e| vec![Problem::new(format!("cannot read the inputs: {e}"))])?;
    let names: Vec<&str> = manifest.inputs.iter().map(|t| t.name.as_str()).collect();
    if matches!(TensorFormat::from_path(path), Ok(TensorFormat::Npy)) {
        // A .npy file holds one unnamed array (`read_tensors` names it after the file stem).
        match (names.as_slice(), tensors.as_mut_slice()) {
            ([only], [(name, _)]) => *name = only.to_string(),
            _ => {
                let savez: Vec<String> = names.iter().map(|n| format!("{n}={n}")).collect();
                return Err(vec![
                    Problem::new(format!(
                        "{file} is a .npy file, which holds one tensor, but kernel `{}` takes {} inputs: {}",
                        manifest.kernel,
                        names.len(),
                        names.join(", ")
                    ))
                    .with_note(format!(
                        "give them in one .npz or .safetensors file, e.g. np.savez(\"inputs.npz\", {})",
                        savez.join(", ")
                    )),
                ]);
            }
        }
    }
    let mut held: Vec<String> = tensors.iter().map(|(name, _)| name.clone()).collect();
    if held.is_empty() {
        held.push("no tensors".to_string());
    }
    let mut given: BTreeMap<String, HostTensor> = tensors.into_iter().collect();
    let mut problems = Vec::new();
    let mut inputs = Tensors::new();
    for decl in &manifest.inputs {
        let name = decl.name.as_str();
        let Some(tensor) = given.remove(name) else {
            problems.push(
                Problem::new(format!(
                    "input `{name}` is missing from {file} (declared as {})",
                    decl_text(decl)
                ))
                .with_note(format!("the file holds: {}", held.join(", "))),
            );
            continue;
        };
        let tensor = match with_declared_dtype(name, tensor, decl.element, &file) {
            Ok(t) => t,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        if tensor.shape().len() != decl.shape.len() {
            problems.push(Problem::new(format!(
                "input `{name}` must have {} axes ({}), but {file} holds it with {} (shape {:?})",
                decl.shape.len(),
                decl_text(decl),
                tensor.shape().len(),
                tensor.shape()
            )));
            continue;
        }
        inputs.insert(name.to_string(), tensor);
    }
    for extra in given.keys() {
        problems.push(
            Problem::new(format!(
                "{file} holds a tensor `{extra}`, which kernel `{}` does not take",
                manifest.kernel
            ))
            .with_note(format!(
                "its inputs are: {}; remove `{extra}` from the file, or rename it after the input it stands for",
                names.join(", ")
            )),
        );
    }
    if problems.is_empty() {
        Ok(inputs)
    } else {
        Err(problems)
    }
}

/// Binds the dims from `--shape` and the tensors' shapes.
pub fn bind(
    path: &Path,
    manifest: &KernelManifest,
    given: &DimValues,
    inputs: &Tensors,
) -> Result<DimValues, Vec<Problem>> {
    let shapes: BTreeMap<String, Vec<usize>> = inputs
        .iter()
        .map(|(name, t)| (name.clone(), t.shape().to_vec()))
        .collect();
    manifest.bind(given, &shapes).map_err(|errors| {
        let note = format!(
            "the input shapes are those of the tensors in {}",
            path.display()
        );
        errors
            .into_iter()
            .map(|e| Problem::new(e.0).with_note(&note))
            .collect()
    })
}

/// The tensor in its declared dtype: as it is, or a uint16 array relabelled as bf16 bits.
pub fn with_declared_dtype(
    name: &str,
    tensor: HostTensor,
    want: ElementType,
    file: &impl std::fmt::Display,
) -> Result<HostTensor, Problem> {
    let got = tensor.dtype();
    if got == want {
        return Ok(tensor);
    }
    if want == ElementType::Bf16
        && let Ok(bf16) = tensor.reinterpret_u16_as_bf16()
    {
        return Ok(bf16);
    }
    Err(Problem::new(format!(
        "input `{name}` must be {want}, but {file} holds it as {got}"
    ))
    .with_note(dtype_hint(name, want, got)))
}

/// How to produce the declared dtype from NumPy, for a dtype mismatch.
fn dtype_hint(name: &str, want: ElementType, got: ElementType) -> String {
    match (want, got) {
        (ElementType::Bf16, _) => format!(
            "NumPy has no bf16: save `{name}` with ml_dtypes ({name}.astype(ml_dtypes.bfloat16)), or its bf16 bits as uint16 ('<u2'), or in a .safetensors file as BF16"
        ),
        (want, ElementType::U16) => format!(
            "uint16 arrays are taken only as the bits of bf16 inputs; save `{name}` as {want}, e.g. {name}.astype(np.{})",
            numpy_name(want)
        ),
        (want, _) => format!(
            "convert it before saving, e.g. {name}.astype(np.{})",
            numpy_name(want)
        ),
    }
}

fn numpy_name(t: ElementType) -> &'static str {
    match t {
        ElementType::F32 => "float32",
        ElementType::F16 => "float16",
        ElementType::I32 => "int32",
        ElementType::F64 => "float64",
        ElementType::I64 => "int64",
        ElementType::U16 => "uint16",
        ElementType::Bool => "bool_",
        ElementType::Bf16 => "bfloat16",
    }
}

/// Checks the values once the dims are bound: no NaN or infinity unless `allow_nonfinite`,
/// and every value of an input with a declared range inside it.
pub fn check_values(
    path: &Path,
    manifest: &KernelManifest,
    dims: &DimValues,
    inputs: &Tensors,
    allow_nonfinite: bool,
) -> Result<(), Vec<Problem>> {
    let file = path.display();
    let mut problems = Vec::new();
    for decl in &manifest.inputs {
        let name = decl.name.as_str();
        let Some(tensor) = inputs.get(name) else {
            continue;
        };
        let values = tensor.to_f64_vec();
        if !allow_nonfinite {
            let bad: Vec<usize> = (0..values.len())
                .filter(|&i| !values[i].is_finite())
                .collect();
            if let Some(&first) = bad.first() {
                problems.push(
                    Problem::new(format!(
                        "input `{name}` in {file} holds {} at {}{}",
                        values[first],
                        position(first, tensor.shape()),
                        count_of(bad.len(), values.len(), "non-finite")
                    ))
                    .with_note("pass --allow-nonfinite to run on it anyway"),
                );
            }
        }
        if let Some(p) = check_range(manifest, decl, tensor, &values, dims, &file) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The problem for the first finite value of `tensor` outside its declared range, if any.
/// Float bounds are rounded to the input's dtype first, as `attnc run`'s random inputs are.
fn check_range(
    manifest: &KernelManifest,
    decl: &TensorDecl,
    tensor: &HostTensor,
    values: &[f64],
    dims: &DimValues,
    file: &impl std::fmt::Display,
) -> Option<Problem> {
    let range = decl.range.as_ref()?;
    let bound_text = |b: &Bound| match b {
        Bound::Float(x) => format!("{x}"),
        Bound::Int(e) => e.to_string(),
    };
    let declared = format!("[{}, {}]", bound_text(&range.lo), bound_text(&range.hi));
    let (lo, hi) = match manifest.range_of(decl, dims) {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(e) => {
            return Some(Problem::new(format!(
                "cannot compute the range {declared} of input `{}`: {}",
                decl.name, e.0
            )));
        }
    };
    let (lo_held, hi_held) = (in_dtype(tensor.dtype(), lo), in_dtype(tensor.dtype(), hi));
    let outside = |v: f64| v.is_finite() && !(lo_held..=hi_held).contains(&v);
    let bad: Vec<usize> = (0..values.len()).filter(|&i| outside(values[i])).collect();
    let first = *bad.first()?;
    // `[0, N - 1] = [0, 7]` where the range depends on dims; `[0.5, 2]` as written otherwise.
    let constant = |b: &Bound| {
        matches!(b, Bound::Float(_)) || matches!(b, Bound::Int(e) if e.dims().is_empty())
    };
    let shown = if constant(&range.lo) && constant(&range.hi) {
        declared
    } else {
        format!("{declared} = [{lo}, {hi}]")
    };
    Some(
        Problem::new(format!(
            "input `{}` in {file} holds {} at {}, outside its declared range {shown}{}",
            decl.name,
            values[first],
            position(first, tensor.shape()),
            count_of(bad.len(), values.len(), "out-of-range")
        ))
        .with_note(
            "the range is part of the kernel's contract: values outside it are rejected, not clamped",
        ),
    )
}

/// A bound as the dtype holds it (rounded to nearest even); the bound itself if it cannot be.
fn in_dtype(dtype: ElementType, value: f64) -> f64 {
    HostTensor::from_f64(dtype, vec![], &[value])
        .ok()
        .and_then(|t| t.to_f64_vec().first().copied())
        .unwrap_or(value)
}

/// `index [0, 1, 2] (flat index 6)` for a flat index into a row-major tensor of `shape`.
pub fn position(flat: usize, shape: &[usize]) -> String {
    let mut index = vec![0; shape.len()];
    let mut rest = flat;
    for (slot, &size) in index.iter_mut().zip(shape).rev() {
        if size > 0 {
            *slot = rest % size;
            rest /= size;
        }
    }
    format!("index {index:?} (flat index {flat})")
}

/// `; it is the first of 3 non-finite values (of 64)`, or nothing when there is only one.
fn count_of(count: usize, total: usize, what: &str) -> String {
    if count > 1 {
        format!("; it is the first of {count} {what} values (of {total})")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_reject() {
        let d = parse_shape("B=2, H=4,S=128").unwrap();
        assert_eq!((d["B"], d["S"]), (2, 128));
        assert_eq!(parse_shape("").unwrap(), DimValues::new());
        assert!(parse_shape("B2").is_err());
        assert!(parse_shape("B=x").is_err());
        assert!(parse_shape("B=1,B=2").is_err());
    }

    #[test]
    fn positions_are_row_major() {
        assert_eq!(position(0, &[2, 3]), "index [0, 0] (flat index 0)");
        assert_eq!(position(5, &[2, 3]), "index [1, 2] (flat index 5)");
        assert_eq!(position(7, &[2, 2, 2]), "index [1, 1, 1] (flat index 7)");
    }
}
