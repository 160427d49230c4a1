//! The whole path from a verified graph to a kernel for this machine (the passes, fusion, tiling
//! for the host's cores, code generation and the JIT), in one place, so `attnc run --device
//! cpu` and the program generator's harness compile exactly alike.

use crate::{CodegenError, CpuKernel};
use attnc_ir::{Bindings, Graph};
use attnc_passes::fusion::FusionError;
use attnc_passes::pass_manager::{PassError, PassManager};
use attnc_passes::tiling::TilingError;
use attnc_passes::tiling::target::{CpuTarget, Target};

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Passes(#[from] PassError),
    #[error("internal compiler error in fusion: {0}")]
    Fusion(#[from] FusionError),
    #[error(transparent)]
    Tiling(#[from] TilingError),
    #[error(transparent)]
    Codegen(#[from] CodegenError),
}

impl CompileError {
    /// Whether the error is a construct the backend does not lower yet (a limitation it names)
    /// rather than a compiler bug.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, CompileError::Codegen(CodegenError::Unsupported(_)))
    }
}

/// Compiles `graph` for this machine, with tiles chosen for the bound dims.
pub fn compile_for_host(graph: &Graph, bindings: &Bindings) -> Result<CpuKernel, CompileError> {
    compile_for_host_as(graph, bindings, false)
}

/// As [`compile_for_host`]; with `scan`, a recurrence runs as the sequential scan even where
/// its chunked form applies (to time one against the other).
pub fn compile_for_host_as(
    graph: &Graph,
    bindings: &Bindings,
    scan: bool,
) -> Result<CpuKernel, CompileError> {
    let mut graph = graph.clone();
    PassManager::standard().run(&mut graph, &mut |_, _, _| {})?;
    let fused = attnc_passes::fusion::fuse(&graph)?;
    let tiled = attnc_passes::tiling::tile(
        &graph,
        &fused,
        &Target::Cpu(CpuTarget::host()),
        Some(bindings),
    )?;
    let mut tiled = tiled;
    if scan {
        for k in &mut tiled.kernels {
            if let attnc_passes::tiling::TiledBody::Recurrent { chunk, .. } = &mut k.body {
                *chunk = None;
            }
        }
    }
    Ok(CpuKernel::compile(&graph, &fused, &tiled)?)
}
