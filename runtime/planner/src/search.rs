//! The planner's entry point: try every micro-batch count, search stages for each, keep the
//! fastest, and explain the failure when nothing fits.
//!
//! Micro-batches: the batch is cut into `m` equal micro-batches, `m` a divisor of the
//! batch. More micro-batches shorten the pipeline's fill and drain (the total is
//! `Σ t + (m − 1) · max t`, so the fill `Σ t` is paid once while each micro-batch adds
//! only the bottleneck) and need less activation memory, but every micro-batch reads all
//! weights again and pays every launch overhead and link latency again. The planner does
//! not guess the balance: it searches every divisor and keeps the fastest (the fewest
//! micro-batches among equals).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::devices::Profile;
use crate::evaluate::{evaluate, shortages, workload};
use crate::model::Model;
use crate::plan::{Placement, Plan, PlanError, StagePlacement};
use crate::stage_time::{Workload, fastest};
use crate::work::{AttentionWorkSource, WorkCache};

/// How the search reports on itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct SearchOptions {
    /// Draw a progress bar on stderr. It is drawn only when stderr is a terminal, so tests
    /// and pipes never see it.
    pub progress: bool,
}

/// The fastest plan for `model` on `profile` that fits in every device's memory.
pub fn plan(
    model: &Model,
    profile: &Profile,
    work: &dyn AttentionWorkSource,
    options: &SearchOptions,
) -> Result<Plan, PlanError> {
    let mut cache = WorkCache::new(work);
    let counts = divisors(model.batch);
    let progress = progress_bar(options, counts.len() as u64);
    // A failing work source is reported for the whole batch, whatever count comes first.
    workload(model, profile, &mut cache, 1)?;
    let mut best: Option<(f64, Workload, Placement)> = None;
    // The most micro-batches first: at scale they are usually fastest, and the best total
    // so far bounds the search of every later count. A later count that ties wins, so
    // among equals the fewest micro-batches are kept.
    for &m in counts.iter().rev() {
        let w = workload(model, profile, &mut cache, m)?;
        let known = best.as_ref().map_or(f64::INFINITY, |(t, _, _)| *t);
        if let Some((time, placement)) = crate::stages::best_placement(&w, known) {
            best = Some((time, w, placement));
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    match best {
        Some((_, w, placement)) => evaluate(&w, &placement),
        None => spread_thin(model, profile, &mut cache),
    }
}

fn progress_bar(options: &SearchOptions, steps: u64) -> ProgressBar {
    if !options.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    if let Ok(style) =
        ProgressStyle::with_template("planning {bar:40} {pos}/{len} micro-batch counts")
    {
        bar.set_style(style);
    }
    bar
}

/// The micro-batch counts a batch of `n` allows.
pub(crate) fn divisors(n: u64) -> Vec<u64> {
    (1..=n).filter(|&d| n.is_multiple_of(d)).collect()
}

/// When the search finds nothing that fits, try the placement that spreads the model as
/// thinly as the planner can: the most micro-batches (the least activation memory), one
/// stage per pool, layers cut in proportion to the pools' capacity, and each stage on its
/// fastest device (helpers would each add a copy of the activations). If even that
/// overfills a pool, the error says which pools lack how much.
fn spread_thin(model: &Model, profile: &Profile, cache: &mut WorkCache) -> Result<Plan, PlanError> {
    let w = workload(model, profile, cache, model.batch)?;
    let total: f64 = profile.pools.iter().map(|p| p.capacity).sum();
    let layers = model.layers();
    let mut stages = Vec::new();
    let mut capacity_before = 0.0;
    let mut first = 0;
    for (k, pool) in profile.pools.iter().enumerate() {
        capacity_before += pool.capacity;
        let end = if k + 1 == profile.pools.len() {
            layers
        } else {
            ((capacity_before / total * layers as f64).round() as usize).clamp(first, layers)
        };
        if end > first {
            let devices: Vec<usize> = pool.devices.clone().collect();
            let mut kv_groups = vec![0; devices.len()];
            kv_groups[fastest(&w, &devices)] = model.kv_heads;
            stages.push(StagePlacement {
                devices,
                layers: first..end,
                kv_groups,
            });
            first = end;
        }
    }
    let placement = Placement {
        micro_batches: model.batch,
        stages,
    };
    let plan = evaluate(&w, &placement)?;
    let shortages = shortages(profile, &plan);
    if shortages.is_empty() {
        return Ok(plan);
    }
    Err(PlanError::DoesNotFit {
        model: model.name.clone(),
        profile: profile.name.clone(),
        context: format!(
            "no stage cut fits; with layers cut in proportion to memory and {} micro-batches",
            model.batch
        ),
        shortages,
    })
}
