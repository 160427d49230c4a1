//! The mask's tile rule as code: the same interval rules the compiler uses
//! (`attnc_passes::fusion::tile_rule`), evaluated by the kernel on the box of the tile it is
//! about to visit, so a compiled kernel needs no coverage table from its host and can use values
//! known only when it runs (a per-head length, say).

use crate::emit::{Cmp, Emitter};
use crate::math::MathHooks;
use crate::types::{Ty, Val};
use attnc_ir::expr::Builtin;
use attnc_ir::graph::{Graph, ValueRef};
use attnc_ir::types::FrameIndex;
use attnc_passes::fusion::tile_rule::{Interval, IntervalArith, eval_mask};
use attnc_passes::fusion::tree::Tree;
use std::collections::BTreeMap;

/// What the kernel knows about the box: each frame index's range and the dims as f32, and the
/// exact values of leaves it has already computed.
pub struct KernelBox<'a> {
    pub e: &'a mut Emitter,
    pub math: &'a dyn MathHooks,
    pub ranges: BTreeMap<FrameIndex, (Val, Val)>,
    pub dims: BTreeMap<String, Val>,
    pub known: BTreeMap<ValueRef, Val>,
}

impl IntervalArith for KernelBox<'_> {
    type F = Val;
    type B = Val;
    fn constant(&mut self, x: f64) -> Val {
        self.e.f32(x)
    }
    fn boolean(&mut self, b: bool) -> Val {
        self.e.bool(b)
    }
    fn add(&mut self, a: &Val, b: &Val) -> Val {
        self.e.add(a, b)
    }
    fn sub(&mut self, a: &Val, b: &Val) -> Val {
        self.e.sub(a, b)
    }
    fn mul(&mut self, a: &Val, b: &Val) -> Val {
        self.e.mul(a, b)
    }
    fn div(&mut self, a: &Val, b: &Val) -> Val {
        self.e.div(a, b)
    }
    fn min(&mut self, a: &Val, b: &Val) -> Val {
        self.math.min_num(self.e, a, b)
    }
    fn max(&mut self, a: &Val, b: &Val) -> Val {
        self.math.max_num(self.e, a, b)
    }
    fn lt(&mut self, a: &Val, b: &Val) -> Val {
        self.e.cmp(Cmp::Lt, a, b)
    }
    fn le(&mut self, a: &Val, b: &Val) -> Val {
        self.e.cmp(Cmp::Le, a, b)
    }
    fn eq(&mut self, a: &Val, b: &Val) -> Val {
        self.e.cmp(Cmp::Eq, a, b)
    }
    fn and(&mut self, a: &Val, b: &Val) -> Val {
        self.e.and(a, b)
    }
    fn or(&mut self, a: &Val, b: &Val) -> Val {
        self.e.or(a, b)
    }
    fn not(&mut self, a: &Val) -> Val {
        self.e.not(a)
    }
    fn select(&mut self, c: &Val, a: &Val, b: &Val) -> Val {
        self.e.select(c, a, b)
    }
    fn select_b(&mut self, c: &Val, a: &Val, b: &Val) -> Val {
        self.e.select(c, a, b)
    }
    fn is_nan(&mut self, a: &Val) -> Val {
        // NaN is the only value unequal to itself.
        self.e.cmp(Cmp::Ne, a, a)
    }
    fn increasing(&mut self, f: Builtin, a: &Val) -> Val {
        let (e, m) = (&mut *self.e, self.math);
        match f {
            Builtin::Floor => m.floor(e, a),
            Builtin::Ceil => m.ceil(e, a),
            Builtin::Exp => m.exp(e, a),
            Builtin::Tanh => m.tanh(e, a),
            Builtin::Relu => {
                let zero = e.f32(0.0);
                m.max_num(e, a, &zero)
            }
            Builtin::Sigmoid => {
                let n = e.neg(a);
                let ex = m.exp(e, &n);
                let one = e.f32(1.0);
                let d = e.add(&one, &ex);
                e.div(&one, &d)
            }
            // Not reached: the rules call this only for the functions above.
            _ => a.clone(),
        }
    }
    fn index(&mut self, fi: FrameIndex) -> Option<(Val, Val)> {
        self.ranges.get(&fi).cloned()
    }
    fn dim(&mut self, d: &str) -> Option<Val> {
        self.dims.get(d).cloned()
    }
    fn leaf(&mut self, v: ValueRef) -> Option<Interval<Val, Val>> {
        let x = self.known.get(&v)?.clone();
        Some(if x.ty == Ty::I1 {
            let not = self.e.not(&x);
            Interval::Truth {
                may_true: x,
                may_false: not,
            }
        } else {
            let f = self.e.cast(&x, &Ty::F32);
            Interval::Num(f.clone(), f)
        })
    }
}

/// The coverage code of the box (i32: 0 skip, 1 mask per element, 2 fully kept).
pub fn coverage_code(b: &mut KernelBox<'_>, graph: &Graph, mask: &Tree) -> Val {
    let (may_true, may_false) = eval_mask(b, graph, mask);
    let e = &mut *b.e;
    let zero = e.i32(0);
    let one = e.i32(1);
    let two = e.i32(2);
    let kept = e.select(&may_false, &one, &two);
    e.select(&may_true, &kept, &zero)
}
