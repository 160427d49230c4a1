//! The second stage of attnc: the attention graph IR.
//!
//! A kernel is a graph of modular ops (tensor loads, elementwise maps, the scoring contraction,
//! the mask, reductions over the keys, the aggregation contraction, recurrences) with a type on
//! every edge. The front end builds it; `verify` checks the invariants every later pass relies
//! on; `dump` prints it in a stable text form; `bind` gives the symbolic dims values. The IR owns
//! its vocabulary (operators, element types, spans from `attnc-source`): nothing here or after
//! depends on the parser.

pub mod bind;
pub mod dump;
pub mod expr;
pub mod graph;
pub mod ops;
pub mod ranges;
pub mod special;
pub mod types;
pub mod verify;
pub mod work;

pub use attnc_kernel_abi::ElementType;
pub use bind::{Bindings, bind_dims};
pub use graph::{Graph, Node, Op, ValueRef};
pub use ops::{BinaryOp, UnaryOp};
pub use verify::verify;
