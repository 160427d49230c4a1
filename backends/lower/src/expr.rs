//! Lowering an expression tree (a map's, the mask's, a reduction's argument) to typed MLIR at one
//! position, written once for every back end.
//!
//! The tree's leaves are values of other nodes, indices and dims; where they come from is the
//! back end's business (a buffer of the work item, a score fragment in registers, a shared-memory
//! tile), so they are asked for through [`Leaves`]. Math functions go through
//! [`MathHooks`]. Everything else is here: the types of the language (`float` is f32, `int` is
//! i32, `bool` is i1, with the reference's mixing rules), Python's floor division and remainder,
//! the elementwise built-ins in terms of primitives, the reductions along the feature axis as
//! loops, and element extraction with its range check.

use crate::emit::{Arith, Cmp, Const, Emitter};
use crate::math::MathHooks;
use crate::types::{Ty, Val};
use attnc_ir::expr::Builtin;
use attnc_ir::graph::{Graph, PortType, ValueRef};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::{Feature, FrameIndex, ScalarKind};
use attnc_passes::fusion::tree::Tree;

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    /// A construct this back end does not lower yet (the message says which and where).
    #[error("{0}")]
    Unsupported(String),
    /// A broken invariant of the compiler.
    #[error("internal compiler error: {0}")]
    Internal(String),
}

/// Where the leaves of a tree come from, for one position of the loop nest.
pub trait Leaves {
    /// A value computed by another node; `feature` is the element of a vector value (`None` for
    /// a scalar one, which broadcasts).
    fn value(
        &mut self,
        e: &mut Emitter,
        v: ValueRef,
        feature: Option<&Val>,
    ) -> Result<Val, LowerError>;
    /// A frame index at this position, as i32.
    fn index(&mut self, e: &mut Emitter, fi: FrameIndex) -> Result<Val, LowerError>;
    /// A dim's value, as i32.
    fn dim(&mut self, e: &mut Emitter, name: &str) -> Result<Val, LowerError>;
    /// The length (index) of a vector value.
    fn len(&mut self, e: &mut Emitter, v: ValueRef) -> Result<Val, LowerError>;
    /// Element `k` (i32) of a vector value, checked against its length; an index out of range is
    /// reported at run time (through the kernel's status word) and never read.
    fn element(&mut self, e: &mut Emitter, v: ValueRef, k: &Val) -> Result<Val, LowerError>;
}

/// The language type of a scalar kind in kernels.
pub fn ty_of(kind: ScalarKind) -> Ty {
    match kind {
        ScalarKind::Float => Ty::F32,
        ScalarKind::Int => Ty::I32,
        ScalarKind::Bool => Ty::I1,
    }
}

fn value_kind(graph: &Graph, v: ValueRef) -> ScalarKind {
    match graph.result_type(v) {
        PortType::Value(t) => t.kind,
        PortType::Tensor(t) => {
            if t.dtype.is_float() {
                ScalarKind::Float
            } else {
                ScalarKind::Int
            }
        }
    }
}

/// The kind of arithmetic on two kinds: int only when both are.
fn unify(a: ScalarKind, b: ScalarKind) -> ScalarKind {
    if a == ScalarKind::Int && b == ScalarKind::Int {
        ScalarKind::Int
    } else {
        ScalarKind::Float
    }
}

/// Whether a tree's value can differ between two positions of `index`.
pub fn varies_with(graph: &Graph, t: &Tree, index: FrameIndex) -> bool {
    match t {
        Tree::Value(v) => match graph.try_result_type(*v) {
            Some(PortType::Value(ty)) => ty.indices.contains(index),
            _ => true,
        },
        Tree::Index(fi) => *fi == index,
        Tree::Dim(_) | Tree::Int(_) | Tree::Float(_) => false,
        Tree::Unary(_, a) => varies_with(graph, a, index),
        Tree::Binary(_, a, b) => varies_with(graph, a, index) || varies_with(graph, b, index),
        Tree::Call(_, args) => args.iter().any(|a| varies_with(graph, a, index)),
        Tree::Extract(v, k) => varies_with(graph, v, index) || varies_with(graph, k, index),
    }
}

/// The kind of a tree's value, by the language's rules.
pub fn kind_of(graph: &Graph, t: &Tree) -> ScalarKind {
    use ScalarKind::{Bool, Float, Int};
    match t {
        Tree::Value(v) => value_kind(graph, *v),
        Tree::Index(_) | Tree::Dim(_) | Tree::Int(_) => Int,
        Tree::Float(_) => Float,
        Tree::Unary(UnaryOp::Not, _) => Bool,
        Tree::Unary(UnaryOp::Neg, a) => kind_of(graph, a),
        Tree::Binary(op, a, b) => match op {
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::And
            | BinaryOp::Or => Bool,
            BinaryOp::Div => Float,
            _ => unify(kind_of(graph, a), kind_of(graph, b)),
        },
        Tree::Call(f, args) => match f {
            Builtin::ToInt => Int,
            Builtin::Min | Builtin::Max => {
                unify(kind_of(graph, &args[0]), kind_of(graph, &args[1]))
            }
            Builtin::Select => match (kind_of(graph, &args[1]), kind_of(graph, &args[2])) {
                (Bool, Bool) => Bool,
                (a, b) => unify(a, b),
            },
            Builtin::Abs => kind_of(graph, &args[0]),
            _ => Float,
        },
        Tree::Extract(v, _) => kind_of(graph, v),
    }
}

/// Whether a tree is vector-valued (varies along a feature axis).
pub fn is_vector(graph: &Graph, t: &Tree) -> bool {
    match t {
        Tree::Value(v) => matches!(
            graph.result_type(*v),
            PortType::Value(ty) if matches!(ty.feature, Feature::Vector(_))
        ),
        Tree::Unary(_, a) => is_vector(graph, a),
        Tree::Binary(_, a, b) => is_vector(graph, a) || is_vector(graph, b),
        Tree::Call(f, args) => {
            !is_feature_reduction(*f) && args.iter().any(|a| is_vector(graph, a))
        }
        _ => false,
    }
}

/// Whether a built-in reduces along the feature axis (its result is a scalar per point).
pub fn is_feature_reduction(f: Builtin) -> bool {
    matches!(
        f,
        Builtin::Dot
            | Builtin::SumFeature
            | Builtin::MeanFeature
            | Builtin::MaxFeature
            | Builtin::MinFeature
            | Builtin::Norm
    )
}

/// The first vector-valued leaf of a tree: what a feature loop over it runs to the length of.
pub fn vector_leaf(graph: &Graph, t: &Tree) -> Option<ValueRef> {
    match t {
        Tree::Value(v) if is_vector(graph, t) => Some(*v),
        Tree::Unary(_, a) => vector_leaf(graph, a),
        Tree::Binary(_, a, b) => vector_leaf(graph, a).or_else(|| vector_leaf(graph, b)),
        Tree::Call(f, args) if !is_feature_reduction(*f) => {
            args.iter().find_map(|a| vector_leaf(graph, a))
        }
        _ => None,
    }
}

/// Lowers trees at one position. `cache` keeps values already computed at this position (the
/// caller clears it when the position changes), so a weight that several reductions share is
/// computed once.
pub struct ExprLowering<'a> {
    pub graph: &'a Graph,
    pub math: &'a dyn MathHooks,
    cache: Vec<(Tree, Option<String>, Val)>,
    pub caching: bool,
}

impl<'a> ExprLowering<'a> {
    pub fn new(graph: &'a Graph, math: &'a dyn MathHooks) -> Self {
        ExprLowering {
            graph,
            math,
            cache: Vec::new(),
            caching: false,
        }
    }

    /// Forgets cached values: the position changed, or the code left the region they dominate.
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    /// The value of `t` (at `feature` of a vector-valued tree), in the type of its kind.
    pub fn lower(
        &mut self,
        e: &mut Emitter,
        leaves: &mut dyn Leaves,
        t: &Tree,
        feature: Option<&Val>,
    ) -> Result<Val, LowerError> {
        let key = feature.map(|f| f.name.clone());
        if self.caching
            && let Some((_, _, v)) = self.cache.iter().find(|(tt, k, _)| tt == t && *k == key)
        {
            return Ok(v.clone());
        }
        let v = self.lower_uncached(e, leaves, t, feature)?;
        if self.caching {
            self.cache.push((t.clone(), key, v.clone()));
        }
        Ok(v)
    }

    /// The value of `t` as f32 (ints convert exactly below 2^24, truth values are 0 or 1).
    pub fn lower_f32(
        &mut self,
        e: &mut Emitter,
        leaves: &mut dyn Leaves,
        t: &Tree,
        feature: Option<&Val>,
    ) -> Result<Val, LowerError> {
        let v = self.lower(e, leaves, t, feature)?;
        Ok(e.cast(&v, &Ty::F32))
    }

    /// The value of `t` as a truth value.
    pub fn lower_bool(
        &mut self,
        e: &mut Emitter,
        leaves: &mut dyn Leaves,
        t: &Tree,
        feature: Option<&Val>,
    ) -> Result<Val, LowerError> {
        let v = self.lower(e, leaves, t, feature)?;
        Ok(e.cast(&v, &Ty::I1))
    }

    fn lower_uncached(
        &mut self,
        e: &mut Emitter,
        leaves: &mut dyn Leaves,
        t: &Tree,
        feature: Option<&Val>,
    ) -> Result<Val, LowerError> {
        let graph = self.graph;
        Ok(match t {
            Tree::Value(v) => {
                let f = if is_vector(graph, t) { feature } else { None };
                if is_vector(graph, t) && f.is_none() {
                    return Err(LowerError::Internal(format!(
                        "node {} is a vector but is read without a feature position",
                        v.node.index()
                    )));
                }
                let x = leaves.value(e, *v, f)?;
                let want = ty_of(value_kind(graph, *v));
                e.cast(&x, &want)
            }
            Tree::Index(fi) => leaves.index(e, *fi)?,
            Tree::Dim(d) => leaves.dim(e, d)?,
            Tree::Int(i) => e.constant(Const::Int(*i), &Ty::I32),
            Tree::Float(x) => e.f32(*x),
            Tree::Unary(UnaryOp::Neg, a) => {
                let a = self.lower(e, leaves, a, feature)?;
                e.neg(&a)
            }
            Tree::Unary(UnaryOp::Not, a) => {
                let a = self.lower_bool(e, leaves, a, feature)?;
                e.not(&a)
            }
            Tree::Binary(op, a, b) => self.binary(e, leaves, *op, a, b, feature)?,
            Tree::Call(f, args) => self.call(e, leaves, *f, args, feature)?,
            Tree::Extract(v, k) => {
                let k = self.lower(e, leaves, k, feature)?;
                let k = e.cast(&k, &Ty::I32);
                match v.as_ref() {
                    Tree::Value(vv) => {
                        let x = leaves.element(e, *vv, &k)?;
                        let want = ty_of(value_kind(graph, *vv));
                        e.cast(&x, &want)
                    }
                    other => {
                        return Err(LowerError::Unsupported(format!(
                            "indexing the computed vector `{}` (bind it with `let` first)",
                            other.render(&Default::default())
                        )));
                    }
                }
            }
        })
    }

    fn binary(
        &mut self,
        e: &mut Emitter,
        leaves: &mut dyn Leaves,
        op: BinaryOp,
        a: &Tree,
        b: &Tree,
        feature: Option<&Val>,
    ) -> Result<Val, LowerError> {
        let graph = self.graph;
        if matches!(op, BinaryOp::And | BinaryOp::Or) {
            let x = self.lower_bool(e, leaves, a, feature)?;
            let y = self.lower_bool(e, leaves, b, feature)?;
            return Ok(if op == BinaryOp::And {
                e.and(&x, &y)
            } else {
                e.or(&x, &y)
            });
        }
        if op == BinaryOp::MatMul {
            return Err(LowerError::Unsupported(
                "`@` outside a recurrence".to_string(),
            ));
        }
        let (ka, kb) = (kind_of(graph, a), kind_of(graph, b));
        let x = self.lower(e, leaves, a, feature)?;
        let y = self.lower(e, leaves, b, feature)?;
        let ints = ka == ScalarKind::Int && kb == ScalarKind::Int;
        let bools = ka == ScalarKind::Bool && kb == ScalarKind::Bool;
        let cmp = |p| Some(p);
        let comparison = match op {
            BinaryOp::Eq => cmp(Cmp::Eq),
            BinaryOp::Ne => cmp(Cmp::Ne),
            BinaryOp::Lt => cmp(Cmp::Lt),
            BinaryOp::Le => cmp(Cmp::Le),
            BinaryOp::Gt => cmp(Cmp::Gt),
            BinaryOp::Ge => cmp(Cmp::Ge),
            _ => None,
        };
        if let Some(p) = comparison {
            return Ok(if ints || bools {
                e.cmp(p, &x, &y)
            } else {
                let (x, y) = (e.cast(&x, &Ty::F32), e.cast(&y, &Ty::F32));
                e.cmp(p, &x, &y)
            });
        }
        if ints && op != BinaryOp::Div {
            return Ok(match op {
                BinaryOp::Add => e.add(&x, &y),
                BinaryOp::Sub => e.sub(&x, &y),
                BinaryOp::Mul => e.mul(&x, &y),
                BinaryOp::FloorDiv => {
                    let d = nonzero(e, &y);
                    e.arith(Arith::FloorDiv, &x, &d)
                }
                BinaryOp::Rem => python_rem(e, &x, &y),
                _ => unreachable_op(op)?,
            });
        }
        let (x, y) = (e.cast(&x, &Ty::F32), e.cast(&y, &Ty::F32));
        Ok(match op {
            BinaryOp::Add => e.add(&x, &y),
            BinaryOp::Sub => e.sub(&x, &y),
            BinaryOp::Mul => e.mul(&x, &y),
            // Under approximate division, a divisor that does not vary along the key axis
            // becomes a reciprocal (computed once: the code generator hoists and shares it) and
            // a multiply per element, which keeps the special-function unit free for exp2.
            BinaryOp::Div if e.fast.approx_div && !varies_with(graph, b, FrameIndex::J) => {
                let one = e.f32(1.0);
                let r = e.div(&one, &y);
                e.mul(&x, &r)
            }
            BinaryOp::Div => e.div(&x, &y),
            BinaryOp::FloorDiv => {
                let q = e.div(&x, &y);
                self.math.floor(e, &q)
            }
            BinaryOp::Rem => {
                let q = e.div(&x, &y);
                let fq = self.math.floor(e, &q);
                let m = e.mul(&y, &fq);
                e.sub(&x, &m)
            }
            _ => unreachable_op(op)?,
        })
    }

    fn call(
        &mut self,
        e: &mut Emitter,
        leaves: &mut dyn Leaves,
        f: Builtin,
        args: &[Tree],
        feature: Option<&Val>,
    ) -> Result<Val, LowerError> {
        let graph = self.graph;
        if is_feature_reduction(f) {
            return self.feature_reduction(e, leaves, f, args);
        }
        match f {
            Builtin::Min | Builtin::Max => {
                let (ka, kb) = (kind_of(graph, &args[0]), kind_of(graph, &args[1]));
                let x = self.lower(e, leaves, &args[0], feature)?;
                let y = self.lower(e, leaves, &args[1], feature)?;
                return Ok(if ka == ScalarKind::Int && kb == ScalarKind::Int {
                    if f == Builtin::Min {
                        e.min(&x, &y)
                    } else {
                        e.max(&x, &y)
                    }
                } else {
                    let (x, y) = (e.cast(&x, &Ty::F32), e.cast(&y, &Ty::F32));
                    if f == Builtin::Min {
                        self.math.min_num(e, &x, &y)
                    } else {
                        self.math.max_num(e, &x, &y)
                    }
                });
            }
            Builtin::Select => {
                let c = self.lower_bool(e, leaves, &args[0], feature)?;
                let (ka, kb) = (kind_of(graph, &args[1]), kind_of(graph, &args[2]));
                let want = if ka == ScalarKind::Bool && kb == ScalarKind::Bool {
                    Ty::I1
                } else {
                    ty_of(unify(ka, kb))
                };
                let a = self.lower(e, leaves, &args[1], feature)?;
                let b = self.lower(e, leaves, &args[2], feature)?;
                let (a, b) = (e.cast(&a, &want), e.cast(&b, &want));
                return Ok(e.select(&c, &a, &b));
            }
            Builtin::ToInt => {
                let x = self.lower(e, leaves, &args[0], feature)?;
                if x.ty == Ty::I32 {
                    return Ok(x);
                }
                let x = e.cast(&x, &Ty::F32);
                let fl = self.math.floor(e, &x);
                return Ok(e.cast(&fl, &Ty::I32));
            }
            Builtin::Abs if kind_of(graph, &args[0]) == ScalarKind::Int => {
                let x = self.lower(e, leaves, &args[0], feature)?;
                let n = e.neg(&x);
                return Ok(e.max(&x, &n));
            }
            Builtin::Cumsum | Builtin::Cumprod => {
                return Err(LowerError::Unsupported(format!(
                    "`{}` of a value that varies with i or j (prefix scans run over per-head vectors)",
                    f.name()
                )));
            }
            Builtin::Outer | Builtin::Diag => {
                return Err(LowerError::Unsupported(format!(
                    "`{}` outside a recurrence",
                    f.name()
                )));
            }
            _ => {}
        }
        let mut v = Vec::with_capacity(args.len());
        for a in args {
            v.push(self.lower_f32(e, leaves, a, feature)?);
        }
        self.float_call(e, f, &v)
    }

    /// A float built-in of evaluated f32 arguments.
    pub fn float_call(&self, e: &mut Emitter, f: Builtin, v: &[Val]) -> Result<Val, LowerError> {
        let m = self.math;
        let x = &v[0];
        Ok(match f {
            Builtin::Exp => m.exp(e, x),
            Builtin::Log => m.log(e, x),
            Builtin::Log1p => m.log1p(e, x),
            Builtin::Sqrt => m.sqrt(e, x),
            Builtin::Rsqrt => m.rsqrt(e, x),
            Builtin::Tanh => m.tanh(e, x),
            Builtin::Abs => m.abs(e, x),
            Builtin::Sin => m.sin(e, x),
            Builtin::Cos => m.cos(e, x),
            Builtin::Tan => m.tan(e, x),
            Builtin::Asin => m.asin(e, x),
            Builtin::Acos => m.acos(e, x),
            Builtin::Atan => m.atan(e, x),
            Builtin::Sinh => m.sinh(e, x),
            Builtin::Cosh => m.cosh(e, x),
            Builtin::Expm1 => m.expm1(e, x),
            Builtin::Exp2 => m.exp2(e, x),
            Builtin::Log2 => m.log2(e, x),
            Builtin::Erf => m.erf(e, x),
            Builtin::Sign => {
                // 1 above 0, -1 below, and x itself for 0 and NaN (both comparisons false).
                let zero = e.f32(0.0);
                let one = e.f32(1.0);
                let minus = e.f32(-1.0);
                let pos = e.cmp(Cmp::Gt, x, &zero);
                let neg = e.cmp(Cmp::Lt, x, &zero);
                let lo = e.select(&neg, &minus, x);
                e.select(&pos, &one, &lo)
            }
            Builtin::Floor => m.floor(e, x),
            Builtin::Ceil => m.ceil(e, x),
            Builtin::ToFloat => x.clone(),
            Builtin::Pow => m.pow(e, x, &v[1]),
            Builtin::Relu => {
                let zero = e.f32(0.0);
                m.max_num(e, x, &zero)
            }
            Builtin::Sigmoid | Builtin::Silu => {
                // 1 / (1 + exp(-x)): exp(-x) overflows to inf for very negative x, giving 0.
                let n = e.neg(x);
                let ex = m.exp(e, &n);
                let one = e.f32(1.0);
                let d = e.add(&one, &ex);
                let s = e.div(&one, &d);
                if f == Builtin::Silu { e.mul(x, &s) } else { s }
            }
            Builtin::Softplus | Builtin::LogSigmoid => {
                // max(x, 0) + log1p(exp(-|x|)); log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|)).
                let a = m.abs(e, x);
                let n = e.neg(&a);
                let ex = m.exp(e, &n);
                let l = m.log1p(e, &ex);
                let zero = e.f32(0.0);
                if f == Builtin::Softplus {
                    let mx = m.max_num(e, x, &zero);
                    e.add(&mx, &l)
                } else {
                    let mn = m.min_num(e, x, &zero);
                    e.sub(&mn, &l)
                }
            }
            Builtin::Elu => {
                let zero = e.f32(0.0);
                let pos = e.cmp(Cmp::Gt, x, &zero);
                let em = m.expm1(e, x);
                e.select(&pos, x, &em)
            }
            Builtin::Gelu => {
                // The tanh approximation, as the reference computes it.
                let c = e.f32(0.044715);
                let k = e.f32((2.0 / std::f64::consts::PI).sqrt());
                let half = e.f32(0.5);
                let one = e.f32(1.0);
                let x2 = e.mul(x, x);
                let x3 = e.mul(&x2, x);
                let cx3 = e.mul(&c, &x3);
                let inner = e.add(x, &cx3);
                let scaled = e.mul(&k, &inner);
                let t = m.tanh(e, &scaled);
                let onet = e.add(&one, &t);
                let hx = e.mul(&half, x);
                e.mul(&hx, &onet)
            }
            other => {
                return Err(LowerError::Unsupported(format!(
                    "the built-in `{}` in this kernel",
                    other.name()
                )));
            }
        })
    }

    /// `dot`, `sum`, `mean`, `max`, `min`, `norm` along the feature axis: a loop.
    fn feature_reduction(
        &mut self,
        e: &mut Emitter,
        leaves: &mut dyn Leaves,
        f: Builtin,
        args: &[Tree],
    ) -> Result<Val, LowerError> {
        let graph = self.graph;
        let leaf = vector_leaf(graph, &args[0]).ok_or_else(|| {
            LowerError::Internal(format!("`{}` of a value with no feature axis", f.name()))
        })?;
        let len = leaves.len(e, leaf)?;
        let init = e.f32(match f {
            Builtin::MaxFeature => f64::NEG_INFINITY,
            Builtin::MinFeature => f64::INFINITY,
            _ => 0.0,
        });
        let lo = e.index(0);
        let one = e.index(1);
        // The loop body is its own region: values cached outside stay valid, those computed
        // inside must not escape it.
        let saved = std::mem::take(&mut self.cache);
        let caching = self.caching;
        self.caching = false;
        let (k, acc, lp) = e.for_iter(&lo, &len, &one, std::slice::from_ref(&init));
        let x = self.lower_f32(e, leaves, &args[0], Some(&k))?;
        let next = match f {
            Builtin::Dot => {
                let y = self.lower_f32(e, leaves, &args[1], Some(&k))?;
                self.math.fma(e, &x, &y, &acc[0])
            }
            Builtin::Norm => self.math.fma(e, &x, &x, &acc[0]),
            Builtin::MaxFeature => self.math.max_num(e, &acc[0], &x),
            Builtin::MinFeature => self.math.min_num(e, &acc[0], &x),
            _ => e.add(&acc[0], &x),
        };
        let r = e.end_for(&[next], lp).remove(0);
        self.cache = saved;
        self.caching = caching;
        Ok(match f {
            Builtin::MeanFeature => {
                let n = e.cast(&len, &Ty::F32);
                e.div(&r, &n)
            }
            Builtin::Norm => self.math.sqrt(e, &r),
            _ => r,
        })
    }
}

fn unreachable_op(op: BinaryOp) -> Result<Val, LowerError> {
    Err(LowerError::Internal(format!(
        "operator `{}` reached arithmetic lowering",
        op.symbol()
    )))
}

/// `b`, or 1 where it is 0: integer division by zero is undefined behaviour in LLVM, so the
/// divisor is made safe (the quotient is then meaningless, as it is in the language).
fn nonzero(e: &mut Emitter, b: &Val) -> Val {
    let zero = e.constant(Const::Int(0), &b.ty);
    let one = e.constant(Const::Int(1), &b.ty);
    let z = e.cmp(Cmp::Eq, b, &zero);
    e.select(&z, &one, b)
}

/// Python's `%`: the remainder takes the divisor's sign.
fn python_rem(e: &mut Emitter, a: &Val, b: &Val) -> Val {
    let d = nonzero(e, b);
    let r = e.arith(Arith::Rem, a, &d);
    let zero = e.constant(Const::Int(0), &a.ty);
    let r_neg = e.cmp(Cmp::Lt, &r, &zero);
    let d_neg = e.cmp(Cmp::Lt, &d, &zero);
    let r_nonzero = e.cmp(Cmp::Ne, &r, &zero);
    let signs = e.xor(&r_neg, &d_neg);
    let fix = e.and(&signs, &r_nonzero);
    let adjusted = e.add(&r, &d);
    e.select(&fix, &adjusted, &r)
}
