//! Every stage's dump of every example, snapshotted: a change in the compiler's output shows up
//! as a readable diff to review, never as a silent change.

use crate::common;
use attnc_frontend::{Sources, print_ast};

fn relative_name(path: &std::path::Path) -> String {
    format!(
        "examples/{}",
        path.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default()
    )
}

#[test]
fn ast_of_every_example() {
    insta::glob!("../../examples", "*.attn", |path| {
        let text = std::fs::read_to_string(path).expect("readable example");
        let mut sources = Sources::new();
        let file = sources.add(relative_name(path), text);
        let unit = attnc_frontend::parse_with_prelude(&mut sources, file)
            .unwrap_or_else(|d| panic!("{}", attnc_frontend::render_all(&d, &sources)));
        insta::assert_snapshot!("ast", print_ast::print_program(&unit.program, &sources));
    });
}

#[test]
fn graph_of_every_example() {
    insta::glob!("../../examples", "*.attn", |path| {
        let graph = common::compile(path);
        insta::assert_snapshot!("graph", attnc_ir::dump::dump_graph(&graph));
    });
}

/// The dumps must not depend on anything but the source (no hash-map order, no addresses).
#[test]
fn graph_dump_is_deterministic() {
    for path in common::example_files() {
        let a = attnc_ir::dump::dump_graph(&common::compile(&path));
        let b = attnc_ir::dump::dump_graph(&common::compile(&path));
        assert_eq!(
            a,
            b,
            "{} dumps differently on a second build",
            path.display()
        );
    }
}

/// The command line prints the same dumps.
#[test]
fn attnc_build_emits_every_stage_of_every_example() {
    for path in common::example_files() {
        let rel = relative_name(&path);
        let out = common::attnc(&["build", &rel, "--emit", "ast,graph"]);
        assert!(
            out.status.success(),
            "attnc build {rel} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("kernel "), "{rel}: no dump printed");
        assert!(
            stdout.contains(" = output "),
            "{rel}: the graph dump has no output"
        );
    }
}
