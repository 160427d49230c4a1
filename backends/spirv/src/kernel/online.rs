//! The updates of the reductions for one kept pair (plain ones, then the online terms, whose
//! accumulators are rescaled by `exp(Z_old - Z_new)` when their running shift moves) and their
//! final values once a sweep is over.

use super::Gen;
use super::sweep::{Acc, Accumulators};
use crate::error::{Result, SpirvError};
use crate::shader::{Cmp, Ty, Val, glsl};
use crate::values::Home;
use attnc_ir::graph::{Graph, Op, ReduceKind, ValueRef};
use attnc_passes::fusion::online::OnlineTerm;
use attnc_passes::fusion::tree::Tree;
use attnc_passes::fusion::{Accumulation, ReductionPlan};
use petgraph::stable_graph::NodeIndex;
use rspirv::spirv::Word;

impl Gen<'_> {
    /// The updates of one kept pair: plain reductions first (online shifts read their running
    /// values), then the online terms; a weight several terms share is computed once.
    pub(super) fn updates(
        &mut self,
        k: usize,
        reductions: &[ReductionPlan],
        accs: &[Accumulators],
    ) -> Result<()> {
        self.low.set_caching(true);
        let r = self.updates_uncached(k, reductions, accs);
        self.low.set_caching(false);
        r
    }

    fn updates_uncached(
        &mut self,
        k: usize,
        reductions: &[ReductionPlan],
        accs: &[Accumulators],
    ) -> Result<()> {
        for (r, a) in reductions.iter().zip(accs) {
            if let (Accumulation::Plain { argument, .. }, Accumulators::Plain(acc)) =
                (&r.accumulation, a)
            {
                if acc.len.is_some() && r.row.is_none() {
                    // A vector argument (`sum_j(x - v[b, h, j])`): element by element.
                    self.per_feature(*acc, r.node, |g, f| {
                        let x = g.tree_at(argument, Some(f), r.node)?;
                        g.combine_at(r.kind, acc.var, f, x)
                    })?;
                } else {
                    let x = self.tree_f32(argument, r.node)?;
                    self.accumulate(r, *acc, x)?;
                }
            }
        }
        let mut weights: Vec<(&OnlineTerm, Val)> = Vec::new();
        for (r, a) in reductions.iter().zip(accs) {
            let (
                Accumulation::Online { terms },
                Accumulators::Online {
                    terms: acc,
                    shifts,
                    seen,
                },
            ) = (&r.accumulation, a)
            else {
                continue;
            };
            for (t, (acc, shift)) in terms.iter().zip(acc.iter().zip(shifts)) {
                let z = match (&t.shift, shift) {
                    (Some(z), Some(var)) => Some(self.rescale(k, z, *var, *acc, r.node)?),
                    _ => None,
                };
                if self.is_vector(&t.factor)
                    || t.exponent.as_ref().is_some_and(|y| self.is_vector(y))
                {
                    self.accumulate_vector_term(r, t, z, *acc)?;
                    continue;
                }
                let same = |w: &&(&OnlineTerm, Val)| {
                    w.0.factor == t.factor && w.0.exponent == t.exponent && w.0.shift == t.shift
                };
                let w = match weights.iter().find(same) {
                    Some((_, w)) => *w,
                    None => {
                        let w = self.weight(t, z, r.node)?;
                        weights.push((t, w));
                        w
                    }
                };
                self.accumulate(r, *acc, w)?;
            }
            let yes = self.s.bool(true);
            self.s.store(*seen, yes)?;
        }
        Ok(())
    }

    fn tree_f32(&mut self, t: &Tree, n: NodeIndex) -> Result<Val> {
        self.low
            .lower_as(&mut self.s, &mut self.ctx, t, None, Ty::F32)
            .map_err(|e| e.at(self.graph, n))
    }

    /// `acc ⊕= x` for a reduction (an aggregation adds `x · row`).
    fn accumulate(&mut self, r: &ReductionPlan, acc: Acc, x: Val) -> Result<()> {
        match (acc.len, r.row) {
            (None, _) => {
                let a = self.s.load(Ty::F32, acc.var)?;
                let next = match r.kind {
                    ReduceKind::Sum => self.s.add(a, x)?,
                    ReduceKind::Max => self.s.ext(Ty::F32, glsl::NMAX, &[a, x])?,
                    ReduceKind::Min => self.s.ext(Ty::F32, glsl::NMIN, &[a, x])?,
                };
                self.s.store(acc.var, next)
            }
            (Some(len), Some(row)) => {
                let ctx = &mut self.ctx;
                self.s.features(len, |s, f| {
                    let v = crate::expr::Leaves::value(ctx, s, row, Some(f))?;
                    let v = s.float(v)?;
                    let p = s.local_element(acc.var, Ty::F32, f)?;
                    let a = s.load(Ty::F32, p)?;
                    let next = s.ext(Ty::F32, glsl::FMA, &[x, v, a])?;
                    s.store(p, next)
                })
            }
            // A scalar contribution to a vector accumulator (its per-row factor is a vector).
            (Some(_), None) => {
                self.per_feature(acc, r.node, |g, f| g.combine_at(r.kind, acc.var, f, x))
            }
        }
    }

    fn is_vector(&self, t: &Tree) -> bool {
        attnc_lower::expr::is_vector(self.graph, t)
    }

    /// `t` at feature `f` (or as a scalar), as f32.
    fn tree_at(&mut self, t: &Tree, f: Option<Val>, n: NodeIndex) -> Result<Val> {
        self.low
            .lower_as(&mut self.s, &mut self.ctx, t, f, Ty::F32)
            .map_err(|e| e.at(self.graph, n))
    }

    /// `acc[f] ⊕= x`.
    fn combine_at(&mut self, kind: ReduceKind, var: Word, f: Val, x: Val) -> Result<()> {
        let p = self.s.local_element(var, Ty::F32, f)?;
        let a = self.s.load(Ty::F32, p)?;
        let next = match kind {
            ReduceKind::Sum => self.s.add(a, x)?,
            ReduceKind::Max => self.s.ext(Ty::F32, glsl::NMAX, &[a, x])?,
            ReduceKind::Min => self.s.ext(Ty::F32, glsl::NMIN, &[a, x])?,
        };
        self.s.store(p, next)
    }

    /// Runs `body` for every feature of a vector accumulator, with the pair's cache paused
    /// (values computed inside the loop do not dominate the code after it).
    fn per_feature(
        &mut self,
        acc: Acc,
        n: NodeIndex,
        mut body: impl FnMut(&mut Self, Val) -> Result<()>,
    ) -> Result<()> {
        let len = acc
            .len
            .ok_or_else(|| SpirvError::internal("a feature loop over a scalar accumulator"))?;
        let caching = self.low.pause();
        let r = self.nested(
            |s, inner| s.features(len, |s, f| inner(s, Some(f))),
            |g, f| {
                let f = f.ok_or_else(|| SpirvError::internal("a feature loop without f"))?;
                body(g, f)
            },
        );
        self.low.resume(caching);
        r.map_err(|e| e.at(self.graph, n))
    }

    /// An online term whose factor or exponent is a vector: `acc[f] += G[f] · exp(Y[f] - Z)`
    /// (times `row[f]` for an aggregation), element by element.
    fn accumulate_vector_term(
        &mut self,
        r: &ReductionPlan,
        t: &OnlineTerm,
        z: Option<Val>,
        acc: Acc,
    ) -> Result<()> {
        if acc.len.is_none() {
            return Err(SpirvError::internal(
                "a vector-valued term of a scalar reduction",
            ));
        }
        self.per_feature(acc, r.node, |g, f| {
            let mut w = g.tree_at(&t.factor, Some(f), r.node)?;
            let exponent = match (&t.exponent, z) {
                (Some(y), z) => {
                    let y = g.tree_at(y, Some(f), r.node)?;
                    Some(match z {
                        Some(z) => g.s.sub(y, z)?,
                        None => y,
                    })
                }
                (None, Some(z)) => Some(g.s.neg(z)?),
                (None, None) => None,
            };
            if let Some(x) = exponent {
                let e = g.s.ext(Ty::F32, glsl::EXP, &[x])?;
                w = g.s.mul(w, e)?;
            }
            if let Some(row) = r.row {
                let v = crate::expr::Leaves::value(&mut g.ctx, &mut g.s, row, Some(f))?;
                let v = g.s.float(v)?;
                w = g.s.mul(w, v)?;
            }
            g.combine_at(ReduceKind::Sum, acc.var, f, w)
        })
    }

    /// Moves a term's running shift to its new value `Z` and rescales its accumulator by
    /// `exp(Z_old - Z_new)` where it moved; returns `Z_new`.
    fn rescale(&mut self, k: usize, z: &Tree, var: Word, acc: Acc, n: NodeIndex) -> Result<Val> {
        let z = self.expand_running(z, k);
        self.check_running(&z, k, n)?;
        let znew = self.tree_f32(&z, n)?;
        let zold = self.s.load(Ty::F32, var)?;
        let moved = self.s.cmp(Cmp::Ne, zold, znew)?;
        self.s.when(moved, |s| {
            let d = s.sub(zold, znew)?;
            let scale = s.ext(Ty::F32, glsl::EXP, &[d])?;
            match acc.len {
                None => {
                    let a = s.load(Ty::F32, acc.var)?;
                    let v = s.mul(a, scale)?;
                    s.store(acc.var, v)
                }
                Some(len) => s.features(len, |s, f| {
                    let p = s.local_element(acc.var, Ty::F32, f)?;
                    let a = s.load(Ty::F32, p)?;
                    let v = s.mul(a, scale)?;
                    s.store(p, v)
                }),
            }
        })?;
        self.s.store(var, znew)?;
        Ok(znew)
    }

    /// A term's weight for this pair: `exp(Y - Z) · G`, one exponential so it cannot overflow.
    fn weight(&mut self, t: &OnlineTerm, z: Option<Val>, n: NodeIndex) -> Result<Val> {
        let g = self.tree_f32(&t.factor, n)?;
        let e = match (&t.exponent, z) {
            (Some(y), Some(z)) => {
                let y = self.tree_f32(y, n)?;
                let d = self.s.sub(y, z)?;
                Some(self.s.ext(Ty::F32, glsl::EXP, &[d])?)
            }
            (Some(y), None) => {
                let y = self.tree_f32(y, n)?;
                Some(self.s.ext(Ty::F32, glsl::EXP, &[y])?)
            }
            (None, Some(z)) => {
                let nz = self.s.neg(z)?;
                Some(self.s.ext(Ty::F32, glsl::EXP, &[nz])?)
            }
            (None, None) => None,
        };
        match e {
            Some(e) => self.s.mul(g, e),
            None => Ok(g),
        }
    }

    /// `t` with the per-row maps that read this sweep's running statistics inlined, so they are
    /// computed from the running values.
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

    /// A running shift may read only plain statistics of its own sweep (a running maximum, say),
    /// whose running value is its accumulator.
    fn check_running(&self, t: &Tree, sweep: usize, n: NodeIndex) -> Result<()> {
        let mut leaves = Vec::new();
        t.leaves(&mut leaves);
        for v in leaves {
            let of_sweep = self.sweep_of.get(&v.node) == Some(&sweep);
            if of_sweep && !self.ctx.running.contains_key(&v.node) {
                return Err(SpirvError::unsupported(
                    self.graph,
                    n,
                    "an online shift that reads a running sum of its own sweep",
                ));
            }
        }
        Ok(())
    }

    /// A reduction's final value from its accumulators, once its sweep is over.
    pub(super) fn finish(&mut self, r: &ReductionPlan, accs: &Accumulators) -> Result<()> {
        let home = match (accs, &r.accumulation) {
            (Accumulators::Plain(acc), _) => self.acc_home(*acc)?,
            (
                Accumulators::Online {
                    terms: acc, seen, ..
                },
                Accumulation::Online { terms },
            ) => {
                let len = acc.first().and_then(|a| a.len);
                let seen = self.s.load(Ty::Bool, *seen)?;
                match len {
                    None => Home::Scalar(self.combine(terms, acc, None, seen, r.node)?),
                    Some(len) => {
                        let out = self.s.array_local(Ty::F32, len);
                        for t in terms {
                            if let Some(post) = &t.post {
                                self.low
                                    .hoist(&mut self.s, &mut self.ctx, post)
                                    .map_err(|e| e.at(self.graph, r.node))?;
                            }
                        }
                        let result = self.nested(
                            |s, body| s.features(len, |s, f| body(s, Some(f))),
                            |g, f| {
                                let v = g.combine(terms, acc, f, seen, r.node)?;
                                let f = f.ok_or_else(|| SpirvError::internal("no feature"))?;
                                let p = g.s.local_element(out, Ty::F32, f)?;
                                g.s.store(p, v)
                            },
                        );
                        self.low.clear_hoisted();
                        result?;
                        Home::Array {
                            var: out,
                            ty: Ty::F32,
                            len,
                        }
                    }
                }
            }
            _ => return Err(SpirvError::internal("accumulators of the wrong kind")),
        };
        self.ctx.homes.insert(r.node, home);
        Ok(())
    }

    /// A plain accumulator's value as a home.
    fn acc_home(&mut self, acc: Acc) -> Result<Home> {
        Ok(match acc.len {
            None => Home::Scalar(self.s.load(Ty::F32, acc.var)?),
            Some(len) => Home::Array {
                var: acc.var,
                ty: Ty::F32,
                len,
            },
        })
    }

    /// `Σ sign · post · acc` over the terms (at feature `f`), or 0 if no pair was kept.
    fn combine(
        &mut self,
        terms: &[OnlineTerm],
        accs: &[Acc],
        f: Option<Val>,
        seen: Val,
        n: NodeIndex,
    ) -> Result<Val> {
        let mut total = self.s.f32(0.0);
        for (t, acc) in terms.iter().zip(accs) {
            let a = match (acc.len, f) {
                (Some(_), Some(f)) => {
                    let p = self.s.local_element(acc.var, Ty::F32, f)?;
                    self.s.load(Ty::F32, p)?
                }
                _ => self.s.load(Ty::F32, acc.var)?,
            };
            let mut v = a;
            if let Some(post) = &t.post {
                let p = self
                    .low
                    .lower_as(&mut self.s, &mut self.ctx, post, f, Ty::F32)
                    .map_err(|e| e.at(self.graph, n))?;
                v = self.s.mul(v, p)?;
            }
            total = if t.sign < 0.0 {
                self.s.sub(total, v)?
            } else {
                self.s.add(total, v)?
            };
        }
        let zero = self.s.f32(0.0);
        self.s.select(seen, total, zero)
    }
}

fn expand(t: &Tree, graph: &Graph, inline: &dyn Fn(ValueRef) -> bool) -> Tree {
    let e = |x: &Tree| Box::new(expand(x, graph, inline));
    match t {
        Tree::Value(v) if inline(*v) => Tree::of_map(graph, *v, inline),
        Tree::Unary(op, a) => Tree::Unary(*op, e(a)),
        Tree::Binary(op, a, b) => Tree::Binary(*op, e(a), e(b)),
        Tree::Call(f, args) => {
            Tree::Call(*f, args.iter().map(|a| expand(a, graph, inline)).collect())
        }
        Tree::Extract(v, k) => Tree::Extract(e(v), e(k)),
        other => other.clone(),
    }
}
