//! `attnc`: the command-line compiler. Dumps go to stdout, diagnostics to stderr, and any error
//! exits non-zero.

mod bench_command;
mod build_command;
mod cpu_device;
mod device_choice;
mod gpu_device;
mod output_format;
mod plan_command;
mod plan_work;
mod progress;
mod report;
mod run_command;
mod shape_arg;
mod tensor_inputs;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "attnc",
    version,
    about = "A compiler for attention mechanisms written in .attn"
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    report::configure(cli.color, cli.error_format);
    let result = match &cli.command {
        Command::Build(args) => build_command::run(args),
        Command::Run(args) => run_command::run(args),
        Command::Plan(args) => plan_command::run(args, &plan_work::GraphWorkSource::default()),
        Command::Bench(args) => bench_command::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Reported>() => ExitCode::FAILURE,
        Err(e) => {
            report::report_error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
