//! Math functions as target hooks. The expression lowering asks for `exp`, `tanh`, … through
//! [`MathHooks`]; the defaults write MLIR's `math` dialect (which the CPU pipeline lowers to
//! intrinsics and libm), and a target overrides what it computes better itself (the CPU's
//! vectorisable `exp` polynomial, a GPU's `ex2.approx` instruction).

use crate::emit::{Cmp, Emitter};
use crate::ptx_poly as poly;
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
    fn tan(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("tan", x)
    }
    fn asin(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("asin", x)
    }
    fn acos(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("acos", x)
    }
    fn atan(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("atan", x)
    }
    fn sinh(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("sinh", x)
    }
    fn cosh(&self, e: &mut Emitter, x: &Val) -> Val {
        e.math("cosh", x)
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
/// them to keep the f32 accuracy the approximate SFU forms lack. Where a function has a zero
/// (`log` at 1, `log1p`, `expm1`, `sinh`, `erf`, `tan`, `atan` at 0), an absolute error bound is
/// no relative one, so near the zero a polynomial in the argument replaces the SFU form; the
/// polynomials and their ranges are in `ptx_poly`.
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
        let far = Self::asm(e, "lg2.approx.ftz.f32", x);
        let near = poly::ln_near_one(e, self, x);
        let log2e = e.f32(std::f64::consts::LOG2_E);
        let near = e.mul(&near, &log2e);
        let window = poly::near_one(e, x);
        e.select(&window, &near, &far)
    }
    fn log(&self, e: &mut Emitter, x: &Val) -> Val {
        let l = Self::asm(e, "lg2.approx.ftz.f32", x);
        let ln2 = e.f32(std::f64::consts::LN_2);
        let far = e.mul(&l, &ln2);
        let near = poly::ln_near_one(e, self, x);
        let window = poly::near_one(e, x);
        e.select(&window, &near, &far)
    }
    fn log1p(&self, e: &mut Emitter, x: &Val) -> Val {
        // Near 0 the series takes x itself, which 1 + x would round away.
        let one = e.f32(1.0);
        let u = e.add(&one, x);
        let l = Self::asm(e, "lg2.approx.ftz.f32", &u);
        let ln2 = e.f32(std::f64::consts::LN_2);
        let far = e.mul(&l, &ln2);
        let near = poly::log1p_series(e, self, x);
        let window = poly::near_one(e, &u);
        e.select(&window, &near, &far)
    }
    fn expm1(&self, e: &mut Emitter, x: &Val) -> Val {
        let near = poly::expm1_taylor(e, self, x);
        let ex = self.exp(e, x);
        let one = e.f32(1.0);
        let far = e.sub(&ex, &one);
        let a = self.abs(e, x);
        let half = e.f32(0.5);
        let small = e.cmp(Cmp::Lt, &a, &half);
        e.select(&small, &near, &far)
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
        // |x| < 1: the Taylor series (relative accuracy near 0). Beyond: Abramowitz and Stegun
        // 7.1.26, erf(x) = sign(x) (1 - t poly(t) exp(-x^2)) with t = 1 / (1 + p |x|), whose
        // absolute error 1.5e-7 is relative there, as erf(1) = 0.84.
        let a = self.abs(e, x);
        let p = e.f32(0.327_591_1);
        let one = e.f32(1.0);
        let pa = e.mul(&p, &a);
        let d = e.add(&one, &pa);
        let t = e.div(&one, &d);
        let poly = poly::horner(
            e,
            self,
            &t,
            &[
                0.0,
                0.254_829_592,
                -0.284_496_736,
                1.421_413_741,
                -1.453_152_027,
                1.061_405_429,
            ],
        );
        let x2 = e.mul(&a, &a);
        let nx2 = e.neg(&x2);
        let ex = self.exp(e, &nx2);
        let tail = e.mul(&poly, &ex);
        let r = e.sub(&one, &tail);
        let zero = e_zero(e);
        let neg = e.cmp(Cmp::Lt, x, &zero);
        let nr = e.neg(&r);
        let far = e.select(&neg, &nr, &r);
        let near = poly::erf_taylor(e, self, x);
        let small = e.cmp(Cmp::Lt, &a, &one);
        e.select(&small, &near, &far)
    }
    fn tan(&self, e: &mut Emitter, x: &Val) -> Val {
        let (r, k) = poly::reduce_half_pi(e, self, x);
        let s = poly::sin_taylor(e, self, &r);
        let c = poly::cos_taylor(e, self, &r);
        // tan(k pi/2 + r) is tan(r) for an even k and -1 / tan(r) for an odd one.
        let even_t = e.div(&s, &c);
        let nc = e.neg(&c);
        let odd_t = e.div(&nc, &s);
        let odd = poly::is_odd(e, self, &k);
        e.select(&odd, &odd_t, &even_t)
    }
    fn atan(&self, e: &mut Emitter, x: &Val) -> Val {
        poly::atan(e, self, x)
    }
    fn asin(&self, e: &mut Emitter, x: &Val) -> Val {
        // asin(x) = atan(x / sqrt((1 - x)(1 + x))); the factored form keeps 1 - x^2 exact near
        // |x| = 1, and |x| > 1 gives sqrt of a negative, NaN.
        let one = e.f32(1.0);
        let a = e.sub(&one, x);
        let b = e.add(&one, x);
        let ab = e.mul(&a, &b);
        let r = self.sqrt(e, &ab);
        let q = e.div(x, &r);
        poly::atan(e, self, &q)
    }
    fn acos(&self, e: &mut Emitter, x: &Val) -> Val {
        // acos(x) = 2 atan(sqrt((1 - x) / (1 + x))): no cancellation near x = 1, where
        // pi/2 - asin(x) would lose every digit.
        let one = e.f32(1.0);
        let a = e.sub(&one, x);
        let b = e.add(&one, x);
        let q = e.div(&a, &b);
        let r = self.sqrt(e, &q);
        let t = poly::atan(e, self, &r);
        e.add(&t, &t)
    }
    fn sinh(&self, e: &mut Emitter, x: &Val) -> Val {
        // |x| < 1: the odd Taylor series; beyond, (e^|x| - e^-|x|) / 2 with the sign of x, where
        // the difference loses under half a bit.
        let near = poly::sinh_taylor(e, self, x);
        let a = self.abs(e, x);
        let ea = self.exp(e, &a);
        let one = e.f32(1.0);
        let inv = e.div(&one, &ea);
        let d = e.sub(&ea, &inv);
        let half = e.f32(0.5);
        let m = e.mul(&d, &half);
        let zero = e_zero(e);
        let neg = e.cmp(Cmp::Lt, x, &zero);
        let nm = e.neg(&m);
        let far = e.select(&neg, &nm, &m);
        let small = e.cmp(Cmp::Lt, &a, &one);
        e.select(&small, &near, &far)
    }
    fn cosh(&self, e: &mut Emitter, x: &Val) -> Val {
        // (e^|x| + e^-|x|) / 2: a sum of positives; e^|x| = inf gives inf.
        let a = self.abs(e, x);
        let ea = self.exp(e, &a);
        let one = e.f32(1.0);
        let inv = e.div(&one, &ea);
        let s = e.add(&ea, &inv);
        let half = e.f32(0.5);
        e.mul(&s, &half)
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
