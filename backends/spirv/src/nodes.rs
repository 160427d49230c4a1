//! Graph values (loads and maps) computed at the kernel's current position, shared by the
//! parallel template (`kernel.rs`) and the recurrent one (`recurrent.rs`): where each value
//! lives afterwards is recorded in the context's homes.

use crate::error::{Result, SpirvError};
use crate::expr::{Lower, ty_of};
use crate::shader::{Shader, Ty};
use crate::values::{Ctx, Home};
use attnc_ir::expr::Builtin;
use attnc_ir::graph::{LoadIndex, Op, PortType, ValueRef};
use attnc_passes::fusion::tree::Tree;
use petgraph::stable_graph::NodeIndex;

fn vref(node: NodeIndex) -> ValueRef {
    ValueRef { node, result: 0 }
}

/// Computes node `n` at the current position and records where its value is. Rows of
/// inputs read once per invocation (`copy_rows`) are copied into registers; key rows are
/// read in place.
pub(crate) fn compute(
    s: &mut Shader,
    ctx: &mut Ctx<'_>,
    low: &mut Lower<'_>,
    n: NodeIndex,
    copy_rows: bool,
) -> Result<()> {
    let graph = ctx.graph;
    let home = match &graph.node(n).op {
        Op::Input { .. } | Op::Output { .. } | Op::RowReduce { .. } | Op::Aggregate => {
            return Ok(());
        }
        Op::Load { indices } => load(s, ctx, n, indices, copy_rows)?,
        Op::Map { .. } | Op::Mask { .. } => {
            let tree = Tree::of_map(graph, vref(n), &|_| false);
            evaluate(s, ctx, low, n, &tree)?
        }
        Op::Score => {
            let ops = graph.operands(n);
            let (Some((q, _)), Some((k, _))) = (ops.first(), ops.get(1)) else {
                return Err(SpirvError::internal("a score without two operands"));
            };
            let tree = Tree::Call(Builtin::Dot, vec![Tree::Value(*q), Tree::Value(*k)]);
            evaluate(s, ctx, low, n, &tree)?
        }
        Op::Recurrence { .. } => {
            return Err(SpirvError::unsupported(
                graph,
                n,
                "a recurrence inside a parallel kernel",
            ));
        }
    };
    ctx.homes.insert(n, home);
    Ok(())
}

/// The value of `tree` as node `n`'s: a scalar, or an array over its feature axis.
fn evaluate(
    s: &mut Shader,
    ctx: &mut Ctx<'_>,
    low: &mut Lower<'_>,
    n: NodeIndex,
    tree: &Tree,
) -> Result<Home> {
    let kind = match ctx.graph.node(n).results.first() {
        Some(PortType::Value(t)) => t.kind,
        _ => return Err(SpirvError::internal("a value node without a value type")),
    };
    let ty = ty_of(kind);
    let Some(len) = ctx.vector_len(n)? else {
        let v = low
            .lower_as(s, ctx, tree, None, ty)
            .map_err(|e| e.at(ctx.graph, n))?;
        return Ok(Home::Scalar(v));
    };
    let var = s.array_local(ty, len);
    low.hoist(s, ctx, tree).map_err(|e| e.at(ctx.graph, n))?;
    let r = s.features(len, |s, f| {
        let v = low.lower_as(s, ctx, tree, Some(f), ty)?;
        let p = s.local_element(var, ty, f)?;
        s.store(p, v)
    });
    low.clear_hoisted();
    r.map_err(|e| e.at(ctx.graph, n))?;
    Ok(Home::Array { var, ty, len })
}

/// A load: the flat offset of the element (or row) it reads, computed indices checked.
fn load(
    s: &mut Shader,
    ctx: &mut Ctx<'_>,
    n: NodeIndex,
    indices: &[LoadIndex],
    copy_rows: bool,
) -> Result<Home> {
    let graph = ctx.graph;
    let ops: Vec<ValueRef> = graph.operands(n).iter().map(|(v, _)| *v).collect();
    let input = ops
        .first()
        .ok_or_else(|| SpirvError::internal("a load without its tensor"))?
        .node;
    let Op::Input { name, ty, .. } = &graph.node(input).op else {
        return Err(SpirvError::internal("a load of a non-input"));
    };
    let mut offset = s.i32(0);
    for (axis, ix) in indices.iter().enumerate() {
        let size = ctx.dim_value(s, &ty.dims[axis])?;
        let c = match ix {
            LoadIndex::Frame(fi) => *ctx.frame.get(fi).ok_or_else(|| {
                SpirvError::internal(format!("index `{}` read outside its loop", fi.name()))
            })?,
            LoadIndex::Operand(k) => {
                let v = ops
                    .get(*k as usize)
                    .ok_or_else(|| SpirvError::internal("a load index with no operand"))?;
                let idx = crate::expr::Leaves::value(ctx, s, *v, None)?;
                let idx = s.int(idx)?;
                let what =
                    format!("index {{value}} is outside axis {axis} of `{name}` (size {{bound}})");
                ctx.guard(s, n, what, idx, size)?
            }
        };
        let scaled = s.mul(offset, size)?;
        offset = s.add(scaled, c)?;
    }
    let rank = ty.dims.len();
    if indices.len() == rank {
        return Ok(Home::Scalar(ctx.read(s, input, offset)?));
    }
    let last = &ty.dims[rank - 1];
    let len = match ctx.vector_len(n)? {
        Some(l) => l,
        None => {
            return Err(SpirvError::unsupported(
                graph,
                n,
                format!("a row of `{name}` over the run-time dim `{last}`"),
            ));
        }
    };
    let row_len = s.i32(len as i64);
    let base = s.mul(offset, row_len)?;
    if !copy_rows {
        return Ok(Home::Row { input, base, len });
    }
    let elem = if ty.dtype.is_float() {
        Ty::F32
    } else {
        Ty::I32
    };
    let var = s.array_local(elem, len);
    let ctx = &*ctx;
    s.features(len, |s, f| {
        let at = s.add(base, f)?;
        let x = ctx.read(s, input, at)?;
        let p = s.local_element(var, elem, f)?;
        s.store(p, x)
    })?;
    Ok(Home::Array { var, ty: elem, len })
}
