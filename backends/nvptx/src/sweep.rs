//! One sweep over the key tiles of a block, in the fragment world of the matrix units.
//!
//! The loop visits only the tiles the mask's tile rule keeps, evaluated in the kernel for the
//! block's box (`attnc_lower::tile_rule`). The next visited tile's key and value rows are copied
//! asynchronously into the other pipeline stage while the current one is used. Per tile: the
//! key-side values computed by threads; the score products on the matrix units; every pair
//! value at each of the thread's score elements; then each reduction: running maxima reduced
//! across the four lanes that share a row, online terms rescaled by `exp(Z_old - Z_new)` and
//! accumulated (sums per thread, aggregations as a second product of the weights with the value
//! tile). After the loop the partial sums are reduced across lanes and each reduction's value is
//! written to its row buffer, with its per-row factor applied.

// Fragment code walks several arrays of one layout (rows, scores, statistics) by position.
#![allow(clippy::needless_range_loop)]

use crate::NvptxError;
use crate::classify::Home;
use crate::kernel::Body;
use crate::leaves::{At, Here};
use crate::mma::{self, Kind};
use attnc_ir::graph::{Op, ReduceKind, ValueRef};
use attnc_ir::types::FrameIndex;
use attnc_lower::tile_rule::{KernelBox, coverage_code};
use attnc_lower::{Cmp, Emitter, ExprLowering, MathHooks, PtxMath, Ty, Val};
use attnc_passes::fusion::online::OnlineTerm;
use attnc_passes::fusion::tile_rule::mask_tree;
use attnc_passes::fusion::tree::Tree;
use attnc_passes::fusion::{Accumulation, ReductionPlan, Sweep};
use petgraph::stable_graph::NodeIndex;
use std::collections::{BTreeMap, BTreeSet};

/// A reduction's registers across the tiles (private arrays, constant-indexed, so they live in
/// registers).
enum State {
    /// A running maximum or minimum per thread row (2), identical across the row's lanes.
    Extreme { kind: ReduceKind, stat: Val },
    /// A plain sum: per-thread partials per row (2).
    Sum { acc: Val },
    /// A plain aggregation: the accumulator fragments (4 per 8 value columns).
    Aggregate { acc: Val, blocks: usize },
    /// Online terms: each its accumulator (2 for a sum, fragments for an aggregation) and its
    /// shift per row; whether any pair was kept, per row.
    Online {
        terms: Vec<(Val, Option<Val>)>,
        seen: Val,
        blocks: Option<usize>,
    },
}

pub(crate) struct Sweeper<'b, 'a, 'c> {
    body: &'b Body<'a, 'c>,
    /// The reductions each node's value depends on.
    stats: BTreeMap<NodeIndex, BTreeSet<NodeIndex>>,
    sweep_of: BTreeMap<NodeIndex, usize>,
    /// The score's query fragments, per score node, when they stay in registers.
    q_frags: BTreeMap<NodeIndex, Vec<Vec<Val>>>,
    mask: Option<Tree>,
    n_j: Val,
    last_j: Val,
    n_kt: Val,
    /// With TMA: each stage barrier's parity for its next wait, carried across sweeps (a
    /// barrier's phases run on through every sweep of the kernel).
    phases: Vec<Val>,
}

fn ix(e: &mut Emitter, x: usize) -> Val {
    e.index(x as i64)
}

fn get(e: &mut Emitter, arr: &Val, k: usize) -> Val {
    let i = ix(e, k);
    e.load(arr, &i)
}

fn put(e: &mut Emitter, v: &Val, arr: &Val, k: usize) {
    let i = ix(e, k);
    e.store(v, arr, &i);
}

/// Reduces `x` over the four lanes of a row (lanes 4g .. 4g + 3).
fn quad(e: &mut Emitter, x: &Val, op: &dyn Fn(&mut Emitter, &Val, &Val) -> Val) -> Val {
    let a = mma::shuffle_xor(e, x, 1);
    let x = op(e, x, &a);
    let b = mma::shuffle_xor(e, &x, 2);
    op(e, &x, &b)
}

/// What identifies a term's weight: its factor, exponent and shift.
type WeightKey = (Tree, Option<Tree>, Option<Tree>);

/// One score element of the thread: its position and the pair values computed there.
struct Element {
    ri: usize,
    at: At,
    valid: Val,
    /// Kept and in range by construction (a whole tile): `valid` is the constant true.
    always: bool,
    local: BTreeMap<NodeIndex, Val>,
}

impl<'b, 'a, 'c> Sweeper<'b, 'a, 'c> {
    pub fn new(body: &'b Body<'a, 'c>, e: &mut Emitter) -> Result<Self, NvptxError> {
        let graph = body.ctx.graph;
        let stats = attnc_passes::fusion::reductions_read(graph, &body.order);
        let sweep_of = body.plan.sweep_of();
        let ctx = body.ctx;
        let n_j = crate::kernel::extent(e, graph, &ctx.dims, FrameIndex::J);
        let one = e.index(1);
        let last_j = e.sub(&n_j, &one);
        let bk = ix(e, body.shape.bk);
        let n_kt = e.arith(attnc_lower::Arith::CeilDiv, &n_j, &bk);
        let mut q_frags = BTreeMap::new();
        if body.shape.query_in_registers {
            for &n in &body.plan.pair {
                if let Op::Score = graph.node(n).op {
                    let q = graph.operands(n)[0].0.node;
                    let buf = ctx.layout.operand[&q];
                    let s = &ctx.layout.shared[buf];
                    let kind = body.shape.score;
                    let steps = s.len.div_ceil(kind.k());
                    let zero = ix(e, 0);
                    let frags = mma::a_fragments(
                        e,
                        kind,
                        &ctx.views[buf],
                        &zero,
                        s.arrangement(),
                        &body.lane,
                        steps,
                    );
                    q_frags.insert(n, frags);
                }
            }
        }
        let phases = if ctx.layout.tma.is_some() {
            (0..body.shape.stages).map(|_| ix(e, 0)).collect()
        } else {
            Vec::new()
        };
        Ok(Sweeper {
            body,
            stats,
            sweep_of,
            q_frags,
            mask: body.plan.mask.map(|m| mask_tree(graph, m)),
            n_j,
            last_j,
            n_kt,
            phases,
        })
    }

    /// Whether every statistic node `n` reads is final after sweep `s`.
    pub fn ready_after(&self, n: NodeIndex, s: usize) -> bool {
        self.stats.get(&n).is_none_or(|deps| {
            deps.iter()
                .all(|d| self.sweep_of.get(d).is_some_and(|k| *k <= s))
        })
    }

    fn value_blocks(&self, r: &ReductionPlan) -> Result<usize, NvptxError> {
        let graph = self.body.ctx.graph;
        let len = crate::classify::feature_len(graph, r.node, &self.body.ctx.layout.specialised)?;
        Ok(len.div_ceil(8))
    }

    fn state(&self, e: &mut Emitter, r: &ReductionPlan) -> Result<State, NvptxError> {
        let graph = self.body.ctx.graph;
        let aggregate = matches!(graph.node(r.node).op, Op::Aggregate);
        Ok(match (&r.accumulation, aggregate) {
            (Accumulation::Plain { .. }, false) if r.kind != ReduceKind::Sum => State::Extreme {
                kind: r.kind,
                stat: e.alloca(2, Ty::F32),
            },
            (Accumulation::Plain { .. }, false) => State::Sum {
                acc: e.alloca(2, Ty::F32),
            },
            (Accumulation::Plain { .. }, true) => {
                let blocks = self.value_blocks(r)?;
                State::Aggregate {
                    acc: e.alloca(blocks * 4, Ty::F32),
                    blocks,
                }
            }
            (Accumulation::Online { terms }, _) => {
                let blocks = if aggregate {
                    Some(self.value_blocks(r)?)
                } else {
                    None
                };
                let n = blocks.map_or(2, |b| b * 4);
                State::Online {
                    terms: terms
                        .iter()
                        .map(|t| {
                            (
                                e.alloca(n, Ty::F32),
                                t.shift.as_ref().map(|_| e.alloca(2, Ty::F32)),
                            )
                        })
                        .collect(),
                    seen: e.alloca(2, Ty::F32),
                    blocks,
                }
            }
        })
    }

    fn init(e: &mut Emitter, st: &State) {
        let fill = |e: &mut Emitter, arr: &Val, n: usize, x: f64| {
            let v = e.f32(x);
            for k in 0..n {
                put(e, &v, arr, k);
            }
        };
        match st {
            State::Extreme { kind, stat } => fill(e, stat, 2, kind.identity()),
            State::Sum { acc } => fill(e, acc, 2, 0.0),
            State::Aggregate { acc, blocks } => fill(e, acc, blocks * 4, 0.0),
            State::Online {
                terms,
                seen,
                blocks,
            } => {
                for (acc, z) in terms {
                    fill(e, acc, blocks.map_or(2, |b| b * 4), 0.0);
                    if let Some(z) = z {
                        fill(e, z, 2, f64::NEG_INFINITY);
                    }
                }
                fill(e, seen, 2, 0.0);
            }
        }
    }

    /// The sweep: state, the loop over the visited key tiles, and the finished values.
    pub fn sweep(&mut self, e: &mut Emitter, _s: usize, sweep: &Sweep) -> Result<(), NvptxError> {
        let mut states = Vec::new();
        for r in &sweep.reductions {
            states.push(self.state(e, r)?);
        }
        for st in &states {
            Self::init(e, st);
        }
        let zero = ix(e, 0);
        let first = self.next_visited(e, &zero);
        let stages = self.body.shape.stages;
        let some = e.cmp(Cmp::Lt, &first, &self.n_kt);
        let tma = self.body.ctx.layout.tma.is_some();
        if tma {
            // Whatever threads wrote over the stage buffers before (the zeroes, an earlier
            // sweep's epilogue) is ordered before the copies that overwrite it.
            self.publish(e);
            let lead = self.lead(e);
            let go = e.and(&some, &lead);
            e.if_then(&go);
            self.issue_tma(e, &first, &zero)?;
            e.end();
        } else if stages > 1 {
            e.if_then(&some);
            self.issue(e, &first, &zero)?;
            e.end();
            e.line("nvvm.cp.async.commit.group");
        }
        let n_kt = self.n_kt.clone();
        let mut start = vec![first, zero];
        start.extend(self.phases.iter().cloned());
        let results = {
            let this = &*self;
            let states = &states;
            let mut failure: Option<NvptxError> = None;
            let out = e.while_loop(
                &start,
                |e, s| {
                    let c = e.cmp(Cmp::Lt, &s[0], &n_kt);
                    (c, s.to_vec())
                },
                |e, s| {
                    let (kt, stage) = (s[0].clone(), s[1].clone());
                    match this.visit(e, sweep, states, &kt, &stage, &s[2..]) {
                        Ok(next) => next,
                        Err(err) => {
                            failure = Some(err);
                            s.to_vec()
                        }
                    }
                },
            );
            if let Some(err) = failure {
                return Err(err);
            }
            out
        };
        if tma {
            self.phases = results[2..].to_vec();
        }
        if stages > 1 && self.body.shape.warpgroup {
            // The tiles' loop ends without a barrier on this path; the epilogue's rows may lie
            // over the last tile's buffers, which other warps' products may still read.
            e.line("gpu.barrier");
        }
        self.finish(e, sweep, &states)?;
        Ok(())
    }

    /// The coverage code of key tile `kt` for this block (2 when there is no mask).
    fn coverage(&self, e: &mut Emitter, kt: &Val) -> Val {
        let Some(mask) = &self.mask else {
            return e.i32(2);
        };
        let body = self.body;
        let ctx = body.ctx;
        let graph = ctx.graph;
        let bq = ix(e, body.shape.bq);
        let bk = ix(e, body.shape.bk);
        let one = ix(e, 1);
        let q_end = e.add(&body.q0, &bq);
        let q_end = e.min(&q_end, &body.n_i);
        let q_last = e.sub(&q_end, &one);
        let k0 = e.mul(kt, &bk);
        let k_end = e.add(&k0, &bk);
        let k_end = e.min(&k_end, &self.n_j);
        let k_last = e.sub(&k_end, &one);
        let f = |e: &mut Emitter, v: &Val| e.cast(v, &Ty::F32);
        let mut ranges = BTreeMap::new();
        let (i_lo, i_hi) = (f(e, &body.q0), f(e, &q_last));
        ranges.insert(FrameIndex::I, (i_lo, i_hi));
        let (j_lo, j_hi) = (f(e, &k0), f(e, &k_last));
        ranges.insert(FrameIndex::J, (j_lo, j_hi));
        let b = f(e, &ctx.b);
        ranges.insert(FrameIndex::B, (b.clone(), b));
        let h = f(e, &ctx.h);
        ranges.insert(FrameIndex::H, (h.clone(), h));
        let mut dims = BTreeMap::new();
        for (name, (i, _)) in &ctx.dims {
            let v = f(e, i);
            dims.insert(name.clone(), v);
        }
        let known: BTreeMap<ValueRef, Val> = ctx
            .head
            .iter()
            .map(|(n, v)| {
                (
                    ValueRef {
                        node: *n,
                        result: 0,
                    },
                    v.clone(),
                )
            })
            .collect();
        let mut kb = KernelBox {
            e,
            math: &PtxMath,
            ranges,
            dims,
            known,
        };
        coverage_code(&mut kb, graph, mask)
    }

    /// The first key tile from `from` on that the tile rule does not skip (`n_kt` if none).
    fn next_visited(&self, e: &mut Emitter, from: &Val) -> Val {
        if self.mask.is_none() {
            return from.clone();
        }
        let n_kt = self.n_kt.clone();
        let out = e.while_loop(
            std::slice::from_ref(from),
            |e, s| {
                let inside = e.cmp(Cmp::Lt, &s[0], &n_kt);
                // Evaluate the rule only inside the range (the box of a tile past the end is
                // empty); an empty tile continues the search.
                let code = e.if_values(
                    &inside,
                    |e| vec![self.coverage(e, &s[0])],
                    |e| vec![e.i32(1)],
                );
                let zero = e.i32(0);
                let empty = e.cmp(Cmp::Eq, &code[0], &zero);
                let go = e.and(&inside, &empty);
                (go, s.to_vec())
            },
            |e, s| {
                let one = ix(e, 1);
                vec![e.add(&s[0], &one)]
            },
        );
        out[0].clone()
    }

    /// Issues the asynchronous copies of tile `kt`'s prefetched rows into stage `stage`.
    fn issue(&self, e: &mut Emitter, kt: &Val, stage: &Val) -> Result<(), NvptxError> {
        let body = self.body;
        let ctx = body.ctx;
        let graph = ctx.graph;
        let bk = body.shape.bk;
        let threads = body.shape.threads();
        for &n in body
            .order
            .iter()
            .filter(|n| ctx.layout.prefetched.contains(n))
        {
            let Some(Home::Key(buf)) = ctx.layout.home(n) else {
                continue;
            };
            let s = &ctx.layout.shared[buf];
            let esize = s.elem.bits() / 8;
            let vec = 16 / esize;
            let chunks = s.len / vec;
            let total = bk * chunks;
            let trips = total.div_ceil(threads);
            let lo = ix(e, 0);
            let hi = ix(e, trips);
            let one = ix(e, 1);
            let it = e.for_loop(&lo, &hi, &one);
            let th = ix(e, threads);
            let base = e.mul(&it, &th);
            let c = e.add(&base, &body.tid);
            let tot = ix(e, total);
            let inside = e.cmp(Cmp::Lt, &c, &tot);
            e.if_then(&inside);
            let ch = ix(e, chunks);
            let (row, piece) = if s.cores && bk.is_multiple_of(8) && vec == 8 {
                // A core matrix is 8 rows of 16 bytes, contiguous, and a row's next 16 bytes
                // lie in the next core matrix, 128 bytes on: eight threads in a row would store
                // to the same banks. Consecutive threads take the 8 rows of one core matrix
                // instead, 128 contiguous bytes.
                let eight = ix(e, 8);
                let r8 = e.arith(attnc_lower::Arith::Rem, &c, &eight);
                let rest = e.div(&c, &eight);
                let piece = e.arith(attnc_lower::Arith::Rem, &rest, &ch);
                let group = e.div(&rest, &ch);
                let first = e.mul(&group, &eight);
                (e.add(&first, &r8), piece)
            } else {
                (e.div(&c, &ch), e.arith(attnc_lower::Arith::Rem, &c, &ch))
            };
            let bkv = ix(e, bk);
            let k0 = e.mul(kt, &bkv);
            let j = e.add(&k0, &row);
            let valid = e.cmp(Cmp::Lt, &j, &self.n_j);
            let jc = e.min(&j, &self.last_j);
            let at = At::Key {
                key: row.clone(),
                j: jc,
                stage: stage.clone(),
            };
            let vl = ix(e, vec);
            let f = e.mul(&piece, &vl);
            let local = BTreeMap::new();
            let mut low = ExprLowering::new(graph, &PtxMath);
            let mut here = Here {
                ctx,
                at,
                local: &local,
            };
            let (input, offset) = ctx.load_offset(e, &mut low, &mut here, n, Some(&f))?;
            let src = ctx.inputs[&input].clone();
            let dst = ctx.shared_at(e, buf, Some(stage), &row, &f);
            let full = ix(e, vec);
            let none = ix(e, 0);
            let count = e.select(&valid, &full, &none);
            let token = e.fresh();
            e.op_line(&format!(
                "{token} = nvgpu.device_async_copy {src}[{offset}], {}[{dst}], {vec}, {count} {{bypassL1}} : {} to {}",
                ctx.views[buf], src.ty, ctx.views[buf].ty
            ));
            e.end();
            e.end();
        }
        Ok(())
    }

    /// Whether this is the block's first thread (the one that issues bulk copies).
    fn lead(&self, e: &mut Emitter) -> Val {
        let z = ix(e, 0);
        e.cmp(Cmp::Eq, &self.body.tid, &z)
    }

    /// Issues the bulk tensor copies of tile `kt` into stage `stage`: the stage barrier is told
    /// the bytes to expect, then each tile's slabs are copied box by box. One thread calls it.
    fn issue_tma(&self, e: &mut Emitter, kt: &Val, stage: &Val) -> Result<(), NvptxError> {
        let body = self.body;
        let ctx = body.ctx;
        let (Some(tma), Some(tmaps)) = (&ctx.layout.tma, &ctx.tmaps) else {
            return Err(NvptxError::internal(
                ctx.graph,
                body.order[0],
                "bulk copies without a TMA plan",
            ));
        };
        let bar = crate::tma::shared_address(e, &ctx.views[tma.barriers], stage);
        crate::tma::arrive_expect(e, &bar, tma.stage_bytes);
        let bkv = ix(e, body.shape.bk);
        let k0 = e.mul(kt, &bkv);
        let zero = ix(e, 0);
        for c in &tma.copies {
            let local = BTreeMap::new();
            let mut low = ExprLowering::new(ctx.graph, &PtxMath);
            let mut here = Here {
                ctx,
                at: At::Key {
                    key: zero.clone(),
                    j: k0.clone(),
                    stage: stage.clone(),
                },
                local: &local,
            };
            let (_, coords) = ctx.load_coords(e, &mut low, &mut here, c.node)?;
            // The driver's order: the feature axis first, then the others from the last.
            let outer: Vec<Val> = coords.iter().rev().map(|v| e.cast(v, &Ty::I32)).collect();
            let map = crate::tma::map_address(e, tmaps, c.map);
            for slab in 0..c.slabs {
                let f = ix(e, 8 * slab);
                let at = ctx.shared_at(e, c.buf, Some(stage), &zero, &f);
                let dst = crate::tma::shared_address(e, &ctx.views[c.buf], &at);
                let mut box_at = vec![e.i32(8 * slab as i64)];
                box_at.extend(outer.iter().cloned());
                crate::tma::copy_box(e, &dst, &map, &box_at, &bar);
            }
        }
        Ok(())
    }

    /// With TMA: the next tile's copies go out once every thread is past the tile that last
    /// used their stage, then this tile's stage barrier is waited for. Returns the next stage
    /// and the barriers' parities after this wait.
    fn advance_tma(
        &self,
        e: &mut Emitter,
        next: &Val,
        stage: &Val,
        phases: &[Val],
    ) -> Result<(Val, Vec<Val>), NvptxError> {
        let ctx = self.body.ctx;
        let one = ix(e, 1);
        let other = e.sub(&one, stage);
        e.line("gpu.barrier");
        let more = e.cmp(Cmp::Lt, next, &self.n_kt);
        let lead = self.lead(e);
        let go = e.and(&more, &lead);
        e.if_then(&go);
        self.issue_tma(e, next, &other)?;
        e.end();
        let zero = ix(e, 0);
        let first = e.cmp(Cmp::Eq, stage, &zero);
        let parity = e.select(&first, &phases[0], &phases[1]);
        let parity = e.cast(&parity, &Ty::I32);
        let barriers = ctx.layout.tma.as_ref().map_or(0, |t| t.barriers);
        let bar = crate::tma::shared_address(e, &ctx.views[barriers], stage);
        crate::tma::wait(e, &bar, &parity);
        let flipped: Vec<Val> = phases.iter().map(|p| e.sub(&one, p)).collect();
        let p0 = e.select(&first, &flipped[0], &phases[0]);
        let p1 = e.select(&first, &phases[1], &flipped[1]);
        Ok((other, vec![p0, p1]))
    }

    /// One visited tile: returns the next state (the next visited tile, its stage, and with
    /// TMA the barriers' parities).
    fn visit(
        &self,
        e: &mut Emitter,
        sweep: &Sweep,
        states: &[State],
        kt: &Val,
        stage: &Val,
        phases: &[Val],
    ) -> Result<Vec<Val>, NvptxError> {
        let body = self.body;
        let one = ix(e, 1);
        let after = e.add(kt, &one);
        let next = self.next_visited(e, &after);
        let stages = body.shape.stages;
        let mut carried = Vec::new();
        let tma = body.ctx.layout.tma.is_some();
        let next_stage = if tma {
            let (s, p) = self.advance_tma(e, &next, stage, phases)?;
            carried = p;
            s
        } else if stages > 1 && body.shape.warpgroup {
            // wgmma reads shared memory through the async proxy, so the tile's copies are
            // published with `fence.proxy.async`, and that fence waits for every copy the thread
            // has in flight: the next tile's copies go out after it, or the fence would wait for
            // them too and nothing would overlap (ncu on the H200: 10% of the stall samples on the
            // fence, before this order).
            let s = e.sub(&one, stage);
            e.line("nvvm.cp.async.wait.group 0");
            self.publish(e);
            let more = e.cmp(Cmp::Lt, &next, &self.n_kt);
            e.if_then(&more);
            self.issue(e, &next, &s)?;
            e.line("nvvm.cp.async.commit.group");
            e.end();
            s
        } else if stages > 1 {
            let s = e.sub(&one, stage);
            let more = e.cmp(Cmp::Lt, &next, &self.n_kt);
            e.if_then(&more);
            self.issue(e, &next, &s)?;
            e.line("nvvm.cp.async.commit.group");
            e.line("nvvm.cp.async.wait.group 1");
            e.else_();
            e.line("nvvm.cp.async.wait.group 0");
            e.end();
            s
        } else {
            self.issue(e, kt, stage)?;
            e.line("nvvm.cp.async.commit.group");
            e.line("nvvm.cp.async.wait.group 0");
            stage.clone()
        };
        if !(stages > 1 && body.shape.warpgroup) {
            self.publish(e);
        }
        let code = self.coverage(e, kt);
        self.key_side(e, kt, stage)?;
        self.fragments(e, sweep, states, kt, stage, &code)?;
        if !(stages > 1 && body.shape.warpgroup) {
            // The next tile's copies overwrite this tile's buffers; with wgmma they go out after
            // the next tile's barrier, which orders them after this tile's reads already.
            e.line("gpu.barrier");
        }
        let mut state = vec![next, next_stage];
        state.extend(carried);
        Ok(state)
    }

    /// The key-side values that are computed rather than copied, and operand copies.
    fn key_side(&self, e: &mut Emitter, kt: &Val, stage: &Val) -> Result<(), NvptxError> {
        let body = self.body;
        let ctx = body.ctx;
        let bk = body.shape.bk;
        let bkv = ix(e, bk);
        let k0 = e.mul(kt, &bkv);
        let mut wrote = false;
        for &n in body.order.iter().filter(|n| body.plan.key_side.contains(n)) {
            let Some(Home::Key(buf)) = ctx.layout.home(n) else {
                continue;
            };
            if !ctx.layout.prefetched.contains(&n) {
                let (k0c, lj, st) = (k0.clone(), self.last_j.clone(), stage.clone());
                let position = move |e: &mut Emitter, row: &Val| {
                    let j = e.add(&k0c, row);
                    let j = e.min(&j, &lj);
                    At::Key {
                        key: row.clone(),
                        j,
                        stage: st.clone(),
                    }
                };
                crate::kernel::fill_rows(
                    e,
                    ctx,
                    n,
                    buf,
                    bk,
                    &position,
                    &body.tid,
                    body.shape.threads(),
                )?;
                e.line("gpu.barrier");
                wrote = true;
            }
            if let Some(&op) = ctx.layout.operand.get(&n)
                && op != buf
            {
                body.copy_rows(e, buf, op, bk, Some(stage))?;
                wrote = true;
            }
        }
        if wrote {
            self.publish(e);
        }
        Ok(())
    }

    /// A barrier after shared-memory writes that the next products read. `wgmma` reads its
    /// operands through the async proxy, so each writer first orders its writes for it.
    fn publish(&self, e: &mut Emitter) {
        if self.body.shape.warpgroup {
            e.line("nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}");
        }
        e.line("gpu.barrier");
    }

    /// The base element of a contraction operand's buffer for this tile.
    fn operand_base(&self, e: &mut Emitter, buf: usize, stage: &Val) -> Val {
        let s = &self.body.ctx.layout.shared[buf];
        if s.copies > 1 {
            let per = ix(e, s.rows * s.stride);
            e.mul(stage, &per)
        } else {
            ix(e, 0)
        }
    }

    /// Scores, pair values and every reduction's update for one tile.
    fn fragments(
        &self,
        e: &mut Emitter,
        sweep: &Sweep,
        states: &[State],
        kt: &Val,
        stage: &Val,
        code: &Val,
    ) -> Result<(), NvptxError> {
        let body = self.body;
        let ctx = body.ctx;
        let graph = ctx.graph;
        let bk = body.shape.bk;
        let blocks = bk / 8;
        // Score products.
        let mut scores: BTreeMap<NodeIndex, Vec<Vec<Val>>> = BTreeMap::new();
        for &n in body
            .plan
            .pair
            .iter()
            .filter(|n| matches!(graph.node(**n).op, Op::Score))
        {
            let ops = graph.operands(n);
            let (q, k) = (ops[0].0.node, ops[1].0.node);
            let kind = body.shape.score;
            let kbuf = ctx.layout.operand[&k];
            let ks = &ctx.layout.shared[kbuf];
            let steps = ks.len.div_ceil(kind.k());
            if body.shape.warpgroup {
                let qbuf = ctx.layout.operand[&q];
                let qs = &ctx.layout.shared[qbuf];
                // The warpgroup's first row: warps 4w..4w+3 hold rows 64w..64w+63.
                let sixty_four = ix(e, 64);
                let sixteen = ix(e, 16);
                let warp = e.div(&body.lane.row0, &sixteen);
                let four = ix(e, 4);
                let group = e.div(&warp, &four);
                let first = e.mul(&group, &sixty_four);
                let zero = ix(e, 0);
                let a_base = qs.arrangement().at(e, &zero, &first, &zero);
                let b_base = self.operand_base(e, kbuf, stage);
                let acc = mma::warpgroup_product(
                    e,
                    kind,
                    &ctx.views[qbuf],
                    &a_base,
                    qs.arrangement(),
                    &ctx.views[kbuf],
                    &b_base,
                    ks.arrangement(),
                    bk,
                    steps,
                );
                scores.insert(n, acc);
                continue;
            }
            let q_frags = match self.q_frags.get(&n) {
                Some(f) => f.clone(),
                None => {
                    let qbuf = ctx.layout.operand[&q];
                    let qs = &ctx.layout.shared[qbuf];
                    let zero = ix(e, 0);
                    mma::a_fragments(
                        e,
                        kind,
                        &ctx.views[qbuf],
                        &zero,
                        qs.arrangement(),
                        &body.lane,
                        steps,
                    )
                }
            };
            let base = self.operand_base(e, kbuf, stage);
            let zero = e.f32(0.0);
            let mut acc: Vec<Vec<Val>> = (0..blocks).map(|_| vec![zero.clone(); 4]).collect();
            for (kk, a) in q_frags.iter().enumerate().take(steps) {
                let b = mma::b_fragments(
                    e,
                    kind,
                    mma::BLayout::NK,
                    &ctx.views[kbuf],
                    &base,
                    ks.arrangement(),
                    &body.lane,
                    blocks,
                    kk,
                );
                for nb in 0..blocks {
                    acc[nb] = mma::mma(e, kind, a, &b[nb], &acc[nb]);
                }
            }
            scores.insert(n, acc);
        }
        // A tile the mask keeps whole and that lies inside the key range (most tiles of a long
        // sequence) takes a copy of the element code without the per-element mask and bounds
        // tests: on the GPU those integer tests, not the products, bound the loop's issue rate.
        let bkv = ix(e, bk);
        let k0 = e.mul(kt, &bkv);
        let two = e.i32(2);
        let full = e.cmp(Cmp::Eq, code, &two);
        let k_end = e.add(&k0, &bkv);
        let inside = e.cmp(Cmp::Le, &k_end, &self.n_j);
        let fast = e.and(&full, &inside);
        e.if_then(&fast);
        self.pairs(e, sweep, states, &scores, &k0, stage, &full, true)?;
        e.else_();
        self.pairs(e, sweep, states, &scores, &k0, stage, &full, false)?;
        e.end();
        Ok(())
    }

    /// The pair values, the mask and every reduction's update for one tile's score fragments;
    /// `whole` when every pair of the tile is kept and in range (`full` is then true too).
    #[allow(clippy::too_many_arguments)]
    fn pairs(
        &self,
        e: &mut Emitter,
        sweep: &Sweep,
        states: &[State],
        scores: &BTreeMap<NodeIndex, Vec<Vec<Val>>>,
        k0: &Val,
        stage: &Val,
        full: &Val,
        whole: bool,
    ) -> Result<(), NvptxError> {
        let body = self.body;
        let ctx = body.ctx;
        let graph = ctx.graph;
        let blocks = body.shape.bk / 8;
        // Every element's position and pair values.
        let mut elements = Vec::new();
        let mut low = ExprLowering::new(graph, &PtxMath);
        for nb in 0..blocks {
            for ri in 0..2 {
                for ci in 0..2 {
                    let off_r = ix(e, 8 * ri);
                    let rg = e.add(&body.lane.row0, &body.lane.g);
                    let row = e.add(&rg, &off_r);
                    let i = e.add(&body.q0, &row);
                    let i = e.min(&i, &body.last_i);
                    let nbk = ix(e, nb * 8 + ci);
                    let two_t = {
                        let t2 = ix(e, 2);
                        e.mul(&body.lane.t, &t2)
                    };
                    let key = e.add(&nbk, &two_t);
                    let j = e.add(k0, &key);
                    let (valid, jc) = if whole {
                        (e.bool(true), j)
                    } else {
                        let valid = e.cmp(Cmp::Lt, &j, &self.n_j);
                        (valid, e.min(&j, &self.last_j))
                    };
                    let at = At::Element {
                        row,
                        i,
                        key,
                        j: jc,
                        stage: stage.clone(),
                    };
                    let mut local = BTreeMap::new();
                    for (n, acc) in scores {
                        local.insert(*n, acc[nb][ri * 2 + ci].clone());
                    }
                    for &n in body.order.iter().filter(|n| body.plan.pair.contains(n)) {
                        if matches!(graph.node(n).op, Op::Score) {
                            continue;
                        }
                        if let Op::Load { .. } = graph.node(n).op {
                            // Read where used (the leaves load pair-level data on demand).
                            continue;
                        }
                        let v = crate::kernel::value_at(e, ctx, n, at.clone(), &local, None)?;
                        local.insert(n, v);
                    }
                    let keep = match (&body.plan.mask, &self.mask) {
                        _ if whole => valid.clone(),
                        (Some(m), Some(_)) => {
                            let t = Tree::of_map(
                                graph,
                                ValueRef {
                                    node: *m,
                                    result: 0,
                                },
                                &|_| false,
                            );
                            let mut here = Here {
                                ctx,
                                at: at.clone(),
                                local: &local,
                            };
                            let mv = low
                                .lower_bool(e, &mut here, &t, None)
                                .map_err(|err| NvptxError::lowering(graph, *m, err))?;
                            let m_or_full = e.or(full, &mv);
                            e.and(&valid, &m_or_full)
                        }
                        _ => valid.clone(),
                    };
                    elements.push(Element {
                        ri,
                        at,
                        valid: keep,
                        always: whole,
                        local,
                    });
                }
            }
        }
        // One expression cache per element: a weight several reductions share (softmax's
        // `exp(s - m)` for its row sum and its aggregation) is computed once.
        let mut lows: Vec<ExprLowering> = elements
            .iter()
            .map(|_| {
                let mut l = ExprLowering::new(graph, &PtxMath);
                l.caching = true;
                l
            })
            .collect();
        // Plain reductions first: online shifts read their running values.
        let mut running: [BTreeMap<NodeIndex, Val>; 2] = [BTreeMap::new(), BTreeMap::new()];
        for (r, st) in sweep.reductions.iter().zip(states) {
            if let Accumulation::Plain { argument, .. } = &r.accumulation {
                self.plain(e, r, st, argument, &elements, &mut lows, &mut running)?;
            }
        }
        let mut weights = Vec::new();
        for (r, st) in sweep.reductions.iter().zip(states) {
            if let Accumulation::Online { terms } = &r.accumulation {
                self.online(
                    e,
                    r,
                    st,
                    terms,
                    &elements,
                    &mut lows,
                    &running,
                    &mut weights,
                )?;
            }
        }
        Ok(())
    }

    fn arg(
        &self,
        e: &mut Emitter,
        low: &mut ExprLowering<'_>,
        el: &Element,
        t: &Tree,
        n: NodeIndex,
    ) -> Result<Val, NvptxError> {
        let ctx = self.body.ctx;
        let mut here = Here {
            ctx,
            at: el.at.clone(),
            local: &el.local,
        };
        low.lower_f32(e, &mut here, t, None)
            .map_err(|err| NvptxError::lowering(ctx.graph, n, err))
    }

    #[allow(clippy::too_many_arguments)]
    fn plain(
        &self,
        e: &mut Emitter,
        r: &ReductionPlan,
        st: &State,
        argument: &Tree,
        elements: &[Element],
        lows: &mut [ExprLowering<'_>],
        running: &mut [BTreeMap<NodeIndex, Val>; 2],
    ) -> Result<(), NvptxError> {
        match st {
            State::Extreme { kind, stat } => {
                let math = PtxMath;
                for ri in 0..2 {
                    let mut m = get(e, stat, ri);
                    let identity = e.f32(kind.identity());
                    for (el, low) in elements
                        .iter()
                        .zip(lows.iter_mut())
                        .filter(|(el, _)| el.ri == ri)
                    {
                        let a = self.arg(e, low, el, argument, r.node)?;
                        let a = e.select(&el.valid, &a, &identity);
                        m = if *kind == ReduceKind::Max {
                            math.max_num(e, &m, &a)
                        } else {
                            math.min_num(e, &m, &a)
                        };
                    }
                    let op = |e: &mut Emitter, x: &Val, y: &Val| {
                        if *kind == ReduceKind::Max {
                            PtxMath.max_num(e, x, y)
                        } else {
                            PtxMath.min_num(e, x, y)
                        }
                    };
                    let m = quad(e, &m, &op);
                    put(e, &m, stat, ri);
                    running[ri].insert(r.node, m);
                }
            }
            State::Sum { acc } => {
                for ri in 0..2 {
                    let mut s = get(e, acc, ri);
                    let zero = e.f32(0.0);
                    for (el, low) in elements
                        .iter()
                        .zip(lows.iter_mut())
                        .filter(|(el, _)| el.ri == ri)
                    {
                        let a = self.arg(e, low, el, argument, r.node)?;
                        let a = e.select(&el.valid, &a, &zero);
                        s = e.add(&s, &a);
                    }
                    put(e, &s, acc, ri);
                }
            }
            State::Aggregate { acc, blocks } => {
                let zero = e.f32(0.0);
                let mut flat = Vec::new();
                for (el, low) in elements.iter().zip(lows.iter_mut()) {
                    let a = self.arg(e, low, el, argument, r.node)?;
                    flat.push(e.select(&el.valid, &a, &zero));
                }
                let w: Vec<Vec<Val>> = flat.chunks(4).map(|c| c.to_vec()).collect();
                self.product(e, r, acc, *blocks, &[(w, 1.0)], elements)?;
            }
            State::Online { .. } => {}
        }
        Ok(())
    }

    /// `acc += sign * w x rows` for each (weights, sign), the rows being the aggregation's value
    /// tile, B fragments shared by the terms.
    fn product(
        &self,
        e: &mut Emitter,
        r: &ReductionPlan,
        accs: &Val,
        blocks: usize,
        weights: &[(Vec<Vec<Val>>, f64)],
        elements: &[Element],
    ) -> Result<(), NvptxError> {
        self.products(
            e,
            r,
            &[(accs.clone(), weights[0].0.clone(), weights[0].1)],
            blocks,
            elements,
        )
    }

    fn products(
        &self,
        e: &mut Emitter,
        r: &ReductionPlan,
        terms: &[(Val, Vec<Vec<Val>>, f64)],
        blocks: usize,
        elements: &[Element],
    ) -> Result<(), NvptxError> {
        let body = self.body;
        let ctx = body.ctx;
        let graph = ctx.graph;
        let row = r
            .row
            .ok_or_else(|| NvptxError::internal(graph, r.node, "an aggregation without rows"))?;
        let vbuf = *ctx.layout.operand.get(&row.node).ok_or_else(|| {
            NvptxError::internal(
                graph,
                r.node,
                "an aggregation's rows have no operand buffer",
            )
        })?;
        let vs = &ctx.layout.shared[vbuf];
        let kind: Kind = body.shape.value;
        let stage = match &elements[0].at {
            At::Element { stage, .. } => stage.clone(),
            _ => ix(e, 0),
        };
        let base = self.operand_base(e, vbuf, &stage);
        let steps = body.shape.bk / kind.k();
        let mut acc: Vec<Vec<Vec<Val>>> = terms
            .iter()
            .map(|(a, _, _)| {
                (0..blocks)
                    .map(|nd| (0..4).map(|q| get(e, a, nd * 4 + q)).collect())
                    .collect()
            })
            .collect();
        // Each term's weights with its sign, once for every k step.
        let signed: Vec<Vec<Vec<Val>>> = terms
            .iter()
            .map(|(_, w, sign)| {
                if *sign < 0.0 {
                    w.iter()
                        .map(|regs| regs.iter().map(|x| e.neg(x)).collect())
                        .collect()
                } else {
                    w.clone()
                }
            })
            .collect();
        if body.shape.warpgroup_values {
            // Registers written since the last wgmma (the rescaled accumulators, the weights)
            // are fenced once; each k step's value rows start 16 rows further.
            e.line("nvvm.wgmma.fence.aligned");
            let zero = ix(e, 0);
            for kk in 0..steps {
                let row = ix(e, kk * 16);
                let b_base = vs.arrangement().at(e, &base, &row, &zero);
                for (t, w) in signed.iter().enumerate() {
                    let a = mma::weights_as_a(e, kind, w, kk, &body.lane);
                    acc[t] = mma::warpgroup_accumulate(
                        e,
                        kind,
                        &a,
                        &ctx.views[vbuf],
                        &b_base,
                        vs.arrangement(),
                        &acc[t],
                    );
                }
            }
            e.line("nvvm.wgmma.commit.group.sync.aligned");
            e.line("nvvm.wgmma.wait.group.sync.aligned 0");
        } else {
            for kk in 0..steps {
                let b = mma::b_fragments(
                    e,
                    kind,
                    mma::BLayout::KN,
                    &ctx.views[vbuf],
                    &base,
                    vs.arrangement(),
                    &body.lane,
                    blocks,
                    kk,
                );
                for (t, w) in signed.iter().enumerate() {
                    let a = mma::weights_as_a(e, kind, w, kk, &body.lane);
                    for nd in 0..blocks {
                        acc[t][nd] = mma::mma(e, kind, &a, &b[nd], &acc[t][nd]);
                    }
                }
            }
        }
        for (t, (a, _, _)) in terms.iter().enumerate() {
            for nd in 0..blocks {
                for q in 0..4 {
                    put(e, &acc[t][nd][q], a, nd * 4 + q);
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn online(
        &self,
        e: &mut Emitter,
        r: &ReductionPlan,
        st: &State,
        terms: &[OnlineTerm],
        elements: &[Element],
        lows: &mut [ExprLowering<'_>],
        running: &[BTreeMap<NodeIndex, Val>; 2],
        weights: &mut Vec<(WeightKey, Vec<Val>)>,
    ) -> Result<(), NvptxError> {
        let State::Online {
            terms: states,
            seen,
            blocks,
        } = st
        else {
            return Ok(());
        };
        let body = self.body;
        let ctx = body.ctx;
        let graph = ctx.graph;
        let math = PtxMath;
        let zero = e.f32(0.0);
        let one_f = e.f32(1.0);
        let ninf = e.f32(f64::NEG_INFINITY);
        let log2e = e.f32(std::f64::consts::LOG2_E);
        // Whether any pair of each thread row was kept.
        for ri in 0..2 {
            let mut any = get(e, seen, ri);
            for el in elements.iter().filter(|el| el.ri == ri) {
                if el.always {
                    any = one_f.clone();
                    break;
                }
                let k = e.cast(&el.valid, &Ty::F32);
                any = math.max_num(e, &any, &k);
            }
            put(e, &any, seen, ri);
        }
        let mut products = Vec::new();
        for (term, (acc, z)) in terms.iter().zip(states) {
            // The new shift per row, and the rescale of what was accumulated under the old.
            let mut z_rows = Vec::new();
            let mut alpha = Vec::new();
            for ri in 0..2 {
                match (&term.shift, z) {
                    (Some(shift), Some(z)) => {
                        let row_at = match &elements.iter().find(|el| el.ri == ri).map(|el| &el.at)
                        {
                            Some(At::Element { row, i, .. }) => At::Query {
                                row: row.clone(),
                                i: i.clone(),
                            },
                            _ => At::Head,
                        };
                        let mut here = Here {
                            ctx,
                            at: row_at,
                            local: &running[ri],
                        };
                        let mut rl = ExprLowering::new(graph, &PtxMath);
                        let zn = rl
                            .lower_f32(e, &mut here, shift, None)
                            .map_err(|err| NvptxError::lowering(graph, r.node, err))?;
                        let zo = get(e, z, ri);
                        let d = e.sub(&zo, &zn);
                        let dl = e.mul(&d, &log2e);
                        let a = math.exp2(e, &dl);
                        let unset = e.cmp(Cmp::Eq, &zn, &ninf);
                        let a = e.select(&unset, &one_f, &a);
                        put(e, &zn, z, ri);
                        let zl = e.mul(&zn, &log2e);
                        z_rows.push(Some((zn, zl, unset)));
                        alpha.push(Some(a));
                    }
                    _ => {
                        z_rows.push(None);
                        alpha.push(None);
                    }
                }
            }
            // Weights per element: exp(Y - Z) * G where kept, else 0; terms of the tile with the
            // same weight share it.
            let key = (
                term.factor.clone(),
                term.exponent.clone(),
                term.shift.clone(),
            );
            let cached = weights
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, w)| w.clone());
            let mut w = Vec::new();
            for (el, low) in elements.iter().zip(lows.iter_mut()) {
                if cached.is_some() {
                    break;
                }
                let g = self.arg(e, low, el, &term.factor, r.node)?;
                let x = match &term.exponent {
                    Some(y) => {
                        let y = self.arg(e, low, el, y, r.node)?;
                        let arg = match &z_rows[el.ri] {
                            Some((_, zl, _)) => {
                                let nz = e.neg(zl);
                                math.fma(e, &y, &log2e, &nz)
                            }
                            None => e.mul(&y, &log2e),
                        };
                        let ex = math.exp2(e, &arg);
                        e.mul(&ex, &g)
                    }
                    None => g,
                };
                w.push(e.select(&el.valid, &x, &zero));
            }
            let w = match cached {
                Some(w) => w,
                None => {
                    weights.push((key, w.clone()));
                    w
                }
            };
            match blocks {
                None => {
                    for ri in 0..2 {
                        let mut s = get(e, acc, ri);
                        if let Some(a) = &alpha[ri] {
                            s = e.mul(&s, a);
                        }
                        for (el, x) in elements.iter().zip(&w) {
                            if el.ri == ri {
                                s = if term.sign < 0.0 {
                                    e.sub(&s, x)
                                } else {
                                    e.add(&s, x)
                                };
                            }
                        }
                        put(e, &s, acc, ri);
                    }
                }
                Some(nblocks) => {
                    // Rescale the accumulator rows, then add the weights' product.
                    for nd in 0..*nblocks {
                        for q in 0..4 {
                            let ri = q / 2;
                            if let Some(a) = &alpha[ri] {
                                let k = nd * 4 + q;
                                let x = get(e, acc, k);
                                let y = e.mul(&x, a);
                                put(e, &y, acc, k);
                            }
                        }
                    }
                    let regs: Vec<Vec<Val>> = w.chunks(4).map(|c| c.to_vec()).collect();
                    products.push((acc.clone(), regs, term.sign, *nblocks));
                }
            }
        }
        if !products.is_empty() {
            let nblocks = products[0].3;
            let terms: Vec<(Val, Vec<Vec<Val>>, f64)> =
                products.into_iter().map(|(a, w, s, _)| (a, w, s)).collect();
            self.products(e, r, &terms, nblocks, elements)?;
        }
        Ok(())
    }

    /// After the loop: partial sums reduced across each row's lanes, and every reduction's value
    /// written to its row buffer (scalars by one lane of the four, vectors by every lane for its
    /// columns), with the per-row factors of online terms applied.
    fn finish(&self, e: &mut Emitter, sweep: &Sweep, states: &[State]) -> Result<(), NvptxError> {
        let body = self.body;
        let ctx = body.ctx;
        let graph = ctx.graph;
        let math = PtxMath;
        let add = |e: &mut Emitter, x: &Val, y: &Val| e.add(x, y);
        let max = |e: &mut Emitter, x: &Val, y: &Val| PtxMath.max_num(e, x, y);
        let rows: Vec<(Val, Val)> = (0..2)
            .map(|ri| {
                let off = ix(e, 8 * ri);
                let rg = e.add(&body.lane.row0, &body.lane.g);
                let row = e.add(&rg, &off);
                let i = e.add(&body.q0, &row);
                let i = e.min(&i, &body.last_i);
                (row, i)
            })
            .collect();
        let zero_i = ix(e, 0);
        let lane0 = e.cmp(Cmp::Eq, &body.lane.t, &zero_i);
        // Final per-row values of this sweep's scalar reductions, for the factors that read them.
        let mut finals: [BTreeMap<NodeIndex, Val>; 2] = [BTreeMap::new(), BTreeMap::new()];
        for (r, st) in sweep.reductions.iter().zip(states) {
            let Some(Home::Row(buf)) = ctx.layout.home(r.node) else {
                return Err(NvptxError::internal(
                    graph,
                    r.node,
                    "a reduction without a row buffer",
                ));
            };
            match st {
                State::Extreme { stat, .. } => {
                    for ri in 0..2 {
                        let v = get(e, stat, ri);
                        finals[ri].insert(r.node, v);
                    }
                }
                State::Sum { acc } => {
                    for ri in 0..2 {
                        let v = get(e, acc, ri);
                        let v = quad(e, &v, &add);
                        finals[ri].insert(r.node, v);
                    }
                }
                State::Online {
                    terms: ts,
                    seen,
                    blocks: None,
                } => {
                    let Accumulation::Online { terms } = &r.accumulation else {
                        continue;
                    };
                    for ri in 0..2 {
                        let s = get(e, seen, ri);
                        let s = quad(e, &s, &max);
                        let mut total = e.f32(0.0);
                        for (term, (acc, _)) in terms.iter().zip(ts) {
                            let v = get(e, acc, ri);
                            let v = quad(e, &v, &add);
                            let v = match &term.post {
                                Some(p) => {
                                    let f = self.row_value(e, p, &rows[ri], &finals[ri], r.node)?;
                                    e.mul(&v, &f)
                                }
                                None => v,
                            };
                            total = e.add(&total, &v);
                        }
                        let zero = e.f32(0.0);
                        let half = e.f32(0.5);
                        let any = e.cmp(Cmp::Gt, &s, &half);
                        let v = e.select(&any, &total, &zero);
                        finals[ri].insert(r.node, v);
                    }
                }
                State::Aggregate { acc, blocks } => {
                    self.write_fragments(
                        e,
                        buf,
                        &rows,
                        &[(acc.clone(), None)],
                        *blocks,
                        None,
                        &finals,
                        r.node,
                    )?;
                    continue;
                }
                State::Online {
                    terms: ts,
                    seen,
                    blocks: Some(blocks),
                } => {
                    let Accumulation::Online { terms } = &r.accumulation else {
                        continue;
                    };
                    let parts: Vec<(Val, Option<&Tree>)> = ts
                        .iter()
                        .zip(terms)
                        .map(|((acc, _), t)| (acc.clone(), t.post.as_ref()))
                        .collect();
                    self.write_fragments(
                        e,
                        buf,
                        &rows,
                        &parts,
                        *blocks,
                        Some(seen),
                        &finals,
                        r.node,
                    )?;
                    continue;
                }
            }
            // A scalar per row: one lane of the four writes it.
            e.if_then(&lane0);
            for ri in 0..2 {
                let zero = ix(e, 0);
                let at = ctx.shared_at(e, buf, None, &rows[ri].0, &zero);
                let v = finals[ri][&r.node].clone();
                e.store(&v, &ctx.views[buf], &at);
            }
            e.end();
        }
        let _ = math;
        e.line("gpu.barrier");
        Ok(())
    }

    /// A per-row expression (a term's factor) at thread row `(row, i)`.
    fn row_value(
        &self,
        e: &mut Emitter,
        t: &Tree,
        (row, i): &(Val, Val),
        finals: &BTreeMap<NodeIndex, Val>,
        n: NodeIndex,
    ) -> Result<Val, NvptxError> {
        let ctx = self.body.ctx;
        let mut here = Here {
            ctx,
            at: At::Query {
                row: row.clone(),
                i: i.clone(),
            },
            local: finals,
        };
        let mut low = ExprLowering::new(ctx.graph, &PtxMath);
        low.lower_f32(e, &mut here, t, None)
            .map_err(|err| NvptxError::lowering(ctx.graph, n, err))
    }

    /// Writes an aggregation's value (the sum over its terms of factor x accumulator, 0 for a row
    /// that kept no pair) into its row buffer, each lane its fragment columns.
    #[allow(clippy::too_many_arguments)]
    fn write_fragments(
        &self,
        e: &mut Emitter,
        buf: usize,
        rows: &[(Val, Val)],
        parts: &[(Val, Option<&Tree>)],
        blocks: usize,
        seen: Option<&Val>,
        finals: &[BTreeMap<NodeIndex, Val>; 2],
        n: NodeIndex,
    ) -> Result<(), NvptxError> {
        let ctx = self.body.ctx;
        let max = |e: &mut Emitter, x: &Val, y: &Val| PtxMath.max_num(e, x, y);
        let len = ctx.layout.shared[buf].len;
        let mut factors: Vec<Vec<Option<Val>>> = Vec::new();
        for (_, post) in parts {
            let mut f = Vec::new();
            for ri in 0..2 {
                f.push(match post {
                    Some(p) => Some(self.row_value(e, p, &rows[ri], &finals[ri], n)?),
                    None => None,
                });
            }
            factors.push(f);
        }
        let mut any = Vec::new();
        for ri in 0..2 {
            any.push(match seen {
                Some(s) => {
                    let v = get(e, s, ri);
                    let v = quad(e, &v, &max);
                    let half = e.f32(0.5);
                    Some(e.cmp(Cmp::Gt, &v, &half))
                }
                None => None,
            });
        }
        for nd in 0..blocks {
            for q in 0..4 {
                let (ri, ci) = (q / 2, q % 2);
                let mut total = e.f32(0.0);
                for (p, (acc, _)) in parts.iter().enumerate() {
                    let x = get(e, acc, nd * 4 + q);
                    let x = match &factors[p][ri] {
                        Some(f) => e.mul(&x, f),
                        None => x,
                    };
                    total = e.add(&total, &x);
                }
                if let Some(a) = &any[ri] {
                    let zero = e.f32(0.0);
                    total = e.select(a, &total, &zero);
                }
                // Column nd*8 + 2t + ci, when inside the row.
                let base = ix(e, nd * 8 + ci);
                let two = ix(e, 2);
                let t2 = e.mul(&self.body.lane.t, &two);
                let col = e.add(&base, &t2);
                let l = ix(e, len);
                let inside = e.cmp(Cmp::Lt, &col, &l);
                e.if_then(&inside);
                let at = ctx.shared_at(e, buf, None, &rows[ri].0, &col);
                e.store(&total, &ctx.views[buf], &at);
                e.end();
            }
        }
        Ok(())
    }
}
