//! The places a generated program runs besides the reference: each is a `Device` that compiles
//! and runs a verified graph on the reference's inputs. A GPU backend joins by implementing the
//! trait and being added to `available()`; the harness needs nothing else.

use attnc_ir::{Bindings, Graph};
use attnc_reference::Tensor;
use std::collections::BTreeMap;

/// Why a device gave no outputs.
#[derive(Clone, Debug)]
pub enum DeviceError {
    /// A construct the device does not handle, with the reason it names: allowed, and counted.
    Rejected(String),
    /// A compiler bug or a failed run: always a failure of the program.
    Internal(String),
}

pub trait Device {
    /// The name in reports (`cpu`, `cuda:sm_90a`, ...).
    fn name(&self) -> &str;
    /// The largest difference from the reference it may show, relative to the reference's
    /// largest magnitude (at least 1), for an output stored as `dtype`.
    fn tolerance(&self, dtype: attnc_ir::ElementType) -> f64;
    /// Compiles `graph` for `bindings` and runs it on `inputs`, returning every output.
    fn run(
        &self,
        graph: &Graph,
        bindings: &Bindings,
        inputs: &BTreeMap<String, Tensor>,
    ) -> Result<BTreeMap<String, Tensor>, DeviceError>;
}

/// The host through the CPU backend, compiled exactly as `attnc run --device cpu` does.
pub struct Cpu;

impl Device for Cpu {
    fn name(&self) -> &str {
        "cpu"
    }

    /// The kernel computes in f32 and returns its f32 results (the output dtype is applied
    /// only when a file is written), so the dtype does not widen the tolerance: a few hundred
    /// f32 roundings (6e-8 each) along the longest chain of a generated program, with room.
    fn tolerance(&self, _dtype: attnc_ir::ElementType) -> f64 {
        1e-3
    }

    fn run(
        &self,
        graph: &Graph,
        bindings: &Bindings,
        inputs: &BTreeMap<String, Tensor>,
    ) -> Result<BTreeMap<String, Tensor>, DeviceError> {
        let kernel = attnc_cpu::compile_for_host(graph, bindings).map_err(|e| {
            if e.is_unsupported() {
                DeviceError::Rejected(e.to_string())
            } else {
                DeviceError::Internal(e.to_string())
            }
        })?;
        let arrays = inputs
            .iter()
            .map(|(name, t)| (name.clone(), (t.shape.clone(), t.data.clone())))
            .collect();
        let outputs = kernel
            .run(bindings, &arrays)
            .map_err(|e| DeviceError::Internal(format!("the run failed: {e}")))?;
        Ok(outputs
            .into_iter()
            .map(|(name, (shape, data))| (name, Tensor { shape, data }))
            .collect())
    }
}

/// Every device this build can run on.
pub fn available() -> Vec<Box<dyn Device>> {
    vec![Box::new(Cpu)]
}
