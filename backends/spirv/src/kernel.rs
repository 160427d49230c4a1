//! The parallel template as one compute shader. One workgroup covers one (b, h, query tile);
//! one invocation computes one query row. Each invocation follows the fused plan: per-head and
//! query-side values once, then per sweep a loop over the key tiles (skipping those the mask's
//! tile rule empties, and dropping the per-pair mask where it keeps a whole tile), per key the
//! key-side and pair values and each reduction's update (online terms rescaled by
//! `exp(Z_old - Z_new)` when their running shift moves), after each sweep the finished
//! reductions and the per-row values that depend on them, and last the output row.
//!
//! Statistics and accumulators stay in the invocation's registers; key and value rows are read
//! from their storage buffers where they are used. No workgroup memory and no barriers are
//! needed, so invocations past the last query row simply return.

use crate::error::{Result, SpirvError};
use crate::expr::{Lower, ty_of};
use crate::shader::{Cmp, Shader, Ty, Val, glsl};
use crate::tile_rule::{KernelBox, coverage_code};
use crate::values::{Ctx, Home, Tensor, storage_ty};
use attnc_ir::expr::Builtin;
use attnc_ir::graph::{Graph, LoadIndex, Op, PortType, ReduceKind, ValueRef};
use attnc_ir::types::{Dim, FrameIndex};
use attnc_passes::fusion::online::OnlineTerm;
use attnc_passes::fusion::tree::Tree;
use attnc_passes::fusion::{Accumulation, ParallelKernel, ReductionPlan};
use petgraph::stable_graph::NodeIndex;
use rspirv::spirv::{BuiltIn, Word};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The geometry of the shader: query rows per workgroup (one invocation each) and keys per
/// tile of the tile rule.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub query_tile: u32,
    pub key_tile: u32,
}

/// An accumulator: one scalar or one array of `len`.
#[derive(Clone, Copy, Debug)]
struct Acc {
    var: Word,
    len: Option<u32>,
}

/// The accumulators of one reduction in the sweep being written.
enum Accumulators {
    Plain(Acc),
    Online {
        terms: Vec<Acc>,
        /// The running shift `Z` of each term that has one.
        shifts: Vec<Option<Word>>,
        /// Whether any pair was accumulated (an empty sum is 0, as in the reference).
        seen: Word,
    },
}

pub(crate) struct Gen<'g> {
    pub s: Shader,
    pub ctx: Ctx<'g>,
    low: Lower<'g>,
    graph: &'g Graph,
    plan: &'g ParallelKernel,
    order: Vec<NodeIndex>,
    stats: BTreeMap<NodeIndex, BTreeSet<NodeIndex>>,
    sweep_of: BTreeMap<NodeIndex, usize>,
    shape: Shape,
    globals: Globals,
}

fn vref(node: NodeIndex) -> ValueRef {
    ValueRef { node, result: 0 }
}

/// Writes the entry point `entry` of the kernel into a new module; returns the shader and the
/// guards it checks.
pub(crate) fn write(
    graph: &Graph,
    plan: &ParallelKernel,
    specialised: &BTreeMap<String, i64>,
    shape: Shape,
    entry: &str,
) -> Result<(rspirv::dr::Module, Vec<crate::values::GuardSite>)> {
    let order = graph
        .topo_order()
        .ok_or_else(|| SpirvError::internal("the graph has a cycle"))?;
    let stats = attnc_passes::fusion::reductions_read(graph, &order);
    let mut s = Shader::new();
    let (ctx, globals) = bind(&mut s, graph, specialised)?;
    let mut g = Gen {
        s,
        ctx,
        globals,
        low: Lower::new(graph),
        graph,
        plan,
        order,
        stats,
        sweep_of: plan.sweep_of(),
        shape,
    };
    let f = g.s.begin_function()?;
    g.prologue()?;
    let rows = g.dim_of(FrameIndex::I)?;
    let i = g.ctx.frame[&FrameIndex::I];
    let inside = g.s.lt(i, rows)?;
    g.nested(|s, body| s.when(inside, |s| body(s, None)), |g, _| g.body())?;
    g.s.finish_function(f, entry, shape.query_tile)?;
    let guards = std::mem::take(&mut g.ctx.guards);
    Ok((g.s.module(), guards))
}

/// Declares the buffers and the push-constant block in signature order (inputs, outputs, the
/// status words, then every dim); returns the block too (the dims are read in the prologue).
fn bind<'g>(
    s: &mut Shader,
    graph: &'g Graph,
    specialised: &BTreeMap<String, i64>,
) -> Result<(Ctx<'g>, Globals)> {
    let mut tensors = HashMap::new();
    for (binding, (n, name, ty)) in graph
        .inputs()
        .into_iter()
        .chain(graph.outputs())
        .enumerate()
    {
        let word = storage_ty(ty.dtype, name).map_err(|e| e.at(graph, n))?;
        let var = s.buffer(word, binding as u32);
        tensors.insert(
            n,
            Tensor {
                var,
                element: ty.dtype,
                name: name.to_string(),
            },
        );
    }
    let status = s.buffer(Ty::I32, tensors.len() as u32);
    let block = s.push_constants(graph.dims.len());
    let workgroup = s.builtin_uvec3(BuiltIn::WorkgroupId);
    let local = s.builtin_uvec3(BuiltIn::LocalInvocationId);
    let ctx = Ctx {
        graph,
        homes: HashMap::new(),
        running: HashMap::new(),
        tensors,
        status,
        dims: BTreeMap::new(),
        specialised: specialised.clone(),
        frame: BTreeMap::new(),
        guards: Vec::new(),
    };
    Ok((
        ctx,
        Globals {
            push_block: block,
            workgroup,
            local,
        },
    ))
}

/// Module-scope variables the entry function reads.
struct Globals {
    push_block: Option<Word>,
    workgroup: Word,
    local: Word,
}

impl<'g> Gen<'g> {
    /// The dims and the frame indices of this invocation.
    fn prologue(&mut self) -> Result<()> {
        let block = self.globals.push_block;
        for (k, d) in self.graph.dims.iter().enumerate() {
            let v = match (self.ctx.specialised.get(&d.name), block) {
                (Some(c), _) => self.s.i32(*c),
                (None, Some(block)) => self.s.push_constant(block, k)?,
                (None, None) => {
                    return Err(SpirvError::internal("a run-time dim without push constants"));
                }
            };
            self.ctx.dims.insert(d.name.clone(), v);
        }
        let (wg, local) = (self.globals.workgroup, self.globals.local);
        let tile = self.s.builtin_component(wg, 0)?;
        let h = self.s.builtin_component(wg, 1)?;
        let b = self.s.builtin_component(wg, 2)?;
        let row = self.s.builtin_component(local, 0)?;
        let bq = self.s.i32(self.shape.query_tile as i64);
        let i0 = self.s.mul(tile, bq)?;
        let i = self.s.add(i0, row)?;
        self.ctx.frame.insert(FrameIndex::B, b);
        self.ctx.frame.insert(FrameIndex::H, h);
        self.ctx.frame.insert(FrameIndex::I, i);
        self.ctx.frame.insert(QUERY_TILE_START, i0);
        Ok(())
    }

    /// The extent of a frame index as i32 (1 where the kernel does not have it).
    fn dim_of(&mut self, fi: FrameIndex) -> Result<Val> {
        match self.graph.extents.get(&fi) {
            Some(d) => self.ctx.dim_value(&mut self.s, d),
            None => Ok(self.s.i32(1)),
        }
    }

    fn body(&mut self) -> Result<()> {
        let plan = self.plan;
        for &n in &plan.per_head {
            self.compute(n, true)?;
        }
        for &n in &plan.query_side {
            self.compute(n, true)?;
        }
        let mut done: BTreeSet<NodeIndex> = BTreeSet::new();
        for (k, sweep) in plan.sweeps.iter().enumerate() {
            let accs = self.init(&sweep.reductions)?;
            self.sweep(k, &sweep.reductions, &accs)?;
            self.ctx.running.clear();
            let mut ready: Vec<NodeIndex> = sweep.reductions.iter().map(|r| r.node).collect();
            for &n in &plan.epilogue {
                if matches!(self.graph.node(n).op, Op::Map { .. })
                    && !done.contains(&n)
                    && self.ready_after(n, k)
                {
                    ready.push(n);
                }
            }
            let order = self.order.clone();
            for &n in order.iter().filter(|n| ready.contains(n)) {
                match sweep.reductions.iter().position(|r| r.node == n) {
                    Some(r) => self.finish(&sweep.reductions[r], &accs[r])?,
                    None => self.compute(n, true)?,
                }
                done.insert(n);
            }
        }
        for &n in &plan.epilogue {
            if matches!(self.graph.node(n).op, Op::Map { .. }) && !done.contains(&n) {
                self.compute(n, true)?;
            }
        }
        for &n in &plan.epilogue {
            if matches!(self.graph.node(n).op, Op::Output { .. }) {
                self.store_output(n)?;
            }
        }
        Ok(())
    }

    /// Whether every statistic a node reads is final after sweep `s`.
    fn ready_after(&self, n: NodeIndex, s: usize) -> bool {
        self.stats.get(&n).is_none_or(|deps| {
            deps.iter()
                .all(|d| self.sweep_of.get(d).is_some_and(|k| *k <= s))
        })
    }

    /// Computes node `n` at the current position and records where its value is. Rows of
    /// inputs read once per invocation (`copy_rows`) are copied into registers; key rows are
    /// read in place.
    fn compute(&mut self, n: NodeIndex, copy_rows: bool) -> Result<()> {
        let graph = self.graph;
        let home = match &graph.node(n).op {
            Op::Input { .. } | Op::Output { .. } | Op::RowReduce { .. } | Op::Aggregate => {
                return Ok(());
            }
            Op::Load { indices } => self.load(n, indices, copy_rows)?,
            Op::Map { .. } | Op::Mask { .. } => {
                let tree = Tree::of_map(graph, vref(n), &|_| false);
                self.evaluate(n, &tree)?
            }
            Op::Score => {
                let ops = graph.operands(n);
                let (Some((q, _)), Some((k, _))) = (ops.first(), ops.get(1)) else {
                    return Err(SpirvError::internal("a score without two operands"));
                };
                let tree = Tree::Call(Builtin::Dot, vec![Tree::Value(*q), Tree::Value(*k)]);
                self.evaluate(n, &tree)?
            }
            Op::Recurrence { .. } => {
                return Err(SpirvError::unsupported(
                    graph,
                    n,
                    "a recurrence inside a parallel kernel",
                ));
            }
        };
        self.ctx.homes.insert(n, home);
        Ok(())
    }

    /// The value of `tree` as node `n`'s: a scalar, or an array over its feature axis.
    fn evaluate(&mut self, n: NodeIndex, tree: &Tree) -> Result<Home> {
        let kind = match self.graph.node(n).results.first() {
            Some(PortType::Value(t)) => t.kind,
            _ => return Err(SpirvError::internal("a value node without a value type")),
        };
        let ty = ty_of(kind);
        let Some(len) = self.ctx.vector_len(n)? else {
            let v = self
                .low
                .lower_as(&mut self.s, &mut self.ctx, tree, None, ty)
                .map_err(|e| e.at(self.graph, n))?;
            return Ok(Home::Scalar(v));
        };
        let var = self.s.array_local(ty, len);
        self.low
            .hoist(&mut self.s, &mut self.ctx, tree)
            .map_err(|e| e.at(self.graph, n))?;
        let (low, ctx) = (&mut self.low, &mut self.ctx);
        let r = self.s.features(len, |s, f| {
            let v = low.lower_as(s, ctx, tree, Some(f), ty)?;
            let p = s.local_element(var, ty, f)?;
            s.store(p, v)
        });
        self.low.clear_hoisted();
        r.map_err(|e| e.at(self.graph, n))?;
        Ok(Home::Array { var, ty, len })
    }

    /// A load: the flat offset of the element (or row) it reads, computed indices checked.
    fn load(&mut self, n: NodeIndex, indices: &[LoadIndex], copy_rows: bool) -> Result<Home> {
        let graph = self.graph;
        let ops: Vec<ValueRef> = graph.operands(n).iter().map(|(v, _)| *v).collect();
        let input = ops
            .first()
            .ok_or_else(|| SpirvError::internal("a load without its tensor"))?
            .node;
        let Op::Input { name, ty, .. } = &graph.node(input).op else {
            return Err(SpirvError::internal("a load of a non-input"));
        };
        let mut offset = self.s.i32(0);
        for (axis, ix) in indices.iter().enumerate() {
            let size = self.ctx.dim_value(&mut self.s, &ty.dims[axis])?;
            let c = match ix {
                LoadIndex::Frame(fi) => *self.ctx.frame.get(fi).ok_or_else(|| {
                    SpirvError::internal(format!("index `{}` read outside its loop", fi.name()))
                })?,
                LoadIndex::Operand(k) => {
                    let v = ops
                        .get(*k as usize)
                        .ok_or_else(|| SpirvError::internal("a load index with no operand"))?;
                    let idx = crate::expr::Leaves::value(&mut self.ctx, &mut self.s, *v, None)?;
                    let idx = self.s.to_i32(idx)?;
                    let what =
                        format!("index {{value}} is outside axis {axis} of `{name}` (size {{bound}})");
                    self.ctx.guard(&mut self.s, n, what, idx, size)?
                }
            };
            let scaled = self.s.mul(offset, size)?;
            offset = self.s.add(scaled, c)?;
        }
        let rank = ty.dims.len();
        if indices.len() == rank {
            return Ok(Home::Scalar(self.ctx.read(&mut self.s, input, offset)?));
        }
        let last = &ty.dims[rank - 1];
        let len = match self.ctx.vector_len(n)? {
            Some(l) => l,
            None => {
                return Err(SpirvError::unsupported(
                    graph,
                    n,
                    format!("a row of `{name}` over the run-time dim `{last}`"),
                ));
            }
        };
        let row_len = self.s.i32(len as i64);
        let base = self.s.mul(offset, row_len)?;
        if !copy_rows {
            return Ok(Home::Row { input, base, len });
        }
        let elem = if ty.dtype.is_float() { Ty::F32 } else { Ty::I32 };
        let var = self.s.array_local(elem, len);
        let ctx = &self.ctx;
        self.s.features(len, |s, f| {
            let at = s.add(base, f)?;
            let x = ctx.read(s, input, at)?;
            let p = s.local_element(var, elem, f)?;
            s.store(p, x)
        })?;
        Ok(Home::Array {
            var,
            ty: elem,
            len,
        })
    }

    /// The accumulators of a sweep's reductions, set to their starting values.
    fn init(&mut self, reductions: &[ReductionPlan]) -> Result<Vec<Accumulators>> {
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

    fn for_each(
        &mut self,
        n: u32,
        body: impl FnMut(&mut Shader, Val) -> Result<()>,
    ) -> Result<()> {
        self.s.features(n, body)
    }

    /// One sweep: every key tile the tile rule keeps, every key of it, every update.
    fn sweep(&mut self, k: usize, reductions: &[ReductionPlan], accs: &[Accumulators]) -> Result<()> {
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

    /// Runs `body` on the generator inside a structured construct the shader opens.
    fn nested(
        &mut self,
        open: impl FnOnce(&mut Shader, &mut dyn FnMut(&mut Shader, Option<Val>) -> Result<()>) -> Result<()>,
        mut body: impl FnMut(&mut Self, Option<Val>) -> Result<()>,
    ) -> Result<()> {
        let mut result = Ok(());
        let mut s = std::mem::replace(&mut self.s, Shader::new());
        let r = open(&mut s, &mut |s, v| {
            std::mem::swap(s, &mut self.s);
            if result.is_ok() {
                result = body(self, v);
            }
            std::mem::swap(s, &mut self.s);
            Ok(())
        });
        self.s = s;
        r?;
        result
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
        let visit = self.s.cmp(Cmp::Ne, code, zero)?;
        self.nested(
            |s, body| s.when(visit, |s| body(s, None)),
            |g, _| {
                g.nested(
                    |s, body| s.for_range(j0, end, |s, j| body(s, Some(j))),
                    |g, j| {
                        let j = j.ok_or_else(|| SpirvError::internal("a key loop without j"))?;
                        g.pair(k, reductions, accs, j, code)
                    },
                )
            },
        )
    }

    /// The coverage code of the current query tile against keys `[j0, end)`.
    fn coverage(&mut self, j0: Val, end: Val) -> Result<Val> {
        let Some(mask) = self.plan.mask else {
            return Ok(self.s.i32(2));
        };
        let tree = attnc_passes::fusion::tile_rule::mask_tree(self.graph, mask);
        let rows = self.dim_of(FrameIndex::I)?;
        let bq = self.s.i32(self.shape.query_tile as i64);
        let i0 = self.ctx.frame[&QUERY_TILE_START];
        let i_end = self.s.add(i0, bq)?;
        let i_end = self.s.ext(Ty::I32, glsl::SMIN, &[i_end, rows])?;
        let one = self.s.i32(1);
        let i_last = self.s.sub(i_end, one)?;
        let j_last = self.s.sub(end, one)?;
        let mut ranges = BTreeMap::new();
        let as_f = |s: &mut Shader, v: Val| s.to_f32(v);
        ranges.insert(FrameIndex::I, (as_f(&mut self.s, i0)?, as_f(&mut self.s, i_last)?));
        ranges.insert(FrameIndex::J, (as_f(&mut self.s, j0)?, as_f(&mut self.s, j_last)?));
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

    /// One key j: key-side and pair values, the mask, and every update of the sweep.
    fn pair(
        &mut self,
        k: usize,
        reductions: &[ReductionPlan],
        accs: &[Accumulators],
        j: Val,
        code: Val,
    ) -> Result<()> {
        let saved = self.ctx.homes.clone();
        self.ctx.frame.insert(FrameIndex::J, j);
        let plan = self.plan;
        for &n in &plan.key_side {
            self.compute(n, false)?;
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
                let m = g.s.to_bool(m)?;
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

    /// The updates of one kept pair: plain reductions first (online shifts read their running
    /// values), then the online terms; a weight several terms share is computed once.
    fn updates(&mut self, k: usize, reductions: &[ReductionPlan], accs: &[Accumulators]) -> Result<()> {
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
                let x = self.tree_f32(argument, r.node)?;
                self.accumulate(r, *acc, x)?;
            }
        }
        let mut weights: Vec<(&OnlineTerm, Val)> = Vec::new();
        for (r, a) in reductions.iter().zip(accs) {
            let (Accumulation::Online { terms }, Accumulators::Online { terms: acc, shifts, seen }) =
                (&r.accumulation, a)
            else {
                continue;
            };
            for (t, (acc, shift)) in terms.iter().zip(acc.iter().zip(shifts)) {
                let z = match (&t.shift, shift) {
                    (Some(z), Some(var)) => Some(self.rescale(k, z, *var, *acc, r.node)?),
                    _ => None,
                };
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
                    let v = s.to_f32(v)?;
                    let p = s.local_element(acc.var, Ty::F32, f)?;
                    let a = s.load(Ty::F32, p)?;
                    let next = s.ext(Ty::F32, glsl::FMA, &[x, v, a])?;
                    s.store(p, next)
                })
            }
            (Some(_), None) => Err(SpirvError::unsupported(
                self.graph,
                r.node,
                "a vector-valued reduction over j that is not an aggregation",
            )),
        }
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
    fn finish(&mut self, r: &ReductionPlan, accs: &Accumulators) -> Result<()> {
        let home = match (accs, &r.accumulation) {
            (Accumulators::Plain(acc), _) => self.acc_home(*acc)?,
            (Accumulators::Online { terms: acc, seen, .. }, Accumulation::Online { terms }) => {
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

    /// Writes an output's row (or scalar) at (b, h, i) from its value.
    fn store_output(&mut self, n: NodeIndex) -> Result<()> {
        let graph = self.graph;
        let Op::Output { name, ty, axes } = &graph.node(n).op else {
            return Ok(());
        };
        if !axes.contains(&FrameIndex::I) {
            return Err(SpirvError::unsupported(
                graph,
                n,
                format!("output `{name}` is not indexed by the query position i"),
            ));
        }
        let value = graph
            .operands(n)
            .first()
            .map(|(v, _)| *v)
            .ok_or_else(|| SpirvError::internal("an output without a value"))?;
        let mut offset = self.s.i32(0);
        for (axis, fi) in axes.iter().enumerate() {
            let size = self.ctx.dim_value(&mut self.s, &ty.dims[axis])?;
            let c = *self.ctx.frame.get(fi).ok_or_else(|| {
                SpirvError::unsupported(
                    graph,
                    n,
                    format!("output `{name}` is indexed by `{}`", fi.name()),
                )
            })?;
            let scaled = self.s.mul(offset, size)?;
            offset = self.s.add(scaled, c)?;
        }
        let tensor = self
            .ctx
            .tensors
            .get(&n)
            .ok_or_else(|| SpirvError::internal("an output without a buffer"))?;
        let tensor = Tensor {
            var: tensor.var,
            element: tensor.element,
            name: tensor.name.clone(),
        };
        match self.ctx.vector_len(value.node)? {
            None => {
                let v = crate::expr::Leaves::value(&mut self.ctx, &mut self.s, value, None)?;
                self.ctx.write(&mut self.s, &tensor, offset, v)
            }
            Some(len) => {
                if axes.len() + 1 != ty.dims.len() {
                    return Err(SpirvError::internal("an output row of the wrong rank"));
                }
                let row = self.s.i32(len as i64);
                let base = self.s.mul(offset, row)?;
                let ctx = &mut self.ctx;
                self.s.features(len, |s, f| {
                    let v = crate::expr::Leaves::value(ctx, s, value, Some(f))?;
                    let at = s.add(base, f)?;
                    ctx.write(s, &tensor, at, v)
                })
            }
        }
    }
}

/// A key for the first query row of the invocation's tile among the frame values (no frame
/// index is used for it: T never occurs in a parallel kernel).
const QUERY_TILE_START: FrameIndex = FrameIndex::T;

fn expand(t: &Tree, graph: &Graph, inline: &dyn Fn(ValueRef) -> bool) -> Tree {
    let e = |x: &Tree| Box::new(expand(x, graph, inline));
    match t {
        Tree::Value(v) if inline(*v) => Tree::of_map(graph, *v, inline),
        Tree::Unary(op, a) => Tree::Unary(*op, e(a)),
        Tree::Binary(op, a, b) => Tree::Binary(*op, e(a), e(b)),
        Tree::Call(f, args) => Tree::Call(*f, args.iter().map(|a| expand(a, graph, inline)).collect()),
        Tree::Extract(v, k) => Tree::Extract(e(v), e(k)),
        other => other.clone(),
    }
}

/// The feature dims a kernel must be specialised for: the lengths of every vector it keeps.
pub(crate) fn vector_dims(graph: &Graph, plan: &ParallelKernel) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let nodes = plan
        .per_head
        .iter()
        .chain(&plan.query_side)
        .chain(&plan.key_side)
        .chain(&plan.pair)
        .chain(&plan.absorbed)
        .chain(&plan.epilogue)
        .chain(plan.sweeps.iter().flat_map(|s| s.reductions.iter().map(|r| &r.node)));
    for &n in nodes {
        if let Some(PortType::Value(t)) = graph.node(n).results.first()
            && let attnc_ir::types::Feature::Vector(d) = &t.feature
        {
            symbols(d, &mut names);
        }
    }
    names
}

fn symbols(d: &Dim, out: &mut BTreeSet<String>) {
    match d {
        Dim::Sym(s) => {
            out.insert(s.clone());
        }
        Dim::Const(_) => {}
        Dim::Add(a, b) | Dim::Sub(a, b) | Dim::Mul(a, b) | Dim::FloorDiv(a, b) => {
            symbols(a, out);
            symbols(b, out);
        }
    }
}
