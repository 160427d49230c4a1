//! Tiling: each fused kernel as a tiled loop nest for a target, with tile sizes, the loop order,
//! where each buffer lives, and how many tiles the mask lets through, chosen by the cost model.

pub mod cost_model;
pub mod dump;
pub mod target;

use crate::fusion::recurrent::RecurrentKernel;
use crate::fusion::tile_rule::{Coverage, key_tile_coverage};
use crate::fusion::{FusedProgram, ParallelKernel, Template};
use attnc_ir::bind::Bindings;
use attnc_ir::graph::{Graph, Op, PortType};
use attnc_ir::types::{Feature, FrameIndex};
use cost_model::{Choice, Problem};
use std::collections::BTreeMap;
use target::Target;

#[derive(Clone, Debug)]
pub struct TiledProgram {
    pub target: Target,
    /// The dims the tiles were chosen for.
    pub dims: BTreeMap<String, i64>,
    /// Whether those dims were given (`--shape`) or nominal.
    pub nominal: bool,
    pub kernels: Vec<TiledKernel>,
}

#[derive(Clone, Debug)]
pub struct TiledKernel {
    pub name: String,
    pub body: TiledBody,
}

#[derive(Clone, Debug)]
pub enum TiledBody {
    Parallel {
        problem: Problem,
        choice: Choice,
        tiles: TileCount,
        buffers: Vec<Buffer>,
    },
    Recurrent {
        chunk: Option<usize>,
        state_bytes: usize,
        place: Place,
    },
}

/// Key tiles visited over all query tiles of one (b, h) slice, as the tile rule decides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileCount {
    pub total: usize,
    pub skipped: usize,
    pub full: usize,
}

#[derive(Clone, Debug)]
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
) -> Result<TiledProgram, String> {
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
        .collect::<Result<Vec<_>, String>>()?;
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

fn parallel(
    graph: &Graph,
    p: &ParallelKernel,
    target: &Target,
    b: &Bindings,
) -> Result<TiledBody, String> {
    let Target::Cpu(cpu) = target;
    let extent = |fi| b.extent(graph, fi);
    let mut d_qk = 1;
    let mut d_v = 1;
    for n in p.pair.iter().chain(
        p.sweeps
            .iter()
            .flat_map(|s| s.reductions.iter().map(|r| &r.node)),
    ) {
        match graph.node(*n).op {
            Op::Score => {
                d_qk = d_qk.max(feature_len(
                    b,
                    graph.operands(*n).first().map(|(_, e)| &e.ty),
                ))
            }
            Op::Aggregate => d_v = d_v.max(feature_len(b, graph.node(*n).results.first())),
            _ => {}
        }
    }
    let problem = Problem {
        slices: extent(FrameIndex::B) * extent(FrameIndex::H),
        queries: extent(FrameIndex::I),
        keys: extent(FrameIndex::J),
        d_qk,
        d_v,
        density: 1.0,
        partial: 0.0,
        sweeps: p.sweeps.len().max(1),
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
    let choice = cost_model::choose_with(cpu, &problem, &coverage)
        .ok_or("no tile size fits the target's caches")?;
    let tiles = count_tiles(graph, p, b, choice.query_tile, choice.key_tile);
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
    Ok(TiledBody::Parallel {
        problem,
        choice,
        tiles,
        buffers,
    })
}

/// Applies the tile rule to every (query tile, key tile) of slice (b = 0, h = 0).
fn count_tiles(graph: &Graph, p: &ParallelKernel, b: &Bindings, bq: usize, bk: usize) -> TileCount {
    let (rows, cols) = (
        b.extent(graph, FrameIndex::I),
        b.extent(graph, FrameIndex::J),
    );
    let (qt, kt) = (rows.div_ceil(bq), cols.div_ceil(bk));
    let mut count = TileCount {
        total: qt * kt,
        skipped: 0,
        full: 0,
    };
    let Some(mask) = p.mask else {
        count.full = count.total;
        return count;
    };
    let Op::Mask { expr, root } = &graph.node(mask).op else {
        return count;
    };
    // Long sequences: every `stride`-th query tile, scaled back up, keeps this quick.
    let stride = (qt * kt).div_ceil(1 << 14).max(1);
    let mut sampled = 0;
    for q in (0..qt).step_by(stride) {
        sampled += 1;
        let rows_of_tile = q * bq..((q + 1) * bq).min(rows);
        for c in key_tile_coverage(expr, *root, &b.dims, (0, 0), rows_of_tile, bk, cols) {
            match c {
                Coverage::Empty => count.skipped += 1,
                Coverage::Full => count.full += 1,
                Coverage::Partial => {}
            }
        }
    }
    if sampled < qt {
        let scale = |x: usize| x * qt / sampled.max(1);
        count.skipped = scale(count.skipped);
        count.full = scale(count.full);
    }
    count
}

fn recurrent(graph: &Graph, r: &RecurrentKernel, target: &Target, b: &Bindings) -> TiledBody {
    let Target::Cpu(cpu) = target;
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
    // Chunks as long as the vector width at least, and short enough that a chunk's pair block
    // (chunk x chunk) stays in L1 beside the state.
    let chunk = r.chunked.is_ok().then(|| {
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
        state_bytes,
        place,
    }
}
