//! Planner step 5: cut the layers into contiguous pipeline stages over groups of devices,
//! for one micro-batch count.
//!
//! Grouping: a stage runs on a group of whole memory pools that are neighbours in the
//! profile's device order (a phone's CPU and GPU share its DRAM, so they form one pool and
//! always land in the same stage; a discrete GPU is a pool of its own). Stages follow the
//! device order, and a pool may be left out. So a phone can be one stage, or two phones
//! can share one, but a stage never takes a phone's GPU while the next takes its CPU. Why:
//! a stage that owns whole pools can be checked against memory on its own, so stages are
//! independent and the dynamic program below is exact; and the profile's order is where
//! the user says which devices are close.
//! The limit: the search never reorders devices, so a profile should list them so that
//! neighbours have fast links.
//!
//! Search: each (group, run of layers) offers one best split per candidate primary (the
//! primary decides the links in and out). A dynamic program over (layers placed, last
//! group used) then picks among them. What it minimises is
//! the predicted time of the whole batch, `Σ t + (m − 1) · max t` over stages and links
//! (see [`crate::evaluate`]). That is not a sum, so each state keeps the Pareto front of
//! (sum, max) pairs of the partial pipelines that reach it; the best total is on the front
//! because the total grows with both. Fronts stay small (a handful of entries), so the
//! search costs about (layers × groups)² stage look-ups.

use std::collections::BTreeMap;
use std::ops::Range;

use indicatif::ProgressBar;

use crate::cost::transfer_time;
use crate::plan::{Placement, StagePlacement};
use crate::split_heads::{Split, best_splits};
use crate::stage_time::{Workload, kind_counts};

/// Contiguous pools and their devices.
struct Group {
    pools: Range<usize>,
    devices: Vec<usize>,
}

fn groups(w: &Workload) -> Vec<Group> {
    let pools = &w.profile.pools;
    let mut groups = Vec::new();
    for first in 0..pools.len() {
        for last in first..pools.len() {
            groups.push(Group {
                pools: first..last + 1,
                devices: (pools[first].devices.start..pools[last].devices.end).collect(),
            });
        }
    }
    groups
}

/// A stage's best split for one primary, and that primary as a device index: its link
/// carries hidden states in and out of the stage.
struct Choice {
    split: Split,
    primary: usize,
}

/// A partial pipeline ending in some state: the sum and max of its element times, and how
/// it got there.
#[derive(Clone, Copy)]
struct Label {
    sum: f64,
    max: f64,
    /// The last stage's primary device: the next link starts there, so labels with
    /// different primaries are not comparable.
    primary: usize,
    /// (layers placed, group, label index) of the state before the last stage.
    from: Option<(usize, usize, usize)>,
    /// The last stage: its first layer and its choice (an index into the choice list).
    first_layer: usize,
    choice: usize,
}

/// Adds `label` to a Pareto front unless an entry with the same primary is at least as good
/// in both sum and max.
fn insert(front: &mut Vec<Label>, label: Label) {
    let covers = |a: &Label, b: &Label| a.primary == b.primary && a.sum <= b.sum && a.max <= b.max;
    if front.iter().any(|l| covers(l, &label)) {
        return;
    }
    front.retain(|l| !covers(&label, l));
    front.push(label);
}

/// The best placement at `w.micro_batches` micro-batches and its predicted total time, or
/// `None` if nothing fits. Ticks `progress` once per group.
pub(crate) fn best_placement(w: &Workload, progress: &ProgressBar) -> Option<(f64, Placement)> {
    let layers = w.model.layers();
    let groups = groups(w);
    // stage[g][a][b - a - 1]: the choices for layers a..b on group g, one per primary
    // for which a split fits.
    let mut choices: Vec<Choice> = Vec::new();
    let mut memo: BTreeMap<(usize, Vec<u32>), Vec<usize>> = BTreeMap::new();
    let mut stage: Vec<Vec<Vec<Vec<usize>>>> = Vec::with_capacity(groups.len());
    for (g, group) in groups.iter().enumerate() {
        let mut rows = Vec::with_capacity(layers);
        for a in 0..layers {
            let mut row = Vec::with_capacity(layers - a);
            for b in a + 1..=layers {
                let counts = kind_counts(w.model, a..b);
                let found = memo.entry((g, counts.clone())).or_insert_with(|| {
                    best_splits(w, &group.devices, &counts)
                        .into_iter()
                        .map(|split| {
                            let primary = group.devices[split.primary];
                            choices.push(Choice { split, primary });
                            choices.len() - 1
                        })
                        .collect()
                });
                row.push(found.clone());
            }
            rows.push(row);
        }
        stage.push(rows);
        progress.inc(1);
    }
    let hop =
        |from: usize, to: usize| transfer_time(w.profile.link(from, to), w.work.hidden_state_bytes);
    let mut fronts: Vec<Vec<Vec<Label>>> = vec![vec![Vec::new(); groups.len()]; layers + 1];
    for (g, row) in stage.iter().enumerate() {
        for (len, found) in row[0].iter().enumerate() {
            for &c in found {
                let t = choices[c].split.time;
                let label = Label {
                    sum: t,
                    max: t,
                    primary: choices[c].primary,
                    from: None,
                    first_layer: 0,
                    choice: c,
                };
                insert(&mut fronts[len + 1][g], label);
            }
        }
    }
    for a in 1..layers {
        for g in 0..groups.len() {
            if fronts[a][g].is_empty() {
                continue;
            }
            for next in 0..groups.len() {
                if groups[next].pools.start < groups[g].pools.end {
                    continue;
                }
                for (len, &c) in stage[next][a]
                    .iter()
                    .enumerate()
                    .flat_map(|(len, found)| found.iter().map(move |c| (len, c)))
                {
                    let t = choices[c].split.time;
                    for i in 0..fronts[a][g].len() {
                        let l = fronts[a][g][i];
                        let link = hop(l.primary, choices[c].primary);
                        let label = Label {
                            sum: l.sum + link + t,
                            max: l.max.max(link).max(t),
                            primary: choices[c].primary,
                            from: Some((a, g, i)),
                            first_layer: a,
                            choice: c,
                        };
                        insert(&mut fronts[a + len + 1][next], label);
                    }
                }
            }
        }
    }
    let total = |l: &Label| l.sum + (w.micro_batches - 1) as f64 * l.max;
    let mut best: Option<(f64, usize, usize)> = None;
    for (g, front) in fronts[layers].iter().enumerate() {
        for (i, l) in front.iter().enumerate() {
            if best.is_none_or(|(t, _, _)| total(l) < t) {
                best = Some((total(l), g, i));
            }
        }
    }
    let (time, mut g, mut i) = best?;
    let mut end = layers;
    let mut stages = Vec::new();
    loop {
        let l = fronts[end][g][i];
        stages.push(StagePlacement {
            devices: groups[g].devices.clone(),
            layers: l.first_layer..end,
            kv_groups: choices[l.choice].split.kv_groups.clone(),
        });
        match l.from {
            Some((a, prev, j)) => (end, g, i) = (a, prev, j),
            None => break,
        }
    }
    stages.reverse();
    Some((
        time,
        Placement {
            micro_batches: w.micro_batches,
            stages,
        },
    ))
}

/// How many groups [`best_placement`] ticks the progress bar for.
pub(crate) fn group_count(pools: usize) -> u64 {
    (pools * (pools + 1) / 2) as u64
}
