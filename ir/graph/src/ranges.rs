//! Bounds on every value a kernel computes, by interval arithmetic over the graph from the ranges
//! of its inputs (measured on a run's data, or declared). Compiled kernels compute in f32 while
//! the reference computes in f64, so a value that can pass f32's largest finite number may
//! overflow in the kernel alone and give quietly wrong numbers (a softmax over infinite scores is
//! all zeros). [`f32_overflow_risks`] finds where that can first happen, so a run can say so.
//!
//! The analysis is sound but loose (a dot product is bounded by its length times the largest
//! product), with two relational facts that keep normalisers exact enough not to cry wolf:
//! `x - m` is never positive where `m` is `max_j(x)` or a `max` of it with something else (a
//! sink), and `x / d` lies in [0, 1] for non-negative `x` where `d` is `sum_j(x)` plus terms
//! that are never negative.
//! Where it cannot bound a value (a division by a range holding zero, a logarithm at zero, a
//! recurrence) it gives up on that value and on what depends on it, rather than warn.

use crate::bind::Bindings;
use crate::expr::{Builtin, ExprArena, ExprId, ExprNode};
use crate::graph::{Graph, Op, PortType, ReduceKind, ValueRef};
use crate::ops::{BinaryOp, UnaryOp};
use crate::types::Feature;
use attnc_kernel_abi::ElementType;
use attnc_source::Span;
use std::collections::BTreeMap;

/// A closed range of reals; the bounds may be infinite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    pub fn new(lo: f64, hi: f64) -> Option<Self> {
        (!lo.is_nan() && !hi.is_nan() && lo <= hi).then_some(Interval { lo, hi })
    }

    fn point(x: f64) -> Option<Self> {
        Interval::new(x, x)
    }

    /// The largest magnitude in the range.
    pub fn magnitude(self) -> f64 {
        self.lo.abs().max(self.hi.abs())
    }

    fn hull(self, other: Interval) -> Interval {
        Interval {
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
        }
    }

    fn with_zero(self) -> Interval {
        self.hull(Interval { lo: 0.0, hi: 0.0 })
    }

    fn add(self, o: Interval) -> Option<Interval> {
        Interval::new(self.lo + o.lo, self.hi + o.hi)
    }

    fn neg(self) -> Interval {
        Interval {
            lo: -self.hi,
            hi: -self.lo,
        }
    }

    fn mul(self, o: Interval) -> Option<Interval> {
        let c = [
            self.lo * o.lo,
            self.lo * o.hi,
            self.hi * o.lo,
            self.hi * o.hi,
        ];
        // 0 · ∞ is NaN: such a product has no bound worth trusting.
        if c.iter().any(|v| v.is_nan()) {
            return None;
        }
        Interval::new(
            c.iter().copied().fold(f64::INFINITY, f64::min),
            c.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    }

    fn div(self, o: Interval) -> Option<Interval> {
        if o.lo <= 0.0 && o.hi >= 0.0 {
            return None;
        }
        self.mul(Interval::new(1.0 / o.hi, 1.0 / o.lo)?)
    }

    /// A sum of up to `n` terms each in this range (masked terms drop out, so zero is included).
    fn times_count(self, n: f64) -> Option<Interval> {
        Interval::new(n * self.lo, n * self.hi).map(Interval::with_zero)
    }

    /// The image under a nondecreasing function.
    fn increasing(self, f: impl Fn(f64) -> f64) -> Option<Interval> {
        Interval::new(f(self.lo), f(self.hi))
    }
}

/// A place where a kernel computing in f32 may overflow although the f64 reference does not.
#[derive(Clone, Debug, PartialEq)]
pub struct OverflowRisk {
    pub span: Span,
    /// The bound the analysis found (larger than f32's largest finite value, or infinite).
    pub bound: f64,
    /// The largest finite value of the type the value is computed or stored in.
    pub limit: f64,
    /// Where the bound comes from, in words (e.g. "this score", "output `o`, stored as f16").
    pub what: String,
}

/// The largest finite value of a storage type that kernels write.
fn storage_max(dtype: ElementType) -> f64 {
    match dtype {
        ElementType::F16 => 65504.0,
        ElementType::Bf16 => 3.3895313892515355e38,
        _ => f32::MAX as f64,
    }
}

/// Where an f32 kernel may overflow, given each input's range by name (an input without one, or
/// with non-finite data, makes what depends on it unbounded and so unreported). Only the first
/// place on each path is reported: what follows an overflow overflows too.
pub fn f32_overflow_risks(
    graph: &Graph,
    bindings: &Bindings,
    inputs: &BTreeMap<String, Interval>,
) -> Vec<OverflowRisk> {
    let Some(order) = graph.topo_order() else {
        return Vec::new();
    };
    let limit = f32::MAX as f64;
    let mut ranges: BTreeMap<ValueRef, Interval> = BTreeMap::new();
    let mut risks = Vec::new();
    for n in order {
        let node = graph.node(n);
        let operands: Vec<ValueRef> = graph.operands(n).into_iter().map(|(v, _)| v).collect();
        let operand = |k: usize| operands.get(k).and_then(|v| ranges.get(v)).copied();
        let inputs_fit = operands
            .iter()
            .all(|v| ranges.get(v).is_none_or(|r| r.magnitude() <= limit));
        let result = match &node.op {
            Op::Input { name, .. } => inputs.get(name).copied(),
            Op::Load { .. } => operand(0),
            Op::Score => {
                let len = feature_len(graph, bindings, operands.first());
                operand(0)
                    .zip(operand(1))
                    .and_then(|(q, k)| q.mul(k)?.times_count(len?))
            }
            Op::RowReduce { kind } => {
                let keys = bindings.extent(graph, crate::types::FrameIndex::J) as f64;
                operand(0).and_then(|x| match kind {
                    ReduceKind::Sum => x.times_count(keys),
                    ReduceKind::Max | ReduceKind::Min => Some(x),
                })
            }
            Op::Aggregate => {
                let keys = bindings.extent(graph, crate::types::FrameIndex::J) as f64;
                operand(0)
                    .zip(operand(1))
                    .and_then(|(w, v)| w.mul(v)?.times_count(keys))
            }
            Op::Map { expr, root } => {
                let mut eval = ArenaRanges {
                    graph,
                    bindings,
                    arena: expr,
                    operands: &operands,
                    ranges: &ranges,
                    values: vec![None; expr.len()],
                };
                for id in expr.ids() {
                    let r = eval.node(id);
                    eval.values[id.index()] = r;
                }
                if inputs_fit
                    && let Some(id) = eval.first_past(limit)
                    && let Some(r) = eval.values[id.index()]
                {
                    risks.push(OverflowRisk {
                        span: expr.span(id),
                        bound: r.magnitude(),
                        limit,
                        what: "this expression".to_string(),
                    });
                    // Reported here; the map's own result would repeat it.
                    None
                } else {
                    eval.values[root.index()]
                }
            }
            Op::Output { name, ty, .. } => {
                if let Some(r) = operand(0)
                    && inputs_fit
                    && r.magnitude() > storage_max(ty.dtype)
                {
                    risks.push(OverflowRisk {
                        span: node.span,
                        bound: r.magnitude(),
                        limit: storage_max(ty.dtype),
                        what: format!("output `{name}`, stored as {}", ty.dtype.name()),
                    });
                }
                None
            }
            // Booleans cannot overflow; a recurrence's growth over its steps is not bounded here.
            Op::Mask { .. } | Op::Recurrence { .. } => None,
        };
        if let Some(r) = result {
            if inputs_fit && r.magnitude() > limit && !matches!(node.op, Op::Input { .. }) {
                risks.push(OverflowRisk {
                    span: node.span,
                    bound: r.magnitude(),
                    limit,
                    what: describe(&node.op).to_string(),
                });
            }
            for port in 0..node.results.len() as u32 {
                ranges.insert(
                    ValueRef {
                        node: n,
                        result: port,
                    },
                    r,
                );
            }
        }
    }
    risks
}

fn describe(op: &Op) -> &'static str {
    match op {
        Op::Score => "this score",
        Op::RowReduce { .. } => "this reduction over the keys",
        Op::Aggregate => "this sum over the keys",
        _ => "this value",
    }
}

/// The length of a row value's feature axis.
fn feature_len(graph: &Graph, bindings: &Bindings, v: Option<&ValueRef>) -> Option<f64> {
    match graph.try_result_type(*v?)? {
        PortType::Value(t) => match &t.feature {
            Feature::Vector(d) => bindings.eval(d).ok().map(|x| x as f64),
            Feature::Scalar => Some(1.0),
            _ => None,
        },
        PortType::Tensor(_) => None,
    }
}

/// Ranges of the nodes of one map's arena.
struct ArenaRanges<'a> {
    graph: &'a Graph,
    bindings: &'a Bindings,
    arena: &'a ExprArena,
    operands: &'a [ValueRef],
    ranges: &'a BTreeMap<ValueRef, Interval>,
    values: Vec<Option<Interval>>,
}

impl ArenaRanges<'_> {
    fn get(&self, id: ExprId) -> Option<Interval> {
        self.values.get(id.index()).copied().flatten()
    }

    /// The first arena node (children first) whose bound passes `limit` while its children's
    /// bounds do not: where an overflow would start.
    fn first_past(&self, limit: f64) -> Option<ExprId> {
        self.arena.ids().find(|&id| {
            self.get(id).is_some_and(|r| r.magnitude() > limit)
                && self
                    .arena
                    .node(id)
                    .children()
                    .iter()
                    .all(|&c| self.get(c).is_none_or(|r| r.magnitude() <= limit))
        })
    }

    /// The graph value an arena operand reads.
    fn source(&self, id: ExprId) -> Option<ValueRef> {
        match self.arena.node(id) {
            ExprNode::Operand(k) => self.operands.get(*k as usize).copied(),
            _ => None,
        }
    }

    /// Whether arena node `bound` is at least (`Max`) or at most (`Min`) the value `x` read by
    /// arena node `of` at every point: `max_j(x)`, or `max(max_j(x), c)` as a normaliser with a
    /// sink writes it, in this map or in the maps it reads.
    fn dominates(&self, bound: ExprId, of: ExprId, kind: ReduceKind) -> bool {
        self.source(of)
            .is_some_and(|x| dominates_in(self.graph, self.arena, self.operands, bound, x, kind, 0))
    }

    /// Whether `d` is at least `sum_j(x)` for the value `x` that arena node `of` reads: the sum
    /// itself, or the sum plus terms that are never negative (a sink's `exp`).
    fn covers_sum(&self, d: ExprId, of: ExprId, depth: usize) -> bool {
        let Some(x) = self.source(of) else {
            return false;
        };
        let is_sum = self.source(d).is_some_and(|r| {
            matches!(
                self.graph.node(r.node).op,
                Op::RowReduce {
                    kind: ReduceKind::Sum
                }
            ) && first_operand(self.graph, r) == Some(x)
        });
        let non_negative = |e: ExprId| self.get(e).is_some_and(|r| r.lo >= 0.0);
        is_sum
            || depth < MAX_DEPTH
                && matches!(self.arena.node(d), ExprNode::Binary(BinaryOp::Add, a, b)
                    if self.covers_sum(*a, of, depth + 1) && non_negative(*b)
                        || self.covers_sum(*b, of, depth + 1) && non_negative(*a))
    }

    fn len_of(&self, id: ExprId) -> Option<f64> {
        match &self.arena.ty(id).feature {
            Feature::Vector(d) | Feature::Diag(d) => self.bindings.eval(d).ok().map(|x| x as f64),
            Feature::Scalar => Some(1.0),
            Feature::Matrix(..) => None,
        }
    }

    fn node(&self, id: ExprId) -> Option<Interval> {
        match self.arena.node(id) {
            ExprNode::Operand(_) => self.source(id).and_then(|v| self.ranges.get(&v).copied()),
            ExprNode::Index(fi) => Interval::new(
                0.0,
                (self.bindings.extent(self.graph, *fi) as f64 - 1.0).max(0.0),
            ),
            ExprNode::Dim(d) => Interval::point(*self.bindings.dims.get(d)? as f64),
            ExprNode::Int(v) => Interval::point(*v as f64),
            ExprNode::Float(v) => Interval::point(*v),
            ExprNode::State(..) => None,
            ExprNode::Unary(UnaryOp::Neg, a) => self.get(*a).map(Interval::neg),
            ExprNode::Unary(UnaryOp::Not, _) => Interval::new(0.0, 1.0),
            ExprNode::Binary(op, a, b) => self.binary(*op, *a, *b),
            ExprNode::Call(f, args) => self.call(*f, args),
            ExprNode::Extract(v, _) => self.get(*v),
        }
    }

    fn binary(&self, op: BinaryOp, a: ExprId, b: ExprId) -> Option<Interval> {
        let (x, y) = (self.get(a), self.get(b));
        match op {
            BinaryOp::Sub if self.dominates(b, a, ReduceKind::Max) => {
                Interval::new((x?.lo - y?.hi).min(0.0), 0.0)
            }
            BinaryOp::Sub if self.dominates(b, a, ReduceKind::Min) => {
                Interval::new(0.0, (x?.hi - y?.lo).max(0.0))
            }
            BinaryOp::Div if x.is_some_and(|x| x.lo >= 0.0) && self.covers_sum(b, a, 0) => {
                Interval::new(0.0, 1.0)
            }
            BinaryOp::Add => x?.add(y?),
            BinaryOp::Sub => x?.add(y?.neg()),
            BinaryOp::Mul => x?.mul(y?),
            BinaryOp::Div => x?.div(y?),
            BinaryOp::FloorDiv => x?.div(y?).and_then(|q| q.increasing(f64::floor)),
            BinaryOp::Rem => {
                let m = y?.magnitude();
                Interval::new(-m, m)
            }
            BinaryOp::MatMul => None,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::And
            | BinaryOp::Or => Interval::new(0.0, 1.0),
        }
    }

    fn call(&self, f: Builtin, args: &[ExprId]) -> Option<Interval> {
        let arg = |k: usize| args.get(k).and_then(|&a| self.get(a));
        let x = arg(0);
        let positive_domain = |x: Interval| (x.lo > 0.0).then_some(x);
        match f {
            Builtin::Exp => x?.increasing(f64::exp),
            Builtin::Exp2 => x?.increasing(f64::exp2),
            Builtin::Expm1 => x?.increasing(f64::exp_m1),
            Builtin::Sinh => x?.increasing(f64::sinh),
            Builtin::Softplus | Builtin::LogSigmoid | Builtin::Relu | Builtin::Elu => {
                x?.increasing(|v| f.apply_scalar(v).unwrap_or(f64::NAN))
            }
            Builtin::Floor | Builtin::ToInt => x?.increasing(f64::floor),
            Builtin::Ceil => x?.increasing(f64::ceil),
            Builtin::ToFloat => x,
            Builtin::Log => positive_domain(x?)?.increasing(f64::ln),
            Builtin::Log2 => positive_domain(x?)?.increasing(f64::log2),
            Builtin::Log1p => x.filter(|x| x.lo > -1.0)?.increasing(f64::ln_1p),
            Builtin::Sqrt => x.filter(|x| x.lo >= 0.0)?.increasing(f64::sqrt),
            Builtin::Rsqrt => {
                let x = positive_domain(x?)?;
                Interval::new(1.0 / x.hi.sqrt(), 1.0 / x.lo.sqrt())
            }
            Builtin::Tanh | Builtin::Erf | Builtin::Sign | Builtin::Sin | Builtin::Cos => {
                Interval::new(-1.0, 1.0)
            }
            Builtin::Sigmoid => Interval::new(0.0, 1.0),
            Builtin::Atan | Builtin::Asin => {
                let h = std::f64::consts::FRAC_PI_2;
                Interval::new(-h, h)
            }
            Builtin::Acos => Interval::new(0.0, std::f64::consts::PI),
            Builtin::Tan => None,
            // Both lie above about -0.28 and below max(x, 0).
            Builtin::Silu | Builtin::Gelu => Interval::new(-0.3, x?.hi.max(0.0)),
            Builtin::Abs => {
                let x = x?;
                let lo = if x.lo <= 0.0 && x.hi >= 0.0 {
                    0.0
                } else {
                    x.lo.abs().min(x.hi.abs())
                };
                Interval::new(lo, x.magnitude())
            }
            Builtin::Cosh => Interval::new(1.0, x?.magnitude().cosh()),
            Builtin::Pow => {
                let (a, b) = (positive_domain(x?)?, arg(1)?);
                let c = [
                    a.lo.powf(b.lo),
                    a.lo.powf(b.hi),
                    a.hi.powf(b.lo),
                    a.hi.powf(b.hi),
                ];
                Interval::new(
                    c.iter().copied().fold(f64::INFINITY, f64::min),
                    c.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                )
            }
            Builtin::Min => {
                let (a, b) = (x?, arg(1)?);
                Interval::new(a.lo.min(b.lo), a.hi.min(b.hi))
            }
            Builtin::Max => {
                let (a, b) = (x?, arg(1)?);
                Interval::new(a.lo.max(b.lo), a.hi.max(b.hi))
            }
            Builtin::Select => Some(arg(1)?.hull(arg(2)?)),
            Builtin::Dot => {
                let len = self.len_of(*args.first()?)?;
                x?.mul(arg(1)?)?.times_count(len)
            }
            Builtin::SumFeature => x?.times_count(self.len_of(*args.first()?)?),
            Builtin::Cumsum => Some(x?.times_count(self.len_of(*args.first()?)?)?.hull(x?)),
            Builtin::MeanFeature | Builtin::MaxFeature | Builtin::MinFeature => x,
            Builtin::Norm => {
                let len = self.len_of(*args.first()?)?;
                Interval::new(0.0, len.sqrt() * x?.magnitude())
            }
            Builtin::Cumprod => {
                let len = self.len_of(*args.first()?)?;
                let m = x?.magnitude().max(1.0).powf(len);
                Interval::new(-m, m)
            }
            Builtin::Outer => x?.mul(arg(1)?),
            Builtin::Diag => x.map(Interval::with_zero),
        }
    }
}

/// How far the relational facts look through nested `max`, `+` and maps.
const MAX_DEPTH: usize = 8;

fn first_operand(graph: &Graph, v: ValueRef) -> Option<ValueRef> {
    graph.operands(v.node).first().map(|(x, _)| *x)
}

/// [`ArenaRanges::dominates`] for arena node `bound` of a map with these operands.
fn dominates_in(
    graph: &Graph,
    arena: &ExprArena,
    operands: &[ValueRef],
    bound: ExprId,
    x: ValueRef,
    kind: ReduceKind,
    depth: usize,
) -> bool {
    let combine = match kind {
        ReduceKind::Max => Builtin::Max,
        ReduceKind::Min => Builtin::Min,
        ReduceKind::Sum => return false,
    };
    if depth >= MAX_DEPTH {
        return false;
    }
    match arena.node(bound) {
        ExprNode::Operand(k) => operands
            .get(*k as usize)
            .is_some_and(|&v| value_dominates(graph, v, x, kind, depth + 1)),
        ExprNode::Call(f, args) if *f == combine => args
            .iter()
            .any(|&a| dominates_in(graph, arena, operands, a, x, kind, depth + 1)),
        _ => false,
    }
}

/// Whether graph value `bound` is at least (`Max`) or at most (`Min`) the value `x`.
fn value_dominates(
    graph: &Graph,
    bound: ValueRef,
    x: ValueRef,
    kind: ReduceKind,
    depth: usize,
) -> bool {
    if bound == x {
        return true;
    }
    match &graph.node(bound.node).op {
        Op::RowReduce { kind: k } => *k == kind && first_operand(graph, bound) == Some(x),
        Op::Map { expr, root } => {
            let operands: Vec<ValueRef> = graph
                .operands(bound.node)
                .into_iter()
                .map(|(v, _)| v)
                .collect();
            dominates_in(graph, expr, &operands, *root, x, kind, depth)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_arithmetic_is_sound_at_the_corners() {
        let a = Interval::new(-2.0, 3.0).unwrap();
        let b = Interval::new(4.0, 5.0).unwrap();
        assert_eq!(a.mul(b), Interval::new(-10.0, 15.0));
        assert_eq!(a.add(b.neg()), Interval::new(-7.0, -1.0));
        assert_eq!(b.div(a), None, "a divisor range holding zero has no bound");
        assert_eq!(a.div(b), Interval::new(-0.5, 0.75));
        assert_eq!(b.times_count(3.0), Interval::new(0.0, 15.0));
        assert_eq!(Interval::new(1.0, f64::NAN), None);
        let inf = Interval::new(0.0, f64::INFINITY).unwrap();
        assert_eq!(inf.mul(Interval::new(0.0, 1.0).unwrap()), None, "0 · ∞");
    }
}
