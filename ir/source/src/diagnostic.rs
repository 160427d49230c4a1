//! The one diagnostic type of the compiler: a message, labelled spans and notes. Every stage that
//! can blame the user's source (parser, name resolution, type and shape checking, binding
//! shapes, lowering) reports through it; the front end renders it.

use crate::source::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
    pub primary: bool,
}

/// Whether a diagnostic stops the command (an error) or only informs (a warning: the command
/// goes on, e.g. a run whose f32 arithmetic may overflow on these inputs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Level {
    #[default]
    Error,
    Warning,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub level: Level,
    pub message: String,
    pub labels: Vec<Label>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`; `label` is written under the caret.
    pub fn error(message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Diagnostic {
            level: Level::Error,
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
            level: Level::Error,
            message: message.into(),
            labels: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A warning at `span`: said, and the command goes on.
    pub fn warning(message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Diagnostic {
            level: Level::Warning,
            ..Diagnostic::error(message, span, label)
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
}
