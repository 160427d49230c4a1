//! Reading values inside the kernel: where each leaf of an expression comes from at the current
//! position (a register, a shared buffer, the workspace, an input in global memory), how a load
//! addresses its tensor, and the run-time range checks of computed indices, which report through
//! the status word and read a safe element instead.

use crate::NvptxError;
use crate::classify::{Home, Layout};
use attnc_ir::graph::{Graph, LoadIndex, Op, ValueRef};
use attnc_ir::types::{Dim, FrameIndex};
use attnc_lower::{Cmp, Emitter, Leaves, LowerError, Ty, Val};
use petgraph::stable_graph::NodeIndex;
use std::cell::RefCell;
use std::collections::BTreeMap;

pub use attnc_lower::manifest::GuardSite;

/// The SSA handles the kernel's prologue established, shared by every part of the kernel.
pub(crate) struct Ctx<'a> {
    pub graph: &'a Graph,
    pub layout: Layout,
    /// One memref view per shared buffer (all its copies).
    pub views: Vec<Val>,
    /// Input node -> its global buffer.
    pub inputs: BTreeMap<NodeIndex, Val>,
    pub workspace: Option<Val>,
    pub status: Val,
    /// The buffer of TMA tensor maps, when the key tiles are copied by TMA.
    pub tmaps: Option<Val>,
    /// Dims as index and as i32.
    pub dims: BTreeMap<String, (Val, Val)>,
    /// The frame indices of the block: b and h as index.
    pub b: Val,
    pub h: Val,
    /// Per-head values computed in registers.
    pub head: BTreeMap<NodeIndex, Val>,
    /// Base offsets (in elements, index) of each workspace slot's data for this (b, h).
    pub slot_base: Vec<Val>,
    pub guards: RefCell<Vec<GuardSite>>,
    /// Guard codes of this kernel start after it (kernels of one manifest share a table).
    pub guard_base: u32,
    pub zero: Val,
}

/// Where an expression is evaluated.
#[derive(Clone, Debug)]
pub(crate) enum At {
    /// Per head (the prologue kernel, or per-head values of the main one).
    Head,
    /// A query row of the block (index into the tile), i the sequence position.
    Query { row: Val, i: Val },
    /// A key row of the tile, j its position; `stage` is the pipeline copy in use.
    Key { key: Val, j: Val, stage: Val },
    /// One element of a thread's score fragments.
    Element {
        row: Val,
        i: Val,
        key: Val,
        j: Val,
        stage: Val,
    },
}

impl At {
    fn row(&self) -> Option<&Val> {
        match self {
            At::Query { row, .. } | At::Element { row, .. } => Some(row),
            _ => None,
        }
    }

    fn key(&self) -> Option<(&Val, &Val)> {
        match self {
            At::Key { key, stage, .. } | At::Element { key, stage, .. } => Some((key, stage)),
            _ => None,
        }
    }

    /// i or j at this position, as index (clamped into the sequence by whoever made the
    /// position, so padding rows of a tile read valid data).
    fn frame(&self, fi: FrameIndex) -> Option<&Val> {
        match (self, fi) {
            (At::Query { i, .. } | At::Element { i, .. }, FrameIndex::I) => Some(i),
            (At::Key { j, .. } | At::Element { j, .. }, FrameIndex::J) => Some(j),
            _ => None,
        }
    }
}

/// The leaves of expressions at one position of the kernel.
pub(crate) struct Here<'c, 'a> {
    pub ctx: &'c Ctx<'a>,
    pub at: At,
    /// Values of pair nodes at this element (fragment world), and the running statistics
    /// a shift reads (row world), by node.
    pub local: &'c BTreeMap<NodeIndex, Val>,
}

pub(crate) fn lower_err(e: NvptxError) -> LowerError {
    match e {
        NvptxError::Unsupported { message, .. } => LowerError::Unsupported(message),
        other => LowerError::Internal(other.to_string()),
    }
}

impl Ctx<'_> {
    pub fn dim_index(&self, e: &mut Emitter, d: &Dim) -> Val {
        crate::kernel::dim_value(e, &self.dims, d)
    }

    /// A shared buffer's element: copy `copy` (index) of buffer `buf`, row `row`, element `f`.
    pub fn shared_at(
        &self,
        e: &mut Emitter,
        buf: usize,
        copy: Option<&Val>,
        row: &Val,
        f: &Val,
    ) -> Val {
        let s = &self.layout.shared[buf];
        let zero = e.index(0);
        let mut at = s.arrangement().at(e, &zero, row, f);
        if let Some(c) = copy
            && s.copies > 1
        {
            let per = e.index((s.rows * s.stride) as i64);
            let o = e.mul(c, &per);
            at = e.add(&at, &o);
        }
        at
    }

    /// The kernel's run-time checks.
    pub fn guards(&self) -> Guards<'_> {
        Guards {
            sites: &self.guards,
            base: self.guard_base,
            status: &self.status,
        }
    }

    /// The input a load reads and the flat offset of its element at a position.
    pub fn load_offset(
        &self,
        e: &mut Emitter,
        low: &mut attnc_lower::ExprLowering<'_>,
        here: &mut Here<'_, '_>,
        n: NodeIndex,
        feature: Option<&Val>,
    ) -> Result<(NodeIndex, Val), NvptxError> {
        let mut site = HereSite { low, here };
        load_offset(
            e,
            self.graph,
            &self.dims,
            &self.guards(),
            &mut site,
            n,
            feature,
        )
    }

    /// The input a load reads and its coordinates at a position (the feature axis left out).
    pub fn load_coords(
        &self,
        e: &mut Emitter,
        low: &mut attnc_lower::ExprLowering<'_>,
        here: &mut Here<'_, '_>,
        n: NodeIndex,
    ) -> Result<(NodeIndex, Vec<Val>), NvptxError> {
        let mut site = HereSite { low, here };
        load_coords(
            e,
            self.graph,
            &self.dims,
            &self.guards(),
            &mut site,
            n,
            None,
        )
    }

    /// Reads a load's element at a position, as the value's kind (f32 or i32).
    pub fn load(
        &self,
        e: &mut Emitter,
        low: &mut attnc_lower::ExprLowering<'_>,
        here: &mut Here<'_, '_>,
        n: NodeIndex,
        feature: Option<&Val>,
    ) -> Result<Val, NvptxError> {
        let mut site = HereSite { low, here };
        read_load(
            e,
            self.graph,
            &self.dims,
            &self.inputs,
            &self.guards(),
            &mut site,
            n,
            feature,
        )
    }
}

/// Where a load is addressed from: its frame indices and its computed integer operands.
pub(crate) trait LoadSite {
    /// A frame index at this position, as index.
    fn frame(&mut self, e: &mut Emitter, fi: FrameIndex) -> Result<Val, LowerError>;
    /// A computed index (an integer operand of the load) at this position.
    fn operand(
        &mut self,
        e: &mut Emitter,
        v: ValueRef,
        feature: Option<&Val>,
    ) -> Result<Val, LowerError>;
}

struct HereSite<'x, 'l, 'c, 'a> {
    low: &'x mut attnc_lower::ExprLowering<'l>,
    here: &'x mut Here<'c, 'a>,
}

impl LoadSite for HereSite<'_, '_, '_, '_> {
    fn frame(&mut self, e: &mut Emitter, fi: FrameIndex) -> Result<Val, LowerError> {
        self.here.frame_index(e, fi)
    }

    fn operand(
        &mut self,
        e: &mut Emitter,
        v: ValueRef,
        feature: Option<&Val>,
    ) -> Result<Val, LowerError> {
        let tree = attnc_passes::fusion::tree::Tree::Value(v);
        self.low.lower(e, self.here, &tree, feature)
    }
}

/// The flat offset (index) of the element of a tensor of `shape` at frame coordinates `coords`,
/// the feature position (or 0) after them.
pub(crate) fn flat_offset(
    e: &mut Emitter,
    dims: &BTreeMap<String, (Val, Val)>,
    coords: &[Val],
    feature: Option<&Val>,
    shape: &[Dim],
) -> Val {
    let zero = e.index(0);
    let mut coords = coords.to_vec();
    if coords.len() < shape.len() {
        coords.push(feature.cloned().unwrap_or_else(|| zero.clone()));
    }
    let mut offset = zero;
    for (c, d) in coords.iter().zip(shape) {
        let size = crate::kernel::dim_value(e, dims, d);
        let scaled = e.mul(&offset, &size);
        offset = e.add(&scaled, c);
    }
    offset
}

/// The input a load reads and the flat offset (index) of its element at a position; computed
/// indices are range-checked.
pub(crate) fn load_offset(
    e: &mut Emitter,
    graph: &Graph,
    dims: &BTreeMap<String, (Val, Val)>,
    guards: &Guards<'_>,
    site: &mut dyn LoadSite,
    n: NodeIndex,
    feature: Option<&Val>,
) -> Result<(NodeIndex, Val), NvptxError> {
    let (input, coords) = load_coords(e, graph, dims, guards, site, n, feature)?;
    let Op::Input { ty, .. } = &graph.node(input).op else {
        return Err(NvptxError::internal(graph, n, "a load of a non-input"));
    };
    Ok((input, flat_offset(e, dims, &coords, feature, &ty.dims)))
}

/// The input a load reads and its coordinates at a position (every axis but a vector's
/// feature axis), as index; computed indices are range-checked.
pub(crate) fn load_coords(
    e: &mut Emitter,
    graph: &Graph,
    dims: &BTreeMap<String, (Val, Val)>,
    guards: &Guards<'_>,
    site: &mut dyn LoadSite,
    n: NodeIndex,
    feature: Option<&Val>,
) -> Result<(NodeIndex, Vec<Val>), NvptxError> {
    let Op::Load { indices } = &graph.node(n).op else {
        return Err(NvptxError::internal(graph, n, "a load that is not a load"));
    };
    let ops: Vec<ValueRef> = graph.operands(n).iter().map(|(v, _)| *v).collect();
    let input = ops[0].node;
    let Op::Input { name, ty, .. } = &graph.node(input).op else {
        return Err(NvptxError::internal(graph, n, "a load of a non-input"));
    };
    let mut coords = Vec::new();
    for (axis, ix) in indices.iter().enumerate() {
        let size = crate::kernel::dim_value(e, dims, &ty.dims[axis]);
        coords.push(match ix {
            LoadIndex::Frame(fi) => site
                .frame(e, *fi)
                .map_err(|err| NvptxError::internal(graph, n, err.to_string()))?,
            LoadIndex::Operand(k) => {
                let v = site
                    .operand(e, ops[*k as usize], feature)
                    .map_err(|err| NvptxError::lowering(graph, n, err))?;
                let v = e.cast(&v, &Ty::I32);
                let i = e.cast(&v, &Ty::Index);
                guards.check(
                    e,
                    n,
                    format!("index {{value}} is outside axis {axis} of `{name}` (size {{bound}})"),
                    &i,
                    &size,
                )
            }
        });
    }
    Ok((input, coords))
}

/// Reads a load's element at a position, as the value's kind (f32 or i32).
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_load(
    e: &mut Emitter,
    graph: &Graph,
    dims: &BTreeMap<String, (Val, Val)>,
    inputs: &BTreeMap<NodeIndex, Val>,
    guards: &Guards<'_>,
    site: &mut dyn LoadSite,
    n: NodeIndex,
    feature: Option<&Val>,
) -> Result<Val, NvptxError> {
    let (input, offset) = load_offset(e, graph, dims, guards, site, n, feature)?;
    let buf = inputs
        .get(&input)
        .ok_or_else(|| NvptxError::internal(graph, n, "an input without a buffer"))?;
    let x = e.load(buf, &offset);
    Ok(if x.ty.is_float() {
        e.cast(&x, &Ty::F32)
    } else {
        e.cast(&x, &Ty::I32)
    })
}

/// Element `k` (i32) of the vector value `v` of length `len`, as a safe index (0 where `k` is out
/// of range, which is reported through the status word).
pub(crate) fn element_index(
    e: &mut Emitter,
    graph: &Graph,
    guards: &Guards<'_>,
    v: ValueRef,
    k: &Val,
    len: &Val,
) -> Val {
    let idx = e.cast(k, &Ty::Index);
    let name = graph
        .node(v.node)
        .name
        .clone()
        .unwrap_or_else(|| "a vector".into());
    guards.check(
        e,
        v.node,
        format!("index {{value}} is outside `{name}` (length {{bound}})"),
        &idx,
        len,
    )
}

/// A dim's value as i32, from the kernel's dims (index and i32 forms) by name.
pub(crate) fn dim_i32(dims: &BTreeMap<String, (Val, Val)>, name: &str) -> Result<Val, LowerError> {
    dims.get(name)
        .map(|(_, i)| i.clone())
        .ok_or_else(|| LowerError::Internal(format!("dim `{name}` has no value")))
}

/// A kernel's table of run-time checks and the status word they report through.
pub(crate) struct Guards<'a> {
    pub sites: &'a RefCell<Vec<GuardSite>>,
    /// Guard codes of this kernel start after it (kernels of one manifest share a table).
    pub base: u32,
    pub status: &'a Val,
}

impl Guards<'_> {
    /// Reports a failed check through the status word (the first failure of a run wins) and
    /// returns a safe index (0) where `idx` is outside `[0, size)`.
    pub fn check(
        &self,
        e: &mut Emitter,
        node: NodeIndex,
        what: String,
        idx: &Val,
        size: &Val,
    ) -> Val {
        let mut guards = self.sites.borrow_mut();
        let code = match guards.iter().find(|g| g.node == node && g.message == what) {
            Some(g) => g.code,
            None => {
                let code = self.base + guards.len() as u32 + 1;
                guards.push(GuardSite {
                    code,
                    message: what,
                    node,
                });
                code
            }
        };
        drop(guards);
        let zero = e.index(0);
        let neg = e.cmp(Cmp::Lt, idx, &zero);
        let over = e.cmp(Cmp::Ge, idx, size);
        let bad = e.or(&neg, &over);
        e.if_then(&bad);
        let value = e.cast(idx, &Ty::I32);
        let bound = e.cast(size, &Ty::I32);
        report(e, self.status, code, &value, &bound);
        e.end();
        e.select(&bad, &zero, idx)
    }
}

/// Stores `code`, `value` and `bound` into the status word, if no failure was stored before.
pub(crate) fn report(e: &mut Emitter, status: &Val, code: u32, value: &Val, bound: &Val) {
    let c0 = e.index(0);
    let c1 = e.index(1);
    let c2 = e.index(2);
    let code = e.i32(code as i64);
    let old = e.fresh();
    let cur = e.fresh();
    let st = &status.ty;
    e.line(&format!(
        "{old} = memref.generic_atomic_rmw {status}[{c0}] : {st} {{"
    ));
    e.line(&format!("^bb0({cur}: i32):"));
    e.indent();
    let cur_v = Emitter::named(&cur, Ty::I32);
    let z = e.i32(0);
    let free = e.cmp(Cmp::Eq, &cur_v, &z);
    let new = e.select(&free, &code, &cur_v);
    e.line(&format!("memref.atomic_yield {new} : i32"));
    e.dedent();
    e.line("}");
    let old_v = Emitter::named(&old, Ty::I32);
    let z = e.i32(0);
    let won = e.cmp(Cmp::Eq, &old_v, &z);
    e.if_then(&won);
    e.store(value, status, &c1);
    e.store(bound, status, &c2);
    e.end();
}

impl Here<'_, '_> {
    /// A frame index at this position, as index.
    pub fn frame_index(&self, e: &mut Emitter, fi: FrameIndex) -> Result<Val, LowerError> {
        let _ = e;
        Ok(match fi {
            FrameIndex::B => self.ctx.b.clone(),
            FrameIndex::H => self.ctx.h.clone(),
            FrameIndex::T => {
                return Err(LowerError::Internal("t in a parallel kernel".into()));
            }
            other => self.at.frame(other).cloned().ok_or_else(|| {
                LowerError::Internal(format!("index {} read where it has no value", other.name()))
            })?,
        })
    }
}

impl Leaves for Here<'_, '_> {
    fn value(
        &mut self,
        e: &mut Emitter,
        v: ValueRef,
        feature: Option<&Val>,
    ) -> Result<Val, LowerError> {
        if let Some(x) = self.local.get(&v.node) {
            return Ok(x.clone());
        }
        let ctx = self.ctx;
        let graph = ctx.graph;
        let home = ctx.layout.home_of(graph, v).map_err(lower_err)?;
        let zero = ctx.zero.clone();
        let f = feature.cloned().unwrap_or(zero);
        match home {
            Home::HeadInline => ctx.head.get(&v.node).cloned().ok_or_else(|| {
                LowerError::Internal(format!("per-head value {} not computed", v.node.index()))
            }),
            Home::HeadLoad => {
                let mut low = attnc_lower::ExprLowering::new(graph, &attnc_lower::PtxMath);
                let mut inner = Here {
                    ctx,
                    at: At::Head,
                    local: self.local,
                };
                ctx.load(e, &mut low, &mut inner, v.node, Some(&f))
                    .map_err(lower_err)
            }
            Home::HeadWorkspace(slot) => {
                let ws = ctx.workspace.as_ref().ok_or_else(|| {
                    LowerError::Internal("a workspace value without a workspace".into())
                })?;
                let at = e.add(&ctx.slot_base[slot], &f);
                Ok(e.load(ws, &at))
            }
            Home::Query(buf) | Home::Row(buf) => {
                let row = self.at.row().cloned().ok_or_else(|| {
                    LowerError::Internal(format!(
                        "per-row value {} read without a row",
                        v.node.index()
                    ))
                })?;
                let at = ctx.shared_at(e, buf, None, &row, &f);
                Ok(e.load(&ctx.views[buf], &at))
            }
            Home::Key(buf) => {
                let (key, stage) = self.at.key().ok_or_else(|| {
                    LowerError::Internal(format!(
                        "per-key value {} read without a key",
                        v.node.index()
                    ))
                })?;
                let (key, stage) = (key.clone(), stage.clone());
                let at = ctx.shared_at(e, buf, Some(&stage), &key, &f);
                Ok(e.load(&ctx.views[buf], &at))
            }
            Home::Pair => {
                // A pair-level load (a bias per (i, j)) is read where it is used.
                if let Op::Load { .. } = graph.node(v.node).op {
                    let mut low = attnc_lower::ExprLowering::new(graph, &attnc_lower::PtxMath);
                    let mut inner = Here {
                        ctx,
                        at: self.at.clone(),
                        local: self.local,
                    };
                    return ctx
                        .load(e, &mut low, &mut inner, v.node, feature)
                        .map_err(lower_err);
                }
                Err(LowerError::Internal(format!(
                    "pair value {} read before it is computed",
                    v.node.index()
                )))
            }
            Home::Output => Err(LowerError::Internal("an output read as a value".into())),
        }
    }

    fn index(&mut self, e: &mut Emitter, fi: FrameIndex) -> Result<Val, LowerError> {
        let i = self.frame_index(e, fi)?;
        Ok(e.cast(&i, &Ty::I32))
    }

    fn dim(&mut self, _e: &mut Emitter, name: &str) -> Result<Val, LowerError> {
        dim_i32(&self.ctx.dims, name)
    }

    fn len(&mut self, e: &mut Emitter, v: ValueRef) -> Result<Val, LowerError> {
        let graph = self.ctx.graph;
        match crate::classify::feature_of(graph, v.node) {
            attnc_ir::types::Feature::Vector(d) => Ok(self.ctx.dim_index(e, &d)),
            _ => Ok(e.index(1)),
        }
    }

    fn element(&mut self, e: &mut Emitter, v: ValueRef, k: &Val) -> Result<Val, LowerError> {
        let len = self.len(e, v)?;
        let safe = element_index(e, self.ctx.graph, &self.ctx.guards(), v, k, &len);
        self.value(e, v, Some(&safe))
    }
}
