//! Why tiling refused a kernel for a target: no tile size fits the target's memory at the head
//! dims of this call. These are the program's limits on that target (smaller head dims, or
//! another target, compile), not compiler bugs, so each points at the contraction whose rows
//! are too long.

use attnc_source::{Diagnostic, Span};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TilingError {
    /// Even the smallest tiles' working set is over the CPU's cache budget.
    #[error(
        "kernel `{kernel}`: no tile size fits the caches of {target}: at head dims {d_qk} (query and key rows) and {d_v} (value rows), even the smallest tiles need more than half of its {l2_kib} KiB L2 (use smaller head dims)"
    )]
    CpuCaches {
        kernel: String,
        target: String,
        d_qk: usize,
        d_v: usize,
        l2_kib: usize,
        span: Span,
    },
    /// Even the smallest tiles need more shared memory or registers than the GPU gives a block.
    #[error(
        "kernel `{kernel}`: no tile size fits {target}: at head dims {d_qk} (query and key rows) and {d_v} (value rows), even the smallest tiles need more than its {shared_kib} KiB of shared memory per block or {registers} registers per thread (use smaller head dims)"
    )]
    GpuResources {
        kernel: String,
        target: String,
        d_qk: usize,
        d_v: usize,
        shared_kib: usize,
        registers: usize,
        span: Span,
    },
    /// The kernel has no op to point at (fusion refuses such graphs first).
    #[error("kernel `{kernel}` has no ops to tile")]
    Empty { kernel: String },
}

impl TilingError {
    /// The source span the error is about: the contraction whose rows do not fit.
    pub fn span(&self) -> Option<Span> {
        match self {
            TilingError::CpuCaches { span, .. } | TilingError::GpuResources { span, .. } => {
                Some(*span)
            }
            TilingError::Empty { .. } => None,
        }
    }

    /// Whether the error is a compiler bug rather than a limit of the target.
    pub fn is_internal(&self) -> bool {
        matches!(self, TilingError::Empty { .. })
    }

    /// The error as a diagnostic at its span.
    pub fn to_diagnostic(&self) -> Diagnostic {
        match self.span() {
            Some(span) => Diagnostic::error(self.to_string(), span, "the rows of this contraction"),
            None => Diagnostic::global(format!("internal compiler error in tiling: {self}")),
        }
    }
}
