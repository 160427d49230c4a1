//! The parallel template as one compute shader. One workgroup covers one (b, h, query tile);
//! one invocation computes one query row. Each invocation follows the fused plan: per-head and
//! query-side values once, then per sweep a loop over the key tiles (skipping those the mask's
//! tile rule empties, and dropping the per-pair mask where it keeps a whole tile), per key the
//! key-side and pair values and each reduction's update (online terms rescaled by
//! `exp(Z_old - Z_new)` when their running shift moves), after each sweep the finished
//! reductions and the per-row values that depend on them, and last the output row.
//!
//! Statistics and accumulators stay in the invocation's registers. The key-side values of a
//! key tile are computed once per workgroup, each invocation taking some of its keys, into
//! `Workgroup` arrays (`sweep.rs`), behind a barrier; a second barrier ends the tile before the
//! next one overwrites them. Every invocation must reach every barrier, so one past the last
//! query row computes the last row again and writes nothing. Without staging ([`Options`]),
//! every invocation reads key rows from the storage buffers where they are used.
//!
//! [`Options`]: crate::Options

use crate::error::{Result, SpirvError};
use crate::expr::{Lower, ty_of};
use crate::shader::{Shader, Ty, Val};
use crate::values::{Ctx, Tensor, storage_ty};
use attnc_ir::graph::{Graph, Op, PortType, ValueRef};
use attnc_ir::types::{Dim, FrameIndex};
use attnc_passes::fusion::ParallelKernel;
use petgraph::stable_graph::NodeIndex;
use rspirv::spirv::{BuiltIn, Word};
use std::collections::{BTreeMap, BTreeSet, HashMap};

mod online;
mod sweep;

/// The geometry of the shader: query rows per workgroup (one invocation each) and keys per
/// tile of the tile rule (and of the workgroup-memory staging, where values are staged).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub query_tile: u32,
    pub key_tile: u32,
}

/// Keys per staged tile at most: 64 keys of a bf16 K and V row of 64 features fill 32 KiB of
/// f32s; longer rows take fewer keys per tile.
const MAX_STAGED_KEYS: u32 = 64;

/// A key-side value staged in workgroup memory: its `Workgroup` array holds it for every key
/// of the tile, at `slot · len`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Staged {
    pub node: NodeIndex,
    pub var: Word,
    pub ty: Ty,
    pub len: Option<u32>,
}

/// What [`write`] built besides the module.
pub(crate) struct Written {
    pub module: rspirv::dr::Module,
    pub guards: Vec<crate::values::GuardSite>,
    /// The shape used: the key tile shrinks so that the staged values fit.
    pub shape: Shape,
    /// Bytes of workgroup memory the staged values take.
    pub shared_bytes: u32,
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
    /// The first query row of the invocation's workgroup, once the prologue ran.
    tile_start: Option<Val>,
    /// The invocation's row within the workgroup, and whether its query row exists (an
    /// invocation past the last row computes the last row again and writes nothing, so that
    /// every invocation reaches every barrier).
    local_row: Option<Val>,
    inside: Option<Val>,
    /// The key-side values read from workgroup memory; empty where nothing is staged (every
    /// invocation then reads key rows from their buffers itself).
    staged: Vec<Staged>,
}

fn vref(node: NodeIndex) -> ValueRef {
    ValueRef { node, result: 0 }
}

/// Writes the entry point `entry` of the kernel into a new module, staging key-side values in
/// at most `shared_budget` bytes of workgroup memory.
pub(crate) fn write(
    graph: &Graph,
    plan: &ParallelKernel,
    specialised: &BTreeMap<String, i64>,
    shape: Shape,
    shared_budget: u32,
    entry: &str,
) -> Result<Written> {
    let order = graph
        .topo_order()
        .ok_or_else(|| SpirvError::internal("the graph has a cycle"))?;
    let stats = attnc_passes::fusion::reductions_read(graph, &order);
    let mut s = Shader::new();
    let (ctx, globals) = bind(&mut s, graph, specialised)?;
    let (shape, wanted) = staging(graph, plan, &ctx, shape, shared_budget)?;
    let mut staged = Vec::new();
    let mut shared_bytes = 0;
    for (node, ty, len) in wanted {
        let words = shape.key_tile * len.unwrap_or(1);
        let var = s.workgroup_array(crate::values::staged_ty(ty), words);
        shared_bytes += 4 * words;
        staged.push(Staged { node, var, ty, len });
    }
    let mut g = Gen {
        s,
        ctx,
        globals,
        tile_start: None,
        local_row: None,
        inside: None,
        staged,
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
    g.body()?;
    g.s.finish_function(f, entry, shape.query_tile)?;
    let guards = std::mem::take(&mut g.ctx.guards);
    Ok(Written {
        module: g.s.module(),
        guards,
        shape,
        shared_bytes,
    })
}

/// A key-side value to stage: its node, type and vector length.
type ToStage = (NodeIndex, Ty, Option<u32>);

/// The key-side values worth staging (those read outside the key side: by pair values, the
/// mask or the reductions) and the key tile they fit in: the largest power of two up to
/// [`MAX_STAGED_KEYS`] whose staged values fit the budget.
/// Nothing is staged where not even one key fits.
fn staging(
    graph: &Graph,
    plan: &ParallelKernel,
    ctx: &Ctx<'_>,
    shape: Shape,
    budget: u32,
) -> Result<(Shape, Vec<ToStage>)> {
    let key_side: BTreeSet<NodeIndex> = plan.key_side.iter().copied().collect();
    let mut wanted = Vec::new();
    let mut words_per_key: u64 = 0;
    for &n in &plan.key_side {
        if !matches!(graph.node(n).op, Op::Load { .. } | Op::Map { .. }) {
            continue;
        }
        if graph.users(n).iter().all(|u| key_side.contains(u)) {
            continue;
        }
        let Some(PortType::Value(t)) = graph.node(n).results.first() else {
            return Err(SpirvError::internal(
                "a key-side value without a value type",
            ));
        };
        let len = ctx.vector_len(n)?;
        words_per_key += u64::from(len.unwrap_or(1));
        wanted.push((n, ty_of(t.kind), len));
    }
    if wanted.is_empty() || 4 * words_per_key > u64::from(budget) {
        return Ok((shape, Vec::new()));
    }
    let mut keys = MAX_STAGED_KEYS;
    while keys > 1 && 4 * words_per_key * u64::from(keys) > u64::from(budget) {
        keys /= 2;
    }
    Ok((
        Shape {
            key_tile: keys,
            ..shape
        },
        wanted,
    ))
}

/// Declares the buffers and the push-constant block in signature order (inputs, outputs, the
/// status words, then every dim); returns the block too (the dims are read in the prologue).
pub(crate) fn bind<'g>(
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
pub(crate) struct Globals {
    pub push_block: Option<Word>,
    pub workgroup: Word,
    pub local: Word,
}

/// Every dim as i32: specialised ones as constants, the others from the push-constant block.
pub(crate) fn read_dims(s: &mut Shader, ctx: &mut Ctx<'_>, block: Option<Word>) -> Result<()> {
    for (k, d) in ctx.graph.dims.iter().enumerate() {
        let v = match (ctx.specialised.get(&d.name), block) {
            (Some(c), _) => s.i32(*c),
            (None, Some(block)) => s.push_constant(block, k)?,
            (None, None) => {
                return Err(SpirvError::internal(
                    "a run-time dim without push constants",
                ));
            }
        };
        ctx.dims.insert(d.name.clone(), v);
    }
    Ok(())
}

impl<'g> Gen<'g> {
    /// The dims and the frame indices of this invocation.
    fn prologue(&mut self) -> Result<()> {
        read_dims(&mut self.s, &mut self.ctx, self.globals.push_block)?;
        let (wg, local) = (self.globals.workgroup, self.globals.local);
        let tile = self.s.builtin_component(wg, 0)?;
        let h = self.s.builtin_component(wg, 1)?;
        let b = self.s.builtin_component(wg, 2)?;
        let row = self.s.builtin_component(local, 0)?;
        let bq = self.s.i32(self.shape.query_tile as i64);
        let i0 = self.s.mul(tile, bq)?;
        let i = self.s.add(i0, row)?;
        let rows = self.dim_of(FrameIndex::I)?;
        let inside = self.s.lt(i, rows)?;
        let one = self.s.i32(1);
        let last = self.s.sub(rows, one)?;
        let i = self.s.select(inside, i, last)?;
        self.ctx.frame.insert(FrameIndex::B, b);
        self.ctx.frame.insert(FrameIndex::H, h);
        self.ctx.frame.insert(FrameIndex::I, i);
        self.tile_start = Some(i0);
        self.local_row = Some(row);
        self.inside = Some(inside);
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
        let inside = self
            .inside
            .ok_or_else(|| SpirvError::internal("outputs before the prologue"))?;
        self.nested(
            |s, body| s.when(inside, |s| body(s, None)),
            |g, _| {
                for &n in &plan.epilogue {
                    if matches!(g.graph.node(n).op, Op::Output { .. }) {
                        g.store_output(n)?;
                    }
                }
                Ok(())
            },
        )
    }

    /// Whether every statistic a node reads is final after sweep `s`.
    fn ready_after(&self, n: NodeIndex, s: usize) -> bool {
        self.stats.get(&n).is_none_or(|deps| {
            deps.iter()
                .all(|d| self.sweep_of.get(d).is_some_and(|k| *k <= s))
        })
    }

    /// Computes node `n` at the current position (`nodes::compute`).
    fn compute(&mut self, n: NodeIndex, copy_rows: bool) -> Result<()> {
        crate::nodes::compute(&mut self.s, &mut self.ctx, &mut self.low, n, copy_rows)
    }

    /// Runs `body` on the generator inside a structured construct (a loop, a branch) that
    /// `open` writes. The construct's helper borrows the shader while the body needs the whole
    /// generator, so the shader is moved out for the construct and lent back to the body (a
    /// placeholder stands in meanwhile); the body's first error is returned after the construct
    /// is closed.
    fn nested(
        &mut self,
        open: impl FnOnce(
            &mut Shader,
            &mut dyn FnMut(&mut Shader, Option<Val>) -> Result<()>,
        ) -> Result<()>,
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
        .chain(
            plan.sweeps
                .iter()
                .flat_map(|s| s.reductions.iter().map(|r| &r.node)),
        );
    for &n in nodes {
        if let Some(PortType::Value(t)) = graph.node(n).results.first()
            && let attnc_ir::types::Feature::Vector(d) = &t.feature
        {
            symbols(d, &mut names);
        }
    }
    names
}

pub(crate) fn symbols(d: &Dim, out: &mut BTreeSet<String>) {
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
