//! Any bytes, as a .attn file, through the parser, the graph builder, the verifier, the graph
//! dump and the diagnostic renderer. Every outcome is fine except a panic, a stack overflow, a
//! runaway, or an internal compiler error (a graph the builder made that does not verify).

#![no_main]

use attnc_frontend::{Sources, compile_to_graph, render_all};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut sources = Sources::new();
    let file = sources.add("fuzz.attn", text);
    match compile_to_graph(&mut sources, file) {
        Ok(graph) => {
            let _ = attnc_ir::dump::dump_graph(&graph);
        }
        Err(diagnostics) => {
            let shown = render_all(&diagnostics, &sources);
            assert!(
                !shown.contains("internal compiler error"),
                "internal compiler error on a fuzzed program:\n{shown}"
            );
        }
    }
});
