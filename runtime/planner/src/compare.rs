//! Planner report: the plan beside two baselines, with the ratios Confidant reports.
//!
//! Baselines, priced by the same cost model as the plan:
//! - **even split**: every device its own stage, in profile order, the layers dealt out
//!   evenly (the first stages take one more when they do not divide), all heads of a
//!   stage on its one device;
//! - **single device**: everything on the fastest device that can hold it.
//!
//! Each baseline gets its best micro-batch count. The ratios are the baseline's time per
//! token over the plan's (speedup) and the baseline's largest per-device memory over the
//! plan's (memory reduction).

use std::fmt::Write;

use crate::devices::Profile;
use crate::evaluate::evaluate_placement;
use crate::model::Model;
use crate::plan::{Placement, Plan, PlanError, Shortage, StagePlacement, gib};
use crate::render_text::seconds;
use crate::search::{SearchOptions, divisors, plan};
use crate::work::AttentionWorkSource;

/// How one strategy fared.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Fits {
        /// What the strategy placed, e.g. "2 stages, 8 micro-batches" or a device name.
        summary: String,
        time_per_token_s: f64,
        /// The largest memory use of any one device, and that device.
        peak_bytes: f64,
        peak_device: String,
    },
    /// Why it does not fit.
    DoesNotFit(String),
}

/// One model on one profile: the plan and the two baselines.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub profile: String,
    pub model: String,
    pub planner: Outcome,
    pub even_split: Outcome,
    pub single_device: Outcome,
}

/// The table's short form of a memory shortage: "s23 short 1.20 GiB, …".
fn short(shortages: &[Shortage]) -> String {
    shortages
        .iter()
        .map(|s| {
            format!(
                "{} short {}",
                s.pool,
                gib(s.needed_bytes - s.capacity_bytes)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn micro_batches(m: u64) -> String {
    if m == 1 {
        "1 micro-batch".to_string()
    } else {
        format!("{m} micro-batches")
    }
}

fn outcome(plan: &Plan, summary: String) -> Outcome {
    let peak = plan
        .memory
        .iter()
        .reduce(|a, b| if b.used_bytes > a.used_bytes { b } else { a });
    Outcome::Fits {
        summary,
        time_per_token_s: plan.time_per_token_s,
        peak_bytes: peak.map_or(0.0, |m| m.used_bytes),
        peak_device: peak.map_or(String::new(), |m| m.device.clone()),
    }
}

/// The fastest of some placements (one per micro-batch count); `Ok(Err(why))` if none fits.
fn fastest(
    model: &Model,
    profile: &Profile,
    work: &dyn AttentionWorkSource,
    placements: impl Iterator<Item = Placement>,
) -> Result<Result<Plan, String>, PlanError> {
    let mut best: Option<Plan> = None;
    let mut why = String::from("nothing to place");
    for p in placements {
        match evaluate_placement(model, profile, work, &p) {
            Ok(plan) => {
                if best.as_ref().is_none_or(|b| plan.total_s < b.total_s) {
                    best = Some(plan);
                }
            }
            Err(PlanError::DoesNotFit { shortages, .. }) => why = short(&shortages),
            Err(e) => return Err(e),
        }
    }
    Ok(best.ok_or(why))
}

fn even_split(
    model: &Model,
    profile: &Profile,
    work: &dyn AttentionWorkSource,
) -> Result<Outcome, PlanError> {
    let layers = model.layers();
    let n = profile.devices.len().min(layers);
    let stages: Vec<StagePlacement> = (0..n)
        .map(|d| StagePlacement {
            devices: vec![d],
            layers: d * layers / n..(d + 1) * layers / n,
            kv_groups: vec![model.kv_heads],
        })
        .collect();
    let placements = divisors(model.batch).into_iter().map(|m| Placement {
        micro_batches: m,
        stages: stages.clone(),
    });
    Ok(match fastest(model, profile, work, placements)? {
        Ok(plan) => {
            let summary = format!("{n} stages, {}", micro_batches(plan.micro_batches));
            outcome(&plan, summary)
        }
        Err(why) => Outcome::DoesNotFit(why),
    })
}

fn single_device(
    model: &Model,
    profile: &Profile,
    work: &dyn AttentionWorkSource,
) -> Result<Outcome, PlanError> {
    let mut best: Option<Plan> = None;
    for d in 0..profile.devices.len() {
        let placements = divisors(model.batch).into_iter().map(|m| Placement {
            micro_batches: m,
            stages: vec![StagePlacement {
                devices: vec![d],
                layers: 0..model.layers(),
                kv_groups: vec![model.kv_heads],
            }],
        });
        if let Ok(plan) = fastest(model, profile, work, placements)?
            && best.as_ref().is_none_or(|b| plan.total_s < b.total_s)
        {
            best = Some(plan);
        }
    }
    Ok(match best {
        Some(plan) => {
            let device = plan.stages[0].primary.clone();
            outcome(
                &plan,
                format!("{device}, {}", micro_batches(plan.micro_batches)),
            )
        }
        None => Outcome::DoesNotFit("no single device holds it".to_string()),
    })
}

/// Compares the planner with the baselines for every model on every profile.
pub fn compare(
    models: &[Model],
    profiles: &[Profile],
    work: &dyn AttentionWorkSource,
) -> Result<Vec<Comparison>, PlanError> {
    let mut rows = Vec::new();
    for profile in profiles {
        for model in models {
            let planner = match plan(model, profile, work, &SearchOptions::default()) {
                Ok(p) => {
                    let stages = match p.stages.len() {
                        1 => "1 stage".to_string(),
                        n => format!("{n} stages"),
                    };
                    let summary = format!("{stages}, {}", micro_batches(p.micro_batches));
                    outcome(&p, summary)
                }
                Err(PlanError::DoesNotFit { shortages, .. }) => {
                    Outcome::DoesNotFit(short(&shortages))
                }
                Err(e) => return Err(e),
            };
            rows.push(Comparison {
                profile: profile.name.clone(),
                model: model.name.clone(),
                planner,
                even_split: even_split(model, profile, work)?,
                single_device: single_device(model, profile, work)?,
            });
        }
    }
    Ok(rows)
}

/// A strategy's speed relative to the planner's, spelt out so a slower baseline never reads
/// as a speedup: "0.013x (75.65x slower)", "1.25x (1.25x faster)", "1.00x".
fn relative_speed(planner_s: f64, strategy_s: f64) -> String {
    let speed = planner_s / strategy_s;
    let shown = if speed < 0.1 {
        format!("{speed:.3}x")
    } else {
        format!("{speed:.2}x")
    };
    if format!("{speed:.2}") == "1.00" {
        shown
    } else if speed < 1.0 {
        format!("{shown} ({:.2}x slower)", 1.0 / speed)
    } else {
        format!("{shown} ({speed:.2}x faster)")
    }
}

/// The comparison as a text table, one line per strategy.
pub fn render_comparison(rows: &[Comparison]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, hence the ignored results below.
    let _ = writeln!(
        out,
        "{:18} {:15} {:14} {:34} {:>10} {:>22} {:>23} {:>9}",
        "profile",
        "model",
        "strategy",
        "placement",
        "per token",
        "peak memory (device)",
        "speed vs planner",
        "mem. red."
    );
    for row in rows {
        let reference = match &row.planner {
            Outcome::Fits {
                time_per_token_s,
                peak_bytes,
                ..
            } => Some((*time_per_token_s, *peak_bytes)),
            Outcome::DoesNotFit(_) => None,
        };
        for (name, o) in [
            ("planner", &row.planner),
            ("even split", &row.even_split),
            ("single device", &row.single_device),
        ] {
            let cells = match o {
                Outcome::Fits {
                    summary,
                    time_per_token_s,
                    peak_bytes,
                    peak_device,
                } => {
                    let ratio = |num: f64, den: f64| format!("{:.2}x", num / den);
                    let (speed, memory) = match reference {
                        Some((t, m)) => {
                            (relative_speed(t, *time_per_token_s), ratio(*peak_bytes, m))
                        }
                        None => ("-".to_string(), "-".to_string()),
                    };
                    format!(
                        "{summary:34} {:>10} {:>22} {speed:>23} {memory:>9}",
                        seconds(*time_per_token_s),
                        format!("{} ({peak_device})", gib(*peak_bytes))
                    )
                }
                Outcome::DoesNotFit(why) => format!("does not fit: {why}"),
            };
            let _ = writeln!(out, "{:18} {:15} {name:14} {cells}", row.profile, row.model);
        }
    }
    let _ = writeln!(
        out,
        "speed vs planner: the planner's time per token over the strategy's (below 1: the \
         strategy is slower); mem. red.: its largest per-device memory over the planner's. \
         Time per token: one forward pass of the whole batch over batch x seq tokens."
    );
    out
}

#[cfg(test)]
mod speed_tests {
    use super::relative_speed;

    #[test]
    fn slower_baselines_say_slower() {
        assert_eq!(relative_speed(1.0, 75.65), "0.013x (75.65x slower)");
        assert_eq!(relative_speed(1.0, 2.7), "0.37x (2.70x slower)");
        assert_eq!(relative_speed(1.25, 1.0), "1.25x (1.25x faster)");
        assert_eq!(relative_speed(1.0, 1.0), "1.00x");
    }
}
