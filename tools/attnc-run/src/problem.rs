//! Why a run stopped, and with which exit code: the one error type of `attnc-run`.
//!
//! Problems of one stage (every bad input, say) are gathered and reported together, each as
//! `error: …` with its notes, as `attnc` prints its diagnostics.

use attnc_device::DeviceError;
use std::fmt;

/// One thing that is wrong, in words the user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub notes: Vec<String>,
}

impl Problem {
    pub fn new(message: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            notes: Vec::new(),
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Problem {
        self.notes.push(note.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        for note in &self.notes {
            write!(f, "\n  = note: {note}")?;
        }
        Ok(())
    }
}

/// What kind of failure ended the run; each has its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The bundle, the input or reference files, or an output path: exit 1.
    Input,
    /// `--check` found an output off the reference: exit 3.
    Check,
    /// No driver, a load or launch failure, a kernel's status error: exit 4.
    Device,
}

impl FailureKind {
    /// 2 is clap's, for usage errors.
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Input => 1,
            FailureKind::Check => 3,
            FailureKind::Device => 4,
        }
    }
}

/// A run that ended early, with every problem found.
#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub problems: Vec<Problem>,
}

impl Failure {
    pub fn input(problems: Vec<Problem>) -> Failure {
        Failure {
            kind: FailureKind::Input,
            problems,
        }
    }

    pub fn one(kind: FailureKind, problem: Problem) -> Failure {
        Failure {
            kind,
            problems: vec![problem],
        }
    }
}

impl From<DeviceError> for Failure {
    /// A call the device refuses for its inputs, or a bundle for another machine, is the
    /// caller's to fix (1); everything else happened in the driver or the kernel (4).
    fn from(e: DeviceError) -> Failure {
        let kind = match e {
            DeviceError::Input(_) | DeviceError::WrongTarget { .. } => FailureKind::Input,
            _ => FailureKind::Device,
        };
        Failure::one(kind, Problem::new(e.to_string()))
    }
}
