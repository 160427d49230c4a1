#!/usr/bin/env python3
"""Relative error of the PTX math forms (backends/lower/src/math.rs, ptx_poly.rs) against f64.

Mirrors each form step by step in f32 (every operation rounded to f32, FMAs rounded once), with
the SFU instructions ex2.approx, lg2.approx and sqrt modelled as correctly rounded: what this
measures is the algorithm and its f32 rounding. The hardware adds its own documented error on top
(ex2.approx: 2 ulp relative; lg2.approx: 2^-22.6 absolute, used only where |log2| > 0.5; div.approx
2 ulp). Run: python3 scripts/ptx_math_accuracy.py
"""
import math
import struct

def f(x):
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)

def fma(a, b, c):
    return f(a * b + c)

def horner(z, c):
    p = f(c[-1])
    for k in reversed(c[:-1]):
        p = fma(p, z, f(k))
    return p

def ex2(x):
    try:
        return f(2.0 ** x)
    except OverflowError:
        return math.inf

def lg2(x):
    return f(math.log2(x)) if x > 0 else (-math.inf if x == 0 else math.nan)

LOG2E, LN2 = f(math.log2(math.e)), f(math.log(2))
SQ2, ISQ2 = f(math.sqrt(2)), f(1 / math.sqrt(2))

def exp(x):
    return ex2(f(x * LOG2E))

def near_one(x):
    return ISQ2 < x < SQ2

def log1p_series(x):
    s = f(x / f(2.0 + x))
    z = f(s * s)
    p = horner(z, [1 / (2 * n + 1) for n in range(6)])
    return f(f(s + s) * p)

def log(x):
    return log1p_series(f(x - 1.0)) if near_one(x) else f(lg2(x) * LN2)

def log2(x):
    return f(log1p_series(f(x - 1.0)) * LOG2E) if near_one(x) else lg2(x)

def log1p(x):
    u = f(1.0 + x)
    return log1p_series(x) if near_one(u) else f(lg2(u) * LN2)

def expm1(x):
    if abs(x) < 0.5:
        return f(x * horner(x, [1 / math.factorial(k) for k in range(1, 11)]))
    return f(exp(x) - 1.0)

def reduce(x):
    k = math.floor(f(f(x * f(2 / math.pi)) + 0.5))
    c1 = f(math.pi / 2)
    c2 = f(math.pi / 2 - c1)
    c3 = f(math.pi / 2 - c1 - c2)
    r = x
    for c in (c1, c2, c3):
        r = fma(-k, c, r)
    return r, k

def tan(x):
    r, k = reduce(x)
    z = f(r * r)
    s = f(r * horner(z, [(-1) ** n / math.factorial(2 * n + 1) for n in range(6)]))
    c = horner(z, [(-1) ** n / math.factorial(2 * n) for n in range(7)])
    return f(-c / s) if k % 2 else f(s / c)

def atan(x):
    a = abs(x)
    if a > f(1 + math.sqrt(2)):
        t, y0 = -div(1.0, a), f(math.pi / 2)
    elif a > f(math.sqrt(2) - 1):
        t, y0 = f(f(a - 1.0) / f(a + 1.0)), f(math.pi / 4)
    else:
        t, y0 = a, 0.0
    z = f(t * t)
    r = f(y0 + f(t * horner(z, [(-1) ** n / (2 * n + 1) for n in range(10)])))
    return -r if x < 0 else r

def div(a, b):
    if b == 0:
        return math.copysign(math.inf, a) * math.copysign(1.0, b) if a != 0 else math.nan
    return f(a / b)

def asin(x):
    return atan(div(x, f(math.sqrt(f(f(1.0 - x) * f(1.0 + x))))))

def acos(x):
    t = atan(f(math.sqrt(div(f(1.0 - x), f(1.0 + x)))))
    return f(t + t)

def sinh(x):
    a = abs(x)
    if a < 1:
        z = f(x * x)
        return f(x * horner(z, [1 / math.factorial(2 * n + 1) for n in range(6)]))
    ea = exp(a)
    m = f(f(ea - f(1.0 / ea)) * 0.5)
    return -m if x < 0 else m

def cosh(x):
    ea = exp(abs(x))
    return f(f(ea + f(1.0 / ea)) * 0.5)

def erf(x):
    a = abs(x)
    if a < 1:
        z = f(x * x)
        c = [(-1) ** n * 2 / math.sqrt(math.pi) / (math.factorial(n) * (2 * n + 1)) for n in range(11)]
        return f(x * horner(z, c))
    t = f(1.0 / f(1.0 + f(f(0.3275911) * a)))
    p = horner(t, [0.0, 0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429])
    r = f(1.0 - f(p * exp(f(-f(a * a)))))
    return -r if x < 0 else r

def samples(lo, hi, n=4000, log_scale=False):
    if log_scale:
        return [f(math.copysign(10 ** (lo + (hi - lo) * i / n), s)) for i in range(n + 1) for s in (1, -1)]
    return [f(lo + (hi - lo) * i / n) for i in range(n + 1)]

CASES = [
    ("expm1", expm1, math.expm1, samples(-10, 10) + samples(-8, -0.3, log_scale=True)),
    ("log1p", log1p, math.log1p, samples(-0.99, 10) + samples(-8, -0.3, log_scale=True)),
    ("log", log, math.log, [x for x in samples(1e-3, 100)] + [1 + d for d in samples(-7, -0.3, log_scale=True)]),
    ("log2", log2, math.log2, [x for x in samples(1e-3, 100)] + [1 + d for d in samples(-7, -0.3, log_scale=True)]),
    ("tan", tan, math.tan, samples(-1.5, 1.5) + samples(-100, 100) + samples(-8, 0, log_scale=True)),
    ("atan", atan, math.atan, samples(-50, 50) + samples(-8, 3, log_scale=True)),
    ("asin", asin, math.asin, samples(-1, 1) + samples(-8, -0.01, log_scale=True)),
    ("acos", acos, math.acos, samples(-1, 1)),
    ("sinh", sinh, math.sinh, samples(-20, 20) + samples(-8, 0, log_scale=True)),
    ("cosh", cosh, math.cosh, samples(-20, 20)),
    ("erf", erf, math.erf, samples(-5, 5) + samples(-8, 0.5, log_scale=True)),
]

for name, got, want, xs in CASES:
    worst, at = 0.0, None
    for x in xs:
        w = want(x)
        if w == 0 or not math.isfinite(w):
            continue
        if name == "tan" and abs(w) > 1e4:  # next to a pole the argument's own rounding dominates
            continue
        e = abs(got(x) - w) / abs(w)
        if e > worst:
            worst, at = e, x
    print(f"{name:6} max relative error {worst:.2e} at x = {at:.6g} over {len(xs)} samples")
