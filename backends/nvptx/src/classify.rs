//! Where every value of a fused parallel kernel lives on the GPU, decided once before any code
//! is written: per-head values in registers, in global memory or in the per-head workspace;
//! query-side and key-side values in shared memory (key and value rows that feed the matrix
//! units in `stages` copies filled by asynchronous copies); pair values in registers, fragment
//! by fragment; row statistics and the epilogue's values in shared memory, the epilogue's
//! vectors over the key tiles' space once the sweeps are done.

use crate::NvptxError;
use attnc_ir::ElementType;
use attnc_ir::graph::{Graph, Op, PortType, ValueRef};
use attnc_ir::types::{Dim, Feature, FrameIndex};
use attnc_lower::Ty;
use attnc_passes::fusion::ParallelKernel;
use petgraph::stable_graph::NodeIndex;
use std::collections::{BTreeMap, BTreeSet};

/// Where a node's value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Home {
    /// Per head, computed by every thread at the start: an SSA value.
    HeadInline,
    /// Per head, a row of an input read from global memory where it is used.
    HeadLoad,
    /// Per head, computed by the prologue kernel into the workspace.
    HeadWorkspace(usize),
    /// Per query row of the block, in a shared buffer.
    Query(usize),
    /// Per key row of the tile, in a shared buffer.
    Key(usize),
    /// Per (query row, key) pair, in registers.
    Pair,
    /// Per query row after (some of) the sweeps, in a shared buffer.
    Row(usize),
    /// Written to memory, no value of its own.
    Output,
}

/// Which part of shared memory a buffer occupies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Region {
    /// Live for the whole kernel.
    Persistent,
    /// Live while the key tiles stream (key-side values and operands).
    Sweep,
    /// Live after the last sweep, over the sweep region's space.
    Epilogue,
}

/// One shared-memory buffer: `rows` rows of `stride` elements (`len` of them used), `copies`
/// times (the pipeline's stages).
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    pub name: String,
    pub elem: Ty,
    pub rows: usize,
    pub len: usize,
    pub stride: usize,
    pub copies: usize,
    pub region: Region,
    /// Laid out in core matrices for `wgmma`'s descriptors ([`crate::mma::Arrangement`]).
    pub cores: bool,
    /// Byte offset in the dynamic shared memory, once laid out.
    pub offset: usize,
}

impl Shared {
    pub fn bytes(&self) -> usize {
        self.rows * self.stride * self.copies * self.elem.bits() / 8
    }

    pub fn arrangement(&self) -> crate::mma::Arrangement {
        crate::mma::Arrangement {
            stride: self.stride,
            cores: self.cores,
            rows: self.rows,
        }
    }
}

/// A per-head value of the workspace: `len` elements per (b, h).
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub len: Dim,
}

/// Everything decided about the kernel's storage.
pub(crate) struct Layout {
    pub homes: BTreeMap<NodeIndex, Home>,
    pub shared: Vec<Shared>,
    pub slots: Vec<Slot>,
    /// Key-side loads copied asynchronously (their buffers have `stages` copies).
    pub prefetched: BTreeSet<NodeIndex>,
    /// The operand buffer of each contraction operand (query or key side): the value's own
    /// buffer when it is stored in the operand type, else a copy in that type.
    pub operand: BTreeMap<NodeIndex, usize>,
    /// Shared bytes in all, after layout.
    pub shared_bytes: usize,
    /// The key tiles' bulk tensor copies, when every prefetched tile qualifies (`tma.rs`).
    pub tma: Option<crate::tma::Tma>,
    pub specialised: BTreeMap<String, i64>,
}

/// The row stride of a buffer the matrix units read: the row rounded up to whole k steps of 16
/// (the padding columns stay zero), plus 8 elements, so the eight rows one `ldmatrix` (or one
/// group of tf32 loads) reads fall in different banks.
pub(crate) fn operand_stride(len: usize) -> usize {
    len.div_ceil(16) * 16 + 8
}

pub(crate) fn feature_of(graph: &Graph, n: NodeIndex) -> Feature {
    match graph.node(n).results.first() {
        Some(PortType::Value(t)) => t.feature.clone(),
        _ => Feature::Scalar,
    }
}

/// The length of a value's feature axis under the specialised dims.
pub(crate) fn feature_len(
    graph: &Graph,
    n: NodeIndex,
    dims: &BTreeMap<String, i64>,
) -> Result<usize, NvptxError> {
    match feature_of(graph, n) {
        Feature::Scalar => Ok(1),
        Feature::Vector(d) => d
            .eval(dims)
            .ok()
            .and_then(|v| usize::try_from(v).ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| {
                NvptxError::unsupported(
                    graph,
                    n,
                    format!("the length `{d}` of this row must be known when compiling (give it with --shape)"),
                )
            }),
        other => Err(NvptxError::unsupported(
            graph,
            n,
            format!("a value of shape {other} in a parallel kernel"),
        )),
    }
}

/// The dims a GPU kernel is specialised for: those that are the length of a row the block
/// keeps (head dims), and nothing else, so one kernel serves every batch and sequence length.
pub(crate) fn specialised_dims(
    graph: &Graph,
    plan: &ParallelKernel,
    given: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, i64>, NvptxError> {
    let mut names = BTreeSet::new();
    let rows = plan
        .query_side
        .iter()
        .chain(&plan.key_side)
        .chain(&plan.epilogue)
        .chain(
            plan.sweeps
                .iter()
                .flat_map(|s| s.reductions.iter().map(|r| &r.node)),
        );
    for &n in rows {
        if let Feature::Vector(d) = feature_of(graph, n) {
            collect_symbols(&d, &mut names);
        }
    }
    let mut out = BTreeMap::new();
    for name in names {
        match given.get(&name) {
            Some(v) => {
                out.insert(name, *v);
            }
            None => {
                let default = graph
                    .dims
                    .iter()
                    .find(|d| d.name == name)
                    .and_then(|d| d.default.as_ref())
                    .and_then(|(a, r)| a.eval_constant(*r, given).ok());
                match default {
                    Some(v) => {
                        out.insert(name, v as i64);
                    }
                    None => {
                        return Err(NvptxError::Unsupported {
                            message: format!(
                                "the GPU kernel is compiled for fixed head dims: give `{name}` with --shape {name}=N"
                            ),
                            span: graph.dims.iter().find(|d| d.name == name).map(|d| d.span),
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn collect_symbols(d: &Dim, out: &mut BTreeSet<String>) {
    match d {
        Dim::Sym(s) => {
            out.insert(s.clone());
        }
        Dim::Const(_) => {}
        Dim::Add(a, b) | Dim::Sub(a, b) | Dim::Mul(a, b) | Dim::FloorDiv(a, b) => {
            collect_symbols(a, out);
            collect_symbols(b, out);
        }
    }
}

fn storage_of_load(graph: &Graph, n: NodeIndex) -> Option<ElementType> {
    let Op::Load { .. } = graph.node(n).op else {
        return None;
    };
    let input = graph.operands(n).first()?.0.node;
    match &graph.node(input).op {
        Op::Input { ty, .. } => Some(ty.dtype),
        _ => None,
    }
}

fn is_row_load(graph: &Graph, n: NodeIndex) -> bool {
    storage_of_load(graph, n).is_some_and(|t| t.is_float())
        && matches!(feature_of(graph, n), Feature::Vector(_))
}

/// The buffer type of a value computed by threads (not copied): its kind's type.
fn computed_ty(graph: &Graph, n: NodeIndex) -> Ty {
    match graph.node(n).results.first() {
        Some(PortType::Value(t)) => match t.kind {
            attnc_ir::types::ScalarKind::Float => Ty::F32,
            _ => Ty::I32,
        },
        _ => Ty::F32,
    }
}

/// Which contraction operands are laid out in core matrices for `wgmma`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cores {
    pub scores: bool,
    pub values: bool,
}

pub(crate) struct Operands {
    pub score: ElementType,
    pub value: ElementType,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn layout(
    graph: &Graph,
    plan: &ParallelKernel,
    dims: &BTreeMap<String, i64>,
    specialised: BTreeMap<String, i64>,
    bq: usize,
    bk: usize,
    stages: usize,
    operands: &Operands,
    cores: Cores,
) -> Result<Layout, NvptxError> {
    let mut homes = BTreeMap::new();
    let mut shared: Vec<Shared> = Vec::new();
    let mut slots = Vec::new();
    let mut prefetched = BTreeSet::new();
    let mut operand = BTreeMap::new();
    let len = |n| feature_len(graph, n, dims);
    let add =
        |shared: &mut Vec<Shared>, name: String, elem: Ty, rows, len, stride, copies, region| {
            shared.push(Shared {
                name,
                elem,
                rows,
                len,
                stride,
                copies,
                region,
                cores: false,
                offset: 0,
            });
            shared.len() - 1
        };
    // Per head.
    for &n in &plan.per_head {
        let node = graph.node(n);
        let vector = matches!(feature_of(graph, n), Feature::Vector(_));
        let home = match &node.op {
            Op::Load { .. } if vector => Home::HeadLoad,
            Op::Load { .. } => Home::HeadInline,
            Op::Map { .. } => {
                let reads_workspace = graph
                    .operands(n)
                    .iter()
                    .any(|(v, _)| matches!(homes.get(&v.node), Some(Home::HeadWorkspace(_))));
                if vector || reads_workspace {
                    let len = match feature_of(graph, n) {
                        Feature::Vector(d) => d,
                        _ => Dim::Const(1),
                    };
                    slots.push(Slot { len });
                    Home::HeadWorkspace(slots.len() - 1)
                } else {
                    Home::HeadInline
                }
            }
            _ => Home::HeadInline,
        };
        homes.insert(n, home);
    }
    // The contraction operands and their types.
    let mut query_operands = BTreeSet::new();
    let mut key_operands: BTreeMap<NodeIndex, ElementType> = BTreeMap::new();
    for &n in &plan.pair {
        if let Op::Score = graph.node(n).op {
            let ops = graph.operands(n);
            let (q, k) = (ops[0].0.node, ops[1].0.node);
            query_operands.insert(q);
            key_operands.insert(k, operands.score);
        }
    }
    for r in plan.sweeps.iter().flat_map(|s| &s.reductions) {
        if let (Op::Aggregate, Some(row)) = (&graph.node(r.node).op, r.row) {
            key_operands.insert(row.node, operands.value);
        }
    }
    // Query side.
    for &n in &plan.query_side {
        let l = len(n)?;
        let name = label(graph, n);
        let buf = match storage_of_load(graph, n) {
            Some(t) if is_row_load(graph, n) => {
                let ty = Ty::of_element(t);
                add(
                    &mut shared,
                    format!("query {name}"),
                    ty,
                    bq,
                    l,
                    operand_stride(l),
                    1,
                    Region::Persistent,
                )
            }
            _ => {
                let ty = computed_ty(graph, n);
                add(
                    &mut shared,
                    format!("query {name}"),
                    ty,
                    bq,
                    l,
                    l,
                    1,
                    Region::Persistent,
                )
            }
        };
        homes.insert(n, Home::Query(buf));
        if query_operands.contains(&n) {
            let want = Ty::of_element(operands.score);
            let own = &shared[buf];
            let b = if own.elem == want && own.stride == operand_stride(l) {
                buf
            } else {
                add(
                    &mut shared,
                    format!("score operand {name}"),
                    want,
                    bq,
                    l,
                    operand_stride(l),
                    1,
                    Region::Persistent,
                )
            };
            operand.insert(n, b);
        }
    }
    // Key side.
    for &n in &plan.key_side {
        let l = len(n)?;
        let name = label(graph, n);
        let storage = storage_of_load(graph, n);
        let aligned = |t: ElementType| (l * t.size_bytes()).is_multiple_of(16);
        let buf = match storage {
            Some(t) if is_row_load(graph, n) && aligned(t) => {
                prefetched.insert(n);
                let ty = Ty::of_element(t);
                add(
                    &mut shared,
                    format!("key {name}"),
                    ty,
                    bk,
                    l,
                    operand_stride(l),
                    stages,
                    Region::Sweep,
                )
            }
            _ => {
                let ty = computed_ty(graph, n);
                add(
                    &mut shared,
                    format!("key {name}"),
                    ty,
                    bk,
                    l,
                    l,
                    1,
                    Region::Sweep,
                )
            }
        };
        homes.insert(n, Home::Key(buf));
        if let Some(t) = key_operands.get(&n) {
            let want = Ty::of_element(*t);
            let own = &shared[buf];
            let b = if own.elem == want && own.stride == operand_stride(l) {
                buf
            } else {
                add(
                    &mut shared,
                    format!("operand {name}"),
                    want,
                    bk,
                    l,
                    operand_stride(l),
                    1,
                    Region::Sweep,
                )
            };
            operand.insert(n, b);
        }
    }
    for n in key_operands.keys() {
        if !homes.get(n).is_some_and(|h| matches!(h, Home::Key(_))) {
            return Err(NvptxError::unsupported(
                graph,
                *n,
                "a contraction operand that is not a row of the key tile",
            ));
        }
    }
    for &n in &plan.pair {
        homes.insert(n, Home::Pair);
    }
    if let Some(m) = plan.mask {
        homes.insert(m, Home::Pair);
    }
    for &n in &plan.absorbed {
        homes.insert(n, Home::Pair);
    }
    // Rows: reductions and the epilogue.
    for r in plan.sweeps.iter().flat_map(|s| &s.reductions) {
        let n = r.node;
        let l = len(n)?;
        let name = label(graph, n);
        let region = row_region(l);
        let b = add(
            &mut shared,
            format!("row {name}"),
            Ty::F32,
            bq,
            l,
            l,
            1,
            region,
        );
        homes.insert(n, Home::Row(b));
    }
    for &n in &plan.epilogue {
        if let Op::Output { .. } = graph.node(n).op {
            homes.insert(n, Home::Output);
            continue;
        }
        let l = len(n)?;
        let name = label(graph, n);
        let region = row_region(l);
        let ty = computed_ty(graph, n);
        let b = add(&mut shared, format!("row {name}"), ty, bq, l, l, 1, region);
        homes.insert(n, Home::Row(b));
    }
    // The operands `wgmma` reads through descriptors (whole k steps: the caller checked that
    // every score's length is a multiple of 16; a value row's padding columns stay zero).
    let mut in_cores = BTreeSet::new();
    if cores.scores {
        for &n in &plan.pair {
            if let Op::Score = graph.node(n).op {
                in_cores.extend(graph.operands(n).iter().map(|(v, _)| v.node));
            }
        }
    }
    if cores.values {
        for r in plan.sweeps.iter().flat_map(|s| &s.reductions) {
            if let (Op::Aggregate, Some(row)) = (&graph.node(r.node).op, r.row) {
                in_cores.insert(row.node);
            }
        }
    }
    for n in in_cores {
        if let Some(&b) = operand.get(&n) {
            let s = &mut shared[b];
            s.cores = true;
            s.stride = s.len.div_ceil(16) * 16;
        }
    }
    Ok(Layout {
        homes,
        shared,
        slots,
        prefetched,
        operand,
        shared_bytes: 0,
        tma: None,
        specialised,
    })
}

/// A node's `.attn` name, or its number, for buffer names in the generated code.
fn label(graph: &Graph, n: NodeIndex) -> String {
    graph
        .node(n)
        .name
        .clone()
        .unwrap_or_else(|| format!("%{}", n.index()))
}

/// Per-row scalars persist through the sweeps; per-row vectors live only in the epilogue.
fn row_region(len: usize) -> Region {
    if len == 1 {
        Region::Persistent
    } else {
        Region::Epilogue
    }
}

impl Layout {
    /// Assigns byte offsets: the persistent buffers first, then the sweep buffers and the
    /// epilogue buffers over the same space. Every buffer starts 16-byte aligned, and those in
    /// core matrices 128-byte aligned (a bulk tensor copy's destination must be).
    pub fn place(&mut self) {
        let align = |x: usize| x.div_ceil(16) * 16;
        let start = |x: usize, s: &Shared| {
            if s.cores { x.div_ceil(128) * 128 } else { x }
        };
        let mut at = 0;
        for s in self
            .shared
            .iter_mut()
            .filter(|s| s.region == Region::Persistent)
        {
            s.offset = start(at, s);
            at = align(s.offset + s.bytes());
        }
        let base = at;
        let mut sweep_end = base;
        for s in self.shared.iter_mut().filter(|s| s.region == Region::Sweep) {
            s.offset = start(sweep_end, s);
            sweep_end = align(s.offset + s.bytes());
        }
        let mut epilogue_end = base;
        for s in self
            .shared
            .iter_mut()
            .filter(|s| s.region == Region::Epilogue)
        {
            s.offset = start(epilogue_end, s);
            epilogue_end = align(s.offset + s.bytes());
        }
        self.shared_bytes = sweep_end.max(epilogue_end).max(16);
    }

    pub fn home(&self, n: NodeIndex) -> Option<Home> {
        self.homes.get(&n).copied()
    }

    /// Copies the key tiles by TMA where they all qualify (before [`Layout::place`]): adds the
    /// stages' barriers, one 8-byte word each, to the persistent buffers.
    pub fn use_tma(&mut self, graph: &Graph, bk: usize, stages: usize) {
        let Some((copies, maps)) = crate::tma::plan(graph, self, bk) else {
            return;
        };
        let stage_bytes = copies
            .iter()
            .map(|c| {
                let s = &self.shared[c.buf];
                s.rows * s.stride * s.elem.bits() / 8
            })
            .sum();
        self.shared.push(Shared {
            name: "tile barriers".into(),
            elem: Ty::I64,
            rows: 1,
            len: stages,
            stride: stages,
            copies: 1,
            region: Region::Persistent,
            cores: false,
            offset: 0,
        });
        self.tma = Some(crate::tma::Tma {
            copies,
            maps,
            barriers: self.shared.len() - 1,
            stage_bytes,
        });
    }

    /// The home of a value, or an internal error naming it.
    pub fn home_of(&self, graph: &Graph, v: ValueRef) -> Result<Home, NvptxError> {
        self.home(v.node).ok_or_else(|| {
            NvptxError::internal(graph, v.node, "a value with no place in the kernel")
        })
    }

    /// Whether the kernel uses frame index `fi` (b or h may be absent).
    pub fn has_index(graph: &Graph, fi: FrameIndex) -> bool {
        graph.extents.contains_key(&fi)
    }
}
