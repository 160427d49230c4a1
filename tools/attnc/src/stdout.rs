//! Writing dumps and results to stdout. `print!` panics when the reader has gone away
//! (`attnc build … | head -1`); here a closed pipe ends the process quietly with success, as
//! the reader asked for no more, and any other write failure is a run failure.

use std::fmt::Arguments;
use std::io::{ErrorKind, Write};

/// Writes to stdout, ending the process if stdout is closed or fails.
pub fn write(text: Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(crate::exit_code::RUN_FAILURE.into());
    }
}

/// `print!` that survives a closed stdout.
macro_rules! out {
    ($($t:tt)*) => { $crate::stdout::write(format_args!($($t)*)) };
}

/// `println!` that survives a closed stdout.
macro_rules! outln {
    () => { $crate::stdout::write(format_args!("\n")) };
    ($($t:tt)*) => {{
        $crate::stdout::write(format_args!($($t)*));
        $crate::stdout::write(format_args!("\n"));
    }};
}

pub(crate) use {out, outln};
