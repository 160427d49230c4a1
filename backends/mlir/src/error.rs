//! Errors of the MLIR edge: every failure MLIR or the host JIT reports, with MLIR's own text.
//!
//! None of these is a user error. A module that does not parse, verify or lower was written by
//! the compiler, so it is a compiler bug; a JIT that cannot start is an environment problem. The
//! variants keep MLIR's diagnostics verbatim so the bug report shows what MLIR saw.

use attnc_kernel_abi::ElementType;

/// A failure on the MLIR side of the compiler.
#[derive(Debug, thiserror::Error)]
pub enum MlirError {
    /// MLIR rejected the text; `diagnostics` holds its messages with their `line:col` locations.
    #[error("MLIR could not parse the module:\n{diagnostics}")]
    Parse { diagnostics: String },
    /// The module parsed but breaks an op's invariants.
    #[error("the MLIR module does not verify:\n{diagnostics}")]
    Verify { diagnostics: String },
    /// The textual pass pipeline itself is malformed (unknown pass, bad option, wrong anchor).
    #[error("cannot parse the pass pipeline `{pipeline}`: {message}")]
    PipelineSyntax { pipeline: String, message: String },
    /// A pass of the pipeline failed; the module may be left half-converted.
    #[error("the pass pipeline `{pipeline}` failed:\n{diagnostics}")]
    Pipeline {
        pipeline: String,
        diagnostics: String,
    },
    /// The module holds ops with no LLVM IR translation, usually because lowering left some
    /// behind (conversion passes are partial: they succeed and leave what they cannot convert).
    #[error("cannot translate the module to LLVM IR:\n{diagnostics}")]
    Translate { diagnostics: String },
    /// MLIR's `ExecutionEngine` could not be created or could not compile a function.
    #[error("the host JIT failed: {message}")]
    Jit { message: String },
    /// A kernel's launch signature does not match the function the module defines.
    #[error("kernel `{kernel}` does not match its signature: {problem}")]
    Signature { kernel: String, problem: String },
    /// A call passed arguments that do not fit the kernel's signature.
    #[error("bad arguments for kernel `{kernel}`: {source}")]
    Arguments {
        kernel: String,
        #[source]
        source: ArgumentError,
    },
}

/// Why a kernel call's arguments were refused before the kernel ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentError {
    #[error("expected {expected} arguments, got {got}")]
    Count { expected: usize, got: usize },
    #[error("parameter {index} (`{name}`) takes {expected}, got {got}")]
    Kind {
        index: usize,
        name: String,
        expected: String,
        got: String,
    },
    #[error("buffer `{name}` holds {element:?} elements, the signature says {expected:?}")]
    Element {
        name: String,
        element: ElementType,
        expected: ElementType,
    },
    #[error("buffer `{name}` is written by the kernel but was passed read-only")]
    ReadOnly { name: String },
    #[error("buffer `{name}` has {len} elements but the kernel may touch {needed}")]
    TooShort {
        name: String,
        len: usize,
        needed: u64,
    },
    #[error("the extent of buffer `{name}` is negative or overflows: {detail}")]
    BadExtent { name: String, detail: String },
}
