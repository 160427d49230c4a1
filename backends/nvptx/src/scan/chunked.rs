//! The chunked form of a recurrence on the GPU (the derivation is
//! `attnc_passes::fusion::chunked`), for states with a scalar or per-row decay (or none) and
//! rank-one input terms. A block of four warps covers (b, h, a slice of up to 64 value columns);
//! the states' slices stay in shared memory as f32 for the whole sequence. Per chunk of C steps
//! (C = 16, 32 or 64: a 16-step tile of the products per warp):
//!
//! 1. the step values the block computes (maps), each `[C][len]`, shared out over (step,
//!    element); loads are read where they are used;
//! 2. the pieces of the form per step, shared out over (step, row or column): each state's
//!    decay, each term's scale, left vector (over the rows) and right vector (over the block's
//!    columns), each read-out's row; a step past the end has decay 1 and scale 0, a padding
//!    row or column 0;
//! 3. running products of the decays (from the chunk's start to each step, from each step to
//!    its end, and for a scalar decay `D[t][s]` between every two steps): products, never
//!    ratios, so a decay that underflows gives 0, not 0 / 0;
//! 4. the scores of every read-out against every term, weighted and masked (`products.rs`);
//! 5. the read-outs: weights times right vectors plus the decayed rows times the carried state;
//! 6. the outputs from the read-outs, shared out over (step, column), and at the same time the
//!    states passed on (nothing in 6 reads what the other half writes).
//!
//! The products of 4, 5 and 6 run on the tensor cores (tf32 `mma.sync`, f32 accumulators);
//! the barriers between the phases are the block's.

mod layout;
mod products;

use super::step::{Phase, Pos, Step};
use super::{Buf, Ctx, StepLeaves, shape_of, specialised_dims, written_outputs};
use crate::NvptxError;
use crate::classify::{Layout, feature_of};
use crate::kernel::{bind_params, extent};
use crate::leaves::{GuardSite, Guards, flat_offset};
use attnc_ir::expr::{Builtin, ExprArena, ExprId, ExprNode};
use attnc_ir::graph::{Graph, Op, PortType, StateDef, ValueRef};
use attnc_ir::types::{Feature, FrameIndex, ScalarKind};
use attnc_lower::{Cmp, Emitter, ExprLowering, FastMath, PtxMath, Ty, Val};
use attnc_passes::fusion::chunked::{ChunkedForm, Factor};
use attnc_passes::fusion::recurrent::{Decay, RecurrentKernel};
use attnc_passes::fusion::tree::Tree;
use layout::{Arr, Arrays, StateShape};
use petgraph::stable_graph::NodeIndex;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

/// Warps per block: each owns a 16-step tile of the chunk's products (and row tiles of the
/// states in turn).
pub(super) const WARPS: usize = 4;
const THREADS: usize = 32 * WARPS;

/// What [`write`] built, or why the chunked form does not apply here (the scan runs instead).
pub(crate) enum Outcome {
    Written(Box<ChunkKernel>),
    NotHere(String),
}

/// A written chunked kernel and its launch shape.
pub(crate) struct ChunkKernel {
    pub text: String,
    pub guards: Vec<GuardSite>,
    pub threads: usize,
    /// Value columns per block, and blocks per (b, h).
    pub columns: usize,
    pub slices: usize,
    /// Steps per chunk (the plan's, or shorter where its arrays would not fit).
    pub chunk: usize,
    pub shared_bytes: usize,
    pub specialised: BTreeMap<String, i64>,
    /// Whether some scores are summed on the CUDA cores (a per-row decay's).
    pub per_row_scores: bool,
}

/// The block's arrays with their views, and the thread's place in it.
pub(super) struct Chunk<'a> {
    arrays: &'a Arrays,
    views: HashMap<usize, Val>,
    /// Steps per chunk and value columns per block.
    c: usize,
    np: usize,
    tid: Val,
    warp: Val,
    lane: Val,
    /// lane / 4 and lane % 4, as the fragments use them.
    g: Val,
    t: Val,
}

impl Chunk<'_> {
    fn index(&self, e: &mut Emitter, a: &Arr, r: &Val, c: &Val) -> Val {
        let s = e.index(a.stride as i64);
        let i = e.mul(r, &s);
        e.add(&i, c)
    }

    fn ld(&self, e: &mut Emitter, a: &Arr, r: &Val, c: &Val) -> Val {
        let i = self.index(e, a, r, c);
        e.load(&self.views[&a.at], &i)
    }

    fn st(&self, e: &mut Emitter, a: &Arr, r: &Val, c: &Val, v: &Val) {
        let i = self.index(e, a, r, c);
        e.store(v, &self.views[&a.at], &i);
    }

    /// `body(i)` for this thread's share of `0..n`: i = tid, tid + threads, ...
    fn shared_out(&self, e: &mut Emitter, n: usize, mut body: impl FnMut(&mut Emitter, &Val)) {
        let _ = self.try_shared_out(e, n, |e, i| {
            body(e, i);
            Ok(())
        });
    }

    fn try_shared_out(
        &self,
        e: &mut Emitter,
        n: usize,
        mut body: impl FnMut(&mut Emitter, &Val) -> Result<(), NvptxError>,
    ) -> Result<(), NvptxError> {
        let hi = e.index(n as i64);
        let step = e.index(THREADS as i64);
        let i = e.for_loop(&self.tid, &hi, &step);
        let r = body(e, &i);
        e.end();
        r
    }

    /// (step, position) of item `i` of a `[C][width]` sweep.
    fn split(e: &mut Emitter, i: &Val, width: usize) -> (Val, Val) {
        let w = e.index(width as i64);
        (e.div(i, &w), e.arith(attnc_lower::Arith::Rem, i, &w))
    }
}

/// What every site of the kernel evaluates with: the recurrence's arena and the block's maps.
struct Sites<'a> {
    graph: &'a Graph,
    arena: &'a ExprArena,
    operands: Vec<ValueRef>,
    states: &'a [StateDef],
    node: NodeIndex,
    smem: Val,
    /// The per-head values' buffers, and each map with its array, element type and length.
    per_head: BTreeMap<NodeIndex, Buf>,
    maps: Vec<(NodeIndex, Arr, Ty, usize)>,
}

impl<'a> Sites<'a> {
    /// Points `ctx` at step `t`, whose maps are row `j` of their arrays.
    fn at(&self, e: &mut Emitter, ctx: &mut Ctx<'a>, j: &Val, t: &Val) {
        ctx.t = t.clone();
        let mut bufs = self.per_head.clone();
        for (n, a, ty, len) in &self.maps {
            let row = e.index(4 * a.stride as i64);
            let off = e.mul(j, &row);
            let at = e.index(a.at as i64);
            let off = e.add(&at, &off);
            let view = e.view(&self.smem, &off, *len, ty.clone());
            bufs.insert(*n, Buf { view, len: *len });
        }
        ctx.bufs = bufs;
    }

    fn step<'c>(&'c self, ctx: &'c Ctx<'a>, fixed: HashMap<ExprId, Val>) -> Step<'c, 'a> {
        Step {
            ctx,
            arena: self.arena,
            operands: &self.operands,
            states: self.states,
            homes: &[],
            cur: &[],
            next: &[],
            old: &[],
            new: &[],
            phase: Phase::Emit,
            split: false,
            cache: HashMap::new(),
            contractions: 0,
            node: self.node,
            fixed,
        }
    }

    /// `id` at step `t` (row `j` of the maps) and feature position `pos` (none for a scalar).
    fn eval(
        &self,
        e: &mut Emitter,
        ctx: &mut Ctx<'a>,
        (j, t): (&Val, &Val),
        id: ExprId,
        pos: Option<&Val>,
    ) -> Result<Val, NvptxError> {
        self.at(e, ctx, j, t);
        let mut st = self.step(ctx, HashMap::new());
        let pos: Vec<Pos> = pos.map(|p| Pos::At(p.clone())).into_iter().collect();
        st.broadcast(e, id, &pos)
    }

    /// `Π factors` (with the sign) at step `t`.
    fn product(
        &self,
        e: &mut Emitter,
        ctx: &mut Ctx<'a>,
        at: (&Val, &Val),
        factors: &[Factor],
        negated: bool,
    ) -> Result<Val, NvptxError> {
        let mut v = e.f32(if negated { -1.0 } else { 1.0 });
        for f in factors {
            let (Factor::Times(x) | Factor::Over(x)) = *f;
            let x = self.eval(e, ctx, at, x, None)?;
            v = match f {
                Factor::Times(_) => e.mul(&v, &x),
                Factor::Over(_) => e.div(&v, &x),
            };
        }
        Ok(v)
    }
}

fn float_ty(graph: &Graph, n: NodeIndex) -> Ty {
    match graph.node(n).results.first() {
        Some(PortType::Value(t)) if t.kind != ScalarKind::Float => Ty::I32,
        _ => Ty::F32,
    }
}

/// Writes the chunked kernel `name` for `plan` in chunks of at most `chunk` steps, its arrays
/// within `shared_limit` bytes, specialised for the feature dims of `given`.
pub(crate) fn write(
    graph: &Graph,
    plan: &RecurrentKernel,
    form: &ChunkedForm,
    chunk: usize,
    given: &BTreeMap<String, i64>,
    shared_limit: usize,
    name: &str,
) -> Result<Outcome, NvptxError> {
    let n = plan.recurrence;
    let Op::Recurrence {
        arena,
        states,
        emits,
    } = &graph.node(n).op
    else {
        return Err(NvptxError::internal(graph, n, "no recurrence"));
    };
    let not_here = |why: &str| Ok(Outcome::NotHere(why.to_string()));
    if form.states.iter().any(|c| c.delta.is_some()) {
        return not_here(
            "the delta rule's chunked form (the UT transform) is not written for the NVPTX back end yet",
        );
    }
    if form.states.len() != states.len() {
        return Err(NvptxError::internal(graph, n, "a chunked form per state"));
    }
    let specialised = specialised_dims(graph, plan, states, arena, emits, given)?;
    let written = written_outputs(graph, plan, emits)?;
    let mut shapes = Vec::new();
    let mut cols = None;
    for (st, cs) in states.iter().zip(&form.states) {
        let (rows, c) = shape_of(graph, n, &st.feature, &specialised)?;
        let matrix = match st.feature {
            Feature::Matrix(..) => true,
            Feature::Vector(_) => false,
            _ => return not_here("a state is neither a vector nor a matrix"),
        };
        if matrix {
            match cols {
                Some(x) if x != c => return not_here("the matrix states differ in their columns"),
                _ => cols = Some(c),
            }
        }
        let per_row = match cs.decay {
            Decay::None | Decay::Scalar(_) => false,
            Decay::PerRow(_) => true,
            Decay::Other => return Err(NvptxError::internal(graph, n, "chunked with no decay")),
        };
        shapes.push(StateShape {
            rows,
            matrix,
            per_row,
            terms: cs.terms.len(),
        });
    }
    let Some(cols) = cols else {
        return not_here("no matrix state (the products are over a matrix state's columns)");
    };
    for (out, _, _, id) in &written {
        let fits = match &arena.ty(*id).feature {
            Feature::Scalar => true,
            f @ Feature::Vector(_) => shape_of(graph, n, f, &specialised)?.0 == cols,
            _ => false,
        };
        if !fits {
            return Ok(Outcome::NotHere(format!(
                "output `{out}` is not a row over the states' columns"
            )));
        }
    }
    let mut readouts = Vec::new();
    for r in &form.readouts {
        if r.state as usize >= states.len() {
            return Err(NvptxError::internal(graph, n, "a read-out of no state"));
        }
        readouts.push(r.state as usize);
    }
    let sized = |nodes: &[NodeIndex]| -> Result<Vec<(NodeIndex, usize, Ty)>, NvptxError> {
        nodes
            .iter()
            .map(|&v| {
                let (len, _) = shape_of(graph, v, &feature_of(graph, v), &specialised)?;
                Ok((v, len, float_ty(graph, v)))
            })
            .collect()
    };
    let maps: Vec<NodeIndex> = plan
        .step_inputs
        .iter()
        .copied()
        .filter(|&v| matches!(graph.node(v).op, Op::Map { .. }))
        .collect();
    let per_head: Vec<NodeIndex> = plan
        .per_head
        .iter()
        .copied()
        .filter(|&v| matches!(graph.node(v).op, Op::Load { .. } | Op::Map { .. }))
        .collect();
    let (maps, per_head) = (sized(&maps)?, sized(&per_head)?);
    let lens = |v: &[(NodeIndex, usize, Ty)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
    let np = layout::block_columns(cols);
    let slices = cols.div_ceil(np);
    let fitting = layout::chunk_candidates(chunk).into_iter().find_map(|c| {
        let a = layout::arrays(c, np, &shapes, &readouts, &lens(&maps), &lens(&per_head));
        (a.bytes <= shared_limit).then_some((c, a))
    });
    let Some((c, arrays)) = fitting else {
        return Ok(Outcome::NotHere(format!(
            "a chunk's arrays do not fit the target's shared memory ({shared_limit} bytes) even at 16 steps"
        )));
    };

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
    let per_slice = e.index(np as i64);
    let first = e.mul(&bx, &per_slice);
    let smem = e.op(
        Ty::MemRef(vec![None], Box::new(Ty::I8), attnc_lower::Space::Workgroup),
        "gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>",
    );
    let mut views = HashMap::new();
    let mut view = |e: &mut Emitter, a: &Arr, ty: Ty| {
        let off = e.index(a.at as i64);
        let v = e.view(&smem, &off, a.len(), ty);
        views.insert(a.at, v.clone());
        v
    };
    let mut head_bufs = BTreeMap::new();
    for ((v, len, ty), a) in per_head.iter().zip(&arrays.per_head) {
        let view = view(&mut e, a, ty.clone());
        head_bufs.insert(*v, Buf { view, len: *len });
    }
    for ((_, _, ty), a) in maps.iter().zip(&arrays.steps) {
        view(&mut e, a, ty.clone());
    }
    for s in &arrays.states {
        let mut all = vec![s.decay, s.to_step, s.to_end, s.state];
        all.extend(s.between);
        for t in &s.terms {
            all.extend([t.scale, t.left]);
            all.extend(t.right);
        }
        for a in all {
            view(&mut e, &a, Ty::F32);
        }
    }
    for r in &arrays.readouts {
        for a in [r.query, r.out].iter().chain(&r.weights) {
            view(&mut e, a, Ty::F32);
        }
    }
    let thirty_two = e.index(32);
    let four = e.index(4);
    let warp = e.div(&tid, &thirty_two);
    let lane = e.arith(attnc_lower::Arith::Rem, &tid, &thirty_two);
    let g = e.div(&lane, &four);
    let t4 = e.arith(attnc_lower::Arith::Rem, &lane, &four);
    let chunk = Chunk {
        arrays: &arrays,
        views,
        c,
        np,
        tid: tid.clone(),
        warp,
        lane,
        g,
        t: t4,
    };
    let sites = Sites {
        graph,
        arena,
        operands: graph.operands(n).iter().map(|(v, _)| *v).collect(),
        states,
        node: n,
        smem: smem.clone(),
        per_head: head_bufs.clone(),
        maps: maps
            .iter()
            .zip(&arrays.steps)
            .map(|((v, len, ty), a)| (*v, *a, ty.clone(), *len))
            .collect(),
    };
    let guard_sites = RefCell::new(Vec::new());
    let mut ctx = Ctx {
        graph,
        dims,
        specialised: specialised.clone(),
        inputs,
        outputs,
        guards: Guards {
            sites: &guard_sites,
            base: 0,
            status: &status,
        },
        bufs: head_bufs,
        b,
        h,
        t: zero.clone(),
        tid: tid.clone(),
        col: zero.clone(),
        slab: zero.clone(),
        group: 1,
        threads: THREADS,
    };
    for &(v, _, _) in &per_head {
        ctx.compute(&mut e, v)?;
    }
    // The states start at zero, and the weights of a per-row decay above the diagonal stay
    // zero (its scores write only s <= t).
    let zero_f = e.f32(0.0);
    for s in &arrays.states {
        chunk.shared_out(&mut e, s.state.len(), |e, i| {
            e.store(&zero_f, &chunk.views[&s.state.at], i)
        });
    }
    for r in &arrays.readouts {
        if arrays.states[r.state].per_row {
            for w in &r.weights {
                chunk.shared_out(&mut e, w.len(), |e, i| {
                    e.store(&zero_f, &chunk.views[&w.at], i)
                });
            }
        }
    }
    let steps = extent(&mut e, graph, &ctx.dims, FrameIndex::T);
    let one = e.index(1);
    let last_step = e.sub(&steps, &one);
    let cc = e.index(c as i64);
    let t0 = e.for_loop(&zero, &steps, &cc);
    // The previous chunk's readers are done with every array.
    e.line("gpu.barrier");
    let k = Kernel {
        chunk: &chunk,
        sites: &sites,
        form,
        t0: &t0,
        steps: &steps,
        last_step: &last_step,
    };
    k.maps(&mut e, &mut ctx)?;
    k.pieces(&mut e, &mut ctx, cols, &first)?;
    e.line("gpu.barrier");
    k.running_products(&mut e);
    e.line("gpu.barrier");
    chunk.scores(&mut e);
    e.line("gpu.barrier");
    chunk.readouts(&mut e);
    e.line("gpu.barrier");
    k.outputs(&mut e, &mut ctx, &written, cols, &first, &bx)?;
    chunk.pass_states(&mut e);
    e.end();
    e.line("gpu.return");
    let p = crate::kernel::params(graph, false);
    let text = format!(
        "    gpu.func @{name}({}) kernel attributes {{known_block_size = array<i32: {THREADS}, 1, 1>}} {{\n{}    }}\n",
        p.text.join(", "),
        e.into_text()
    );
    Ok(Outcome::Written(Box::new(ChunkKernel {
        text,
        guards: guard_sites.into_inner(),
        threads: THREADS,
        columns: np,
        slices,
        chunk: c,
        shared_bytes: arrays.bytes,
        specialised,
        per_row_scores: arrays.states.iter().any(|s| s.per_row),
    })))
}

/// The phases of a chunk that evaluate the recurrence's expressions.
struct Kernel<'k, 'a> {
    chunk: &'k Chunk<'k>,
    sites: &'k Sites<'a>,
    form: &'k ChunkedForm,
    t0: &'k Val,
    steps: &'k Val,
    last_step: &'k Val,
}

impl<'a> Kernel<'_, 'a> {
    /// Step `t0 + j` clamped into the sequence (a padding step repeats the last one, so that
    /// its values are finite), and whether it is inside.
    fn step_of(&self, e: &mut Emitter, j: &Val) -> (Val, Val) {
        let t = e.add(self.t0, j);
        let inside = e.cmp(Cmp::Lt, &t, self.steps);
        (e.min(&t, self.last_step), inside)
    }

    /// Phase 1: the maps of every step, node after node (a later one may read an earlier one
    /// at any element).
    fn maps(&self, e: &mut Emitter, ctx: &mut Ctx<'a>) -> Result<(), NvptxError> {
        let graph = self.sites.graph;
        for (n, arr, ty, len) in &self.sites.maps {
            self.chunk.try_shared_out(e, self.chunk.c * len, |e, i| {
                let (j, f) = Chunk::split(e, i, *len);
                let (t, _) = self.step_of(e, &j);
                self.sites.at(e, ctx, &j, &t);
                let vector = !matches!(feature_of(graph, *n), Feature::Scalar);
                let tree = Tree::of_map(
                    graph,
                    ValueRef {
                        node: *n,
                        result: 0,
                    },
                    &|_| false,
                );
                let mut low = ExprLowering::new(graph, &PtxMath);
                let mut leaves = StepLeaves { ctx };
                let v = low
                    .lower(e, &mut leaves, &tree, vector.then_some(&f))
                    .map_err(|err| NvptxError::lowering(graph, *n, err))?;
                let v = e.cast(&v, ty);
                self.chunk.st(e, arr, &j, &f, &v);
                Ok(())
            })?;
            e.line("gpu.barrier");
        }
        Ok(())
    }

    /// Phase 2: every piece of the form at every step of the chunk.
    fn pieces(
        &self,
        e: &mut Emitter,
        ctx: &mut Ctx<'a>,
        cols: usize,
        first: &Val,
    ) -> Result<(), NvptxError> {
        let (ch, sites) = (self.chunk, self.sites);
        let c = ch.c;
        let zero = e.index(0);
        for (cs, sa) in self.form.states.iter().zip(&ch.arrays.states) {
            let rows = e.index(sa.rows as i64);
            match &cs.decay {
                Decay::PerRow(diag) => {
                    let ExprNode::Call(Builtin::Diag, args) = sites.arena.node(*diag) else {
                        return Err(NvptxError::internal(
                            sites.graph,
                            sites.node,
                            "a per-row decay without diag",
                        ));
                    };
                    let x = args[0];
                    ch.try_shared_out(e, c * sa.padded, |e, i| {
                        let (j, r) = Chunk::split(e, i, sa.padded);
                        let (t, inside) = self.step_of(e, &j);
                        let v = sites.eval(e, ctx, (&j, &t), x, Some(&r))?;
                        let row = e.cmp(Cmp::Lt, &r, &rows);
                        let keep = e.and(&inside, &row);
                        let one = e.f32(1.0);
                        let v = e.select(&keep, &v, &one);
                        ch.st(e, &sa.decay, &j, &r, &v);
                        Ok(())
                    })?;
                }
                decay => {
                    let factors: Vec<Factor> = match decay {
                        Decay::Scalar(f) => f.iter().map(|x| Factor::Times(*x)).collect(),
                        _ => Vec::new(),
                    };
                    ch.try_shared_out(e, c, |e, j| {
                        let (t, inside) = self.step_of(e, j);
                        let v = sites.product(e, ctx, (j, &t), &factors, false)?;
                        let one = e.f32(1.0);
                        let v = e.select(&inside, &v, &one);
                        ch.st(e, &sa.decay, j, &zero, &v);
                        Ok(())
                    })?;
                }
            }
            for (term, ta) in cs.terms.iter().zip(&sa.terms) {
                ch.try_shared_out(e, c, |e, j| {
                    let (t, inside) = self.step_of(e, j);
                    let v = sites.product(e, ctx, (j, &t), &term.factors, term.negated)?;
                    let none = e.f32(0.0);
                    let v = e.select(&inside, &v, &none);
                    ch.st(e, &ta.scale, j, &zero, &v);
                    Ok(())
                })?;
                ch.try_shared_out(e, c * sa.padded, |e, i| {
                    let (j, r) = Chunk::split(e, i, sa.padded);
                    let (t, _) = self.step_of(e, &j);
                    let v = match term.left {
                        Some(x) => sites.eval(e, ctx, (&j, &t), x, Some(&r))?,
                        None => e.f32(1.0),
                    };
                    let row = e.cmp(Cmp::Lt, &r, &rows);
                    let none = e.f32(0.0);
                    let v = e.select(&row, &v, &none);
                    ch.st(e, &ta.left, &j, &r, &v);
                    Ok(())
                })?;
                let Some(right) = &ta.right else { continue };
                let width = e.index(cols as i64);
                ch.try_shared_out(e, c * ch.np, |e, i| {
                    let (j, n) = Chunk::split(e, i, ch.np);
                    let (t, _) = self.step_of(e, &j);
                    let col = e.add(first, &n);
                    let v = match term.right {
                        Some(x) => sites.eval(e, ctx, (&j, &t), x, Some(&col))?,
                        None => e.f32(1.0),
                    };
                    let inside = e.cmp(Cmp::Lt, &col, &width);
                    let none = e.f32(0.0);
                    let v = e.select(&inside, &v, &none);
                    ch.st(e, right, &j, &n, &v);
                    Ok(())
                })?;
            }
        }
        for (r, ra) in self.form.readouts.iter().zip(&ch.arrays.readouts) {
            let sa = &ch.arrays.states[ra.state];
            let rows = e.index(sa.rows as i64);
            ch.try_shared_out(e, c * sa.padded, |e, i| {
                let (j, k) = Chunk::split(e, i, sa.padded);
                let (t, _) = self.step_of(e, &j);
                let v = sites.eval(e, ctx, (&j, &t), r.query, Some(&k))?;
                let row = e.cmp(Cmp::Lt, &k, &rows);
                let none = e.f32(0.0);
                let v = e.select(&row, &v, &none);
                ch.st(e, &ra.query, &j, &k, &v);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Phase 3: the decays' running products, a thread per row (per state for a scalar
    /// decay), and a scalar decay's `D[t][s]`, a thread per s.
    fn running_products(&self, e: &mut Emitter) {
        let ch = self.chunk;
        let c = ch.c;
        for sa in &ch.arrays.states {
            let width = if sa.per_row { sa.padded } else { 1 };
            ch.shared_out(e, width, |e, r| {
                let (zero, one, hi) = (e.index(0), e.index(1), e.index(c as i64));
                let unit = e.f32(1.0);
                let (j, acc, lp) = e.for_iter(&zero, &hi, &one, std::slice::from_ref(&unit));
                let a = ch.ld(e, &sa.decay, &j, r);
                let p = e.mul(&acc[0], &a);
                ch.st(e, &sa.to_step, &j, r, &p);
                e.end_for(&[p], lp);
                let (i, acc, lp) = e.for_iter(&zero, &hi, &one, &[unit]);
                let last = e.index(c as i64 - 1);
                let j = e.sub(&last, &i);
                ch.st(e, &sa.to_end, &j, r, &acc[0]);
                let a = ch.ld(e, &sa.decay, &j, r);
                let p = e.mul(&acc[0], &a);
                e.end_for(&[p], lp);
            });
            let Some(between) = &sa.between else { continue };
            ch.shared_out(e, c, |e, s| {
                let (zero, one, hi) = (e.index(0), e.index(1), e.index(c as i64));
                let unit = e.f32(1.0);
                ch.st(e, between, s, s, &unit);
                let from = e.add(s, &one);
                let (t, acc, lp) = e.for_iter(&from, &hi, &one, &[unit]);
                let a = ch.ld(e, &sa.decay, &t, &zero);
                let p = e.mul(&acc[0], &a);
                ch.st(e, between, &t, s, &p);
                e.end_for(&[p], lp);
            });
        }
    }

    /// Phase 6: the outputs of the chunk's steps from their read-outs, a thread per (step,
    /// column) (per step for a scalar output, written by the first slice).
    fn outputs(
        &self,
        e: &mut Emitter,
        ctx: &mut Ctx<'a>,
        written: &[super::Written],
        cols: usize,
        first: &Val,
        slice: &Val,
    ) -> Result<(), NvptxError> {
        let (ch, sites) = (self.chunk, self.sites);
        let graph = sites.graph;
        for (out, ty, axes, id) in written {
            let vector = sites.arena.ty(*id).feature != Feature::Scalar;
            let items = if vector { ch.c * ch.np } else { ch.c };
            ch.try_shared_out(e, items, |e, i| {
                let (j, n) = if vector {
                    Chunk::split(e, i, ch.np)
                } else {
                    (i.clone(), e.index(0))
                };
                let t = e.add(self.t0, &j);
                let inside = e.cmp(Cmp::Lt, &t, self.steps);
                let col = e.add(first, &n);
                let own = if vector {
                    let width = e.index(cols as i64);
                    e.cmp(Cmp::Lt, &col, &width)
                } else {
                    let zero = e.index(0);
                    e.cmp(Cmp::Eq, slice, &zero)
                };
                let cond = e.and(&inside, &own);
                e.if_then(&cond);
                sites.at(e, ctx, &j, &t);
                ctx.col = col.clone();
                let mut fixed = HashMap::new();
                for (r, ra) in self.form.readouts.iter().zip(&ch.arrays.readouts) {
                    let at = if ch.arrays.states[ra.state].matrix {
                        n.clone()
                    } else {
                        e.index(0)
                    };
                    fixed.insert(r.node, ch.ld(e, &ra.out, &j, &at));
                }
                let mut st = sites.step(ctx, fixed);
                let pos = if vector { vec![Pos::Own] } else { vec![] };
                let v = st.eval(e, *id, &pos)?;
                drop(st);
                let coords: Vec<Val> = axes
                    .iter()
                    .map(|fi| {
                        ctx.frame(*fi)
                            .map_err(|err| NvptxError::lowering(graph, sites.node, err))
                    })
                    .collect::<Result<_, _>>()?;
                let f = vector.then(|| col.clone());
                let at = flat_offset(e, &ctx.dims, &coords, f.as_ref(), &ty.dims);
                let buf = ctx.outputs.get(out).ok_or_else(|| {
                    NvptxError::internal(graph, sites.node, "an output without a buffer")
                })?;
                let v = e.cast(&v, &Ty::of_element(ty.dtype));
                e.store(&v, buf, &at);
                e.end();
                Ok(())
            })?;
        }
        Ok(())
    }
}
