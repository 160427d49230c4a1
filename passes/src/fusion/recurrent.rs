//! The recurrent template: one scan over t per (b, h), and the check for the chunked form.
//!
//! The chunked (intra-chunk parallel, inter-chunk state passing) form of linear attention
//! exists when every state is updated as `decay · S + Σ u` (decay a scalar or a per-row
//! `diag(d) @ S`, the input terms `u`, such as `outer(k, v)`, reading no state) and the outputs
//! read the states only through linear read-outs `x @ S` or `dot(x, z)`. Retention, gated linear attention and
//! linear attention with its normaliser all have it; a recurrence without it runs as a scan.

use attnc_ir::expr::{Builtin, ExprArena, ExprId, ExprNode, StateTime};
use attnc_ir::graph::{Graph, Op};
use attnc_ir::ops::BinaryOp;
use attnc_ir::types::{FrameIndex, IndexSet};
use petgraph::stable_graph::NodeIndex;

#[derive(Clone, Debug)]
pub struct RecurrentKernel {
    /// Values that do not vary with t, computed once per (b, h).
    pub per_head: Vec<NodeIndex>,
    /// Values per step that read no state (loads, feature maps, gates): parallel over t.
    pub step_inputs: Vec<NodeIndex>,
    pub recurrence: NodeIndex,
    pub states: Vec<StatePlan>,
    /// `Ok` when the chunked form applies, else why not.
    pub chunked: Result<(), String>,
    pub epilogue: Vec<NodeIndex>,
}

#[derive(Clone, Debug)]
pub struct StatePlan {
    pub name: String,
    pub decay: Decay,
    /// Handles of the input terms (`outer(k, v)`, a feature row) in the recurrence's arena.
    pub inputs: Vec<ExprId>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decay {
    /// `S + ...`
    None,
    /// `c * S + ...` with `c` reading no state.
    Scalar(ExprId),
    /// `diag(d) @ S + ...`
    PerRow(ExprId),
    /// Anything else: no chunked form.
    Other,
}

pub fn analyse(graph: &Graph) -> Result<RecurrentKernel, String> {
    let order = graph.topo_order().ok_or("the graph has a cycle")?;
    let recurrence = order
        .iter()
        .copied()
        .find(|n| matches!(graph.node(*n).op, Op::Recurrence { .. }))
        .ok_or("a kernel over t without a recurrence")?;
    let Op::Recurrence {
        arena,
        states,
        emits,
    } = &graph.node(recurrence).op
    else {
        return Err("not a recurrence".to_string());
    };
    let mut plans = Vec::new();
    let mut reasons = Vec::new();
    for (k, s) in states.iter().enumerate() {
        let mut terms = Vec::new();
        additive(arena, s.update, &mut terms);
        let mut decay = Decay::None;
        let mut inputs = Vec::new();
        let mut seen_state = false;
        for t in terms {
            match arena.node(t) {
                ExprNode::State(j, StateTime::Previous) if *j as usize == k && !seen_state => {
                    seen_state = true
                }
                ExprNode::Binary(BinaryOp::Mul, a, b)
                    if is_own_state(arena, *b, k) && state_free(arena, *a) && !seen_state =>
                {
                    seen_state = true;
                    decay = Decay::Scalar(*a);
                }
                ExprNode::Binary(BinaryOp::Mul, a, b)
                    if is_own_state(arena, *a, k) && state_free(arena, *b) && !seen_state =>
                {
                    seen_state = true;
                    decay = Decay::Scalar(*b);
                }
                ExprNode::Binary(BinaryOp::MatMul, d, b)
                    if is_own_state(arena, *b, k)
                        && !seen_state
                        && matches!(arena.node(*d), ExprNode::Call(Builtin::Diag, args) if state_free(arena, args[0])) =>
                {
                    seen_state = true;
                    decay = Decay::PerRow(*d);
                }
                _ if state_free(arena, t) => inputs.push(t),
                _ => {
                    decay = Decay::Other;
                    reasons.push(format!(
                        "the update of `{}` is not decay * {0} + terms that read no state",
                        s.name
                    ));
                }
            }
        }
        if !seen_state && decay != Decay::Other {
            reasons.push(format!(
                "the update of `{}` does not carry the previous state",
                s.name
            ));
        }
        plans.push(StatePlan {
            name: s.name.clone(),
            decay,
            inputs,
        });
    }
    for e in emits {
        if !linear_readouts_only(arena, *e, None) {
            reasons
                .push("an output reads a state other than through x @ S or dot(x, z)".to_string());
        }
    }
    let mut per_head = Vec::new();
    let mut step_inputs = Vec::new();
    let mut epilogue = Vec::new();
    for &n in &order {
        let op = &graph.node(n).op;
        if n == recurrence || matches!(op, Op::Input { .. }) {
            continue;
        }
        if matches!(op, Op::Output { .. }) {
            epilogue.push(n);
            continue;
        }
        let set = match graph.node(n).results.first() {
            Some(attnc_ir::graph::PortType::Value(t)) => t.indices,
            _ => IndexSet::EMPTY,
        };
        let after = graph.operands(n).iter().any(|(v, _)| v.node == recurrence);
        if after {
            epilogue.push(n);
        } else if set.contains(FrameIndex::T) {
            step_inputs.push(n);
        } else {
            per_head.push(n);
        }
    }
    reasons.dedup();
    Ok(RecurrentKernel {
        per_head,
        step_inputs,
        recurrence,
        states: plans,
        chunked: if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        },
        epilogue,
    })
}

fn additive(arena: &ExprArena, id: ExprId, out: &mut Vec<ExprId>) {
    match arena.node(id) {
        ExprNode::Binary(BinaryOp::Add, a, b) => {
            additive(arena, *a, out);
            additive(arena, *b, out);
        }
        _ => out.push(id),
    }
}

fn is_own_state(arena: &ExprArena, id: ExprId, k: usize) -> bool {
    matches!(arena.node(id), ExprNode::State(j, StateTime::Previous) if *j as usize == k)
}

fn state_free(arena: &ExprArena, id: ExprId) -> bool {
    match arena.node(id) {
        ExprNode::State(..) => false,
        ExprNode::Unary(_, a) => state_free(arena, *a),
        ExprNode::Binary(_, a, b) | ExprNode::Extract(a, b) => {
            state_free(arena, *a) && state_free(arena, *b)
        }
        ExprNode::Call(_, args) => args.iter().all(|a| state_free(arena, *a)),
        _ => true,
    }
}

/// Whether every state read under `id` is the operand of a linear read-out with a state-free
/// other side. `parent_ok` is set when `id` itself sits in such a read-out.
fn linear_readouts_only(arena: &ExprArena, id: ExprId, parent_ok: Option<()>) -> bool {
    if let Some((x, s)) = readout_sides(arena, id) {
        return state_free(arena, x) && linear_readouts_only(arena, s, Some(()));
    }
    match arena.node(id) {
        ExprNode::State(..) => parent_ok.is_some(),
        ExprNode::Unary(_, a) => linear_readouts_only(arena, *a, None),
        ExprNode::Binary(_, a, b) | ExprNode::Extract(a, b) => {
            linear_readouts_only(arena, *a, None) && linear_readouts_only(arena, *b, None)
        }
        ExprNode::Call(_, args) => args.iter().all(|a| linear_readouts_only(arena, *a, None)),
        _ => true,
    }
}

/// For `x @ S`, `S @ x`, `dot(x, z)`, `dot(z, x)` with one side a state: (other side, state side).
fn readout_sides(arena: &ExprArena, id: ExprId) -> Option<(ExprId, ExprId)> {
    let (a, b) = match arena.node(id) {
        ExprNode::Binary(BinaryOp::MatMul, a, b) => (*a, *b),
        ExprNode::Call(Builtin::Dot, args) if args.len() == 2 => (args[0], args[1]),
        _ => return None,
    };
    let is_state = |e: ExprId| matches!(arena.node(e), ExprNode::State(..));
    match (is_state(a), is_state(b)) {
        (false, true) => Some((a, b)),
        (true, false) => Some((b, a)),
        _ => None,
    }
}
