//! Lowering an expression tree (a map's, the mask's, a reduction's argument) to SPIR-V at one
//! position of the kernel. The language's rules are those of the shared lowering
//! (`attnc_lower::expr`: `float` is f32, `int` is i32, Python's `//` and `%`, int-only arithmetic
//! only when both sides are ints); where leaves live is the kernel's business ([`Leaves`]). Math
//! built-ins use GLSL.std.450 where its precision is specified well enough, and are written
//! from their definitions where it is not (`tanh`, `log1p`, `expm1`, `erf`).

use crate::error::{Result, SpirvError};
use crate::shader::{Cmp, Shader, Ty, Val, glsl};
use attnc_ir::expr::Builtin;
use attnc_ir::graph::{Graph, ValueRef};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::{FrameIndex, ScalarKind};
use attnc_lower::expr::{is_feature_reduction, is_vector, kind_of, vector_leaf};
use attnc_passes::fusion::tree::Tree;

/// Where the leaves of a tree come from at the current position.
pub(crate) trait Leaves {
    /// A value computed by another node; `feature` picks the element of a vector value.
    fn value(&mut self, s: &mut Shader, v: ValueRef, feature: Option<Val>) -> Result<Val>;
    /// A frame index at this position, as i32.
    fn index(&mut self, s: &mut Shader, fi: FrameIndex) -> Result<Val>;
    /// A dim's value, as i32.
    fn dim(&mut self, s: &mut Shader, name: &str) -> Result<Val>;
    /// The (specialised) length of a vector value.
    fn len(&mut self, v: ValueRef) -> Result<u32>;
    /// Element `k` of a vector value, checked against its length (a bad index is reported
    /// through the status word and element 0 read instead).
    fn element(&mut self, s: &mut Shader, v: ValueRef, k: Val) -> Result<Val>;
}

pub(crate) fn ty_of(kind: ScalarKind) -> Ty {
    match kind {
        ScalarKind::Float => Ty::F32,
        ScalarKind::Int => Ty::I32,
        ScalarKind::Bool => Ty::Bool,
    }
}

/// Lowers trees. `cache` holds scalar values already computed in the region being written
/// (one pair's updates, where a weight several reductions share is computed once); `hoisted`
/// holds the feature reductions of a vector expression, computed before its feature loop.
pub(crate) struct Lower<'a> {
    pub graph: &'a Graph,
    cache: Vec<(Tree, Val)>,
    pub caching: bool,
    hoisted: Vec<(Tree, Val)>,
}

impl<'a> Lower<'a> {
    pub fn new(graph: &'a Graph) -> Self {
        Lower {
            graph,
            cache: Vec::new(),
            caching: false,
            hoisted: Vec::new(),
        }
    }

    /// Starts or ends a caching region (values cached must dominate their later uses).
    pub fn set_caching(&mut self, on: bool) {
        self.cache.clear();
        self.caching = on;
    }

    /// Stops using the cache (inside a loop of the caching region) and says whether it was on.
    pub fn pause(&mut self) -> bool {
        std::mem::replace(&mut self.caching, false)
    }

    /// Resumes what [`Lower::pause`] stopped.
    pub fn resume(&mut self, caching: bool) {
        self.caching = caching;
    }

    /// Computes the feature reductions inside vector tree `t` once, before a loop over its
    /// elements reads them (so `x / norm(x)` is not a loop inside a loop).
    pub fn hoist(&mut self, s: &mut Shader, l: &mut dyn Leaves, t: &Tree) -> Result<()> {
        match t {
            Tree::Call(f, _) if is_feature_reduction(*f) => {
                let v = self.lower(s, l, t, None)?;
                self.hoisted.push((t.clone(), v));
                Ok(())
            }
            Tree::Unary(_, a) => self.hoist(s, l, a),
            Tree::Binary(_, a, b) | Tree::Extract(a, b) => {
                self.hoist(s, l, a)?;
                self.hoist(s, l, b)
            }
            Tree::Call(_, args) => args.iter().try_for_each(|a| self.hoist(s, l, a)),
            _ => Ok(()),
        }
    }

    /// Forgets hoisted values once the loop that read them is written.
    pub fn clear_hoisted(&mut self) {
        self.hoisted.clear();
    }

    /// The value of `t` (at `feature` of a vector-valued tree), in the type of its kind.
    pub fn lower(
        &mut self,
        s: &mut Shader,
        l: &mut dyn Leaves,
        t: &Tree,
        feature: Option<Val>,
    ) -> Result<Val> {
        if let Some((_, v)) = self.hoisted.iter().find(|(h, _)| h == t) {
            return Ok(*v);
        }
        let cacheable = self.caching && !is_vector(self.graph, t);
        if cacheable && let Some((_, v)) = self.cache.iter().find(|(c, _)| c == t) {
            return Ok(*v);
        }
        let v = self.uncached(s, l, t, feature)?;
        if cacheable {
            self.cache.push((t.clone(), v));
        }
        Ok(v)
    }

    pub fn lower_as(
        &mut self,
        s: &mut Shader,
        l: &mut dyn Leaves,
        t: &Tree,
        feature: Option<Val>,
        ty: Ty,
    ) -> Result<Val> {
        let v = self.lower(s, l, t, feature)?;
        s.to(v, ty)
    }

    fn uncached(
        &mut self,
        s: &mut Shader,
        l: &mut dyn Leaves,
        t: &Tree,
        feature: Option<Val>,
    ) -> Result<Val> {
        let graph = self.graph;
        Ok(match t {
            Tree::Value(v) => {
                let vector = is_vector(graph, t);
                if vector && feature.is_none() {
                    return Err(SpirvError::internal(format!(
                        "node {} is a vector but is read without a feature position",
                        v.node.index()
                    )));
                }
                let x = l.value(s, *v, if vector { feature } else { None })?;
                s.to(x, ty_of(kind_of(graph, t)))?
            }
            Tree::Index(fi) => l.index(s, *fi)?,
            Tree::Dim(d) => l.dim(s, d)?,
            Tree::Int(i) => s.i32(*i),
            Tree::Float(x) => s.f32(*x),
            Tree::Unary(UnaryOp::Neg, a) => {
                let a = self.lower(s, l, a, feature)?;
                let a = if a.ty == Ty::Bool { s.int(a)? } else { a };
                s.neg(a)?
            }
            Tree::Unary(UnaryOp::Not, a) => {
                let a = self.lower_as(s, l, a, feature, Ty::Bool)?;
                s.not(a)?
            }
            Tree::Binary(op, a, b) => self.binary(s, l, *op, a, b, feature)?,
            Tree::Call(f, args) => self.call(s, l, *f, args, feature)?,
            Tree::Extract(v, k) => {
                let k = self.lower_as(s, l, k, feature, Ty::I32)?;
                match v.as_ref() {
                    Tree::Value(vv) => {
                        let x = l.element(s, *vv, k)?;
                        s.to(x, ty_of(kind_of(graph, v)))?
                    }
                    other => {
                        return Err(SpirvError::Unsupported {
                            message: format!(
                                "indexing the computed vector `{}` (bind it with `let` first)",
                                other.render(&Default::default())
                            ),
                            span: None,
                        });
                    }
                }
            }
        })
    }

    fn binary(
        &mut self,
        s: &mut Shader,
        l: &mut dyn Leaves,
        op: BinaryOp,
        a: &Tree,
        b: &Tree,
        feature: Option<Val>,
    ) -> Result<Val> {
        if matches!(op, BinaryOp::And | BinaryOp::Or) {
            let x = self.lower_as(s, l, a, feature, Ty::Bool)?;
            let y = self.lower_as(s, l, b, feature, Ty::Bool)?;
            return if op == BinaryOp::And {
                s.and(x, y)
            } else {
                s.or(x, y)
            };
        }
        if op == BinaryOp::MatMul {
            return Err(SpirvError::Unsupported {
                message: "`@` outside a recurrence".into(),
                span: None,
            });
        }
        let (ka, kb) = (kind_of(self.graph, a), kind_of(self.graph, b));
        let x = self.lower(s, l, a, feature)?;
        let y = self.lower(s, l, b, feature)?;
        let ints = ka == ScalarKind::Int && kb == ScalarKind::Int;
        let bools = ka == ScalarKind::Bool && kb == ScalarKind::Bool;
        let comparison = match op {
            BinaryOp::Eq => Some(Cmp::Eq),
            BinaryOp::Ne => Some(Cmp::Ne),
            BinaryOp::Lt => Some(Cmp::Lt),
            BinaryOp::Le => Some(Cmp::Le),
            BinaryOp::Gt => Some(Cmp::Gt),
            BinaryOp::Ge => Some(Cmp::Ge),
            _ => None,
        };
        if let Some(c) = comparison {
            if ints || bools {
                return s.cmp(c, x, y);
            }
            let (x, y) = (s.float(x)?, s.float(y)?);
            return s.cmp(c, x, y);
        }
        if ints && op != BinaryOp::Div {
            let (x, y) = (s.int(x)?, s.int(y)?);
            return match op {
                BinaryOp::Add => s.add(x, y),
                BinaryOp::Sub => s.sub(x, y),
                BinaryOp::Mul => s.mul(x, y),
                BinaryOp::FloorDiv => floor_div(s, x, y),
                BinaryOp::Rem => {
                    let d = nonzero(s, y)?;
                    s.smod(x, d)
                }
                _ => Err(unreachable_op(op)),
            };
        }
        float_arithmetic(s, op, x, y)
    }

    fn call(
        &mut self,
        s: &mut Shader,
        l: &mut dyn Leaves,
        f: Builtin,
        args: &[Tree],
        feature: Option<Val>,
    ) -> Result<Val> {
        let graph = self.graph;
        if is_feature_reduction(f) {
            return self.feature_reduction(s, l, f, args);
        }
        match f {
            Builtin::Min | Builtin::Max => {
                let (ka, kb) = (kind_of(graph, &args[0]), kind_of(graph, &args[1]));
                let x = self.lower(s, l, &args[0], feature)?;
                let y = self.lower(s, l, &args[1], feature)?;
                let ints = ka == ScalarKind::Int && kb == ScalarKind::Int;
                let (x, y, inst) = match (ints, f == Builtin::Min) {
                    (true, true) => (s.int(x)?, s.int(y)?, glsl::SMIN),
                    (true, false) => (s.int(x)?, s.int(y)?, glsl::SMAX),
                    // NMin/NMax return the other operand for a NaN, like f64::min/max.
                    (false, true) => (s.float(x)?, s.float(y)?, glsl::NMIN),
                    (false, false) => (s.float(x)?, s.float(y)?, glsl::NMAX),
                };
                return s.ext(x.ty, inst, &[x, y]);
            }
            Builtin::Select => {
                let c = self.lower_as(s, l, &args[0], feature, Ty::Bool)?;
                let (ka, kb) = (kind_of(graph, &args[1]), kind_of(graph, &args[2]));
                let want = match (ka, kb) {
                    (ScalarKind::Bool, ScalarKind::Bool) => Ty::Bool,
                    (ScalarKind::Int, ScalarKind::Int) => Ty::I32,
                    _ => Ty::F32,
                };
                let a = self.lower_as(s, l, &args[1], feature, want)?;
                let b = self.lower_as(s, l, &args[2], feature, want)?;
                return s.select(c, a, b);
            }
            Builtin::ToInt => {
                let x = self.lower(s, l, &args[0], feature)?;
                if x.ty == Ty::I32 {
                    return Ok(x);
                }
                let x = s.float(x)?;
                let fl = s.ext(Ty::F32, glsl::FLOOR, &[x])?;
                return s.int(fl);
            }
            Builtin::Abs if kind_of(graph, &args[0]) == ScalarKind::Int => {
                let x = self.lower_as(s, l, &args[0], feature, Ty::I32)?;
                let n = s.neg(x)?;
                return s.ext(Ty::I32, glsl::SMAX, &[x, n]);
            }
            Builtin::Cumsum | Builtin::Cumprod => {
                return Err(SpirvError::Unsupported {
                    message: format!(
                        "`{}` (prefix scans need a per-head workspace pass, not written yet)",
                        f.name()
                    ),
                    span: None,
                });
            }
            Builtin::Outer | Builtin::Diag => {
                return Err(SpirvError::Unsupported {
                    message: format!("`{}` outside a recurrence", f.name()),
                    span: None,
                });
            }
            _ => {}
        }
        let mut v = Vec::with_capacity(args.len());
        for a in args {
            v.push(self.lower_as(s, l, a, feature, Ty::F32)?);
        }
        float_call(s, f, &v)
    }

    /// `dot`, `sum`, `mean`, `max`, `min`, `norm` along the feature axis: a loop.
    fn feature_reduction(
        &mut self,
        s: &mut Shader,
        l: &mut dyn Leaves,
        f: Builtin,
        args: &[Tree],
    ) -> Result<Val> {
        let leaf = vector_leaf(self.graph, &args[0]).ok_or_else(|| {
            SpirvError::internal(format!("`{}` of a value with no feature axis", f.name()))
        })?;
        let len = l.len(leaf)?;
        let acc = s.scalar_local(Ty::F32);
        let init = s.f32(match f {
            Builtin::MaxFeature => f64::NEG_INFINITY,
            Builtin::MinFeature => f64::INFINITY,
            _ => 0.0,
        });
        s.store(acc, init)?;
        // The loop body is its own region: nothing computed inside may be cached outside it.
        let (saved, caching) = (std::mem::take(&mut self.cache), self.caching);
        self.caching = false;
        let result = s.features(len, |s, k| {
            let x = self.lower_as(s, l, &args[0], Some(k), Ty::F32)?;
            let a = s.load(Ty::F32, acc)?;
            let next = match f {
                Builtin::Dot => {
                    let y = self.lower_as(s, l, &args[1], Some(k), Ty::F32)?;
                    s.ext(Ty::F32, glsl::FMA, &[x, y, a])?
                }
                Builtin::Norm => s.ext(Ty::F32, glsl::FMA, &[x, x, a])?,
                Builtin::MaxFeature => s.ext(Ty::F32, glsl::NMAX, &[a, x])?,
                Builtin::MinFeature => s.ext(Ty::F32, glsl::NMIN, &[a, x])?,
                _ => s.add(a, x)?,
            };
            s.store(acc, next)
        });
        self.cache = saved;
        self.caching = caching;
        result?;
        let r = s.load(Ty::F32, acc)?;
        match f {
            Builtin::MeanFeature => {
                let n = s.f32(len as f64);
                s.fdiv(r, n)
            }
            Builtin::Norm => s.ext(Ty::F32, glsl::SQRT, &[r]),
            _ => Ok(r),
        }
    }
}

/// `+ - * / // %` on floats (Python's floor division and modulo).
pub(crate) fn float_arithmetic(s: &mut Shader, op: BinaryOp, x: Val, y: Val) -> Result<Val> {
    let (x, y) = (s.float(x)?, s.float(y)?);
    match op {
        BinaryOp::Add => s.add(x, y),
        BinaryOp::Sub => s.sub(x, y),
        BinaryOp::Mul => s.mul(x, y),
        BinaryOp::Div => s.fdiv(x, y),
        BinaryOp::FloorDiv => {
            let q = s.fdiv(x, y)?;
            s.ext(Ty::F32, glsl::FLOOR, &[q])
        }
        BinaryOp::Rem => {
            let q = s.fdiv(x, y)?;
            let fq = s.ext(Ty::F32, glsl::FLOOR, &[q])?;
            let m = s.mul(y, fq)?;
            s.sub(x, m)
        }
        _ => Err(unreachable_op(op)),
    }
}

fn unreachable_op(op: BinaryOp) -> SpirvError {
    SpirvError::internal(format!(
        "operator `{}` reached arithmetic lowering",
        op.symbol()
    ))
}

/// `b`, or 1 where it is 0: a quotient by zero is meaningless in the language, and must not be
/// undefined behaviour in the shader.
fn nonzero(s: &mut Shader, b: Val) -> Result<Val> {
    let (zero, one) = (s.i32(0), s.i32(1));
    let z = s.cmp(Cmp::Eq, b, zero)?;
    s.select(z, one, b)
}

/// Python's `//` on ints: the truncating quotient, one less where the signs differ and the
/// division is inexact.
pub(crate) fn floor_div(s: &mut Shader, a: Val, b: Val) -> Result<Val> {
    let d = nonzero(s, b)?;
    let q = s.sdiv(a, d)?;
    let qd = s.mul(q, d)?;
    let inexact = s.cmp(Cmp::Ne, qd, a)?;
    let zero = s.i32(0);
    let a_neg = s.cmp(Cmp::Lt, a, zero)?;
    let d_neg = s.cmp(Cmp::Lt, d, zero)?;
    let differ = s.cmp(Cmp::Ne, a_neg, d_neg)?;
    let fix = s.and(inexact, differ)?;
    let one = s.i32(1);
    let q1 = s.sub(q, one)?;
    s.select(fix, q1, q)
}

/// An increasing float function of one f32 (for the tile rule's bounds).
pub(crate) fn monotone(s: &mut Shader, f: Builtin, x: Val) -> Result<Val> {
    float_call(s, f, &[x])
}

/// A float built-in of evaluated f32 arguments.
pub(crate) fn float_call(s: &mut Shader, f: Builtin, v: &[Val]) -> Result<Val> {
    let x = v[0];
    let g = |s: &mut Shader, inst: u32| s.ext(Ty::F32, inst, &[x]);
    match f {
        Builtin::Exp => g(s, glsl::EXP),
        Builtin::Log => g(s, glsl::LOG),
        Builtin::Sqrt => g(s, glsl::SQRT),
        Builtin::Rsqrt => g(s, glsl::INVERSE_SQRT),
        Builtin::Abs => g(s, glsl::FABS),
        Builtin::Sin => g(s, glsl::SIN),
        Builtin::Cos => g(s, glsl::COS),
        Builtin::Tan => g(s, glsl::TAN),
        Builtin::Asin => g(s, glsl::ASIN),
        Builtin::Acos => g(s, glsl::ACOS),
        Builtin::Atan => g(s, glsl::ATAN),
        Builtin::Sinh => g(s, glsl::SINH),
        Builtin::Cosh => g(s, glsl::COSH),
        Builtin::Exp2 => g(s, glsl::EXP2),
        Builtin::Log2 => g(s, glsl::LOG2),
        Builtin::Floor => g(s, glsl::FLOOR),
        Builtin::Ceil => g(s, glsl::CEIL),
        Builtin::ToFloat => Ok(x),
        Builtin::Pow => s.ext(Ty::F32, glsl::POW, &[x, v[1]]),
        Builtin::Tanh => tanh(s, x),
        Builtin::Log1p => log1p(s, x),
        Builtin::Expm1 => expm1(s, x),
        Builtin::Erf => erf(s, x),
        Builtin::Sign => {
            // 1 above 0, -1 below, and x itself for 0 and NaN (both comparisons false).
            let (zero, one, minus) = (s.f32(0.0), s.f32(1.0), s.f32(-1.0));
            let pos = s.cmp(Cmp::Gt, x, zero)?;
            let neg = s.cmp(Cmp::Lt, x, zero)?;
            let lo = s.select(neg, minus, x)?;
            s.select(pos, one, lo)
        }
        Builtin::Relu => {
            let zero = s.f32(0.0);
            s.ext(Ty::F32, glsl::NMAX, &[x, zero])
        }
        Builtin::Sigmoid | Builtin::Silu => {
            // 1 / (1 + exp(-x)): exp(-x) overflows to inf for very negative x, giving 0.
            let n = s.neg(x)?;
            let e = s.ext(Ty::F32, glsl::EXP, &[n])?;
            let one = s.f32(1.0);
            let d = s.add(one, e)?;
            let sig = s.fdiv(one, d)?;
            if f == Builtin::Silu {
                s.mul(x, sig)
            } else {
                Ok(sig)
            }
        }
        Builtin::Softplus | Builtin::LogSigmoid => {
            // max(x, 0) + log1p(exp(-|x|)); log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|)).
            let a = s.ext(Ty::F32, glsl::FABS, &[x])?;
            let n = s.neg(a)?;
            let e = s.ext(Ty::F32, glsl::EXP, &[n])?;
            let lp = log1p(s, e)?;
            let zero = s.f32(0.0);
            if f == Builtin::Softplus {
                let m = s.ext(Ty::F32, glsl::NMAX, &[x, zero])?;
                s.add(m, lp)
            } else {
                let m = s.ext(Ty::F32, glsl::NMIN, &[x, zero])?;
                s.sub(m, lp)
            }
        }
        Builtin::Elu => {
            let zero = s.f32(0.0);
            let pos = s.cmp(Cmp::Gt, x, zero)?;
            let em = expm1(s, x)?;
            s.select(pos, x, em)
        }
        Builtin::Gelu => {
            // The tanh approximation, as the reference computes it.
            let c = s.f32(0.044715);
            let k = s.f32((2.0 / std::f64::consts::PI).sqrt());
            let (half, one) = (s.f32(0.5), s.f32(1.0));
            let x2 = s.mul(x, x)?;
            let x3 = s.mul(x2, x)?;
            let cx3 = s.mul(c, x3)?;
            let inner = s.add(x, cx3)?;
            let scaled = s.mul(k, inner)?;
            let t = tanh(s, scaled)?;
            let onet = s.add(one, t)?;
            let hx = s.mul(half, x)?;
            s.mul(hx, onet)
        }
        other => Err(SpirvError::Unsupported {
            message: format!("the built-in `{}` in this kernel", other.name()),
            span: None,
        }),
    }
}

/// `sign(x) (1 - e) / (1 + e)` with `e = exp(-2|x|)`: finite for every x (GLSL's `Tanh` may
/// divide infinities for large |x|).
fn tanh(s: &mut Shader, x: Val) -> Result<Val> {
    let a = s.ext(Ty::F32, glsl::FABS, &[x])?;
    let m2 = s.f32(-2.0);
    let t = s.mul(a, m2)?;
    let e = s.ext(Ty::F32, glsl::EXP, &[t])?;
    let one = s.f32(1.0);
    let num = s.sub(one, e)?;
    let den = s.add(one, e)?;
    let r = s.fdiv(num, den)?;
    let zero = s.f32(0.0);
    let neg = s.cmp(Cmp::Lt, x, zero)?;
    let nr = s.neg(r)?;
    s.select(neg, nr, r)
}

/// `log(1 + x)` accurate near 0: `log(u) · x / (u - 1)` with `u = 1 + x` cancels the rounding
/// of `u` (and is `x` where `u` rounds to 1).
fn log1p(s: &mut Shader, x: Val) -> Result<Val> {
    let one = s.f32(1.0);
    let u = s.add(one, x)?;
    let lu = s.ext(Ty::F32, glsl::LOG, &[u])?;
    let d = s.sub(u, one)?;
    let q = s.fdiv(x, d)?;
    let r = s.mul(lu, q)?;
    let exact = s.cmp(Cmp::Eq, u, one)?;
    // u = inf: log(u) already is the answer (x / d would be NaN).
    let inf = s.f32(f64::INFINITY);
    let big = s.cmp(Cmp::Eq, u, inf)?;
    let r = s.select(big, lu, r)?;
    s.select(exact, x, r)
}

/// `exp(x) - 1` accurate near 0: `(u - 1) · x / log(u)` with `u = exp(x)`.
fn expm1(s: &mut Shader, x: Val) -> Result<Val> {
    let u = s.ext(Ty::F32, glsl::EXP, &[x])?;
    let one = s.f32(1.0);
    let um1 = s.sub(u, one)?;
    let lu = s.ext(Ty::F32, glsl::LOG, &[u])?;
    let q = s.fdiv(x, lu)?;
    let r = s.mul(um1, q)?;
    let exact = s.cmp(Cmp::Eq, u, one)?;
    // Where exp(x) is 0 or inf, u - 1 is the answer.
    let zero = s.f32(0.0);
    let inf = s.f32(f64::INFINITY);
    let at_zero = s.cmp(Cmp::Eq, u, zero)?;
    let at_inf = s.cmp(Cmp::Eq, u, inf)?;
    let ends = s.or(at_zero, at_inf)?;
    let r = s.select(ends, um1, r)?;
    s.select(exact, x, r)
}

/// Abramowitz and Stegun 7.1.26: `1 - (a1 t + … + a5 t^5) exp(-x²)` with `t = 1 / (1 + p|x|)`,
/// odd in x; absolute error below 1.5e-7, about f32's resolution.
fn erf(s: &mut Shader, x: Val) -> Result<Val> {
    const P: f64 = 0.327_591_1;
    const A: [f64; 5] = [
        0.254_829_592,
        -0.284_496_736,
        1.421_413_741,
        -1.453_152_027,
        1.061_405_429,
    ];
    let a = s.ext(Ty::F32, glsl::FABS, &[x])?;
    let (one, p) = (s.f32(1.0), s.f32(P));
    let pa = s.mul(p, a)?;
    let d = s.add(one, pa)?;
    let t = s.fdiv(one, d)?;
    let mut poly = s.f32(A[4]);
    for c in A[..4].iter().rev() {
        let c = s.f32(*c);
        poly = s.ext(Ty::F32, glsl::FMA, &[poly, t, c])?;
    }
    poly = s.mul(poly, t)?;
    let a2 = s.mul(a, a)?;
    let na2 = s.neg(a2)?;
    let e = s.ext(Ty::F32, glsl::EXP, &[na2])?;
    let pe = s.mul(poly, e)?;
    let r = s.sub(one, pe)?;
    let zero = s.f32(0.0);
    let neg = s.cmp(Cmp::Lt, x, zero)?;
    let nr = s.neg(r)?;
    s.select(neg, nr, r)
}
