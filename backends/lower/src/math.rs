//! Math functions as target hooks. The expression lowering asks for `exp`, `tanh`, … through
//! [`MathHooks`]; the defaults write MLIR's `math` dialect (which the CPU pipeline lowers to
//! intrinsics and libm), and a target overrides what it computes better itself (the CPU's
//! vectorisable `exp` polynomial, a GPU's `ex2.approx` instruction).

use crate::emit::{Cmp, Emitter};
use crate::types::{Ty, Val};

/// The primitive float functions an expression may need, on `f32` values.
pub trait MathHooks {
    fn exp(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("exp", x)
    }
    /// `2^x`: what online weights are computed with (the `log2(e)` factor folded into the
    /// exponent's multiply).
    fn exp2(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("exp2", x)
    }
    fn log(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("log", x)
    }
    fn log2(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("log2", x)
    }
    fn log1p(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("log1p", x)
    }
    fn expm1(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("expm1", x)
    }
    fn tanh(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("tanh", x)
    }
    fn sqrt(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("sqrt", x)
    }
    fn rsqrt(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("rsqrt", x)
    }
    fn sin(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("sin", x)
    }
    fn cos(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("cos", x)
    }
    fn floor(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("floor", x)
    }
    fn ceil(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("ceil", x)
    }
    fn abs(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("absf", x)
    }
    fn erf(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("erf", x)
    }
    fn pow(&self, e: &mut Emitter, x: &Val, y: &Val) -> Val {
        e.op(Ty::F32, &format!("math.powf {x}, {y} : f32"))
    }
    fn fma(&self, e: &mut Emitter, a: &Val, b: &Val, c: &Val) -> Val {
        e.fma(a, b, c)
    }
    /// `min`/`max` that ignore a NaN operand, as the reference's `f64::min` does.
    fn min_num(&self, e: &mut Emitter, a: &Val, b: &Val) -> Val {
        e.op(Ty::F32, &format!("arith.minnumf {a}, {b} : f32"))
    }
    fn max_num(&self, e: &mut Emitter, a: &Val, b: &Val) -> Val {
        e.op(Ty::F32, &format!("arith.maxnumf {a}, {b} : f32"))
    }
}

/// `op $0, $1, $2` of two f32 values, as inline PTX.
fn asm2(e: &mut Emitter, instruction: &str, a: &Val, b: &Val) -> Val {
    e.op(
        Ty::F32,
        &format!(
            "llvm.inline_asm \"{instruction} $0, $1, $2;\", \"=f,f,f\" {a}, {b} : (f32, f32) -> f32"
        ),
    )
}

/// MLIR's `math` dialect for everything.
pub struct DefaultMath;

impl MathHooks for DefaultMath {}

/// NVIDIA GPUs: PTX instructions written inline (MLIR's NVVM lowering would turn `math` ops and
/// most LLVM float intrinsics into libdevice calls, which nothing links). Each stays within a
/// few ulp of f32 (`ex2.approx`: 2 ulp; `lg2.approx` about 2^-22 absolute error;
/// `rsqrt.approx` 2^-23 relative); `tanh` and the trigonometric functions are computed from
/// them to keep the f32 accuracy the approximate SFU forms lack.
pub struct PtxMath;

impl PtxMath {
    fn asm(e: &mut Emitter, instruction: &str, x: &Val) -> Val {
        e.op(
            Ty::F32,
            &format!("llvm.inline_asm \"{instruction} $0, $1;\", \"=f,f\" {x} : (f32) -> f32"),
        )
    }
}

impl MathHooks for PtxMath {
    fn exp(&self, e: &mut Emitter, x: &Val) -> Val {
        let log2e = e.f32(std::f64::consts::LOG2_E);
        let y = e.mul(x, &log2e);
        self.exp2(e, &y)
    }
    fn exp2(&self, e: &mut Emitter, x: &Val) -> Val {
        Self::asm(e, "ex2.approx.ftz.f32", x)
    }
    fn log2(&self, e: &mut Emitter, x: &Val) -> Val {
        Self::asm(e, "lg2.approx.ftz.f32", x)
    }
    fn log(&self, e: &mut Emitter, x: &Val) -> Val {
        let l = self.log2(e, x);
        let ln2 = e.f32(std::f64::consts::LN_2);
        e.mul(&l, &ln2)
    }
    fn log1p(&self, e: &mut Emitter, x: &Val) -> Val {
        // log1p(x) = log(u) * x / (u - 1) with u = 1 + x (exact where u rounds to 1).
        let one = e.f32(1.0);
        let u = e.add(&one, x);
        let d = e.sub(&u, &one);
        let l = self.log(e, &u);
        let q = e.div(x, &d);
        let r = e.mul(&l, &q);
        let zero = e_zero(e);
        let tiny = e.cmp(Cmp::Eq, &d, &zero);
        e.select(&tiny, x, &r)
    }
    fn expm1(&self, e: &mut Emitter, x: &Val) -> Val {
        // expm1(x) = (u - 1) * x / log(u) with u = exp(x) (Kahan), x itself near 0.
        let one = e.f32(1.0);
        let u = self.exp(e, x);
        let um1 = e.sub(&u, &one);
        let l = self.log(e, &u);
        let q = e.div(x, &l);
        let r = e.mul(&um1, &q);
        let exact = e.cmp(Cmp::Eq, &u, &one);
        let big = e.f32(80.0);
        let large = e.cmp(Cmp::Gt, x, &big);
        let r = e.select(&large, &um1, &r);
        e.select(&exact, x, &r)
    }
    fn tanh(&self, e: &mut Emitter, x: &Val) -> Val {
        // tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1)), and x itself where |x| < 2^-10.
        let a = self.abs(e, x);
        let two = e.f32(2.0);
        let one = e.f32(1.0);
        let a2 = e.mul(&a, &two);
        let ex = self.exp(e, &a2);
        let d = e.add(&ex, &one);
        let q = e.div(&two, &d);
        let t = e.sub(&one, &q);
        let zero = e_zero(e);
        let neg = e.cmp(Cmp::Lt, x, &zero);
        let nt = e.neg(&t);
        let s = e.select(&neg, &nt, &t);
        let small = e.f32(1.0 / 1024.0);
        let is_small = e.cmp(Cmp::Lt, &a, &small);
        e.select(&is_small, x, &s)
    }
    fn sqrt(&self, e: &mut Emitter, x: &Val) -> Val {
        Self::asm(e, "sqrt.rn.f32", x)
    }
    fn rsqrt(&self, e: &mut Emitter, x: &Val) -> Val {
        Self::asm(e, "rsqrt.approx.ftz.f32", x)
    }
    fn sin(&self, e: &mut Emitter, x: &Val) -> Val {
        let r = reduce_to_pi(e, x, self);
        Self::asm(e, "sin.approx.ftz.f32", &r)
    }
    fn cos(&self, e: &mut Emitter, x: &Val) -> Val {
        let r = reduce_to_pi(e, x, self);
        Self::asm(e, "cos.approx.ftz.f32", &r)
    }
    fn floor(&self, e: &mut Emitter, x: &Val) -> Val {
        Self::asm(e, "cvt.rmi.f32.f32", x)
    }
    fn ceil(&self, e: &mut Emitter, x: &Val) -> Val {
        Self::asm(e, "cvt.rpi.f32.f32", x)
    }
    fn abs(&self, e: &mut Emitter, x: &Val) -> Val {
        Self::asm(e, "abs.f32", x)
    }
    fn erf(&self, e: &mut Emitter, x: &Val) -> Val {
        // Abramowitz and Stegun 7.1.26 refined to |error| < 1.2e-7: erf(x) = sign(x) (1 - t
        // poly(t) exp(-x^2)) with t = 1 / (1 + p |x|).
        let a = self.abs(e, x);
        let p = e.f32(0.327_591_1);
        let one = e.f32(1.0);
        let pa = e.mul(&p, &a);
        let d = e.add(&one, &pa);
        let t = e.div(&one, &d);
        let mut poly = e.f32(1.061_405_429);
        for c in [-1.453_152_027, 1.421_413_741, -0.284_496_736, 0.254_829_592] {
            let m = e.mul(&poly, &t);
            let k = e.f32(c);
            poly = e.add(&m, &k);
        }
        let pt = e.mul(&poly, &t);
        let x2 = e.mul(&a, &a);
        let nx2 = e.neg(&x2);
        let ex = self.exp(e, &nx2);
        let tail = e.mul(&pt, &ex);
        let r = e.sub(&one, &tail);
        let zero = e_zero(e);
        let neg = e.cmp(Cmp::Lt, x, &zero);
        let nr = e.neg(&r);
        e.select(&neg, &nr, &r)
    }
    fn pow(&self, e: &mut Emitter, x: &Val, y: &Val) -> Val {
        // x^y = 2^(y log2 |x|), negated for a negative x and an odd integer y; NaN for a
        // negative x and a fractional y; 1 for y = 0 (as powf).
        let a = self.abs(e, x);
        let l = self.log2(e, &a);
        let yl = e.mul(y, &l);
        let m = self.exp2(e, &yl);
        let fy = self.floor(e, y);
        let integral = e.cmp(Cmp::Eq, &fy, y);
        let half = e.f32(0.5);
        let hy = e.mul(y, &half);
        let fh = self.floor(e, &hy);
        let even = e.cmp(Cmp::Eq, &fh, &hy);
        let zero = e_zero(e);
        let negative = e.cmp(Cmp::Lt, x, &zero);
        let nm = e.neg(&m);
        let odd = e.not(&even);
        let flip = e.and(&negative, &odd);
        let signed = e.select(&flip, &nm, &m);
        let nan = e.f32(f64::NAN);
        let bad = e.not(&integral);
        let bad = e.and(&negative, &bad);
        let r = e.select(&bad, &nan, &signed);
        let one = e.f32(1.0);
        let y0 = e.cmp(Cmp::Eq, y, &zero);
        e.select(&y0, &one, &r)
    }
    fn fma(&self, e: &mut Emitter, a: &Val, b: &Val, c: &Val) -> Val {
        e.op(
            Ty::F32,
            &format!("llvm.intr.fma({a}, {b}, {c}) : (f32, f32, f32) -> f32"),
        )
    }
    // PTX `min.f32`/`max.f32` return the other operand when one is NaN (IEEE minNum/maxNum);
    // MLIR would make `arith.minnumf` a libdevice call.
    fn min_num(&self, e: &mut Emitter, a: &Val, b: &Val) -> Val {
        asm2(e, "min.f32", a, b)
    }
    fn max_num(&self, e: &mut Emitter, a: &Val, b: &Val) -> Val {
        asm2(e, "max.f32", a, b)
    }
}

fn e_zero(e: &mut Emitter) -> Val {
    e.f32(0.0)
}

/// `x - 2 pi round(x / 2 pi)`: the SFU's sine and cosine are accurate on [-pi, pi] only.
fn reduce_to_pi(e: &mut Emitter, x: &Val, m: &dyn MathHooks) -> Val {
    let inv = e.f32(1.0 / (2.0 * std::f64::consts::PI));
    let q = e.mul(x, &inv);
    let half = e.f32(0.5);
    let qh = e.add(&q, &half);
    let k = m.floor(e, &qh);
    let hi = e.f32(std::f64::consts::TAU);
    let kh = e.mul(&k, &hi);
    e.sub(x, &kh)
}
