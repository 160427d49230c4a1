//! The first stage of attnc: `.attn` source text to an AST with spans, and the diagnostics type
//! that every later stage uses to point back into the source.
//!
//! The language is described in `docs/language.md`. Names are resolved and types and shapes are
//! checked when the graph IR is built (`attnc-ir`), not here.

pub mod ast;
pub mod diagnostic;
pub mod parse;
pub mod print_ast;
pub mod source;

pub use diagnostic::{Diagnostic, Label, render_all};
pub use source::{FileId, Sources, Span};

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
