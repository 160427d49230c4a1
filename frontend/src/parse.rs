//! Parsing one source file into an AST, turning every lalrpop error into a [`Diagnostic`].
//! The grammar recovers at `;`, so one run reports several syntax errors.

use crate::ast::{Expr, ExprKind, MAX_EXPR_DEPTH, Program};
use attnc_source::{Diagnostic, FileId, MAX_SOURCE_BYTES, Sources, Span};
use lalrpop_util::{ErrorRecovery, ParseError, lexer::Token};

lalrpop_util::lalrpop_mod!(
    #[allow(clippy::all, clippy::pedantic, unused_parens, dead_code)]
    grammar
);

/// Errors raised by the grammar's own actions (the tokens were fine, their values are not).
#[derive(Clone, Debug, PartialEq)]
pub enum SyntaxError {
    IntTooLarge { start: usize, end: usize },
    FloatOutOfRange { start: usize, end: usize },
    TooDeep { start: usize, end: usize },
}

/// Builds an inner node of an expression, refusing it once the tree is deeper than
/// [`MAX_EXPR_DEPTH`]. Checked here, while the tree is built bottom-up, so no partial tree the
/// parser holds is ever deep enough to overflow the stack when it is walked or dropped.
pub(crate) fn nest<T>(
    kind: ExprKind,
    span: Span,
) -> Result<Expr, ParseError<usize, T, SyntaxError>> {
    let e = Expr::node(kind, span);
    if e.depth > MAX_EXPR_DEPTH {
        return Err(ParseError::User {
            error: SyntaxError::TooDeep {
                start: span.start as usize,
                end: span.end as usize,
            },
        });
    }
    Ok(e)
}

/// The parser, built once: building it compiles the lexer's regular expressions, which cost
/// more than parsing a kernel.
fn parser() -> &'static grammar::ProgramParser {
    static PARSER: std::sync::OnceLock<grammar::ProgramParser> = std::sync::OnceLock::new();
    PARSER.get_or_init(grammar::ProgramParser::new)
}

/// Parses `file`; on failure returns every syntax error found (at least one).
pub fn parse_file(sources: &Sources, file: FileId) -> Result<Program, Vec<Diagnostic>> {
    let text = sources.text(file);
    if text.len() > MAX_SOURCE_BYTES {
        return Err(vec![Diagnostic::global(format!(
            "{} is {} bytes long; the limit is {} bytes",
            sources.name(file),
            text.len(),
            MAX_SOURCE_BYTES
        ))]);
    }
    let mut recovered = Vec::new();
    let result = parser().parse(file, &mut recovered, text);
    let mut diagnostics: Vec<Diagnostic> = recovered
        .into_iter()
        .map(|ErrorRecovery { error, .. }| to_diagnostic(file, text, error))
        .collect();
    match result {
        Ok(program) if diagnostics.is_empty() => Ok(program),
        Ok(_) => Err(diagnostics),
        Err(error) => {
            diagnostics.push(to_diagnostic(file, text, error));
            Err(diagnostics)
        }
    }
}

fn to_diagnostic(
    file: FileId,
    text: &str,
    error: ParseError<usize, Token<'_>, SyntaxError>,
) -> Diagnostic {
    match error {
        ParseError::InvalidToken { location } => {
            let end = next_char_end(text, location);
            Diagnostic::error(
                format!("unexpected character `{}`", &text[location..end]),
                Span::new(file, location, end),
                "not part of the .attn language",
            )
        }
        ParseError::UnrecognizedEof { location, expected } => Diagnostic::error(
            "unexpected end of file",
            Span::new(file, location, location),
            format!("expected {}", describe_expected(&expected)),
        ),
        ParseError::UnrecognizedToken {
            token: (start, token, end),
            expected,
        } => match missing_semicolon(file, text, start, &expected) {
            // The statement ended on an earlier line: the missing `;` belongs there, not at
            // the next line's first token.
            Some(at) => Diagnostic::error(
                format!("expected `;`, found `{}`", token.1),
                at,
                "add `;` here",
            )
            .with_secondary(Span::new(file, start, end), "unexpected here"),
            None => Diagnostic::error(
                format!("unexpected `{}`", token.1),
                Span::new(file, start, end),
                format!("expected {}", describe_expected(&expected)),
            ),
        },
        ParseError::ExtraToken {
            token: (start, token, end),
        } => Diagnostic::error(
            format!("unexpected `{}` after the end of the program", token.1),
            Span::new(file, start, end),
            "expected nothing more",
        ),
        ParseError::User {
            error: SyntaxError::IntTooLarge { start, end },
        } => Diagnostic::error(
            "integer literal too large",
            Span::new(file, start, end),
            "does not fit in 64 bits",
        ),
        ParseError::User {
            error: SyntaxError::FloatOutOfRange { start, end },
        } => Diagnostic::error(
            "float literal out of range",
            Span::new(file, start, end),
            "not a finite 64-bit float",
        ),
        ParseError::User {
            error: SyntaxError::TooDeep { start, end },
        } => Diagnostic::error(
            format!("expression nested more than {MAX_EXPR_DEPTH} levels deep"),
            Span::new(file, start, end),
            "too deep",
        )
        .with_note("split it with `let`, e.g. sum a long chain of terms in parts"),
    }
}

/// Where a `;` is missing: the last character of the previous token, when `;` could have come
/// next and the unexpected token starts a later line. Comments (`#` to the end of the line) are
/// skipped.
fn missing_semicolon(file: FileId, text: &str, start: usize, expected: &[String]) -> Option<Span> {
    if !expected.iter().any(|e| e == "\";\"") {
        return None;
    }
    let before = &text[..start];
    let line_start = before.rfind('\n').map_or(0, |k| k + 1);
    if !before[line_start..].trim().is_empty() {
        return None;
    }
    let mut offset = line_start;
    for line in before[..line_start].lines().rev() {
        offset -= line.len() + 1;
        let code = line.split('#').next().unwrap_or("").trim_end();
        if !code.trim().is_empty() {
            let end = offset + code.len();
            let last = code.chars().next_back().map_or(1, char::len_utf8);
            return Some(Span::new(file, end - last, end));
        }
    }
    None
}

fn next_char_end(text: &str, at: usize) -> usize {
    text[at..].chars().next().map_or(at, |c| at + c.len_utf8())
}

/// Turns lalrpop's list of terminal names (`"\";\""`, `r#"..."#`) into a short readable phrase.
fn describe_expected(expected: &[String]) -> String {
    let mut names: Vec<String> = expected.iter().map(|e| readable_terminal(e)).collect();
    names.sort();
    names.dedup();
    // A long list of operators says no more than "an operator".
    let operators = names.iter().filter(|n| is_operator(n)).count();
    if names.len() > 6 && operators >= 3 {
        names.retain(|n| !is_operator(n));
        names.push("an operator".to_string());
    }
    match names.len() {
        0 => "something else".to_string(),
        1 => names.remove(0),
        n if n <= 6 => {
            let last = names.remove(n - 1);
            format!("{} or {}", names.join(", "), last)
        }
        _ => format!("one of {}", names.join(", ")),
    }
}

fn is_operator(name: &str) -> bool {
    const OPERATORS: &[&str] = &[
        "`+`", "`-`", "`*`", "`/`", "`//`", "`%`", "`@`", "`==`", "`!=`", "`<`", "`<=`", "`>`",
        "`>=`", "`&&`", "`||`", "`^`", "`**`", "`and`", "`or`",
    ];
    OPERATORS.contains(&name)
}

fn readable_terminal(terminal: &str) -> String {
    if terminal.starts_with("r#") {
        return match terminal {
            t if t.contains("A-Za-z") => "a name".to_string(),
            t if t.contains("eE") => "a number".to_string(),
            t if t.contains("0-9") => "an integer".to_string(),
            _ => "a token".to_string(),
        };
    }
    match terminal {
        "INT" => "an integer".to_string(),
        "FLOAT" => "a number".to_string(),
        t => format!("`{}`", t.trim_matches('"')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_error(text: &str) -> (Diagnostic, usize) {
        let mut sources = Sources::new();
        let file = sources.add("k.attn", text);
        let errors = parse_file(&sources, file).err().unwrap_or_default();
        let d = errors.into_iter().next().expect("a syntax error");
        let at = d.labels.first().map_or(0, |l| l.span.start as usize);
        (d, at)
    }

    #[test]
    fn a_missing_semicolon_is_reported_after_the_last_token_before_comments() {
        let text = "kernel k {\n  dim B, S  # sizes\n  # more\n\n  input q: f32[B, S];\n}\n";
        let (d, at) = first_error(text);
        assert_eq!(d.message, "expected `;`, found `input`");
        assert_eq!(&text[at..at + 1], "S", "reported at {at}");
        assert_eq!(at, text.find("S  #").unwrap_or(0));
    }

    #[test]
    fn an_error_inside_a_line_keeps_its_place() {
        let text = "kernel k {\n  dim B S;\n}\n";
        let (d, at) = first_error(text);
        assert!(d.message.starts_with("unexpected"), "{}", d.message);
        assert_eq!(at, text.find("S;").unwrap_or(0));
    }
}
