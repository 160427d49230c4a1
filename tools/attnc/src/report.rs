//! Where diagnostics go: stderr, as text for people (coloured on a terminal, following
//! `--color` and `NO_COLOR`) or as one JSON object per line for programs (`--error-format
//! json`, rustc's shape). Set once by `main` from the global flags; every command reports
//! through [`report`] and [`report_error`].

use attnc_frontend::{Diagnostic, Sources};
use clap::ValueEnum;
use std::io::IsTerminal;
use std::sync::OnceLock;

/// `--color`: whether diagnostics and the `error:` prefix are coloured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// When stderr is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    Always,
    Never,
}

/// `--error-format`: how diagnostics are written on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ErrorFormat {
    /// `file:line:col` with the source line and a caret.
    #[default]
    Human,
    /// One JSON object per line, with the fields of rustc's `--error-format=json` (message,
    /// level, spans with file, line, column and byte offsets, children for notes, rendered).
    Json,
}

struct Settings {
    colour: bool,
    format: ErrorFormat,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Fixes the settings for this process; later calls are ignored.
pub fn configure(color: ColorChoice, format: ErrorFormat) {
    let colour = match color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    let _ = SETTINGS.set(Settings { colour, format });
}

fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| Settings {
        colour: false,
        format: ErrorFormat::Human,
    })
}

/// Prints diagnostics on stderr and returns the marker error that says they were printed.
pub fn report(diags: &[Diagnostic], sources: &Sources) -> anyhow::Error {
    warn(diags, sources);
    anyhow::Error::new(crate::Reported)
}

/// Prints diagnostics on stderr (warnings, after which the command goes on).
pub fn warn(diags: &[Diagnostic], sources: &Sources) {
    let s = settings();
    let mut out = String::new();
    for d in diags {
        match s.format {
            ErrorFormat::Human => {
                out.push_str(&attnc_frontend::render_styled(d, sources, s.colour))
            }
            ErrorFormat::Json => {
                out.push_str(&attnc_frontend::to_json(d, sources).to_string());
                out.push('\n');
            }
        }
    }
    eprint!("{out}");
}

/// Prints an error that has no place in a source file (a file that cannot be read, a bad
/// flag value, a device failure) in the chosen format.
pub fn report_error(message: &str) {
    let s = settings();
    match s.format {
        ErrorFormat::Human if s.colour => eprintln!("\u{1b}[1;31merror\u{1b}[0m: {message}"),
        ErrorFormat::Human => eprintln!("error: {message}"),
        ErrorFormat::Json => eprintln!(
            "{}",
            attnc_frontend::to_json(&Diagnostic::global(message), &Sources::new())
        ),
    }
}
