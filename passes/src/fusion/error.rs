//! Why fusion refused a graph. The builder and the passes only hand fusion graphs that verify,
//! so every variant here is a compiler bug today; each still carries the span of the op it is
//! about, so the report points into the `.attn` source like any other diagnostic.

use attnc_ir::graph::{Graph, Op};
use attnc_source::{Diagnostic, Span};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FusionError {
    /// The graph is not a DAG (the verifier rejects cycles, so fusion never should see one).
    #[error("kernel `{kernel}`: the graph has a cycle")]
    Cycle { kernel: String, span: Span },
    /// The kernel ranges over t but has no `recurrence` op to scan it.
    #[error("kernel `{kernel}` ranges over t without a recurrence")]
    NoRecurrence { kernel: String, span: Span },
    /// The graph has no node to point at: nothing to fuse.
    #[error("kernel `{kernel}` has no ops")]
    Empty { kernel: String },
}

impl FusionError {
    /// The source span the error is about (none for an empty graph).
    pub fn span(&self) -> Option<Span> {
        match self {
            FusionError::Cycle { span, .. } | FusionError::NoRecurrence { span, .. } => Some(*span),
            FusionError::Empty { .. } => None,
        }
    }

    /// Every variant is a bug in attnc, never a fault of the program.
    pub fn is_internal(&self) -> bool {
        true
    }

    /// The error as a diagnostic at its span, labelled with what the span shows.
    pub fn to_diagnostic(&self) -> Diagnostic {
        let label = match self {
            FusionError::Cycle { .. } => "in this kernel",
            FusionError::NoRecurrence { .. } => "this value varies with t",
            FusionError::Empty { .. } => "",
        };
        let message = format!("internal compiler error in fusion: {self}");
        match self.span() {
            Some(span) => Diagnostic::error(message, span, label),
            None => Diagnostic::global(message),
        }
    }
}

/// The span a whole-kernel error points at: the kernel's first output (the statement being
/// compiled), else its first op; `Err` for a graph with no ops.
pub fn kernel_span(graph: &Graph) -> Result<Span, FusionError> {
    let nodes: Vec<_> = graph.node_indices().collect();
    nodes
        .iter()
        .find(|&&n| matches!(graph.node(n).op, Op::Output { .. }))
        .or(nodes.first())
        .map(|&n| graph.node(n).span)
        .ok_or_else(|| FusionError::Empty {
            kernel: graph.kernel.clone(),
        })
}
