//! `attnc`: the command-line compiler. Dumps go to stdout, diagnostics to stderr, and every
//! failure exits with the code of its kind (see [`exit_code`]).

mod bench_command;
mod build_command;
mod cpu_device;
mod device_choice;
mod gpu_device;
mod ice;
mod mask_pairs;
mod output_format;
mod overflow_check;
mod plan_command;
mod plan_work;
mod progress;
mod report;
mod run_command;
mod run_memory;
mod shape_arg;
mod stdout;
mod tensor_inputs;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "attnc",
    version,
    about = "A compiler for attention mechanisms written in .attn",
    after_help = "Exit status:\n  0    success (also when stdout is closed early, as by `| head`)\n  1    the program or its inputs are wrong (a diagnostic says where), or a model or profile file\n  2    the command line is wrong: a flag, flags that do not go together, a FILE, MODEL, --devices or --inputs file that cannot be read\n  3    --check found a difference from the reference interpreter\n  4    a device or runtime error (no driver, a file that cannot be written, memory; a model that does not fit its devices)\n  101  internal compiler error: a bug in attnc, please report it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Colour in diagnostics and errors.
    #[arg(
        long,
        value_enum,
        global = true,
        default_value = "auto",
        help_heading = "Global options"
    )]
    color: report::ColorChoice,
    /// How diagnostics and errors are written on stderr (docs/output-formats.md).
    #[arg(
        long,
        value_enum,
        global = true,
        default_value = "human",
        help_heading = "Global options"
    )]
    error_format: report::ErrorFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a .attn file and print the requested stages.
    Build(build_command::BuildArgs),
    /// Run a .attn kernel on inputs and print a checksum of each output and the time taken.
    Run(run_command::RunArgs),
    /// Place a model's pipeline stages and attention heads on described devices.
    Plan(plan_command::PlanArgs),
    /// Time the compiled CPU kernel, and optionally the reference and an unfused loop.
    ///
    /// GFLOP/s counts useful work: the scoring and aggregation contractions on the (i, j) pairs
    /// the mask keeps (measured from the indices, or for a mask that reads input data such as
    /// document ids, on this run's inputs, sampled evenly). A recurrence with a chunked form
    /// counts that form's contractions at the chunk length the tiling chose (intra-chunk
    /// scores and sums over the steps s <= t, products with the carried state, state updates,
    /// and the delta rule's correction), the same count with --scan; one with no chunked form
    /// counts the work of its steps.
    Bench(bench_command::BenchArgs),
}

/// A failure already explained on stderr (a diagnostic), as opposed to an unexpected error.
#[derive(Debug)]
pub struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "errors were reported")
    }
}

impl std::error::Error for Reported {}

/// The exit status of each kind of failure, so scripts can tell a wrong program from a wrong
/// command line, a failed run and a bug in attnc (listed in `attnc --help`).
pub mod exit_code {
    /// The program or its inputs are wrong; a diagnostic says where.
    pub const USER_ERROR: u8 = 1;
    /// The command line is wrong (clap uses the same code for its own errors).
    pub const USAGE: u8 = 2;
    /// `--check` found a difference from the reference interpreter.
    pub const CHECK_FAILED: u8 = 3;
    /// A run failed for want of something outside the program: a device or driver, a file,
    /// memory.
    pub const RUN_FAILURE: u8 = 4;
    /// A bug in attnc: an internal compiler error or a panic.
    pub const INTERNAL: u8 = 101;
}

/// An error tagged with the exit status of its kind; untagged errors are run failures.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Failure {}

/// Tags a command-line mistake (exit status 2).
pub fn usage(error: impl Into<anyhow::Error>) -> anyhow::Error {
    Failure {
        code: exit_code::USAGE,
        error: error.into(),
    }
    .into()
}

/// Tags a mistake in a file the command reads, explained by its message rather than a
/// located diagnostic, such as a model file's field (exit status 1).
pub fn user_error(error: impl Into<anyhow::Error>) -> anyhow::Error {
    Failure {
        code: exit_code::USER_ERROR,
        error: error.into(),
    }
    .into()
}

/// Tags a compiler bug (exit status 101).
pub fn internal(error: impl Into<anyhow::Error>) -> anyhow::Error {
    Failure {
        code: exit_code::INTERNAL,
        error: error.into(),
    }
    .into()
}

/// The stack of the thread that compiles: the parser and the builder bound expression depth,
/// and this leaves room for the passes' recursive walks over the deepest trees they allow, in
/// debug builds too. Only what is touched is ever committed.
const STACK_BYTES: usize = 256 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    report::configure(cli.color, cli.error_format);
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let place = info
            .location()
            .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        eprintln!(
            "internal compiler error: attnc panicked{place}: {message}\n\
             note: this is a bug in attnc; please report it with the command and the .attn file"
        );
    }));
    let worker = std::thread::Builder::new()
        .name("attnc".to_string())
        .stack_size(STACK_BYTES)
        .spawn(move || run_command_line(&cli));
    match worker.map(|w| w.join()) {
        Ok(Ok(code)) => code,
        // The hook has already explained the panic.
        Ok(Err(_)) => ExitCode::from(exit_code::INTERNAL),
        Err(e) => {
            eprintln!("error: cannot start the compiler thread: {e}");
            ExitCode::from(exit_code::RUN_FAILURE)
        }
    }
}

fn run_command_line(cli: &Cli) -> ExitCode {
    // Debug builds only: the tests' way to check that a panic reaches the user as an internal
    // compiler error with its exit status, not as Rust's panic message and backtrace hint.
    #[cfg(debug_assertions)]
    if std::env::var_os("ATTNC_DEBUG_PANIC").is_some() {
        panic!("ATTNC_DEBUG_PANIC is set");
    }
    let result = match &cli.command {
        Command::Build(args) => build_command::run(args),
        Command::Run(args) => run_command::run(args),
        Command::Plan(args) => plan_command::run(args, &plan_work::GraphWorkSource::default()),
        Command::Bench(args) => bench_command::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Reported>() => ExitCode::from(exit_code::USER_ERROR),
        Err(e) => match e.downcast::<Failure>() {
            Ok(f) => {
                report::report_error(&f.to_string());
                ExitCode::from(f.code)
            }
            Err(e) => {
                report::report_error(&format!("{e:#}"));
                ExitCode::from(exit_code::RUN_FAILURE)
            }
        },
    }
}
