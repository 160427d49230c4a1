//! The sweeps of the kernel: accumulators set to their starting values, the loop over key
//! tiles with each tile's coverage by the mask's tile rule, and per key the key-side and pair
//! values, the mask, and the updates.

use super::{Gen, vref};
use crate::error::{Result, SpirvError};
use crate::shader::{Cmp, Shader, Ty, Val, glsl};
use crate::tile_rule::{KernelBox, coverage_code};
use crate::values::Home;
use attnc_ir::graph::Op;
use attnc_ir::types::FrameIndex;
use attnc_passes::fusion::{Accumulation, ReductionPlan};
use petgraph::stable_graph::NodeIndex;
use rspirv::spirv::Word;
use std::collections::BTreeMap;

/// An accumulator: one scalar or one array of `len`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Acc {
    pub(super) var: Word,
    pub(super) len: Option<u32>,
}

/// The accumulators of one reduction in the sweep being written.
pub(super) enum Accumulators {
    Plain(Acc),
    Online {
        terms: Vec<Acc>,
        /// The running shift `Z` of each term that has one.
        shifts: Vec<Option<Word>>,
        /// Whether any pair was accumulated (an empty sum is 0, as in the reference).
        seen: Word,
    },
}

impl Gen<'_> {
    /// The accumulators of a sweep's reductions, set to their starting values.
    pub(super) fn init(&mut self, reductions: &[ReductionPlan]) -> Result<Vec<Accumulators>> {
        let mut out = Vec::new();
        for r in reductions {
            let len = self.ctx.vector_len(r.node)?;
            match &r.accumulation {
                Accumulation::Plain { .. } => {
                    let acc = self.acc(len, r.kind.identity())?;
                    if len.is_none() {
                        self.ctx.running.insert(r.node, acc.var);
                    }
                    out.push(Accumulators::Plain(acc));
                }
                Accumulation::Online { terms } => {
                    let mut accs = Vec::new();
                    let mut shifts = Vec::new();
                    for t in terms {
                        accs.push(self.acc(len, 0.0)?);
                        shifts.push(match t.shift {
                            Some(_) => Some(self.acc(None, f64::NEG_INFINITY)?.var),
                            None => None,
                        });
                    }
                    let seen = self.s.scalar_local(Ty::Bool);
                    let no = self.s.bool(false);
                    self.s.store(seen, no)?;
                    out.push(Accumulators::Online {
                        terms: accs,
                        shifts,
                        seen,
                    });
                }
            }
        }
        Ok(out)
    }

    /// A scalar or array accumulator holding `value`.
    fn acc(&mut self, len: Option<u32>, value: f64) -> Result<Acc> {
        let v = self.s.f32(value);
        match len {
            None => {
                let var = self.s.scalar_local(Ty::F32);
                self.s.store(var, v)?;
                Ok(Acc { var, len })
            }
            Some(n) => {
                let var = self.s.array_local(Ty::F32, n);
                self.for_each(n, |s, f| {
                    let p = s.local_element(var, Ty::F32, f)?;
                    s.store(p, v)
                })?;
                Ok(Acc { var, len })
            }
        }
    }

    fn for_each(&mut self, n: u32, body: impl FnMut(&mut Shader, Val) -> Result<()>) -> Result<()> {
        self.s.features(n, body)
    }

    /// One sweep: every key tile the tile rule keeps, every key of it, every update.
    pub(super) fn sweep(
        &mut self,
        k: usize,
        reductions: &[ReductionPlan],
        accs: &[Accumulators],
    ) -> Result<()> {
        let keys = self.dim_of(FrameIndex::J)?;
        let bk = self.s.i32(self.shape.key_tile as i64);
        let one = self.s.i32(1);
        let bk1 = self.s.sub(bk, one)?;
        let padded = self.s.add(keys, bk1)?;
        let tiles = self.s.sdiv(padded, bk)?;
        let zero = self.s.i32(0);
        self.nested(
            |s, body| s.for_range(zero, tiles, |s, kt| body(s, Some(kt))),
            |g, kt| {
                let kt = kt.ok_or_else(|| SpirvError::internal("a tile loop without its index"))?;
                g.key_tile(k, reductions, accs, kt, keys)
            },
        )
    }

    /// One key tile: its coverage code, then each of its keys unless the tile is empty.
    fn key_tile(
        &mut self,
        k: usize,
        reductions: &[ReductionPlan],
        accs: &[Accumulators],
        kt: Val,
        keys: Val,
    ) -> Result<()> {
        let bk = self.s.i32(self.shape.key_tile as i64);
        let j0 = self.s.mul(kt, bk)?;
        let end = self.s.add(j0, bk)?;
        let end = self.s.ext(Ty::I32, glsl::SMIN, &[end, keys])?;
        let code = self.coverage(j0, end)?;
        let zero = self.s.i32(0);
        // The same for every invocation of the workgroup (the tile rule sees the whole query
        // tile), so the barriers inside are reached by all of them.
        let visit = self.s.cmp(Cmp::Ne, code, zero)?;
        self.nested(
            |s, body| s.when(visit, |s| body(s, None)),
            |g, _| {
                let staging = !g.staged.is_empty();
                if staging {
                    g.stage(j0, end)?;
                    g.s.barrier()?;
                }
                g.nested(
                    |s, body| s.for_range(j0, end, |s, j| body(s, Some(j))),
                    |g, j| {
                        let j = j.ok_or_else(|| SpirvError::internal("a key loop without j"))?;
                        g.pair(k, reductions, accs, j, j0, code)
                    },
                )?;
                if staging {
                    // Before the next tile's values overwrite these.
                    g.s.barrier()?;
                }
                Ok(())
            },
        )
    }

    /// Writes the staged key-side values of keys `[j0, end)` into workgroup memory: invocation
    /// r computes those of keys `j0 + r`, `j0 + r + BQ`, … (the key side of each key once per
    /// workgroup, instead of once per query row).
    fn stage(&mut self, j0: Val, end: Val) -> Result<()> {
        let (bq, bk) = (self.shape.query_tile, self.shape.key_tile);
        let row = self
            .local_row
            .ok_or_else(|| SpirvError::internal("staging before the prologue"))?;
        for round in 0..bk.div_ceil(bq) {
            let offset = self.s.i32((round * bq) as i64);
            let slot = self.s.add(row, offset)?;
            let limit = self.s.i32(bk as i64);
            let in_tile = self.s.lt(slot, limit)?;
            let j = self.s.add(j0, slot)?;
            let in_keys = self.s.lt(j, end)?;
            let load = self.s.and(in_tile, in_keys)?;
            self.nested(
                |s, body| s.when(load, |s| body(s, None)),
                |g, _| g.stage_key(j, slot),
            )?;
        }
        Ok(())
    }

    /// The key side of key `j`, copied into `slot` of each staged value's array.
    fn stage_key(&mut self, j: Val, slot: Val) -> Result<()> {
        let saved = self.ctx.homes.clone();
        self.ctx.frame.insert(FrameIndex::J, j);
        for &n in &self.plan.key_side {
            self.compute(n, false)?;
        }
        for st in self.staged.clone() {
            let word = crate::values::staged_ty(st.ty);
            let len = st.len.unwrap_or(1);
            let words = self.s.i32(len as i64);
            let base = self.s.mul(slot, words)?;
            let v = vref(st.node);
            let ctx = &mut self.ctx;
            let graph = self.graph;
            let mut store = |s: &mut Shader, f: Option<Val>, at: Val| -> Result<()> {
                let x = crate::expr::Leaves::value(ctx, s, v, f)?;
                let x = s.to(x, word)?;
                let p = s.workgroup_element(st.var, word, at)?;
                s.store(p, x)
            };
            let r = match st.len {
                None => store(&mut self.s, None, base),
                Some(len) => self.s.features(len, |s, f| {
                    let at = s.add(base, f)?;
                    store(s, Some(f), at)
                }),
            };
            r.map_err(|e| e.at(graph, st.node))?;
        }
        self.ctx.frame.remove(&FrameIndex::J);
        self.ctx.homes = saved;
        Ok(())
    }

    /// The coverage code of the current query tile against keys `[j0, end)`.
    fn coverage(&mut self, j0: Val, end: Val) -> Result<Val> {
        let Some(mask) = self.plan.mask else {
            return Ok(self.s.i32(2));
        };
        let tree = attnc_passes::fusion::tile_rule::mask_tree(self.graph, mask);
        let rows = self.dim_of(FrameIndex::I)?;
        let bq = self.s.i32(self.shape.query_tile as i64);
        let i0 = self
            .tile_start
            .ok_or_else(|| SpirvError::internal("the tile rule before the prologue"))?;
        let i_end = self.s.add(i0, bq)?;
        let i_end = self.s.ext(Ty::I32, glsl::SMIN, &[i_end, rows])?;
        let one = self.s.i32(1);
        let i_last = self.s.sub(i_end, one)?;
        let j_last = self.s.sub(end, one)?;
        let mut ranges = BTreeMap::new();
        let as_f = |s: &mut Shader, v: Val| s.float(v);
        ranges.insert(
            FrameIndex::I,
            (as_f(&mut self.s, i0)?, as_f(&mut self.s, i_last)?),
        );
        ranges.insert(
            FrameIndex::J,
            (as_f(&mut self.s, j0)?, as_f(&mut self.s, j_last)?),
        );
        for fi in [FrameIndex::B, FrameIndex::H] {
            if let Some(v) = self.ctx.frame.get(&fi).copied() {
                let f = as_f(&mut self.s, v)?;
                ranges.insert(fi, (f, f));
            }
        }
        let mut dims = BTreeMap::new();
        for (name, v) in self.ctx.dims.clone() {
            dims.insert(name, as_f(&mut self.s, v)?);
        }
        let mut known = BTreeMap::new();
        for &n in &self.plan.per_head {
            if let Some(Home::Scalar(v)) = self.ctx.homes.get(&n) {
                known.insert(vref(n), *v);
            }
        }
        let mut b = KernelBox::new(&mut self.s);
        b.ranges = ranges;
        b.dims = dims;
        b.known = known;
        coverage_code(b, self.graph, &tree)
    }

    /// One key j of the tile from `j0`: key-side (staged, or computed here) and pair values,
    /// the mask, and every update of the sweep.
    fn pair(
        &mut self,
        k: usize,
        reductions: &[ReductionPlan],
        accs: &[Accumulators],
        j: Val,
        j0: Val,
        code: Val,
    ) -> Result<()> {
        let saved = self.ctx.homes.clone();
        self.ctx.frame.insert(FrameIndex::J, j);
        let plan = self.plan;
        if self.staged.is_empty() {
            for &n in &plan.key_side {
                self.compute(n, false)?;
            }
        } else {
            // Key-side values not staged are read only by staged ones.
            let slot = self.s.sub(j, j0)?;
            for st in self.staged.clone() {
                let words = self.s.i32(st.len.unwrap_or(1) as i64);
                let base = self.s.mul(slot, words)?;
                let home = Home::Staged {
                    var: st.var,
                    ty: st.ty,
                    base,
                    len: st.len,
                };
                self.ctx.homes.insert(st.node, home);
            }
        }
        for &n in &plan.pair {
            self.compute(n, false)?;
        }
        for n in self.stored_absorbed() {
            if k > 0 && self.ready_after(n, k - 1) {
                self.compute(n, false)?;
            }
        }
        let keep = self.keep(code)?;
        self.nested(
            |s, body| s.when(keep, |s| body(s, None)),
            |g, _| g.updates(k, reductions, accs),
        )?;
        self.ctx.frame.remove(&FrameIndex::J);
        self.ctx.homes = saved;
        Ok(())
    }

    /// Whether the pair takes part: the tile is fully kept (code 2), or the mask holds.
    fn keep(&mut self, code: Val) -> Result<Val> {
        let Some(mask) = self.plan.mask else {
            return Ok(self.s.bool(true));
        };
        let keep = self.s.scalar_local(Ty::Bool);
        let yes = self.s.bool(true);
        self.s.store(keep, yes)?;
        let two = self.s.i32(2);
        let partial = self.s.cmp(Cmp::Ne, code, two)?;
        self.nested(
            |s, body| s.when(partial, |s| body(s, None)),
            |g, _| {
                g.compute(mask, false)?;
                let Some(Home::Scalar(m)) = g.ctx.homes.get(&mask).copied() else {
                    return Err(SpirvError::internal("the mask is not a scalar"));
                };
                let m = g.s.truth(m)?;
                g.s.store(keep, m)
            },
        )?;
        self.ctx.homes.remove(&mask);
        self.s.load(Ty::Bool, keep)
    }

    /// The absorbed pair values that are stored rather than only inlined into a reduction's
    /// argument (see the CPU back end): a value that is not a map, or one read by something
    /// that does not inline it.
    fn stored_absorbed(&self) -> Vec<NodeIndex> {
        let graph = self.graph;
        let plan = self.plan;
        let inlines = |n: NodeIndex, u: NodeIndex| match graph.node(u).op {
            Op::Map { .. } => plan.absorbed.contains(&u),
            Op::RowReduce { .. } | Op::Aggregate => graph
                .operands(u)
                .iter()
                .all(|(v, e)| v.node != n || e.operand == 0),
            _ => false,
        };
        plan.absorbed
            .iter()
            .copied()
            .filter(|&n| {
                !matches!(graph.node(n).op, Op::Map { .. })
                    || graph.users(n).into_iter().any(|u| !inlines(n, u))
            })
            .collect()
    }
}
