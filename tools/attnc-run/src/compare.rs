//! `--check REF`: every output against the same-named tensor of a reference file.
//!
//! The measure is the relative L2 error ‖out − ref‖ / ‖ref‖ in f64 over the elements finite in
//! both (the absolute ‖out − ref‖ when ‖ref‖ is 0), the one a bf16 kernel can be held to across
//! sizes; an output also fails on any NaN (the poison of an element nothing wrote, or a real
//! NaN) and on any element finite in one tensor and not in the other (or infinite with the
//! other sign). The reference may hold the outputs in any float dtype (f32 from PyTorch for a
//! bf16 kernel, say), and may hold other tensors too.

use crate::problem::Problem;
use attnc_device::Tensors;
use attnc_kernel_abi::{DimValues, ElementType, KernelManifest};
use attnc_tensors::read_tensors;
use std::path::Path;

/// The comparison of one output.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputCheck {
    pub name: String,
    pub rel_l2: f64,
    /// NaN elements in the output.
    pub nan: usize,
    /// Elements finite in one tensor and not the other, or infinities of opposite sign.
    pub finite_mismatch: usize,
    pub ok: bool,
}

/// Reads the reference and checks it holds every output, in the output's bound shape.
pub fn read_reference(
    path: &Path,
    manifest: &KernelManifest,
    dims: &DimValues,
) -> Result<Tensors, Vec<Problem>> {
    let file = path.display();
    let tensors = read_tensors(path)
        .map_err(|e| vec![Problem::new(format!("cannot read the reference: {e}"))])?;
    let held: Vec<String> = tensors.iter().map(|(n, _)| n.clone()).collect();
    let mut given: Tensors = tensors.into_iter().collect();
    let mut problems = Vec::new();
    let mut out = Tensors::new();
    for decl in &manifest.outputs {
        let name = &decl.name;
        let Some(tensor) = given.remove(name) else {
            problems.push(
                Problem::new(format!("the reference {file} has no tensor `{name}`"))
                    .with_note(format!("it holds: {}", held.join(", "))),
            );
            continue;
        };
        // A bf16 reference saved as its uint16 bits, as inputs may be; any other dtype is
        // compared by value.
        let tensor = if decl.element == ElementType::Bf16 && tensor.dtype() == ElementType::U16 {
            match tensor.reinterpret_u16_as_bf16() {
                Ok(t) => t,
                Err(e) => {
                    problems.push(Problem::new(format!("the reference `{name}`: {e}")));
                    continue;
                }
            }
        } else {
            tensor
        };
        match manifest.shape_of(decl, dims) {
            Ok(shape) if shape == tensor.shape() => {
                out.insert(name.clone(), tensor);
            }
            Ok(shape) => problems.push(Problem::new(format!(
                "the reference `{name}` in {file} has shape {:?}, but the output has {shape:?}",
                tensor.shape()
            ))),
            Err(e) => problems.push(Problem::new(e.0)),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Compares every output that has a reference.
pub fn compare(outputs: &Tensors, reference: &Tensors, tolerance: f64) -> Vec<OutputCheck> {
    outputs
        .iter()
        .filter_map(|(name, got)| {
            let want = reference.get(name)?;
            Some(compare_one(
                name,
                &got.to_f64_vec(),
                &want.to_f64_vec(),
                tolerance,
            ))
        })
        .collect()
}

fn compare_one(name: &str, got: &[f64], want: &[f64], tolerance: f64) -> OutputCheck {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    let (mut nan, mut finite_mismatch) = (0, got.len().abs_diff(want.len()));
    for (&a, &b) in got.iter().zip(want) {
        if a.is_nan() {
            nan += 1;
        }
        if a.is_finite() && b.is_finite() {
            diff += (a - b) * (a - b);
            norm += b * b;
        } else {
            // Equal infinities agree; so do two NaNs, though the output's fails on its own.
            let same = (a.is_infinite() && a == b) || (a.is_nan() && b.is_nan());
            if !same {
                finite_mismatch += 1;
            }
        }
    }
    let rel_l2 = if norm > 0.0 {
        (diff / norm).sqrt()
    } else {
        diff.sqrt()
    };
    OutputCheck {
        name: name.to_string(),
        rel_l2,
        nan,
        finite_mismatch,
        ok: nan == 0 && finite_mismatch == 0 && rel_l2 <= tolerance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_l2_and_what_fails() {
        let c = compare_one("o", &[1.0, 2.0, 2.0], &[1.0, 2.0, 3.0], 1e-2);
        assert!((c.rel_l2 - (1.0f64 / 14.0).sqrt()).abs() < 1e-15);
        assert!(!c.ok);
        let c = compare_one("o", &[1.0, 2.0, 3.001], &[1.0, 2.0, 3.0], 1e-2);
        assert!(c.ok && c.rel_l2 < 1e-3, "{c:?}");
        let c = compare_one("o", &[f64::NAN, 1.0], &[f64::NAN, 1.0], 1.0);
        assert_eq!((c.nan, c.finite_mismatch, c.ok), (1, 0, false));
        let c = compare_one("o", &[f64::INFINITY, 1.0], &[1.0, 1.0], 1.0);
        assert_eq!((c.finite_mismatch, c.ok), (1, false));
        let c = compare_one("o", &[f64::INFINITY], &[f64::NEG_INFINITY], 1.0);
        assert_eq!(c.finite_mismatch, 1);
        let c = compare_one("o", &[f64::INFINITY, 0.0], &[f64::INFINITY, 0.0], 0.0);
        assert!(c.ok, "{c:?}");
        // An all-zero reference is compared absolutely.
        let c = compare_one("o", &[0.5, 0.0], &[0.0, 0.0], 1.0);
        assert_eq!((c.rel_l2, c.ok), (0.5, true));
    }
}
