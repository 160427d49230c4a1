//! The recurrence's arena evaluated at one step of the scan, for one thread: its rows of its
//! value column of each matrix state (registers), the shared states and the step's values.
//! Contractions over rows are split between the threads of a column and combined by warp
//! shuffles; everything else is elementwise at the thread's position.

use super::{Ctx, Home, shape_of};
use crate::NvptxError;
use crate::classify::feature_of;
use attnc_ir::expr::{Builtin, ExprArena, ExprId, ExprNode, StateTime};
use attnc_ir::graph::{StateDef, ValueRef};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::{Dim, Feature};
use attnc_lower::{Cmp, Emitter, ExprLowering, MathHooks, PtxMath, Ty, Val};
use petgraph::stable_graph::NodeIndex;
use std::collections::HashMap;

/// One coordinate where an arena expression is evaluated.
#[derive(Clone, Debug)]
pub(super) enum Pos {
    /// Row `.0` of this thread's rows (unrolled), row `.1` of the vector.
    Row(usize, Val),
    /// This thread's value column.
    Own,
    /// A run-time position (an element of a shared state).
    At(Val),
}

impl Pos {
    fn key(&self) -> String {
        match self {
            Pos::Row(r, _) => format!("r{r}"),
            Pos::Own => "c".into(),
            Pos::At(v) => v.name.clone(),
        }
    }
}

/// Whether state reads see the values before this step's update or after it.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Phase {
    Update,
    Emit,
}

/// Evaluates the recurrence's arena at one step.
pub(super) struct Step<'c, 'a> {
    pub ctx: &'c Ctx<'a>,
    pub arena: &'c ExprArena,
    pub operands: &'c [ValueRef],
    pub states: &'c [StateDef],
    pub homes: &'c [Home],
    /// Each state's offset of the copy read (before the update) and written (after).
    pub cur: &'c [Val],
    pub next: &'c [Val],
    pub old: &'c [Vec<Val>],
    pub new: &'c [Vec<Val>],
    pub phase: Phase,
    /// Whether the threads of a column are together here (no divergent loop around), so that a
    /// contraction over rows is split between them; otherwise each thread sums every row.
    pub split: bool,
    /// Contractions already computed in this region, by node and position.
    pub cache: HashMap<(ExprId, Vec<String>), Val>,
    /// How many contractions over rows were written (not found in the cache).
    pub contractions: usize,
    pub node: NodeIndex,
    /// Values given for arena nodes at this site, read at the site's own position only: the
    /// chunked form's read-outs (`x @ S`, `dot(x, z)`), computed by its products.
    pub fixed: HashMap<ExprId, Val>,
}

impl Step<'_, '_> {
    fn err(&self, m: impl Into<String>) -> NvptxError {
        NvptxError::unsupported(self.ctx.graph, self.node, m)
    }

    fn feature(&self, id: ExprId) -> Feature {
        self.arena.ty(id).feature.clone()
    }

    fn len(&self, f: &Feature, axis: usize) -> Result<usize, NvptxError> {
        let (r, c) = shape_of(self.ctx.graph, self.node, f, &self.ctx.specialised)?;
        Ok(if axis == 0 { r } else { c })
    }

    /// An index into a vector of `len` elements at `p`, clamped into it (threads past the end
    /// of a shorter axis compute values nobody stores).
    fn index(&self, e: &mut Emitter, p: &Pos, len: usize) -> Val {
        match p {
            Pos::Row(_, at) => {
                let last = e.index(len as i64 - 1);
                e.min(at, &last)
            }
            Pos::Own => {
                let last = e.index(len as i64 - 1);
                e.min(&self.ctx.col, &last)
            }
            Pos::At(v) => {
                let last = e.index(len as i64 - 1);
                e.min(v, &last)
            }
        }
    }

    /// A child at the parent's position: a scalar child ignores it.
    pub fn broadcast(
        &mut self,
        e: &mut Emitter,
        id: ExprId,
        pos: &[Pos],
    ) -> Result<Val, NvptxError> {
        if self.feature(id) == Feature::Scalar {
            self.eval(e, id, &[])
        } else {
            self.eval(e, id, pos)
        }
    }

    fn state(
        &self,
        e: &mut Emitter,
        k: usize,
        time: StateTime,
        pos: &[Pos],
    ) -> Result<Val, NvptxError> {
        let after = match (self.phase, time) {
            (Phase::Update, StateTime::Previous) | (Phase::Emit, StateTime::Previous) => false,
            (Phase::Emit, StateTime::Current) => true,
            (Phase::Update, StateTime::Current) => {
                return Err(self.err("an update that reads a state's new value"));
            }
        };
        let name = &self.states[k].name;
        let Some(home) = self.homes.get(k) else {
            return Err(self.err(format!(
                "a read of the state `{name}` outside the read-outs of the chunked form"
            )));
        };
        match home {
            Home::Registers { rows } => match pos {
                [Pos::Row(r, _), Pos::Own] if r < rows && (self.split || self.ctx.group == 1) => {
                    let regs = if after { &self.new[k] } else { &self.old[k] };
                    Ok(regs[*r].clone())
                }
                _ => Err(self.err(format!(
                    "a read of the matrix state `{name}` across its columns (a contraction over them); the GPU scan keeps each value column of a state in its own threads"
                ))),
            },
            Home::Shared { buf, rows } => {
                let base = if after { &self.next[k] } else { &self.cur[k] };
                let i = match pos.first() {
                    Some(p) => self.index(e, p, *rows),
                    None => e.index(0),
                };
                let at = e.add(base, &i);
                Ok(e.load(&buf.view, &at))
            }
        }
    }

    pub fn eval(&mut self, e: &mut Emitter, id: ExprId, pos: &[Pos]) -> Result<Val, NvptxError> {
        if let Some(v) = self.fixed.get(&id) {
            return match pos {
                [] | [Pos::Own] => Ok(v.clone()),
                _ => Err(self.err(
                    "a read-out of a state used at another column than the output's (each thread of the chunked form has its own column's read-outs)",
                )),
            };
        }
        let key = (id, pos.iter().map(Pos::key).collect::<Vec<_>>());
        if let Some(v) = self.cache.get(&key) {
            return Ok(v.clone());
        }
        let v = self.eval_uncached(e, id, pos)?;
        let costly = matches!(
            self.arena.node(id),
            ExprNode::Binary(BinaryOp::MatMul, ..) | ExprNode::Call(..)
        );
        if costly {
            self.cache.insert(key, v.clone());
        }
        Ok(v)
    }

    fn eval_uncached(
        &mut self,
        e: &mut Emitter,
        id: ExprId,
        pos: &[Pos],
    ) -> Result<Val, NvptxError> {
        let graph = self.ctx.graph;
        Ok(match self.arena.node(id).clone() {
            ExprNode::Operand(k) => {
                let v = self.operands[k as usize];
                let Some(buf) = self.ctx.bufs.get(&v.node) else {
                    // The chunked form reads its loads where it uses them, unbuffered.
                    if let attnc_ir::graph::Op::Load { .. } = graph.node(v.node).op {
                        let f = feature_of(graph, v.node);
                        let at = match (&f, pos.first()) {
                            (Feature::Scalar, _) | (_, None) => None,
                            (_, Some(p)) => {
                                let len = self.len(&f, 0)?;
                                Some(self.index(e, p, len))
                            }
                        };
                        let x = self.ctx.load(e, v.node, at.as_ref())?;
                        return Ok(e.cast(&x, &Ty::F32));
                    }
                    return Err(NvptxError::internal(
                        graph,
                        self.node,
                        "a recurrence operand with no buffer",
                    ));
                };
                let i = match (feature_of(graph, v.node), pos.first()) {
                    (Feature::Scalar, _) | (_, None) => e.index(0),
                    (_, Some(p)) => self.index(e, p, buf.len),
                };
                let x = e.load(&buf.view, &i);
                e.cast(&x, &Ty::F32)
            }
            ExprNode::State(k, time) => self.state(e, k as usize, time, pos)?,
            ExprNode::Index(fi) => {
                let i = self
                    .ctx
                    .frame(fi)
                    .map_err(|err| NvptxError::lowering(graph, self.node, err))?;
                e.cast(&i, &Ty::F32)
            }
            ExprNode::Dim(d) => {
                let i = self.ctx.dim_index(e, &Dim::Sym(d.clone()));
                e.cast(&i, &Ty::F32)
            }
            ExprNode::Int(v) => e.f32(v as f64),
            ExprNode::Float(v) => e.f32(v),
            ExprNode::Unary(UnaryOp::Neg, a) => {
                let a = self.broadcast(e, a, pos)?;
                e.neg(&a)
            }
            ExprNode::Unary(UnaryOp::Not, a) => {
                let a = self.broadcast(e, a, pos)?;
                let one = e.f32(1.0);
                e.sub(&one, &a)
            }
            ExprNode::Binary(BinaryOp::MatMul, a, b) => self.matmul(e, a, b, pos)?,
            ExprNode::Binary(op, a, b) => {
                let x = self.broadcast(e, a, pos)?;
                let y = self.broadcast(e, b, pos)?;
                self.binary(e, op, &x, &y)?
            }
            ExprNode::Call(Builtin::Outer, args) => {
                let x = self.eval(e, args[0], &pos[..1])?;
                let y = self.eval(e, args[1], &pos[1..])?;
                e.mul(&x, &y)
            }
            ExprNode::Call(
                f @ (Builtin::Dot
                | Builtin::SumFeature
                | Builtin::MeanFeature
                | Builtin::MaxFeature
                | Builtin::MinFeature
                | Builtin::Norm),
                args,
            ) => self.feature_reduction(e, f, &args)?,
            ExprNode::Call(f, args) => {
                let mut vals = Vec::with_capacity(args.len());
                for a in &args {
                    vals.push(self.broadcast(e, *a, pos)?);
                }
                match f {
                    Builtin::Min => PtxMath.min_num(e, &vals[0], &vals[1]),
                    Builtin::Max => PtxMath.max_num(e, &vals[0], &vals[1]),
                    Builtin::Select => {
                        let zero = e.f32(0.0);
                        let c = e.cmp(Cmp::Ne, &vals[0], &zero);
                        e.select(&c, &vals[1], &vals[2])
                    }
                    _ => {
                        let low = ExprLowering::new(graph, &PtxMath);
                        low.float_call(e, f, &vals)
                            .map_err(|err| NvptxError::lowering(graph, self.node, err))?
                    }
                }
            }
            ExprNode::Extract(..) => return Err(self.err("indexing a vector inside a recurrence")),
        })
    }

    fn binary(&self, e: &mut Emitter, op: BinaryOp, x: &Val, y: &Val) -> Result<Val, NvptxError> {
        let truth = |e: &mut Emitter, c: Cmp| {
            let b = e.cmp(c, x, y);
            e.cast(&b, &Ty::F32)
        };
        Ok(match op {
            BinaryOp::Add => e.add(x, y),
            BinaryOp::Sub => e.sub(x, y),
            BinaryOp::Mul => e.mul(x, y),
            BinaryOp::Div => e.div(x, y),
            BinaryOp::FloorDiv => {
                let q = e.div(x, y);
                PtxMath.floor(e, &q)
            }
            BinaryOp::Rem => {
                let q = e.div(x, y);
                let f = PtxMath.floor(e, &q);
                let m = e.mul(y, &f);
                e.sub(x, &m)
            }
            BinaryOp::Eq => truth(e, Cmp::Eq),
            BinaryOp::Ne => truth(e, Cmp::Ne),
            BinaryOp::Lt => truth(e, Cmp::Lt),
            BinaryOp::Le => truth(e, Cmp::Le),
            BinaryOp::Gt => truth(e, Cmp::Gt),
            BinaryOp::Ge => truth(e, Cmp::Ge),
            BinaryOp::And => e.mul(x, y),
            BinaryOp::Or => PtxMath.max_num(e, x, y),
            BinaryOp::MatMul => return Err(self.err("`@` of these shapes")),
        })
    }

    fn matmul(
        &mut self,
        e: &mut Emitter,
        a: ExprId,
        b: ExprId,
        pos: &[Pos],
    ) -> Result<Val, NvptxError> {
        let diag = |id: ExprId| match self.arena.node(id) {
            ExprNode::Call(Builtin::Diag, args) => Some(args[0]),
            _ => None,
        };
        if let Some(d) = diag(a) {
            let x = self.eval(e, d, &pos[..1])?;
            let m = self.eval(e, b, pos)?;
            return Ok(e.mul(&x, &m));
        }
        if let Some(d) = diag(b) {
            let m = self.eval(e, a, pos)?;
            let x = self.eval(e, d, &pos[1..])?;
            return Ok(e.mul(&m, &x));
        }
        self.contractions += 1;
        let (fa, fb) = (self.feature(a), self.feature(b));
        let inner = self.len(
            &fa,
            if matches!(fa, Feature::Matrix(..)) {
                1
            } else {
                0
            },
        )?;
        let mut acc = e.f32(0.0);
        for (k, valid) in self.reduction_rows(e, inner) {
            let (pa, pb) = match (&fa, &fb) {
                (Feature::Vector(_), Feature::Matrix(..)) => {
                    (vec![k.clone()], vec![k, pos[0].clone()])
                }
                (Feature::Matrix(..), Feature::Vector(_)) => {
                    (vec![pos[0].clone(), k.clone()], vec![k])
                }
                (Feature::Matrix(..), Feature::Matrix(..)) => {
                    (vec![pos[0].clone(), k.clone()], vec![k, pos[1].clone()])
                }
                _ => return Err(self.err("`@` of these shapes")),
            };
            let x = self.eval(e, a, &pa)?;
            let x = masked(e, valid.as_ref(), &x, 0.0);
            let y = self.eval(e, b, &pb)?;
            acc = PtxMath.fma(e, &x, &y, &acc);
        }
        Ok(self.across(e, acc, Builtin::SumFeature))
    }

    /// The rows of a reduction over `len` elements this thread sums, with whether each is inside
    /// (`None`: always): a share of them where the column's threads split it, else all.
    fn reduction_rows(&self, e: &mut Emitter, len: usize) -> Vec<(Pos, Option<Val>)> {
        let g = self.ctx.group;
        if !self.split || g == 1 {
            return (0..len)
                .map(|r| (Pos::Row(r, e.index(r as i64)), None))
                .collect();
        }
        let per = len.div_ceil(g);
        let share = e.index(per as i64);
        let first = e.mul(&self.ctx.slab, &share);
        let end = e.index(len as i64);
        (0..per)
            .map(|i| {
                let o = e.index(i as i64);
                let at = e.add(&first, &o);
                let valid = (!len.is_multiple_of(g)).then(|| e.cmp(Cmp::Lt, &at, &end));
                (Pos::Row(i, at), valid)
            })
            .collect()
    }

    /// A reduction's partial value combined over the threads of a column (adjacent lanes).
    fn across(&self, e: &mut Emitter, mut acc: Val, f: Builtin) -> Val {
        if !self.split {
            return acc;
        }
        let mut m = 1;
        while m < self.ctx.group {
            let other = crate::mma::shuffle_xor(e, &acc, m as u32);
            acc = match f {
                Builtin::MaxFeature => PtxMath.max_num(e, &acc, &other),
                Builtin::MinFeature => PtxMath.min_num(e, &acc, &other),
                _ => e.add(&acc, &other),
            };
            m *= 2;
        }
        acc
    }

    fn feature_reduction(
        &mut self,
        e: &mut Emitter,
        f: Builtin,
        args: &[ExprId],
    ) -> Result<Val, NvptxError> {
        self.contractions += 1;
        let len = self.len(&self.feature(args[0]), 0)?;
        let identity = match f {
            Builtin::MaxFeature => f64::NEG_INFINITY,
            Builtin::MinFeature => f64::INFINITY,
            _ => 0.0,
        };
        let mut acc = e.f32(identity);
        for (r, valid) in self.reduction_rows(e, len) {
            let p = [r];
            let x = self.eval(e, args[0], &p)?;
            let x = masked(e, valid.as_ref(), &x, identity);
            acc = match f {
                Builtin::Dot => {
                    let y = self.eval(e, args[1], &p)?;
                    PtxMath.fma(e, &x, &y, &acc)
                }
                Builtin::Norm => PtxMath.fma(e, &x, &x, &acc),
                Builtin::MaxFeature => PtxMath.max_num(e, &acc, &x),
                Builtin::MinFeature => PtxMath.min_num(e, &acc, &x),
                _ => e.add(&acc, &x),
            };
        }
        let acc = self.across(e, acc, f);
        Ok(match f {
            Builtin::MeanFeature => {
                let n = e.f32(len as f64);
                e.div(&acc, &n)
            }
            Builtin::Norm => PtxMath.sqrt(e, &acc),
            _ => acc,
        })
    }
}

/// `x` where `valid` holds (or always), else the reduction's identity.
fn masked(e: &mut Emitter, valid: Option<&Val>, x: &Val, identity: f64) -> Val {
    match valid {
        Some(v) => {
            let i = e.f32(identity);
            e.select(v, x, &i)
        }
        None => x.clone(),
    }
}
