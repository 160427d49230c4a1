//! attnc's integration tests: one test binary (each binary that links the compiler is large),
//! with one module per concern.

mod bounds;
mod cli;
mod common;
mod cpu_kernels;
mod math_builtins;
mod oracle;
mod overflow;
mod parser_fuzz;
mod plan;
mod recurrent_forms;
mod robustness;
mod run_files;
mod snapshots;
mod ui;
mod work_estimate;
