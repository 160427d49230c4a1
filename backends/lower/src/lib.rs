//! Target-neutral kernel lowering, shared by every back end: the typed MLIR-text emitter
//! ([`emit`], [`types`]), expression lowering with target hooks for where leaves live and how
//! math is computed ([`expr`], [`math`]), and the mask's tile rule as kernel code
//! ([`tile_rule`]), and the kernel manifest every GPU build writes ([`manifest`]). No MLIR library
//! is linked here: the text is parsed by `attnc-mlir`.

pub mod emit;
pub mod expr;
pub mod manifest;
pub mod math;
mod ptx_poly;
pub mod tile_rule;
pub mod types;

pub use emit::{Arith, Cmp, Const, Emitter, FastMath};
pub use expr::{ExprLowering, Leaves, LowerError};
pub use math::{DefaultMath, MathHooks, PtxMath};
pub use types::{Space, Ty, Val};
