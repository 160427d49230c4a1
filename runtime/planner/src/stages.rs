//! Planner step 5: cut the layers into contiguous pipeline stages over runs of memory
//! pools, for one micro-batch count.
//!
//! Runs of pools: a stage runs on a run of whole memory pools that are neighbours in the
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
//! Groups: runs of interchangeable pools ([`crate::device_groups`]) are searched by how
//! many members a stage takes, never which. A stage is a *shape*: `k` members of one
//! group, wherever the pipeline has got to in it (the same cost from any member), or a
//! fixed span from the last members of one group to the first members of a later one
//! (through every group between). A shape that leaves one of its end members idle costs
//! the same as the shape without it and uses more pools, so ends hold at most `kv_heads`
//! members.
//!
//! Search: a dynamic program over (layers placed, next free pool). What it minimises is
//! the predicted time of the whole batch, `Σ t + (m − 1) · max t` over stages and links
//! (see [`crate::evaluate`]). That is not a sum, so it keeps, per number of layers placed,
//! the Pareto front of partial pipelines by (sum, max, next free pool), among those whose
//! last primary is of the same class (links out of interchangeable devices are alike):
//! the best total is on the front because it grows with sum and max, and a pipeline that
//! has used fewer pools can do anything one that used more can (pools may be skipped).
//! So the search is exact for the splits `split_heads` offers.
//!
//! Bounds: every layer of kind `k` costs at least `τ_k`, the time its halves would take
//! spread ideally over the `kv_heads` fastest devices with no launch, transfer or shared
//! traffic (any split's slowest device is at least that slow). With `U` the best total
//! known, a partial pipeline whose sum plus the bound of the layers left plus `(m − 1) ·
//! max` exceeds `U` cannot win, and no stage of a winning plan is bounded above
//! `(U − Σ τ) / (m − 1)`. The search therefore first runs with a small cap on stage length,
//! doubling it until it covers that bound for the best plan found; the last run is
//! exact. With one layer kind and few groups a second bound counts memory and the
//! `(m − 1) · max` term together ([`Search::rest_bound`]), and stage lengths are bisected
//! to those it allows ([`Search::window`]): 1000 devices in 3 groups x 10,000 layers went
//! from 23 s to about 4 s. Cost: about `layers × front × shapes × stage lengths tried`, with
//! `shapes` ~ `groups² · kv_heads²` and stage costs for one layer kind looked up on a
//! ladder of splits built once per shape, so the group sizes do not enter.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::cost::transfer_time;
use crate::device_groups::{DeviceGroup, device_groups};
use crate::evaluate::evaluate;
use crate::plan::{Placement, StagePlacement};
use crate::split_heads::{
    SYMMETRIC_LIMIT, Split, best_splits, for_each_symmetric, symmetric_count, symmetric_splits,
};
use crate::stage_time::{KindPrefix, Workload, primary, stage_fits, stage_load, time_for};

/// Where a stage sits in the pools.
#[derive(Clone)]
enum Start {
    /// `k` members of group `group`, from wherever the pipeline has got to in it.
    Inside { group: usize, k: usize },
    /// A fixed run of pools.
    Span(Range<usize>),
}

/// One split of a ladder: fastest among the splits that fit `max_layers` layers.
struct Rung {
    split: usize,
    max_layers: usize,
}

struct Shape {
    start: Start,
    /// The devices it prices. For `Inside` a group's first `k` members stand for any `k`.
    devices: Vec<usize>,
    /// Interchangeable devices, as ranges of positions in `devices`.
    classes: Vec<Range<usize>>,
    /// Splits are searched exhaustively (see `split_heads`), else greedily.
    exact: bool,
    /// One layer kind, exact search: per primary class, rungs by time and layers held.
    ladders: Option<Vec<Vec<Rung>>>,
    /// Otherwise: the splits for each layer count vector, one per primary class.
    memo: BTreeMap<Vec<u32>, Vec<usize>>,
    /// Another shape takes no more pools and is never slower (see [`Search::prune_shapes`]).
    dominated: bool,
    /// One layer kind: a lower bound on a layer's time in this shape (its fastest
    /// one-layer split, or the ideal spread).
    per_layer: f64,
}

/// A partial pipeline ending after some number of layers.
#[derive(Clone, Copy)]
struct Label {
    sum: f64,
    max: f64,
    /// The first pool no stage has taken.
    next_pool: usize,
    /// The last stage's primary device (its link carries the next hop) and its class.
    primary: Option<usize>,
    class: usize,
    /// (layers placed, label index) before the last stage.
    from: Option<(usize, usize)>,
    /// The last stage: shape, first pool, first layer, split (an arena index).
    shape: usize,
    first_pool: usize,
    first_layer: usize,
    split: usize,
}

/// Adds `label` to a Pareto front unless an entry of the same class is at least as good in
/// sum, max and pools used.
fn insert(front: &mut Vec<Label>, label: Label) {
    let covers = |a: &Label, b: &Label| {
        a.class == b.class && a.next_pool <= b.next_pool && a.sum <= b.sum && a.max <= b.max
    };
    if front.iter().any(|l| covers(l, &label)) {
        return;
    }
    front.retain(|l| !covers(&label, l));
    front.push(label);
}

struct Search<'a> {
    w: &'a Workload<'a>,
    groups: Vec<DeviceGroup>,
    /// Group of each pool.
    group_of: Vec<usize>,
    /// Link class of each device: a group's first device for its members, else itself.
    class_of: Vec<usize>,
    shapes: Vec<Shape>,
    /// Shapes by the group they start in: `Inside` ones by `k - 1`, then spans.
    inside: Vec<Vec<usize>>,
    spans: Vec<Vec<usize>>,
    arena: Vec<Split>,
    prefix: KindPrefix,
    /// `bound[a]`: lower bound on the time of layers `0..a` in any stage.
    bound: Vec<f64>,
    /// `later[g][k]`: lower bound on one layer of kind `k` in a stage starting in group
    /// `g` or after it, to bound what a partial pipeline still has to pay.
    later: Vec<Vec<f64>>,
    single_kind: bool,
    /// One layer kind and few groups: per group, what may still run from it on, cheapest
    /// per layer first (see [`Search::rest_bound`]).
    suffix: Vec<Vec<Capacity>>,
    window_from: usize,
}

/// What stages starting in one group can hold, for [`Search::rest_bound`]: each layer
/// costs at least `cost`; under a stage cap `T` a member holds at most `T · rate` layers
/// and at most `most` (memory). `span`: the one stage that may start at the group's end
/// and reach into later groups (it takes the group's last pool), counted once, not per
/// member.
#[derive(Clone, Copy, Debug)]
struct Capacity {
    group: usize,
    span: bool,
    cost: f64,
    rate: f64,
    most: f64,
}

/// Groups up to which [`Search::rest_bound`] is used (its cost grows with their square).
const BOUND_GROUPS: usize = 16;

/// The best placement at `w.micro_batches` micro-batches whose predicted total is at most
/// `known` (the best total found so far, or infinity), and that total; `None` if none fits
/// or none is as fast.
pub(crate) fn best_placement(w: &Workload, known: f64) -> Option<(f64, Placement)> {
    best_placement_tuned(w, known, Tuning::default())
}

/// Switches for the search's shortcuts, so that tests can check that they change nothing.
#[derive(Clone, Copy, Debug)]
struct Tuning {
    /// Bound what the layers left add with [`Search::rest_bound`].
    rest_bound: bool,
    /// Stage lengths are bisected ([`Search::window`]) when more than this many are possible.
    window_from: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            rest_bound: true,
            window_from: 64,
        }
    }
}

fn best_placement_tuned(w: &Workload, known: f64, tuning: Tuning) -> Option<(f64, Placement)> {
    let layers = w.model.layers();
    let mut search = Search::new(w);
    if !tuning.rest_bound {
        search.suffix.clear();
    }
    search.window_from = tuning.window_from;
    let spread = search.bound[layers];
    let m1 = (w.micro_batches - 1) as f64;
    let mut best = known;
    let mut found: Option<(f64, Placement)> = None;
    let keep =
        |run: Option<(f64, Placement)>, best: &mut f64, found: &mut Option<(f64, Placement)>| {
            if let Some((t, placement)) = run {
                *best = t;
                *found = Some((t, placement));
            }
        };
    // No stage of a plan faster than `best` is bounded above `need(best)`.
    let need = |best: f64| {
        if m1 == 0.0 || spread <= 0.0 || !best.is_finite() {
            f64::INFINITY
        } else {
            (best - spread) / m1 * (1.0 + 1e-9)
        }
    };
    // Balanced pipelines inside one group, priced in closed form, bound the search from
    // the start (slightly loosened: the search adds the same times in another order).
    best = best.min(search.balanced() * (1.0 + 1e-9));
    // Layers given to the groups cheapest per layer first, under a range of stage caps: a
    // real placement, priced exactly, kept in case the exact search finds nothing faster.
    if let Some((t, placement)) = search.by_groups()
        && t < best
    {
        best = t * (1.0 + 1e-9);
        found = Some((t, placement));
    }
    if !best.is_finite() {
        // A first plan, to bound the exact search: beam searches under a stage cap that
        // doubles until it covers the bound for the best plan they found.
        let mut cap = if need(1.0).is_infinite() {
            f64::INFINITY
        } else {
            spread / layers.min(w.profile.pools.len()) as f64
        };
        loop {
            let run = search.run(cap, best, Some(BEAM));
            keep(run, &mut best, &mut found);
            if cap >= need(best) || (cap >= spread && !best.is_finite()) {
                break;
            }
            cap = (2.0 * cap).min(need(best));
        }
    }
    let run = search.run(need(best), best, None);
    keep(run, &mut best, &mut found);
    found
}

/// Partial pipelines per layer count that the first, inexact searches keep.
const BEAM: usize = 4;

impl<'a> Search<'a> {
    fn new(w: &'a Workload<'a>) -> Self {
        let profile = w.profile;
        let groups = device_groups(profile);
        let mut group_of = vec![0; profile.pools.len()];
        let mut class_of: Vec<usize> = (0..profile.devices.len()).collect();
        for (g, group) in groups.iter().enumerate() {
            let first = profile.pools[group.pools.start].devices.start;
            for p in group.pools.clone() {
                group_of[p] = g;
                if group.members() > 1 {
                    class_of[profile.pools[p].devices.start] = first;
                }
            }
        }
        let prefix = KindPrefix::new(w.model);
        let mut search = Search {
            w,
            group_of,
            class_of,
            shapes: Vec::new(),
            inside: vec![Vec::new(); groups.len()],
            spans: vec![Vec::new(); groups.len()],
            groups,
            arena: Vec::new(),
            prefix,
            bound: vec![0.0],
            later: Vec::new(),
            single_kind: w.model.kernels.len() == 1,
            suffix: Vec::new(),
            window_from: Tuning::default().window_from,
        };
        search.make_shapes();
        search.later = search.layer_bounds();
        search.prune_shapes();
        search.suffix = search.capacities();
        for &k in &w.model.layer_kernel {
            let last = search.bound[search.bound.len() - 1];
            search.bound.push(last + search.later[0][k]);
        }
        search
    }

    /// Marks shapes another shape makes useless: both `k` members of one group, or both
    /// spans between the same two groups, the other taking no more members at either end,
    /// and for every primary class and every number of layers at least as fast and fitting
    /// (one layer kind, exact ladders only). Fives members splitting 8 K/V groups as
    /// 2, 2, 2, 1, 1 are as slow as four splitting 2, 2, 2, 2, for one.
    fn prune_shapes(&mut self) {
        if !self.single_kind {
            return;
        }
        let layers = self.w.model.layers();
        // Per shape: where it sits and how many members it takes at each end.
        let place = |shape: &Shape, group_of: &[usize], groups: &[DeviceGroup]| match &shape.start {
            Start::Inside { group, k } => ((*group, *group), (0, *k)),
            Start::Span(pools) => {
                let (g, h) = (group_of[pools.start], group_of[pools.end - 1]);
                (
                    (g, h),
                    (
                        groups[g].pools.end - pools.start,
                        pools.end - groups[h].pools.start,
                    ),
                )
            }
        };
        let n = self.shapes.len();
        for b in 0..n {
            let (where_b, ends_b) = place(&self.shapes[b], &self.group_of, &self.groups);
            let covered = (0..n).any(|a| {
                if a == b || self.shapes[a].dominated {
                    return false;
                }
                let (where_a, ends_a) = place(&self.shapes[a], &self.group_of, &self.groups);
                if where_a != where_b
                    || ends_a.0 > ends_b.0
                    || ends_a.1 > ends_b.1
                    || (ends_a == ends_b && a > b)
                {
                    return false;
                }
                self.faster_everywhere(a, b, layers)
            });
            self.shapes[b].dominated = covered;
        }
    }

    /// Whether shape `a` offers, for every primary class shape `b` offers, a split at least
    /// as fast for every number of layers `b` can hold.
    fn faster_everywhere(&self, a: usize, b: usize, layers: usize) -> bool {
        let (Some(la), Some(lb)) = (&self.shapes[a].ladders, &self.shapes[b].ladders) else {
            return false;
        };
        let class = |s: usize, c: usize| {
            let shape = &self.shapes[s];
            self.class_of[shape.devices[shape.classes[c].start]]
        };
        lb.iter().enumerate().all(|(cb, rungs_b)| {
            let Some(ca) = (0..la.len()).find(|&ca| class(a, ca) == class(b, cb)) else {
                return rungs_b.is_empty();
            };
            let rungs_a = &la[ca];
            let time = |rungs: &[Rung], l: usize| {
                let i = rungs.partition_point(|r| r.max_layers < l);
                rungs.get(i).map(|r| self.arena[r.split].time)
            };
            // Both are step functions of the layer count; compare where either steps.
            let mut steps: Vec<usize> = std::iter::once(1)
                .chain(rungs_a.iter().chain(rungs_b).map(|r| r.max_layers + 1))
                .filter(|&l| l <= layers)
                .collect();
            steps.sort_unstable();
            steps
                .into_iter()
                .all(|l| match (time(rungs_a, l), time(rungs_b, l)) {
                    (_, None) => true,
                    (Some(ta), Some(tb)) => ta <= tb,
                    (None, Some(_)) => false,
                })
        })
    }

    /// The best total of the plans that cut one layer kind into `S` stages of `k` members
    /// of one group each, layer counts differing by at most one: by symmetry they cost the
    /// same wherever they sit, so each is priced from its shape's ladder without a search.
    /// Infinity when none fits.
    fn balanced(&self) -> f64 {
        let w = self.w;
        let layers = w.model.layers();
        let m1 = (w.micro_batches - 1) as f64;
        let mut best = f64::INFINITY;
        if !self.single_kind {
            return best;
        }
        for shape in self.shapes.iter().filter(|s| !s.dominated) {
            let (Start::Inside { group, k }, Some(ladders)) = (&shape.start, &shape.ladders) else {
                continue;
            };
            let members = self.groups[*group].members();
            let Some(rungs) = ladders.first() else {
                continue;
            };
            let time = |l: usize| {
                let i = rungs.partition_point(|r| r.max_layers < l);
                rungs
                    .get(i)
                    .map(|r| time_for(&self.arena[r.split].slowest, &[l as u32]))
            };
            let pools = &w.profile.pools;
            let hop = if members > 1 {
                let (a, b) = (
                    self.groups[*group].pools.start,
                    self.groups[*group].pools.start + 1,
                );
                let link = w
                    .profile
                    .link(pools[a].devices.start, pools[b].devices.start);
                transfer_time(link, w.work.hidden_state_bytes)
            } else {
                0.0
            };
            for stages in 1..=(members / k).min(layers) {
                let (short, long) = (layers / stages, layers.div_ceil(stages));
                let longer = layers - short * stages;
                let (Some(t_long), Some(t_short)) = (time(long), time(short.max(1))) else {
                    continue;
                };
                let hops = (stages - 1) as f64;
                let sum = longer as f64 * t_long + (stages - longer) as f64 * t_short + hops * hop;
                let max = if stages > 1 { t_long.max(hop) } else { t_long };
                best = best.min(sum + m1 * max);
            }
        }
        best
    }

    /// A first plan for one layer kind, to bound the exact search: for each stage cap `T`
    /// on a geometric grid, every group takes the shape and split cheapest per layer among
    /// those that hold a layer within `T`, as many stages of it as its members allow; layers
    /// go to the groups cheapest per layer first, evenly over each group's stages, and the
    /// placement is priced by [`evaluate`]. Not exact (one shape per group), but close when
    /// a few groups of many members dominate, where the beam search is weakest.
    fn by_groups(&self) -> Option<(f64, Placement)> {
        if !self.single_kind {
            return None;
        }
        let w = self.w;
        let layers = w.model.layers();
        let spread = self.bound[layers];
        if spread <= 0.0 || !spread.is_finite() {
            return None;
        }
        // Per group: (time of one layer, layers it holds, shape, split) of every rung.
        let mut options: Vec<Vec<(f64, usize, usize, usize)>> = vec![Vec::new(); self.groups.len()];
        for (s, shape) in self.shapes.iter().enumerate() {
            let (Start::Inside { group, .. }, Some(ladders)) = (&shape.start, &shape.ladders)
            else {
                continue;
            };
            for rung in ladders.iter().flatten() {
                let time = self.arena[rung.split].time;
                options[*group].push((time, rung.max_layers, s, rung.split));
            }
        }
        let mut best: Option<(f64, Placement)> = None;
        let pools = w.profile.pools.len().max(1) as f64;
        let mut cap = spread / pools.min(layers as f64);
        while cap <= 4.0 * spread {
            if let Some(found) = self.filled(&options, cap)
                && best.as_ref().is_none_or(|(t, _)| found.0 < *t)
            {
                best = Some(found);
            }
            cap *= 1.03;
        }
        best
    }

    /// The placement of [`Self::by_groups`] for stage cap `cap`, and its total.
    fn filled(
        &self,
        options: &[Vec<(f64, usize, usize, usize)>],
        cap: f64,
    ) -> Option<(f64, Placement)> {
        let w = self.w;
        let layers = w.model.layers();
        // Per group: (time per layer, layers per stage, stages, shape, split).
        type Choice = (f64, usize, usize, usize, usize);
        let mut chosen: Vec<Option<Choice>> = vec![None; self.groups.len()];
        for (g, opts) in options.iter().enumerate() {
            for &(time, max_layers, s, split) in opts {
                let per_stage = max_layers.min((cap / time).floor() as usize).min(layers);
                let Start::Inside { k, .. } = self.shapes[s].start else {
                    continue;
                };
                let stages = self.groups[g].members() / k;
                if per_stage == 0 || stages == 0 {
                    continue;
                }
                if chosen[g].is_none_or(|c| time < c.0) {
                    chosen[g] = Some((time, per_stage, stages, s, split));
                }
            }
        }
        let mut order: Vec<usize> = (0..self.groups.len())
            .filter(|&g| chosen[g].is_some())
            .collect();
        order.sort_by(|&x, &y| {
            let (a, b) = (
                chosen[x].map_or(0.0, |c| c.0),
                chosen[y].map_or(0.0, |c| c.0),
            );
            a.total_cmp(&b)
        });
        let mut given = vec![0usize; self.groups.len()];
        let mut left = layers;
        for g in order {
            if let Some((_, per_stage, stages, _, _)) = chosen[g] {
                given[g] = left.min(per_stage.saturating_mul(stages));
                left -= given[g];
            }
        }
        if left > 0 {
            return None;
        }
        let mut stages = Vec::new();
        let mut first_layer = 0;
        for (g, &x) in given.iter().enumerate() {
            let Some((_, per_stage, _, s, split)) = chosen[g].filter(|_| x > 0) else {
                continue;
            };
            let Start::Inside { k, .. } = self.shapes[s].start else {
                continue;
            };
            let count = x.div_ceil(per_stage);
            for i in 0..count {
                let held = x / count + usize::from(i < x % count);
                let first_pool = self.groups[g].pools.start + i * k;
                let kv_groups = self.arena[split].kv_groups.clone();
                let devices = (0..kv_groups.len())
                    .map(|pos| self.device(s, first_pool, pos))
                    .collect();
                stages.push(StagePlacement {
                    devices,
                    layers: first_layer..first_layer + held,
                    kv_groups,
                });
                first_layer += held;
            }
        }
        let placement = Placement {
            micro_batches: w.micro_batches,
            stages,
        };
        let plan = evaluate(w, &placement).ok()?;
        Some((plan.total_s, placement))
    }

    /// Per group, the [`Capacity`] of the stages that may start in it or after it, cheapest
    /// per layer first; empty unless there is one layer kind and at most [`BOUND_GROUPS`]
    /// groups. A stage of `k` members holding `l` layers with fastest one-layer split `τ`
    /// takes at least `l · τ`, so under a cap `T` it holds at most `T / τ` layers, `T / (k ·
    /// τ)` per member; and at most what fits in memory, the last rung of its ladders.
    fn capacities(&self) -> Vec<Vec<Capacity>> {
        if !self.single_kind || self.groups.len() > BOUND_GROUPS {
            return Vec::new();
        }
        let layers = self.w.model.layers() as f64;
        let mut own: Vec<Capacity> = Vec::new();
        for g in 0..self.groups.len() {
            for span in [false, true] {
                let mut c = Capacity {
                    group: g,
                    span,
                    cost: f64::INFINITY,
                    rate: 0.0,
                    most: 0.0,
                };
                let mut per_member_time = f64::INFINITY;
                for shape in &self.shapes {
                    let members = match (&shape.start, span) {
                        (Start::Inside { group, k }, false) if *group == g => *k,
                        (Start::Span(pools), true) if self.group_of[pools.start] == g => 1,
                        _ => continue,
                    };
                    let (time, held) = match &shape.ladders {
                        Some(ladders) if shape.exact => {
                            let time = ladders
                                .iter()
                                .filter_map(|l| l.first())
                                .map(|r| self.arena[r.split].time)
                                .fold(f64::INFINITY, f64::min);
                            let held = ladders
                                .iter()
                                .filter_map(|l| l.last())
                                .map(|r| r.max_layers)
                                .max()
                                .unwrap_or(0);
                            (time, held as f64)
                        }
                        _ => (spread_bound(self.w, &shape.devices, 0), layers),
                    };
                    if !time.is_finite() || held == 0.0 {
                        continue;
                    }
                    c.cost = c.cost.min(time);
                    per_member_time = per_member_time.min(members as f64 * time);
                    c.most = c.most.max(held / members as f64);
                }
                if c.cost.is_finite() {
                    c.rate = if per_member_time > 0.0 {
                        1.0 / per_member_time
                    } else {
                        f64::INFINITY
                    };
                    own.push(c);
                }
            }
        }
        (0..self.groups.len())
            .map(|g| {
                let mut row: Vec<Capacity> = own.iter().copied().filter(|c| c.group >= g).collect();
                row.sort_by(|x, y| x.cost.total_cmp(&y.cost));
                row
            })
            .collect()
    }

    /// A lower bound on what `remaining` layers placed from pool `next_pool` on add to a
    /// pipeline's total, the `(m − 1) · max` term included, given that its max is already
    /// `max`: with `T` the final max, the stages that start in each group hold at most what
    /// its [`Capacity`] allows under `T`, each layer costs at least its cost, so the sum
    /// grows by at least the cheapest fractional filling `K(T)`, and the total by
    /// `min over T ≥ max of (m − 1) · T + K(T)`. `K` is convex and piecewise linear in `T`
    /// (a linear program whose bounds are concave in `T`), so the minimum lies at `max`, at
    /// a capacity's memory limit, or where a prefix of the capacities holds exactly
    /// `remaining`. Where the bound is not built, `(m − 1) · max`.
    fn rest_bound(&self, remaining: usize, next_pool: usize, max: f64) -> f64 {
        let m1 = (self.w.micro_batches - 1) as f64;
        if remaining == 0 {
            return m1 * max;
        }
        let Some(&g0) = self.group_of.get(next_pool) else {
            return f64::INFINITY;
        };
        let Some(row) = self.suffix.get(g0) else {
            return m1 * max;
        };
        let need = remaining as f64;
        // (cost, rate, most) of each capacity, scaled to the members left.
        let scale = |c: &Capacity| {
            let members = if c.span {
                1.0
            } else if c.group == g0 {
                (self.groups[g0].pools.end - next_pool) as f64
            } else {
                self.groups[c.group].members() as f64
            };
            (c.cost, members * c.rate, members * c.most)
        };
        let held = |&(_, rate, most): &(f64, f64, f64), t: f64| {
            if rate.is_infinite() {
                most
            } else {
                (rate * t).min(most)
            }
        };
        if m1 > 0.0 {
            // Usually the total already grows to the right of `max`: then, `K` being convex,
            // `max` is the minimum and the breakpoints need not be tried. Growing the cap
            // lets the full capacities still bound by rate take layers from the marginal one.
            let t = max * (1.0 + 1e-9);
            let (mut left, mut sum, mut gain, mut rates) = (need, 0.0, 0.0, 0.0);
            for item in row.iter().map(scale) {
                let x = left.min(held(&item, t));
                sum += x * item.0;
                left -= x;
                if left <= 0.0 {
                    if m1 + gain - rates * item.0 >= 0.0 {
                        return (m1 * max + sum) * (1.0 - 1e-12);
                    }
                    break;
                }
                if item.1.is_finite() && item.1 * t < item.2 {
                    gain += item.1 * item.0;
                    rates += item.1;
                }
            }
        }
        let items: Vec<(f64, f64, f64)> = row.iter().map(scale).collect();
        let (items, n) = (&items[..], items.len());
        let fill = |t: f64| {
            let (mut left, mut sum) = (need, 0.0);
            for item in items {
                let x = left.min(held(item, t));
                sum += x * item.0;
                left -= x;
                if left <= 0.0 {
                    return sum;
                }
            }
            f64::INFINITY
        };
        if m1 == 0.0 {
            return fill(f64::INFINITY) * (1.0 - 1e-12);
        }
        // `K` at a slightly larger cap: `K` never grows with the cap, so this stays a lower
        // bound when rounding puts a breakpoint a hair off.
        let at = |t: f64| m1 * t + fill(t * (1.0 + 1e-9));
        let mut best = at(max);
        for item in items {
            let limit = item.2 / item.1;
            if limit.is_finite() && limit > max {
                best = best.min(at(limit));
            }
        }
        // Where the first `j + 1` capacities hold exactly `need`: linear between limits.
        let limit = |&(_, rate, most): &(f64, f64, f64)| {
            if rate.is_infinite() { 0.0 } else { most / rate }
        };
        for j in 0..n {
            let prefix = &items[..=j];
            let mut from = 0.0;
            loop {
                let (mut full, mut rate, mut to) = (0.0, 0.0, f64::INFINITY);
                for item in prefix {
                    let l = limit(item);
                    if l <= from {
                        full += item.2;
                    } else {
                        rate += item.1;
                        to = to.min(l);
                    }
                }
                if rate > 0.0 {
                    let t = (need - full) / rate;
                    if t >= from && t <= to && t > max {
                        best = best.min(at(t));
                    }
                }
                if !to.is_finite() {
                    break;
                }
                from = to;
            }
        }
        // A hair under: the candidates are rounded, and a bound must never exceed.
        best * (1.0 - 1e-12)
    }

    /// The stage lengths worth trying after `label` (at `a` layers) for a stage of one
    /// layer kind ending before pool `next_pool`, each layer at least `own`: those `b` whose
    /// bound `label.sum + (b − a) · own + rest_bound(layers − b, next_pool, max(label.max,
    /// (b − a) · own))` is within `best`. The bound is convex in `b` (the stage grows
    /// linearly, `rest_bound` is a convex program's value over a convex set), so those `b`
    /// are an interval, found by bisection around the bound's minimum. Short ranges, and
    /// searches without [`Search::rest_bound`], try every length.
    fn window(
        &self,
        label: &Label,
        a: usize,
        next_pool: usize,
        own: f64,
        cap: f64,
        best: f64,
    ) -> (usize, usize) {
        let layers = self.w.model.layers();
        let mut hi = layers;
        if own > 0.0 && cap.is_finite() {
            hi = hi.min(a.saturating_add((cap / own) as usize).saturating_add(1));
        }
        if self.suffix.is_empty() || own <= 0.0 || !best.is_finite() || hi - a <= self.window_from {
            return (a + 1, hi);
        }
        if next_pool >= self.group_of.len() {
            // Only a last stage can end there.
            return if hi == layers {
                (layers, layers)
            } else {
                (a + 1, a)
            };
        }
        let target = best * (1.0 + 1e-9);
        let q = |b: usize| {
            let t = (b - a) as f64 * own;
            label.sum + t + self.rest_bound(layers - b, next_pool, label.max.max(t))
        };
        let (mut lo, mut up) = (a + 1, hi);
        while lo < up {
            let mid = lo + (up - lo) / 2;
            let here = q(mid);
            // Infinite where the layers left cannot fit in memory: only short stages.
            if !here.is_finite() || q(mid + 1) < here {
                lo = mid + 1;
            } else {
                up = mid;
            }
        }
        let least = lo;
        if q(least) > target {
            return (a + 1, a);
        }
        let (mut lo, mut up) = (a + 1, least);
        while lo < up {
            let mid = lo + (up - lo) / 2;
            if q(mid) <= target {
                up = mid;
            } else {
                lo = mid + 1;
            }
        }
        let first = lo;
        let (mut lo, mut up) = (least, hi);
        while lo < up {
            let mid = lo + (up - lo).div_ceil(2);
            if q(mid) <= target {
                lo = mid;
            } else {
                up = mid - 1;
            }
        }
        (first, lo)
    }

    /// A lower bound on the time of layers `a..` on stages from group `g` on.
    fn rest(&self, a: usize, g: usize) -> f64 {
        self.later[g]
            .iter()
            .enumerate()
            .map(|(k, t)| f64::from(self.prefix.after(a, k)) * t)
            .sum()
    }

    /// Per layer kind, a lower bound on one layer's time in any stage: the fastest one-layer
    /// split of every shape searched exhaustively (exact, so no split of that shape is
    /// faster, and a split fits one layer whenever it fits more), and for the others the
    /// ideal spread of [`spread_bound`]. One row per group: over the shapes that start in
    /// it or after it.
    fn layer_bounds(&mut self) -> Vec<Vec<f64>> {
        let w = self.w;
        let kinds = w.model.kernels.len();
        let mut rows = vec![vec![f64::INFINITY; kinds]; self.groups.len() + 1];
        for s in 0..self.shapes.len() {
            let g = match &self.shapes[s].start {
                Start::Inside { group, .. } => *group,
                Start::Span(pools) => self.group_of[pools.start],
            };
            for k in 0..kinds {
                let t = if !self.shapes[s].exact {
                    spread_bound(w, &self.shapes[s].devices, k)
                } else if self.single_kind {
                    if self.shapes[s].ladders.is_none() {
                        let ladders = self.ladders(s);
                        self.shapes[s].ladders = Some(ladders);
                    }
                    self.shapes[s]
                        .ladders
                        .iter()
                        .flatten()
                        .filter_map(|l| l.first())
                        .map(|r| self.arena[r.split].time)
                        .fold(f64::INFINITY, f64::min)
                } else {
                    let mut one = vec![0; kinds];
                    one[k] = 1;
                    let shape = &self.shapes[s];
                    symmetric_splits(w, &shape.devices, &shape.classes, &one)
                        .iter()
                        .map(|split| split.time)
                        .fold(f64::INFINITY, f64::min)
                };
                rows[g][k] = rows[g][k].min(t);
                if self.single_kind && t.is_finite() {
                    self.shapes[s].per_layer = t;
                }
            }
        }
        for g in (0..self.groups.len()).rev() {
            let (row, next) = rows.split_at_mut(g + 1);
            for (t, n) in row[g].iter_mut().zip(&next[0]) {
                *t = t.min(*n);
            }
        }
        rows.pop();
        // A kind no stage can hold leaves nothing to bound; the search then finds no plan.
        for t in rows.iter_mut().flatten() {
            if !t.is_finite() {
                *t = 0.0;
            }
        }
        rows
    }

    /// The devices of a group's pools `pools`, in classes.
    fn part(&self, g: usize, pools: Range<usize>, devices: &mut Vec<usize>) -> Vec<Range<usize>> {
        let profile = self.w.profile;
        let start = devices.len();
        for p in pools {
            devices.extend(profile.pools[p].devices.clone());
        }
        if self.groups[g].members() > 1 {
            std::iter::once(start..devices.len()).collect()
        } else {
            (start..devices.len()).map(|i| i..i + 1).collect()
        }
    }

    fn push_shape(&mut self, start: Start, devices: Vec<usize>, classes: Vec<Range<usize>>) {
        let exact = symmetric_count(&classes, self.w.model.kv_heads) <= SYMMETRIC_LIMIT;
        self.shapes.push(Shape {
            start,
            devices,
            classes,
            exact,
            ladders: None,
            memo: BTreeMap::new(),
            dominated: false,
            per_layer: 0.0,
        });
    }

    fn make_shapes(&mut self) {
        let kv = self.w.model.kv_heads as usize;
        // How many members a stage may take at the end of a group: all of a lone pool,
        // up to `kv` of a group of interchangeable ones.
        let ends = |g: &DeviceGroup| {
            if g.members() > 1 {
                1..g.members().min(kv) + 1
            } else {
                1..2
            }
        };
        for g in 0..self.groups.len() {
            let group = self.groups[g].clone();
            for k in ends(&group) {
                let mut devices = Vec::new();
                let classes = self.part(g, group.pools.start..group.pools.start + k, &mut devices);
                self.inside[g].push(self.shapes.len());
                self.push_shape(Start::Inside { group: g, k }, devices, classes);
            }
            for last in g + 1..self.groups.len() {
                let end_group = self.groups[last].clone();
                for t in ends(&group) {
                    for h in ends(&end_group) {
                        let fleet_ends = [(&group, t), (&end_group, h)]
                            .iter()
                            .filter(|(g, _)| g.members() > 1)
                            .map(|(_, n)| n)
                            .sum::<usize>();
                        if fleet_ends > kv {
                            continue;
                        }
                        let mut devices = Vec::new();
                        let mut classes =
                            self.part(g, group.pools.end - t..group.pools.end, &mut devices);
                        for between in g + 1..last {
                            let pools = self.groups[between].pools.clone();
                            let priced = pools.start..pools.start + pools.len().min(kv);
                            classes.extend(self.part(between, priced, &mut devices));
                        }
                        let head = end_group.pools.start..end_group.pools.start + h;
                        classes.extend(self.part(last, head.clone(), &mut devices));
                        self.spans[g].push(self.shapes.len());
                        let pools = group.pools.end - t..head.end;
                        self.push_shape(Start::Span(pools), devices, classes);
                    }
                }
            }
        }
    }

    /// The splits a shape offers for layers `a..b`, one per primary class, as arena
    /// indices; empty when nothing fits.
    fn choices(&mut self, s: usize, a: usize, b: usize, out: &mut Vec<usize>) {
        out.clear();
        let w = self.w;
        if self.single_kind && self.shapes[s].exact {
            if self.shapes[s].ladders.is_none() {
                let ladders = self.ladders(s);
                self.shapes[s].ladders = Some(ladders);
            }
            for ladder in self.shapes[s].ladders.iter().flatten() {
                let i = ladder.partition_point(|r| r.max_layers < b - a);
                if let Some(r) = ladder.get(i) {
                    out.push(r.split);
                }
            }
            return;
        }
        let counts = self.prefix.counts(a..b);
        if let Some(found) = self.shapes[s].memo.get(&counts) {
            out.extend(found);
            return;
        }
        let shape = &self.shapes[s];
        let splits = if shape.exact {
            symmetric_splits(w, &shape.devices, &shape.classes, &counts)
        } else {
            let candidates = shape.classes.iter().map(|c| c.start);
            best_splits(w, &shape.devices, &counts, candidates)
        };
        let first = self.arena.len();
        self.arena.extend(splits);
        let found: Vec<usize> = (first..self.arena.len()).collect();
        out.extend(&found);
        self.shapes[s].memo.insert(counts, found);
    }

    /// For one layer kind: every symmetric split of shape `s` that fits one layer, per
    /// primary class, reduced to those that are fastest for some number of layers. A split
    /// that fits `n` layers fits fewer, so the fastest split for `n` layers is the first
    /// rung holding at least `n`.
    fn ladders(&mut self, s: usize) -> Vec<Vec<Rung>> {
        let w = self.w;
        let layers = w.model.layers();
        let shape = &self.shapes[s];
        let (devices, classes) = (&shape.devices, &shape.classes);
        let mut found: Vec<Vec<(f64, usize, Split)>> = vec![Vec::new(); classes.len()];
        for_each_symmetric(
            classes,
            devices.len(),
            w.model.kv_heads,
            &mut |groups, p| {
                if primary(w, devices, groups) != p || !stage_fits(w, devices, &[1], groups) {
                    return;
                }
                // Memory grows with the layers held: the most that fit, by bisection.
                let (mut fits, mut over) = (1, layers + 1);
                while over - fits > 1 {
                    let mid = (fits + over) / 2;
                    if stage_fits(w, devices, &[mid as u32], groups) {
                        fits = mid;
                    } else {
                        over = mid;
                    }
                }
                let load = stage_load(w, devices, &[1], groups);
                let split = Split {
                    kv_groups: groups.to_vec(),
                    primary: p,
                    time: load.time,
                    slowest: load.slowest,
                };
                if let Some(c) = classes.iter().position(|c| c.start == p) {
                    found[c].push((load.time, fits, split));
                }
            },
        );
        let mut ladders = Vec::with_capacity(found.len());
        for mut splits in found {
            splits.sort_by(|x, y| x.0.total_cmp(&y.0).then(y.1.cmp(&x.1)));
            let mut ladder: Vec<Rung> = Vec::new();
            for (_, max_layers, split) in splits {
                if ladder.last().is_none_or(|r| max_layers > r.max_layers) {
                    self.arena.push(split);
                    ladder.push(Rung {
                        split: self.arena.len() - 1,
                        max_layers,
                    });
                }
            }
            ladders.push(ladder);
        }
        ladders
    }

    /// The fastest plan whose total is at most `best`, trying stages bounded at most `cap`.
    /// With a `beam`, only that many partial pipelines per layer count go on (the most
    /// promising by their bound): fast, not exact, and used only to find a good `best`.
    fn run(&mut self, cap: f64, best: f64, beam: Option<usize>) -> Option<(f64, Placement)> {
        let w = self.w;
        let layers = w.model.layers();
        let m1 = (w.micro_batches - 1) as f64;
        let mut fronts: Vec<Vec<Label>> = vec![Vec::new(); layers + 1];
        fronts[0].push(Label {
            sum: 0.0,
            max: 0.0,
            next_pool: 0,
            primary: None,
            class: usize::MAX,
            from: None,
            shape: 0,
            first_pool: 0,
            first_layer: 0,
            split: 0,
        });
        let mut choices = Vec::new();
        let mut best = best;
        for a in 0..layers {
            if let Some(width) = beam.filter(|&n| fronts[a].len() > n) {
                let key = |l: &Label| {
                    let g = self.group_of.get(l.next_pool).copied();
                    l.sum + m1 * l.max + g.map_or(0.0, |g| self.rest(a, g))
                };
                fronts[a].sort_by(|x, y| key(x).total_cmp(&key(y)));
                fronts[a].truncate(width);
            }
            for i in 0..fronts[a].len() {
                let label = fronts[a][i];
                let Some(&g0) = self.group_of.get(label.next_pool) else {
                    continue;
                };
                let left = self.rest(a, g0);
                if label.sum + left + m1 * label.max > best
                    || label.sum + self.rest_bound(layers - a, label.next_pool, label.max) > best
                {
                    continue;
                }
                for g in g0..self.groups.len() {
                    let group = &self.groups[g].pools;
                    let start = label.next_pool.max(group.start);
                    let mut tries: Vec<(usize, usize)> = self.inside[g]
                        .iter()
                        .filter(|&&s| !self.shapes[s].dominated)
                        .filter(|&&s| match self.shapes[s].start {
                            Start::Inside { k, .. } => start + k <= group.end,
                            Start::Span(_) => false,
                        })
                        .map(|&s| (s, start))
                        .collect();
                    tries.extend(self.spans[g].iter().filter_map(
                        |&s| match &self.shapes[s].start {
                            _ if self.shapes[s].dominated => None,
                            Start::Span(pools) if pools.start >= label.next_pool => {
                                Some((s, pools.start))
                            }
                            _ => None,
                        },
                    ));
                    for (s, first_pool) in tries {
                        let next_pool = match &self.shapes[s].start {
                            Start::Inside { k, .. } => first_pool + k,
                            Start::Span(pools) => pools.end,
                        };
                        let after = self.group_of.get(next_pool).copied();
                        let own = self.shapes[s].per_layer;
                        let (from, to) = self.window(&label, a, next_pool, own, cap, best);
                        // `b` is a layer count: it indexes the fronts and the bounds.
                        #[allow(clippy::needless_range_loop)]
                        for b in from..=to {
                            let mut stage_bound = self.bound[b] - self.bound[a];
                            if self.single_kind {
                                stage_bound = stage_bound.max((b - a) as f64 * own);
                            }
                            // Monotone in `b`: the stage and what follows cost at least
                            // what is left from here.
                            if stage_bound > cap
                                || label.sum + left + m1 * label.max.max(stage_bound) > best
                            {
                                break;
                            }
                            let later = after.map_or(0.0, |g| self.rest(b, g));
                            if label.sum + stage_bound + later + m1 * label.max.max(stage_bound)
                                > best
                            {
                                continue;
                            }
                            self.choices(s, a, b, &mut choices);
                            if choices.is_empty() {
                                // Memory only grows with the layers held.
                                break;
                            }
                            for &c in &choices {
                                let split = &self.arena[c];
                                let time = if self.single_kind {
                                    time_for(&split.slowest, &[(b - a) as u32])
                                } else {
                                    time_for(&split.slowest, &self.prefix.counts(a..b))
                                };
                                let device = self.device(s, first_pool, split.primary);
                                let hop = label.primary.map_or(0.0, |p| {
                                    transfer_time(
                                        w.profile.link(p, device),
                                        w.work.hidden_state_bytes,
                                    )
                                });
                                let next = Label {
                                    sum: label.sum + hop + time,
                                    max: label.max.max(hop).max(time),
                                    next_pool,
                                    primary: Some(device),
                                    class: self.class_of[device],
                                    from: Some((a, i)),
                                    shape: s,
                                    first_pool,
                                    first_layer: a,
                                    split: c,
                                };
                                let total = next.sum + m1 * next.max;
                                let after = self
                                    .group_of
                                    .get(next_pool)
                                    .map_or(0.0, |&g| self.rest(b, g));
                                if next.sum + after + m1 * next.max > best
                                    || (b < layers && next_pool >= self.group_of.len())
                                    || next.sum + self.rest_bound(layers - b, next_pool, next.max)
                                        > best
                                {
                                    continue;
                                }
                                if b == layers {
                                    best = best.min(total);
                                }
                                insert(&mut fronts[b], next);
                            }
                        }
                    }
                }
            }
        }
        let total = |l: &Label| l.sum + m1 * l.max;
        let mut end: Option<(f64, usize)> = None;
        for (i, l) in fronts[layers].iter().enumerate() {
            if total(l) <= best && end.is_none_or(|(t, _)| total(l) < t) {
                end = Some((total(l), i));
            }
        }
        let (time, mut i) = end?;
        let mut b = layers;
        let mut stages = Vec::new();
        loop {
            let l = fronts[b][i];
            let split = &self.arena[l.split];
            let devices = (0..split.kv_groups.len())
                .map(|pos| self.device(l.shape, l.first_pool, pos))
                .collect();
            stages.push(StagePlacement {
                devices,
                layers: l.first_layer..b,
                kv_groups: split.kv_groups.clone(),
            });
            match l.from {
                Some((a, j)) if a > 0 || fronts[a][j].from.is_some() => (b, i) = (a, j),
                _ => break,
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

    /// The device at priced position `pos` of shape `s` placed from pool `first_pool`.
    fn device(&self, s: usize, first_pool: usize, pos: usize) -> usize {
        let shape = &self.shapes[s];
        match shape.start {
            Start::Inside { group, .. } if self.groups[group].members() > 1 => {
                self.w.profile.pools[first_pool + pos].devices.start
            }
            _ => shape.devices[pos],
        }
    }
}

/// A lower bound on the time of one layer of kind `kind` on `devices`: each half spread
/// over the `kv_heads` devices that would finish it soonest, in continuous shares, with
/// no launch, shared traffic or transfer. A device `d` with share `s` takes at least
/// `s · r_d`, `r_d` its roofline time for the whole half, and the slowest of shares
/// summing to one is smallest when `s_d ∝ 1 / r_d`, giving `1 / Σ 1 / r_d`.
fn spread_bound(w: &Workload, devices: &[usize], kind: usize) -> f64 {
    let take = (w.model.kv_heads as usize).min(devices.len());
    let o = &w.work.kinds[kind].ops;
    let halves = [
        &[o.qkv, o.attention, o.out_proj][..],
        &[o.mlp_up, o.mlp_down][..],
    ];
    halves
        .iter()
        .map(|ops| {
            let mut rates: Vec<f64> = devices
                .iter()
                .map(|&d| {
                    let d = &w.profile.devices[d];
                    let r: f64 = ops
                        .iter()
                        .map(|op| {
                            (op.flops / d.peak(w.model.dtype))
                                .max(op.split_bytes / d.memory_bandwidth)
                        })
                        .sum();
                    1.0 / r
                })
                .collect();
            rates.sort_by(|x, y| y.total_cmp(x));
            let rate: f64 = rates[..take].iter().sum();
            if rate.is_finite() { 1.0 / rate } else { 0.0 }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::devices::Profile;
    use crate::model::Model;
    use crate::work::{AttentionShape, AttentionWork, AttentionWorkSource, WorkCache};

    /// Attention as causal softmax attention costs, with its KV cache resident.
    struct Causal;

    impl AttentionWorkSource for Causal {
        fn attention_work(&self, _: &Path, s: &AttentionShape) -> Result<AttentionWork, String> {
            let pairs = (s.seq * (s.seq + 1) / 2) as f64;
            let b = s.dtype_bytes as f64;
            Ok(AttentionWork {
                flops: 4.0 * (s.batch * s.heads * s.head_dim) as f64 * pairs,
                bytes_moved: (s.batch * s.seq * s.head_dim * (2 * s.heads + 2 * s.kv_heads)) as f64
                    * b,
                resident_bytes: (2 * s.batch * s.seq * s.kv_heads * s.head_dim) as f64 * b,
            })
        }
    }

    /// Numbers in 0..n from a seed (a linear congruential generator: the tests' workloads
    /// are the same on every run).
    fn draws(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        }
    }

    /// The lower bound on the layers left and the bisected stage lengths only skip what
    /// cannot win: with them, without the bisection, and with neither, the search finds
    /// plans equally fast, on groups of identical devices whose memory binds, deep enough
    /// that stages are longer than the bisection's threshold.
    #[test]
    fn shortcuts_change_no_total() {
        let mut next = draws(17);
        for case in 0..12 {
            let layers = 40 + next(120);
            let kv = [1, 2, 4][next(3) as usize];
            let model = Model::parse(
                &format!(
                    "name = \"m\"\nlayers = {layers}\nhidden = 1024\nheads = 8\nkv_heads = {kv}\n\
                     head_dim = 128\nmlp_hidden = 4096\ndtype = \"bf16\"\nbatch = 4\nseq = 256\n\
                     attention = \"a.attn\"\n"
                ),
                Path::new("m.toml"),
            )
            .unwrap();
            let mut text = format!(
                "name = \"p\"\ndefault_link = {{ bandwidth_gbs = {}, latency_us = {} }}\n",
                1 + next(100),
                next(50)
            );
            let groups = 1 + next(3);
            for g in 0..groups {
                let tflops = 10 + next(200);
                // 0.2 to 2 GiB each: a device holds 13 to 130 layers at most.
                let gib = 0.2 + next(10) as f64 * 0.2;
                for i in 0..1 + next(6) {
                    text += &format!(
                        "[[device]]\nname = \"g{g}-{i}\"\nkind = \"gpu\"\n\
                         peak_tflops = {{ f32 = {tflops}, f16 = {tflops}, bf16 = {tflops} }}\n\
                         memory_bandwidth_gbs = {}\nlaunch_overhead_us = {}\nmemory_gib = {gib}\n",
                        100 + next(2000),
                        next(20)
                    );
                }
            }
            let profile = Profile::parse(&text, Path::new("p.toml")).unwrap();
            let mut cache = WorkCache::new(&Causal);
            for m in [1, 2, 4] {
                let w = Workload {
                    model: &model,
                    profile: &profile,
                    work: cache.model_work(&model, 4 / m).unwrap(),
                    micro_batches: m,
                };
                let total = |tuning| best_placement_tuned(&w, f64::INFINITY, tuning).map(|r| r.0);
                let plain = total(Tuning {
                    rest_bound: false,
                    window_from: usize::MAX,
                });
                for tuning in [
                    Tuning::default(),
                    Tuning {
                        rest_bound: true,
                        window_from: 0,
                    },
                    Tuning {
                        rest_bound: true,
                        window_from: usize::MAX,
                    },
                ] {
                    let got = total(tuning);
                    let same = match (plain, got) {
                        (None, None) => true,
                        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x,
                        _ => false,
                    };
                    assert!(
                        same,
                        "case {case}, {m} micro-batches: {got:?} against {plain:?}\n{text}"
                    );
                }
            }
        }
    }

    /// Every way to give `total` K/V groups to `parts` devices.
    fn compositions(total: u64, parts: usize) -> Vec<Vec<u64>> {
        if parts == 1 {
            return vec![vec![total]];
        }
        (0..=total)
            .flat_map(|first| {
                compositions(total - first, parts - 1)
                    .into_iter()
                    .map(move |mut rest| {
                        rest.insert(0, first);
                        rest
                    })
            })
            .collect()
    }

    /// The best total at `w.micro_batches` over every placement: every sequence of runs of
    /// neighbouring pools, every cut of the layers among them, every split of the K/V
    /// groups, each priced by [`evaluate`] and kept if it fits.
    fn brute_force(w: &Workload) -> Option<f64> {
        fn extend(
            w: &Workload,
            pool: usize,
            layer: usize,
            stages: &mut Vec<StagePlacement>,
        ) -> Option<f64> {
            let layers = w.model.layers();
            if layer == layers {
                let placement = Placement {
                    micro_batches: w.micro_batches,
                    stages: stages.clone(),
                };
                let plan = evaluate(w, &placement).ok()?;
                let fits = crate::evaluate::shortages(w.profile, &plan).is_empty();
                return fits.then_some(plan.total_s);
            }
            let pools = &w.profile.pools;
            let mut best: Option<f64> = None;
            for first in pool..pools.len() {
                for last in first..pools.len() {
                    let devices: Vec<usize> =
                        (pools[first].devices.start..pools[last].devices.end).collect();
                    for end in layer + 1..=layers {
                        for kv_groups in compositions(w.model.kv_heads, devices.len()) {
                            stages.push(StagePlacement {
                                devices: devices.clone(),
                                layers: layer..end,
                                kv_groups,
                            });
                            if let Some(t) = extend(w, last + 1, end, stages) {
                                best = Some(best.map_or(t, |b| b.min(t)));
                            }
                            stages.pop();
                        }
                    }
                }
            }
            best
        }
        extend(w, 0, 0, &mut Vec::new())
    }

    /// The shortcuts on small random workloads (groups of identical devices, shared pools,
    /// memory that binds, one to four micro-batches), the stage-length bisection forced on
    /// at every length: the same total as without them, and as brute force.
    #[test]
    fn shortcuts_match_brute_force() {
        let mut next = draws(4242);
        let tunings = [
            Tuning::default(),
            Tuning {
                rest_bound: true,
                window_from: 0,
            },
            Tuning {
                rest_bound: true,
                window_from: usize::MAX,
            },
        ];
        let mut compared = 0;
        for case in 0..CASES {
            let layers = 1 + next(5);
            let kv = [1, 2, 4][next(3) as usize];
            let batch = [1, 2, 4][next(3) as usize];
            let (hidden, head_dim, mlp) = [(64, 16, 128), (256, 64, 512)][next(2) as usize];
            let seq = [16, 128, 1024][next(3) as usize];
            let model = Model::parse(
                &format!(
                    "name = \"m\"\nlayers = {layers}\nhidden = {hidden}\nheads = {}\n\
                     kv_heads = {kv}\nhead_dim = {head_dim}\nmlp_hidden = {mlp}\n\
                     dtype = \"bf16\"\nbatch = {batch}\nseq = {seq}\nattention = \"a.attn\"\n",
                    kv * (1 + next(2))
                ),
                Path::new("m.toml"),
            )
            .unwrap();
            // Weights and cache of the whole model, to size the pools around it.
            let (h, d, q) = (hidden as f64, head_dim as f64, (kv * 2) as f64);
            let size = layers as f64
                * (h * (q + 2.0 * kv as f64) * d
                    + q * d * h
                    + 3.0 * h * mlp as f64
                    + 2.0 * (batch * seq) as f64 * kv as f64 * d)
                * 2.0;
            let mut text = format!(
                "name = \"p\"\ndefault_link = {{ bandwidth_gbs = {}, latency_us = {} }}\n",
                1 + next(100),
                next(50)
            );
            let (mut devices, mut pools) = (0, Vec::new());
            while devices < 4 {
                let copies = [1, 1, 2, 3][next(4) as usize].min(4 - devices);
                let (tflops, bw, launch) = (1 + next(100), 5 + next(3000), next(50));
                let shares_pool = devices > 0 && copies == 1 && next(3) == 0;
                let gib = (0.15 + next(30) as f64 * 0.1) * size / f64::from(1u32 << 30);
                for _ in 0..copies {
                    if !shares_pool {
                        pools.push(gib);
                    }
                    text += &format!(
                        "[[device]]\nname = \"d{devices}\"\nkind = \"gpu\"\n\
                         peak_tflops = {{ f32 = {tflops}, f16 = {tflops}, bf16 = {tflops} }}\n\
                         memory_bandwidth_gbs = {bw}\nlaunch_overhead_us = {launch}\n\
                         pool = \"pool{}\"\n",
                        pools.len() - 1
                    );
                    devices += 1;
                }
                if next(3) == 0 {
                    break;
                }
            }
            for (i, gib) in pools.iter().enumerate() {
                text += &format!("[[pool]]\nname = \"pool{i}\"\nmemory_gib = {gib}\n");
            }
            let profile = Profile::parse(&text, Path::new("p.toml")).unwrap();
            let mut cache = WorkCache::new(&Causal);
            for m in (1..=batch).filter(|m| batch % m == 0) {
                let w = crate::evaluate::workload(&model, &profile, &mut cache, m).unwrap();
                let want = brute_force(&w);
                let plain = Tuning {
                    rest_bound: false,
                    window_from: usize::MAX,
                };
                for tuning in std::iter::once(plain).chain(tunings) {
                    let got = best_placement_tuned(&w, f64::INFINITY, tuning).map(|r| r.0);
                    let same = match (want, got) {
                        (None, None) => true,
                        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x,
                        _ => false,
                    };
                    assert!(
                        same,
                        "case {case}, {m} micro-batches, {tuning:?}: {got:?}, brute force {want:?}\n{model:?}\n{text}"
                    );
                    compared += usize::from(want.is_some());
                }
            }
        }
        // Most cases fit somewhere.
        assert!(compared > CASES, "{compared} plans compared");
    }

    /// Random cases of [`shortcuts_match_brute_force`].
    const CASES: usize = 200;
}
