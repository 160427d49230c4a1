//! Tiling: each fused kernel as a tiled loop nest for a target, with tile sizes, the loop order,
//! where each buffer lives, and how many tiles the mask lets through, chosen by the cost model.

pub mod cost_model;
pub mod dump;
pub mod error;
pub mod gpu_cost_model;
pub mod target;

use crate::fusion::recurrent::RecurrentKernel;
use crate::fusion::tile_rule::{Coverage, Span1, TileBox, key_tile_coverage, tree_coverage};
use crate::fusion::{FusedProgram, ParallelKernel, Template};
use attnc_ir::bind::Bindings;
use attnc_ir::graph::{Graph, Op, PortType};
use attnc_ir::types::{Feature, FrameIndex};
use attnc_kernel_abi::ElementType;
use attnc_source::Span;
use cost_model::{Problem, RegisterBlock};
pub use error::TilingError;
use std::collections::BTreeMap;
use target::{CpuTarget, GpuTarget, MatrixShape, Target};

#[derive(Clone, Debug)]
pub struct TiledProgram {
    pub target: Target,
    /// The dims the tiles were chosen for.
    pub dims: BTreeMap<String, i64>,
    /// Whether those dims were given (`--shape`) or nominal.
    pub nominal: bool,
    pub kernels: Vec<TiledKernel>,
}

impl TiledProgram {
    /// Turns every chunked recurrence of the plan into a scan, saying `why`: for a back end that
    /// writes only the scan, so that the plan says what runs.
    pub fn scan_recurrences(&mut self, why: &str) {
        for k in &mut self.kernels {
            if let TiledBody::Recurrent {
                chunk, why_scan, ..
            } = &mut k.body
                && chunk.take().is_some()
            {
                *why_scan = Some(why.to_string());
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct TiledKernel {
    pub name: String,
    pub body: TiledBody,
}

#[derive(Clone, Debug)]
pub enum TiledBody {
    Parallel(ParallelTiling),
    Recurrent {
        /// Steps per chunk of the chunked form; `None` for a scan.
        chunk: Option<usize>,
        /// Why the recurrence runs as a scan, when it does.
        why_scan: Option<String>,
        /// A state's transition has the delta rule's rank-one correction.
        delta_rule: bool,
        state_bytes: usize,
        place: Place,
    },
}

/// A parallel kernel tiled for a target: the same description for CPUs and GPUs, with the
/// target's own parts in [`Mapping`] and each contraction's [`Instruction`].
#[derive(Clone, Debug)]
pub struct ParallelTiling {
    pub problem: Problem,
    pub query_tile: usize,
    pub key_tile: usize,
    pub mapping: Mapping,
    /// The score (query tile x key tile^T) and aggregation (weights x value rows) products.
    pub contractions: Vec<Contraction>,
    pub tiles: TileCount,
    pub buffers: Vec<Buffer>,
    pub predicted_seconds: f64,
    /// Bytes one work item keeps live (CPU), or shared memory per block (GPU).
    pub working_set: usize,
}

/// How work items map onto the machine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mapping {
    /// One work item (b, h, query tile) per core at a time.
    Cores { cores: usize },
    /// One thread block per (query tile, h, b): `warps` warps of 16 query rows each; key and
    /// value tiles stream through shared memory `stages` deep; the score's query fragments stay
    /// in registers when `query_in_registers`.
    Blocks {
        warps: usize,
        threads: usize,
        stages: usize,
        shared_bytes: usize,
        registers_per_thread: usize,
        query_in_registers: bool,
    },
}

/// One of the two contractions of a parallel kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Score,
    Aggregate,
}

/// A contraction as tiled: an `m x n` result per tile summed over `k`, its operands' and
/// accumulator's types, and the instruction that computes it on the target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contraction {
    pub role: Role,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub operand: ElementType,
    pub accumulator: ElementType,
    pub instruction: Instruction,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Instruction {
    /// CPU: a register block of vector FMAs.
    VectorFma(RegisterBlock),
    /// CPU: scalar loops LLVM vectorises (no whole register block fits).
    ScalarLoops,
    /// GPU: the matrix units' instruction (`mma.sync`, a cooperative matrix).
    Matrix(MatrixShape),
    /// GPU: a warpgroup's asynchronous product (`wgmma`, m = 64 rows per warpgroup), its B
    /// operand (and for scores A too) read from shared memory through descriptors.
    Warpgroup(MatrixShape),
    /// GPU: plain FMAs per thread (no matrix unit for these operands).
    ThreadFma,
}

impl ParallelTiling {
    pub fn contraction(&self, role: Role) -> Option<&Contraction> {
        self.contractions.iter().find(|c| c.role == role)
    }

    /// The CPU register block of a contraction, if it has one.
    pub fn register_block(&self, role: Role) -> Option<RegisterBlock> {
        match self.contraction(role)?.instruction {
            Instruction::VectorFma(b) => Some(b),
            _ => None,
        }
    }
}

/// Key tiles visited over all query tiles of one (b, h) slice, as the tile rule decides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileCount {
    pub total: usize,
    pub skipped: usize,
    pub full: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    pub name: &'static str,
    pub shape: String,
    pub place: Place,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Registers,
    L1,
    L2,
    /// A GPU block's shared (workgroup) memory.
    Shared,
    Memory,
}

/// The dim a kernel is tiled for when no shape is given.
pub const NOMINAL_DIM: i64 = 128;

/// Binds every dim: given values first, then defaults, then [`NOMINAL_DIM`].
pub fn tiling_dims(graph: &Graph, given: Option<&Bindings>) -> (BTreeMap<String, i64>, bool) {
    if let Some(b) = given {
        return (b.dims.clone(), false);
    }
    let mut dims = BTreeMap::new();
    for d in &graph.dims {
        let v = d
            .default
            .as_ref()
            .and_then(|(arena, root)| arena.eval_constant(*root, &dims).ok())
            .map_or(NOMINAL_DIM, |v| v as i64);
        dims.insert(d.name.clone(), v);
    }
    (dims, true)
}

pub fn tile(
    graph: &Graph,
    fused: &FusedProgram,
    target: &Target,
    given: Option<&Bindings>,
) -> Result<TiledProgram, TilingError> {
    let (dims, nominal) = tiling_dims(graph, given);
    let bindings = Bindings { dims: dims.clone() };
    let kernels = fused
        .kernels
        .iter()
        .map(|k| {
            let body = match &k.template {
                Template::Parallel(p) => parallel(graph, p, target, &bindings)?,
                Template::Recurrent(r) => recurrent(graph, r, target, &bindings),
            };
            Ok(TiledKernel {
                name: k.name.clone(),
                body,
            })
        })
        .collect::<Result<Vec<_>, TilingError>>()?;
    Ok(TiledProgram {
        target: target.clone(),
        dims,
        nominal,
        kernels,
    })
}

fn feature_len(b: &Bindings, t: Option<&PortType>) -> usize {
    match t {
        Some(PortType::Value(v)) => match &v.feature {
            Feature::Vector(d) => b.eval(d).map_or(1, |x| x.max(1) as usize),
            _ => 1,
        },
        _ => 1,
    }
}

/// What the tiling of a parallel kernel needs to know about its plan.
struct Shape {
    problem: Problem,
    /// Score contractions (differential attention has two).
    scores: usize,
    /// Accumulators of value rows: one per term of each aggregation.
    accumulators: usize,
    /// The storage type of the score's and the aggregation's operands, when one type serves
    /// every input that feeds them.
    score_operand: Option<ElementType>,
    value_operand: Option<ElementType>,
    /// Bytes per query row and per key row of the values a GPU block computes into shared memory
    /// besides the operand tiles (maps on q and k, per-row scalars), counted as f32 rows padded
    /// like operand rows, plus their copies in a 16-bit operand type.
    extra_query_bytes: usize,
    extra_key_bytes: usize,
    /// Loads of data per pair (bias tables, block layouts): gathers per element.
    pair_loads: usize,
}

fn shape_of(graph: &Graph, p: &ParallelKernel, b: &Bindings) -> Shape {
    let extent = |fi| b.extent(graph, fi);
    let mut d_qk = 1;
    let mut d_v = 1;
    let mut scores = 0;
    let mut accumulators = 0;
    let mut score_types = Vec::new();
    let mut value_types = Vec::new();
    for n in p.pair.iter() {
        if let Op::Score = graph.node(*n).op {
            scores += 1;
            d_qk = d_qk.max(feature_len(
                b,
                graph.operands(*n).first().map(|(_, e)| &e.ty),
            ));
            for (v, _) in graph.operands(*n) {
                score_types.extend(storage_types(graph, v.node));
            }
        }
    }
    for r in p.sweeps.iter().flat_map(|s| &s.reductions) {
        if let Op::Aggregate = graph.node(r.node).op {
            d_v = d_v.max(feature_len(b, graph.node(r.node).results.first()));
            accumulators += match &r.accumulation {
                crate::fusion::Accumulation::Online { terms } => terms.len(),
                crate::fusion::Accumulation::Plain { .. } => 1,
            };
            if let Some(row) = r.row {
                value_types.extend(storage_types(graph, row.node));
            }
        }
    }
    let uniform = |types: &[ElementType]| {
        let first = *types.first()?;
        types.iter().all(|t| *t == first).then_some(first)
    };
    Shape {
        problem: Problem {
            slices: extent(FrameIndex::B) * extent(FrameIndex::H),
            queries: extent(FrameIndex::I),
            keys: extent(FrameIndex::J),
            d_qk,
            d_v,
            density: 1.0,
            partial: 0.0,
            sweeps: p.sweeps.len().max(1),
        },
        scores,
        accumulators,
        score_operand: uniform(&score_types),
        value_operand: uniform(&value_types),
        extra_query_bytes: side_bytes(graph, &p.query_side, b),
        extra_key_bytes: side_bytes(graph, &p.key_side, b),
        pair_loads: p
            .pair
            .iter()
            .filter(|n| matches!(graph.node(**n).op, Op::Load { .. }))
            .count(),
    }
}

/// An upper bound of the shared bytes per row of a block's computed query-side or key-side
/// values: every value that is not a plain load counts as an f32 row and a 16-bit copy.
fn side_bytes(graph: &Graph, nodes: &[petgraph::stable_graph::NodeIndex], b: &Bindings) -> usize {
    nodes
        .iter()
        .filter(|n| {
            !matches!(graph.node(**n).op, Op::Load { .. })
                || feature_len(b, graph.node(**n).results.first()) == 1
        })
        .map(|n| {
            let len = feature_len(b, graph.node(*n).results.first());
            let padded = if len > 1 {
                len.div_ceil(16) * 16 + 8
            } else {
                1
            };
            padded * (4 + 2)
        })
        .sum()
}

/// The storage types of the float inputs a value is computed from.
fn storage_types(graph: &Graph, n: petgraph::stable_graph::NodeIndex) -> Vec<ElementType> {
    let mut out = Vec::new();
    let mut stack = vec![n];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(m) = stack.pop() {
        if !seen.insert(m) {
            continue;
        }
        match &graph.node(m).op {
            Op::Input { ty, .. } if ty.dtype.is_float() => out.push(ty.dtype),
            Op::Load { .. } => {
                // A load's data comes from its first operand; the others are indices.
                if let Some((v, _)) = graph.operands(m).first() {
                    stack.push(v.node);
                }
            }
            _ => stack.extend(graph.operands(m).iter().map(|(v, _)| v.node)),
        }
    }
    out
}

fn parallel(
    graph: &Graph,
    p: &ParallelKernel,
    target: &Target,
    b: &Bindings,
) -> Result<TiledBody, TilingError> {
    let shape = shape_of(graph, p, b);
    let at = Refusal {
        kernel: &graph.kernel,
        span: contraction_span(graph, p)?,
    };
    // The tile rule's coverage depends on the tile sizes: measure it for each candidate.
    let coverage = |bq: usize, bk: usize| {
        let t = count_tiles(graph, p, b, bq, bk);
        let visited = (t.total - t.skipped).max(1);
        (
            visited as f64 / t.total.max(1) as f64,
            (visited - t.full.min(visited)) as f64 / visited as f64,
        )
    };
    let mut tiling = match target {
        Target::Cpu(cpu) => cpu_tiling(cpu, &shape, &coverage, &at)?,
        Target::Gpu(gpu) => gpu_tiling(gpu, &shape, &coverage, &at)?,
    };
    tiling.tiles = count_tiles(graph, p, b, tiling.query_tile, tiling.key_tile);
    Ok(TiledBody::Parallel(tiling))
}

/// Where a refusal points: the kernel and the contraction whose rows decide the tile sizes.
struct Refusal<'a> {
    kernel: &'a str,
    span: Span,
}

/// The span of the contraction whose rows a tile holds: the first score, else the first
/// aggregation, else the kernel's output.
fn contraction_span(graph: &Graph, p: &ParallelKernel) -> Result<Span, TilingError> {
    let score = p
        .pair
        .iter()
        .find(|n| matches!(graph.node(**n).op, Op::Score));
    let aggregate = p
        .sweeps
        .iter()
        .flat_map(|s| &s.reductions)
        .find(|r| matches!(graph.node(r.node).op, Op::Aggregate))
        .map(|r| &r.node);
    match score.or(aggregate) {
        Some(&n) => Ok(graph.node(n).span),
        None => crate::fusion::error::kernel_span(graph).map_err(|_| TilingError::Empty {
            kernel: graph.kernel.clone(),
        }),
    }
}

fn cpu_tiling(
    cpu: &CpuTarget,
    shape: &Shape,
    coverage: &dyn Fn(usize, usize) -> (f64, f64),
    at: &Refusal,
) -> Result<ParallelTiling, TilingError> {
    let problem = shape.problem;
    let choice =
        cost_model::choose_with(cpu, &problem, coverage).ok_or_else(|| TilingError::CpuCaches {
            kernel: at.kernel.to_string(),
            target: cpu.name.clone(),
            d_qk: problem.d_qk,
            d_v: problem.d_v,
            l2_kib: cpu.l2_bytes >> 10,
            span: at.span,
        })?;
    let (density, partial) = coverage(choice.query_tile, choice.key_tile);
    let problem = Problem {
        density,
        partial,
        ..problem
    };
    let place = |bytes: usize| {
        if bytes <= cpu.l1_bytes / 4 {
            Place::L1
        } else {
            Place::L2
        }
    };
    let (bq, bk) = (choice.query_tile, choice.key_tile);
    let (d_qk, d_v) = (problem.d_qk, problem.d_v);
    let buffers = vec![
        Buffer {
            name: "query tile",
            shape: format!("{bq} x {d_qk}"),
            place: place(4 * bq * d_qk),
        },
        Buffer {
            name: "key tile",
            shape: format!("{bk} x {d_qk}"),
            place: place(4 * bk * d_qk),
        },
        Buffer {
            name: "value tile",
            shape: format!("{bk} x {d_v}"),
            place: place(4 * bk * d_v),
        },
        Buffer {
            name: "key tile, transposed",
            shape: format!("{d_qk} x {bk}"),
            place: place(4 * bk * d_qk),
        },
        Buffer {
            name: "pair tile",
            shape: format!("{bq} x {bk}"),
            place: place(4 * bq * bk),
        },
        Buffer {
            name: "weight tile",
            shape: format!("{bq} x {bk} per distinct weight"),
            place: place(4 * bq * bk),
        },
        Buffer {
            name: "accumulators",
            shape: format!("{bq} x {d_v} per online term"),
            place: place(4 * bq * d_v),
        },
        Buffer {
            name: "row statistics",
            shape: format!("{bq} per reduction"),
            place: Place::Registers,
        },
        Buffer {
            name: "inputs and outputs",
            shape: "whole tensors".to_string(),
            place: Place::Memory,
        },
    ];
    let instruction =
        |b: Option<RegisterBlock>| b.map_or(Instruction::ScalarLoops, Instruction::VectorFma);
    let contraction = |role, m, n, k, b| Contraction {
        role,
        m,
        n,
        k,
        operand: ElementType::F32,
        accumulator: ElementType::F32,
        instruction: instruction(b),
    };
    Ok(ParallelTiling {
        problem,
        query_tile: bq,
        key_tile: bk,
        mapping: Mapping::Cores { cores: cpu.cores },
        contractions: vec![
            contraction(Role::Score, bq, bk, d_qk, choice.score_block),
            contraction(Role::Aggregate, bq, d_v, bk, choice.aggregate_block),
        ],
        tiles: TileCount {
            total: 0,
            skipped: 0,
            full: 0,
        },
        buffers,
        predicted_seconds: choice.predicted_seconds,
        working_set: choice.working_set,
    })
}

fn gpu_tiling(
    gpu: &GpuTarget,
    shape: &Shape,
    coverage: &dyn Fn(usize, usize) -> (f64, f64),
    at: &Refusal,
) -> Result<ParallelTiling, TilingError> {
    // The matrix unit takes 16-bit operands as they are stored and f32 ones as tf32; inputs
    // of mixed types are computed in f32 (tf32 on the matrix unit).
    let operand = |t: Option<ElementType>| match t {
        Some(t @ (ElementType::Bf16 | ElementType::F16)) => t,
        _ => ElementType::F32,
    };
    let (score_type, value_type) = (operand(shape.score_operand), operand(shape.value_operand));
    let request = gpu_cost_model::Request {
        problem: shape.problem,
        scores: shape.scores,
        accumulators: shape.accumulators.max(1),
        score_operand: score_type,
        value_operand: value_type,
        extra_query_bytes: shape.extra_query_bytes,
        extra_key_bytes: shape.extra_key_bytes,
        pair_loads: shape.pair_loads,
    };
    let choice = gpu_cost_model::choose(gpu, &request, coverage).ok_or_else(|| {
        TilingError::GpuResources {
            kernel: at.kernel.to_string(),
            target: gpu.name.clone(),
            d_qk: shape.problem.d_qk,
            d_v: shape.problem.d_v,
            shared_kib: gpu.shared_bytes_per_block >> 10,
            registers: gpu.max_registers_per_thread,
            span: at.span,
        }
    })?;
    let (bq, bk) = (choice.query_tile, choice.key_tile);
    let (density, partial) = coverage(bq, bk);
    let problem = Problem {
        density,
        partial,
        ..shape.problem
    };
    let (d_qk, d_v) = (problem.d_qk, problem.d_v);
    let instruction = |t| {
        gpu.matrix_shape(t)
            .map_or(Instruction::ThreadFma, Instruction::Matrix)
    };
    // `wgmma` where the target has it: 16-bit operands, whole warpgroups, a key tile that is a
    // valid n, and head dims in whole k steps of 16 (the descriptors address no padding); the
    // value products follow when the value rows are a valid n too.
    let sixteen_bit = |t| matches!(t, ElementType::Bf16 | ElementType::F16);
    let warpgroup_scores = gpu.warpgroup_mma
        && sixteen_bit(score_type)
        && choice.warps.is_multiple_of(4)
        && bk.is_multiple_of(8)
        && bk <= 256
        && d_qk.is_multiple_of(16);
    let warpgroup_values =
        warpgroup_scores && sixteen_bit(value_type) && d_v.is_multiple_of(8) && d_v <= 256;
    let warpgroup = |operand, n| {
        Instruction::Warpgroup(MatrixShape {
            m: 64,
            n,
            k: 16,
            operand,
            accumulator: ElementType::F32,
            tf32: false,
        })
    };
    let contractions = vec![
        Contraction {
            role: Role::Score,
            m: bq,
            n: bk,
            k: d_qk,
            operand: score_type,
            accumulator: ElementType::F32,
            instruction: if warpgroup_scores {
                warpgroup(score_type, bk)
            } else {
                instruction(score_type)
            },
        },
        Contraction {
            role: Role::Aggregate,
            m: bq,
            n: d_v,
            k: bk,
            operand: value_type,
            accumulator: ElementType::F32,
            instruction: if warpgroup_values {
                warpgroup(value_type, d_v)
            } else {
                instruction(value_type)
            },
        },
    ];
    let buffers = choice.buffers.clone();
    Ok(ParallelTiling {
        problem,
        query_tile: bq,
        key_tile: bk,
        mapping: Mapping::Blocks {
            warps: choice.warps,
            threads: choice.warps * gpu.subgroup,
            stages: choice.stages,
            shared_bytes: choice.shared_bytes,
            registers_per_thread: choice.registers,
            query_in_registers: choice.query_in_registers,
        },
        contractions,
        tiles: TileCount {
            total: 0,
            skipped: 0,
            full: 0,
        },
        buffers,
        predicted_seconds: choice.predicted_seconds,
        working_set: choice.shared_bytes,
    })
}

/// Key tiles of one query tile evaluated exactly; past this, key tiles are sampled too.
const EXACT_KEY_TILES: usize = 1 << 10;

/// (query tile, key tile) pairs the tile rule is applied to at most, whatever the shape.
const SAMPLED_PAIRS: usize = 1 << 14;

/// Applies the tile rule to every (query tile, key tile) of slice (b = 0, h = 0), or to an
/// even sample of them scaled back up, so that the work stays bounded for any sequence length
/// (S = 1e9 would otherwise take 1.5e7 evaluations per query tile). Counts saturate rather than
/// overflow.
fn count_tiles(graph: &Graph, p: &ParallelKernel, b: &Bindings, bq: usize, bk: usize) -> TileCount {
    let (rows, cols) = (
        b.extent(graph, FrameIndex::I),
        b.extent(graph, FrameIndex::J),
    );
    let (qt, kt) = (rows.div_ceil(bq), cols.div_ceil(bk));
    let total = qt.saturating_mul(kt);
    let mut count = TileCount {
        total,
        skipped: 0,
        full: 0,
    };
    let Some(mask) = p.mask else {
        count.full = count.total;
        return count;
    };
    let tree = crate::fusion::tile_rule::mask_tree(graph, mask);
    let mut tally = |c: Coverage| match c {
        Coverage::Empty => count.skipped += 1,
        Coverage::Full => count.full += 1,
        Coverage::Partial => {}
    };
    let sampled = if kt <= EXACT_KEY_TILES {
        // Every key tile of every `stride`-th query tile.
        let stride = total.div_ceil(SAMPLED_PAIRS).max(1);
        let mut sampled = 0usize;
        for q in (0..qt).step_by(stride) {
            let rows_of_tile = q * bq..((q + 1) * bq).min(rows);
            for c in key_tile_coverage(graph, &tree, &b.dims, (0, 0), rows_of_tile, bk, cols) {
                sampled += 1;
                tally(c);
            }
        }
        sampled
    } else {
        // Long sequences: an even grid of (query tile, key tile) pairs.
        let q_stride = qt.div_ceil(SAMPLED_PAIRS / EXACT_KEY_TILES).max(1);
        let k_stride = kt.div_ceil(EXACT_KEY_TILES).max(1);
        let span = |lo: usize, hi: usize| Span1 {
            lo: lo as f64,
            hi: hi as f64,
        };
        let mut tile = TileBox {
            ranges: BTreeMap::new(),
        };
        tile.ranges.insert(FrameIndex::B, span(0, 0));
        tile.ranges.insert(FrameIndex::H, span(0, 0));
        let mut sampled = 0usize;
        for q in (0..qt).step_by(q_stride) {
            let i0 = q * bq;
            tile.ranges
                .insert(FrameIndex::I, span(i0, (i0 + bq).min(rows) - 1));
            for k in (0..kt).step_by(k_stride) {
                let j0 = k * bk;
                tile.ranges
                    .insert(FrameIndex::J, span(j0, (j0 + bk).min(cols) - 1));
                sampled += 1;
                tally(tree_coverage(graph, &tree, &b.dims, &tile));
            }
        }
        sampled
    };
    if sampled < total {
        // In u128: the product of a count and S² tiles does not fit in 64 bits.
        let scale = |x: usize| {
            (x as u128 * total as u128 / sampled.max(1) as u128).min(total as u128) as usize
        };
        count.skipped = scale(count.skipped);
        count.full = scale(count.full);
    }
    count
}

fn recurrent(graph: &Graph, r: &RecurrentKernel, target: &Target, b: &Bindings) -> TiledBody {
    // Recurrences are tiled by the CPU rules for now; a GPU scan keeps its states the same way.
    let host = CpuTarget::xeon_avx512_2core();
    let cpu = match target {
        Target::Cpu(cpu) => cpu,
        Target::Gpu(_) => &host,
    };
    let state_bytes = match &graph.node(r.recurrence).op {
        Op::Recurrence { states, .. } => states
            .iter()
            .map(|s| match &s.feature {
                Feature::Scalar => 4,
                Feature::Vector(d) | Feature::Diag(d) => 4 * b.eval(d).unwrap_or(1).max(1) as usize,
                Feature::Matrix(x, y) => {
                    4 * (b.eval(x).unwrap_or(1) * b.eval(y).unwrap_or(1)).max(1) as usize
                }
            })
            .sum(),
        _ => 0,
    };
    // On a CUDA GPU, chunks of 64 steps: a 16-step tile of the products for each of a block's
    // four warps (the back end shortens them where its arrays would not fit shared memory).
    // Elsewhere (CPUs, and the Vulkan back end, which shrinks them to fit), chunks as long as the vector width at least, and short enough that a chunk's pair
    // block (chunk x chunk) stays in L1 beside the state.
    let chunk = r.chunked.is_ok().then(|| {
        if let Target::Gpu(g) = target
            && g.api == target::GpuApi::Cuda
        {
            return 64;
        }
        [16usize, 32, 64, 128]
            .into_iter()
            .filter(|c| *c >= cpu.f32_lanes)
            .take_while(|c| 4 * c * c + state_bytes <= cpu.l1_bytes)
            .last()
            .unwrap_or(cpu.f32_lanes)
    });
    let place = if state_bytes <= cpu.l1_bytes / 2 {
        Place::L1
    } else if state_bytes <= cpu.l2_bytes / 2 {
        Place::L2
    } else {
        Place::Memory
    };
    TiledBody::Recurrent {
        chunk,
        why_scan: r.chunked.as_ref().err().cloned(),
        delta_rule: r
            .chunked
            .as_ref()
            .is_ok_and(|f| f.states.iter().any(|s| s.delta.is_some())),
        state_bytes,
        place,
    }
}
