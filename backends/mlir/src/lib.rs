//! The MLIR edge of attnc: generated MLIR text in, lowered modules, LLVM IR and host machine code
//! out. It sits after the lowering passes that write MLIR and before the runtime that launches
//! kernels.
//!
//! ```text
//! MLIR text ──MlirSession::parse──▶ MlirModule ──run_pipeline(CPU_LOWERING_PIPELINE)──▶ LLVM dialect
//!     ├──to_llvm_ir──▶ LLVM IR text (--emit llvm)
//!     └──HostJit::compile(signatures)──▶ Kernel::call(&[Arg])
//! ```
//!
//! Every `unsafe` of the compiler's MLIR side is in this crate, each block with its `SAFETY`
//! reason, behind safe types; no melior type appears in the public API. MLIR and LLVM link
//! statically (`scripts/setup.sh` installs them; `.cargo/config.toml` points mlir-sys at them),
//! so every binary using this crate is about 250 MB: keep few of them.

mod diagnostics;
mod error;
mod host_jit;
mod kernel_call;
mod pipeline;
mod session;

pub use attnc_kernel_abi::{Access, ElementType, Extent, KernelSignature, Param};
pub use error::{ArgumentError, MlirError};
pub use host_jit::{HostCpu, HostJit, JitOptions};
pub use kernel_call::{Arg, BufferArg, Element, Kernel};
pub use pipeline::{CPU_LOWERING_PIPELINE, NVVM_LOWERING_PIPELINE};
pub use session::{MlirModule, MlirSession};
