//! The recurrent template as one compute shader, in its scan form: per (b, h) a loop over the
//! steps t computes the step inputs (loads, feature maps, gates), every state's new value from
//! the previous ones (updates are simultaneous, so new values go to a second array and are
//! copied back), then the emitted values, which read the updated states, into the outputs.
//!
//! States are f32 in per-invocation arrays. Where every matrix state has the same number of
//! columns and nothing reads a matrix state across its columns (updates such as
//! `a * S + outer(k, v)` or the delta rule's `S - β outer(k, k @ S)`, read-outs `q @ S`), the
//! columns are independent: an invocation owns one column of each matrix state (and keeps its
//! own copy of every vector and scalar state), and a workgroup covers (b, h, a slice of
//! columns). Otherwise one invocation per (b, h) keeps every state whole. Which applies is
//! found by writing the column form and checking each state read (`Columns::Own`). Batch,
//! heads and steps are run-time dims; only the head dims are specialised.

use crate::error::{Result, SpirvError};
use crate::expr::float_call;
use crate::shader::{Cmp, Shader, Ty, Val, glsl};
use crate::values::{Ctx, Tensor};
use attnc_ir::expr::{Builtin, ExprArena, ExprId, ExprNode, StateTime};
use attnc_ir::graph::{Graph, Op, PortType, StateDef, ValueRef};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::{Dim, Feature, FrameIndex};
use attnc_passes::fusion::recurrent::RecurrentKernel;
use rspirv::spirv::Word;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Columns per workgroup at most where invocations own state columns.
pub(crate) const COLUMNS_PER_WORKGROUP: u32 = 32;

/// Loops over state rows and feature vectors up to this length are unrolled in the scan.
/// Lavapipe (Mesa 22, LLVM 15) loses a workgroup's per-invocation arrays after some tens of
/// thousands of executions of loops nested in the step loop (a D = 64 scan went wrong after
/// 143 steps, and after 250 with fewer inner loops), so the step loop's body has none.
pub(crate) const UNROLL: u32 = 256;

/// What [`write`] built besides the module.
pub(crate) struct Written {
    pub module: rspirv::dr::Module,
    pub guards: Vec<crate::values::GuardSite>,
    /// Invocations per workgroup.
    pub threads: u32,
    /// Workgroups along x per (b, h).
    pub slices: u32,
    /// The mapping, in words.
    pub mapping: String,
    /// Bytes of workgroup memory the shader declares.
    pub shared_bytes: u32,
}

/// How state columns map to invocations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Columns {
    /// Each invocation owns one column of every matrix state (all have `cols` columns).
    Own { cols: u32 },
    /// One invocation holds every state whole.
    Whole,
}

/// Writes the scan of `plan` as entry point `entry`.
pub(crate) fn write(
    graph: &Graph,
    plan: &RecurrentKernel,
    specialised: &BTreeMap<String, i64>,
    entry: &str,
) -> Result<Written> {
    let Op::Recurrence { states, emits, .. } = &graph.node(plan.recurrence).op else {
        return Err(SpirvError::internal(
            "a recurrent plan without its recurrence",
        ));
    };
    let constant = |d: &Dim| d.eval(specialised).ok().map(|v| v.max(1) as u32);
    let mut cols: BTreeSet<Option<u32>> = BTreeSet::new();
    for s in states {
        if let Feature::Matrix(_, c) = &s.feature {
            cols.insert(constant(c));
        }
    }
    let arena = recurrence_arena(graph, plan)?;
    let emits_fit = |c: u32| {
        emits.iter().all(|e| match &arena.ty(*e).feature {
            Feature::Scalar => true,
            Feature::Vector(d) => constant(d) == Some(c),
            _ => false,
        })
    };
    if let [Some(c)] = cols.iter().copied().collect::<Vec<_>>()[..]
        && emits_fit(c)
    {
        let written = write_as(graph, plan, specialised, entry, Columns::Own { cols: c })?;
        if let Some(w) = written {
            return Ok(w);
        }
    }
    write_as(graph, plan, specialised, entry, Columns::Whole)?
        .ok_or_else(|| SpirvError::internal("a whole-state scan read a column it does not hold"))
}

fn recurrence_arena<'g>(graph: &'g Graph, plan: &RecurrentKernel) -> Result<&'g ExprArena> {
    match &graph.node(plan.recurrence).op {
        Op::Recurrence { arena, .. } => Ok(arena),
        _ => Err(SpirvError::internal(
            "a recurrent plan without its recurrence",
        )),
    }
}

/// The module in mapping `columns`, or `None` where some state read needs a column the
/// invocation does not own.
fn write_as(
    graph: &Graph,
    plan: &RecurrentKernel,
    specialised: &BTreeMap<String, i64>,
    entry: &str,
    columns: Columns,
) -> Result<Option<Written>> {
    let Op::Recurrence { states, emits, .. } = &graph.node(plan.recurrence).op else {
        return Err(SpirvError::internal(
            "a recurrent plan without its recurrence",
        ));
    };
    let outputs = outputs(graph, plan)?;
    let (threads, slices) = match columns {
        Columns::Own { cols } => {
            let threads = cols.min(COLUMNS_PER_WORKGROUP);
            (threads, cols.div_ceil(threads))
        }
        Columns::Whole => (1, 1),
    };
    let mut s = Shader::new();
    s.unroll = UNROLL;
    let (mut ctx, globals) = crate::kernel::bind(&mut s, graph, specialised)?;
    let f = s.begin_function()?;
    crate::kernel::read_dims(&mut s, &mut ctx, globals.push_block)?;
    let (own, inside) = invocation(&mut s, &mut ctx, &globals, columns, threads)?;
    let mut bufs = Vec::new();
    for st in states {
        let (rows, width) = extent(&ctx, &st.feature)?;
        let len = match (columns, &st.feature) {
            (Columns::Own { .. }, Feature::Matrix(..)) => rows,
            _ => rows * width,
        };
        let current = s.array_local(Ty::F32, len);
        let next = s.array_local(Ty::F32, len);
        let zero = s.f32(0.0);
        s.features(len, |s, k| {
            let p = s.local_element(current, Ty::F32, k)?;
            s.store(p, zero)
        })?;
        bufs.push(StateBuf {
            current,
            next,
            rows,
            cols: width,
            len,
        });
    }
    let operands = recurrence_operands(graph, plan);
    let (mut step, steps) = Step::new(&mut s, ctx, plan, &operands, &bufs, columns, own)?;
    let zero = s.i32(0);
    s.for_range(zero, steps, |s, t| {
        step.ctx.frame.insert(FrameIndex::T, t);
        for &n in &plan.step_inputs {
            crate::nodes::compute(s, &mut step.ctx, &mut step.low, n, true)?;
        }
        step.updates(s, states)?;
        step.emit(s, emits, &outputs, inside)
    })?;
    if step.nonlocal {
        return Ok(None);
    }
    s.finish_function(f, entry, threads)?;
    let guards = std::mem::take(&mut step.ctx.guards);
    let mapping = match columns {
        Columns::Own { cols } => format!(
            "a sequential scan over t per (b, h, slice of {threads} state columns), {slices} slice(s) of {cols} columns; an invocation keeps one column of each matrix state and the vector states in f32 registers"
        ),
        Columns::Whole => {
            "a sequential scan over t per (b, h), one invocation keeping every state whole in f32 registers".into()
        }
    };
    Ok(Some(Written {
        module: s.module(),
        guards,
        threads,
        slices,
        mapping,
        shared_bytes: 0,
    }))
}

/// The recurrence's operands, in the order its arena's `Operand`s number them.
pub(crate) fn recurrence_operands(graph: &Graph, plan: &RecurrentKernel) -> Vec<ValueRef> {
    graph
        .operands(plan.recurrence)
        .iter()
        .map(|(v, _)| *v)
        .collect()
}

/// Reads the dims and the invocation's place: b and h from the workgroup, and where columns
/// are owned, the invocation's column (the last one again past the end) and whether it exists.
pub(crate) fn invocation(
    s: &mut Shader,
    ctx: &mut Ctx<'_>,
    globals: &crate::kernel::Globals,
    columns: Columns,
    threads: u32,
) -> Result<(Option<Val>, Val)> {
    crate::kernel::read_dims(s, ctx, globals.push_block)?;
    let slice = s.builtin_component(globals.workgroup, 0)?;
    let h = s.builtin_component(globals.workgroup, 1)?;
    let b = s.builtin_component(globals.workgroup, 2)?;
    let local = s.builtin_component(globals.local, 0)?;
    ctx.frame.insert(FrameIndex::B, b);
    ctx.frame.insert(FrameIndex::H, h);
    Ok(match columns {
        Columns::Own { cols } => {
            let width = s.i32(threads as i64);
            let first = s.mul(slice, width)?;
            let c = s.add(first, local)?;
            let n = s.i32(cols as i64);
            let inside = s.lt(c, n)?;
            let one = s.i32(1);
            let last = s.sub(n, one)?;
            (Some(s.select(inside, c, last)?), inside)
        }
        Columns::Whole => (None, s.bool(true)),
    })
}

/// An output written from an emitted value of the recurrence.
pub(crate) struct StepOutput {
    node: petgraph::stable_graph::NodeIndex,
    emit: usize,
}

/// The outputs, each with the emitted value it writes: only outputs of the recurrence's steps.
pub(crate) fn outputs(graph: &Graph, plan: &RecurrentKernel) -> Result<Vec<StepOutput>> {
    let mut out = Vec::new();
    for &n in &plan.epilogue {
        let Op::Output { name, axes, .. } = &graph.node(n).op else {
            return Err(SpirvError::unsupported(
                graph,
                n,
                "values computed after a recurrence",
            ));
        };
        let source = graph
            .operands(n)
            .first()
            .map(|(v, _)| *v)
            .ok_or_else(|| SpirvError::internal("an output without a value"))?;
        if source.node != plan.recurrence || !axes.contains(&FrameIndex::T) {
            return Err(SpirvError::unsupported(
                graph,
                n,
                format!("output `{name}` is not a step of the recurrence"),
            ));
        }
        out.push(StepOutput {
            node: n,
            emit: source.result as usize,
        });
    }
    Ok(out)
}

/// Rows and columns of a state (1 for a missing axis), specialised.
pub(crate) fn extent(ctx: &Ctx<'_>, f: &Feature) -> Result<(u32, u32)> {
    let len = |d: &Dim| {
        ctx.dim_constant(d)
            .filter(|v| (1..=1 << 16).contains(v))
            .map(|v| v as u32)
            .ok_or_else(|| SpirvError::Unsupported {
                message: format!(
                    "a state over the run-time dim `{d}` (states live in registers, so their shape must be head dims the kernel is specialised for)"
                ),
                span: None,
            })
    };
    Ok(match f {
        Feature::Scalar => (1, 1),
        Feature::Vector(d) | Feature::Diag(d) => (len(d)?, 1),
        Feature::Matrix(r, c) => (len(r)?, len(c)?),
    })
}

/// A state's two arrays: the current value and the next one being computed (the chunked form
/// updates in place and has no second array).
pub(crate) struct StateBuf {
    pub current: Word,
    pub next: Word,
    pub rows: u32,
    pub cols: u32,
    pub len: u32,
}

/// Evaluates the recurrence's arena at one step.
pub(crate) struct Step<'a, 'g> {
    pub ctx: Ctx<'g>,
    pub low: crate::expr::Lower<'g>,
    pub arena: &'a ExprArena,
    pub operands: &'a [ValueRef],
    pub states: &'a [StateBuf],
    pub columns: Columns,
    /// The invocation's column where it owns one.
    pub own: Option<Val>,
    /// Set where a state is read at a column the invocation does not own.
    pub nonlocal: bool,
    /// Scalar nodes computed at the step's top level (they dominate every later use).
    pub scalars: HashMap<ExprId, Val>,
    /// Vector nodes over the state's columns computed at the current column, before the loop
    /// over rows (`outer(k, x @ S)` computes `x @ S` once per column, not once per element).
    pub column_side: HashMap<ExprId, (Word, Val)>,
    /// Read-outs already computed (the chunked form), at the invocation's own column.
    pub readouts: HashMap<ExprId, Val>,
}

impl<'a, 'g: 'a> Step<'a, 'g> {
    /// The evaluator after the per-head values, with the step count.
    pub(crate) fn new(
        s: &mut Shader,
        mut ctx: Ctx<'g>,
        plan: &RecurrentKernel,
        operands: &'a [ValueRef],
        states: &'a [StateBuf],
        columns: Columns,
        own: Option<Val>,
    ) -> Result<(Self, Val)> {
        let graph = ctx.graph;
        let arena = match &graph.node(plan.recurrence).op {
            Op::Recurrence { arena, .. } => arena,
            _ => {
                return Err(SpirvError::internal(
                    "a recurrent plan without its recurrence",
                ));
            }
        };
        let mut low = crate::expr::Lower::new(graph);
        for &n in &plan.per_head {
            crate::nodes::compute(s, &mut ctx, &mut low, n, true)?;
        }
        let steps = match graph.extents.get(&FrameIndex::T) {
            Some(d) => ctx.dim_value(s, d)?,
            None => return Err(SpirvError::internal("a recurrence without a step extent")),
        };
        let step = Step {
            ctx,
            low,
            arena,
            operands,
            states,
            columns,
            own,
            nonlocal: false,
            scalars: HashMap::new(),
            column_side: HashMap::new(),
            readouts: HashMap::new(),
        };
        Ok((step, steps))
    }

    pub(crate) fn feature(&self, id: ExprId) -> Feature {
        self.arena.ty(id).feature.clone()
    }

    /// The new value of every state, then the copy back.
    fn updates(&mut self, s: &mut Shader, states: &[StateDef]) -> Result<()> {
        self.scalars.clear();
        for st in states {
            self.precompute(s, st.update)?;
        }
        for (k, st) in states.iter().enumerate() {
            let buf = &self.states[k];
            let (next, rows, cols) = (buf.next, buf.rows, buf.cols);
            match &st.feature {
                Feature::Scalar => {
                    let v = self.eval_f32(s, st.update, &[])?;
                    let zero = s.i32(0);
                    let p = s.local_element(next, Ty::F32, zero)?;
                    s.store(p, v)?;
                }
                Feature::Vector(_) | Feature::Diag(_) => {
                    s.features(rows, |s, r| {
                        let v = self.eval_f32(s, st.update, &[r])?;
                        let p = s.local_element(next, Ty::F32, r)?;
                        s.store(p, v)
                    })?;
                }
                Feature::Matrix(..) => {
                    let update = st.update;
                    let column = |s: &mut Shader, this: &mut Self, c: Val| -> Result<()> {
                        this.column_side.clear();
                        this.hoist_columns(s, update, c)?;
                        let local = this.columns != Columns::Whole;
                        let width = s.i32(cols as i64);
                        let r = s.features(rows, |s, r| {
                            let v = this.eval_f32(s, update, &[r, c])?;
                            let at = if local {
                                r
                            } else {
                                let base = s.mul(r, width)?;
                                s.add(base, c)?
                            };
                            let p = s.local_element(next, Ty::F32, at)?;
                            s.store(p, v)
                        });
                        this.column_side.clear();
                        r
                    };
                    match self.own {
                        Some(c) => column(s, self, c)?,
                        None => s.features(cols, |s, c| column(s, self, c))?,
                    }
                }
            }
        }
        for buf in self.states {
            let (current, next) = (buf.current, buf.next);
            s.features(buf.len, |s, k| {
                let p = s.local_element(next, Ty::F32, k)?;
                let v = s.load(Ty::F32, p)?;
                let q = s.local_element(current, Ty::F32, k)?;
                s.store(q, v)
            })?;
        }
        Ok(())
    }

    /// Writes every output's element(s) of this step.
    pub(crate) fn emit(
        &mut self,
        s: &mut Shader,
        emits: &[ExprId],
        outputs: &[StepOutput],
        inside: Val,
    ) -> Result<()> {
        self.scalars.clear();
        for o in outputs {
            self.precompute(s, emits[o.emit])?;
        }
        let graph = self.ctx.graph;
        for o in outputs {
            let Op::Output { name, ty, axes } = &graph.node(o.node).op else {
                continue;
            };
            let mut offset = s.i32(0);
            for (axis, fi) in axes.iter().enumerate() {
                let size = self.ctx.dim_value(s, &ty.dims[axis])?;
                let c = *self.ctx.frame.get(fi).ok_or_else(|| {
                    SpirvError::unsupported(
                        graph,
                        o.node,
                        format!("output `{name}` is indexed by `{}`", fi.name()),
                    )
                })?;
                let scaled = s.mul(offset, size)?;
                offset = s.add(scaled, c)?;
            }
            let tensor = self
                .ctx
                .tensors
                .get(&o.node)
                .map(|t| Tensor {
                    var: t.var,
                    element: t.element,
                    name: t.name.clone(),
                })
                .ok_or_else(|| SpirvError::internal("an output without a buffer"))?;
            let id = emits[o.emit];
            match self.feature(id) {
                Feature::Scalar => {
                    let v = self.eval_f32(s, id, &[])?;
                    let first = match self.own {
                        Some(c) => {
                            let zero = s.i32(0);
                            s.cmp(Cmp::Eq, c, zero)?
                        }
                        None => s.bool(true),
                    };
                    let ctx = &self.ctx;
                    s.when(first, |s| ctx.write(s, &tensor, offset, v))?;
                }
                Feature::Vector(d) => {
                    let len = self
                        .ctx
                        .dim_constant(&d)
                        .ok_or_else(|| SpirvError::internal("an emitted row of run-time length"))?;
                    let width = s.i32(len);
                    let base = s.mul(offset, width)?;
                    match self.own {
                        Some(c) => {
                            let v = self.eval_f32(s, id, &[c])?;
                            let at = s.add(base, c)?;
                            let ctx = &self.ctx;
                            s.when(inside, |s| ctx.write(s, &tensor, at, v))?;
                        }
                        None => s.features(len as u32, |s, f| {
                            let v = self.eval_f32(s, id, &[f])?;
                            let at = s.add(base, f)?;
                            self.ctx.write(s, &tensor, at, v)
                        })?,
                    }
                }
                _ => {
                    return Err(SpirvError::unsupported(
                        graph,
                        o.node,
                        format!("output `{name}` of a matrix value"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Computes the scalar nodes of `id`'s tree at the top level of the step, children first,
    /// so that loops inside vector expressions only read them.
    pub(crate) fn precompute(&mut self, s: &mut Shader, id: ExprId) -> Result<()> {
        if self.scalars.contains_key(&id) || self.readouts.contains_key(&id) {
            return Ok(());
        }
        for c in self.arena.node(id).children() {
            self.precompute(s, c)?;
        }
        if self.feature(id) == Feature::Scalar
            && !matches!(self.arena.node(id), ExprNode::Int(_) | ExprNode::Float(_))
        {
            let v = self.eval(s, id, &[])?;
            self.scalars.insert(id, v);
        }
        Ok(())
    }

    /// Computes, at column `c`, the column-side vectors of a matrix update (right sides of
    /// `outer`, `diag` on the right), before the loop over rows.
    fn hoist_columns(&mut self, s: &mut Shader, id: ExprId, c: Val) -> Result<()> {
        let side = match self.arena.node(id) {
            ExprNode::Call(Builtin::Outer, args) => Some(args[1]),
            ExprNode::Binary(BinaryOp::MatMul, _, d) => match self.arena.node(*d) {
                ExprNode::Call(Builtin::Diag, args) => Some(args[0]),
                _ => None,
            },
            _ => None,
        };
        if let Some(v) = side
            && matches!(self.feature(v), Feature::Vector(_))
            && !self.column_side.contains_key(&v)
        {
            let x = self.eval(s, v, &[c])?;
            self.column_side.insert(v, (c.id, x));
        }
        for k in self.arena.node(id).children() {
            if matches!(self.feature(k), Feature::Matrix(..)) {
                self.hoist_columns(s, k, c)?;
            }
        }
        Ok(())
    }

    pub(crate) fn eval_f32(&mut self, s: &mut Shader, id: ExprId, pos: &[Val]) -> Result<Val> {
        let v = self.eval(s, id, pos)?;
        s.float(v)
    }

    /// A child at its parent's position: a scalar child ignores it.
    fn at(&mut self, s: &mut Shader, id: ExprId, pos: &[Val]) -> Result<Val> {
        if self.feature(id) == Feature::Scalar {
            self.eval(s, id, &[])
        } else {
            self.eval(s, id, pos)
        }
    }

    /// The value of node `id` at element `pos` of its own shape (none, [r], or [r, c]): f32,
    /// or a truth value for comparisons and logic.
    pub(crate) fn eval(&mut self, s: &mut Shader, id: ExprId, pos: &[Val]) -> Result<Val> {
        if let Some(v) = self.scalars.get(&id).or_else(|| self.readouts.get(&id)) {
            return Ok(*v);
        }
        if let (Some((c, v)), [p]) = (self.column_side.get(&id), pos)
            && *c == p.id
        {
            return Ok(*v);
        }
        let node = self.arena.node(id).clone();
        Ok(match node {
            ExprNode::Operand(k) => {
                let v = *self
                    .operands
                    .get(k as usize)
                    .ok_or_else(|| SpirvError::internal("a recurrence operand out of range"))?;
                let vector = matches!(
                    self.ctx.graph.node(v.node).results.get(v.result as usize),
                    Some(PortType::Value(t)) if t.feature != Feature::Scalar
                );
                let f = if vector { pos.first().copied() } else { None };
                let x = crate::expr::Leaves::value(&mut self.ctx, s, v, f)?;
                if x.ty == Ty::Bool { x } else { s.float(x)? }
            }
            ExprNode::State(k, time) => self.state(s, k as usize, time, pos)?,
            ExprNode::Index(fi) => {
                let i = crate::expr::Leaves::index(&mut self.ctx, s, fi)?;
                s.float(i)?
            }
            ExprNode::Dim(d) => {
                let v = crate::expr::Leaves::dim(&mut self.ctx, s, &d)?;
                s.float(v)?
            }
            ExprNode::Int(v) => s.f32(v as f64),
            ExprNode::Float(v) => s.f32(v),
            ExprNode::Unary(UnaryOp::Neg, a) => {
                let a = self.at(s, a, pos)?;
                let a = s.float(a)?;
                s.neg(a)?
            }
            ExprNode::Unary(UnaryOp::Not, a) => {
                let a = self.at(s, a, pos)?;
                let a = s.truth(a)?;
                s.not(a)?
            }
            ExprNode::Binary(BinaryOp::MatMul, a, b) => self.matmul(s, a, b, pos)?,
            ExprNode::Binary(op, a, b) => {
                let (x, y) = (self.at(s, a, pos)?, self.at(s, b, pos)?);
                binary(s, op, x, y)?
            }
            ExprNode::Call(Builtin::Outer, args) => {
                let (r, c) = match pos {
                    [r, c] => (*r, *c),
                    _ => return Err(SpirvError::internal("an outer product read as a vector")),
                };
                let x = self.eval_f32(s, args[0], &[r])?;
                let y = self.eval_f32(s, args[1], &[c])?;
                s.mul(x, y)?
            }
            ExprNode::Call(Builtin::Diag, args) => {
                let (r, c) = match pos {
                    [r, c] => (*r, *c),
                    _ => return Err(SpirvError::internal("a diagonal read as a vector")),
                };
                let x = self.eval_f32(s, args[0], &[r])?;
                let same = s.cmp(Cmp::Eq, r, c)?;
                let zero = s.f32(0.0);
                s.select(same, x, zero)?
            }
            ExprNode::Call(
                f @ (Builtin::Dot
                | Builtin::SumFeature
                | Builtin::MeanFeature
                | Builtin::MaxFeature
                | Builtin::MinFeature
                | Builtin::Norm),
                args,
            ) => self.reduction(s, f, &args)?,
            ExprNode::Call(Builtin::Select, args) => {
                let c = self.at(s, args[0], pos)?;
                let c = s.truth(c)?;
                let x = self.at(s, args[1], pos)?;
                let y = self.at(s, args[2], pos)?;
                let (x, y) = if x.ty == Ty::Bool && y.ty == Ty::Bool {
                    (x, y)
                } else {
                    (s.float(x)?, s.float(y)?)
                };
                s.select(c, x, y)?
            }
            ExprNode::Call(f @ (Builtin::Min | Builtin::Max), args) => {
                let x = self.at(s, args[0], pos)?;
                let y = self.at(s, args[1], pos)?;
                let (x, y) = (s.float(x)?, s.float(y)?);
                let inst = if f == Builtin::Min {
                    glsl::NMIN
                } else {
                    glsl::NMAX
                };
                s.ext(Ty::F32, inst, &[x, y])?
            }
            ExprNode::Call(f @ (Builtin::Cumsum | Builtin::Cumprod), _) => {
                return Err(SpirvError::Unsupported {
                    message: format!("`{}` inside a recurrence", f.name()),
                    span: None,
                });
            }
            ExprNode::Call(f, args) => {
                let mut v = Vec::with_capacity(args.len());
                for a in args {
                    let x = self.at(s, a, pos)?;
                    v.push(s.float(x)?);
                }
                if f == Builtin::ToInt {
                    s.ext(Ty::F32, glsl::FLOOR, &v[..1])?
                } else {
                    float_call(s, f, &v)?
                }
            }
            ExprNode::Extract(..) => {
                return Err(SpirvError::Unsupported {
                    message: "indexing a vector inside a recurrence".into(),
                    span: None,
                });
            }
        })
    }

    /// Element `pos` of state `k` (the current array holds the previous value during the
    /// updates and the new one after them).
    fn state(&mut self, s: &mut Shader, k: usize, _time: StateTime, pos: &[Val]) -> Result<Val> {
        let buf = self
            .states
            .get(k)
            .ok_or_else(|| SpirvError::internal("a state out of range"))?;
        let (current, cols) = (buf.current, buf.cols);
        let at = match pos {
            [] => s.i32(0),
            [r] => *r,
            [r, c] => match self.own {
                Some(own) => {
                    if own.id != c.id {
                        self.nonlocal = true;
                    }
                    *r
                }
                None => {
                    let width = s.i32(cols as i64);
                    let base = s.mul(*r, width)?;
                    s.add(base, *c)?
                }
            },
            _ => return Err(SpirvError::internal("a state read at three positions")),
        };
        let p = s.local_element(current, Ty::F32, at)?;
        s.load(Ty::F32, p)
    }

    /// The length of axis `axis` of a vector or matrix node.
    fn len(&self, id: ExprId, axis: usize) -> Result<u32> {
        let d = match (self.feature(id), axis) {
            (Feature::Vector(d) | Feature::Diag(d), 0)
            | (Feature::Matrix(d, _), 0)
            | (Feature::Matrix(_, d), 1) => d,
            _ => return Ok(1),
        };
        self.ctx
            .dim_constant(&d)
            .map(|v| v.max(1) as u32)
            .ok_or_else(|| SpirvError::Unsupported {
                message: format!("a vector over the run-time dim `{d}` inside a recurrence"),
                span: None,
            })
    }

    fn matmul(&mut self, s: &mut Shader, a: ExprId, b: ExprId, pos: &[Val]) -> Result<Val> {
        let diag = |this: &Self, id: ExprId| match this.arena.node(id) {
            ExprNode::Call(Builtin::Diag, args) => Some(args[0]),
            _ => None,
        };
        if let (Some(d), [r, c]) = (diag(self, a), pos) {
            let x = self.eval_f32(s, d, &[*r])?;
            let m = self.eval_f32(s, b, &[*r, *c])?;
            return s.mul(x, m);
        }
        if let (Some(d), [r, c]) = (diag(self, b), pos) {
            let m = self.eval_f32(s, a, &[*r, *c])?;
            let x = self.eval_f32(s, d, &[*c])?;
            return s.mul(m, x);
        }
        let (fa, fb) = (self.feature(a), self.feature(b));
        let inner = self.len(a, usize::from(matches!(fa, Feature::Matrix(..))))?;
        let acc = s.scalar_local(Ty::F32);
        let zero = s.f32(0.0);
        s.store(acc, zero)?;
        let pos = pos.to_vec();
        s.features(inner, |s, k| {
            let (pa, pb): (Vec<Val>, Vec<Val>) = match (&fa, &fb, &pos[..]) {
                (Feature::Vector(_), Feature::Matrix(..), [c]) => (vec![k], vec![k, *c]),
                (Feature::Matrix(..), Feature::Vector(_), [r]) => (vec![*r, k], vec![k]),
                (Feature::Matrix(..), Feature::Matrix(..), [r, c]) => (vec![*r, k], vec![k, *c]),
                _ => return Err(SpirvError::internal("`@` of these shapes in a recurrence")),
            };
            let x = self.eval_f32(s, a, &pa)?;
            let y = self.eval_f32(s, b, &pb)?;
            let sum = s.load(Ty::F32, acc)?;
            let next = s.ext(Ty::F32, glsl::FMA, &[x, y, sum])?;
            s.store(acc, next)
        })?;
        s.load(Ty::F32, acc)
    }

    fn reduction(&mut self, s: &mut Shader, f: Builtin, args: &[ExprId]) -> Result<Val> {
        let len = self.len(args[0], 0)?;
        let acc = s.scalar_local(Ty::F32);
        let init = s.f32(match f {
            Builtin::MaxFeature => f64::NEG_INFINITY,
            Builtin::MinFeature => f64::INFINITY,
            _ => 0.0,
        });
        s.store(acc, init)?;
        s.features(len, |s, k| {
            let x = self.eval_f32(s, args[0], &[k])?;
            let a = s.load(Ty::F32, acc)?;
            let next = match f {
                Builtin::Dot => {
                    let y = self.eval_f32(s, args[1], &[k])?;
                    s.ext(Ty::F32, glsl::FMA, &[x, y, a])?
                }
                Builtin::Norm => s.ext(Ty::F32, glsl::FMA, &[x, x, a])?,
                Builtin::MaxFeature => s.ext(Ty::F32, glsl::NMAX, &[a, x])?,
                Builtin::MinFeature => s.ext(Ty::F32, glsl::NMIN, &[a, x])?,
                _ => s.add(a, x)?,
            };
            s.store(acc, next)
        })?;
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

/// An elementwise binary operator on evaluated values (f32, or truth values for logic).
fn binary(s: &mut Shader, op: BinaryOp, x: Val, y: Val) -> Result<Val> {
    if matches!(op, BinaryOp::And | BinaryOp::Or) {
        let (x, y) = (s.truth(x)?, s.truth(y)?);
        return if op == BinaryOp::And {
            s.and(x, y)
        } else {
            s.or(x, y)
        };
    }
    let (x, y) = (s.float(x)?, s.float(y)?);
    let cmp = match op {
        BinaryOp::Eq => Some(Cmp::Eq),
        BinaryOp::Ne => Some(Cmp::Ne),
        BinaryOp::Lt => Some(Cmp::Lt),
        BinaryOp::Le => Some(Cmp::Le),
        BinaryOp::Gt => Some(Cmp::Gt),
        BinaryOp::Ge => Some(Cmp::Ge),
        _ => None,
    };
    if let Some(c) = cmp {
        return s.cmp(c, x, y);
    }
    crate::expr::float_arithmetic(s, op, x, y)
}

/// The head dims a recurrent kernel keeps vectors and states over.
pub(crate) fn vector_dims(graph: &Graph, plan: &RecurrentKernel) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for &n in plan.per_head.iter().chain(&plan.step_inputs) {
        if let Some(PortType::Value(t)) = graph.node(n).results.first()
            && let Feature::Vector(d) = &t.feature
        {
            crate::kernel::symbols(d, &mut names);
        }
    }
    if let Op::Recurrence { arena, states, .. } = &graph.node(plan.recurrence).op {
        let features = states
            .iter()
            .map(|s| s.feature.clone())
            .chain(arena.ids().map(|k| arena.ty(k).feature.clone()));
        for f in features {
            match f {
                Feature::Scalar => {}
                Feature::Vector(d) | Feature::Diag(d) => crate::kernel::symbols(&d, &mut names),
                Feature::Matrix(a, b) => {
                    crate::kernel::symbols(&a, &mut names);
                    crate::kernel::symbols(&b, &mut names);
                }
            }
        }
    }
    names
}
