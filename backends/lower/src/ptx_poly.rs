//! The polynomial pieces of [`crate::PtxMath`]: series that keep f32 relative accuracy where the
//! SFU instructions only bound the absolute error (near a function's zero), and the range
//! reductions that bring an argument into the series' range.
//!
//! Each series is a Taylor series truncated where the first omitted term is below 2e-9 of the
//! result over its whole range, so what remains is f32 rounding (a few ulp); the ranges are the
//! ones [`crate::PtxMath`] selects them on.

use crate::emit::{Cmp, Emitter};
use crate::math::MathHooks;
use crate::types::Val;
use std::f64::consts::{FRAC_PI_2, FRAC_PI_4, SQRT_2};

/// `c[0] + z (c[1] + z (c[2] + ...))` by Horner's rule, one FMA a step.
pub(crate) fn horner(e: &mut Emitter, m: &dyn MathHooks, z: &Val, c: &[f64]) -> Val {
    let (last, rest) = c.split_last().unwrap_or((&0.0, &[]));
    let mut p = e.f32(*last);
    for k in rest.iter().rev() {
        let k = e.f32(*k);
        p = m.fma(e, &p, z, &k);
    }
    p
}

fn factorial(n: u32) -> f64 {
    (1..=n).map(f64::from).product()
}

/// Whether `x` lies in (1/sqrt(2), sqrt(2)), where `ln(x)` is taken from [`ln_near_one`]: outside,
/// |ln x| > 0.34, and `lg2.approx`'s absolute error 2^-22 is a relative one below 5e-7.
pub(crate) fn near_one(e: &mut Emitter, x: &Val) -> Val {
    let lo = e.f32(1.0 / SQRT_2);
    let hi = e.f32(SQRT_2);
    let above = e.cmp(Cmp::Gt, x, &lo);
    let below = e.cmp(Cmp::Lt, x, &hi);
    e.and(&above, &below)
}

/// `ln(x)` for x in (1/sqrt(2), sqrt(2)): `log1p(x - 1)`, where `x - 1` is exact (Sterbenz).
pub(crate) fn ln_near_one(e: &mut Emitter, m: &dyn MathHooks, x: &Val) -> Val {
    let one = e.f32(1.0);
    let f = e.sub(x, &one);
    log1p_series(e, m, &f)
}

/// `log1p(f) = 2 atanh(s)` with `s = f / (2 + f)`, for 1 + f in (1/sqrt(2), sqrt(2)): there
/// |s| < 0.172, and the odd series of atanh to s^11 leaves under 5e-11.
pub(crate) fn log1p_series(e: &mut Emitter, m: &dyn MathHooks, f: &Val) -> Val {
    let two = e.f32(2.0);
    let d = e.add(&two, f);
    let s = e.div(f, &d);
    let z = e.mul(&s, &s);
    let c: Vec<f64> = (0..6).map(|n| 1.0 / f64::from(2 * n + 1)).collect();
    let p = horner(e, m, &z, &c);
    let s2 = e.add(&s, &s);
    e.mul(&s2, &p)
}

/// `expm1(x)` for |x| < 1/2: `sum x^k / k!` for k = 1..10 (the next term is below 1e-11).
pub(crate) fn expm1_taylor(e: &mut Emitter, m: &dyn MathHooks, x: &Val) -> Val {
    let c: Vec<f64> = (1..=10).map(|k| 1.0 / factorial(k)).collect();
    let p = horner(e, m, x, &c);
    e.mul(x, &p)
}

/// `sinh(x)` for |x| < 1: `sum x^(2n+1) / (2n+1)!` to x^11 (the next term is below 2e-10).
pub(crate) fn sinh_taylor(e: &mut Emitter, m: &dyn MathHooks, x: &Val) -> Val {
    let z = e.mul(x, x);
    let c: Vec<f64> = (0..6).map(|n| 1.0 / factorial(2 * n + 1)).collect();
    let p = horner(e, m, &z, &c);
    e.mul(x, &p)
}

/// `erf(x)` for |x| < 1: `2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1))` to n = 10 (the next
/// term is below 1.1e-9; the terms fall fast enough that the alternation cancels little).
pub(crate) fn erf_taylor(e: &mut Emitter, m: &dyn MathHooks, x: &Val) -> Val {
    let z = e.mul(x, x);
    let c: Vec<f64> = (0..=10u32)
        .map(|n| {
            let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
            sign * std::f64::consts::FRAC_2_SQRT_PI / (factorial(n) * f64::from(2 * n + 1))
        })
        .collect();
    let p = horner(e, m, &z, &c);
    e.mul(x, &p)
}

/// `x = k pi/2 + r` with |r| <= pi/4 and k an integer-valued float: Cody and Waite's reduction,
/// pi/2 split in three f32 parts so each `k * part` is subtracted with one rounding (an FMA).
/// Accurate while k pi/2 stays well inside f32's exact integers (|x| up to about 1e5).
pub(crate) fn reduce_half_pi(e: &mut Emitter, m: &dyn MathHooks, x: &Val) -> (Val, Val) {
    let inv = e.f32(1.0 / FRAC_PI_2);
    let q = e.mul(x, &inv);
    let half = e.f32(0.5);
    let qh = e.add(&q, &half);
    let k = m.floor(e, &qh);
    let nk = e.neg(&k);
    let c1 = f64::from(FRAC_PI_2 as f32);
    let c2 = f64::from((FRAC_PI_2 - c1) as f32);
    let c3 = FRAC_PI_2 - c1 - c2;
    let mut r = x.clone();
    for c in [c1, c2, c3] {
        let c = e.f32(c);
        r = m.fma(e, &nk, &c, &r);
    }
    (r, k)
}

/// `sin(r)` for |r| <= pi/4: the Taylor series to r^11 (the next term is below 1e-12).
pub(crate) fn sin_taylor(e: &mut Emitter, m: &dyn MathHooks, r: &Val) -> Val {
    let z = e.mul(r, r);
    let c: Vec<f64> = (0..6u32)
        .map(|n| {
            let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
            sign / factorial(2 * n + 1)
        })
        .collect();
    let p = horner(e, m, &z, &c);
    e.mul(r, &p)
}

/// `cos(r)` for |r| <= pi/4: the Taylor series to r^12 (the next term is below 1e-14).
pub(crate) fn cos_taylor(e: &mut Emitter, m: &dyn MathHooks, r: &Val) -> Val {
    let z = e.mul(r, r);
    let c: Vec<f64> = (0..7u32)
        .map(|n| {
            let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
            sign / factorial(2 * n)
        })
        .collect();
    horner(e, m, &z, &c)
}

/// Whether an integer-valued float is odd.
pub(crate) fn is_odd(e: &mut Emitter, m: &dyn MathHooks, k: &Val) -> Val {
    let half = e.f32(0.5);
    let h = e.mul(k, &half);
    let f = m.floor(e, &h);
    e.cmp(Cmp::Ne, &f, &h)
}

/// `atan(x)`: |x| is brought into [-tan(pi/8), tan(pi/8)] by `atan(a) = pi/2 + atan(-1/a)`
/// (a > tan(3pi/8)) or `atan(a) = pi/4 + atan((a - 1) / (a + 1))` (a > tan(pi/8)); there
/// t^2 < 0.172 and the series `sum (-1)^n t^(2n+1) / (2n+1)` to t^19 leaves under 1e-9. The
/// added pi/4 or pi/2 is at least twice what the series contributes, so nothing cancels.
pub(crate) fn atan(e: &mut Emitter, m: &dyn MathHooks, x: &Val) -> Val {
    let a = m.abs(e, x);
    let one = e.f32(1.0);
    let tan_3pi_8 = e.f32(1.0 + SQRT_2);
    let tan_pi_8 = e.f32(SQRT_2 - 1.0);
    let big = e.cmp(Cmp::Gt, &a, &tan_3pi_8);
    let mid = e.cmp(Cmp::Gt, &a, &tan_pi_8);
    let inv = e.div(&one, &a);
    let ninv = e.neg(&inv);
    let am1 = e.sub(&a, &one);
    let ap1 = e.add(&a, &one);
    let ratio = e.div(&am1, &ap1);
    let t_mid = e.select(&mid, &ratio, &a);
    let t = e.select(&big, &ninv, &t_mid);
    let zero = e.f32(0.0);
    let pi_4 = e.f32(FRAC_PI_4);
    let pi_2 = e.f32(FRAC_PI_2);
    let y_mid = e.select(&mid, &pi_4, &zero);
    let y0 = e.select(&big, &pi_2, &y_mid);
    let z = e.mul(&t, &t);
    let c: Vec<f64> = (0..10u32)
        .map(|n| {
            let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
            sign / f64::from(2 * n + 1)
        })
        .collect();
    let p = horner(e, m, &z, &c);
    let at = e.mul(&t, &p);
    let r = e.add(&y0, &at);
    let neg = e.cmp(Cmp::Lt, x, &zero);
    let nr = e.neg(&r);
    e.select(&neg, &nr, &r)
}
