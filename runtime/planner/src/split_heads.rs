//! Planner step 4: split a stage's heads (whole K/V groups) over its devices so that they
//! finish together, within their memory.
//!
//! The result depends on which device is the primary (the one with the most groups, see
//! `stage_time`): the primary pays no transfers inside the stage, and its link is the
//! one that carries hidden states to the next stage. So the split is searched once per
//! candidate primary, and the stage search picks among them with the links in view.
//!
//! For a primary `p` and each number of groups `own` it may keep, the other devices (the
//! helpers) share the rest, each capped so that `p` stays primary. Each helper's time grows
//! with its share (kernels and memory traffic grow, and a helper pays its transfers as
//! soon as it takes any). For one layer kind, handing out groups one at a time, each to
//! the helper that would then finish first, is optimal: it takes the smallest of the
//! helpers' sorted finishing times, the classic argument for min-max allocation of
//! identical units. Hybrid stages mix layer kinds and memory can bind, so a local search
//! then moves single groups while that lowers the stage time and keeps `p` primary. The
//! brute-force test checks the outcome against every split.

use crate::stage_time::{Workload, primary, stage_fits, stage_load};

/// A head split and the stage time it gives.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Split {
    /// K/V groups per device, in the order of the stage's devices.
    pub kv_groups: Vec<u64>,
    /// The primary, as a position in the stage's devices.
    pub primary: usize,
    /// Seconds per micro-batch.
    pub time: f64,
}

/// For each device that can be the stage's primary, the best split found with it as
/// primary; empty when no split fits in memory.
pub(crate) fn best_splits(w: &Workload, devices: &[usize], counts: &[u32]) -> Vec<Split> {
    (0..devices.len())
        .filter_map(|p| with_primary(w, devices, counts, p))
        .collect()
}

fn with_primary(w: &Workload, devices: &[usize], counts: &[u32], p: usize) -> Option<Split> {
    let total = w.model.kv_heads;
    let n = devices.len() as u64;
    let mut best: Option<Split> = None;
    for own in (total.div_ceil(n)..=total).rev() {
        let mut groups = vec![0; devices.len()];
        groups[p] = own;
        if !stage_fits(w, devices, counts, &groups) {
            continue;
        }
        let Some(groups) = hand_out(w, devices, counts, p, groups, total - own) else {
            continue;
        };
        let split = improve(w, devices, counts, p, groups);
        if best.as_ref().is_none_or(|b| split.time < b.time) {
            best = Some(split);
        }
    }
    best
}

/// Gives `rest` more groups to the helpers, one at a time, each to the helper that would
/// then finish the stage soonest, keeping `p` primary and within memory.
fn hand_out(
    w: &Workload,
    devices: &[usize],
    counts: &[u32],
    p: usize,
    mut groups: Vec<u64>,
    rest: u64,
) -> Option<Vec<u64>> {
    for _ in 0..rest {
        let mut best: Option<(f64, usize)> = None;
        for i in (0..devices.len()).filter(|&i| i != p) {
            groups[i] += 1;
            if primary(w, devices, &groups) == p && stage_fits(w, devices, counts, &groups) {
                let t = stage_load(w, devices, counts, &groups).time;
                if best.is_none_or(|(bt, _)| t < bt) {
                    best = Some((t, i));
                }
            }
            groups[i] -= 1;
        }
        groups[best?.1] += 1;
    }
    Some(groups)
}

/// Moves one group at a time between devices while that shortens the stage and keeps `p`
/// primary.
fn improve(
    w: &Workload,
    devices: &[usize],
    counts: &[u32],
    p: usize,
    mut groups: Vec<u64>,
) -> Split {
    let mut time = stage_load(w, devices, counts, &groups).time;
    loop {
        let mut best: Option<(f64, usize, usize)> = None;
        for from in 0..devices.len() {
            if groups[from] == 0 {
                continue;
            }
            for to in (0..devices.len()).filter(|&to| to != from) {
                groups[from] -= 1;
                groups[to] += 1;
                if primary(w, devices, &groups) == p && stage_fits(w, devices, counts, &groups) {
                    let t = stage_load(w, devices, counts, &groups).time;
                    // Only clear gains count, so rounding noise cannot make it cycle.
                    let bar = best.map_or(time * (1.0 - 1e-12), |(bt, _, _)| bt);
                    if t < bar {
                        best = Some((t, from, to));
                    }
                }
                groups[from] += 1;
                groups[to] -= 1;
            }
        }
        match best {
            Some((t, from, to)) => {
                groups[from] -= 1;
                groups[to] += 1;
                time = t;
            }
            None => {
                return Split {
                    kv_groups: groups,
                    primary: p,
                    time,
                };
            }
        }
    }
}
