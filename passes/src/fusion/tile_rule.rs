//! Which (query tile × key tile) boxes a mask empties, by interval arithmetic on the mask
//! expression: a box where the mask is false everywhere is skipped, one where it is true
//! everywhere needs no per-element mask. This is derived from any mask, not from a list of
//! known patterns: causal masking skips the tiles above the diagonal, a sliding window all
//! tiles outside the band, a block layout nothing (its data is unknown before a call).

use attnc_ir::expr::{Builtin, ExprArena, ExprId, ExprNode};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::{FrameIndex, ScalarKind};
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

#[derive(Clone, Copy, Debug, PartialEq)]
enum Interval {
    Num(f64, f64),
    Truth(Option<bool>),
}

const ANY: Interval = Interval::Num(f64::NEG_INFINITY, f64::INFINITY);

/// Evaluates the mask over the box.
pub fn coverage(
    mask: &ExprArena,
    root: ExprId,
    dims: &BTreeMap<String, i64>,
    tile: &TileBox,
) -> Coverage {
    match eval(mask, root, dims, tile) {
        Interval::Truth(Some(false)) => Coverage::Empty,
        Interval::Truth(Some(true)) => Coverage::Full,
        _ => Coverage::Partial,
    }
}

/// The coverage of each key tile (`key_tile` keys each, `keys` in all) for the query rows
/// `rows` of slice (b, h): what a work item visits, and what the tiling cost model counts.
#[allow(clippy::too_many_arguments)]
pub fn key_tile_coverage(
    mask: &ExprArena,
    root: ExprId,
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
            coverage(mask, root, dims, &tile)
        })
        .collect()
}

fn num(lo: f64, hi: f64) -> Interval {
    if lo.is_nan() || hi.is_nan() {
        ANY
    } else {
        Interval::Num(lo, hi)
    }
}

fn eval(a: &ExprArena, id: ExprId, dims: &BTreeMap<String, i64>, tile: &TileBox) -> Interval {
    let sub = |id: ExprId| eval(a, id, dims, tile);
    let unknown = || match a.ty(id).kind {
        ScalarKind::Bool => Interval::Truth(None),
        _ => ANY,
    };
    match a.node(id) {
        ExprNode::Index(fi) => match tile.ranges.get(fi) {
            Some(r) => num(r.lo, r.hi),
            None => ANY,
        },
        ExprNode::Dim(d) => match dims.get(d) {
            Some(v) => num(*v as f64, *v as f64),
            None => ANY,
        },
        ExprNode::Int(v) => num(*v as f64, *v as f64),
        ExprNode::Float(v) => num(*v, *v),
        ExprNode::Unary(UnaryOp::Neg, x) => match sub(*x) {
            Interval::Num(lo, hi) => num(-hi, -lo),
            _ => ANY,
        },
        ExprNode::Unary(UnaryOp::Not, x) => match sub(*x) {
            Interval::Truth(t) => Interval::Truth(t.map(|t| !t)),
            _ => Interval::Truth(None),
        },
        ExprNode::Binary(op, x, y) => binary(*op, sub(*x), sub(*y)),
        ExprNode::Call(f, args) => {
            let vals: Vec<Interval> = args.iter().map(|x| sub(*x)).collect();
            call(*f, &vals).unwrap_or_else(unknown)
        }
        // Data read from inputs, states, vector elements: nothing is known before a call.
        ExprNode::Operand(_) | ExprNode::State(..) | ExprNode::Extract(..) => unknown(),
    }
}

fn binary(op: BinaryOp, x: Interval, y: Interval) -> Interval {
    use Interval::{Num, Truth};
    match (op, x, y) {
        (BinaryOp::And, Truth(a), Truth(b)) => Truth(match (a, b) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        }),
        (BinaryOp::Or, Truth(a), Truth(b)) => Truth(match (a, b) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        }),
        (BinaryOp::Add, Num(a, b), Num(c, d)) => num(a + c, b + d),
        (BinaryOp::Sub, Num(a, b), Num(c, d)) => num(a - d, b - c),
        (BinaryOp::Mul | BinaryOp::MatMul, Num(a, b), Num(c, d)) => {
            let p = [a * c, a * d, b * c, b * d];
            num(
                p.iter().copied().fold(f64::INFINITY, f64::min),
                p.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            )
        }
        (BinaryOp::FloorDiv | BinaryOp::Div, Num(a, b), Num(c, d)) if c > 0.0 || d < 0.0 => {
            let q = [a / c, a / d, b / c, b / d];
            let (lo, hi) = (
                q.iter().copied().fold(f64::INFINITY, f64::min),
                q.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            );
            if op == BinaryOp::FloorDiv {
                num(lo.floor(), hi.floor())
            } else {
                num(lo, hi)
            }
        }
        (BinaryOp::Rem, Num(..), Num(c, d)) if c == d && c > 0.0 => num(0.0, c - 1.0),
        (BinaryOp::Lt, Num(a, b), Num(c, d)) => compare(b < c, a >= d),
        (BinaryOp::Le, Num(a, b), Num(c, d)) => compare(b <= c, a > d),
        (BinaryOp::Gt, Num(a, b), Num(c, d)) => compare(a > d, b <= c),
        (BinaryOp::Ge, Num(a, b), Num(c, d)) => compare(a >= d, b < c),
        (BinaryOp::Eq, Num(a, b), Num(c, d)) => compare(a == b && c == d && a == c, b < c || d < a),
        (BinaryOp::Ne, Num(a, b), Num(c, d)) => compare(b < c || d < a, a == b && c == d && a == c),
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
        ) => Truth(None),
        _ => ANY,
    }
}

fn compare(surely: bool, never: bool) -> Interval {
    Interval::Truth(if surely {
        Some(true)
    } else if never {
        Some(false)
    } else {
        None
    })
}

/// Functions whose range over an interval is known; `None` for the others.
fn call(f: Builtin, a: &[Interval]) -> Option<Interval> {
    use Interval::{Num, Truth};
    Some(match (f, a) {
        (Builtin::Min, [Num(a, b), Num(c, d)]) => num(a.min(*c), b.min(*d)),
        (Builtin::Max, [Num(a, b), Num(c, d)]) => num(a.max(*c), b.max(*d)),
        (Builtin::Abs, [Num(a, b)]) => {
            if *a >= 0.0 {
                num(*a, *b)
            } else if *b <= 0.0 {
                num(-b, -a)
            } else {
                num(0.0, a.abs().max(b.abs()))
            }
        }
        (Builtin::Floor | Builtin::ToInt, [Num(a, b)]) => num(a.floor(), b.floor()),
        (Builtin::Ceil, [Num(a, b)]) => num(a.ceil(), b.ceil()),
        (Builtin::ToFloat, [x]) => *x,
        (Builtin::Select, [Truth(Some(true)), x, _]) => *x,
        (Builtin::Select, [Truth(Some(false)), _, y]) => *y,
        (Builtin::Select, [Truth(None), Num(a, b), Num(c, d)]) => num(a.min(*c), b.max(*d)),
        (Builtin::Select, [Truth(None), Truth(x), Truth(y)]) => {
            Truth(if x == y { *x } else { None })
        }
        // Increasing functions map the ends to the ends.
        (Builtin::Exp | Builtin::Tanh | Builtin::Sigmoid | Builtin::Relu, [Num(a, b)]) => {
            let g = |x: f64| f.apply_scalar(x).unwrap_or(f64::NAN);
            num(g(*a), g(*b))
        }
        _ => return None,
    })
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
