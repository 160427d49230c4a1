//! Rendering diagnostics: for people with codespan-reporting as `file:line:col` with a caret
//! under the cause (colour only when asked, so snapshots and logs stay plain), and for programs
//! as one JSON object per diagnostic in the shape of rustc's `--error-format=json`.

use attnc_source::{Diagnostic, Level, Sources};
use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;
use codespan_reporting::term::termcolor::Ansi;

/// Renders one diagnostic without colour, so the text is stable for snapshots and log files.
pub fn render(d: &Diagnostic, sources: &Sources) -> String {
    render_styled(d, sources, false)
}

/// Renders one diagnostic, with ANSI colours when `colour` is set (a terminal that wants them).
pub fn render_styled(d: &Diagnostic, sources: &Sources, colour: bool) -> String {
    let labels = d
        .labels
        .iter()
        .map(|l| {
            let style = if l.primary {
                cs::LabelStyle::Primary
            } else {
                cs::LabelStyle::Secondary
            };
            cs::Label::new(style, l.span.file.index(), l.span.range()).with_message(&l.message)
        })
        .collect();
    let diagnostic = match d.level {
        Level::Error => cs::Diagnostic::error(),
        Level::Warning => cs::Diagnostic::warning(),
    }
    .with_message(&d.message)
    .with_labels(labels)
    .with_notes(d.notes.clone());
    let mut files = SimpleFiles::new();
    for (_, name, text) in sources.files() {
        files.add(name, text);
    }
    let config = term::Config::default();
    let rendered = if colour {
        let mut out = Ansi::new(Vec::new());
        term::emit_to_write_style(&mut out, &config, &files, &diagnostic)
            .map(|()| String::from_utf8_lossy(&out.into_inner()).into_owned())
    } else {
        let mut out = String::new();
        term::emit_to_string(&mut out, &config, &files, &diagnostic).map(|()| out)
    };
    // Only an error if a span lies outside its file, which is a compiler bug; still say what
    // went wrong rather than hide the user's error.
    rendered.unwrap_or_else(|_| format!("{}: {}\n", d.level.name(), d.message))
}

/// Renders a list of diagnostics, one after the other.
pub fn render_all(diagnostics: &[Diagnostic], sources: &Sources) -> String {
    diagnostics.iter().map(|d| render(d, sources)).collect()
}

/// One diagnostic as JSON, field for field like rustc's `--error-format=json`: `message`,
/// `level`, `spans` (file, byte offsets, 1-based lines and columns, whether primary, the label),
/// `children` (the notes) and `rendered` (the plain text a person would see).
pub fn to_json(d: &Diagnostic, sources: &Sources) -> serde_json::Value {
    let spans: Vec<serde_json::Value> = d
        .labels
        .iter()
        .map(|l| {
            let (line_start, column_start) = sources.line_col(l.span.file, l.span.start);
            let (line_end, column_end) = sources.line_col(l.span.file, l.span.end);
            serde_json::json!({
                "file_name": sources.name(l.span.file),
                "byte_start": l.span.start,
                "byte_end": l.span.end,
                "line_start": line_start,
                "line_end": line_end,
                "column_start": column_start,
                "column_end": column_end,
                "is_primary": l.primary,
                "label": l.message,
            })
        })
        .collect();
    let children: Vec<serde_json::Value> = d
        .notes
        .iter()
        .map(|n| serde_json::json!({ "message": n, "level": "note", "spans": [], "children": [] }))
        .collect();
    serde_json::json!({
        "$message_type": "diagnostic",
        "message": d.message,
        "code": null,
        "level": d.level.name(),
        "spans": spans,
        "children": children,
        "rendered": render(d, sources),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use attnc_source::Span;

    #[test]
    fn json_has_rustc_fields_and_colour_is_only_on_request() {
        let mut sources = Sources::new();
        let file = sources.add("k.attn", "kernel k {\n  bad;\n}\n");
        let d = Diagnostic::error("unknown name `bad`", Span::new(file, 13, 16), "here")
            .with_note("a note");
        let j = to_json(&d, &sources);
        assert_eq!(j["level"], "error");
        assert_eq!(j["spans"][0]["line_start"], 2);
        assert_eq!(j["spans"][0]["column_start"], 3);
        assert_eq!(j["spans"][0]["column_end"], 6);
        assert_eq!(j["spans"][0]["byte_start"], 13);
        assert_eq!(j["children"][0]["message"], "a note");
        assert!(!render(&d, &sources).contains('\u{1b}'));
        assert!(render_styled(&d, &sources, true).contains('\u{1b}'));
    }
}
