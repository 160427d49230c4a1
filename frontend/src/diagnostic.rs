//! The one diagnostic type of the compiler: a message, labelled spans and notes, rendered with
//! codespan-reporting as `file:line:col` with a caret. Every stage that can blame the user's source
//! (parser, name resolution, type and shape checking, binding shapes) reports through it.

use crate::source::{Sources, Span};
use codespan_reporting::diagnostic as cs;
use codespan_reporting::term;

#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
    pub primary: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub message: String,
    pub labels: Vec<Label>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`; `label` is written under the caret.
    pub fn error(message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            labels: vec![Label {
                span,
                message: label.into(),
                primary: true,
            }],
            notes: Vec::new(),
        }
    }

    /// An error not tied to a place in the source (e.g. a missing `--shape` value).
    pub fn global(message: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            labels: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a secondary place, e.g. where a conflicting fact was first established.
    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: label.into(),
            primary: false,
        });
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Renders without colour, so the text is stable for snapshots and log files.
    pub fn render(&self, sources: &Sources) -> String {
        let labels = self
            .labels
            .iter()
            .map(|l| {
                let style = if l.primary {
                    cs::LabelStyle::Primary
                } else {
                    cs::LabelStyle::Secondary
                };
                cs::Label::new(style, l.span.file.0, l.span.range()).with_message(&l.message)
            })
            .collect();
        let diagnostic = cs::Diagnostic::error()
            .with_message(&self.message)
            .with_labels(labels)
            .with_notes(self.notes.clone());
        let mut out = String::new();
        let config = term::Config::default();
        if term::emit_to_string(&mut out, &config, sources.files(), &diagnostic).is_err() {
            // Only reachable if a span lies outside its file, which is a compiler bug; still say
            // what went wrong rather than hide the user's error.
            out = format!("error: {}\n", self.message);
        }
        out
    }
}

/// Renders a list of diagnostics, one after the other.
pub fn render_all(diagnostics: &[Diagnostic], sources: &Sources) -> String {
    diagnostics.iter().map(|d| d.render(sources)).collect()
}
