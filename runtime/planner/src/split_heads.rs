//! Planner step 4: split a stage's heads (whole K/V groups) over its devices so that they
//! finish together, within their memory.
//!
//! The result depends on which device is the primary (the one with the most groups, see
//! `stage_time`): the primary pays no transfers inside the stage, and its link is the
//! one that carries hidden states to the next stage. So the split is searched once per
//! candidate primary, and the stage search picks among them with the links in view.
//!
//! # Symmetric splits (exact)
//! A stage's devices come in classes of interchangeable ones (members of one
//! [`crate::device_groups`] group; any other device is a class of one). Within a class,
//! every helper sees the primary over the same link and costs the same for the same
//! share, and a helper's time and memory never fall when its share grows (a roofline
//! kernel time `launch + max(s·F/peak, (s·B + B₀)/bw)` and `s·kept + activations` are
//! non-decreasing in the share `s`, and the transfers are paid in full as soon as `s > 0`).
//! A stage waits for its slowest device in each half, and a class's slowest helper is the
//! one with the largest share, so among splits that give a class the same number of
//! participants and groups, the one whose shares differ by at most one has the smallest
//! largest share: it is as fast as any, and fits wherever any does. So trying, per class,
//! every number of participants and of groups, shares balanced, and every primary and
//! primary share, is an exact search; it costs a few hundred splits per stage whatever the
//! classes' sizes. With many classes of one (a row of phones) that enumeration becomes the
//! brute force, and past [`SYMMETRIC_LIMIT`] splits the search falls back to the greedy
//! below.
//!
//! # Greedy (many distinct devices)
//! For a primary `p` and each number of groups `own` it may keep, the other devices (the
//! helpers) share the rest, each capped so that `p` stays primary. Each helper's time grows
//! with its share (kernels and memory traffic grow, and a helper pays its transfers as
//! soon as it takes any). For one layer kind, handing out groups one at a time, each to
//! the helper that would then finish first, is optimal: it takes the smallest of the
//! helpers' sorted finishing times, the classic argument for min-max allocation of
//! identical units. Hybrid stages mix layer kinds and memory can bind, so a local search
//! then moves single groups while that lowers the stage time and keeps `p` primary. The
//! brute-force test checks the outcome against every split.

use std::ops::Range;

use crate::stage_time::{Workload, primary, stage_fits, stage_load};

/// At most this many symmetric splits are tried per stage and layer counts before the
/// greedy search takes over.
pub(crate) const SYMMETRIC_LIMIT: u64 = 4096;

/// A head split and the stage time it gives.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Split {
    /// K/V groups per device, in the order of the stage's devices.
    pub kv_groups: Vec<u64>,
    /// The primary, as a position in the stage's devices.
    pub primary: usize,
    /// Seconds per micro-batch.
    pub time: f64,
    /// Per layer kind, the slowest device of each half for one layer (see
    /// [`crate::stage_time::time_for`]).
    pub slowest: Vec<[f64; 2]>,
}

fn priced(w: &Workload, devices: &[usize], counts: &[u32], kv_groups: Vec<u64>) -> Split {
    let load = stage_load(w, devices, counts, &kv_groups);
    Split {
        primary: primary(w, devices, &kv_groups),
        kv_groups,
        time: load.time,
        slowest: load.slowest,
    }
}

/// Calls `f` with every symmetric split of `total` groups over `classes` (ranges of
/// positions in a device list of length `n`): per class a number of participants and of
/// groups, the first participant of the primary's class holding `own`, the other
/// participants' shares balanced, larger shares first. `f` gets the split and the position
/// of the intended primary; the caller checks that it is the primary by the rule.
pub(crate) fn for_each_symmetric(
    classes: &[Range<usize>],
    n: usize,
    total: u64,
    f: &mut dyn FnMut(&[u64], usize),
) {
    let mut groups = vec![0; n];
    for p in 0..classes.len() {
        for own in 1..=total {
            assign(classes, p, own, 0, total, &mut groups, f);
        }
    }
}

/// Balanced shares of `g` groups over the positions `at`, larger first.
fn balance(groups: &mut [u64], at: Range<usize>, g: u64) {
    let c = at.len() as u64;
    for (i, slot) in groups[at].iter_mut().enumerate() {
        *slot = g / c + u64::from((i as u64) < g % c);
    }
}

fn assign(
    classes: &[Range<usize>],
    p: usize,
    own: u64,
    j: usize,
    left: u64,
    groups: &mut Vec<u64>,
    f: &mut dyn FnMut(&[u64], usize),
) {
    if j == classes.len() {
        if left == 0 {
            f(groups, classes[p].start);
        }
        return;
    }
    let class = classes[j].clone();
    groups[class.clone()].fill(0);
    if j == p {
        // The primary and `helpers` more participants of its class.
        if own > left {
            return;
        }
        groups[class.start] = own;
        for helpers in 0..class.len() {
            let rest = class.start + 1..class.start + 1 + helpers;
            let most = (left - own).min(own * helpers as u64);
            for g in helpers as u64..=most {
                balance(groups, rest.clone(), g);
                assign(classes, p, own, j + 1, left - own - g, groups, f);
            }
            groups[rest].fill(0);
        }
        groups[class.start] = 0;
    } else {
        assign(classes, p, own, j + 1, left, groups, f);
        for c in 1..=class.len() {
            let at = class.start..class.start + c;
            for g in c as u64..=left.min(own * c as u64) {
                balance(groups, at.clone(), g);
                assign(classes, p, own, j + 1, left - g, groups, f);
            }
        }
        groups[class].fill(0);
    }
}

/// How many splits [`for_each_symmetric`] tries (saturating), counted by a small dynamic
/// program over classes and groups handed out rather than by enumerating them.
pub(crate) fn symmetric_count(classes: &[Range<usize>], total: u64) -> u64 {
    let t = total as usize;
    let mut count: u64 = 0;
    for p in 0..classes.len() {
        for own in 1..=total {
            // ways[s]: ways for the classes so far to hold s groups.
            let mut ways = vec![0u64; t + 1];
            ways[0] = 1;
            for (j, class) in classes.iter().enumerate() {
                // options[g]: ways for this class to hold g groups.
                let mut options = vec![0u64; t + 1];
                if j == p {
                    for helpers in 0..class.len() as u64 {
                        for g in helpers..=(own * helpers).min(total) {
                            if let Some(o) = options.get_mut((own + g) as usize) {
                                *o += 1;
                            }
                        }
                    }
                } else {
                    options[0] = 1;
                    for c in 1..=class.len() as u64 {
                        for g in c..=(own * c).min(total) {
                            options[g as usize] += 1;
                        }
                    }
                }
                let mut next = vec![0u64; t + 1];
                for (a, &x) in ways.iter().enumerate() {
                    for (b, &y) in options.iter().enumerate().take(t + 1 - a) {
                        next[a + b] = next[a + b].saturating_add(x.saturating_mul(y));
                    }
                }
                ways = next;
            }
            count = count.saturating_add(ways[t]);
        }
    }
    count
}

/// Per candidate primary, the fastest symmetric split that fits, by exhaustive search
/// (see the module docs). `firsts` are the candidates: each class's first position.
pub(crate) fn symmetric_splits(
    w: &Workload,
    devices: &[usize],
    classes: &[Range<usize>],
    counts: &[u32],
) -> Vec<Split> {
    let mut best: Vec<Option<Split>> = vec![None; classes.len()];
    for_each_symmetric(
        classes,
        devices.len(),
        w.model.kv_heads,
        &mut |groups, p| {
            if primary(w, devices, groups) != p || !stage_fits(w, devices, counts, groups) {
                return;
            }
            let split = priced(w, devices, counts, groups.to_vec());
            let Some(c) = classes.iter().position(|c| c.start == p) else {
                return;
            };
            if best[c].as_ref().is_none_or(|b| split.time < b.time) {
                best[c] = Some(split);
            }
        },
    );
    best.into_iter().flatten().collect()
}

/// For each candidate primary (positions in `devices`), the best split the greedy search
/// finds with it as primary; empty when no split fits in memory.
pub(crate) fn best_splits(
    w: &Workload,
    devices: &[usize],
    counts: &[u32],
    candidates: impl Iterator<Item = usize>,
) -> Vec<Split> {
    candidates
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
            None => return priced(w, devices, counts, groups),
        }
    }
}
