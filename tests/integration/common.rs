//! Helpers shared by the integration tests: paths, compiling examples, running the binary.

use attnc_frontend::Sources;
use attnc_ir::Graph;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The repository root (tests run with the `attnc` package as their working directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `examples/*.attn`, sorted by name.
pub fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples"))
        .expect("examples/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "attn"))
        .collect();
    files.sort();
    files
}

pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(format!("{name}.attn"))
}

/// Compiles a file to its verified graph, panicking with the rendered diagnostics on failure.
pub fn compile(path: &Path) -> Graph {
    let text = std::fs::read_to_string(path).expect("readable source");
    compile_source(&path.display().to_string(), &text)
}

/// An example compiled and put through the standard passes, as `attnc build` and `attnc run`
/// do before fusion (the stages after the graph are dumped from this).
pub fn compile_with_passes(path: &Path) -> Graph {
    let mut graph = compile(path);
    attnc_passes::pass_manager::PassManager::standard()
        .run(&mut graph, &mut |_, _, _| {})
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    graph
}

pub fn compile_source(name: &str, text: &str) -> Graph {
    let mut sources = Sources::new();
    let file = sources.add(name, text);
    match attnc_frontend::compile_to_graph(&mut sources, file) {
        Ok(g) => g,
        Err(d) => panic!(
            "{} does not compile:\n{}",
            name,
            attnc_frontend::render_all(&d, &sources)
        ),
    }
}

/// Runs the attnc binary with `args` from the repository root.
pub fn attnc(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_attnc"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("the attnc binary runs")
}
