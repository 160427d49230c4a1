//! Rendering diagnostics with codespan-reporting as `file:line:col` with a caret under the cause.

use attnc_source::{Diagnostic, Sources};
use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;

/// Renders one diagnostic without colour, so the text is stable for snapshots and log files.
pub fn render(d: &Diagnostic, sources: &Sources) -> String {
    {
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
        let diagnostic = cs::Diagnostic::error()
            .with_message(&d.message)
            .with_labels(labels)
            .with_notes(d.notes.clone());
        let mut files = SimpleFiles::new();
        for (_, name, text) in sources.files() {
            files.add(name, text);
        }
        let mut out = String::new();
        let config = term::Config::default();
        if term::emit_to_string(&mut out, &config, &files, &diagnostic).is_err() {
            // Only reachable if a span lies outside its file, which is a compiler bug; still say
            // what went wrong rather than hide the user's error.
            out = format!("error: {}\n", d.message);
        }
        out
    }
}

/// Renders a list of diagnostics, one after the other.
pub fn render_all(diagnostics: &[Diagnostic], sources: &Sources) -> String {
    diagnostics.iter().map(|d| render(d, sources)).collect()
}
