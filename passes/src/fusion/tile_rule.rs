//! Which (query tile x key tile) boxes a mask empties, by interval arithmetic on the mask
//! expression: a box where the mask is false everywhere is skipped, one where it is true
//! everywhere needs no per-element mask. This is derived from any mask, not from a list of
//! known patterns: causal masking skips the tiles above the diagonal, a sliding window all
//! tiles outside the band, a block layout nothing (its data is unknown before a call).
//!
//! The rules are written once, generically over [`IntervalArith`]: the compiler evaluates them
//! on numbers ([`StaticArith`], for the cost model's tile counts), and a code generator on SSA
//! values, so a kernel computes each tile's coverage itself with exactly the same rules (and
//! can also use values only known at run time, such as a per-head sequence length). The mask is
//! seen through its `let`s and functions: maps are inlined into its tree ([`mask_tree`]).

use super::tree::Tree;
use attnc_ir::expr::{Builtin, ExprArena, ExprId, ExprNode};
use attnc_ir::graph::{Graph, Op, PortType, ValueRef};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::{FrameIndex, ScalarKind};
use petgraph::stable_graph::NodeIndex;
use std::collections::BTreeMap;

/// A three-valued truth: what the mask is over a whole box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// False on every pair: skip the tile.
    Empty,
    /// True on every pair: no per-element mask needed.
    Full,
    /// Mixed or unknown: evaluate per element.
    Partial,
}

impl Coverage {
    /// The code a kernel stores per tile: 0 skip, 1 mask per element, 2 fully kept.
    pub fn code(self) -> i32 {
        match self {
            Coverage::Empty => 0,
            Coverage::Partial => 1,
            Coverage::Full => 2,
        }
    }
}

/// An inclusive range of index values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span1 {
    pub lo: f64,
    pub hi: f64,
}

/// The box of index values one tile covers.
#[derive(Clone, Debug)]
pub struct TileBox {
    pub ranges: BTreeMap<FrameIndex, Span1>,
}

/// The arithmetic the interval rules need, on bounds `F` and truth values `B`: numbers when the
/// compiler evaluates a mask, SSA values when a kernel does.
pub trait IntervalArith {
    type F: Clone;
    type B: Clone;
    fn constant(&mut self, x: f64) -> Self::F;
    fn boolean(&mut self, b: bool) -> Self::B;
    fn add(&mut self, a: &Self::F, b: &Self::F) -> Self::F;
    fn sub(&mut self, a: &Self::F, b: &Self::F) -> Self::F;
    fn mul(&mut self, a: &Self::F, b: &Self::F) -> Self::F;
    fn div(&mut self, a: &Self::F, b: &Self::F) -> Self::F;
    fn min(&mut self, a: &Self::F, b: &Self::F) -> Self::F;
    fn max(&mut self, a: &Self::F, b: &Self::F) -> Self::F;
    fn lt(&mut self, a: &Self::F, b: &Self::F) -> Self::B;
    fn le(&mut self, a: &Self::F, b: &Self::F) -> Self::B;
    fn eq(&mut self, a: &Self::F, b: &Self::F) -> Self::B;
    fn and(&mut self, a: &Self::B, b: &Self::B) -> Self::B;
    fn or(&mut self, a: &Self::B, b: &Self::B) -> Self::B;
    fn not(&mut self, a: &Self::B) -> Self::B;
    fn select(&mut self, c: &Self::B, a: &Self::F, b: &Self::F) -> Self::F;
    fn select_b(&mut self, c: &Self::B, a: &Self::B, b: &Self::B) -> Self::B;
    fn is_nan(&mut self, a: &Self::F) -> Self::B;
    /// An increasing function (exp, tanh, sigmoid, relu, floor, ceil) of a bound.
    fn increasing(&mut self, f: Builtin, a: &Self::F) -> Self::F;
    /// The range of a frame index over the box, if the kernel has it.
    fn index(&mut self, fi: FrameIndex) -> Option<(Self::F, Self::F)>;
    fn dim(&mut self, d: &str) -> Option<Self::F>;
    /// The exact value of a leaf, where it is known (a per-head value inside a kernel).
    fn leaf(&mut self, v: ValueRef) -> Option<Interval<Self::F, Self::B>>;
}

/// A value over a box: a range of numbers, or which truth values it may take.
#[derive(Clone, Debug)]
pub enum Interval<F, B> {
    Num(F, F),
    Truth { may_true: B, may_false: B },
}

/// The coverage of a mask over a box as truth values: `(may_true, may_false)`.
pub fn eval_mask<A: IntervalArith>(a: &mut A, graph: &Graph, mask: &Tree) -> (A::B, A::B) {
    match eval(a, graph, mask) {
        Interval::Truth {
            may_true,
            may_false,
        } => (may_true, may_false),
        Interval::Num(..) => {
            let t = a.boolean(true);
            (t.clone(), t)
        }
    }
}

fn any<A: IntervalArith>(a: &mut A) -> Interval<A::F, A::B> {
    let lo = a.constant(f64::NEG_INFINITY);
    let hi = a.constant(f64::INFINITY);
    Interval::Num(lo, hi)
}

fn unknown_truth<A: IntervalArith>(a: &mut A) -> Interval<A::F, A::B> {
    let t = a.boolean(true);
    Interval::Truth {
        may_true: t.clone(),
        may_false: t,
    }
}

/// A range whose bounds became NaN (`0 * inf`) is unknown.
fn num<A: IntervalArith>(a: &mut A, lo: A::F, hi: A::F) -> Interval<A::F, A::B> {
    let (nl, nh) = (a.is_nan(&lo), a.is_nan(&hi));
    let bad = a.or(&nl, &nh);
    let ninf = a.constant(f64::NEG_INFINITY);
    let inf = a.constant(f64::INFINITY);
    let lo = a.select(&bad, &ninf, &lo);
    let hi = a.select(&bad, &inf, &hi);
    Interval::Num(lo, hi)
}

fn kind_is_bool(graph: &Graph, t: &Tree) -> bool {
    match t {
        Tree::Value(v) => matches!(
            graph.try_result_type(*v),
            Some(PortType::Value(ty)) if ty.kind == ScalarKind::Bool
        ),
        Tree::Unary(UnaryOp::Not, _) => true,
        Tree::Binary(op, ..) => matches!(
            op,
            BinaryOp::Eq
                | BinaryOp::Ne
                | BinaryOp::Lt
                | BinaryOp::Le
                | BinaryOp::Gt
                | BinaryOp::Ge
                | BinaryOp::And
                | BinaryOp::Or
        ),
        Tree::Call(Builtin::Select, args) => kind_is_bool(graph, &args[1]),
        _ => false,
    }
}

fn eval<A: IntervalArith>(a: &mut A, graph: &Graph, t: &Tree) -> Interval<A::F, A::B> {
    let unknown = |a: &mut A| {
        if kind_is_bool(graph, t) {
            unknown_truth(a)
        } else {
            any(a)
        }
    };
    match t {
        Tree::Index(fi) => match a.index(*fi) {
            Some((lo, hi)) => Interval::Num(lo, hi),
            None => any(a),
        },
        Tree::Dim(d) => match a.dim(d) {
            Some(v) => Interval::Num(v.clone(), v),
            None => any(a),
        },
        Tree::Int(v) => {
            let c = a.constant(*v as f64);
            Interval::Num(c.clone(), c)
        }
        Tree::Float(v) => {
            let c = a.constant(*v);
            Interval::Num(c.clone(), c)
        }
        Tree::Value(v) => a.leaf(*v).unwrap_or_else(|| unknown(a)),
        Tree::Unary(UnaryOp::Neg, x) => match eval(a, graph, x) {
            Interval::Num(lo, hi) => {
                let zero = a.constant(0.0);
                let nlo = a.sub(&zero, &hi);
                let nhi = a.sub(&zero, &lo);
                num(a, nlo, nhi)
            }
            _ => any(a),
        },
        Tree::Unary(UnaryOp::Not, x) => match eval(a, graph, x) {
            Interval::Truth {
                may_true,
                may_false,
            } => Interval::Truth {
                may_true: may_false,
                may_false: may_true,
            },
            _ => unknown_truth(a),
        },
        Tree::Binary(op, x, y) => {
            let (x, y) = (eval(a, graph, x), eval(a, graph, y));
            binary(a, *op, x, y)
        }
        Tree::Call(f, args) => {
            let vals: Vec<Interval<A::F, A::B>> = args.iter().map(|x| eval(a, graph, x)).collect();
            call(a, *f, vals).unwrap_or_else(|| unknown(a))
        }
        // Vector elements: nothing is known before a call.
        Tree::Extract(..) => unknown(a),
    }
}

fn binary<A: IntervalArith>(
    a: &mut A,
    op: BinaryOp,
    x: Interval<A::F, A::B>,
    y: Interval<A::F, A::B>,
) -> Interval<A::F, A::B> {
    use Interval::{Num, Truth};
    match (op, x, y) {
        (
            BinaryOp::And,
            Truth {
                may_true: at,
                may_false: af,
            },
            Truth {
                may_true: bt,
                may_false: bf,
            },
        ) => Truth {
            may_true: a.and(&at, &bt),
            may_false: a.or(&af, &bf),
        },
        (
            BinaryOp::Or,
            Truth {
                may_true: at,
                may_false: af,
            },
            Truth {
                may_true: bt,
                may_false: bf,
            },
        ) => Truth {
            may_true: a.or(&at, &bt),
            may_false: a.and(&af, &bf),
        },
        (BinaryOp::Add, Num(p, q), Num(r, s)) => {
            let lo = a.add(&p, &r);
            let hi = a.add(&q, &s);
            num(a, lo, hi)
        }
        (BinaryOp::Sub, Num(p, q), Num(r, s)) => {
            let lo = a.sub(&p, &s);
            let hi = a.sub(&q, &r);
            num(a, lo, hi)
        }
        (BinaryOp::Mul | BinaryOp::MatMul, Num(p, q), Num(r, s)) => {
            let c = [a.mul(&p, &r), a.mul(&p, &s), a.mul(&q, &r), a.mul(&q, &s)];
            hull(a, &c)
        }
        (BinaryOp::FloorDiv | BinaryOp::Div, Num(p, q), Num(r, s)) => {
            // Defined when the divisor's range excludes 0.
            let zero = a.constant(0.0);
            let pos = a.lt(&zero, &r);
            let neg = a.lt(&s, &zero);
            let ok = a.or(&pos, &neg);
            let c = [a.div(&p, &r), a.div(&p, &s), a.div(&q, &r), a.div(&q, &s)];
            let Num(mut lo, mut hi) = hull(a, &c) else {
                return any(a);
            };
            if op == BinaryOp::FloorDiv {
                lo = a.increasing(Builtin::Floor, &lo);
                hi = a.increasing(Builtin::Floor, &hi);
            }
            let ninf = a.constant(f64::NEG_INFINITY);
            let inf = a.constant(f64::INFINITY);
            let lo = a.select(&ok, &lo, &ninf);
            let hi = a.select(&ok, &hi, &inf);
            num(a, lo, hi)
        }
        (BinaryOp::Rem, Num(..), Num(r, s)) => {
            // A remainder by one positive constant lies in [0, c - 1].
            let same = a.eq(&r, &s);
            let zero = a.constant(0.0);
            let pos = a.lt(&zero, &r);
            let ok = a.and(&same, &pos);
            let one = a.constant(1.0);
            let top = a.sub(&r, &one);
            let ninf = a.constant(f64::NEG_INFINITY);
            let inf = a.constant(f64::INFINITY);
            let lo = a.select(&ok, &zero, &ninf);
            let hi = a.select(&ok, &top, &inf);
            num(a, lo, hi)
        }
        // x < y surely when x.hi < y.lo, never when x.lo >= y.hi.
        (BinaryOp::Lt, Num(p, q), Num(r, s)) => compare(a, Strict::Yes, (p, q), (r, s)),
        (BinaryOp::Le, Num(p, q), Num(r, s)) => compare(a, Strict::No, (p, q), (r, s)),
        (BinaryOp::Gt, Num(p, q), Num(r, s)) => compare(a, Strict::Yes, (r, s), (p, q)),
        (BinaryOp::Ge, Num(p, q), Num(r, s)) => compare(a, Strict::No, (r, s), (p, q)),
        (BinaryOp::Eq | BinaryOp::Ne, Num(p, q), Num(r, s)) => {
            let xp = a.eq(&p, &q);
            let yp = a.eq(&r, &s);
            let same = a.eq(&p, &r);
            let points = a.and(&xp, &yp);
            let surely = a.and(&points, &same);
            let below = a.lt(&q, &r);
            let above = a.lt(&s, &p);
            let never = a.or(&below, &above);
            let (yes, no) = if op == BinaryOp::Eq {
                (surely, never)
            } else {
                (never, surely)
            };
            Truth {
                may_true: a.not(&no),
                may_false: a.not(&yes),
            }
        }
        (
            BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::And
            | BinaryOp::Or,
            _,
            _,
        ) => unknown_truth(a),
        _ => any(a),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Strict {
    Yes,
    No,
}

/// `x < y` (or `<=`) over ranges x = (p, q), y = (r, s).
fn compare<A: IntervalArith>(
    a: &mut A,
    strict: Strict,
    (p, q): (A::F, A::F),
    (r, s): (A::F, A::F),
) -> Interval<A::F, A::B> {
    let (surely, may) = match strict {
        Strict::Yes => (a.lt(&q, &r), a.lt(&p, &s)),
        Strict::No => (a.le(&q, &r), a.le(&p, &s)),
    };
    Interval::Truth {
        may_true: may,
        may_false: a.not(&surely),
    }
}

/// The smallest range holding all of `c`.
fn hull<A: IntervalArith>(a: &mut A, c: &[A::F]) -> Interval<A::F, A::B> {
    let mut lo = c[0].clone();
    let mut hi = c[0].clone();
    for x in &c[1..] {
        lo = a.min(&lo, x);
        hi = a.max(&hi, x);
    }
    num(a, lo, hi)
}

/// Functions whose range over an interval is known; `None` for the others.
fn call<A: IntervalArith>(
    a: &mut A,
    f: Builtin,
    mut v: Vec<Interval<A::F, A::B>>,
) -> Option<Interval<A::F, A::B>> {
    use Interval::{Num, Truth};
    Some(match (f, v.as_mut_slice()) {
        (Builtin::Min, [Num(p, q), Num(r, s)]) => {
            let lo = a.min(p, r);
            let hi = a.min(q, s);
            num(a, lo, hi)
        }
        (Builtin::Max, [Num(p, q), Num(r, s)]) => {
            let lo = a.max(p, r);
            let hi = a.max(q, s);
            num(a, lo, hi)
        }
        (Builtin::Abs, [Num(p, q)]) => {
            // [p, q] if p >= 0; [-q, -p] if q <= 0; else [0, max(-p, q)].
            let zero = a.constant(0.0);
            let np = a.sub(&zero, p);
            let nq = a.sub(&zero, q);
            let nonneg = a.le(&zero, p);
            let nonpos = a.le(q, &zero);
            let top = a.max(&np, q);
            let lo_mixed = a.select(&nonpos, &nq, &zero);
            let hi_mixed = a.select(&nonpos, &np, &top);
            let lo = a.select(&nonneg, p, &lo_mixed);
            let hi = a.select(&nonneg, q, &hi_mixed);
            num(a, lo, hi)
        }
        (
            Builtin::Floor
            | Builtin::ToInt
            | Builtin::Ceil
            | Builtin::Exp
            | Builtin::Tanh
            | Builtin::Sigmoid
            | Builtin::Relu,
            [Num(p, q)],
        ) => {
            let g = if f == Builtin::ToInt {
                Builtin::Floor
            } else {
                f
            };
            let lo = a.increasing(g, p);
            let hi = a.increasing(g, q);
            num(a, lo, hi)
        }
        (Builtin::ToFloat, [x]) => x.clone(),
        (
            Builtin::Select,
            [
                Truth {
                    may_true,
                    may_false,
                },
                x,
                y,
            ],
        ) => {
            let only_true = a.not(may_false);
            let only_false = a.not(may_true);
            match (x.clone(), y.clone()) {
                (Num(p, q), Num(r, s)) => {
                    let hl = a.min(&p, &r);
                    let hh = a.max(&q, &s);
                    let lo1 = a.select(&only_false, &r, &hl);
                    let hi1 = a.select(&only_false, &s, &hh);
                    let lo = a.select(&only_true, &p, &lo1);
                    let hi = a.select(&only_true, &q, &hi1);
                    num(a, lo, hi)
                }
                (
                    Truth {
                        may_true: xt,
                        may_false: xf,
                    },
                    Truth {
                        may_true: yt,
                        may_false: yf,
                    },
                ) => {
                    let ht = a.or(&xt, &yt);
                    let hf = a.or(&xf, &yf);
                    let t1 = a.select_b(&only_false, &yt, &ht);
                    let f1 = a.select_b(&only_false, &yf, &hf);
                    Truth {
                        may_true: a.select_b(&only_true, &xt, &t1),
                        may_false: a.select_b(&only_true, &xf, &f1),
                    }
                }
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// The compiler's own evaluation: numbers, over a box of index values, with dims bound.
pub struct StaticArith<'a> {
    pub dims: &'a BTreeMap<String, i64>,
    pub tile: &'a TileBox,
}

impl IntervalArith for StaticArith<'_> {
    type F = f64;
    type B = bool;
    fn constant(&mut self, x: f64) -> f64 {
        x
    }
    fn boolean(&mut self, b: bool) -> bool {
        b
    }
    fn add(&mut self, a: &f64, b: &f64) -> f64 {
        a + b
    }
    fn sub(&mut self, a: &f64, b: &f64) -> f64 {
        a - b
    }
    fn mul(&mut self, a: &f64, b: &f64) -> f64 {
        a * b
    }
    fn div(&mut self, a: &f64, b: &f64) -> f64 {
        a / b
    }
    fn min(&mut self, a: &f64, b: &f64) -> f64 {
        a.min(*b)
    }
    fn max(&mut self, a: &f64, b: &f64) -> f64 {
        a.max(*b)
    }
    fn lt(&mut self, a: &f64, b: &f64) -> bool {
        a < b
    }
    fn le(&mut self, a: &f64, b: &f64) -> bool {
        a <= b
    }
    fn eq(&mut self, a: &f64, b: &f64) -> bool {
        a == b
    }
    fn and(&mut self, a: &bool, b: &bool) -> bool {
        *a && *b
    }
    fn or(&mut self, a: &bool, b: &bool) -> bool {
        *a || *b
    }
    fn not(&mut self, a: &bool) -> bool {
        !a
    }
    fn select(&mut self, c: &bool, a: &f64, b: &f64) -> f64 {
        if *c { *a } else { *b }
    }
    fn select_b(&mut self, c: &bool, a: &bool, b: &bool) -> bool {
        if *c { *a } else { *b }
    }
    fn is_nan(&mut self, a: &f64) -> bool {
        a.is_nan()
    }
    fn increasing(&mut self, f: Builtin, a: &f64) -> f64 {
        f.apply_scalar(*a).unwrap_or(f64::NAN)
    }
    fn index(&mut self, fi: FrameIndex) -> Option<(f64, f64)> {
        self.tile.ranges.get(&fi).map(|r| (r.lo, r.hi))
    }
    fn dim(&mut self, d: &str) -> Option<f64> {
        self.dims.get(d).map(|v| *v as f64)
    }
    fn leaf(&mut self, _: ValueRef) -> Option<Interval<f64, bool>> {
        None
    }
}

/// The mask of a parallel kernel as one tree: its maps (the `let`s and functions it was written
/// with) are inlined, so interval evaluation sees through them; loads and other data stay
/// leaves.
pub fn mask_tree(graph: &Graph, mask: NodeIndex) -> Tree {
    let inline = |v: ValueRef| matches!(graph.node(v.node).op, Op::Map { .. });
    Tree::of_map(
        graph,
        ValueRef {
            node: mask,
            result: 0,
        },
        &inline,
    )
}

/// Evaluates a mask tree over a box.
pub fn tree_coverage(
    graph: &Graph,
    mask: &Tree,
    dims: &BTreeMap<String, i64>,
    tile: &TileBox,
) -> Coverage {
    let mut a = StaticArith { dims, tile };
    match eval_mask(&mut a, graph, mask) {
        (false, _) => Coverage::Empty,
        (true, false) => Coverage::Full,
        _ => Coverage::Partial,
    }
}

/// The coverage of each key tile (`key_tile` keys each, `keys` in all) for the query rows
/// `rows` of slice (b, h): what a work item visits, and what the tiling cost model counts.
#[allow(clippy::too_many_arguments)]
pub fn key_tile_coverage(
    graph: &Graph,
    mask: &Tree,
    dims: &BTreeMap<String, i64>,
    (b, h): (usize, usize),
    rows: std::ops::Range<usize>,
    key_tile: usize,
    keys: usize,
) -> Vec<Coverage> {
    let span = |lo: usize, hi: usize| Span1 {
        lo: lo as f64,
        hi: hi as f64,
    };
    let mut tile = TileBox {
        ranges: BTreeMap::new(),
    };
    tile.ranges.insert(FrameIndex::B, span(b, b));
    tile.ranges.insert(FrameIndex::H, span(h, h));
    tile.ranges
        .insert(FrameIndex::I, span(rows.start, rows.end - 1));
    (0..keys.div_ceil(key_tile))
        .map(|k| {
            let j0 = k * key_tile;
            tile.ranges
                .insert(FrameIndex::J, span(j0, (j0 + key_tile).min(keys) - 1));
            tree_coverage(graph, mask, dims, &tile)
        })
        .collect()
}

/// Evaluates a mask given as an expression arena (operands are data: unknown) over a box.
pub fn coverage(
    mask: &ExprArena,
    root: ExprId,
    dims: &BTreeMap<String, i64>,
    tile: &TileBox,
) -> Coverage {
    let graph = Graph::new(String::new());
    let tree = arena_tree(mask, root);
    tree_coverage(&graph, &tree, dims, tile)
}

/// An arena's expression as a tree whose operands are opaque leaves.
fn arena_tree(a: &ExprArena, id: ExprId) -> Tree {
    let sub = |id: ExprId| Box::new(arena_tree(a, id));
    match a.node(id) {
        ExprNode::Operand(k) => Tree::Value(ValueRef {
            node: NodeIndex::new(*k as usize),
            result: u32::MAX,
        }),
        ExprNode::Index(fi) => Tree::Index(*fi),
        ExprNode::Dim(d) => Tree::Dim(d.clone()),
        ExprNode::Int(v) => Tree::Int(*v),
        ExprNode::Float(v) => Tree::Float(*v),
        ExprNode::State(..) => Tree::Float(f64::NAN),
        ExprNode::Unary(op, x) => Tree::Unary(*op, sub(*x)),
        ExprNode::Binary(op, x, y) => Tree::Binary(*op, sub(*x), sub(*y)),
        ExprNode::Call(f, args) => Tree::Call(*f, args.iter().map(|x| *sub(*x)).collect()),
        ExprNode::Extract(v, k) => Tree::Extract(sub(*v), sub(*k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attnc_ir::expr::ExprType;
    use attnc_ir::types::Feature;
    use attnc_source::{FileId, Sources, Span};

    fn span() -> (Span, FileId) {
        let mut s = Sources::new();
        let f = s.add("t", "x");
        (Span::new(f, 0, 1), f)
    }

    fn leaf(a: &mut ExprArena, n: ExprNode, kind: ScalarKind) -> ExprId {
        let (sp, _) = span();
        a.push(
            n,
            ExprType {
                kind,
                feature: Feature::Scalar,
            },
            sp,
        )
    }

    fn bin(a: &mut ExprArena, op: BinaryOp, x: ExprId, y: ExprId, kind: ScalarKind) -> ExprId {
        leaf(a, ExprNode::Binary(op, x, y), kind)
    }

    fn boxed(i: (f64, f64), j: (f64, f64)) -> TileBox {
        let mut ranges = BTreeMap::new();
        ranges.insert(FrameIndex::I, Span1 { lo: i.0, hi: i.1 });
        ranges.insert(FrameIndex::J, Span1 { lo: j.0, hi: j.1 });
        TileBox { ranges }
    }

    /// `j <= i`
    fn causal() -> (ExprArena, ExprId) {
        let mut a = ExprArena::default();
        let j = leaf(&mut a, ExprNode::Index(FrameIndex::J), ScalarKind::Int);
        let i = leaf(&mut a, ExprNode::Index(FrameIndex::I), ScalarKind::Int);
        let r = bin(&mut a, BinaryOp::Le, j, i, ScalarKind::Bool);
        (a, r)
    }

    #[test]
    fn causal_tiles_above_the_diagonal_are_empty_below_full() {
        let (a, r) = causal();
        let dims = BTreeMap::new();
        assert_eq!(
            coverage(&a, r, &dims, &boxed((0.0, 63.0), (64.0, 127.0))),
            Coverage::Empty
        );
        assert_eq!(
            coverage(&a, r, &dims, &boxed((64.0, 127.0), (0.0, 63.0))),
            Coverage::Full
        );
        assert_eq!(
            coverage(&a, r, &dims, &boxed((0.0, 63.0), (0.0, 63.0))),
            Coverage::Partial
        );
    }

    /// `j <= i && i - j < W`
    #[test]
    fn a_sliding_window_keeps_only_the_band() {
        let (mut a, c) = causal();
        let i = leaf(&mut a, ExprNode::Index(FrameIndex::I), ScalarKind::Int);
        let j = leaf(&mut a, ExprNode::Index(FrameIndex::J), ScalarKind::Int);
        let w = leaf(&mut a, ExprNode::Dim("W".into()), ScalarKind::Int);
        let d = bin(&mut a, BinaryOp::Sub, i, j, ScalarKind::Int);
        let near = bin(&mut a, BinaryOp::Lt, d, w, ScalarKind::Bool);
        let r = bin(&mut a, BinaryOp::And, c, near, ScalarKind::Bool);
        let dims: BTreeMap<String, i64> = [("W".to_string(), 100)].into();
        // Far below the diagonal: outside the window.
        assert_eq!(
            coverage(&a, r, &dims, &boxed((512.0, 575.0), (0.0, 63.0))),
            Coverage::Empty
        );
        // Below the diagonal: i - j spans 1..127, across the window's edge.
        assert_eq!(
            coverage(&a, r, &dims, &boxed((64.0, 127.0), (0.0, 63.0))),
            Coverage::Partial
        );
        // Within the window on the whole box.
        assert_eq!(
            coverage(&a, r, &dims, &boxed((70.0, 71.0), (10.0, 20.0))),
            Coverage::Full
        );
    }

    #[test]
    fn data_in_the_mask_is_never_assumed() {
        let mut a = ExprArena::default();
        let x = leaf(&mut a, ExprNode::Operand(0), ScalarKind::Int);
        let z = leaf(&mut a, ExprNode::Int(0), ScalarKind::Int);
        let r = bin(&mut a, BinaryOp::Ne, x, z, ScalarKind::Bool);
        assert_eq!(
            coverage(&a, r, &BTreeMap::new(), &boxed((0.0, 3.0), (0.0, 3.0))),
            Coverage::Partial
        );
    }

    #[test]
    fn floor_division_of_indices_narrows_to_blocks() {
        // i // 64 == j // 64: diagonal blocks only.
        let mut a = ExprArena::default();
        let i = leaf(&mut a, ExprNode::Index(FrameIndex::I), ScalarKind::Int);
        let j = leaf(&mut a, ExprNode::Index(FrameIndex::J), ScalarKind::Int);
        let k = leaf(&mut a, ExprNode::Int(64), ScalarKind::Int);
        let bi = bin(&mut a, BinaryOp::FloorDiv, i, k, ScalarKind::Int);
        let bj = bin(&mut a, BinaryOp::FloorDiv, j, k, ScalarKind::Int);
        let r = bin(&mut a, BinaryOp::Eq, bi, bj, ScalarKind::Bool);
        let dims = BTreeMap::new();
        assert_eq!(
            coverage(&a, r, &dims, &boxed((0.0, 63.0), (64.0, 127.0))),
            Coverage::Empty
        );
        assert_eq!(
            coverage(&a, r, &dims, &boxed((64.0, 127.0), (64.0, 127.0))),
            Coverage::Full
        );
    }
}
