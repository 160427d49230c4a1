//! `--random SEED`: inputs drawn here instead of read from a file, for timing at shapes whose
//! tensors would be too large to carry to the GPU machine. Every dim must be given by `--shape`.
//! Floats are uniform on [-1, 1) (clamped into a declared range), integers uniform over their
//! declared range, booleans fair coins: the same distribution `attnc run` draws from.

use crate::problem::Problem;
use attnc_device::Tensors;
use attnc_kernel_abi::{Bound, DimValues, ElementType, KernelManifest, TensorDecl};
use attnc_tensors::HostTensor;
use std::collections::BTreeMap;

/// SplitMix64: enough for test data, and the same stream on every machine.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform on [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Binds the dims from `--shape` alone and draws every input.
pub fn draw(
    manifest: &KernelManifest,
    given: &DimValues,
    seed: u64,
) -> Result<(DimValues, Tensors), Vec<Problem>> {
    let dims = manifest.bind(given, &BTreeMap::new()).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| Problem::new(e.to_string()))
            .collect::<Vec<_>>()
    })?;
    let mut rng = SplitMix(seed);
    let mut inputs = Tensors::new();
    let mut problems = Vec::new();
    for decl in &manifest.inputs {
        match draw_one(decl, &dims, &mut rng) {
            Ok(t) => {
                inputs.insert(decl.name.clone(), t);
            }
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok((dims, inputs))
    } else {
        Err(problems)
    }
}

fn draw_one(
    decl: &TensorDecl,
    dims: &DimValues,
    rng: &mut SplitMix,
) -> Result<HostTensor, Problem> {
    let name = &decl.name;
    let mut shape = Vec::with_capacity(decl.shape.len());
    for axis in &decl.shape {
        let n = axis
            .eval(dims)
            .map_err(|e| Problem::new(format!("input `{name}`: axis {axis}: {e}")))?;
        shape.push(usize::try_from(n).map_err(|_| {
            Problem::new(format!("input `{name}`: axis {axis} is {n}, not a size"))
        })?);
    }
    let count = shape
        .iter()
        .try_fold(1usize, |a, &n| a.checked_mul(n))
        .ok_or_else(|| Problem::new(format!("input `{name}`: shape {shape:?} is too large")))?;
    let bound = |b: &Bound| -> Result<f64, Problem> {
        match b {
            Bound::Float(x) => Ok(*x),
            Bound::Int(e) => e
                .eval(dims)
                .map(|v| v as f64)
                .map_err(|err| Problem::new(format!("input `{name}`: range bound {e}: {err}"))),
        }
    };
    let range = match &decl.range {
        Some(r) => Some((bound(&r.lo)?, bound(&r.hi)?)),
        None => None,
    };
    let integer = matches!(
        decl.element,
        ElementType::I32 | ElementType::I64 | ElementType::U16
    );
    if integer && range.is_none() {
        return Err(Problem::new(format!(
            "input `{name}` is an integer input with no declared range, so `--random` cannot draw it"
        )));
    }
    let values: Vec<f64> = (0..count)
        .map(|_| {
            let u = rng.unit();
            match (decl.element, range) {
                (ElementType::Bool, _) => (u < 0.5) as u8 as f64,
                (_, Some((lo, hi))) if integer => (lo + (u * (hi - lo + 1.0)).floor()).min(hi),
                (_, Some((lo, hi))) => (2.0 * u - 1.0).clamp(lo, hi),
                (_, None) => 2.0 * u - 1.0,
            }
        })
        .collect();
    HostTensor::from_f64(decl.element, shape, &values)
        .map_err(|e| Problem::new(format!("input `{name}`: {e}")))
}
