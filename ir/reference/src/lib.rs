//! The reference interpreter: evaluates any graph in f64 on the CPU, straightforwardly and
//! slowly. Every compiled kernel is checked against it on fresh random inputs.

mod eval_expr;
mod interpret;
mod random_inputs;
mod value;

pub use interpret::{InterpretError, SLAB_LIMIT, Tensor, interpret};
pub use random_inputs::random_inputs;

use attnc_tensors::HostTensor;
use std::collections::BTreeMap;

/// Converts host tensors (any supported dtype) to the interpreter's f64 tensors.
pub fn to_f64_tensors(tensors: &BTreeMap<String, HostTensor>) -> BTreeMap<String, Tensor> {
    tensors
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                Tensor {
                    shape: t.shape().to_vec(),
                    data: t.to_f64_vec(),
                },
            )
        })
        .collect()
}
