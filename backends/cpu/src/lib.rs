//! The host CPU backend: a fused, tiled kernel written as MLIR (`--emit mlir`), lowered by MLIR's
//! own pass pipeline to LLVM (`--emit llvm`), compiled by the JIT, and run over (b, h, query
//! tile) work items on all cores. Each work item writes its own output tile, which the host
//! copies into place, so no two threads ever share a writable buffer.

mod chunked;
mod launch;
mod mlir_text;
mod parallel;
mod recurrent;

pub use launch::{Array, CpuKernel, RunError, generate_mlir, lower_to_llvm};

use attnc_ir::types::{Dim, FrameIndex};
use petgraph::stable_graph::NodeIndex;

#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// A construct the CPU backend does not lower yet; the reference interpreter still runs it.
    #[error("not supported by the CPU backend yet: {0}")]
    Unsupported(String),
    #[error("internal compiler error in the CPU backend: {0}")]
    Internal(String),
    #[error("MLIR: {0}")]
    Mlir(#[from] attnc_mlir::MlirError),
}

/// How the host lays out a kernel's arguments and results.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Inputs in parameter order.
    pub inputs: Vec<String>,
    /// The inputs passed as i32.
    pub int_inputs: Vec<String>,
    pub outputs: Vec<OutputTile>,
    /// The dims in parameter order.
    pub dims: Vec<String>,
    pub query_tile: usize,
    pub key_tile: usize,
    pub mask: Option<NodeIndex>,
    /// A recurrence: one work item per (b, h), each writing every step t.
    pub scan: bool,
    /// The kernel function's name (a parallel kernel, a scan or a chunked recurrence).
    pub entry: &'static str,
}

/// An output as a work item writes it: rows of the query tile, each of the output's last axis.
#[derive(Clone, Debug)]
pub struct OutputTile {
    pub name: String,
    /// The frame index of each leading axis.
    pub axes: Vec<FrameIndex>,
    pub dims: Vec<Dim>,
}

impl Layout {
    /// Adds every input of `graph` as a read-only buffer with its length as an `Int`
    /// parameter (an extent may be an expression such as `2 * S - 1`, so the host passes it).
    pub(crate) fn add_inputs(
        &mut self,
        graph: &attnc_ir::Graph,
        buffers: &mut Vec<attnc_mlir::Param>,
        ints: &mut Vec<attnc_mlir::Param>,
    ) {
        use attnc_mlir::{Access, ElementType, Param};
        for (_, name, ty) in graph.inputs() {
            let int = !ty.dtype.is_float();
            buffers.push(Param::Buffer {
                name: format!("in_{name}"),
                element: if int {
                    ElementType::I32
                } else {
                    ElementType::F32
                },
                access: Access::Read,
                extent: vec![attnc_mlir::Extent::Param(format!("n_{name}"))],
            });
            ints.push(Param::Int {
                name: format!("n_{name}"),
            });
            self.inputs.push(name.to_string());
            if int {
                self.int_inputs.push(name.to_string());
            }
        }
    }
}
