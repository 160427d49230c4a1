//! The chunked form of a recurrence, derived from the updates and read-outs the user wrote.
//!
//! When every state is updated as `S_t = A_t S_{t-1} + Σ_m c_m · outer(l_m, r_m)` with `A_t` a
//! scalar or a diagonal (`diag(d) @ S`) and the terms reading no state, and the outputs read the
//! states only as `x @ S` (or `dot(x, z)` for a vector state), then inside a chunk of C steps
//! starting after step t0 − 1, with `D[t, s] = Π_{u=s+1..t} A_u` the decay between two steps:
//!
//! ```text
//! x_t @ S_t = (x_t ⊙ D[t, t0−1]) @ S_{t0−1}                       (inter-chunk: the carried state)
//!           + Σ_{s=t0..t} Σ_m c_m,s (Σ_r x_t[r] D[t, s][r] l_m,s[r]) r_m,s   (intra-chunk)
//! S_{t0+C−1} = D[end, t0−1] ⊙ S_{t0−1} + Σ_s Σ_m D[end, s] c_m,s outer(l_m,s, r_m,s)
//! ```
//!
//! The intra-chunk part is the parallel form (scores of read-out rows against left vectors,
//! masked to s ≤ t and weighted by the decay, times the right vectors); only the state crosses
//! chunk boundaries. This module finds `A_t`, the rank-one terms and the read-outs; a back end
//! evaluates the pieces (each an expression of the recurrence's arena, reading no state).

use super::recurrent::Decay;
use attnc_ir::bind::Bindings;
use attnc_ir::expr::{Builtin, ExprArena, ExprId, ExprNode, StateTime};
use attnc_ir::graph::{Graph, Op, PortType};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::{Feature, FrameIndex};
use petgraph::stable_graph::NodeIndex;
use std::collections::HashSet;

/// Everything a back end needs to run a recurrence chunk by chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkedForm {
    /// One per state, in the recurrence's order.
    pub states: Vec<ChunkedState>,
    /// The state reads of the emitted values, each replaced by its chunked evaluation.
    pub readouts: Vec<Readout>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChunkedState {
    pub decay: Decay,
    /// The delta rule's rank-one correction of the transition, if any.
    pub delta: Option<DeltaTerm>,
    pub terms: Vec<RankOne>,
}

/// A term of an update: `± Π factors · expr`, the factors being scalars that multiplied a sum.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub expr: ExprId,
    pub negated: bool,
    pub factors: Vec<ExprId>,
}

/// `± Π factors · outer(left, query @ S)`: with it, `S_t = a_t S_{t-1} + left_t u_tᵀ + B_t`
/// where `u_t = c_t S_{t-1}ᵀ query_t` depends on the earlier steps of the chunk only through
/// the decay matrix, so a chunk's `u` follow by forward substitution (the UT transform of the
/// delta rule, written as the triangular solve it is) and then act as right vectors of one more
/// rank-one term.
#[derive(Clone, Debug, PartialEq)]
pub struct DeltaTerm {
    /// The whole term and the scalars it was multiplied by as part of a sum, for dumps.
    pub term: ExprId,
    pub distributed: Vec<ExprId>,
    pub negated: bool,
    pub factors: Vec<Factor>,
    pub left: ExprId,
    pub query: ExprId,
}

/// One input term of an update: `± Π factors · outer(left, right)`; a missing side is a vector
/// of ones (a vector state has no right side; a scalar broadcast has neither).
#[derive(Clone, Debug, PartialEq)]
pub struct RankOne {
    pub negated: bool,
    pub factors: Vec<Factor>,
    /// A vector over the state's rows.
    pub left: Option<ExprId>,
    /// A vector over the state's columns.
    pub right: Option<ExprId>,
}

/// A scalar factor of a rank-one term.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Factor {
    Times(ExprId),
    Over(ExprId),
}

/// `query @ S` (over S's columns) or `dot(query, z)` (a scalar) in an emitted value.
#[derive(Clone, Debug, PartialEq)]
pub struct Readout {
    /// The arena node of the read-out.
    pub node: ExprId,
    pub state: u32,
    /// The state-free vector contracted with the state's rows.
    pub query: ExprId,
}

/// The rank-one decomposition of every input term of a state of shape `feature`, or why not.
pub fn rank_one_terms(
    arena: &ExprArena,
    name: &str,
    feature: &Feature,
    inputs: &[Term],
) -> Result<Vec<RankOne>, String> {
    inputs
        .iter()
        .map(|t| {
            let mut r = decompose(arena, t.expr, feature, t.negated).ok_or_else(|| {
                format!("an input term of `{name}` is not a scalar times outer(a, b)")
            })?;
            r.factors
                .extend(t.factors.iter().map(|f| Factor::Times(*f)));
            Ok(r)
        })
        .collect()
}

fn decompose(arena: &ExprArena, t: ExprId, state: &Feature, negated: bool) -> Option<RankOne> {
    let scalar = |e: ExprId| arena.ty(e).feature == Feature::Scalar;
    if scalar(t) {
        return Some(RankOne {
            negated,
            factors: vec![Factor::Times(t)],
            left: None,
            right: None,
        });
    }
    match arena.node(t) {
        ExprNode::Unary(UnaryOp::Neg, a) => decompose(arena, *a, state, !negated),
        ExprNode::Binary(BinaryOp::Mul, a, b) if scalar(*a) => {
            let mut r = decompose(arena, *b, state, negated)?;
            r.factors.push(Factor::Times(*a));
            Some(r)
        }
        ExprNode::Binary(BinaryOp::Mul | BinaryOp::Div, a, b) if scalar(*b) => {
            let mut r = decompose(arena, *a, state, negated)?;
            r.factors.push(match arena.node(t) {
                ExprNode::Binary(BinaryOp::Mul, ..) => Factor::Times(*b),
                _ => Factor::Over(*b),
            });
            Some(r)
        }
        ExprNode::Call(Builtin::Outer, args) if matches!(state, Feature::Matrix(..)) => {
            Some(RankOne {
                negated,
                factors: Vec::new(),
                left: Some(args[0]),
                right: Some(args[1]),
            })
        }
        _ if matches!(state, Feature::Vector(_)) => Some(RankOne {
            negated,
            factors: Vec::new(),
            left: Some(t),
            right: None,
        }),
        _ => None,
    }
}

/// The read-outs of the emitted values, or why a state is read otherwise.
pub fn readouts(
    arena: &ExprArena,
    emits: &[ExprId],
    states: &[Feature],
) -> Result<Vec<Readout>, String> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for e in emits {
        walk(arena, *e, states, &mut seen, &mut found)?;
    }
    Ok(found)
}

fn walk(
    arena: &ExprArena,
    id: ExprId,
    states: &[Feature],
    seen: &mut HashSet<ExprId>,
    found: &mut Vec<Readout>,
) -> Result<(), String> {
    if !seen.insert(id) {
        return Ok(());
    }
    let state_of = |e: ExprId| match arena.node(e) {
        ExprNode::State(k, StateTime::Current) => Some(*k),
        _ => None,
    };
    let sides = match arena.node(id) {
        ExprNode::Binary(BinaryOp::MatMul, a, b) => Some((*a, *b, false)),
        ExprNode::Call(Builtin::Dot, args) if args.len() == 2 => Some((args[0], args[1], true)),
        _ => None,
    };
    if let Some((a, b, dot)) = sides {
        let (query, k) = match (state_of(a), state_of(b)) {
            (None, Some(k)) => (a, k),
            (Some(k), None) if dot => (b, k),
            (Some(_), None) => {
                return Err("an output reads a state along its columns (S @ x)".to_string());
            }
            (Some(_), Some(_)) => return Err("an output multiplies two states".to_string()),
            (None, None) => {
                walk(arena, a, states, seen, found)?;
                return walk(arena, b, states, seen, found);
            }
        };
        let vector_state = matches!(states.get(k as usize), Some(Feature::Vector(_)));
        if dot != vector_state {
            return Err("an output reads a state other than through x @ S or dot(x, z)".into());
        }
        if !state_free(arena, query) {
            return Err("an output contracts a state with a value that reads a state".into());
        }
        found.push(Readout {
            node: id,
            state: k,
            query,
        });
        return Ok(());
    }
    match arena.node(id) {
        ExprNode::State(..) => {
            Err("an output reads a state other than through x @ S or dot(x, z)".to_string())
        }
        ExprNode::Unary(_, a) => walk(arena, *a, states, seen, found),
        ExprNode::Binary(_, a, b) | ExprNode::Extract(a, b) => {
            walk(arena, *a, states, seen, found)?;
            walk(arena, *b, states, seen, found)
        }
        ExprNode::Call(_, args) => args
            .iter()
            .try_for_each(|a| walk(arena, *a, states, seen, found)),
        _ => Ok(()),
    }
}

pub(crate) fn state_free(arena: &ExprArena, id: ExprId) -> bool {
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

/// The delta rule's correction in a term: `± Π factors · outer(left, query @ S)` with `S` the
/// state's previous value and `left`, `query` reading no state. The transition is then
/// `decay · I + c · left queryᵀ`, a scaled identity plus a rank-one term.
pub fn delta_term(arena: &ExprArena, term: &Term, state: usize) -> Option<DeltaTerm> {
    let mut negated = term.negated;
    let mut factors: Vec<Factor> = term.factors.iter().map(|f| Factor::Times(*f)).collect();
    let mut id = term.expr;
    let scalar = |e: ExprId| arena.ty(e).feature == Feature::Scalar && state_free(arena, e);
    loop {
        match arena.node(id) {
            ExprNode::Unary(UnaryOp::Neg, a) => {
                negated = !negated;
                id = *a;
            }
            ExprNode::Binary(BinaryOp::Mul, a, b) if scalar(*a) => {
                factors.push(Factor::Times(*a));
                id = *b;
            }
            ExprNode::Binary(BinaryOp::Mul, b, a) if scalar(*a) => {
                factors.push(Factor::Times(*a));
                id = *b;
            }
            ExprNode::Binary(BinaryOp::Div, b, a) if scalar(*a) => {
                factors.push(Factor::Over(*a));
                id = *b;
            }
            ExprNode::Call(Builtin::Outer, args) if state_free(arena, args[0]) => {
                let ExprNode::Binary(BinaryOp::MatMul, x, s) = arena.node(args[1]) else {
                    return None;
                };
                let own = matches!(arena.node(*s), ExprNode::State(k, StateTime::Previous) if *k as usize == state);
                return (own && state_free(arena, *x)).then(|| DeltaTerm {
                    term: term.expr,
                    distributed: term.factors.clone(),
                    negated,
                    factors,
                    left: args[0],
                    query: *x,
                });
            }
            _ => return None,
        }
    }
}

/// The work of a recurrence run in chunks of `chunk` steps, counted as the peers count
/// attention: 2 FLOPs per multiply-add of the contractions, elementwise work left out. Per
/// chunk of c steps, per (b, h) and per state of R rows and C columns (a vector state has one
/// column): each rank-one term's state update (2·c·R·C); each read-out's inter-chunk product
/// with the carried state (2·c·R·C) and, per term, its intra-chunk scores and weighted sum over
/// the c(c+1)/2 steps s ≤ t (2·R + 2·C each). The delta rule adds the correction's product with
/// the carried state (2·c·R·C), its strictly lower scores and forward substitution
/// (c(c−1)/2 · (2·R + 2·C)), and its corrected vectors as one more term. `bench` reports
/// GFLOP/s of this count, so a scan and its chunked form are measured against the same work.
pub fn flops(
    graph: &Graph,
    recurrence: NodeIndex,
    form: &ChunkedForm,
    chunk: usize,
    bindings: &Bindings,
) -> Result<f64, String> {
    let (Op::Recurrence { states, .. }, Some(PortType::Value(ty))) = (
        &graph.node(recurrence).op,
        graph.node(recurrence).results.first(),
    ) else {
        return Err("the node is not a recurrence".into());
    };
    let eval = |d: &attnc_ir::types::Dim| {
        bindings
            .eval(d)
            .map(|v| v.max(0) as f64)
            .map_err(|e| format!("{e:?}"))
    };
    let shape = |f: &Feature| -> Result<(f64, f64), String> {
        Ok(match f {
            Feature::Scalar => (1.0, 1.0),
            Feature::Vector(d) | Feature::Diag(d) => (eval(d)?, 1.0),
            Feature::Matrix(r, c) => (eval(r)?, eval(c)?),
        })
    };
    let slices: f64 = ty
        .indices
        .without(FrameIndex::T)
        .iter()
        .map(|fi| bindings.extent(graph, fi) as f64)
        .product();
    let steps = bindings.extent(graph, FrameIndex::T);
    let chunk = chunk.max(1);
    let mut per_slice = 0.0;
    let mut start = 0;
    while start < steps {
        let c = chunk.min(steps - start) as f64;
        let (pairs, strict) = (c * (c + 1.0) / 2.0, c * (c - 1.0) / 2.0);
        for (k, state) in form.states.iter().enumerate() {
            let Some(def) = states.get(k) else {
                return Err(format!("the chunked form has no state {k}"));
            };
            let (r, cols) = shape(&def.feature)?;
            let terms = (state.terms.len() + usize::from(state.delta.is_some())) as f64;
            per_slice += terms * 2.0 * c * r * cols;
            if state.delta.is_some() {
                per_slice += 2.0 * c * r * cols + strict * (2.0 * r + 2.0 * cols);
            }
            for _ in form.readouts.iter().filter(|o| o.state as usize == k) {
                per_slice += 2.0 * c * r * cols + terms * pairs * (2.0 * r + 2.0 * cols);
            }
        }
        start += chunk;
    }
    Ok(slices * per_slice)
}
