//! The second stage of attnc: the attention graph IR.
//!
//! `build` turns the parsed program into a graph of modular ops (tensor loads, elementwise maps,
//! the scoring contraction, the mask, reductions over the keys, the aggregation contraction,
//! recurrences) with a type on every edge; `verify` checks the invariants every later pass
//! relies on; `dump` prints it in a stable text form; `bind` gives the symbolic dims values.

pub mod bind;
pub mod build;
pub mod dump;
pub mod expr;
pub mod graph;
pub mod types;
pub mod verify;
pub mod work;

pub use bind::{Bindings, bind_dims};
pub use build::build_graph;
pub use graph::{Graph, Node, Op, ValueRef};
pub use verify::verify;

use attnc_frontend::{Diagnostic, FileId, Sources};

/// Parses `file` (with the prelude) and builds its verified graph: the `graph` stage.
pub fn compile_to_graph(sources: &mut Sources, file: FileId) -> Result<Graph, Vec<Diagnostic>> {
    let unit = attnc_frontend::parse_with_prelude(sources, file)?;
    let graph = build_graph(&unit)?;
    if let Err(errors) = verify(&graph) {
        // The builder only makes graphs that verify; anything else is a compiler bug.
        let listed: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(vec![Diagnostic::global(format!(
            "internal compiler error: the graph built for kernel `{}` does not verify:\n  {}",
            graph.kernel,
            listed.join("\n  ")
        ))]);
    }
    Ok(graph)
}
