//! Planner step 6: price a placement, producing the [`Plan`] that every output renders.
//!
//! The search, the baselines of the comparison and the brute-force test all go through
//! this one function, so their numbers cannot drift apart.
//!
//! Pipeline time: stages and the links between them form a flow shop that every
//! micro-batch passes through in order. For `m` identical micro-batches and element times
//! `t_1 … t_k`, the last micro-batch leaves after `Σ t_i + (m − 1) · max t_i`: the first one
//! needs the whole fill time, and each further one leaves one bottleneck period later
//! (the slowest element never idles once it has started, and nothing after it waits
//! longer than it does). With `s` equal stages and free links this is the familiar
//! `(s − 1 + m) · t`.

use crate::cost::transfer_time;
use crate::devices::Profile;
use crate::model::Model;
use crate::plan::{
    DeviceMemory, DeviceShare, KernelLayers, LinkPlan, Placement, Plan, PlanError, Shortage,
    StagePlan,
};
use crate::stage_time::{Workload, kind_counts, primary, stage_load, stage_memory};
use crate::work::{AttentionWorkSource, WorkCache};

/// Prices a placement written by hand (a baseline, a test). Fails if it is malformed or
/// overfills a memory pool.
pub fn evaluate_placement(
    model: &Model,
    profile: &Profile,
    work: &dyn AttentionWorkSource,
    placement: &Placement,
) -> Result<Plan, PlanError> {
    let mut cache = WorkCache::new(work);
    let w = workload(model, profile, &mut cache, placement.micro_batches)?;
    let plan = evaluate(&w, placement)?;
    let shortages = shortages(profile, &plan);
    if shortages.is_empty() {
        Ok(plan)
    } else {
        Err(PlanError::DoesNotFit {
            model: model.name.clone(),
            profile: profile.name.clone(),
            context: format!("as placed, with {} micro-batches", placement.micro_batches),
            shortages,
        })
    }
}

/// The work of `model` cut into `micro_batches` micro-batches.
pub(crate) fn workload<'a>(
    model: &'a Model,
    profile: &'a Profile,
    cache: &mut WorkCache,
    micro_batches: u64,
) -> Result<Workload<'a>, PlanError> {
    if micro_batches == 0 || !model.batch.is_multiple_of(micro_batches) {
        return Err(PlanError::BadPlacement(format!(
            "{micro_batches} micro-batches do not divide the batch of {}",
            model.batch
        )));
    }
    Ok(Workload {
        model,
        profile,
        work: cache.model_work(model, model.batch / micro_batches)?,
        micro_batches,
    })
}

fn check(w: &Workload, placement: &Placement) -> Result<(), PlanError> {
    let bad = |m: String| Err(PlanError::BadPlacement(m));
    let mut next_layer = 0;
    let mut used = vec![false; w.profile.devices.len()];
    for (s, stage) in placement.stages.iter().enumerate() {
        if stage.layers.start != next_layer || stage.layers.is_empty() {
            return bad(format!(
                "stage {s} holds layers {:?}; it should start at layer {next_layer} and hold at least one",
                stage.layers
            ));
        }
        next_layer = stage.layers.end;
        if stage.devices.is_empty() || stage.devices.len() != stage.kv_groups.len() {
            return bad(format!(
                "stage {s} has {} devices and {} K/V group counts",
                stage.devices.len(),
                stage.kv_groups.len()
            ));
        }
        for &d in &stage.devices {
            if d >= used.len() || used[d] {
                return bad(format!(
                    "stage {s} names device {d}, which is unknown or taken"
                ));
            }
            used[d] = true;
        }
        let groups: u64 = stage.kv_groups.iter().sum();
        if groups != w.model.kv_heads {
            return bad(format!(
                "stage {s} places {groups} K/V groups, the model has {}",
                w.model.kv_heads
            ));
        }
    }
    if next_layer != w.model.layers() {
        return bad(format!(
            "the stages end at layer {next_layer}, the model has {}",
            w.model.layers()
        ));
    }
    Ok(())
}

/// Prices a placement whose micro-batch count is `w.micro_batches`, without checking memory.
pub(crate) fn evaluate(w: &Workload, placement: &Placement) -> Result<Plan, PlanError> {
    check(w, placement)?;
    let (model, profile) = (w.model, w.profile);
    let heads_per_group = model.heads_per_kv_group();
    let mut used = vec![0.0; profile.devices.len()];
    let mut stages = Vec::with_capacity(placement.stages.len());
    let mut primaries = Vec::with_capacity(placement.stages.len());
    for stage in &placement.stages {
        let counts = kind_counts(model, stage.layers.clone());
        let load = stage_load(w, &stage.devices, &counts, &stage.kv_groups);
        let memory = stage_memory(w, &counts, &stage.kv_groups);
        let mut first_group = 0;
        let mut devices = Vec::with_capacity(stage.devices.len());
        for (i, &d) in stage.devices.iter().enumerate() {
            let groups = [first_group, first_group + stage.kv_groups[i]];
            first_group = groups[1];
            used[d] += memory[i];
            devices.push(DeviceShare {
                device: profile.devices[d].name.clone(),
                kv_groups: groups,
                heads: groups.map(|g| g * heads_per_group),
                compute_s: load.compute[i],
                transfer_s: load.transfer[i],
                memory_bytes: memory[i],
            });
        }
        let p = stage.devices[primary(w, &stage.devices, &stage.kv_groups)];
        primaries.push(p);
        stages.push(StagePlan {
            first_layer: stage.layers.start,
            last_layer: stage.layers.end - 1,
            attention: model
                .kernels
                .iter()
                .zip(&counts)
                .filter(|(_, c)| **c > 0)
                .map(|(k, &c)| KernelLayers {
                    kernel: k.written.clone(),
                    layers: c,
                    shown: k.shown(),
                })
                .collect(),
            primary: profile.devices[p].name.clone(),
            time_s: load.time,
            devices,
        });
    }
    let links: Vec<LinkPlan> = primaries
        .windows(2)
        .map(|pair| {
            let bytes = w.work.hidden_state_bytes;
            LinkPlan {
                from: profile.devices[pair[0]].name.clone(),
                to: profile.devices[pair[1]].name.clone(),
                bytes,
                time_s: transfer_time(profile.link(pair[0], pair[1]), bytes),
            }
        })
        .collect();
    let times = stages
        .iter()
        .map(|s| s.time_s)
        .chain(links.iter().map(|l| l.time_s));
    let fill_s: f64 = times.clone().sum();
    let bottleneck_s = times.fold(0.0, f64::max);
    let total_s = fill_s + (w.micro_batches - 1) as f64 * bottleneck_s;
    Ok(Plan {
        model: model.name.clone(),
        profile: profile.name.clone(),
        dtype: model.dtype.name().to_string(),
        layers: model.layers(),
        heads: model.heads,
        kv_heads: model.kv_heads,
        batch: model.batch,
        seq: model.seq,
        micro_batches: w.micro_batches,
        sequences_per_micro_batch: model.batch / w.micro_batches,
        stages,
        links,
        bottleneck_s,
        fill_s,
        total_s,
        time_per_token_s: total_s / (model.batch * model.seq) as f64,
        memory: profile
            .devices
            .iter()
            .zip(used)
            .map(|(d, used_bytes)| DeviceMemory {
                device: d.name.clone(),
                pool: profile.pools[d.pool].name.clone(),
                used_bytes,
                pool_capacity_bytes: profile.pools[d.pool].capacity,
            })
            .collect(),
    })
}

/// The pools a plan overfills, in profile order.
pub(crate) fn shortages(profile: &Profile, plan: &Plan) -> Vec<Shortage> {
    profile
        .pools
        .iter()
        .filter_map(|pool| {
            let needed: f64 = plan.memory[pool.devices.clone()]
                .iter()
                .map(|m| m.used_bytes)
                .sum();
            // The search adds the same bytes in another order; forgive its rounding.
            (needed > pool.capacity * (1.0 + 1e-12)).then(|| Shortage {
                pool: pool.name.clone(),
                devices: profile.devices[pool.devices.clone()]
                    .iter()
                    .map(|d| d.name.clone())
                    .collect(),
                capacity_bytes: pool.capacity,
                needed_bytes: needed,
            })
        })
        .collect()
}
