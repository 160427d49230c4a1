//! Planner output: a placement (what the search decides) and the plan (the placement with
//! every predicted time and byte), plus the planner's errors.
//!
//! The JSON form of [`Plan`] is `--emit plan --format json`; the runtime and other
//! programs read it, so its field names are part of the interface.

use std::ops::Range;

use serde::Serialize;
use thiserror::Error;

use crate::work::WorkError;

/// What a plan decides, with no numbers: the input of [`crate::evaluate_placement`]. The
/// search produces one; baselines and tests write their own.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// How many micro-batches the batch is cut into; it must divide the batch.
    pub micro_batches: u64,
    /// In pipeline order; together they cover the layers in order, each layer once.
    pub stages: Vec<StagePlacement>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StagePlacement {
    /// Indices into the profile's devices; no device may serve two stages.
    pub devices: Vec<usize>,
    pub layers: Range<usize>,
    /// K/V groups per device, in the order of `devices`; they sum to the model's `kv_heads`.
    pub kv_groups: Vec<u64>,
}

/// A placement with its predicted times and memory.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub model: String,
    pub profile: String,
    pub dtype: String,
    pub layers: usize,
    pub heads: u64,
    pub kv_heads: u64,
    pub batch: u64,
    pub seq: u64,
    pub micro_batches: u64,
    pub sequences_per_micro_batch: u64,
    pub stages: Vec<StagePlan>,
    /// `links[i]` carries a micro-batch's hidden state from stage `i` to stage `i + 1`.
    pub links: Vec<LinkPlan>,
    /// The slowest stage or link: the pipeline's period in steady state.
    pub bottleneck_s: f64,
    /// One micro-batch through every stage and link: the pipeline's fill time.
    pub fill_s: f64,
    /// `fill_s + (micro_batches - 1) × bottleneck_s`: one forward pass of the whole batch.
    pub total_s: f64,
    /// `total_s / (batch × seq)`.
    pub time_per_token_s: f64,
    /// Every device of the profile, in profile order, used or not.
    pub memory: Vec<DeviceMemory>,
}

impl Plan {
    /// The plan as pretty-printed JSON (the `--format json` output).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StagePlan {
    pub first_layer: usize,
    pub last_layer: usize,
    /// Layers per attention kernel, in the model's kernel order.
    pub attention: Vec<KernelLayers>,
    /// The device that holds the residual stream and reduces the others' partial sums.
    pub primary: String,
    /// Seconds per micro-batch.
    pub time_s: f64,
    pub devices: Vec<DeviceShare>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelLayers {
    /// The path as written in the model file (relative to it).
    pub kernel: String,
    pub layers: u32,
    /// The path from where the model was given, for text output (not part of the JSON).
    #[serde(skip)]
    pub shown: String,
}

/// One device's part of a stage. Its head and K/V group ranges are half-open; an idle
/// device has empty ones.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceShare {
    pub device: String,
    pub kv_groups: [u64; 2],
    pub heads: [u64; 2],
    /// Seconds per micro-batch spent in kernels.
    pub compute_s: f64,
    /// Seconds per micro-batch spent sending to and receiving from the primary.
    pub transfer_s: f64,
    pub memory_bytes: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkPlan {
    pub from: String,
    pub to: String,
    pub bytes: f64,
    pub time_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceMemory {
    pub device: String,
    pub pool: String,
    pub used_bytes: f64,
    /// The pool's capacity, shared by every device of the pool.
    pub pool_capacity_bytes: f64,
}

/// A memory pool that a placement overfills.
#[derive(Clone, Debug, PartialEq)]
pub struct Shortage {
    pub pool: String,
    pub devices: Vec<String>,
    pub capacity_bytes: f64,
    pub needed_bytes: f64,
}

/// Why no plan came out.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error(transparent)]
    Work(#[from] WorkError),
    #[error(
        "model `{model}` does not fit on device profile `{profile}` ({context}):\n  {}",
        describe(shortages)
    )]
    DoesNotFit {
        model: String,
        profile: String,
        /// How the placement that was checked came about.
        context: String,
        shortages: Vec<Shortage>,
    },
    /// A placement that breaks its own rules: a bug in whoever wrote it, not a user error.
    #[error("placement is not valid: {0}")]
    BadPlacement(String),
}

pub(crate) fn gib(bytes: f64) -> String {
    format!("{:.2} GiB", bytes / (1u64 << 30) as f64)
}

fn describe(shortages: &[Shortage]) -> String {
    shortages
        .iter()
        .map(|s| {
            let owner = if s.devices.len() == 1 && s.devices[0] == s.pool {
                format!("device `{}`", s.pool)
            } else {
                format!(
                    "memory pool `{}` (devices {})",
                    s.pool,
                    s.devices.join(", ")
                )
            };
            format!(
                "{owner} holds {} but needs {}, {} short",
                gib(s.capacity_bytes),
                gib(s.needed_bytes),
                gib(s.needed_bytes - s.capacity_bytes)
            )
        })
        .collect::<Vec<_>>()
        // One shortage per line: several pools on one line made a 600-character message.
        .join("\n  ")
}
