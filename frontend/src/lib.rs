//! The first stage of attnc: `.attn` source text to an AST with spans, then to the verified graph
//! IR (`build`: name resolution, type and shape checking), and the rendering of diagnostics.
//!
//! The language is described in `docs/language.md`. The AST uses the IR's own operators and
//! element types, so nothing after this crate needs the parser's types.

pub mod ast;
pub mod build;
pub mod diagnostic;
pub mod parse;
pub mod print_ast;

pub use attnc_source::{Diagnostic, FileId, Label, Sources, Span};
pub use build::build_graph;
pub use diagnostic::{render, render_all, render_styled, to_json};

/// The file name under which the prelude appears in diagnostics.
pub const PRELUDE_NAME: &str = "<prelude>";

/// The prelude's source: functions such as `softmax`, written in the language itself.
pub const PRELUDE_SOURCE: &str = include_str!("prelude.attn");

/// A user's program together with the prelude, both parsed.
pub struct ParsedUnit {
    pub program: ast::Program,
    pub prelude: ast::Program,
}

/// Parses `file` and the prelude (registering the prelude in `sources`).
pub fn parse_with_prelude(
    sources: &mut Sources,
    file: FileId,
) -> Result<ParsedUnit, Vec<Diagnostic>> {
    let prelude_file = sources.add(PRELUDE_NAME, PRELUDE_SOURCE);
    let prelude = parse::parse_file(sources, prelude_file)?;
    let program = parse::parse_file(sources, file)?;
    Ok(ParsedUnit { program, prelude })
}

/// Parses `file` (with the prelude) and builds its verified graph: the `graph` stage.
pub fn compile_to_graph(
    sources: &mut Sources,
    file: FileId,
) -> Result<attnc_ir::Graph, Vec<Diagnostic>> {
    let unit = parse_with_prelude(sources, file)?;
    let graph = build_graph(&unit)?;
    if let Err(errors) = attnc_ir::verify(&graph) {
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
