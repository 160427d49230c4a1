//! The committed cargo-fuzz corpus (`fuzz/corpus/compile`) and the inputs the fuzzer found
//! crashing (`fuzz/regressions`), replayed as an ordinary test so CI runs them without nightly:
//! each compiles or fails with diagnostics, never a panic or an internal compiler error.

use attnc_frontend::{Sources, compile_to_graph, render_all};
use std::path::Path;

fn replay(folder: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(folder);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        // The fuzz target skips bytes that are not UTF-8; so does this.
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let mut sources = Sources::new();
        let file = sources.add(path.display().to_string(), text);
        if let Err(d) = compile_to_graph(&mut sources, file) {
            let shown = render_all(&d, &sources);
            assert!(
                !shown.contains("internal compiler error"),
                "{}:\n{shown}",
                path.display()
            );
        }
        count += 1;
    }
    count
}

#[test]
fn the_fuzz_corpus_and_regressions_compile_without_panics() {
    let corpus = replay("corpus/compile");
    assert!(corpus >= 50, "only {corpus} corpus files found");
    replay("regressions");
}
