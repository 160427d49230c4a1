//! The recurrent template as a GPU scan: one block per (b, h) and slice of value columns, a few
//! adjacent threads per column of every matrix state, stepping through t in order.
//!
//! The threads of a column keep its rows of each matrix state in registers, split between them
//! (the rows unrolled, the state carried by the loop over t), so a read-out `x @ S` or the delta
//! rule's `k @ S` is a sum over a thread's rows and a few warp shuffles (`step.rs`); states with
//! no column axis (a normaliser `z`, a scalar) live
//! in shared memory, two copies alternating by the parity of t, since every update is
//! simultaneous and the outputs read the new values. Each step's inputs (loads, feature maps,
//! gates) are computed once per block into shared memory, one node after another with a barrier
//! between, then every state is updated and the outputs written. The state is f32 whatever the
//! inputs' element type. A read of a matrix state across columns (a contraction over its
//! columns) would need another thread's registers and is refused with that reason.

mod chunked;
mod step;

use crate::NvptxError;
use crate::classify::{Layout, feature_of};
use crate::kernel::{bind_params, extent};
use crate::leaves::{
    GuardSite, Guards, LoadSite, element_index, flat_offset, lower_err, read_load,
};
use attnc_ir::expr::{ExprArena, ExprId};
use attnc_ir::graph::{Graph, Op, PortType, StateDef, ValueRef};
use attnc_ir::types::{Dim, Feature, FrameIndex, ScalarKind};
use attnc_lower::{Cmp, Emitter, ExprLowering, FastMath, Leaves, LowerError, PtxMath, Ty, Val};
use attnc_passes::fusion::recurrent::RecurrentKernel;
use attnc_passes::fusion::tree::Tree;
use petgraph::stable_graph::NodeIndex;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use step::{Phase, Pos, Step};

/// Value columns per block at most.
const COLUMNS_PER_BLOCK: usize = 32;
/// Rows of matrix state a thread keeps in registers, where the rows divide evenly.
const ROWS_PER_THREAD: usize = 32;
/// Threads per value column at most.
const MAX_GROUP: usize = 8;

/// A written scan kernel and its launch shape.
pub(crate) struct ScanKernel {
    pub text: String,
    pub guards: Vec<GuardSite>,
    pub threads: usize,
    /// Value columns per block, and threads per column.
    pub columns: usize,
    pub group: usize,
    /// Blocks per (b, h), each owning `columns` value columns.
    pub slices: usize,
    pub shared_bytes: usize,
    pub specialised: BTreeMap<String, i64>,
}

/// The dims a scan is compiled for: every feature length (the rows a thread unrolls, the
/// buffers' sizes); batch, heads and steps stay run-time values.
fn specialised_dims(
    graph: &Graph,
    plan: &RecurrentKernel,
    states: &[StateDef],
    arena: &ExprArena,
    emits: &[ExprId],
    given: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, i64>, NvptxError> {
    let mut names = BTreeSet::new();
    let mut add = |f: &Feature| match f {
        Feature::Scalar => {}
        Feature::Vector(d) | Feature::Diag(d) => crate::classify::collect_symbols(d, &mut names),
        Feature::Matrix(a, b) => {
            crate::classify::collect_symbols(a, &mut names);
            crate::classify::collect_symbols(b, &mut names);
        }
    };
    for &n in plan.per_head.iter().chain(&plan.step_inputs) {
        add(&feature_of(graph, n));
    }
    for s in states {
        add(&s.feature);
    }
    for &id in emits {
        add(&arena.ty(id).feature);
    }
    let mut out = BTreeMap::new();
    for name in names {
        let v = given.get(&name).copied().or_else(|| {
            graph
                .dims
                .iter()
                .find(|d| d.name == name)
                .and_then(|d| d.default.as_ref())
                .and_then(|(a, r)| a.eval_constant(*r, given).ok())
                .map(|v| v as i64)
        });
        match v {
            Some(v) => {
                out.insert(name, v);
            }
            None => {
                return Err(NvptxError::Unsupported {
                    message: format!(
                        "the recurrence's feature dim `{name}` has no value to compile for (pass --shape)"
                    ),
                    span: Some(graph.node(plan.recurrence).span),
                });
            }
        }
    }
    Ok(out)
}

/// A length under the specialised dims.
fn length(
    graph: &Graph,
    n: NodeIndex,
    d: &Dim,
    dims: &BTreeMap<String, i64>,
) -> Result<usize, NvptxError> {
    d.eval(dims)
        .ok()
        .and_then(|v| usize::try_from(v).ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| NvptxError::unsupported(graph, n, format!("a feature axis of length {d}")))
}

/// Rows and columns of a value of this shape (1 for a missing axis).
fn shape_of(
    graph: &Graph,
    n: NodeIndex,
    f: &Feature,
    dims: &BTreeMap<String, i64>,
) -> Result<(usize, usize), NvptxError> {
    Ok(match f {
        Feature::Scalar => (1, 1),
        Feature::Vector(d) | Feature::Diag(d) => (length(graph, n, d, dims)?, 1),
        Feature::Matrix(a, b) => (length(graph, n, a, dims)?, length(graph, n, b, dims)?),
    })
}

/// A shared buffer of the block: its view and length.
#[derive(Clone)]
struct Buf {
    view: Val,
    len: usize,
}

/// Where a state lives.
enum Home {
    /// A matrix state: this thread's column, one register per row.
    Registers { rows: usize },
    /// A vector or scalar state: two copies of `rows` values, alternating by step.
    Shared { buf: Buf, rows: usize },
}

/// Everything the step's code reads, established by the prologue.
struct Ctx<'a> {
    graph: &'a Graph,
    dims: BTreeMap<String, (Val, Val)>,
    specialised: BTreeMap<String, i64>,
    inputs: BTreeMap<NodeIndex, Val>,
    outputs: BTreeMap<String, Val>,
    guards: Guards<'a>,
    bufs: BTreeMap<NodeIndex, Buf>,
    b: Val,
    h: Val,
    /// The step, as index (0 before the loop).
    t: Val,
    tid: Val,
    /// This thread's value column.
    col: Val,
    /// Which share of the column's rows this thread keeps (0 where one thread keeps them all).
    slab: Val,
    /// Threads per column: adjacent lanes of a warp.
    group: usize,
    threads: usize,
}

/// The leaves of a map's tree: values in the block's buffers.
struct StepLeaves<'c, 'a> {
    ctx: &'c Ctx<'a>,
}

impl Ctx<'_> {
    fn frame(&self, fi: FrameIndex) -> Result<Val, LowerError> {
        match fi {
            FrameIndex::B => Ok(self.b.clone()),
            FrameIndex::H => Ok(self.h.clone()),
            FrameIndex::T => Ok(self.t.clone()),
            other => Err(LowerError::Internal(format!(
                "index {} in a recurrence",
                other.name()
            ))),
        }
    }

    fn dim_index(&self, e: &mut Emitter, d: &Dim) -> Val {
        crate::kernel::dim_value(e, &self.dims, d)
    }

    /// A load's element at this step and feature position, as f32 or i32.
    fn load(
        &self,
        e: &mut Emitter,
        n: NodeIndex,
        feature: Option<&Val>,
    ) -> Result<Val, NvptxError> {
        let mut site = StepLeaves { ctx: self };
        read_load(
            e,
            self.graph,
            &self.dims,
            &self.inputs,
            &self.guards,
            &mut site,
            n,
            feature,
        )
    }

    /// Computes a per-head or per-step value into its buffer, its elements spread over the
    /// threads, then waits for the block.
    fn compute(&self, e: &mut Emitter, n: NodeIndex) -> Result<(), NvptxError> {
        let graph = self.graph;
        let Some(buf) = self.bufs.get(&n) else {
            return Ok(());
        };
        let vector = !matches!(feature_of(graph, n), Feature::Scalar);
        let hi = e.index(buf.len as i64);
        let step = e.index(self.threads as i64);
        let f = e.for_loop(&self.tid, &hi, &step);
        let feature = vector.then_some(&f);
        let v = match &graph.node(n).op {
            Op::Load { .. } => self.load(e, n, feature)?,
            Op::Map { .. } => {
                let tree = Tree::of_map(graph, ValueRef { node: n, result: 0 }, &|_| false);
                let mut low = ExprLowering::new(graph, &PtxMath);
                let mut leaves = StepLeaves { ctx: self };
                low.lower(e, &mut leaves, &tree, feature)
                    .map_err(|err| NvptxError::lowering(graph, n, err))?
            }
            _ => {
                return Err(NvptxError::internal(
                    graph,
                    n,
                    "a buffered value that is not a load or map",
                ));
            }
        };
        let v = e.cast(&v, buf.view.ty.element());
        e.store(&v, &buf.view, &f);
        e.end();
        e.line("gpu.barrier");
        Ok(())
    }
}

impl LoadSite for StepLeaves<'_, '_> {
    fn frame(&mut self, _e: &mut Emitter, fi: FrameIndex) -> Result<Val, LowerError> {
        self.ctx.frame(fi)
    }

    fn operand(
        &mut self,
        e: &mut Emitter,
        v: ValueRef,
        feature: Option<&Val>,
    ) -> Result<Val, LowerError> {
        let mut low = ExprLowering::new(self.ctx.graph, &PtxMath);
        low.lower(e, self, &Tree::Value(v), feature)
    }
}

impl Leaves for StepLeaves<'_, '_> {
    fn value(
        &mut self,
        e: &mut Emitter,
        v: ValueRef,
        feature: Option<&Val>,
    ) -> Result<Val, LowerError> {
        let ctx = self.ctx;
        if let Some(buf) = ctx.bufs.get(&v.node) {
            let at = feature.cloned().unwrap_or_else(|| e.index(0));
            return Ok(e.load(&buf.view, &at));
        }
        if let Op::Load { .. } = ctx.graph.node(v.node).op {
            return ctx.load(e, v.node, feature).map_err(lower_err);
        }
        Err(LowerError::Internal(format!(
            "value {} read before it is computed",
            v.node.index()
        )))
    }

    fn index(&mut self, e: &mut Emitter, fi: FrameIndex) -> Result<Val, LowerError> {
        let i = self.ctx.frame(fi)?;
        Ok(e.cast(&i, &Ty::I32))
    }

    fn dim(&mut self, _e: &mut Emitter, name: &str) -> Result<Val, LowerError> {
        crate::leaves::dim_i32(&self.ctx.dims, name)
    }

    fn len(&mut self, e: &mut Emitter, v: ValueRef) -> Result<Val, LowerError> {
        Ok(match feature_of(self.ctx.graph, v.node) {
            Feature::Vector(d) => self.ctx.dim_index(e, &d),
            _ => e.index(1),
        })
    }

    fn element(&mut self, e: &mut Emitter, v: ValueRef, k: &Val) -> Result<Val, LowerError> {
        let len = self.len(e, v)?;
        let safe = element_index(e, self.ctx.graph, &self.ctx.guards, v, k, &len);
        self.value(e, v, Some(&safe))
    }
}

/// An output of the kernel: its name, type and frame axes, and the emitted value it stores.
type Written = (String, attnc_ir::types::TensorType, Vec<FrameIndex>, ExprId);

/// The outputs, each a step of an emitted value (anything else is refused).
fn written_outputs(
    graph: &Graph,
    plan: &RecurrentKernel,
    emits: &[ExprId],
) -> Result<Vec<Written>, NvptxError> {
    let mut written = Vec::new();
    for &o in &plan.epilogue {
        let Op::Output { name, ty, axes } = &graph.node(o).op else {
            return Err(NvptxError::unsupported(
                graph,
                o,
                "values computed after a recurrence",
            ));
        };
        let source = graph.operands(o)[0].0;
        let emitted = emits.get(source.result as usize);
        match emitted {
            Some(id) if source.node == plan.recurrence && axes.contains(&FrameIndex::T) => {
                written.push((name.clone(), ty.clone(), axes.clone(), *id))
            }
            _ => {
                return Err(NvptxError::unsupported(
                    graph,
                    o,
                    format!("output `{name}` is not a step of the recurrence"),
                ));
            }
        }
    }
    Ok(written)
}

/// The chunked form of `plan` in chunks of at most `chunk` steps (`chunked.rs`), or why it does
/// not apply here.
pub(crate) fn write_chunked(
    graph: &Graph,
    plan: &RecurrentKernel,
    form: &attnc_passes::fusion::chunked::ChunkedForm,
    chunk: usize,
    given: &BTreeMap<String, i64>,
    shared_limit: usize,
    name: &str,
) -> Result<Result<chunked::ChunkKernel, String>, NvptxError> {
    Ok(
        match chunked::write(graph, plan, form, chunk, given, shared_limit, name)? {
            chunked::Outcome::Written(k) => Ok(*k),
            chunked::Outcome::NotHere(why) => Err(why),
        },
    )
}

/// Writes the scan kernel `name` for `plan`, specialised for the feature dims of `given`.
pub(crate) fn write(
    graph: &Graph,
    plan: &RecurrentKernel,
    given: &BTreeMap<String, i64>,
    shared_limit: usize,
    name: &str,
) -> Result<ScanKernel, NvptxError> {
    let n = plan.recurrence;
    let Op::Recurrence {
        arena,
        states,
        emits,
    } = &graph.node(n).op
    else {
        return Err(NvptxError::internal(graph, n, "no recurrence"));
    };
    let specialised = specialised_dims(graph, plan, states, arena, emits, given)?;
    let written = written_outputs(graph, plan, emits)?;
    let mut state_rows = Vec::new();
    for s in states.iter() {
        state_rows.push(shape_of(graph, n, &s.feature, &specialised)?.0);
    }
    // Threads: `group` per value column of the widest matrix state or output.
    let mut widest = 1;
    for s in states.iter() {
        if let Feature::Matrix(..) = s.feature {
            widest = widest.max(shape_of(graph, n, &s.feature, &specialised)?.1);
        }
    }
    for (_, _, _, id) in &written {
        widest = widest.max(shape_of(graph, n, &arena.ty(*id).feature, &specialised)?.0);
    }
    // Each column's rows are split between `group` adjacent threads, so that a thread keeps at
    // most ROWS_PER_THREAD rows of state and a step's chain of dependent operations is short.
    let matrix_rows: Vec<usize> = states
        .iter()
        .zip(&state_rows)
        .filter(|(s, _)| matches!(s.feature, Feature::Matrix(..)))
        .map(|(_, r)| *r)
        .collect();
    let mut group = 1;
    while group < MAX_GROUP
        && matrix_rows.iter().sum::<usize>() / group > ROWS_PER_THREAD
        && matrix_rows.iter().all(|r| r.is_multiple_of(2 * group))
    {
        group *= 2;
    }
    // Columns per block: whole warps of threads, at most a warp's worth of columns per block
    // (more blocks per (b, h) for the same columns keep more of the GPU busy).
    let columns = widest
        .next_multiple_of(32 / group)
        .min(COLUMNS_PER_BLOCK.max(32 / group));
    let threads = columns * group;
    let slices = widest.div_ceil(columns);

    // Shared memory: a buffer per per-head and per-step value, two copies per shared state.
    let mut layout: Vec<(Option<NodeIndex>, Ty, usize, usize)> = Vec::new();
    let mut bytes = 0usize;
    let mut place = |node: Option<NodeIndex>, ty: Ty, len: usize| {
        let at = bytes.div_ceil(16) * 16;
        bytes = at + len * 4;
        layout.push((node, ty, len, at));
    };
    for &v in plan.per_head.iter().chain(&plan.step_inputs) {
        if !matches!(graph.node(v).op, Op::Load { .. } | Op::Map { .. }) {
            continue;
        }
        let kind = match graph.node(v).results.first() {
            Some(PortType::Value(t)) => t.kind,
            _ => ScalarKind::Float,
        };
        let ty = if kind == ScalarKind::Float {
            Ty::F32
        } else {
            Ty::I32
        };
        let (len, _) = shape_of(graph, v, &feature_of(graph, v), &specialised)?;
        place(Some(v), ty, len);
    }
    for (s, &rows) in states.iter().zip(&state_rows) {
        if !matches!(s.feature, Feature::Matrix(..)) {
            place(None, Ty::F32, 2 * rows);
        }
    }
    let shared_bytes = bytes.div_ceil(16) * 16;
    if shared_bytes > shared_limit {
        return Err(NvptxError::Resources(format!(
            "kernel `{}`: the scan's per-step values need {shared_bytes} bytes of shared memory; the target allows {shared_limit}",
            graph.kernel
        )));
    }

    let mut e = Emitter::new(
        2,
        FastMath {
            contract: true,
            reassoc: false,
            approx_div: true,
        },
    );
    let (dims, inputs, outputs, _ws, status) = bind_params(&mut e, graph, &specialised, None);
    let bz = e.op(Ty::Index, "gpu.block_id z");
    let by = e.op(Ty::Index, "gpu.block_id y");
    let bx = e.op(Ty::Index, "gpu.block_id x");
    let tid = e.op(Ty::Index, "gpu.thread_id x");
    let zero = e.index(0);
    let b = if Layout::has_index(graph, FrameIndex::B) {
        bz
    } else {
        zero.clone()
    };
    let h = if Layout::has_index(graph, FrameIndex::H) {
        by
    } else {
        zero.clone()
    };
    let per_slice = e.index(columns as i64);
    let first = e.mul(&bx, &per_slice);
    let (col, slab) = if group > 1 {
        let g = e.index(group as i64);
        let c = e.div(&tid, &g);
        (
            e.add(&first, &c),
            e.arith(attnc_lower::Arith::Rem, &tid, &g),
        )
    } else {
        (e.add(&first, &tid), zero.clone())
    };
    let smem = e.op(
        Ty::MemRef(vec![None], Box::new(Ty::I8), attnc_lower::Space::Workgroup),
        "gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>",
    );
    let mut bufs = BTreeMap::new();
    let mut state_bufs = Vec::new();
    for (node, ty, len, at) in &layout {
        let off = e.index(*at as i64);
        let view = e.view(&smem, &off, *len, ty.clone());
        let buf = Buf { view, len: *len };
        match node {
            Some(v) => {
                bufs.insert(*v, buf);
            }
            None => state_bufs.push(buf),
        }
    }
    let sites = RefCell::new(Vec::new());
    let mut ctx = Ctx {
        graph,
        dims,
        specialised: specialised.clone(),
        inputs,
        outputs,
        guards: Guards {
            sites: &sites,
            base: 0,
            status: &status,
        },
        bufs,
        b,
        h,
        t: zero.clone(),
        tid: tid.clone(),
        col,
        slab,
        group,
        threads,
    };
    for &v in &plan.per_head {
        ctx.compute(&mut e, v)?;
    }
    // States start at zero: shared copies here, registers as the loop's initial values.
    let mut homes = Vec::new();
    let mut init = Vec::new();
    let mut shared_states = state_bufs.into_iter();
    let step = e.index(threads as i64);
    for (s, &rows) in states.iter().zip(&state_rows) {
        if let Feature::Matrix(..) = s.feature {
            let z = e.f32(0.0);
            init.extend(std::iter::repeat_n(z, rows / group));
            homes.push(Home::Registers { rows: rows / group });
        } else {
            let buf = shared_states
                .next()
                .ok_or_else(|| NvptxError::internal(graph, n, "a shared state without a buffer"))?;
            let hi = e.index(buf.len as i64);
            let i = e.for_loop(&tid, &hi, &step);
            let z = e.f32(0.0);
            e.store(&z, &buf.view, &i);
            e.end();
            homes.push(Home::Shared { buf, rows });
        }
    }
    e.line("gpu.barrier");
    let n_steps = extent(&mut e, graph, &ctx.dims, FrameIndex::T);
    let one = e.index(1);
    let (t, carried, lp) = e.for_iter(&zero, &n_steps, &one, &init);
    ctx.t = t.clone();
    let two = e.index(2);
    let parity = e.arith(attnc_lower::Arith::Rem, &t, &two);
    let other = e.sub(&one, &parity);
    let mut cur = Vec::new();
    let mut next = Vec::new();
    let mut old = Vec::new();
    let mut taken = 0;
    for (home, &rows) in homes.iter().zip(&state_rows) {
        let r = e.index(rows as i64);
        cur.push(e.mul(&parity, &r));
        next.push(e.mul(&other, &r));
        match home {
            Home::Registers { rows } => {
                old.push(carried[taken..taken + rows].to_vec());
                taken += rows;
            }
            Home::Shared { .. } => old.push(Vec::new()),
        }
    }
    // The previous step's readers are done with the step buffers and the shared states.
    e.line("gpu.barrier");
    for &v in &plan.step_inputs {
        ctx.compute(&mut e, v)?;
    }
    let operands: Vec<ValueRef> = graph.operands(n).iter().map(|(v, _)| *v).collect();
    let mut stepper = Step {
        ctx: &ctx,
        arena,
        operands: &operands,
        states,
        homes: &homes,
        cur: &cur,
        next: &next,
        old: &old,
        new: &[],
        phase: Phase::Update,
        split: false,
        cache: HashMap::new(),
        contractions: 0,
        node: n,
        fixed: HashMap::new(),
    };
    // Shared states: their elements spread over the threads.
    for (k, s) in states.iter().enumerate() {
        let Home::Shared { buf, rows } = &homes[k] else {
            continue;
        };
        let hi = e.index(*rows as i64);
        let r = e.for_loop(&tid, &hi, &step);
        stepper.cache.clear();
        let pos = if s.feature == Feature::Scalar {
            vec![]
        } else {
            vec![Pos::At(r.clone())]
        };
        let v = stepper.broadcast(&mut e, s.update, &pos)?;
        let at = e.add(&next[k], &r);
        e.store(&v, &buf.view, &at);
        e.end();
        stepper.cache.clear();
    }
    // Matrix states: this thread's column, row by row. The contractions over the rows (the
    // delta rule's `k @ S`) come first, then a barrier: without it the compiler keeps every row
    // of the vectors they read in registers for the rows' updates, beside the state itself.
    stepper.contractions = 0;
    stepper.split = true;
    let mut rows_of = Vec::new();
    for (k, s) in states.iter().enumerate() {
        let Home::Registers { rows } = homes[k] else {
            rows_of.push(Vec::new());
            continue;
        };
        let share = e.index(rows as i64);
        let first = e.mul(&ctx.slab, &share);
        let mut at = Vec::with_capacity(rows);
        for r in 0..rows {
            let o = e.index(r as i64);
            at.push(Pos::Row(r, e.add(&first, &o)));
        }
        stepper.broadcast(&mut e, s.update, &[at[0].clone(), Pos::Own])?;
        rows_of.push(at);
    }
    if stepper.contractions > 0 {
        e.line("gpu.barrier");
    }
    let mut new = Vec::new();
    let mut flat = Vec::new();
    for (k, s) in states.iter().enumerate() {
        let Home::Registers { rows } = homes[k] else {
            new.push(Vec::new());
            continue;
        };
        let mut col = Vec::with_capacity(rows);
        for r in &rows_of[k] {
            col.push(stepper.broadcast(&mut e, s.update, &[r.clone(), Pos::Own])?);
        }
        flat.extend(col.iter().cloned());
        new.push(col);
    }
    e.line("gpu.barrier");
    stepper.phase = Phase::Emit;
    stepper.new = &new;
    for (out, ty, axes, id) in &written {
        stepper.cache.clear();
        let feature = arena.ty(*id).feature.clone();
        let (len, _) = shape_of(graph, n, &feature, &specialised)?;
        // Every thread evaluates (the column's threads combine their rows by shuffles, so none
        // may sit out); the first thread of each column inside the output stores.
        let pos = if feature == Feature::Scalar {
            vec![]
        } else {
            vec![Pos::Own]
        };
        let v = stepper.eval(&mut e, *id, &pos)?;
        let c0 = e.index(0);
        let inside = if feature == Feature::Scalar {
            e.cmp(Cmp::Eq, &ctx.col, &c0)
        } else {
            let l = e.index(len as i64);
            e.cmp(Cmp::Lt, &ctx.col, &l)
        };
        let first = e.cmp(Cmp::Eq, &ctx.slab, &c0);
        let cond = e.and(&inside, &first);
        e.if_then(&cond);
        let coords: Vec<Val> = axes
            .iter()
            .map(|fi| {
                ctx.frame(*fi)
                    .map_err(|err| NvptxError::lowering(graph, n, err))
            })
            .collect::<Result<_, _>>()?;
        let f = (feature != Feature::Scalar).then(|| ctx.col.clone());
        let at = flat_offset(&mut e, &ctx.dims, &coords, f.as_ref(), &ty.dims);
        let buf = ctx
            .outputs
            .get(out)
            .ok_or_else(|| NvptxError::internal(graph, n, "an output without a buffer"))?;
        let v = e.cast(&v, &Ty::of_element(ty.dtype));
        e.store(&v, buf, &at);
        e.end();
    }
    stepper.cache.clear();
    drop(stepper);
    e.end_for(&flat, lp);
    e.line("gpu.return");
    let p = crate::kernel::params(graph, false);
    let text = format!(
        "    gpu.func @{name}({}) kernel attributes {{known_block_size = array<i32: {threads}, 1, 1>}} {{\n{}    }}\n",
        p.text.join(", "),
        e.into_text()
    );
    Ok(ScanKernel {
        text,
        guards: sites.into_inner(),
        threads,
        columns,
        group,
        slices,
        shared_bytes,
        specialised,
    })
}
