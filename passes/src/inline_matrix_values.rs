//! Moves matrix-valued values back into the recurrence that reads them.
//!
//! The builder hoists whatever reads no state out of a recurrence as ordinary ops, so
//! `beta * outer(k, v)` or `outer(k, v) * dt` becomes a `map` whose value is a matrix per step.
//! No kernel template stores a matrix per step (it would be D x Dv per t), and the chunked form
//! is derived from the rank-one terms of an update, so such a map is substituted into the
//! recurrence's arena: the recurrence then reads the map's own operands (`k`, `v`, `beta`), and
//! the map, now unread, is removed by `dead-values`. Maps of maps are followed until every
//! operand of the recurrence is a scalar or a vector.

use crate::pass_manager::Pass;
use attnc_ir::Graph;
use attnc_ir::expr::{ExprArena, ExprId, ExprNode};
use attnc_ir::graph::{Op, PortType, ValueRef};
use attnc_ir::types::Feature;
use petgraph::stable_graph::NodeIndex;
use std::collections::HashMap;

pub struct InlineMatrixValues;

impl Pass for InlineMatrixValues {
    fn name(&self) -> &'static str {
        "inline-matrix-values"
    }

    fn run(&self, graph: &mut Graph) -> Result<bool, String> {
        let recurrences: Vec<NodeIndex> = graph
            .node_indices()
            .filter(|n| matches!(graph.node(*n).op, Op::Recurrence { .. }))
            .collect();
        let mut changed = false;
        for r in recurrences {
            changed |= inline_into(graph, r)?;
        }
        Ok(changed)
    }
}

/// Whether `v` is a matrix-valued `map` (the only ops that can produce a matrix).
fn matrix_map(graph: &Graph, v: ValueRef) -> bool {
    matches!(graph.node(v.node).op, Op::Map { .. })
        && matches!(
            graph.result_type(v),
            PortType::Value(t) if matches!(t.feature, Feature::Matrix(..))
        )
}

fn inline_into(graph: &mut Graph, r: NodeIndex) -> Result<bool, String> {
    let old_operands: Vec<ValueRef> = graph.operands(r).iter().map(|(v, _)| *v).collect();
    if !old_operands.iter().any(|v| matrix_map(graph, *v)) {
        return Ok(false);
    }
    let Op::Recurrence {
        arena,
        states,
        emits,
    } = &graph.node(r).op
    else {
        return Err("not a recurrence".to_string());
    };
    let mut copy = Copy {
        graph,
        out: ExprArena::default(),
        operands: Vec::new(),
        inlined: HashMap::new(),
    };
    let mut memo = HashMap::new();
    let mut new_states = states.clone();
    for s in &mut new_states {
        s.update = copy.expr(arena, s.update, &old_operands, &mut memo, 0)?;
    }
    let mut new_emits = Vec::with_capacity(emits.len());
    for e in emits {
        new_emits.push(copy.expr(arena, *e, &old_operands, &mut memo, 0)?);
    }
    let (out, operands) = (copy.out, copy.operands);
    graph.node_mut(r).op = Op::Recurrence {
        arena: out,
        states: new_states,
        emits: new_emits,
    };
    graph.set_operands(r, &operands);
    Ok(true)
}

/// Copies expressions into a new arena, substituting matrix-valued maps by their expressions.
struct Copy<'g> {
    graph: &'g Graph,
    out: ExprArena,
    /// The new operand list.
    operands: Vec<ValueRef>,
    /// The root, in `out`, of each map already substituted (a map read twice is copied once).
    inlined: HashMap<ValueRef, ExprId>,
}

/// Deeper than the builder's own nesting limit only through a cycle of maps, which a verified
/// graph does not have.
const MAX_DEPTH: usize = 4096;

impl Copy<'_> {
    fn operand(&mut self, v: ValueRef) -> ExprId {
        let k = match self.operands.iter().position(|o| *o == v) {
            Some(k) => k,
            None => {
                self.operands.push(v);
                self.operands.len() - 1
            }
        };
        let ty = match self.graph.result_type(v) {
            PortType::Value(t) => attnc_ir::expr::ExprType {
                kind: t.kind,
                feature: t.feature.clone(),
            },
            PortType::Tensor(_) => attnc_ir::expr::ExprType {
                kind: attnc_ir::types::ScalarKind::Float,
                feature: Feature::Scalar,
            },
        };
        let span = self.graph.node(v.node).span;
        self.out.push(ExprNode::Operand(k as u32), ty, span)
    }

    /// Copies `id` of `arena` (whose operands are `operands`) into `self.out`.
    fn expr(
        &mut self,
        arena: &ExprArena,
        id: ExprId,
        operands: &[ValueRef],
        memo: &mut HashMap<ExprId, ExprId>,
        depth: usize,
    ) -> Result<ExprId, String> {
        if let Some(done) = memo.get(&id) {
            return Ok(*done);
        }
        if depth > MAX_DEPTH {
            return Err("matrix values nest too deeply".to_string());
        }
        let node = match arena.node(id).clone() {
            ExprNode::Operand(k) => {
                let v = *operands
                    .get(k as usize)
                    .ok_or("an expression reads a missing operand")?;
                let copied = if matrix_map(self.graph, v) {
                    self.substitute(v, depth)?
                } else {
                    self.operand(v)
                };
                memo.insert(id, copied);
                return Ok(copied);
            }
            ExprNode::Unary(op, a) => {
                ExprNode::Unary(op, self.expr(arena, a, operands, memo, depth + 1)?)
            }
            ExprNode::Binary(op, a, b) => ExprNode::Binary(
                op,
                self.expr(arena, a, operands, memo, depth + 1)?,
                self.expr(arena, b, operands, memo, depth + 1)?,
            ),
            ExprNode::Extract(a, b) => ExprNode::Extract(
                self.expr(arena, a, operands, memo, depth + 1)?,
                self.expr(arena, b, operands, memo, depth + 1)?,
            ),
            ExprNode::Call(f, args) => {
                let mut copied = Vec::with_capacity(args.len());
                for a in args {
                    copied.push(self.expr(arena, a, operands, memo, depth + 1)?);
                }
                ExprNode::Call(f, copied)
            }
            leaf => leaf,
        };
        let copied = self.out.push(node, arena.ty(id).clone(), arena.span(id));
        memo.insert(id, copied);
        Ok(copied)
    }

    /// The expression of the matrix-valued map `v`, copied in once.
    fn substitute(&mut self, v: ValueRef, depth: usize) -> Result<ExprId, String> {
        if let Some(done) = self.inlined.get(&v) {
            return Ok(*done);
        }
        let graph = self.graph;
        let Op::Map { expr, root } = &graph.node(v.node).op else {
            return Err("a matrix value that is not a map".to_string());
        };
        let operands: Vec<ValueRef> = graph.operands(v.node).iter().map(|(o, _)| *o).collect();
        let mut memo = HashMap::new();
        let copied = self.expr(expr, *root, &operands, &mut memo, depth + 1)?;
        self.inlined.insert(v, copied);
        Ok(copied)
    }
}
