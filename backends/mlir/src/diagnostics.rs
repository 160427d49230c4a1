//! Collects MLIR's diagnostics so every failure of the MLIR edge carries MLIR's own message.
//!
//! Without a handler MLIR prints diagnostics to stderr and the C API only answers "failed". The
//! handler renders each diagnostic like `mlir-opt` does (`loc: error: message`, then its notes)
//! into a log that the session drains after each operation.

use melior::{
    Context,
    diagnostic::{Diagnostic, DiagnosticSeverity},
};
use std::sync::{Arc, Mutex, PoisonError};

/// The diagnostics MLIR emitted since the last `take`.
///
/// A mutex, not a `RefCell`: MLIR may run nested pass managers on worker threads, and although
/// it replays their diagnostics on the calling thread, the log should not depend on that.
#[derive(Debug, Clone, Default)]
pub(crate) struct DiagnosticLog(Arc<Mutex<Vec<String>>>);

impl DiagnosticLog {
    /// Attaches a handler to `context` that records every diagnostic here and marks it handled,
    /// so nothing reaches stderr. The handler lives as long as the context.
    pub(crate) fn attach(&self, context: &Context) {
        let log = self.clone();
        context.attach_diagnostic_handler(move |diagnostic| {
            log.push(render(&diagnostic));
            true
        });
    }

    /// Removes and returns what was logged, one diagnostic per line group.
    pub(crate) fn take(&self) -> String {
        let mut entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let text = entries.join("\n");
        entries.clear();
        text
    }

    /// Forgets what was logged, so the next failure reports only its own diagnostics.
    pub(crate) fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn push(&self, entry: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
    }
}

/// Renders a diagnostic and its notes as `mlir-opt` would: `location: severity: message`.
fn render(diagnostic: &Diagnostic) -> String {
    let mut text = format!(
        "{}: {}: {}",
        location(diagnostic),
        severity(diagnostic.severity()),
        diagnostic
    );
    for index in 0..diagnostic.note_count() {
        if let Ok(note) = diagnostic.note(index) {
            let message = shorten(&note.to_string());
            text.push_str(&format!("\n  {}: note: {message}", location(&note)));
        }
    }
    text
}

/// MLIR attaches the whole failing op to some errors ("see current operation"), which for a
/// function is the entire kernel in generic form; the location already points at it, so keep
/// only the start.
fn shorten(message: &str) -> String {
    const KEPT_LINES: usize = 8;
    let lines = message.lines().count();
    if lines <= KEPT_LINES {
        return message.to_owned();
    }
    let kept: Vec<&str> = message.lines().take(KEPT_LINES).collect();
    format!(
        "{}\n  ... ({} more lines)",
        kept.join("\n"),
        lines - KEPT_LINES
    )
}

/// MLIR prints locations as `loc("-":3:7)`; the `-` is the unnamed buffer that text is parsed
/// from. Strip the wrapper so the message reads `3:7: error: ...`.
fn location(diagnostic: &Diagnostic) -> String {
    let printed = diagnostic.location().to_string();
    let inner = printed
        .strip_prefix("loc(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or(&printed);
    inner
        .strip_prefix("\"-\":")
        .unwrap_or(inner)
        .replace('"', "")
}

fn severity(severity: DiagnosticSeverity) -> &'static str {
    match severity {
        DiagnosticSeverity::Error => "error",
        DiagnosticSeverity::Warning => "warning",
        DiagnosticSeverity::Note => "note",
        DiagnosticSeverity::Remark => "remark",
    }
}
