//! The chunked form of a recurrence as one compute shader (the derivation is
//! `attnc_passes::fusion::chunked`), for states with a scalar or per-row decay and rank-one
//! input terms. A workgroup covers (b, h, a slice of state columns), an invocation owns one
//! column of every matrix state (and a copy of every vector state), as in the scan. Per chunk
//! of C steps:
//!
//! 1. the invocations share out the steps: each computes its steps' inputs and the pieces of
//!    the form (decays, the terms' scales and vectors, the read-outs' rows) into workgroup
//!    arrays, a step past the end padded with decay 1 and scale 0; barrier;
//! 2. they share out the rows for the running products of the decays (from the chunk's start
//!    to each step, and from each step to its end: products, never ratios, so a decay that
//!    underflows gives 0 rather than 0 / 0), and the steps s for the scores of the read-out
//!    rows against the terms' left vectors, `Σ_r x_t[r] D[t, s][r] l_s[r]` for s ≤ t; barrier;
//! 3. each invocation, for its column and each step, adds the carried state read by the
//!    decayed rows to the scores times the right vectors, and writes the outputs;
//! 4. each invocation passes its column of the states on: total decay times the state, plus
//!    every term decayed to the chunk's end; barrier (the next chunk overwrites the arrays).

use crate::error::{Result, SpirvError};
use crate::recurrent::{Columns, StateBuf, Step, extent, outputs};
use crate::shader::{Shader, Ty, Val, glsl};
use attnc_ir::expr::{Builtin, ExprId, ExprNode};
use attnc_ir::graph::{Graph, Op};
use attnc_ir::types::{Feature, FrameIndex};
use attnc_passes::fusion::chunked::{ChunkedForm, Factor};
use attnc_passes::fusion::recurrent::{Decay, RecurrentKernel};
use rspirv::spirv::Word;
use std::collections::BTreeMap;

/// What [`write`] built, or why the chunked form does not apply (the scan runs instead).
pub(crate) enum Outcome {
    Written(Box<crate::recurrent::Written>),
    NotHere(String),
}

/// A `Workgroup` array of `[steps][width]` f32s.
#[derive(Clone, Copy)]
struct Shared {
    var: Word,
    width: u32,
}

impl Shared {
    fn new(s: &mut Shader, steps: u32, width: u32, words: &mut u32) -> Shared {
        *words += steps * width;
        Shared {
            var: s.workgroup_array(Ty::F32, steps * width),
            width,
        }
    }

    /// A pointer to element `[t][k]` (`k` ignored for a width of one).
    fn at(&self, s: &mut Shader, t: Val, k: Option<Val>) -> Result<Word> {
        let w = s.i32(self.width as i64);
        let base = s.mul(t, w)?;
        let i = match k {
            Some(k) if self.width > 1 => s.add(base, k)?,
            _ => base,
        };
        s.workgroup_element(self.var, Ty::F32, i)
    }

    fn load(&self, s: &mut Shader, t: Val, k: Option<Val>) -> Result<Val> {
        let p = self.at(s, t, k)?;
        s.load(Ty::F32, p)
    }

    fn store(&self, s: &mut Shader, t: Val, k: Option<Val>, v: Val) -> Result<()> {
        let p = self.at(s, t, k)?;
        s.store(p, v)
    }
}

/// One state's chunk arrays.
struct StateChunk {
    rows: u32,
    matrix: bool,
    /// Per step (and row, for a per-row decay), with its running products.
    decay: Option<Decays>,
    terms: Vec<TermChunk>,
}

struct Decays {
    per_step: Shared,
    /// From the chunk's start to each step, inclusive.
    to_step: Shared,
    /// From each step (exclusive) to the chunk's end.
    to_end: Shared,
}

struct TermChunk {
    scale: Shared,
    left: Option<Shared>,
    right: Option<Shared>,
}

struct ReadoutChunk {
    node: ExprId,
    state: usize,
    query: Shared,
    /// Against each term of the state: `[t][s]`.
    scores: Vec<Shared>,
}

/// Writes the chunked form of `plan` with chunks of at most `chunk` steps, its workgroup
/// arrays within `budget` bytes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write(
    graph: &Graph,
    plan: &RecurrentKernel,
    form: &ChunkedForm,
    chunk: u32,
    budget: u32,
    specialised: &BTreeMap<String, i64>,
    entry: &str,
) -> Result<Outcome> {
    let Op::Recurrence {
        arena,
        states,
        emits,
    } = &graph.node(plan.recurrence).op
    else {
        return Err(SpirvError::internal(
            "a recurrent plan without its recurrence",
        ));
    };
    if form.states.iter().any(|c| c.delta.is_some()) {
        return Ok(Outcome::NotHere(
            "the delta rule's chunked form (the UT transform) is not written for SPIR-V yet".into(),
        ));
    }
    if form.states.len() != states.len() {
        return Err(SpirvError::internal("a chunked form per state"));
    }
    let constant = |d: &attnc_ir::types::Dim| d.eval(specialised).ok().map(|v| v.max(1) as u32);
    let mut widths = Vec::new();
    for st in states {
        match &st.feature {
            Feature::Matrix(_, c) => widths.push(constant(c)),
            Feature::Vector(_) => {}
            _ => {
                return Ok(Outcome::NotHere(format!(
                    "state `{}` is neither a vector nor a matrix",
                    st.name
                )));
            }
        }
    }
    widths.dedup();
    let cols = match widths[..] {
        [Some(c)] => c,
        _ => {
            return Ok(Outcome::NotHere(
                "the matrix states differ in their columns (or there is none)".into(),
            ));
        }
    };
    let emits_fit = emits.iter().all(|e| match &arena.ty(*e).feature {
        Feature::Scalar => true,
        Feature::Vector(d) => constant(d) == Some(cols),
        _ => false,
    });
    if !emits_fit {
        return Ok(Outcome::NotHere(
            "an output row is not over the states' columns".into(),
        ));
    }
    // The chunk shrinks until its arrays fit the workgroup memory.
    let words = |c: u32| -> u32 {
        let mut w = 0;
        for (st, cs) in states.iter().zip(&form.states) {
            let rows = match &st.feature {
                Feature::Matrix(r, _) | Feature::Vector(r) => constant(r).unwrap_or(1),
                _ => 1,
            };
            w += match cs.decay {
                Decay::PerRow(_) => 3 * c * rows,
                Decay::Scalar(_) => 3 * c,
                _ => 0,
            };
            for t in &cs.terms {
                w += c + t.left.map_or(0, |_| c * rows) + t.right.map_or(0, |_| c * cols);
            }
        }
        for r in &form.readouts {
            let rows = match &states[r.state as usize].feature {
                Feature::Matrix(r, _) | Feature::Vector(r) => constant(r).unwrap_or(1),
                _ => 1,
            };
            w += c * rows + c * c * form.states[r.state as usize].terms.len() as u32;
        }
        w
    };
    let mut chunk = chunk.max(1);
    while chunk > 4 && 4 * words(chunk) > budget {
        chunk /= 2;
    }
    if 4 * words(chunk) > budget {
        return Ok(Outcome::NotHere(format!(
            "a chunk's arrays ({} bytes) do not fit the workgroup memory ({budget} bytes)",
            4 * words(chunk)
        )));
    }
    let outputs = outputs(graph, plan)?;
    let threads = cols.min(crate::recurrent::COLUMNS_PER_WORKGROUP);
    let slices = cols.div_ceil(threads);
    let mut s = Shader::new();
    let (mut ctx, globals) = crate::kernel::bind(&mut s, graph, specialised)?;
    let mut shared_words = 0;
    let mut chunks = Vec::new();
    for (st, cs) in states.iter().zip(&form.states) {
        let (rows, _) = extent(&ctx, &st.feature)?;
        let decay = match cs.decay {
            Decay::None => None,
            Decay::Scalar(_) | Decay::PerRow(_) => {
                let w = if matches!(cs.decay, Decay::PerRow(_)) {
                    rows
                } else {
                    1
                };
                Some(Decays {
                    per_step: Shared::new(&mut s, chunk, w, &mut shared_words),
                    to_step: Shared::new(&mut s, chunk, w, &mut shared_words),
                    to_end: Shared::new(&mut s, chunk, w, &mut shared_words),
                })
            }
            Decay::Other => return Err(SpirvError::internal("a chunked form without a decay")),
        };
        let terms = cs
            .terms
            .iter()
            .map(|t| TermChunk {
                scale: Shared::new(&mut s, chunk, 1, &mut shared_words),
                left: t
                    .left
                    .map(|_| Shared::new(&mut s, chunk, rows, &mut shared_words)),
                right: t
                    .right
                    .map(|_| Shared::new(&mut s, chunk, cols, &mut shared_words)),
            })
            .collect();
        chunks.push(StateChunk {
            rows,
            matrix: matches!(st.feature, Feature::Matrix(..)),
            decay,
            terms,
        });
    }
    let readouts: Vec<ReadoutChunk> = form
        .readouts
        .iter()
        .map(|r| {
            let k = r.state as usize;
            ReadoutChunk {
                node: r.node,
                state: k,
                query: Shared::new(&mut s, chunk, chunks[k].rows, &mut shared_words),
                scores: (0..chunks[k].terms.len())
                    .map(|_| Shared::new(&mut s, chunk, chunk, &mut shared_words))
                    .collect(),
            }
        })
        .collect();
    let f = s.begin_function()?;
    let columns = Columns::Own { cols };
    let (own, inside) = crate::recurrent::invocation(&mut s, &mut ctx, &globals, columns, threads)?;
    let own = own.ok_or_else(|| SpirvError::internal("a chunk without a column"))?;
    let local = s.builtin_component(globals.local, 0)?;
    let mut bufs = Vec::new();
    for st in states {
        let (rows, _) = extent(&ctx, &st.feature)?;
        let current = s.array_local(Ty::F32, rows);
        let zero = s.f32(0.0);
        s.features(rows, |s, k| {
            let p = s.local_element(current, Ty::F32, k)?;
            s.store(p, zero)
        })?;
        bufs.push(StateBuf {
            current,
            next: current,
            rows,
            cols: 1,
            len: rows,
        });
    }
    let max_rows = chunks.iter().map(|c| c.rows).max().unwrap_or(1);
    let running = s.array_local(Ty::F32, max_rows);
    let operands = crate::recurrent::recurrence_operands(graph, plan);
    let (mut step, steps) = Step::new(&mut s, ctx, plan, &operands, &bufs, columns, Some(own))?;
    let emit_inputs = emit_inputs(graph, plan, arena, emits, form);
    let cc = s.i32(chunk as i64);
    let cm1 = s.i32(chunk as i64 - 1);
    let n_chunks = {
        let up = s.add(steps, cm1)?;
        crate::expr::floor_div(&mut s, up, cc)?
    };
    let zero = s.i32(0);
    let pieces = Pieces {
        form,
        chunks: &chunks,
        readouts: &readouts,
        chunk,
        threads,
        local,
        steps,
    };
    s.for_range(zero, n_chunks, |s, k| {
        let t0 = s.mul(k, cc)?;
        pieces.inputs(s, &mut step, plan, t0)?;
        s.barrier()?;
        pieces.products(s, running)?;
        s.barrier()?;
        let left = s.sub(steps, t0)?;
        let len = s.ext(Ty::I32, glsl::SMIN, &[left, cc])?;
        let zero = s.i32(0);
        s.for_range(zero, len, |s, t| {
            let at = s.add(t0, t)?;
            step.ctx.frame.insert(FrameIndex::T, at);
            for &n in &emit_inputs {
                crate::nodes::compute(s, &mut step.ctx, &mut step.low, n, true)?;
            }
            step.readouts.clear();
            for r in pieces.readouts {
                let v = pieces.readout(s, &step, r, t)?;
                step.readouts.insert(r.node, v);
            }
            step.emit(s, emits, &outputs, inside)
        })?;
        pieces.pass_states(s, &step)?;
        s.barrier()
    })?;
    s.finish_function(f, entry, threads)?;
    let guards = std::mem::take(&mut step.ctx.guards);
    Ok(Outcome::Written(Box::new(crate::recurrent::Written {
        module: s.module(),
        guards,
        threads,
        slices,
        mapping: format!(
            "chunks of {chunk} steps per (b, h, slice of {threads} state columns), {slices} slice(s) of {cols} columns: the chunk's decays, terms and read-out rows computed by the workgroup into {} bytes of workgroup memory, then each invocation's column of the outputs and of the states passed on",
            4 * shared_words
        ),
        shared_bytes: 4 * shared_words,
    })))
}

/// The step inputs the emitted values read outside their read-outs, with what they read.
fn emit_inputs(
    graph: &Graph,
    plan: &RecurrentKernel,
    arena: &attnc_ir::expr::ExprArena,
    emits: &[ExprId],
    form: &ChunkedForm,
) -> Vec<petgraph::stable_graph::NodeIndex> {
    let operands = graph.operands(plan.recurrence);
    let mut wanted = std::collections::BTreeSet::new();
    let mut stack: Vec<ExprId> = emits.to_vec();
    while let Some(id) = stack.pop() {
        if form.readouts.iter().any(|r| r.node == id) {
            continue;
        }
        if let ExprNode::Operand(k) = arena.node(id)
            && let Some((v, _)) = operands.get(*k as usize)
        {
            wanted.insert(v.node);
        }
        stack.extend(arena.node(id).children());
    }
    let mut more: Vec<_> = wanted.iter().copied().collect();
    while let Some(n) = more.pop() {
        for (v, _) in graph.operands(n) {
            if plan.step_inputs.contains(&v.node) && wanted.insert(v.node) {
                more.push(v.node);
            }
        }
    }
    plan.step_inputs
        .iter()
        .copied()
        .filter(|n| wanted.contains(n))
        .collect()
}

/// The chunk's arrays and how the work is shared out.
struct Pieces<'a> {
    form: &'a ChunkedForm,
    chunks: &'a [StateChunk],
    readouts: &'a [ReadoutChunk],
    chunk: u32,
    threads: u32,
    local: Val,
    steps: Val,
}

impl Pieces<'_> {
    /// `body(i)` for the invocation's share of `0..n`: i = local, local + threads, ...
    fn shared_out(
        &self,
        s: &mut Shader,
        n: u32,
        body: impl FnMut(&mut Shader, Val) -> Result<()>,
    ) -> Result<()> {
        let rounds = n.div_ceil(self.threads);
        let (zero, hi) = (s.i32(0), s.i32(rounds as i64));
        let mut body = body;
        s.for_range(zero, hi, |s, k| {
            let w = s.i32(self.threads as i64);
            let base = s.mul(k, w)?;
            let i = s.add(base, self.local)?;
            let n = s.i32(n as i64);
            let go = s.lt(i, n)?;
            s.when(go, |s| body(s, i))
        })
    }

    /// Phase 1: each step's inputs and pieces, padded past the last step.
    fn inputs<'a, 'g: 'a>(
        &self,
        s: &mut Shader,
        step: &mut Step<'a, 'g>,
        plan: &RecurrentKernel,
        t0: Val,
    ) -> Result<()> {
        self.shared_out(s, self.chunk, |s, i| {
            let t = s.add(t0, i)?;
            let valid = s.lt(t, self.steps)?;
            let one = s.i32(1);
            let last = s.sub(self.steps, one)?;
            let t = s.select(valid, t, last)?;
            step.ctx.frame.insert(FrameIndex::T, t);
            for &n in &plan.step_inputs {
                crate::nodes::compute(s, &mut step.ctx, &mut step.low, n, true)?;
            }
            step.scalars.clear();
            let (f_one, f_zero) = (s.f32(1.0), s.f32(0.0));
            for (cs, sc) in self.form.states.iter().zip(self.chunks) {
                if let Some(d) = &sc.decay {
                    match &cs.decay {
                        Decay::Scalar(factors) => {
                            let mut v = f_one;
                            for &x in factors {
                                step.precompute(s, x)?;
                                let x = step.eval_f32(s, x, &[])?;
                                v = s.mul(v, x)?;
                            }
                            let v = s.select(valid, v, f_one)?;
                            d.per_step.store(s, i, None, v)?;
                        }
                        Decay::PerRow(diag) => {
                            let ExprNode::Call(Builtin::Diag, args) = step.arena.node(*diag) else {
                                return Err(SpirvError::internal("a per-row decay without diag"));
                            };
                            let x = args[0];
                            step.precompute(s, x)?;
                            s.features(sc.rows, |s, r| {
                                let v = step.eval_f32(s, x, &[r])?;
                                let v = s.select(valid, v, f_one)?;
                                d.per_step.store(s, i, Some(r), v)
                            })?;
                        }
                        _ => {}
                    }
                }
                for (term, tc) in cs.terms.iter().zip(&sc.terms) {
                    let mut v = s.f32(if term.negated { -1.0 } else { 1.0 });
                    for f in &term.factors {
                        let (Factor::Times(x) | Factor::Over(x)) = *f;
                        step.precompute(s, x)?;
                        let x = step.eval_f32(s, x, &[])?;
                        v = match f {
                            Factor::Times(_) => s.mul(v, x)?,
                            Factor::Over(_) => s.fdiv(v, x)?,
                        };
                    }
                    let v = s.select(valid, v, f_zero)?;
                    tc.scale.store(s, i, None, v)?;
                    for (side, arr) in [(term.left, tc.left), (term.right, tc.right)] {
                        if let (Some(x), Some(arr)) = (side, arr) {
                            step.precompute(s, x)?;
                            s.features(arr.width, |s, r| {
                                let v = step.eval_f32(s, x, &[r])?;
                                arr.store(s, i, Some(r), v)
                            })?;
                        }
                    }
                }
            }
            for (r, rc) in self.form.readouts.iter().zip(self.readouts) {
                step.precompute(s, r.query)?;
                s.features(rc.query.width, |s, k| {
                    let v = step.eval_f32(s, r.query, &[k])?;
                    rc.query.store(s, i, Some(k), v)
                })?;
            }
            Ok(())
        })
    }

    /// Phase 2: the running products of the decays (shared out by row) and the scores
    /// (shared out by the step s of the left vector).
    fn products(&self, s: &mut Shader, running: Word) -> Result<()> {
        let c = self.chunk;
        for sc in self.chunks {
            let Some(d) = &sc.decay else { continue };
            self.shared_out(s, d.per_step.width, |s, r| {
                let acc = s.scalar_local(Ty::F32);
                let one = s.f32(1.0);
                s.store(acc, one)?;
                s.features(c, |s, t| {
                    let a = d.per_step.load(s, t, Some(r))?;
                    let p = s.load(Ty::F32, acc)?;
                    let p = s.mul(p, a)?;
                    s.store(acc, p)?;
                    d.to_step.store(s, t, Some(r), p)
                })?;
                s.store(acc, one)?;
                s.features(c, |s, k| {
                    let cm1 = s.i32(c as i64 - 1);
                    let t = s.sub(cm1, k)?;
                    let p = s.load(Ty::F32, acc)?;
                    d.to_end.store(s, t, Some(r), p)?;
                    let a = d.per_step.load(s, t, Some(r))?;
                    let p = s.mul(p, a)?;
                    s.store(acc, p)
                })
            })?;
        }
        for rc in self.readouts {
            let sc = &self.chunks[rc.state];
            for (tc, scores) in sc.terms.iter().zip(&rc.scores) {
                self.shared_out(s, c, |s, from| {
                    let one = s.f32(1.0);
                    s.features(sc.rows, |s, r| {
                        let p = s.local_element(running, Ty::F32, r)?;
                        s.store(p, one)
                    })?;
                    let hi = s.i32(c as i64);
                    s.for_range(from, hi, |s, t| {
                        let acc = s.scalar_local(Ty::F32);
                        let zero = s.f32(0.0);
                        s.store(acc, zero)?;
                        let later = s.cmp(crate::shader::Cmp::Gt, t, from)?;
                        s.features(sc.rows, |s, r| {
                            let p = s.local_element(running, Ty::F32, r)?;
                            let mut prod = s.load(Ty::F32, p)?;
                            if let Some(d) = &sc.decay {
                                let a = d.per_step.load(s, t, Some(r))?;
                                let next = s.mul(prod, a)?;
                                prod = s.select(later, next, prod)?;
                                s.store(p, prod)?;
                            }
                            let x = rc.query.load(s, t, Some(r))?;
                            let l = match &tc.left {
                                Some(l) => l.load(s, from, Some(r))?,
                                None => one,
                            };
                            let xl = s.mul(x, l)?;
                            let a = s.load(Ty::F32, acc)?;
                            let next = s.ext(Ty::F32, glsl::FMA, &[xl, prod, a])?;
                            s.store(acc, next)
                        })?;
                        let v = s.load(Ty::F32, acc)?;
                        scores.store(s, t, Some(from), v)
                    })
                })?;
            }
        }
        Ok(())
    }

    /// Phase 3: read-out `rc` at step `t` of the chunk, at the invocation's column.
    fn readout(
        &self,
        s: &mut Shader,
        step: &Step<'_, '_>,
        rc: &ReadoutChunk,
        t: Val,
    ) -> Result<Val> {
        let sc = &self.chunks[rc.state];
        let state = step.states[rc.state].current;
        let own = step
            .own
            .ok_or_else(|| SpirvError::internal("a chunk without a column"))?;
        let acc = s.scalar_local(Ty::F32);
        let zero = s.f32(0.0);
        s.store(acc, zero)?;
        s.features(sc.rows, |s, r| {
            let x = rc.query.load(s, t, Some(r))?;
            let x = match &sc.decay {
                Some(d) => {
                    let p = d.to_step.load(s, t, Some(r))?;
                    s.mul(x, p)?
                }
                None => x,
            };
            let p = s.local_element(state, Ty::F32, r)?;
            let v = s.load(Ty::F32, p)?;
            let a = s.load(Ty::F32, acc)?;
            let next = s.ext(Ty::F32, glsl::FMA, &[x, v, a])?;
            s.store(acc, next)
        })?;
        for (tc, scores) in sc.terms.iter().zip(&rc.scores) {
            let one = s.i32(1);
            let upto = s.add(t, one)?;
            let zero = s.i32(0);
            s.for_range(zero, upto, |s, from| {
                let w = scores.load(s, t, Some(from))?;
                let c = tc.scale.load(s, from, None)?;
                let mut v = s.mul(w, c)?;
                if let (Some(right), true) = (&tc.right, sc.matrix) {
                    let y = right.load(s, from, Some(own))?;
                    v = s.mul(v, y)?;
                }
                let a = s.load(Ty::F32, acc)?;
                let next = s.add(a, v)?;
                s.store(acc, next)
            })?;
        }
        s.load(Ty::F32, acc)
    }

    /// Phase 4: the invocation's column of every state, passed to the next chunk.
    fn pass_states(&self, s: &mut Shader, step: &Step<'_, '_>) -> Result<()> {
        let own = step
            .own
            .ok_or_else(|| SpirvError::internal("a chunk without a column"))?;
        let last = s.i32(self.chunk as i64 - 1);
        for (k, sc) in self.chunks.iter().enumerate() {
            let state = step.states[k].current;
            s.features(sc.rows, |s, r| {
                let p = s.local_element(state, Ty::F32, r)?;
                let mut v = s.load(Ty::F32, p)?;
                if let Some(d) = &sc.decay {
                    let total = d.to_step.load(s, last, Some(r))?;
                    v = s.mul(total, v)?;
                }
                let acc = s.scalar_local(Ty::F32);
                s.store(acc, v)?;
                for tc in &sc.terms {
                    s.features(self.chunk, |s, from| {
                        let mut x = tc.scale.load(s, from, None)?;
                        if let Some(d) = &sc.decay {
                            let e = d.to_end.load(s, from, Some(r))?;
                            x = s.mul(x, e)?;
                        }
                        if let Some(l) = &tc.left {
                            let y = l.load(s, from, Some(r))?;
                            x = s.mul(x, y)?;
                        }
                        if let (Some(right), true) = (&tc.right, sc.matrix) {
                            let y = right.load(s, from, Some(own))?;
                            x = s.mul(x, y)?;
                        }
                        let a = s.load(Ty::F32, acc)?;
                        let next = s.add(a, x)?;
                        s.store(acc, next)
                    })?;
                }
                let v = s.load(Ty::F32, acc)?;
                s.store(p, v)
            })?;
        }
        Ok(())
    }
}
