//! `attnc run --device cpu`: the graph through the passes, fusion and tiling for this machine,
//! compiled by the CPU backend, and run on the same inputs the reference would see.

use attnc_cpu::{CodegenError, CpuKernel};
use attnc_driver::{CpuError, Until};
use attnc_frontend::Sources;
use attnc_ir::{Bindings, Graph};
use attnc_passes::tiling::target::CpuTarget;
use attnc_reference::Tensor;
use std::collections::BTreeMap;

/// Compiles `graph` for this machine, with tiles chosen for the bound dims, through the
/// driver (the generator's harness compiles the same way); its errors become located
/// diagnostics.
pub fn compile(graph: &Graph, bindings: &Bindings, sources: &Sources) -> anyhow::Result<CpuKernel> {
    compile_as(graph, bindings, sources, CpuTarget::host(), false)
}

/// As [`compile`], for a CPU `target` (`attnc bench --target x86-avx2` times AVX2 code on an
/// AVX-512 host); with `scan`, a recurrence runs as the scan even where it could run chunked.
pub fn compile_as(
    graph: &Graph,
    bindings: &Bindings,
    sources: &Sources,
    target: CpuTarget,
    scan: bool,
) -> anyhow::Result<CpuKernel> {
    let mut backend = attnc_driver::Cpu::new(target);
    backend.scan = scan;
    attnc_driver::build(&backend, graph, Some(bindings))
        .map_err(|e| crate::ice::driver_failed(e, graph, sources, cpu_failed))
}

/// The CPU back end's own errors, located (the stage does not matter: each error says what it
/// is).
pub fn cpu_failed(_: Until, e: CpuError, graph: &Graph, sources: &Sources) -> anyhow::Error {
    match e {
        CpuError::Tiling(e) => crate::ice::tiling_failed(e, graph, sources),
        CpuError::Codegen(CodegenError::Internal(message)) => {
            crate::ice::internal_at("the CPU backend", message, graph, sources)
        }
        // A limit of this backend, not a bug: the reference still runs the kernel.
        CpuError::Codegen(CodegenError::Unsupported(message)) => anyhow::anyhow!(
            "{}: not supported by the CPU backend yet: {message} (`--device reference` runs it)",
            crate::ice::kernel_location(graph, sources)
        ),
        CpuError::Codegen(other) => anyhow::Error::new(other),
    }
}

/// Runs a compiled kernel on f64 inputs (as the reference takes them).
pub fn run(
    kernel: &CpuKernel,
    bindings: &Bindings,
    inputs: &BTreeMap<String, Tensor>,
) -> anyhow::Result<BTreeMap<String, Tensor>> {
    run_arrays(kernel, bindings, &arrays(inputs))
}

/// The inputs as the kernel takes them: made once, so `attnc bench` times the kernel's call
/// and not a copy of its inputs.
pub fn arrays(inputs: &BTreeMap<String, Tensor>) -> BTreeMap<String, attnc_cpu::Array> {
    inputs
        .iter()
        .map(|(name, t)| (name.clone(), (t.shape.clone(), t.data.clone())))
        .collect()
}

/// As [`run`], on inputs already in the kernel's form.
pub fn run_arrays(
    kernel: &CpuKernel,
    bindings: &Bindings,
    arrays: &BTreeMap<String, attnc_cpu::Array>,
) -> anyhow::Result<BTreeMap<String, Tensor>> {
    let outputs = kernel.run(bindings, arrays)?;
    Ok(outputs
        .into_iter()
        .map(|(name, (shape, data))| (name, Tensor { shape, data }))
        .collect())
}

/// The largest difference from the reference, relative to the reference's largest magnitude
/// (at least 1), and whether any element differs in being finite.
pub fn compare(got: &Tensor, want: &Tensor) -> (f64, bool) {
    let scale = want.data.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    let mut worst = 0.0f64;
    let mut finiteness = false;
    for (a, b) in got.data.iter().zip(&want.data) {
        if a.is_finite() != b.is_finite() {
            finiteness = true;
        } else if a.is_finite() {
            worst = worst.max((a - b).abs() / scale);
        }
    }
    (worst, finiteness || got.data.len() != want.data.len())
}
