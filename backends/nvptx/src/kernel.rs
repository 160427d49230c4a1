//! The parallel template as one GPU kernel: a block per (query tile, h, b), whose warps own 16
//! query rows each.
//!
//! The kernel follows the fused plan: per-head values in registers; the query-side values into
//! shared memory (row by row, over all threads), with the score's query fragments kept in
//! registers when the tiling chose so; then each sweep over the key tiles (`sweep.rs`); after
//! each sweep, the row statistics and the epilogue values that now have their inputs, in shared
//! memory; last, the outputs, stored row by row so consecutive threads write consecutive
//! elements. Values that are not contractions or online statistics are computed by the same
//! expression lowering as every back end, at positions this file defines.

use crate::NvptxError;
use crate::classify::{Home, Layout, Region};
use crate::leaves::{At, Ctx, Here};
use crate::mma::{Kind, Lane};
use crate::sweep::Sweeper;
use attnc_ir::graph::{Graph, Op, ValueRef};
use attnc_ir::types::{Dim, FrameIndex};
use attnc_lower::{Cmp, Emitter, ExprLowering, FastMath, PtxMath, Ty, Val};
use attnc_passes::fusion::ParallelKernel;
use attnc_passes::fusion::tree::Tree;
use petgraph::stable_graph::NodeIndex;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// The main kernel's guard codes start at 1.
const GUARD_BASE: u32 = 0;

/// The fixed shape of the kernel, as the tiling chose it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub bq: usize,
    pub bk: usize,
    pub warps: usize,
    pub stages: usize,
    pub query_in_registers: bool,
    pub score: Kind,
    pub value: Kind,
    /// Score products on `wgmma` (sm_90a): each warpgroup of four warps multiplies its 64
    /// query rows by the key tile, both operands read from shared memory through descriptors.
    pub warpgroup: bool,
    /// The aggregations' products on `wgmma` too: the weights as the A operand from
    /// registers, the value rows through a descriptor (only with `warpgroup`).
    pub warpgroup_values: bool,
}

impl Shape {
    pub fn threads(&self) -> usize {
        self.warps * 32
    }
}

/// The kernel parameters, in order: inputs, outputs, the workspace, the status word, the dims.
pub(crate) struct Params {
    pub text: Vec<String>,
}

pub(crate) fn params(graph: &Graph, workspace: bool) -> Params {
    let mut text = Vec::new();
    for (_, name, ty) in graph.inputs() {
        text.push(format!("%in_{name}: memref<{}>", Ty::of_element(ty.dtype)));
    }
    for (_, name, ty) in graph.outputs() {
        text.push(format!("%out_{name}: memref<{}>", Ty::of_element(ty.dtype)));
    }
    if workspace {
        text.push("%ws: memref<f32>".into());
    }
    text.push("%status: memref<i32>".into());
    for d in &graph.dims {
        text.push(format!("%d_{}: i64", d.name));
    }
    Params { text }
}

/// The number of elements of a tensor, as index.
fn elements(e: &mut Emitter, ctx_dims: &BTreeMap<String, (Val, Val)>, dims: &[Dim]) -> Val {
    let mut n = e.index(1);
    for d in dims {
        let v = dim_value(e, ctx_dims, d);
        n = e.mul(&n, &v);
    }
    n
}

pub(crate) fn dim_value(e: &mut Emitter, dims: &BTreeMap<String, (Val, Val)>, d: &Dim) -> Val {
    match d {
        Dim::Sym(s) => match dims.get(s) {
            Some((i, _)) => i.clone(),
            None => e.index(0),
        },
        Dim::Const(c) => e.index(*c),
        Dim::Add(a, b) | Dim::Sub(a, b) | Dim::Mul(a, b) | Dim::FloorDiv(a, b) => {
            let (x, y) = (dim_value(e, dims, a), dim_value(e, dims, b));
            match d {
                Dim::Add(..) => e.add(&x, &y),
                Dim::Sub(..) => e.sub(&x, &y),
                Dim::Mul(..) => e.mul(&x, &y),
                _ => e.arith(attnc_lower::Arith::FloorDiv, &x, &y),
            }
        }
    }
}

/// The kernel's parameters as SSA values: dims by name (index and i32 forms), input buffers
/// by node, output buffers by name, the workspace (if any) and the status buffer.
pub(crate) type BoundParams = (
    BTreeMap<String, (Val, Val)>,
    BTreeMap<NodeIndex, Val>,
    BTreeMap<String, Val>,
    Option<Val>,
    Val,
);

/// Binds the dims (constants where specialised), the input, output and status buffers.
pub(crate) fn bind_params(
    e: &mut Emitter,
    graph: &Graph,
    specialised: &BTreeMap<String, i64>,
    workspace: Option<&Dim>,
) -> BoundParams {
    let mut dims = BTreeMap::new();
    for d in &graph.dims {
        let (i, i32v) = match specialised.get(&d.name) {
            Some(v) => (e.index(*v), e.i32(*v)),
            None => {
                let p = Emitter::named(&format!("%d_{}", d.name), Ty::I64);
                (e.cast(&p, &Ty::Index), e.cast(&p, &Ty::I32))
            }
        };
        dims.insert(d.name.clone(), (i, i32v));
    }
    let mut inputs = BTreeMap::new();
    for (n, name, ty) in graph.inputs() {
        let len = elements(e, &dims, &ty.dims);
        let p = Emitter::named(
            &format!("%in_{name}"),
            Ty::MemRef(
                vec![],
                Box::new(Ty::of_element(ty.dtype)),
                attnc_lower::Space::Default,
            ),
        );
        inputs.insert(n, e.buffer_of(&p, &len));
    }
    let mut outputs = BTreeMap::new();
    for (_, name, ty) in graph.outputs() {
        let len = elements(e, &dims, &ty.dims);
        let p = Emitter::named(
            &format!("%out_{name}"),
            Ty::MemRef(
                vec![],
                Box::new(Ty::of_element(ty.dtype)),
                attnc_lower::Space::Default,
            ),
        );
        outputs.insert(name.to_string(), e.buffer_of(&p, &len));
    }
    let ws = workspace.map(|len| {
        let n = dim_value(e, &dims, len);
        let p = Emitter::named(
            "%ws",
            Ty::MemRef(vec![], Box::new(Ty::F32), attnc_lower::Space::Default),
        );
        e.buffer_of(&p, &n)
    });
    let four = e.index(attnc_kernel_abi::STATUS_WORDS as i64);
    let sp = Emitter::named(
        "%status",
        Ty::MemRef(vec![], Box::new(Ty::I32), attnc_lower::Space::Default),
    );
    let status = e.buffer_of(&sp, &four);
    (dims, inputs, outputs, ws, status)
}

/// The extent of a frame index, as index (1 when the kernel does not use it).
pub(crate) fn extent(
    e: &mut Emitter,
    graph: &Graph,
    dims: &BTreeMap<String, (Val, Val)>,
    fi: FrameIndex,
) -> Val {
    match graph.extents.get(&fi) {
        Some(d) => dim_value(e, dims, d),
        None => e.index(1),
    }
}

/// Element offsets of each workspace slot for (b, h): slot k holds B * H * len_k values after
/// the slots before it.
pub(crate) fn slot_bases(
    e: &mut Emitter,
    graph: &Graph,
    layout: &Layout,
    dims: &BTreeMap<String, (Val, Val)>,
    b: &Val,
    h: &Val,
) -> Vec<Val> {
    let nb = extent(e, graph, dims, FrameIndex::B);
    let nh = extent(e, graph, dims, FrameIndex::H);
    let slices = e.mul(&nb, &nh);
    let bh = e.mul(b, &nh);
    let slice = e.add(&bh, h);
    let mut start = e.index(0);
    let mut out = Vec::new();
    for s in &layout.slots {
        let len = dim_value(e, dims, &s.len);
        let within = e.mul(&slice, &len);
        out.push(e.add(&start, &within));
        let all = e.mul(&slices, &len);
        start = e.add(&start, &all);
    }
    out
}

/// The workspace's length: the sum over slots of B * H * len.
pub(crate) fn workspace_len(graph: &Graph, layout: &Layout) -> Option<Dim> {
    let ext = |fi| graph.extents.get(&fi).cloned().unwrap_or(Dim::Const(1));
    let slices = Dim::Mul(Box::new(ext(FrameIndex::B)), Box::new(ext(FrameIndex::H)));
    layout
        .slots
        .iter()
        .map(|s| Dim::Mul(Box::new(slices.clone()), Box::new(s.len.clone())))
        .reduce(|a, b| Dim::Add(Box::new(a), Box::new(b)))
}

/// Per-head values in registers, in topological order (each thread computes them: they are
/// uniform over the block).
pub(crate) fn head_values(
    e: &mut Emitter,
    ctx: &Ctx<'_>,
    plan: &ParallelKernel,
    order: &[NodeIndex],
) -> Result<BTreeMap<NodeIndex, Val>, NvptxError> {
    let mut local = BTreeMap::new();
    for &n in order.iter().filter(|n| plan.per_head.contains(n)) {
        if ctx.layout.home(n) != Some(Home::HeadInline) {
            continue;
        }
        let v = value_at(e, ctx, n, At::Head, &local, None)?;
        local.insert(n, v);
    }
    Ok(local)
}

/// A node's value at a position, computed from its definition (loads read memory).
pub(crate) fn value_at(
    e: &mut Emitter,
    ctx: &Ctx<'_>,
    n: NodeIndex,
    at: At,
    local: &BTreeMap<NodeIndex, Val>,
    feature: Option<&Val>,
) -> Result<Val, NvptxError> {
    let graph = ctx.graph;
    let mut low = ExprLowering::new(graph, &PtxMath);
    let mut here = Here { ctx, at, local };
    match &graph.node(n).op {
        Op::Load { .. } => ctx.load(e, &mut low, &mut here, n, feature),
        Op::Map { .. } | Op::Mask { .. } => {
            let tree = Tree::of_map(graph, ValueRef { node: n, result: 0 }, &|_| false);
            let want = attnc_lower::expr::ty_of(attnc_lower::expr::kind_of(graph, &tree));
            let v = low
                .lower(e, &mut here, &tree, feature)
                .map_err(|err| NvptxError::lowering(graph, n, err))?;
            Ok(e.cast(&v, &want))
        }
        other => Err(NvptxError::internal(
            graph,
            n,
            format!("a {} computed element by element", other.mnemonic()),
        )),
    }
}

/// Fills a per-row buffer with a node's values over `rows` rows of the block: every thread
/// takes (row, feature) positions in turn, so consecutive threads touch consecutive elements.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fill_rows(
    e: &mut Emitter,
    ctx: &Ctx<'_>,
    n: NodeIndex,
    buf: usize,
    rows: usize,
    position: &dyn Fn(&mut Emitter, &Val) -> At,
    tid: &Val,
    threads: usize,
) -> Result<(), NvptxError> {
    let s = &ctx.layout.shared[buf];
    let (len, elem) = (s.len, s.elem.clone());
    let total = rows * len;
    let trips = total.div_ceil(threads);
    let lo = e.index(0);
    let hi = e.index(trips as i64);
    let one = e.index(1);
    let it = e.for_loop(&lo, &hi, &one);
    let th = e.index(threads as i64);
    let base = e.mul(&it, &th);
    let k = e.add(&base, tid);
    let tot = e.index(total as i64);
    let inside = e.cmp(Cmp::Lt, &k, &tot);
    e.if_then(&inside);
    let l = e.index(len as i64);
    let row = e.div(&k, &l);
    let f = e.arith(attnc_lower::Arith::Rem, &k, &l);
    let at = position(e, &row);
    let local = BTreeMap::new();
    let v = value_at(e, ctx, n, at, &local, Some(&f))?;
    let v = e.cast(&v, &elem);
    let idx = ctx.shared_at(e, buf, None, &row, &f);
    e.store(&v, &ctx.views[buf], &idx);
    e.end();
    e.end();
    Ok(())
}

/// A query-row position: row `row` of the block, i clamped into the sequence so padding rows
/// read valid data.
pub(crate) fn query_at(e: &mut Emitter, q0: &Val, last_i: &Val, row: &Val) -> At {
    let i = e.add(q0, row);
    let i = e.min(&i, last_i);
    At::Query {
        row: row.clone(),
        i,
    }
}

/// Everything the main kernel's body needs while it is written.
pub(crate) struct Body<'a, 'c> {
    pub ctx: &'c Ctx<'a>,
    pub plan: &'c ParallelKernel,
    pub shape: Shape,
    pub order: Vec<NodeIndex>,
    pub tid: Val,
    pub lane: Lane,
    pub q0: Val,
    pub last_i: Val,
    pub n_i: Val,
}

/// What every kernel function starts with: the graph's node order, an emitter with the GPU
/// fast-math policy (contraction, approximate division, no reassociation), and its parameters.
pub(crate) fn start_kernel(
    graph: &Graph,
    layout: &Layout,
) -> Result<(Vec<NodeIndex>, Emitter, BoundParams), NvptxError> {
    let order = graph.topo_order().ok_or_else(|| NvptxError::Internal {
        message: "the graph has a cycle".into(),
        span: None,
    })?;
    let mut e = Emitter::new(
        2,
        FastMath {
            contract: true,
            reassoc: false,
            approx_div: true,
        },
    );
    let ws_len = workspace_len(graph, layout);
    let params = bind_params(&mut e, graph, &layout.specialised, ws_len.as_ref());
    Ok((order, e, params))
}

/// Writes the main kernel's function.
pub(crate) fn write_main(
    graph: &Graph,
    plan: &ParallelKernel,
    layout: Layout,
    shape: Shape,
    name: &str,
) -> Result<(String, Vec<crate::leaves::GuardSite>), NvptxError> {
    let (order, mut e, (dims, inputs, _outputs, ws, status)) = start_kernel(graph, &layout)?;
    let bz = e.op(Ty::Index, "gpu.block_id z");
    let by = e.op(Ty::Index, "gpu.block_id y");
    let bx = e.op(Ty::Index, "gpu.block_id x");
    let tid = e.op(Ty::Index, "gpu.thread_id x");
    let zero = e.index(0);
    let (b, h) = (
        if Layout::has_index(graph, FrameIndex::B) {
            bz
        } else {
            zero.clone()
        },
        if Layout::has_index(graph, FrameIndex::H) {
            by
        } else {
            zero.clone()
        },
    );
    let bq = e.index(shape.bq as i64);
    let q0 = e.mul(&bx, &bq);
    let thirty_two = e.index(32);
    let four = e.index(4);
    let sixteen = e.index(16);
    let warp = e.div(&tid, &thirty_two);
    let lane = e.arith(attnc_lower::Arith::Rem, &tid, &thirty_two);
    let g = e.div(&lane, &four);
    let t = e.arith(attnc_lower::Arith::Rem, &lane, &four);
    let row0 = e.mul(&warp, &sixteen);
    // Shared memory: one dynamic buffer, carved into views.
    let smem = e.op(
        Ty::MemRef(vec![None], Box::new(Ty::I8), attnc_lower::Space::Workgroup),
        "gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>",
    );
    let mut views = Vec::new();
    for s in &layout.shared {
        e.line(&format!(
            "// shared {}: {} x {} {:?} x {} copies at byte {}",
            s.name, s.rows, s.stride, s.elem, s.copies, s.offset
        ));
        let off = e.index(s.offset as i64);
        views.push(e.view(&smem, &off, s.rows * s.stride * s.copies, s.elem.clone()));
    }
    zero_shared(&mut e, &smem, layout.shared_bytes, &tid, shape.threads());
    let tmaps = layout.tma.as_ref().map(|t| {
        // The zeroes were written through the generic proxy, the tiles come through the async
        // one: ordered by a proxy fence before the barrier.
        e.line("nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}");
        let z = e.index(0);
        let first = e.cmp(Cmp::Eq, &tid, &z);
        e.if_then(&first);
        for s in 0..shape.stages {
            let at = e.index(s as i64);
            let bar = crate::tma::shared_address(&mut e, &views[t.barriers], &at);
            crate::tma::init_barrier(&mut e, &bar);
        }
        crate::tma::fence_barrier_init(&mut e);
        e.end();
        Emitter::named(
            "%tmaps",
            Ty::MemRef(vec![], Box::new(Ty::I64), attnc_lower::Space::Default),
        )
    });
    e.line("gpu.barrier");
    let mut ctx = Ctx {
        graph,
        layout,
        views,
        inputs,
        workspace: ws,
        status,
        tmaps,
        dims,
        b: b.clone(),
        h: h.clone(),
        head: BTreeMap::new(),
        slot_base: Vec::new(),
        guards: RefCell::new(Vec::new()),
        guard_base: GUARD_BASE,
        zero: zero.clone(),
    };
    ctx.slot_base = slot_bases(&mut e, graph, &ctx.layout, &ctx.dims, &b, &h);
    ctx.head = head_values(&mut e, &ctx, plan, &order)?;
    let n_i = extent(&mut e, graph, &ctx.dims, FrameIndex::I);
    let one = e.index(1);
    let last_i = e.sub(&n_i, &one);
    let body = Body {
        ctx: &ctx,
        plan,
        shape,
        order: order.clone(),
        tid: tid.clone(),
        lane: Lane { lane, g, t, row0 },
        q0,
        last_i,
        n_i,
    };
    body.query_side(&mut e)?;
    let mut sweeper = Sweeper::new(&body, &mut e)?;
    let mut done: BTreeSet<NodeIndex> = BTreeSet::new();
    for (s, sweep) in plan.sweeps.iter().enumerate() {
        sweeper.sweep(&mut e, s, sweep)?;
        // The epilogue values whose statistics are now final.
        let last = s + 1 == plan.sweeps.len();
        body.epilogue(&mut e, &sweeper, s, last, &mut done)?;
    }
    if plan.sweeps.is_empty() {
        body.epilogue(&mut e, &sweeper, 0, true, &mut done)?;
    }
    body.outputs(&mut e)?;
    e.line("gpu.return");
    let mut p = params(graph, ctx.workspace.is_some());
    if ctx.tmaps.is_some() {
        p.text.push(crate::tma::PARAM.into());
    }
    let text = format!(
        "    gpu.func @{name}({}) kernel attributes {{known_block_size = array<i32: {}, 1, 1>}} {{\n{}    }}\n",
        p.text.join(", "),
        shape.threads(),
        e.into_text()
    );
    let guards = ctx.guards.into_inner();
    Ok((text, guards))
}

/// Zeroes the whole dynamic shared memory, 16 bytes per store: padding columns of operand tiles
/// must read as zero, and rows never copied (past the sequence's end) too.
fn zero_shared(e: &mut Emitter, smem: &Val, bytes: usize, tid: &Val, threads: usize) {
    let words = bytes / 16;
    if words == 0 {
        return;
    }
    let zero = e.index(0);
    let view = e.view(smem, &zero, words * 4, Ty::I32);
    let z = e.op(
        Ty::vector(&[4], Ty::I32),
        "arith.constant dense<0> : vector<4xi32>",
    );
    let trips = words.div_ceil(threads);
    let hi = e.index(trips as i64);
    let one = e.index(1);
    let it = e.for_loop(&zero, &hi, &one);
    let th = e.index(threads as i64);
    let base = e.mul(&it, &th);
    let w = e.add(&base, tid);
    let nw = e.index(words as i64);
    let inside = e.cmp(Cmp::Lt, &w, &nw);
    e.if_then(&inside);
    let four = e.index(4);
    let at = e.mul(&w, &four);
    e.vector_store(&z, &view, &at);
    e.end();
    e.end();
}

impl Body<'_, '_> {
    /// The query-side values, node by node (a barrier after each: later ones read whole rows),
    /// and the score operands in their matrix type.
    fn query_side(&self, e: &mut Emitter) -> Result<(), NvptxError> {
        let ctx = self.ctx;
        let (q0, last) = (self.q0.clone(), self.last_i.clone());
        let position = |e: &mut Emitter, row: &Val| query_at(e, &q0, &last, row);
        for &n in self
            .order
            .iter()
            .filter(|n| self.plan.query_side.contains(n))
        {
            let Some(Home::Query(buf)) = ctx.layout.home(n) else {
                continue;
            };
            fill_rows(
                e,
                ctx,
                n,
                buf,
                self.shape.bq,
                &position,
                &self.tid,
                self.shape.threads(),
            )?;
            e.line("gpu.barrier");
            if let Some(&op) = ctx.layout.operand.get(&n)
                && op != buf
            {
                self.copy_rows(e, buf, op, self.shape.bq, None)?;
                e.line("gpu.barrier");
            }
        }
        Ok(())
    }

    /// Copies (converting) the used part of buffer `from` into buffer `to`, row by row.
    pub(crate) fn copy_rows(
        &self,
        e: &mut Emitter,
        from: usize,
        to: usize,
        rows: usize,
        copy: Option<&Val>,
    ) -> Result<(), NvptxError> {
        let ctx = self.ctx;
        let (src, dst) = (&ctx.layout.shared[from], &ctx.layout.shared[to]);
        let len = src.len;
        let total = rows * len;
        let trips = total.div_ceil(self.shape.threads());
        let lo = e.index(0);
        let hi = e.index(trips as i64);
        let one = e.index(1);
        let it = e.for_loop(&lo, &hi, &one);
        let th = e.index(self.shape.threads() as i64);
        let base = e.mul(&it, &th);
        let k = e.add(&base, &self.tid);
        let tot = e.index(total as i64);
        let inside = e.cmp(Cmp::Lt, &k, &tot);
        e.if_then(&inside);
        let l = e.index(len as i64);
        let row = e.div(&k, &l);
        let f = e.arith(attnc_lower::Arith::Rem, &k, &l);
        let at_src = ctx.shared_at(e, from, copy, &row, &f);
        let x = e.load(&ctx.views[from], &at_src);
        let x = e.cast(&x, &Ty::F32);
        let x = e.cast(&x, &dst.elem.clone());
        let at_dst = ctx.shared_at(e, to, None, &row, &f);
        e.store(&x, &ctx.views[to], &at_dst);
        e.end();
        e.end();
        Ok(())
    }

    /// After sweep `s`: the epilogue maps whose statistics are final (scalars right away; the
    /// vectors after the last sweep, over the key tiles' space).
    fn epilogue(
        &self,
        e: &mut Emitter,
        sweeper: &Sweeper,
        s: usize,
        last: bool,
        done: &mut BTreeSet<NodeIndex>,
    ) -> Result<(), NvptxError> {
        let ctx = self.ctx;
        let (q0, li) = (self.q0.clone(), self.last_i.clone());
        let position = |e: &mut Emitter, row: &Val| query_at(e, &q0, &li, row);
        for &n in self.order.iter().filter(|n| self.plan.epilogue.contains(n)) {
            if done.contains(&n) || !matches!(ctx.graph.node(n).op, Op::Map { .. }) {
                continue;
            }
            if !sweeper.ready_after(n, s) {
                continue;
            }
            let Some(Home::Row(buf)) = ctx.layout.home(n) else {
                continue;
            };
            let vector = ctx.layout.shared[buf].region == Region::Epilogue;
            if vector && !last {
                continue;
            }
            fill_rows(
                e,
                ctx,
                n,
                buf,
                self.shape.bq,
                &position,
                &self.tid,
                self.shape.threads(),
            )?;
            e.line("gpu.barrier");
            done.insert(n);
        }
        Ok(())
    }

    /// Stores every output row of the block, converting to the output's element type.
    fn outputs(&self, e: &mut Emitter) -> Result<(), NvptxError> {
        let ctx = self.ctx;
        let graph = ctx.graph;
        for &n in &self.plan.epilogue {
            let Op::Output { name, ty, axes } = &graph.node(n).op else {
                continue;
            };
            if !axes.contains(&FrameIndex::I) {
                return Err(NvptxError::unsupported(
                    graph,
                    n,
                    format!("output `{name}` is not indexed by the query position i"),
                ));
            }
            let value = graph.operands(n)[0].0;
            let len = crate::classify::feature_len(graph, value.node, &ctx.layout.specialised)?;
            let row_len = if axes.len() < ty.dims.len() { len } else { 1 };
            let buffer = self.outputs_buffer(e, name, ty)?;
            let total = self.shape.bq * row_len;
            let trips = total.div_ceil(self.shape.threads());
            let lo = e.index(0);
            let hi = e.index(trips as i64);
            let one = e.index(1);
            let it = e.for_loop(&lo, &hi, &one);
            let th = e.index(self.shape.threads() as i64);
            let base = e.mul(&it, &th);
            let k = e.add(&base, &self.tid);
            let rl = e.index(row_len as i64);
            let row = e.div(&k, &rl);
            let f = e.arith(attnc_lower::Arith::Rem, &k, &rl);
            let i = e.add(&self.q0, &row);
            let bq = e.index(self.shape.bq as i64);
            let in_tile = e.cmp(Cmp::Lt, &row, &bq);
            let in_seq = e.cmp(Cmp::Lt, &i, &self.n_i);
            let ok = e.and(&in_tile, &in_seq);
            e.if_then(&ok);
            let at = At::Query {
                row: row.clone(),
                i: i.clone(),
            };
            let local = BTreeMap::new();
            let mut low = ExprLowering::new(graph, &PtxMath);
            let mut here = Here {
                ctx,
                at,
                local: &local,
            };
            let vector = row_len > 1;
            let v = low
                .lower_f32(e, &mut here, &Tree::Value(value), vector.then_some(&f))
                .map_err(|err| NvptxError::lowering(graph, n, err))?;
            let v = e.cast(&v, &Ty::of_element(ty.dtype));
            // The element's offset: leading axes by their frame index, then the row's feature.
            let mut offset = e.index(0);
            for (a, d) in ty.dims.iter().enumerate() {
                let size = ctx.dim_index(e, d);
                let c = match axes.get(a) {
                    Some(FrameIndex::B) => ctx.b.clone(),
                    Some(FrameIndex::H) => ctx.h.clone(),
                    Some(FrameIndex::I) => i.clone(),
                    Some(_) => e.index(0),
                    None => f.clone(),
                };
                let scaled = e.mul(&offset, &size);
                offset = e.add(&scaled, &c);
            }
            e.store(&v, &buffer, &offset);
            e.end();
            e.end();
        }
        Ok(())
    }

    fn outputs_buffer(
        &self,
        e: &mut Emitter,
        name: &str,
        ty: &attnc_ir::types::TensorType,
    ) -> Result<Val, NvptxError> {
        let len = elements(e, &self.ctx.dims, &ty.dims);
        let p = Emitter::named(
            &format!("%out_{name}"),
            Ty::MemRef(
                vec![],
                Box::new(Ty::of_element(ty.dtype)),
                attnc_lower::Space::Default,
            ),
        );
        Ok(e.buffer_of(&p, &len))
    }
}
