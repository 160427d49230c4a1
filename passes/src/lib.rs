//! The third stage of attnc: passes over the graph (run by a pass manager that verifies after
//! each), fusion into kernel templates with their tile-skipping rules, and tiling by a target
//! cost model. Lowering to MLIR comes next.

pub mod dead_values;
pub mod fusion;
pub mod inline_matrix_values;
pub mod map_chains;
pub mod pass_manager;
pub mod tiling;
