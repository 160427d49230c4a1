//! How much work a kernel is, from its graph: FLOPs, bytes moved by a fused kernel, and the
//! bytes it keeps between calls (KV cache or recurrent state). The planner's cost model uses it,
//! so a sliding window or a recurrent variant costs what it really costs, not what softmax
//! attention of the same shape would.

use crate::bind::Bindings;
use crate::expr::{Builtin, ExprArena, ExprNode};
use crate::graph::{Graph, LoadIndex, Op, PortType};
use crate::ops::BinaryOp;
use crate::types::{Feature, FrameIndex, IndexSet, ValueType};

/// The work of one call of a kernel at bound shapes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Work {
    pub flops: f64,
    /// Inputs read once and outputs written once: what an ideal fused kernel moves.
    pub bytes_moved: f64,
    /// Key-side inputs (the KV cache) of a parallel kernel, or the states of a recurrence.
    pub resident_bytes: f64,
    /// The fraction of (i, j) pairs the mask keeps; 1 without a mask.
    pub mask_density: f64,
    /// Whether `mask_density` was measured (the mask reads only indices and dims), or is 1
    /// because the mask reads input data (document ids, lengths) unknown before a call.
    pub density_exact: bool,
}

/// Rows of (i, j) examined when measuring a mask's density; more rows are sampled evenly.
const DENSITY_ROWS: usize = 512;

/// Columns examined per row; longer rows are sampled evenly too, so a sequence of 1,048,576
/// costs a million evaluations rather than half a billion.
const DENSITY_COLS: usize = 2048;

pub fn estimate(graph: &Graph, bindings: &Bindings) -> Result<Work, String> {
    let (mask_density, density_exact) = mask_density(graph, bindings)?;
    let extent = |fi| bindings.extent(graph, fi) as f64;
    let points = |t: &ValueType| t.indices.iter().map(extent).product::<f64>();
    let len = |f: &Feature| -> Result<f64, String> {
        let eval = |d: &crate::types::Dim| {
            bindings
                .eval(d)
                .map(|v| v as f64)
                .map_err(|e| format!("{e:?}"))
        };
        Ok(match f {
            Feature::Scalar => 1.0,
            Feature::Vector(d) | Feature::Diag(d) => eval(d)?,
            Feature::Matrix(a, b) => eval(a)? * eval(b)?,
        })
    };
    // Work on (i, j) pairs only happens for the pairs the mask keeps.
    let density = |t: &ValueType| {
        if t.indices.contains(FrameIndex::I) && t.indices.contains(FrameIndex::J) {
            mask_density
        } else {
            1.0
        }
    };
    let mut flops = 0.0;
    let mut bytes = 0.0;
    let mut resident = 0.0;
    for n in graph.node_indices() {
        let node = graph.node(n);
        let operands = graph.operands(n);
        let operand_type = |k: usize| match operands.get(k).map(|(_, e)| &e.ty) {
            Some(PortType::Value(t)) => Some(t.clone()),
            _ => None,
        };
        let result = match node.results.first() {
            Some(PortType::Value(t)) => Some(t.clone()),
            _ => None,
        };
        match (&node.op, &result) {
            (Op::Input { ty, .. }, _) => {
                let size = bindings.shape(&ty.dims).map_err(|e| format!("{e:?}"))?;
                let b = size.iter().product::<usize>() as f64 * ty.dtype.size_bytes() as f64;
                bytes += b;
                if reads_keys(graph, n) {
                    resident += b;
                }
            }
            (Op::Output { ty, .. }, _) => {
                let size = bindings.shape(&ty.dims).map_err(|e| format!("{e:?}"))?;
                bytes += size.iter().product::<usize>() as f64 * ty.dtype.size_bytes() as f64;
            }
            (Op::Map { expr, .. } | Op::Mask { expr, .. }, Some(t)) => {
                flops += points(t) * density(t) * arena_flops(expr, &len)?;
            }
            (Op::Score, Some(t)) => {
                let d = operand_type(0)
                    .map(|o| len(&o.feature))
                    .transpose()?
                    .unwrap_or(1.0);
                flops += 2.0 * points(t) * density(t) * d;
            }
            (Op::RowReduce { .. }, Some(_)) => {
                if let Some(x) = operand_type(0) {
                    flops += points(&x) * density(&x) * len(&x.feature)?;
                }
            }
            (Op::Aggregate, Some(t)) => {
                if let (Some(w), Some(v)) = (operand_type(0), operand_type(1)) {
                    let pairs = IndexSet::union(w.indices, v.indices);
                    let pt = ValueType {
                        indices: pairs,
                        ..w.clone()
                    };
                    flops += 2.0 * points(&pt) * density(&pt) * len(&t.feature)?;
                }
            }
            (Op::Recurrence { arena, states, .. }, Some(t)) => {
                flops += points(t) * arena_flops(arena, &len)?;
                let slices = t
                    .indices
                    .without(FrameIndex::T)
                    .iter()
                    .map(extent)
                    .product::<f64>();
                for s in states {
                    resident += slices * len(&s.feature)? * 4.0;
                }
            }
            _ => {}
        }
    }
    Ok(Work {
        flops,
        bytes_moved: bytes,
        resident_bytes: resident,
        mask_density,
        density_exact,
    })
}

/// Whether an input is read along the key axis j (K, V, per-key data): the KV cache.
fn reads_keys(graph: &Graph, input: petgraph::stable_graph::NodeIndex) -> bool {
    graph
        .users(input)
        .into_iter()
        .any(|u| match &graph.node(u).op {
            Op::Load { indices } => indices.contains(&LoadIndex::Frame(FrameIndex::J)),
            _ => false,
        })
}

/// FLOPs of evaluating an arena once: one per element of every arithmetic node, two per
/// multiply-add of a contraction inside it.
fn arena_flops(
    arena: &ExprArena,
    len: &dyn Fn(&Feature) -> Result<f64, String>,
) -> Result<f64, String> {
    let mut total = 0.0;
    for id in arena.ids() {
        let own = len(&arena.ty(id).feature)?;
        total += match arena.node(id) {
            // A row or diagonal against a matrix: one multiply-add per matrix element.
            ExprNode::Binary(BinaryOp::MatMul, a, b) => {
                2.0 * len(&arena.ty(*a).feature)?.max(len(&arena.ty(*b).feature)?)
            }
            ExprNode::Binary(..) | ExprNode::Unary(..) => own,
            ExprNode::Call(
                Builtin::Dot | Builtin::SumFeature | Builtin::MeanFeature | Builtin::Norm,
                args,
            ) => 2.0 * len(&arena.ty(args[0]).feature)?,
            ExprNode::Call(_, args) => own.max(
                args.first()
                    .map(|a| len(&arena.ty(*a).feature))
                    .transpose()?
                    .unwrap_or(1.0),
            ),
            _ => 0.0,
        };
    }
    Ok(total)
}

/// The fraction of (i, j) pairs the mask keeps, measured on the bound shapes when the mask reads
/// only indices and dims; rows are sampled evenly beyond [`DENSITY_ROWS`].
/// Maps a mask may read through and still be measured: each is evaluated again at every
/// point, so a long chain would make the measurement slow.
const MASK_LETS: usize = 8;

/// Whether node `n` is a map computed from indices and dims only, through other such maps.
fn index_only(graph: &Graph, n: petgraph::stable_graph::NodeIndex) -> bool {
    let mut work = vec![n];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(n) = work.pop() {
        if !seen.insert(n) {
            continue;
        }
        if seen.len() > MASK_LETS || !matches!(graph.node(n).op, Op::Map { .. }) {
            return false;
        }
        work.extend(graph.operands(n).iter().map(|(v, _)| v.node));
    }
    true
}

/// A mask's (or an index-only map's) scalar value at `point`, its operands evaluated through.
fn eval_at(
    graph: &Graph,
    node: petgraph::stable_graph::NodeIndex,
    root: crate::expr::ExprId,
    expr: &ExprArena,
    dims: &std::collections::BTreeMap<String, i64>,
    point: &[i64; 5],
) -> Result<f64, String> {
    let operands = graph.operands(node);
    expr.eval_scalar_with(root, dims, Some(point), &|k| {
        let (v, _) = operands
            .get(k as usize)
            .ok_or_else(|| format!("operand {k} missing"))?;
        match &graph.node(v.node).op {
            Op::Map { expr, root } => eval_at(graph, v.node, *root, expr, dims, point),
            _ => Err("a mask operand that reads data".to_string()),
        }
    })
}

fn mask_density(graph: &Graph, bindings: &Bindings) -> Result<(f64, bool), String> {
    let mask = graph
        .node_indices()
        .find(|n| matches!(graph.node(*n).op, Op::Mask { .. }));
    let Some(mask) = mask else {
        return Ok((1.0, true));
    };
    let Op::Mask { expr, root } = &graph.node(mask).op else {
        return Ok((1.0, true));
    };
    // Operands that are maps of indices and dims alone (`let p = i; mask j <= p;`) are
    // evaluated through; any other operand reads input data, unknown before a call.
    if !graph
        .operands(mask)
        .iter()
        .all(|(v, _)| index_only(graph, v.node))
    {
        return Ok((1.0, false));
    }
    let rows = bindings.extent(graph, FrameIndex::I);
    let cols = bindings.extent(graph, FrameIndex::J);
    if rows == 0 || cols == 0 {
        return Ok((1.0, true));
    }
    let step = rows.div_ceil(DENSITY_ROWS).max(1);
    let col_step = cols.div_ceil(DENSITY_COLS).max(1);
    let (mut kept, mut seen) = (0u64, 0u64);
    let mut point = [0i64; 5];
    for i in (0..rows).step_by(step) {
        point[FrameIndex::I as usize] = i as i64;
        for j in (0..cols).step_by(col_step) {
            point[FrameIndex::J as usize] = j as i64;
            seen += 1;
            if eval_at(graph, mask, *root, expr, &bindings.dims, &point)? != 0.0 {
                kept += 1;
            }
        }
    }
    Ok((kept as f64 / seen as f64, true))
}
