//! The chunked form of a recurrence as MLIR for the host (see `attnc_passes::fusion::chunked`
//! for the derivation). One function runs one (b, h) slice chunk by chunk; per chunk of C steps:
//!
//! 1. per step, the step inputs, then the pieces of the form: each state's decay, each term's
//!    scale and vectors, each read-out's row (all read no state);
//! 2. running products of the decays: from the chunk's start to each step, and from each step to
//!    the chunk's end (products, not ratios of cumulative products: no division, so a decay
//!    that underflows over a long chunk gives 0, not 0 / 0, and any sign is allowed);
//! 3. each read-out: the carried state read by the decayed rows, plus the intra-chunk part,
//!    the scores of the rows against the terms' left vectors, masked to s <= t and weighted by
//!    the decay between s and t, times the right vectors;
//! 4. the outputs of each step from the read-outs;
//! 5. the states passed on: total decay times the state, plus each term decayed to the end.
//!
//! Loops over a state's columns are innermost and contiguous, so LLVM vectorises them.

use crate::mlir_text::Body;
use crate::parallel::Gen;
use crate::recurrent::{Scan, signature, state_shape, write_emit};
use crate::{CodegenError, Layout};
use attnc_ir::expr::{ExprArena, ExprId, ExprNode};
use attnc_ir::graph::{Graph, Op, ValueRef};
use attnc_mlir::KernelSignature;
use attnc_passes::fusion::chunked::{ChunkedForm, Factor};
use attnc_passes::fusion::recurrent::{Decay, RecurrentKernel};
use std::collections::BTreeMap;

pub const CHUNKED_KERNEL: &str = "attnc_chunked";

/// The chunk buffers of one state (each `[C]` or `[C, rows]`, flat).
struct StateChunk {
    state: String,
    rows: String,
    cols: String,
    /// The decay per step, when the state decays, and whether it is per row.
    decay: Option<(String, bool)>,
    /// Decay from the chunk's start to each step (inclusive) and from each step to the end.
    to_step: String,
    to_end: String,
    /// The input terms, then the delta rule's correction as one more term, if any.
    terms: Vec<TermChunk>,
    delta: Option<DeltaChunk>,
}

/// The delta rule's correction `c_t left_t (query_t @ S_{t-1})`: its coefficient and query per
/// step; its left vectors and corrected values `u` are the last term's buffers.
struct DeltaChunk {
    coefficient: String,
    query: String,
}

struct TermChunk {
    scale: String,
    left: Option<String>,
    right: Option<String>,
}

struct ReadoutChunk {
    state: usize,
    query: String,
    /// The read-out per step: `[C, cols]`, or `[C]` for `dot(x, z)`.
    result: String,
    len: String,
}

pub fn generate(
    graph: &Graph,
    plan: &RecurrentKernel,
    form: &ChunkedForm,
    chunk: usize,
    lanes: usize,
    constants: &BTreeMap<String, i64>,
) -> Result<(String, KernelSignature, Layout), CodegenError> {
    let order = graph
        .topo_order()
        .ok_or_else(|| CodegenError::Internal("cyclic graph".into()))?;
    let Op::Recurrence {
        arena,
        states,
        emits,
    } = &graph.node(plan.recurrence).op
    else {
        return Err(CodegenError::Internal("no recurrence".into()));
    };
    if form.states.len() != states.len() {
        return Err(CodegenError::Internal("a chunked form per state".into()));
    }
    let (params, layout, emitted) = signature(graph, plan, CHUNKED_KERNEL)?;
    let mut g = Gen::new(graph, 1, 1);
    g.constants = constants.clone();
    g.prologue_scan(&params)?;
    for &n in &order {
        if matches!(graph.node(n).op, Op::Map { .. } | Op::Load { .. }) {
            g.allocate(n)?;
        }
    }
    let cc = g.body.index(chunk as i64);
    let mut chunks = Vec::new();
    for (s, c) in states.iter().zip(&form.states) {
        let (rows, cols) = state_shape(&mut g, &s.feature);
        let size = g.body.bini("muli", &rows, &cols);
        let state = g.body.alloca_zeroed(&size);
        let per_row = g.body.bini("muli", &cc, &rows);
        let decay = match c.decay {
            Decay::None => None,
            Decay::Scalar(_) => Some((g.body.alloca_zeroed(&cc), false)),
            Decay::PerRow(_) => Some((g.body.alloca_zeroed(&per_row), true)),
            Decay::Other => return Err(CodegenError::Internal("chunked without a decay".into())),
        };
        let decay_len = match &decay {
            Some((_, true)) => per_row.clone(),
            _ => cc.clone(),
        };
        let to_step = g.body.alloca_zeroed(&decay_len);
        let to_end = g.body.alloca_zeroed(&decay_len);
        let mut terms = Vec::new();
        for t in &c.terms {
            let scale = g.body.alloca_zeroed(&cc);
            let left = match t.left {
                Some(_) => Some(g.body.alloca_zeroed(&per_row)),
                None => None,
            };
            let right = match t.right {
                Some(_) => {
                    let n = g.body.bini("muli", &cc, &cols);
                    Some(g.body.alloca_zeroed(&n))
                }
                None => None,
            };
            terms.push(TermChunk { scale, left, right });
        }
        let delta = match &c.delta {
            Some(_) => {
                let n = g.body.bini("muli", &cc, &cols);
                terms.push(TermChunk {
                    scale: g.body.alloca_zeroed(&cc),
                    left: Some(g.body.alloca_zeroed(&per_row)),
                    right: Some(g.body.alloca_zeroed(&n)),
                });
                Some(DeltaChunk {
                    coefficient: g.body.alloca_zeroed(&cc),
                    query: g.body.alloca_zeroed(&per_row),
                })
            }
            None => None,
        };
        chunks.push(StateChunk {
            state,
            rows,
            cols,
            decay,
            to_step,
            to_end,
            terms,
            delta,
        });
    }
    let mut readouts = Vec::new();
    for r in &form.readouts {
        let k = r.state as usize;
        let sc = &chunks[k];
        let (rows, len) = (sc.rows.clone(), sc.cols.clone());
        let q = g.body.bini("muli", &cc, &rows);
        let query = g.body.alloca_zeroed(&q);
        let n = g.body.bini("muli", &cc, &len);
        let result = g.body.alloca_zeroed(&n);
        readouts.push(ReadoutChunk {
            state: k,
            query,
            result,
            len,
        });
    }
    let cc2 = g.body.bini("muli", &cc, &cc);
    let scores = g.body.alloca_zeroed(&cc2);
    let max_rows = chunks
        .iter()
        .map(|c| c.rows.clone())
        .reduce(|a, b| g.body.op(&format!("arith.maxsi {a}, {b} : index")))
        .unwrap_or_else(|| g.c0.clone());
    let row_decay = g.body.alloca_zeroed(&max_rows);
    let operands: Vec<ValueRef> = graph
        .operands(plan.recurrence)
        .iter()
        .map(|(v, _)| *v)
        .collect();
    for &n in &plan.per_head {
        g.compute(n, "", "")?;
    }
    let steps = g.body.op("arith.index_cast %n_steps : i64 to index");
    let c0 = g.c0.clone();
    let c1 = g.body.index(1);
    let start = g.body.open_for_step(&c0, &steps, &cc);
    let left_over = g.body.bini("subi", &steps, &start);
    let len = g.body.op(&format!("arith.minsi {cc}, {left_over} : index"));
    let mut ch = Chunk {
        scan: Scan {
            g: &mut g,
            arena,
            operands: &operands,
            states: &[],
            readouts: Vec::new(),
        },
        plan,
        form,
        chunks: &chunks,
        readouts: &readouts,
        start,
        len,
        scores,
        row_decay,
        cc,
        c1,
        lanes,
    };
    ch.gather()?;
    ch.decay_products();
    ch.corrected_values();
    for r in 0..readouts.len() {
        ch.readout(r)?;
    }
    ch.emits(&emitted, emits, &steps)?;
    ch.pass_states();
    g.body.close();
    g.body.line("return");
    let text = crate::mlir_text::function(
        CHUNKED_KERNEL,
        &params,
        std::mem::replace(&mut g.body, Body::new(0)),
    );
    Ok((
        text,
        KernelSignature {
            name: CHUNKED_KERNEL.into(),
            params,
        },
        layout,
    ))
}

struct Chunk<'a, 'g, 'b> {
    scan: Scan<'a, 'g>,
    plan: &'b RecurrentKernel,
    form: &'b ChunkedForm,
    chunks: &'b [StateChunk],
    readouts: &'b [ReadoutChunk],
    /// The chunk's first step and its number of steps.
    start: String,
    len: String,
    /// `[C, C]` scores of one read-out against one term.
    scores: String,
    /// Running decay per row, while the scores of one term are computed.
    row_decay: String,
    /// The chunk length C and 1, as index constants.
    cc: String,
    c1: String,
    /// f32 lanes of the target's vectors: the loops over a row run this many at a time.
    lanes: usize,
}

impl Chunk<'_, '_, '_> {
    fn body(&mut self) -> &mut Body {
        &mut self.scan.g.body
    }

    fn c0(&self) -> String {
        self.scan.g.c0.clone()
    }

    /// Opens `for tt in 0..len` with the step inputs of step `start + tt` computed.
    fn open_step(&mut self) -> Result<String, CodegenError> {
        let (c0, len, start) = (self.c0(), self.len.clone(), self.start.clone());
        let tt = self.body().open_for(&c0, &len);
        let t = self.body().bini("addi", &start, &tt);
        self.scan.g.t = Some(t);
        for &n in &self.plan.step_inputs {
            self.scan.g.compute(n, "", "")?;
        }
        Ok(tt)
    }

    /// Stores the vector `id` of this step into row `tt` of `buf` (rows of `n`).
    fn store_vector(
        &mut self,
        id: ExprId,
        buf: &str,
        tt: &str,
        n: &str,
    ) -> Result<(), CodegenError> {
        let c0 = self.c0();
        let r = self.body().open_for(&c0, n);
        let v = self.scan.broadcast(id, std::slice::from_ref(&r))?;
        let o = self.body().row_offset(tt, n, &r);
        self.body().store(&v, buf, &o);
        self.body().close();
        Ok(())
    }

    /// Step 1: the decays, the terms' scales and vectors, and the read-out rows of every step.
    fn gather(&mut self) -> Result<(), CodegenError> {
        let tt = self.open_step()?;
        let (chunks, form, readouts) = (self.chunks, self.form, self.readouts);
        for (k, sc) in chunks.iter().enumerate() {
            let cs = &form.states[k];
            match (&cs.decay, &sc.decay) {
                (Decay::Scalar(f), Some((buf, false))) => {
                    let factors: Vec<Factor> = f.iter().map(|e| Factor::Times(*e)).collect();
                    let v = self.scale(false, &factors)?;
                    self.body().store(&v, buf, &tt);
                }
                (Decay::PerRow(d), Some((buf, true))) => {
                    let arg = diag_argument(self.scan.arena, *d)?;
                    self.store_vector(arg, buf, &tt, &sc.rows)?;
                }
                _ => {}
            }
            for (t, tc) in cs.terms.iter().zip(&sc.terms) {
                let v = self.scale(t.negated, &t.factors)?;
                self.body().store(&v, &tc.scale, &tt);
                if let (Some(l), Some(buf)) = (t.left, &tc.left) {
                    self.store_vector(l, buf, &tt, &sc.rows)?;
                }
                if let (Some(r), Some(buf)) = (t.right, &tc.right) {
                    self.store_vector(r, buf, &tt, &sc.cols)?;
                }
            }
        }
        for (k, sc) in chunks.iter().enumerate() {
            let (Some(d), Some(dc), Some(tc)) = (&form.states[k].delta, &sc.delta, sc.terms.last())
            else {
                continue;
            };
            let c = self.scale(d.negated, &d.factors)?;
            self.body().store(&c, &dc.coefficient, &tt);
            let one = self.body().f32(1.0);
            self.body().store(&one, &tc.scale, &tt);
            self.store_vector(d.query, &dc.query, &tt, &sc.rows)?;
            if let Some(left) = &tc.left {
                self.store_vector(d.left, left, &tt, &sc.rows)?;
            }
        }
        for (r, rc) in form.readouts.iter().zip(readouts) {
            let rows = chunks[rc.state].rows.clone();
            self.store_vector(r.query, &rc.query, &tt, &rows)?;
        }
        self.body().close();
        Ok(())
    }

    /// `± Π factors` of a term at this step.
    fn scale(&mut self, negated: bool, factors: &[Factor]) -> Result<String, CodegenError> {
        let mut v = self.body().f32(if negated { -1.0 } else { 1.0 });
        for f in factors {
            let (e, op) = match f {
                Factor::Times(e) => (*e, "mulf"),
                Factor::Over(e) => (*e, "divf"),
            };
            let x = self.scan.eval(e, &[])?;
            v = self.body().binf(op, &v, &x);
        }
        Ok(v)
    }

    /// Step 2: `to_step[t] = Π_{u<=t} a_u` and `to_end[t] = Π_{u>t} a_u` over the chunk.
    fn decay_products(&mut self) {
        let chunks = self.chunks;
        for sc in chunks {
            let Some((a, per_row)) = &sc.decay else {
                continue;
            };
            let one_row = self.body().index(1);
            let rows = if *per_row { sc.rows.clone() } else { one_row };
            let (c0, len) = (self.c0(), self.len.clone());
            let r = self.body().open_for(&c0, &rows);
            let one = self.body().f32(1.0);
            let (tt, acc, _) = self.body().open_fold(&c0, &len, &one);
            let o = self.body().row_offset(&tt, &rows, &r);
            let x = self.body().load(a, &o);
            let next = self.body().binf("mulf", &acc, &x);
            self.body().store(&next, &sc.to_step, &o);
            self.body().close_fold(&next);
            let (u, acc, _) = self.body().open_fold(&c0, &len, &one);
            let c1 = self.c1.clone();
            let last = self.body().bini("subi", &len, &c1);
            let tt = self.body().bini("subi", &last, &u);
            let o = self.body().row_offset(&tt, &rows, &r);
            self.body().store(&acc, &sc.to_end, &o);
            let x = self.body().load(a, &o);
            let next = self.body().binf("mulf", &acc, &x);
            self.body().close_fold(&next);
            self.body().close();
        }
    }

    /// Step 2b, for the delta rule: per step t in order, by forward substitution,
    /// `u_t = c_t (γ_{t-1} query_t @ S_0 + Σ_{i<t} D[t-1, i] (query_t · left_i) u_i + the input
    /// terms likewise)`, with `S_0` the state carried into the chunk.
    fn corrected_values(&mut self) {
        let chunks = self.chunks;
        let form = self.form;
        for (k, sc) in chunks.iter().enumerate() {
            let (Some(dc), Some(delta)) = (&sc.delta, sc.terms.last()) else {
                continue;
            };
            let (Some(left), Some(u)) = (&delta.left, &delta.right) else {
                continue;
            };
            let (c0, len, c1) = (self.c0(), self.len.clone(), self.c1.clone());
            let t = self.body().open_for(&c0, &len);
            let zero = self.body().f32(0.0);
            let c = self.body().open_for(&c0, &sc.cols);
            let o = self.body().row_offset(&t, &sc.cols, &c);
            self.body().store(&zero, u, &o);
            self.body().close();
            // γ_{t-1}: 1 at the chunk's first step.
            let first = self.body().op(&format!("arith.cmpi eq, {t}, {c0} : index"));
            let before = self.body().bini("subi", &t, &c1);
            let before = self
                .body()
                .op(&format!("arith.maxsi {before}, {c0} : index"));
            let one = self.body().f32(1.0);
            let gamma = match &sc.decay {
                Some((_, false)) => {
                    let g = self.body().load(&sc.to_step, &before);
                    self.body().select_f32(&first, &one, &g)
                }
                _ => one.clone(),
            };
            let r = self.body().open_for(&c0, &sc.rows);
            let qo = self.body().row_offset(&t, &sc.rows, &r);
            let x = self.body().load(&dc.query, &qo);
            let w = self.body().binf("mulf", &x, &gamma);
            self.accumulate_row(u, &t, &w, &sc.state, &r, &sc.cols);
            self.body().close();
            // Earlier steps, latest first, carrying D[t-1, i].
            let (j, d, _) = self.body().open_fold(&c0, &t, &one);
            let i = self.body().bini("subi", &before, &j);
            let w = self.row_dot(&dc.query, &t, Some(left), &i, &sc.rows);
            let w = self.body().binf("mulf", &w, &d);
            self.accumulate_row(u, &t, &w, u, &i, &sc.cols);
            for tc in &sc.terms[..form.states[k].terms.len()] {
                let p = self.row_dot(&dc.query, &t, tc.left.as_deref(), &i, &sc.rows);
                let e = self.body().load(&tc.scale, &i);
                let w = self.body().binf("mulf", &p, &e);
                let w = self.body().binf("mulf", &w, &d);
                match &tc.right {
                    Some(right) => self.accumulate_row(u, &t, &w, right, &i, &sc.cols),
                    None => {
                        let c = self.body().open_for(&c0, &sc.cols);
                        let o = self.body().row_offset(&t, &sc.cols, &c);
                        let x = self.body().load(u, &o);
                        let y = self.body().binf("addf", &x, &w);
                        self.body().store(&y, u, &o);
                        self.body().close();
                    }
                }
            }
            let d_next = match &sc.decay {
                Some((a, false)) => {
                    let x = self.body().load(a, &i);
                    self.body().binf("mulf", &d, &x)
                }
                _ => d.clone(),
            };
            self.body().close_fold(&d_next);
            let coefficient = self.body().load(&dc.coefficient, &t);
            let c = self.body().open_for(&c0, &sc.cols);
            let o = self.body().row_offset(&t, &sc.cols, &c);
            let x = self.body().load(u, &o);
            let y = self.body().binf("mulf", &x, &coefficient);
            self.body().store(&y, u, &o);
            self.body().close();
            self.body().close();
        }
    }

    /// `Σ_r a[a_row, r] b[b_row, r]` over `n` (b a row of ones when `None`), whole vectors first.
    fn row_dot(&mut self, a: &str, a_row: &str, b: Option<&str>, b_row: &str, n: &str) -> String {
        let c0 = self.c0();
        let split = self.vector_end(n);
        let mut partial = self.body().f32(0.0);
        if self.lanes > 1 {
            let lanes = self.lanes;
            let ty = format!("vector<{lanes}xf32>");
            let l = self.body().index(lanes as i64);
            let zero = self.body().vzero(lanes);
            let (r, acc, result) = self.body().open_carry(&c0, &split, &l, &[zero], &ty);
            let ao = self.body().row_offset(a_row, n, &r);
            let x = self.body().vload(a, &ao, lanes);
            let next = match b {
                Some(b) => {
                    let bo = self.body().row_offset(b_row, n, &r);
                    let y = self.body().vload(b, &bo, lanes);
                    self.body().vfma(&x, &y, &acc[0], lanes)
                }
                None => self.body().op(&format!(
                    "arith.addf {}, {x} fastmath<reassoc,contract> : {ty}",
                    acc[0]
                )),
            };
            self.body().close_carry(&[next], &ty);
            partial = self.body().op(&format!(
                "vector.reduction <add>, {} fastmath<reassoc,contract> : {ty} into f32",
                result[0]
            ));
        }
        let (r, acc, dot) = self.body().open_fold(&split, n, &partial);
        let ao = self.body().row_offset(a_row, n, &r);
        let mut x = self.body().load(a, &ao);
        if let Some(b) = b {
            let bo = self.body().row_offset(b_row, n, &r);
            let y = self.body().load(b, &bo);
            x = self.body().binf("mulf", &x, &y);
        }
        let next = self.body().binf("addf", &acc, &x);
        self.body().close_fold(&next);
        dot
    }

    /// The decay of state `sc` from the chunk's start to step `tt` at row `r` (1 if none).
    fn decay_at(&mut self, sc: &StateChunk, buf: &str, tt: &str, r: &str) -> Option<String> {
        let (_, per_row) = sc.decay.as_ref()?;
        let o = if *per_row {
            self.body().row_offset(tt, &sc.rows, r)
        } else {
            tt.to_string()
        };
        Some(self.body().load(buf, &o))
    }

    /// Step 3: one read-out for every step of the chunk.
    fn readout(&mut self, k: usize) -> Result<(), CodegenError> {
        let (chunks, form, readouts) = (self.chunks, self.form, self.readouts);
        let rc = &readouts[k];
        let sc = &chunks[rc.state];
        let cs = &form.states[rc.state];
        let scores = self.scores.clone();
        let (c0, len) = (self.c0(), self.len.clone());
        // The carried state, read by each step's row decayed since the chunk began.
        let tt = self.body().open_for(&c0, &len);
        let zero = self.body().f32(0.0);
        let c = self.body().open_for(&c0, &rc.len);
        let o = self.body().row_offset(&tt, &rc.len, &c);
        self.body().store(&zero, &rc.result, &o);
        self.body().close();
        let r = self.body().open_for(&c0, &sc.rows);
        let qo = self.body().row_offset(&tt, &sc.rows, &r);
        let mut w = self.body().load(&rc.query, &qo);
        if let Some(d) = self.decay_at(sc, &sc.to_step, &tt, &r) {
            w = self.body().binf("mulf", &w, &d);
        }
        self.accumulate_row(&rc.result, &tt, &w, &sc.state, &r, &rc.len);
        self.body().close();
        self.body().close();
        // Within the chunk, term by term.
        for tc in &sc.terms {
            self.scores(rc, sc, &cs.decay, tc)?;
            let tt = self.body().open_for(&c0, &len);
            let c1 = self.c1.clone();
            let end = self.body().bini("addi", &tt, &c1);
            let s = self.body().open_for(&c0, &end);
            let cc = self.chunk_len();
            let so = self.body().row_offset(&tt, &cc, &s);
            let w = self.body().load(&scores, &so);
            match &tc.right {
                Some(right) => self.accumulate_row(&rc.result, &tt, &w, right, &s, &rc.len),
                None => {
                    // A right side of ones: every column gains the score.
                    let c = self.body().open_for(&c0, &rc.len);
                    let o = self.body().row_offset(&tt, &rc.len, &c);
                    let acc = self.body().load(&rc.result, &o);
                    let next = self.body().binf("addf", &acc, &w);
                    self.body().store(&next, &rc.result, &o);
                    self.body().close();
                }
            }
            self.body().close();
            self.body().close();
        }
        Ok(())
    }

    /// The scores' row stride: they are laid out [C, C] whatever the chunk's own length.
    fn chunk_len(&mut self) -> String {
        self.cc.clone()
    }

    /// `dst[row, :] += w * src[src_row, :]` over `n` columns, whole vectors first.
    fn accumulate_row(&mut self, dst: &str, row: &str, w: &str, src: &str, src_row: &str, n: &str) {
        let lanes = self.lanes;
        let base_d = self.body().bini("muli", row, n);
        let base_s = self.body().bini("muli", src_row, n);
        let split = self.vector_end(n);
        if lanes > 1 {
            let (c0, l) = (self.c0(), self.body().index(lanes as i64));
            let wv = self.body().vbroadcast(w, lanes);
            let c = self.body().open_for_step(&c0, &split, &l);
            let od = self.body().bini("addi", &base_d, &c);
            let os = self.body().bini("addi", &base_s, &c);
            let acc = self.body().vload(dst, &od, lanes);
            let x = self.body().vload(src, &os, lanes);
            let y = self.body().vfma(&wv, &x, &acc, lanes);
            self.body().vstore(&y, dst, &od, lanes);
            self.body().close();
        }
        let c = self.body().open_for(&split, n);
        let od = self.body().bini("addi", &base_d, &c);
        let os = self.body().bini("addi", &base_s, &c);
        let acc = self.body().load(dst, &od);
        let x = self.body().load(src, &os);
        let p = self.body().binf("mulf", w, &x);
        let next = self.body().binf("addf", &acc, &p);
        self.body().store(&next, dst, &od);
        self.body().close();
    }

    /// Where the whole vectors of a row of `n` end (0 without vectors).
    fn vector_end(&mut self, n: &str) -> String {
        if self.lanes <= 1 {
            return self.c0();
        }
        let lanes = self.lanes as i64;
        let l = self.body().index(lanes);
        let whole = self.body().bini("floordivsi", n, &l);
        self.body().bini("muli", &whole, &l)
    }

    /// `scores[t, s] = scale_s Σ_r x_t[r] D[t, s][r] left_s[r]` for s <= t.
    fn scores(
        &mut self,
        rc: &ReadoutChunk,
        sc: &StateChunk,
        decay: &Decay,
        tc: &TermChunk,
    ) -> Result<(), CodegenError> {
        let (c0, len) = (self.c0(), self.len.clone());
        let cc = self.chunk_len();
        let per_row = matches!(decay, Decay::PerRow(_));
        let (scores, row_decay) = (self.scores.clone(), self.row_decay.clone());
        let s = self.body().open_for(&c0, &len);
        let scale = self.body().load(&tc.scale, &s);
        if per_row {
            let one = self.body().f32(1.0);
            let r = self.body().open_for(&c0, &sc.rows);
            self.body().store(&one, &row_decay, &r);
            self.body().close();
        }
        let one = self.body().f32(1.0);
        // The scalar decay between s and t, carried along t.
        let (tt, d, _) = self.body().open_fold(&s, &len, &one);
        let first = self.body().op(&format!("arith.cmpi eq, {tt}, {s} : index"));
        let d_here = match (&sc.decay, per_row) {
            (Some((a, false)), _) => {
                let x = self.body().load(a, &tt);
                let p = self.body().binf("mulf", &d, &x);
                self.body().select_f32(&first, &one, &p)
            }
            _ => one.clone(),
        };
        // Σ_r x_t[r] left_s[r] (D[t, s][r]), whole vectors of rows first, then the rest.
        let split = self.vector_end(&sc.rows);
        let mut partial = self.body().f32(0.0);
        if self.lanes > 1 {
            let lanes = self.lanes;
            let ty = format!("vector<{lanes}xf32>");
            let l = self.body().index(lanes as i64);
            let zero = self.body().vzero(lanes);
            let ones = self.body().vbroadcast(&one, lanes);
            let (r, acc, result) = self.body().open_carry(&c0, &split, &l, &[zero], &ty);
            let x = self.score_element(
                rc,
                sc,
                tc,
                per_row,
                &row_decay,
                &tt,
                &s,
                &r,
                &first,
                &ones,
                Some(lanes),
            );
            let next = self.body().vfma(&x.0, &x.1, &acc[0], lanes);
            self.body().close_carry(&[next], &ty);
            partial = self.body().op(&format!(
                "vector.reduction <add>, {} fastmath<reassoc,contract> : {ty} into f32",
                result[0]
            ));
        }
        let (r, acc, dot) = self.body().open_fold(&split, &sc.rows, &partial);
        let x = self.score_element(
            rc, sc, tc, per_row, &row_decay, &tt, &s, &r, &first, &one, None,
        );
        let p = self.body().binf("mulf", &x.0, &x.1);
        let next = self.body().binf("addf", &acc, &p);
        self.body().close_fold(&next);
        let w = self.body().binf("mulf", &dot, &d_here);
        let w = self.body().binf("mulf", &w, &scale);
        let so = self.body().row_offset(&tt, &cc, &s);
        self.body().store(&w, &scores, &so);
        self.body().close_fold(&d_here);
        self.body().close();
        Ok(())
    }

    /// The two factors of the score's sum at rows `r..r + lanes` (or row `r`): `x_t[r]` and
    /// `left_s[r] D[t, s][r]`, advancing the running per-row decay.
    #[allow(clippy::too_many_arguments)]
    fn score_element(
        &mut self,
        rc: &ReadoutChunk,
        sc: &StateChunk,
        tc: &TermChunk,
        per_row: bool,
        row_decay: &str,
        tt: &str,
        s: &str,
        r: &str,
        first: &str,
        one: &str,
        lanes: Option<usize>,
    ) -> (String, String) {
        let qo = self.body().row_offset(tt, &sc.rows, r);
        let x = self.load_n(&rc.query, &qo, lanes);
        let mut y = one.to_string();
        if let Some(left) = &tc.left {
            let lo = self.body().row_offset(s, &sc.rows, r);
            y = self.load_n(left, &lo, lanes);
        }
        if let (true, Some((a, _))) = (per_row, &sc.decay) {
            let prev = self.load_n(row_decay, r, lanes);
            let ao = self.body().row_offset(tt, &sc.rows, r);
            let ar = self.load_n(a, &ao, lanes);
            let p = self.mul_n(&prev, &ar, lanes);
            let ty = lanes.map_or("f32".to_string(), |l| format!("vector<{l}xf32>"));
            let dr = self
                .body()
                .op(&format!("arith.select {first}, {one}, {p} : {ty}"));
            match lanes {
                Some(l) => self.body().vstore(&dr, row_decay, r, l),
                None => self.body().store(&dr, row_decay, r),
            }
            y = self.mul_n(&y, &dr, lanes);
        }
        (x, y)
    }

    fn load_n(&mut self, buf: &str, i: &str, lanes: Option<usize>) -> String {
        match lanes {
            Some(l) => self.body().vload(buf, i, l),
            None => self.body().load(buf, i),
        }
    }

    fn mul_n(&mut self, a: &str, b: &str, lanes: Option<usize>) -> String {
        match lanes {
            Some(l) => self.body().op(&format!(
                "arith.mulf {a}, {b} fastmath<reassoc,contract> : vector<{l}xf32>"
            )),
            None => self.body().binf("mulf", a, b),
        }
    }

    /// Step 4: every output of every step of the chunk, from the read-outs.
    fn emits(
        &mut self,
        emitted: &[(String, usize)],
        emits: &[ExprId],
        steps: &str,
    ) -> Result<(), CodegenError> {
        let tt = self.open_step()?;
        let t = self.scan.g.t.clone().unwrap_or_default();
        self.scan.readouts.clear();
        let (form, readouts) = (self.form, self.readouts);
        for (r, rc) in form.readouts.iter().zip(readouts) {
            let row = self.body().bini("muli", &tt, &rc.len);
            self.scan.readouts.push((r.node, rc.result.clone(), row));
        }
        for (name, k) in emitted {
            write_emit(&mut self.scan, name, emits[*k], &t, steps)?;
        }
        self.scan.readouts.clear();
        self.body().close();
        Ok(())
    }

    /// Step 5: `S = to_step[end] * S + Σ_s to_end[s] scale_s outer(left_s, right_s)`.
    fn pass_states(&mut self) {
        let (c0, len) = (self.c0(), self.len.clone());
        let chunks = self.chunks;
        for sc in chunks {
            let c1 = self.c1.clone();
            let last = self.body().bini("subi", &len, &c1);
            let r = self.body().open_for(&c0, &sc.rows);
            if let Some(total) = self.decay_at(sc, &sc.to_step, &last, &r) {
                let c = self.body().open_for(&c0, &sc.cols);
                let o = self.body().row_offset(&r, &sc.cols, &c);
                let x = self.body().load(&sc.state, &o);
                let y = self.body().binf("mulf", &x, &total);
                self.body().store(&y, &sc.state, &o);
                self.body().close();
            }
            for tc in &sc.terms {
                let s = self.body().open_for(&c0, &len);
                let mut w = self.body().load(&tc.scale, &s);
                if let Some(d) = self.decay_at(sc, &sc.to_end, &s, &r) {
                    w = self.body().binf("mulf", &w, &d);
                }
                if let Some(left) = &tc.left {
                    let lo = self.body().row_offset(&s, &sc.rows, &r);
                    let l = self.body().load(left, &lo);
                    w = self.body().binf("mulf", &w, &l);
                }
                match &tc.right {
                    Some(right) => self.accumulate_row(&sc.state, &r, &w, right, &s, &sc.cols),
                    None => {
                        let c = self.body().open_for(&c0, &sc.cols);
                        let o = self.body().row_offset(&r, &sc.cols, &c);
                        let x = self.body().load(&sc.state, &o);
                        let y = self.body().binf("addf", &x, &w);
                        self.body().store(&y, &sc.state, &o);
                        self.body().close();
                    }
                }
                self.body().close();
            }
            self.body().close();
        }
    }
}

fn diag_argument(arena: &ExprArena, d: ExprId) -> Result<ExprId, CodegenError> {
    match arena.node(d) {
        ExprNode::Call(attnc_ir::expr::Builtin::Diag, args) if args.len() == 1 => Ok(args[0]),
        _ => Err(CodegenError::Internal(
            "a per-row decay that is not diag(d)".into(),
        )),
    }
}
