//! The recurrent template: one pass over t per (b, h), chunked where the recurrence allows it.
//!
//! The chunked (intra-chunk parallel, inter-chunk state passing) form exists when every state
//! is updated as `decay · S + Σ u` (decay a scalar or a per-row `diag(d) @ S`, the input terms
//! `u`, such as `outer(k, v)`, reading no state and each a scalar times a rank-one product) and
//! the outputs read the states only through linear read-outs `x @ S` or `dot(x, z)`
//! (`chunked.rs` derives it). Retention, Mamba-2, gated linear attention and linear attention
//! with its normaliser have it; the delta rule, or any other recurrence, runs as a scan, and
//! `chunked` says why.

use super::FusionError;
use super::chunked::{ChunkedForm, DeltaTerm, Term, state_free};
use attnc_ir::expr::{Builtin, ExprArena, ExprId, ExprNode, StateTime};
use attnc_ir::graph::{Graph, Op};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::{Feature, FrameIndex, IndexSet};
use petgraph::stable_graph::NodeIndex;

#[derive(Clone, Debug)]
pub struct RecurrentKernel {
    /// Values that do not vary with t, computed once per (b, h).
    pub per_head: Vec<NodeIndex>,
    /// Values per step that read no state (loads, feature maps, gates): parallel over t.
    pub step_inputs: Vec<NodeIndex>,
    pub recurrence: NodeIndex,
    pub states: Vec<StatePlan>,
    /// The chunked form when it applies, else why not.
    pub chunked: Result<ChunkedForm, String>,
    pub epilogue: Vec<NodeIndex>,
}

#[derive(Clone, Debug)]
pub struct StatePlan {
    pub name: String,
    pub decay: Decay,
    /// The delta rule's correction `-β outer(k, k @ S)`, if the update has one.
    pub delta: Option<DeltaTerm>,
    /// The input terms (`outer(k, v)`, a feature row) in the recurrence's arena.
    pub inputs: Vec<Term>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decay {
    /// `S + ...`
    None,
    /// `c * S + ...` with `c` (a product of these factors) reading no state.
    Scalar(Vec<ExprId>),
    /// `diag(d) @ S + ...`
    PerRow(ExprId),
    /// Anything else: no chunked form.
    Other,
}

pub fn analyse(graph: &Graph) -> Result<RecurrentKernel, FusionError> {
    let order = super::topo_order(graph)?;
    let found = order.iter().find_map(|&n| match &graph.node(n).op {
        Op::Recurrence {
            arena,
            states,
            emits,
        } => Some((n, arena, states, emits)),
        _ => None,
    });
    let Some((recurrence, arena, states, emits)) = found else {
        // Point at the first value that varies with t: the one that needed a recurrence.
        let over_t = order.iter().find(|&&n| {
            matches!(graph.node(n).results.first(),
                Some(attnc_ir::graph::PortType::Value(t)) if t.indices.contains(FrameIndex::T))
        });
        let span = match over_t {
            Some(&n) => graph.node(n).span,
            None => super::error::kernel_span(graph)?,
        };
        return Err(FusionError::NoRecurrence {
            kernel: graph.kernel.clone(),
            span,
        });
    };
    let mut plans = Vec::new();
    let mut chunked_states = Vec::new();
    let mut reasons = Vec::new();
    for (k, s) in states.iter().enumerate() {
        let mut terms = Vec::new();
        additive(arena, s.update, false, &[], &mut terms);
        let mut decay = Decay::None;
        let mut delta: Option<DeltaTerm> = None;
        let mut inputs = Vec::new();
        let mut seen_state = false;
        for term in terms {
            let t = term.expr;
            let was_other = decay == Decay::Other;
            let scalar_decay = |c: Option<ExprId>| {
                Decay::Scalar(c.into_iter().chain(term.factors.iter().copied()).collect())
            };
            match arena.node(t) {
                _ if state_free(arena, t) => {
                    inputs.push(term);
                    continue;
                }
                _ if was_other => {}
                _ if delta.is_none() && super::chunked::delta_term(arena, &term, k).is_some() => {
                    delta = super::chunked::delta_term(arena, &term, k);
                }
                _ if term.negated || seen_state => decay = Decay::Other,
                ExprNode::State(j, StateTime::Previous) if *j as usize == k => {
                    seen_state = true;
                    decay = if term.factors.is_empty() {
                        Decay::None
                    } else {
                        scalar_decay(None)
                    };
                }
                ExprNode::Binary(BinaryOp::Mul, a, b)
                    if is_own_state(arena, *b, k) && state_free(arena, *a) =>
                {
                    seen_state = true;
                    decay = scalar_decay(Some(*a));
                }
                ExprNode::Binary(BinaryOp::Mul, a, b)
                    if is_own_state(arena, *a, k) && state_free(arena, *b) =>
                {
                    seen_state = true;
                    decay = scalar_decay(Some(*b));
                }
                ExprNode::Binary(BinaryOp::MatMul, d, b)
                    if is_own_state(arena, *b, k)
                        && term.factors.is_empty()
                        && matches!(arena.node(*d), ExprNode::Call(Builtin::Diag, args) if state_free(arena, args[0])) =>
                {
                    seen_state = true;
                    decay = Decay::PerRow(*d);
                }
                _ => decay = Decay::Other,
            }
            if decay == Decay::Other && !was_other {
                reasons.push(format!(
                    "the update of `{}` is not decay * {0} + terms that read no state (or one rank-one correction outer(k, x @ {0}) of the delta rule)",
                    s.name
                ));
            }
        }
        if !seen_state && decay != Decay::Other {
            reasons.push(format!(
                "the update of `{}` does not carry the previous state",
                s.name
            ));
        }
        if delta.is_some() && matches!(decay, Decay::PerRow(_)) {
            reasons.push(format!(
                "the update of `{}` has a per-row decay and a delta-rule correction, whose chunked form is not derived yet",
                s.name
            ));
        }
        if decay != Decay::Other {
            match super::chunked::rank_one_terms(arena, &s.name, &s.feature, &inputs) {
                Ok(terms) => chunked_states.push(super::chunked::ChunkedState {
                    decay: decay.clone(),
                    delta: delta.clone(),
                    terms,
                }),
                Err(why) => reasons.push(why),
            }
        }
        plans.push(StatePlan {
            name: s.name.clone(),
            decay,
            delta,
            inputs,
        });
    }
    let features: Vec<Feature> = states.iter().map(|s| s.feature.clone()).collect();
    let readouts = super::chunked::readouts(arena, emits, &features).unwrap_or_else(|why| {
        reasons.push(why);
        Vec::new()
    });
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
            Ok(ChunkedForm {
                states: chunked_states,
                readouts,
            })
        } else {
            Err(reasons.join("; "))
        },
        epilogue,
    })
}

/// The terms of a sum, each with whether it is subtracted and the scalars it is multiplied by:
/// `a * (S - b * outer(k, k @ S))` gives `S` and `b * outer(k, k @ S)`, both times `a`.
fn additive(arena: &ExprArena, id: ExprId, negated: bool, factors: &[ExprId], out: &mut Vec<Term>) {
    let is_sum = |e: ExprId| {
        matches!(
            arena.node(e),
            ExprNode::Binary(BinaryOp::Add | BinaryOp::Sub, ..) | ExprNode::Unary(UnaryOp::Neg, _)
        )
    };
    let scalar = |e: ExprId| arena.ty(e).feature == Feature::Scalar && state_free(arena, e);
    match arena.node(id) {
        ExprNode::Binary(BinaryOp::Add, a, b) => {
            additive(arena, *a, negated, factors, out);
            additive(arena, *b, negated, factors, out);
        }
        ExprNode::Binary(BinaryOp::Sub, a, b) => {
            additive(arena, *a, negated, factors, out);
            additive(arena, *b, !negated, factors, out);
        }
        ExprNode::Unary(UnaryOp::Neg, a) if is_sum(*a) => {
            additive(arena, *a, !negated, factors, out)
        }
        ExprNode::Binary(BinaryOp::Mul, a, b) if scalar(*a) && is_sum(*b) => {
            let more: Vec<ExprId> = factors.iter().copied().chain([*a]).collect();
            additive(arena, *b, negated, &more, out);
        }
        ExprNode::Binary(BinaryOp::Mul, b, a) if scalar(*a) && is_sum(*b) => {
            let more: Vec<ExprId> = factors.iter().copied().chain([*a]).collect();
            additive(arena, *b, negated, &more, out);
        }
        _ => out.push(Term {
            expr: id,
            negated,
            factors: factors.to_vec(),
        }),
    }
}

fn is_own_state(arena: &ExprArena, id: ExprId, k: usize) -> bool {
    matches!(arena.node(id), ExprNode::State(j, StateTime::Previous) if *j as usize == k)
}
