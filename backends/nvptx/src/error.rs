//! Errors of the NVPTX back end. A construct it cannot lower, or a broken invariant, names the
//! source construct it came from, so the message points into the `.attn` file.

use attnc_ir::graph::Graph;
use attnc_lower::LowerError;
use attnc_source::Span;
use petgraph::stable_graph::NodeIndex;

#[derive(Debug, thiserror::Error)]
pub enum NvptxError {
    /// A valid program this back end does not compile yet; the reference still runs it.
    #[error("not supported by the NVPTX back end yet: {message}")]
    Unsupported { message: String, span: Option<Span> },
    /// A compiler bug.
    #[error("internal compiler error in the NVPTX back end: {message}")]
    Internal { message: String, span: Option<Span> },
    /// The generated kernel is larger than the target allows.
    #[error("{0}")]
    Resources(String),
    /// No tiling fits the target at these head dims.
    #[error(transparent)]
    Tiling(#[from] attnc_passes::tiling::TilingError),
    /// The kernel's shared-memory layout at the chosen tiles exceeds the target's.
    #[error(
        "kernel `{kernel}` needs {needed} bytes of shared memory per block with query tile {query_tile} and key tile {key_tile}; {target} allows {allowed} (use smaller head dims)"
    )]
    SharedMemory {
        kernel: String,
        target: String,
        needed: usize,
        allowed: usize,
        query_tile: usize,
        key_tile: usize,
    },
    #[error("MLIR rejected the generated kernel (a compiler bug): {0}")]
    Mlir(#[from] attnc_mlir::MlirError),
    #[error("LLVM could not compile the generated kernel (a compiler bug): {0}")]
    Llvm(#[from] attnc_llvm::LlvmError),
}

impl NvptxError {
    pub(crate) fn unsupported(graph: &Graph, n: NodeIndex, message: impl Into<String>) -> Self {
        NvptxError::Unsupported {
            message: message.into(),
            span: Some(graph.node(n).span),
        }
    }

    pub(crate) fn internal(graph: &Graph, n: NodeIndex, message: impl Into<String>) -> Self {
        NvptxError::Internal {
            message: message.into(),
            span: Some(graph.node(n).span),
        }
    }

    /// The source span the error is about, if any.
    pub fn span(&self) -> Option<Span> {
        match self {
            NvptxError::Unsupported { span, .. } | NvptxError::Internal { span, .. } => *span,
            NvptxError::Tiling(e) => e.span(),
            _ => None,
        }
    }

    /// A lowering error, located at the node being lowered.
    pub(crate) fn lowering(graph: &Graph, n: NodeIndex, e: LowerError) -> Self {
        match e {
            LowerError::Unsupported(m) => NvptxError::unsupported(graph, n, m),
            LowerError::Internal(m) => NvptxError::internal(graph, n, m),
        }
    }
}
