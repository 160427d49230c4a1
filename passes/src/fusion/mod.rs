//! Fusion: which ops of the graph become one kernel, and in which template.
//!
//! A parallel kernel (indices i, j) becomes one flash-style kernel: per query tile, the query
//! rows are loaded once, key tiles stream through, the pair values are computed in registers,
//! and every reduction over j is accumulated in a *sweep* over the key tiles. Reductions whose
//! argument reads statistics of the same sweep are derived in online form (`online.rs`); those
//! that cannot be get a later sweep, and the dump says why. Nothing of size S x S is ever stored.
//! A recurrent kernel (index t) runs per (b, h): in chunks where its chunked parallel form is
//! derived (`chunked.rs`), else as one scan, with the reason in the dump (`recurrent.rs`).

pub mod chunked;
pub mod dump;
pub mod error;
pub mod online;
pub mod recurrent;
pub mod tile_rule;
pub mod tree;

use attnc_ir::graph::{Graph, Op, PortType, ReduceKind, ValueRef};
use attnc_ir::types::{FrameIndex, IndexSet};
pub use error::FusionError;
use online::{Classify, NotOnline, OnlineTerm};
use petgraph::stable_graph::NodeIndex;
use std::collections::{BTreeMap, BTreeSet};
use tree::Tree;

/// The kernels of one graph (attnc makes one per `.attn` kernel today; the list is where
/// unfusable graphs will split).
#[derive(Clone, Debug)]
pub struct FusedProgram {
    pub kernels: Vec<FusedKernel>,
}

#[derive(Clone, Debug)]
pub struct FusedKernel {
    pub name: String,
    pub template: Template,
}

#[derive(Clone, Debug)]
pub enum Template {
    Parallel(ParallelKernel),
    Recurrent(recurrent::RecurrentKernel),
}

/// A flash-style kernel over (b, h, query tile), streaming key tiles.
#[derive(Clone, Debug, Default)]
pub struct ParallelKernel {
    /// Values that vary with neither i nor j (per head or per call), computed once per (b, h).
    pub per_head: Vec<NodeIndex>,
    /// Query-side values computed once per query row before the sweeps (rows of q, maps on them).
    pub query_side: Vec<NodeIndex>,
    /// Key-side values computed per key row of a tile (rows of k and v, maps on them).
    pub key_side: Vec<NodeIndex>,
    /// Values per (i, j) pair that read no statistic: the score and its modifications.
    pub pair: Vec<NodeIndex>,
    /// The mask, evaluated per pair in partially covered tiles; whole tiles follow `tile_rule`.
    pub mask: Option<NodeIndex>,
    pub sweeps: Vec<Sweep>,
    /// Pair values that read statistics: computed inside the reductions' arguments, not stored.
    pub absorbed: Vec<NodeIndex>,
    /// Per-row values after the last sweep (normalisation, output maps) and the outputs.
    pub epilogue: Vec<NodeIndex>,
}

/// One pass over the key tiles of a query tile, accumulating some reductions.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub reductions: Vec<ReductionPlan>,
}

#[derive(Clone, Debug)]
pub struct ReductionPlan {
    pub node: NodeIndex,
    pub kind: ReduceKind,
    /// For an aggregation, the key-side row the weight multiplies.
    pub row: Option<ValueRef>,
    pub accumulation: Accumulation,
}

#[derive(Clone, Debug)]
pub enum Accumulation {
    /// Running sum, maximum or minimum of an argument that reads only final statistics.
    Plain {
        argument: Tree,
        /// Why this reduction waits for an earlier sweep, when it does.
        waits: Option<Wait>,
    },
    /// Terms with their own accumulators, rescaled as the running statistics move.
    Online { terms: Vec<OnlineTerm> },
}

/// Why a reduction cannot join the sweep of the statistics it reads.
#[derive(Clone, Debug)]
pub enum Wait {
    /// A maximum or minimum of values that read a statistic needs it final.
    ExtremumOfStatistic { kind: ReduceKind, sweep: usize },
    /// The rows an aggregation sums read a statistic.
    RowsReadStatistic,
    /// The sum has no online form; `part` is what prevents it.
    NoOnlineForm { reason: &'static str, part: Tree },
}

/// Fuses the graph of one kernel.
pub fn fuse(graph: &Graph) -> Result<FusedProgram, FusionError> {
    let template = if graph.extents.contains_key(&FrameIndex::T) {
        Template::Recurrent(recurrent::analyse(graph)?)
    } else {
        Template::Parallel(parallel(graph)?)
    };
    Ok(FusedProgram {
        kernels: vec![FusedKernel {
            name: graph.kernel.clone(),
            template,
        }],
    })
}

/// The graph's ops in topological order, or the cycle as an error.
pub(crate) fn topo_order(graph: &Graph) -> Result<Vec<NodeIndex>, FusionError> {
    match graph.topo_order() {
        Some(order) => Ok(order),
        None => Err(FusionError::Cycle {
            kernel: graph.kernel.clone(),
            span: error::kernel_span(graph)?,
        }),
    }
}

fn indices_of(graph: &Graph, n: NodeIndex) -> Option<IndexSet> {
    match graph.node(n).results.first() {
        Some(PortType::Value(t)) => Some(t.indices),
        _ => None,
    }
}

/// The reductions each node's value depends on (a reduction depends on itself), for nodes in
/// topological `order`: which statistics a value reads, so fusion and the back ends agree on
/// which values must wait for which sweep.
pub fn reductions_read(
    graph: &Graph,
    order: &[NodeIndex],
) -> BTreeMap<NodeIndex, BTreeSet<NodeIndex>> {
    let mut stats: BTreeMap<NodeIndex, BTreeSet<NodeIndex>> = BTreeMap::new();
    for &n in order {
        let mut s: BTreeSet<NodeIndex> = BTreeSet::new();
        if is_reduction(&graph.node(n).op) {
            s.insert(n);
        } else {
            for (v, _) in graph.operands(n) {
                s.extend(stats.get(&v.node).into_iter().flatten().copied());
            }
        }
        stats.insert(n, s);
    }
    stats
}

impl ParallelKernel {
    /// The sweep each reduction is accumulated in.
    pub fn sweep_of(&self) -> BTreeMap<NodeIndex, usize> {
        let mut sweep_of = BTreeMap::new();
        for (k, s) in self.sweeps.iter().enumerate() {
            for r in &s.reductions {
                sweep_of.insert(r.node, k);
            }
        }
        sweep_of
    }
}

fn is_reduction(op: &Op) -> bool {
    matches!(op, Op::RowReduce { .. } | Op::Aggregate)
}

/// The data operands of a reduction (the trailing mask is not data).
fn data_operands(graph: &Graph, n: NodeIndex) -> Vec<ValueRef> {
    let ops: Vec<ValueRef> = graph.operands(n).iter().map(|(v, _)| *v).collect();
    let data = match graph.node(n).op {
        Op::Aggregate => 2,
        _ => 1,
    };
    ops.into_iter().take(data).collect()
}

struct SweepClassify<'a> {
    graph: &'a Graph,
    stats: &'a BTreeMap<NodeIndex, BTreeSet<NodeIndex>>,
    sweep_of: &'a BTreeMap<NodeIndex, usize>,
    sweep: usize,
}

impl Classify for SweepClassify<'_> {
    fn reads_running(&self, v: ValueRef) -> bool {
        self.stats
            .get(&v.node)
            .is_some_and(|s| s.iter().any(|r| self.sweep_of.get(r) == Some(&self.sweep)))
    }

    fn varies_with_keys(&self, v: ValueRef) -> bool {
        indices_of(self.graph, v.node).is_some_and(|s| s.contains(FrameIndex::J))
    }
}

fn parallel(graph: &Graph) -> Result<ParallelKernel, FusionError> {
    let order = topo_order(graph)?;
    let stats = reductions_read(graph, &order);
    let reads_stats = |v: ValueRef| stats.get(&v.node).is_some_and(|s| !s.is_empty());
    let pair_level =
        |v: ValueRef| indices_of(graph, v.node).is_some_and(|s| s.contains(FrameIndex::J));
    // Pair-level maps that read statistics are seen through; everything else is a leaf.
    let inline = |v: ValueRef| {
        matches!(graph.node(v.node).op, Op::Map { .. })
            && pair_level(v)
            && reads_stats(v)
            && !is_reduction(&graph.node(v.node).op)
    };
    let mut sweep_of: BTreeMap<NodeIndex, usize> = BTreeMap::new();
    let mut plans: Vec<(usize, ReductionPlan)> = Vec::new();
    for &n in order.iter().filter(|n| is_reduction(&graph.node(**n).op)) {
        let data = data_operands(graph, n);
        let deps: BTreeSet<NodeIndex> = data
            .iter()
            .flat_map(|v| stats.get(&v.node).into_iter().flatten().copied())
            .collect();
        let (kind, row) = match graph.node(n).op {
            Op::RowReduce { kind } => (kind, None),
            _ => (ReduceKind::Sum, data.get(1).copied()),
        };
        let argument = if inline(data[0]) {
            Tree::of_map(graph, data[0], &inline)
        } else {
            Tree::Value(data[0])
        };
        let latest = deps.iter().filter_map(|d| sweep_of.get(d)).max().copied();
        let (sweep, accumulation) = match latest {
            None => (
                0,
                Accumulation::Plain {
                    argument,
                    waits: None,
                },
            ),
            Some(s) if kind != ReduceKind::Sum => (
                s + 1,
                Accumulation::Plain {
                    argument,
                    waits: Some(Wait::ExtremumOfStatistic { kind, sweep: s }),
                },
            ),
            Some(s) => {
                let row_reads = row.is_some_and(reads_stats);
                let classify = SweepClassify {
                    graph,
                    stats: &stats,
                    sweep_of: &sweep_of,
                    sweep: s,
                };
                match (row_reads, online::derive(&argument, &classify)) {
                    (false, Ok(terms)) => (s, Accumulation::Online { terms }),
                    (true, _) => (
                        s + 1,
                        Accumulation::Plain {
                            argument,
                            waits: Some(Wait::RowsReadStatistic),
                        },
                    ),
                    (false, Err(NotOnline { reason, part })) => (
                        s + 1,
                        Accumulation::Plain {
                            argument,
                            waits: Some(Wait::NoOnlineForm { reason, part }),
                        },
                    ),
                }
            }
        };
        sweep_of.insert(n, sweep);
        plans.push((
            sweep,
            ReductionPlan {
                node: n,
                kind,
                row,
                accumulation,
            },
        ));
    }
    let sweeps_needed = plans.iter().map(|(s, _)| s + 1).max().unwrap_or(0);
    let mut kernel = ParallelKernel {
        sweeps: (0..sweeps_needed)
            .map(|_| Sweep {
                reductions: Vec::new(),
            })
            .collect(),
        ..ParallelKernel::default()
    };
    for (s, plan) in plans {
        kernel.sweeps[s].reductions.push(plan);
    }
    for &n in &order {
        let op = &graph.node(n).op;
        if is_reduction(op) || matches!(op, Op::Input { .. }) {
            continue;
        }
        if matches!(op, Op::Mask { .. }) {
            kernel.mask = Some(n);
            continue;
        }
        let reads = stats.get(&n).is_some_and(|s| !s.is_empty());
        let set = indices_of(graph, n).unwrap_or(IndexSet::EMPTY);
        let (i, j) = (set.contains(FrameIndex::I), set.contains(FrameIndex::J));
        let list = match (matches!(op, Op::Output { .. }), reads, i, j) {
            (true, _, _, _) => &mut kernel.epilogue,
            (_, true, _, true) => &mut kernel.absorbed,
            (_, true, _, false) => &mut kernel.epilogue,
            (_, false, _, true) if i => &mut kernel.pair,
            (_, false, _, true) => &mut kernel.key_side,
            (_, false, true, false) => &mut kernel.query_side,
            (_, false, false, false) => &mut kernel.per_head,
        };
        list.push(n);
    }
    Ok(kernel)
}
