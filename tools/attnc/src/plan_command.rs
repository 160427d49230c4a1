//! `attnc plan MODEL --devices PROFILE`: places a model's pipeline stages and attention heads
//! on described devices and prints the plan (text or JSON) on stdout; `--svg` also writes the
//! timeline, `--compare` adds the comparison with the even-split and single-device baselines.
//!
//! Attention cost comes from the caller's work source (the compiler's graph IR), so this
//! file only reads arguments and prints what `attnc_planner` returns.

use crate::stdout::{out, outln};
use std::io::IsTerminal;
use std::path::PathBuf;

use crate::output_format::OutputFormat;
use anyhow::Context;
use attnc_planner::{
    AttentionWorkSource, Model, ModelError, PlanError, Profile, ProfileError, SearchOptions,
};
use clap::Args;

#[derive(Args)]
pub struct PlanArgs {
    /// The model description (TOML).
    pub model: PathBuf,
    /// The device profile (TOML).
    #[arg(long)]
    pub devices: PathBuf,
    /// What stdout holds: text, or the plan as one JSON document (the runtime reads it).
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Also write the SVG timeline to this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Also print the plan beside the even-split and single-device baselines.
    #[arg(long)]
    pub compare: bool,
}

pub fn run(args: &PlanArgs, work: &dyn AttentionWorkSource) -> anyhow::Result<()> {
    // stdout must stay one JSON document for the programs that read it.
    if args.compare && args.format == OutputFormat::Json {
        return Err(crate::usage(anyhow::anyhow!(
            "--compare prints a table: use it with --format text"
        )));
    }
    let model = Model::load(&args.model).map_err(|e| match e {
        ModelError::Read { .. } => crate::usage(e),
        _ => crate::user_error(e),
    })?;
    let profile = Profile::load(&args.devices).map_err(|e| match e {
        ProfileError::Read { .. } => crate::usage(e),
        _ => crate::user_error(e),
    })?;
    let options = SearchOptions {
        progress: std::io::stderr().is_terminal(),
    };
    let plan = attnc_planner::plan(&model, &profile, work, &options).map_err(plan_error)?;
    match args.format {
        OutputFormat::Text => out!("{}", attnc_planner::render_text(&plan)),
        OutputFormat::Json => outln!("{}", plan.to_json()?),
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, attnc_planner::render_svg(&plan))
            .with_context(|| format!("cannot write the SVG timeline to {}", path.display()))?;
    }
    if args.compare {
        let progress = crate::progress::Progress::spinner(
            "planning the even-split and single-device baselines",
        );
        let rows = attnc_planner::compare(&[model], &[profile], work).map_err(plan_error)?;
        drop(progress);
        out!("\n{}", attnc_planner::render_comparison(&rows));
    }
    Ok(())
}

/// The exit status of a failed plan: a kernel that does not compile or does not match the
/// model is the user's to fix (1), a model too large for the devices is a want of memory (4),
/// and a placement that breaks its own rules is a bug (101).
fn plan_error(e: PlanError) -> anyhow::Error {
    match e {
        PlanError::Work(_) => crate::user_error(e),
        PlanError::DoesNotFit { .. } => e.into(),
        PlanError::BadPlacement(_) => crate::internal(e),
    }
}
