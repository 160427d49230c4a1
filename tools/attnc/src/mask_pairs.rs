//! The fraction of (i, j) pairs a mask keeps on the inputs of one run, for `attnc bench`'s
//! useful work: a mask that reads input data (document ids, lengths) cannot be measured from
//! the graph alone, but on the run's own tensors it can. Pairs are sampled evenly, as the work
//! estimate samples index-only masks.

use attnc_ir::graph::{LoadIndex, Op};
use attnc_ir::types::FrameIndex;
use attnc_ir::{Bindings, Graph};
use attnc_reference::Tensor;
use petgraph::stable_graph::NodeIndex;
use std::collections::BTreeMap;

const ROWS: usize = 256;
const COLS: usize = 1024;
const SLICES: usize = 4;

/// The kept fraction, or `None` when the mask reads something other than scalar elements of
/// inputs through maps (then the caller keeps its estimate).
pub fn kept_fraction(
    graph: &Graph,
    bindings: &Bindings,
    inputs: &BTreeMap<String, Tensor>,
) -> Option<f64> {
    let mask = graph
        .node_indices()
        .find(|n| matches!(graph.node(*n).op, Op::Mask { .. }))?;
    let extent = |fi| bindings.extent(graph, fi);
    let (rows, cols) = (extent(FrameIndex::I), extent(FrameIndex::J));
    let (mut kept, mut seen) = (0u64, 0u64);
    let mut point = [0i64; 5];
    for b in (0..extent(FrameIndex::B)).step_by(extent(FrameIndex::B).div_ceil(SLICES).max(1)) {
        for h in (0..extent(FrameIndex::H)).step_by(extent(FrameIndex::H).div_ceil(SLICES).max(1)) {
            point[FrameIndex::B as usize] = b as i64;
            point[FrameIndex::H as usize] = h as i64;
            for i in (0..rows).step_by(rows.div_ceil(ROWS).max(1)) {
                point[FrameIndex::I as usize] = i as i64;
                for j in (0..cols).step_by(cols.div_ceil(COLS).max(1)) {
                    point[FrameIndex::J as usize] = j as i64;
                    seen += 1;
                    if value(graph, mask, bindings, inputs, &point)? != 0.0 {
                        kept += 1;
                    }
                }
            }
        }
    }
    (seen > 0).then(|| kept as f64 / seen as f64)
}

/// A scalar node's value at `point`, through maps and scalar loads.
fn value(
    graph: &Graph,
    n: NodeIndex,
    bindings: &Bindings,
    inputs: &BTreeMap<String, Tensor>,
    point: &[i64; 5],
) -> Option<f64> {
    let operands = graph.operands(n);
    match &graph.node(n).op {
        Op::Map { expr, root } | Op::Mask { expr, root } => expr
            .eval_scalar_with(*root, &bindings.dims, Some(point), &|k| {
                let (v, _) = operands.get(k as usize).ok_or("no operand")?;
                value(graph, v.node, bindings, inputs, point).ok_or_else(|| "unknown".to_string())
            })
            .ok(),
        Op::Load { indices } => {
            let (input, _) = operands.first()?;
            let Op::Input { name, .. } = &graph.node(input.node).op else {
                return None;
            };
            let tensor = inputs.get(name)?;
            if indices.len() != tensor.shape.len() {
                return None; // a row, not one element
            }
            let mut offset = 0usize;
            for (axis, index) in indices.iter().enumerate() {
                let at = match index {
                    LoadIndex::Frame(fi) => point[*fi as usize],
                    LoadIndex::Operand(k) => {
                        let (v, _) = operands.get(*k as usize)?;
                        value(graph, v.node, bindings, inputs, point)?.floor() as i64
                    }
                };
                let size = tensor.shape[axis];
                let at = usize::try_from(at).ok().filter(|a| *a < size)?;
                offset = offset * size + at;
            }
            tensor.data.get(offset).copied()
        }
        _ => None,
    }
}
