//! Errors of the SPIR-V back end. A construct it cannot compile yet, or a broken invariant,
//! names the source construct it came from, so the message points into the `.attn` file.

use attnc_ir::graph::Graph;
use attnc_source::Span;
use petgraph::stable_graph::NodeIndex;

#[derive(Debug, thiserror::Error)]
pub enum SpirvError {
    /// A valid program this back end does not compile yet; the reference and the CPU back end
    /// still run it.
    #[error("unsupported by the SPIR-V back end: {message}")]
    Unsupported { message: String, span: Option<Span> },
    /// A compiler bug.
    #[error("internal compiler error in the SPIR-V back end: {message}")]
    Internal { message: String, span: Option<Span> },
    /// No tiling fits the target at these head dims.
    #[error(transparent)]
    Tiling(#[from] attnc_passes::tiling::TilingError),
}

impl SpirvError {
    pub(crate) fn unsupported(graph: &Graph, n: NodeIndex, message: impl Into<String>) -> Self {
        SpirvError::Unsupported {
            message: message.into(),
            span: Some(graph.node(n).span),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        SpirvError::Internal {
            message: message.into(),
            span: None,
        }
    }

    /// The source span the error is about, if any.
    pub fn span(&self) -> Option<Span> {
        match self {
            SpirvError::Unsupported { span, .. } | SpirvError::Internal { span, .. } => *span,
            SpirvError::Tiling(e) => e.span(),
        }
    }

    /// Attaches node `n`'s span to an error that has none.
    pub(crate) fn at(self, graph: &Graph, n: NodeIndex) -> Self {
        let here = Some(graph.node(n).span);
        match self {
            SpirvError::Unsupported {
                message,
                span: None,
            } => SpirvError::Unsupported {
                message,
                span: here,
            },
            SpirvError::Internal {
                message,
                span: None,
            } => SpirvError::Internal {
                message,
                span: here,
            },
            e => e,
        }
    }
}

/// The result of every code-generation step.
pub type Result<T> = std::result::Result<T, SpirvError>;

/// rspirv's builder errors only on misuse (a block opened twice): a compiler bug.
pub(crate) fn rs<T>(r: std::result::Result<T, rspirv::dr::Error>) -> Result<T> {
    r.map_err(|e| SpirvError::internal(format!("rspirv: {e:?}")))
}
