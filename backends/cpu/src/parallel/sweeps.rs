//! The body of a work item: the sweeps over key tiles with each reduction's update, the
//! finishing of reductions, and the output tile.

use super::{At, Class, Gen};
use crate::{CodegenError, Layout};
use attnc_ir::graph::{Op, ReduceKind, ValueRef};
use attnc_ir::types::FrameIndex;
use attnc_passes::fusion::tree::Tree;
use attnc_passes::fusion::{Accumulation, ParallelKernel, ReductionPlan};
use petgraph::stable_graph::NodeIndex;
use std::collections::{BTreeSet, HashMap};

/// Buffers of an online reduction: one accumulator (and shift) per term, and whether any pair
/// was accumulated (an empty sum is 0, as in the reference).
struct OnlineBuffers {
    acc: Vec<String>,
    /// Each term's weight for every pair of the current tile (`bq x bk`, row-major). Terms of
    /// one sweep with the same weight share the buffer (softmax's row sum and aggregation both
    /// weigh a pair by `exp(s - m)`), written by the first of them only.
    weights: Vec<String>,
    writes_weights: Vec<bool>,
    shift: Vec<Option<String>>,
    seen: String,
}

impl Gen<'_> {
    pub(super) fn body_of(
        &mut self,
        plan: &ParallelKernel,
        order: &[NodeIndex],
        layout: &Layout,
    ) -> Result<(), CodegenError> {
        // Every buffer is allocated up front, outside the loops.
        let stored = self.stored_absorbed(plan);
        for &n in order {
            let op = &self.graph.node(n).op;
            if matches!(op, Op::Input { .. } | Op::Output { .. })
                || (plan.absorbed.contains(&n) && !stored.contains(&n))
            {
                continue;
            }
            self.allocate(n)?;
        }
        let bk = self.body.index(self.bk as i64);
        self.row_scratch = self.body.alloca_zeroed(&bk);
        let mut online: HashMap<NodeIndex, OnlineBuffers> = HashMap::new();
        for sweep in &plan.sweeps {
            type WeightKey<'t> = (&'t Tree, &'t Option<Tree>, &'t Option<Tree>);
            let mut sweep_weights: Vec<(WeightKey, String)> = Vec::new();
            for r in &sweep.reductions {
                if let Accumulation::Online { terms } = &r.accumulation {
                    let f = self.buffers[&r.node].1.clone();
                    let bq = self.body.index(self.bq as i64);
                    let size = self.body.bini("muli", &bq, &f);
                    let acc = terms
                        .iter()
                        .map(|_| self.body.alloca_zeroed(&size))
                        .collect();
                    let shift = terms
                        .iter()
                        .map(|t| {
                            t.shift.as_ref().map(|_| {
                                self.body
                                    .op(&format!("memref.alloca({bq}) : memref<?xf32>"))
                            })
                        })
                        .collect();
                    let seen = self
                        .body
                        .op(&format!("memref.alloca({bq}) : memref<?xf32>"));
                    let pairs = self.body.index((self.bq * self.bk) as i64);
                    let mut weights = Vec::new();
                    let mut writes_weights = Vec::new();
                    for t in terms {
                        let key = (&t.factor, &t.exponent, &t.shift);
                        match sweep_weights.iter().find(|(k, _)| *k == key) {
                            Some((_, buf)) => {
                                weights.push(buf.clone());
                                writes_weights.push(false);
                            }
                            None => {
                                let buf = self.body.alloca_zeroed(&pairs);
                                sweep_weights.push((key, buf.clone()));
                                weights.push(buf);
                                writes_weights.push(true);
                            }
                        }
                    }
                    online.insert(
                        r.node,
                        OnlineBuffers {
                            acc,
                            weights,
                            writes_weights,
                            shift,
                            seen,
                        },
                    );
                }
            }
        }
        let n_i = match self.graph.extents.get(&FrameIndex::I).cloned() {
            Some(d) => self.dim(&d),
            None => self.body.index(1),
        };
        let bq = self.body.index(self.bq as i64);
        let left = self.body.bini("subi", &n_i, &self.i0.clone());
        let rows = self.body.bini("minsi", &bq, &left);
        for &n in &plan.per_head {
            self.compute(n, "", "")?;
        }
        for &n in &plan.query_side {
            self.compute(n, &rows, "")?;
        }
        let mut done: BTreeSet<NodeIndex> = BTreeSet::new();
        for (s, sweep) in plan.sweeps.iter().enumerate() {
            for r in &sweep.reductions {
                self.init(r, online.get(&r.node), &rows)?;
            }
            let n_j = match self.graph.extents.get(&FrameIndex::J).cloned() {
                Some(d) => self.dim(&d),
                None => self.body.index(1),
            };
            let bk = self.body.index(self.bk as i64);
            let one = self.body.index(1);
            let bk1 = self.body.bini("subi", &bk, &one);
            let padded = self.body.bini("addi", &n_j, &bk1);
            let tiles = self.body.bini("divsi", &padded, &bk);
            let c0 = self.c0.clone();
            let tiles_param = self.body.op("arith.index_cast %n_key_tiles : i64 to index");
            let cov = self.body.op(&format!(
                "memref.reinterpret_cast %cov to offset: [0], sizes: [{tiles_param}], strides: [1] : memref<i32> to memref<?xi32>"
            ));
            let kt = self.body.open_for(&c0, &tiles);
            let code = self
                .body
                .op(&format!("memref.load {cov}[{kt}] : memref<?xi32>"));
            let zero = self.body.op("arith.constant 0 : i32");
            let visit = self
                .body
                .op(&format!("arith.cmpi ne, {code}, {zero} : i32"));
            self.body.open_if(&visit);
            self.j0 = self.body.bini("muli", &kt, &bk);
            let left = self.body.bini("subi", &n_j, &self.j0.clone());
            let cols = self.body.bini("minsi", &bk, &left);
            for &n in &plan.key_side {
                self.compute(n, "", &cols)?;
            }
            for &n in &plan.pair {
                self.compute(n, &rows, &cols)?;
            }
            for &n in order.iter().filter(|n| stored.contains(n)) {
                if s > 0 && self.ready_after(n, s - 1) {
                    self.compute(n, &rows, &cols)?;
                }
            }
            // Tiles the rule found fully kept (code 2) need no per-element mask.
            let two = self.body.op("arith.constant 2 : i32");
            let full = self.body.op(&format!("arith.cmpi eq, {code}, {two} : i32"));
            if let Some(m) = plan.mask {
                let partial = self.body.op(&format!("arith.cmpi ne, {code}, {two} : i32"));
                self.body.open_if(&partial);
                self.compute(m, &rows, &cols)?;
                self.body.close();
            }
            self.update_sweep(
                &sweep.reductions,
                plan.mask,
                &online,
                &rows,
                &cols,
                s,
                &full,
            )?;
            self.body.close();
            self.body.close();
            // Finish this sweep's reductions, and every per-row value that now has its inputs.
            let mut ready: Vec<NodeIndex> = sweep.reductions.iter().map(|r| r.node).collect();
            for &n in &plan.epilogue {
                if matches!(self.graph.node(n).op, Op::Map { .. })
                    && !done.contains(&n)
                    && self.ready_after(n, s)
                {
                    ready.push(n);
                }
            }
            for &n in order.iter().filter(|n| ready.contains(n)) {
                match sweep.reductions.iter().find(|r| r.node == n) {
                    Some(r) => self.finish(r, online.get(&n), &rows)?,
                    None => self.compute(n, &rows, "")?,
                }
                done.insert(n);
            }
        }
        for &n in &plan.epilogue {
            if matches!(self.graph.node(n).op, Op::Map { .. }) && !done.contains(&n) {
                self.compute(n, &rows, "")?;
            }
        }
        for &n in &plan.epilogue {
            if let Op::Output { name, .. } = &self.graph.node(n).op {
                let value = self.graph.operands(n)[0].0;
                self.store_output(name, value, &rows, layout)?;
            }
        }
        Ok(())
    }

    /// The absorbed pair values (those reading statistics) that are stored per key tile rather
    /// than only inlined into a reduction's argument: a value that is not a map (a score
    /// `dot(a, v[b, h, j])` of a finished aggregate `a`), or one read by something that does
    /// not inline it. Each is computed in the first sweep after its statistics are final; one
    /// reading a running statistic never is (an online form inlines it).
    fn stored_absorbed(&self, plan: &ParallelKernel) -> BTreeSet<NodeIndex> {
        // Absorbed maps and a reduction's argument (operand 0) see through a map.
        let inlines = |n: NodeIndex, u: NodeIndex| match self.graph.node(u).op {
            Op::Map { .. } => plan.absorbed.contains(&u),
            Op::RowReduce { .. } | Op::Aggregate => self
                .graph
                .operands(u)
                .iter()
                .all(|(v, e)| v.node != n || e.operand == 0),
            _ => false,
        };
        plan.absorbed
            .iter()
            .copied()
            .filter(|&n| {
                !matches!(self.graph.node(n).op, Op::Map { .. })
                    || self.graph.users(n).into_iter().any(|u| !inlines(n, u))
            })
            .collect()
    }

    /// Whether every statistic a node reads is final after sweep `s`.
    fn ready_after(&self, n: NodeIndex, s: usize) -> bool {
        self.stats.get(&n).is_none_or(|deps| {
            deps.iter()
                .all(|d| self.sweep_of.get(d).is_some_and(|k| *k <= s))
        })
    }

    fn init(
        &mut self,
        r: &ReductionPlan,
        online: Option<&OnlineBuffers>,
        rows: &str,
    ) -> Result<(), CodegenError> {
        let c0 = self.c0.clone();
        let (buf, f) = self.buffers[&r.node].clone();
        let ii = self.body.open_for(&c0, rows);
        let fi = self.body.open_for(&c0, &f);
        let at = self.body.row_offset(&ii, &f, &fi);
        match online {
            None => {
                let identity = self.body.f32(r.kind.identity());
                self.body.store(&identity, &buf, &at);
            }
            Some(o) => {
                let zero = self.body.f32(0.0);
                for acc in &o.acc {
                    self.body.store(&zero, acc, &at);
                }
            }
        }
        self.body.close();
        if let Some(o) = online {
            let zero = self.body.f32(0.0);
            let ninf = self.body.f32(f64::NEG_INFINITY);
            self.body.store(&zero, &o.seen, &ii);
            for z in o.shift.iter().flatten() {
                self.body.store(&ninf, z, &ii);
            }
        }
        self.body.close();
        Ok(())
    }

    /// The argument of a reduction as the code needs it: leaves that are per-row values reading
    /// statistics of this sweep are expanded, so they are computed from the running values.
    fn expand_running(&self, t: &Tree, sweep: usize) -> Tree {
        let graph = self.graph;
        let running = |v: ValueRef| {
            matches!(graph.node(v.node).op, Op::Map { .. })
                && self
                    .stats
                    .get(&v.node)
                    .is_some_and(|s| s.iter().any(|r| self.sweep_of.get(r) == Some(&sweep)))
        };
        expand(t, graph, &running)
    }

    /// Opens `if full || mask[ii, jj] != 0` when the kernel has a mask; returns whether it did.
    fn open_mask(
        &mut self,
        mask: Option<NodeIndex>,
        at: &At,
        full: &str,
    ) -> Result<bool, CodegenError> {
        if mask.is_none() {
            return Ok(false);
        }
        let keep = self.keep(mask, at, full)?;
        self.body.open_if(&keep);
        Ok(true)
    }

    /// One key tile's updates: plain reductions first (online shifts read their running
    /// values), then every online reduction in one loop nest, so a weight they share (softmax's
    /// `exp(s - m)` for the row sum and the aggregation) is computed once per pair.
    #[allow(clippy::too_many_arguments)]
    fn update_sweep(
        &mut self,
        reductions: &[ReductionPlan],
        mask: Option<NodeIndex>,
        online: &HashMap<NodeIndex, OnlineBuffers>,
        rows: &str,
        cols: &str,
        sweep: usize,
        full: &str,
    ) -> Result<(), CodegenError> {
        for r in reductions {
            if let Accumulation::Plain { argument, .. } = &r.accumulation {
                self.update_plain(r, argument, mask, rows, cols, full)?;
            }
        }
        let onl: Vec<(
            &ReductionPlan,
            &Vec<attnc_passes::fusion::online::OnlineTerm>,
            &OnlineBuffers,
        )> = reductions
            .iter()
            .filter_map(|r| match (&r.accumulation, online.get(&r.node)) {
                (Accumulation::Online { terms }, Some(o)) => Some((r, terms, o)),
                _ => None,
            })
            .collect();
        if onl.is_empty() {
            return Ok(());
        }
        let c0 = self.c0.clone();
        let bk = self.body.index(self.bk as i64);
        let zero = self.body.f32(0.0);
        let ii = self.body.open_for(&c0, rows);
        let mut shifts: Vec<Vec<Option<String>>> = Vec::new();
        for (r, terms, o) in &onl {
            let f = self.buffers[&r.node].1.clone();
            let mut row_shifts = Vec::new();
            for (k, t) in terms.iter().enumerate() {
                let (Some(z), Some(zbuf)) = (&t.shift, &o.shift[k]) else {
                    row_shifts.push(None);
                    continue;
                };
                let z = self.expand_running(z, sweep);
                let at = At {
                    ii: Some(ii.clone()),
                    ..At::default()
                };
                let znew = self.tree(&z, &at)?;
                let zold = self.body.load(zbuf, &ii);
                let same = self
                    .body
                    .op(&format!("arith.cmpf oeq, {zold}, {znew} : f32"));
                let d = self.body.binf("subf", &zold, &znew);
                let e = self.body.math("exp", &d);
                let one = self.body.f32(1.0);
                let scale = self.body.select_f32(&same, &one, &e);
                let fi = self.body.open_for(&c0, &f);
                let at = self.body.row_offset(&ii, &f, &fi);
                let a = self.body.load(&o.acc[k], &at);
                let scaled = self.body.binf("mulf", &a, &scale);
                self.body.store(&scaled, &o.acc[k], &at);
                self.body.close();
                self.body.store(&znew, zbuf, &ii);
                row_shifts.push(Some(znew));
            }
            shifts.push(row_shifts);
        }
        // Every term's weight for every key of the tile, without branches (a masked pair weighs
        // 0), so the exponentials vectorise across the keys; `any` records whether a key was kept.
        // With whole vectors of keys the loop covers the whole tile, keys past `cols` weighing
        // 0, so the row sums can read the weights by vectors.
        let vector_rows = self.vector_rows();
        let (end, one) = if vector_rows {
            (self.body.index(self.bk as i64), None)
        } else {
            (cols.to_string(), Some(self.body.f32(1.0)))
        };
        let (jj, any) = match &one {
            Some(_) => {
                let (jj, any, any_kept) = self.body.open_fold(&c0, &end, &zero);
                (jj, Some((any, any_kept)))
            }
            None => (self.body.open_for(&c0, &end), None),
        };
        let at = At {
            ii: Some(ii.clone()),
            jj: Some(jj.clone()),
            f: None,
        };
        let mut keep = self.keep(mask, &at, full)?;
        if vector_rows {
            let inside = self
                .body
                .op(&format!("arith.cmpi slt, {jj}, {cols} : index"));
            keep = self.body.op(&format!("arith.andi {keep}, {inside} : i1"));
        }
        let pair = self.body.row_offset(&ii, &bk, &jj);
        self.cache_on = true;
        for ((_, terms, o), row_shifts) in onl.iter().zip(&shifts) {
            for (k, t) in terms.iter().enumerate() {
                if !o.writes_weights[k] {
                    continue;
                }
                let mut w = self.tree(&t.factor, &at)?;
                if let Some(y) = &t.exponent {
                    let mut e = self.tree(y, &at)?;
                    if let Some(z) = &row_shifts[k] {
                        e = self.body.binf("subf", &e, z);
                    }
                    let ex = self.body.math("exp", &e);
                    w = self.body.binf("mulf", &ex, &w);
                }
                let w = self.body.select_f32(&keep, &w, &zero);
                self.body.store(&w, &o.weights[k], &pair);
            }
        }
        self.cache_on = false;
        self.cache.clear();
        // Whether the row kept any key of the tile: 1 if so.
        let any_kept = match (any, one) {
            (Some((any, any_kept)), Some(one)) => {
                let kept = self.body.select_f32(&keep, &one, &zero);
                let next = self.body.binf("maximumf", &any, &kept);
                self.body.close_fold(&next);
                any_kept
            }
            _ => {
                self.body.close();
                self.reduce_row(ReduceKind::Max, None, mask, &ii, cols, full)?
            }
        };
        for (_, _, o) in &onl {
            let seen = self.body.load(&o.seen, &ii);
            let seen = self.body.binf("maximumf", &seen, &any_kept);
            self.body.store(&seen, &o.seen, &ii);
        }
        self.body.close();
        // Then the accumulations, dense over the tile's pairs.
        for (r, terms, o) in &onl {
            let f = self.buffers[&r.node].1.clone();
            for k in 0..terms.len() {
                match r.row {
                    Some(row) => {
                        if self.aggregate_tile(&o.acc[k], &o.weights[k], row, rows, cols)? {
                            continue;
                        }
                        let ii = self.body.open_for(&c0, rows);
                        let jj = self.body.open_for(&c0, cols);
                        let pair = self.body.row_offset(&ii, &bk, &jj);
                        let w = self.body.load(&o.weights[k], &pair);
                        let at = At {
                            ii: Some(ii.clone()),
                            jj: Some(jj.clone()),
                            f: None,
                        };
                        self.accumulate_row(&o.acc[k], &f, &ii, &w, row, &at)?;
                        self.body.close();
                        self.body.close();
                    }
                    None => {
                        if self
                            .value_type(r.node)
                            .is_some_and(|t| t.feature != attnc_ir::types::Feature::Scalar)
                        {
                            return Err(CodegenError::Unsupported(
                                "an online sum of vectors".into(),
                            ));
                        }
                        let ii = self.body.open_for(&c0, rows);
                        let total = if self.vector_rows() {
                            let start = self.body.bini("muli", &ii, &bk);
                            let row = super::rows::Row {
                                buf: &o.weights[k],
                                start: &start,
                            };
                            let full = self.body.op("arith.constant true");
                            self.reduce_row(ReduceKind::Sum, Some(row), None, &ii, cols, &full)?
                        } else {
                            let (jj, acc, total) = self.body.open_fold(&c0, cols, &zero);
                            let pair = self.body.row_offset(&ii, &bk, &jj);
                            let w = self.body.load(&o.weights[k], &pair);
                            let n = self.body.binf("addf", &acc, &w);
                            self.body.close_fold(&n);
                            total
                        };
                        let a = self.body.load(&o.acc[k], &ii);
                        let n = self.body.binf("addf", &a, &total);
                        self.body.store(&n, &o.acc[k], &ii);
                        self.body.close();
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether pair (ii, jj) is kept: on a fully kept tile always, else by the mask (an i1).
    fn keep(
        &mut self,
        mask: Option<NodeIndex>,
        at: &At,
        full: &str,
    ) -> Result<String, CodegenError> {
        let Some(m) = mask else {
            return Ok(self.body.op("arith.constant true"));
        };
        let keep = self.load_value(ValueRef { node: m, result: 0 }, at)?;
        let zero = self.body.f32(0.0);
        let kept = self
            .body
            .op(&format!("arith.cmpf une, {keep}, {zero} : f32"));
        Ok(self.body.op(&format!("arith.ori {full}, {kept} : i1")))
    }

    /// A running sum, maximum or minimum (or plain aggregation) over one key tile.
    fn update_plain(
        &mut self,
        r: &ReductionPlan,
        argument: &Tree,
        mask: Option<NodeIndex>,
        rows: &str,
        cols: &str,
        full: &str,
    ) -> Result<(), CodegenError> {
        let c0 = self.c0.clone();
        let (buf, f) = self.buffers[&r.node].clone();
        let scalar = self
            .value_type(r.node)
            .is_some_and(|t| t.feature == attnc_ir::types::Feature::Scalar);
        if r.row.is_none() && scalar && self.vector_rows() {
            return self.update_plain_rows(r, argument, mask, rows, cols, full);
        }
        let ii = self.body.open_for(&c0, rows);
        let jj = self.body.open_for(&c0, cols);
        let at = At {
            ii: Some(ii.clone()),
            jj: Some(jj.clone()),
            f: None,
        };
        let masked = self.open_mask(mask, &at, full)?;
        match r.row {
            Some(row) => {
                let w = self.tree(argument, &at)?;
                self.accumulate_row(&buf, &f, &ii, &w, row, &at)?;
            }
            None => {
                let fi = self.body.open_for(&c0, &f);
                let pos = At {
                    f: Some(fi.clone()),
                    ..at.clone()
                };
                let x = self.tree(argument, &pos)?;
                let o = self.body.row_offset(&ii, &f, &fi);
                let a = self.body.load(&buf, &o);
                let n = self.body.binf(combiner(r.kind), &a, &x);
                self.body.store(&n, &buf, &o);
                self.body.close();
            }
        }
        if masked {
            self.body.close();
        }
        self.body.close();
        self.body.close();
        Ok(())
    }

    /// A running sum, maximum or minimum of a scalar per query row, by vectors of keys: the
    /// argument is read from its pair buffer when it is one, else computed into a row first.
    fn update_plain_rows(
        &mut self,
        r: &ReductionPlan,
        argument: &Tree,
        mask: Option<NodeIndex>,
        rows: &str,
        cols: &str,
        full: &str,
    ) -> Result<(), CodegenError> {
        let c0 = self.c0.clone();
        let buf = self.buffers[&r.node].0.clone();
        let bk = self.body.index(self.bk as i64);
        let ii = self.body.open_for(&c0, rows);
        let pair_value = match argument {
            Tree::Value(v) if self.classes.get(&v.node) == Some(&Class::Pair) => {
                Some(self.buffers[&v.node].0.clone())
            }
            _ => None,
        };
        let (src, start) = match pair_value {
            Some(src) => {
                let start = self.body.bini("muli", &ii, &bk);
                (src, start)
            }
            None => {
                let scratch = self.row_scratch.clone();
                let jj = self.body.open_for(&c0, cols);
                let at = At {
                    ii: Some(ii.clone()),
                    jj: Some(jj.clone()),
                    f: None,
                };
                let x = self.tree(argument, &at)?;
                self.body.store(&x, &scratch, &jj);
                self.body.close();
                (scratch, c0.clone())
            }
        };
        let row = super::rows::Row {
            buf: &src,
            start: &start,
        };
        let x = self.reduce_row(r.kind, Some(row), mask, &ii, cols, full)?;
        let a = self.body.load(&buf, &ii);
        let n = self.body.binf(combiner(r.kind), &a, &x);
        self.body.store(&n, &buf, &ii);
        self.body.close();
        Ok(())
    }

    /// `acc[ii, :] += w * row[jj, :]`.
    fn accumulate_row(
        &mut self,
        acc: &str,
        f: &str,
        ii: &str,
        w: &str,
        row: ValueRef,
        at: &At,
    ) -> Result<(), CodegenError> {
        let c0 = self.c0.clone();
        let fi = self.body.open_for(&c0, f);
        let pos = At {
            f: Some(fi.clone()),
            ..at.clone()
        };
        let x = self.load_value(row, &pos)?;
        let o = self.body.row_offset(ii, f, &fi);
        let a = self.body.load(acc, &o);
        let p = self.body.binf("mulf", w, &x);
        let n = self.body.binf("addf", &a, &p);
        self.body.store(&n, acc, &o);
        self.body.close();
        Ok(())
    }

    /// After the sweep: an online reduction's value is the signed sum of its terms, each times
    /// its per-row factor; an empty sum is 0.
    fn finish(
        &mut self,
        r: &ReductionPlan,
        online: Option<&OnlineBuffers>,
        rows: &str,
    ) -> Result<(), CodegenError> {
        let (Accumulation::Online { terms }, Some(o)) = (&r.accumulation, online) else {
            return Ok(());
        };
        let c0 = self.c0.clone();
        let (buf, f) = self.buffers[&r.node].clone();
        let ii = self.body.open_for(&c0, rows);
        let at = At {
            ii: Some(ii.clone()),
            ..At::default()
        };
        let mut posts = Vec::new();
        for t in terms {
            posts.push(match &t.post {
                Some(p) => Some(self.tree(p, &at)?),
                None => None,
            });
        }
        let seen = self.body.load(&o.seen, &ii);
        let zero = self.body.f32(0.0);
        let any = self
            .body
            .op(&format!("arith.cmpf une, {seen}, {zero} : f32"));
        let fi = self.body.open_for(&c0, &f);
        let idx = self.body.row_offset(&ii, &f, &fi);
        let mut total = self.body.f32(0.0);
        for (k, t) in terms.iter().enumerate() {
            let mut x = self.body.load(&o.acc[k], &idx);
            if let Some(p) = &posts[k] {
                x = self.body.binf("mulf", &x, p);
            }
            total = self
                .body
                .binf(if t.sign < 0.0 { "subf" } else { "addf" }, &total, &x);
        }
        let value = self.body.select_f32(&any, &total, &zero);
        self.body.store(&value, &buf, &idx);
        self.body.close();
        self.body.close();
        Ok(())
    }

    fn store_output(
        &mut self,
        name: &str,
        value: ValueRef,
        rows: &str,
        _layout: &Layout,
    ) -> Result<(), CodegenError> {
        let c0 = self.c0.clone();
        let len = self
            .buffers
            .get(&value.node)
            .map(|b| b.1.clone())
            .ok_or_else(|| CodegenError::Internal(format!("output {name} has no value")))?;
        let bq = self.body.index(self.bq as i64);
        let size = self.body.bini("muli", &bq, &len);
        let out = self.body.op(&format!(
            "memref.reinterpret_cast %out_{name} to offset: [0], sizes: [{size}], strides: [1] : memref<f32> to memref<?xf32>"
        ));
        let ii = self.body.open_for(&c0, rows);
        let fi = self.body.open_for(&c0, &len);
        let class = self.classes.get(&value.node).copied();
        let at = At {
            ii: Some(ii.clone()),
            jj: None,
            f: Some(fi.clone()),
        };
        if class == Some(Class::Key) || class == Some(Class::Pair) {
            return Err(CodegenError::Internal(format!(
                "output {name} varies with j"
            )));
        }
        let x = self.load_value(value, &at)?;
        let o = self.body.row_offset(&ii, &len, &fi);
        self.body.store(&x, &out, &o);
        self.body.close();
        self.body.close();
        Ok(())
    }
}

/// The arith op that folds one value into a running reduction of this kind.
fn combiner(kind: ReduceKind) -> &'static str {
    match kind {
        ReduceKind::Sum => "addf",
        ReduceKind::Max => "maximumf",
        ReduceKind::Min => "minimumf",
    }
}

fn expand(t: &Tree, graph: &attnc_ir::Graph, inline: &dyn Fn(ValueRef) -> bool) -> Tree {
    let e = |x: &Tree| Box::new(expand(x, graph, inline));
    match t {
        Tree::Value(v) if inline(*v) => Tree::of_map(graph, *v, inline),
        Tree::Unary(op, a) => Tree::Unary(*op, e(a)),
        Tree::Binary(op, a, b) => Tree::Binary(*op, e(a), e(b)),
        Tree::Call(f, args) => {
            Tree::Call(*f, args.iter().map(|a| expand(a, graph, inline)).collect())
        }
        Tree::Extract(a, b) => Tree::Extract(e(a), e(b)),
        other => other.clone(),
    }
}
