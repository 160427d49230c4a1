//! The mask's tile rule in the shader: the interval rules of `attnc_passes::fusion::tile_rule`,
//! evaluated by the kernel on the box of the key tile it is about to visit, so it skips tiles
//! the mask empties and drops the per-pair mask where a tile is fully kept, with values known
//! only at run time (a per-batch length, say).

use crate::error::{Result, SpirvError};
use crate::shader::{Cmp, Shader, Ty, Val, glsl};
use attnc_ir::expr::Builtin;
use attnc_ir::graph::{Graph, ValueRef};
use attnc_ir::types::FrameIndex;
use attnc_passes::fusion::tile_rule::{Interval, IntervalArith, eval_mask};
use attnc_passes::fusion::tree::Tree;
use std::collections::BTreeMap;

/// What the kernel knows about the box: each frame index's range and the dims (as f32), and
/// the exact values of per-head leaves. The arithmetic trait cannot fail, so the first
/// builder error is kept and returned by [`coverage_code`].
pub(crate) struct KernelBox<'a> {
    pub s: &'a mut Shader,
    pub ranges: BTreeMap<FrameIndex, (Val, Val)>,
    pub dims: BTreeMap<String, Val>,
    pub known: BTreeMap<ValueRef, Val>,
    error: Option<SpirvError>,
}

impl<'a> KernelBox<'a> {
    pub fn new(s: &'a mut Shader) -> Self {
        KernelBox {
            s,
            ranges: BTreeMap::new(),
            dims: BTreeMap::new(),
            known: BTreeMap::new(),
            error: None,
        }
    }

    /// The value of `r`, or a placeholder after remembering the first error.
    fn keep(&mut self, r: Result<Val>) -> Val {
        match r {
            Ok(v) => v,
            Err(e) => {
                self.error.get_or_insert(e);
                Val { id: 0, ty: Ty::F32 }
            }
        }
    }

    fn f(&mut self, inst: u32, a: &Val) -> Val {
        let r = self.s.ext(Ty::F32, inst, &[*a]);
        self.keep(r)
    }
}

impl IntervalArith for KernelBox<'_> {
    type F = Val;
    type B = Val;
    fn constant(&mut self, x: f64) -> Val {
        self.s.f32(x)
    }
    fn boolean(&mut self, b: bool) -> Val {
        self.s.bool(b)
    }
    fn add(&mut self, a: &Val, b: &Val) -> Val {
        let r = self.s.add(*a, *b);
        self.keep(r)
    }
    fn sub(&mut self, a: &Val, b: &Val) -> Val {
        let r = self.s.sub(*a, *b);
        self.keep(r)
    }
    fn mul(&mut self, a: &Val, b: &Val) -> Val {
        let r = self.s.mul(*a, *b);
        self.keep(r)
    }
    fn div(&mut self, a: &Val, b: &Val) -> Val {
        let r = self.s.fdiv(*a, *b);
        self.keep(r)
    }
    fn min(&mut self, a: &Val, b: &Val) -> Val {
        let r = self.s.ext(Ty::F32, glsl::NMIN, &[*a, *b]);
        self.keep(r)
    }
    fn max(&mut self, a: &Val, b: &Val) -> Val {
        let r = self.s.ext(Ty::F32, glsl::NMAX, &[*a, *b]);
        self.keep(r)
    }
    fn lt(&mut self, a: &Val, b: &Val) -> Val {
        let r = self.s.cmp(Cmp::Lt, *a, *b);
        self.keep(r)
    }
    fn le(&mut self, a: &Val, b: &Val) -> Val {
        let r = self.s.cmp(Cmp::Le, *a, *b);
        self.keep(r)
    }
    fn eq(&mut self, a: &Val, b: &Val) -> Val {
        let r = self.s.cmp(Cmp::Eq, *a, *b);
        self.keep(r)
    }
    fn and(&mut self, a: &Val, b: &Val) -> Val {
        let r = self.s.and(*a, *b);
        self.keep(r)
    }
    fn or(&mut self, a: &Val, b: &Val) -> Val {
        let r = self.s.or(*a, *b);
        self.keep(r)
    }
    fn not(&mut self, a: &Val) -> Val {
        let r = self.s.not(*a);
        self.keep(r)
    }
    fn select(&mut self, c: &Val, a: &Val, b: &Val) -> Val {
        let r = self.s.select(*c, *a, *b);
        self.keep(r)
    }
    fn select_b(&mut self, c: &Val, a: &Val, b: &Val) -> Val {
        let r = self.s.select(*c, *a, *b);
        self.keep(r)
    }
    fn is_nan(&mut self, a: &Val) -> Val {
        let r = self.s.is_nan(*a);
        self.keep(r)
    }
    fn increasing(&mut self, f: Builtin, a: &Val) -> Val {
        match f {
            Builtin::Floor => self.f(glsl::FLOOR, a),
            Builtin::Ceil => self.f(glsl::CEIL, a),
            Builtin::Exp => self.f(glsl::EXP, a),
            Builtin::Tanh | Builtin::Sigmoid | Builtin::Relu => {
                let tree_free = crate::expr::monotone(self.s, f, *a);
                self.keep(tree_free)
            }
            // Not reached: the rules call this only for the functions above.
            _ => *a,
        }
    }
    fn index(&mut self, fi: FrameIndex) -> Option<(Val, Val)> {
        self.ranges.get(&fi).copied()
    }
    fn dim(&mut self, d: &str) -> Option<Val> {
        self.dims.get(d).copied()
    }
    fn leaf(&mut self, v: ValueRef) -> Option<Interval<Val, Val>> {
        let x = *self.known.get(&v)?;
        Some(if x.ty == Ty::Bool {
            let not = self.not(&x);
            Interval::Truth {
                may_true: x,
                may_false: not,
            }
        } else {
            let r = self.s.float(x);
            let f = self.keep(r);
            Interval::Num(f, f)
        })
    }
}

/// The coverage code of the box (i32: 0 skip, 1 mask per element, 2 fully kept).
pub(crate) fn coverage_code(mut b: KernelBox<'_>, graph: &Graph, mask: &Tree) -> Result<Val> {
    let (may_true, may_false) = eval_mask(&mut b, graph, mask);
    if let Some(e) = b.error {
        return Err(e);
    }
    let s = b.s;
    let (zero, one, two) = (s.i32(0), s.i32(1), s.i32(2));
    let kept = s.select(may_false, one, two)?;
    s.select(may_true, kept, zero)
}
