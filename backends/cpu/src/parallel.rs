//! The parallel template as MLIR for the host: one function computes one work item, a query tile
//! of one (b, h) slice. It follows the fused plan step by step: per-head and query-side values
//! once, then per sweep and per key tile the key-side values, the pair values and the mask, and
//! each reduction's update (online terms rescaled by `exp(Z_old - Z_new)`); after each sweep the
//! reductions are finished and the per-row values that depend on them computed; last, the output
//! rows are written to the work item's own output tile.
//!
//! The two contractions run as register-blocked micro-kernels in MLIR's vector dialect when
//! the tiling chose blocks for them (`blocked`), and row reductions read vectors of keys
//! (`rows`); everything else is scalar loops that LLVM's vectoriser takes across keys or
//! features.

use crate::mlir_text::Body;
use crate::{CodegenError, Layout, OutputTile};
use attnc_ir::expr::Builtin;
use attnc_ir::graph::{Graph, LoadIndex, Op, PortType, ValueRef};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::{Dim, Feature, FrameIndex, IndexSet};
use attnc_mlir::{Access, ElementType, KernelSignature, Param};
use attnc_passes::fusion::ParallelKernel;
use attnc_passes::fusion::tree::Tree;
use attnc_passes::tiling::cost_model::RegisterBlock;
use petgraph::stable_graph::NodeIndex;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The name of the generated function.
pub const KERNEL: &str = "attnc_tile";

/// Where a node's values live inside a work item.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Class {
    PerHead,
    Query,
    Key,
    Pair,
}

fn class_of(set: IndexSet) -> Class {
    match (set.contains(FrameIndex::I), set.contains(FrameIndex::J)) {
        (true, true) => Class::Pair,
        (true, false) => Class::Query,
        (false, true) => Class::Key,
        (false, false) => Class::PerHead,
    }
}

/// The position an expression is evaluated at: query row, key row and feature element.
#[derive(Clone, Default)]
pub(crate) struct At {
    pub(crate) ii: Option<String>,
    pub(crate) jj: Option<String>,
    pub(crate) f: Option<String>,
}

pub(crate) struct Gen<'a> {
    graph: &'a Graph,
    pub(crate) body: Body,
    bq: usize,
    bk: usize,
    /// Buffer and feature length (SSA index) of every node stored in the work item.
    buffers: HashMap<NodeIndex, (String, String)>,
    classes: HashMap<NodeIndex, Class>,
    dims: BTreeMap<String, (String, String)>,
    inputs: HashMap<NodeIndex, (String, bool)>,
    i0: String,
    j0: String,
    b: String,
    h: String,
    pub(crate) c0: String,
    /// The step of a recurrence being generated.
    pub(crate) t: Option<String>,
    /// The statistics each node reads, and the sweep each reduction is accumulated in.
    stats: BTreeMap<NodeIndex, BTreeSet<NodeIndex>>,
    sweep_of: BTreeMap<NodeIndex, usize>,
    /// Expressions already evaluated at a position, while `cache_on` (one loop body, where every
    /// value defined dominates the rest of the body).
    cache: Vec<(Tree, [Option<String>; 3], String)>,
    cache_on: bool,
    /// Dims the kernel is specialised for.
    pub(crate) constants: BTreeMap<String, i64>,
    /// Register blocks of the two contractions, as the tiling chose them.
    blocks: Blocks,
    /// Key-side vectors stored feature-major (`[feature][key]`), so the score's register block
    /// loads whole vectors of keys.
    feature_major: BTreeSet<NodeIndex>,
    /// The row-major staging tile of each feature-major value transposed by blocks.
    staging: HashMap<NodeIndex, String>,
    /// One row of a key tile, for a row reduction's argument that is not already a pair value.
    row_scratch: String,
    /// The work item's status buffer (see `index_guard`), once bound.
    status: Option<String>,
}

/// The register blocks the tiling chose for the score and the aggregation, if any.
#[derive(Clone, Copy, Debug, Default)]
pub struct Blocks {
    pub score: Option<RegisterBlock>,
    pub aggregate: Option<RegisterBlock>,
    /// f32 lanes of the target's vectors (row reductions read keys this many at a time).
    pub lanes: usize,
}

pub fn generate(
    graph: &Graph,
    plan: &ParallelKernel,
    bq: usize,
    bk: usize,
    blocks: Blocks,
    constants: &BTreeMap<String, i64>,
) -> Result<(String, KernelSignature, Layout), CodegenError> {
    let order = graph
        .topo_order()
        .ok_or_else(|| CodegenError::Internal("cyclic graph".into()))?;
    let stats = attnc_passes::fusion::reductions_read(graph, &order);
    let sweep_of = plan.sweep_of();
    let mut g = Gen::new(graph, bq, bk);
    g.constants = constants.clone();
    g.stats = stats;
    g.sweep_of = sweep_of;
    g.blocks = blocks;
    if blocks.score.is_some() {
        g.feature_major = g.score_key_operands(plan);
    }
    let (params, layout) = g.signature(plan)?;
    g.prologue(&params)?;
    g.body_of(plan, &order, &layout)?;
    g.body.line("return");
    let text = crate::mlir_text::function(
        KERNEL,
        &params,
        std::mem::replace(&mut g.body, Body::new(0)),
    );
    let signature = KernelSignature {
        name: KERNEL.to_string(),
        params,
    };
    Ok((text, signature, layout))
}

/// The status buffer every kernel writes (see `index_guard`).
pub(crate) fn status_param() -> Param {
    Param::Buffer {
        name: "status".to_string(),
        element: ElementType::I32,
        access: Access::Write,
        extent: vec![attnc_mlir::Extent::Fixed(index_guard::STATUS_LEN as u64)],
    }
}

impl<'a> Gen<'a> {
    pub(crate) fn new(graph: &'a Graph, bq: usize, bk: usize) -> Self {
        Gen {
            graph,
            body: Body::new(1),
            bq,
            bk,
            buffers: HashMap::new(),
            classes: HashMap::new(),
            dims: BTreeMap::new(),
            inputs: HashMap::new(),
            i0: String::new(),
            j0: String::new(),
            b: String::new(),
            h: String::new(),
            c0: String::new(),
            t: None,
            stats: BTreeMap::new(),
            sweep_of: BTreeMap::new(),
            cache: Vec::new(),
            cache_on: false,
            constants: BTreeMap::new(),
            blocks: Blocks::default(),
            feature_major: BTreeSet::new(),
            staging: HashMap::new(),
            row_scratch: String::new(),
            status: None,
        }
    }

    fn signature(&self, plan: &ParallelKernel) -> Result<(Vec<Param>, Layout), CodegenError> {
        let mut buffers = Vec::new();
        let mut ints = Vec::new();
        let mut layout = Layout {
            inputs: Vec::new(),
            int_inputs: Vec::new(),
            outputs: Vec::new(),
            dims: self.graph.dims.iter().map(|d| d.name.clone()).collect(),
            query_tile: self.bq,
            key_tile: self.bk,
            mask: plan.mask,
            scan: false,
            entry: KERNEL,
        };
        layout.add_inputs(self.graph, &mut buffers, &mut ints);
        for (n, name, ty) in self.graph.outputs() {
            let Op::Output { axes, .. } = &self.graph.node(n).op else {
                continue;
            };
            if !axes.contains(&FrameIndex::I) {
                return Err(CodegenError::Unsupported(format!(
                    "output `{name}` is not indexed by the query position i"
                )));
            }
            buffers.push(Param::Buffer {
                name: format!("out_{name}"),
                element: ElementType::F32,
                access: Access::Write,
                extent: vec![
                    attnc_mlir::Extent::Fixed(self.bq as u64),
                    attnc_mlir::Extent::Param(format!("f_{name}")),
                ],
            });
            ints.push(Param::Int {
                name: format!("f_{name}"),
            });
            layout.outputs.push(OutputTile {
                name: name.to_string(),
                axes: axes.clone(),
                dims: ty.dims.clone(),
            });
        }
        buffers.push(status_param());
        buffers.push(Param::Buffer {
            name: "cov".to_string(),
            element: ElementType::I32,
            access: Access::Read,
            extent: vec![attnc_mlir::Extent::Param("n_key_tiles".to_string())],
        });
        ints.push(Param::Int {
            name: "n_key_tiles".to_string(),
        });
        for d in &self.graph.dims {
            ints.push(Param::Int {
                name: format!("d_{}", d.name),
            });
        }
        for w in ["b", "h", "qt"] {
            ints.push(Param::Int {
                name: format!("w_{w}"),
            });
        }
        buffers.extend(ints);
        Ok((buffers, layout))
    }

    /// The prologue of a scan: dims, the slice (b, h) and the inputs; no query tile.
    pub(crate) fn prologue_scan(&mut self, params: &[Param]) -> Result<(), CodegenError> {
        self.prologue_with(params, &["b", "h"])
    }

    fn prologue(&mut self, params: &[Param]) -> Result<(), CodegenError> {
        self.prologue_with(params, &["b", "h", "qt"])
    }

    fn prologue_with(&mut self, params: &[Param], work: &[&str]) -> Result<(), CodegenError> {
        self.c0 = self.body.index(0);
        for d in &self.graph.dims {
            // A dim known when compiling becomes a constant: LLVM then unrolls and vectorises the
            // loops over it (the head dimension above all) and folds arithmetic on it.
            let (i, f) = match self.constants.get(&d.name) {
                Some(v) => (self.body.index(*v), self.body.f32(*v as f64)),
                None => (
                    self.body
                        .op(&format!("arith.index_cast %d_{} : i64 to index", d.name)),
                    self.body
                        .op(&format!("arith.sitofp %d_{} : i64 to f32", d.name)),
                ),
            };
            self.dims.insert(d.name.clone(), (i, f));
        }
        for w in work.iter().copied() {
            let v = self
                .body
                .op(&format!("arith.index_cast %w_{w} : i64 to index"));
            match w {
                "b" => self.b = v,
                "h" => self.h = v,
                _ => {
                    let bq = self.body.index(self.bq as i64);
                    self.i0 = self.body.bini("muli", &v, &bq);
                }
            }
        }
        for p in params {
            let Param::Buffer { name, .. } = p else {
                continue;
            };
            if name == "status" {
                self.bind_status();
                continue;
            }
            let Some(input) = name.strip_prefix("in_") else {
                continue;
            };
            let node = self
                .graph
                .inputs()
                .into_iter()
                .find(|(_, n, _)| *n == input)
                .map(|(n, _, ty)| (n, !ty.dtype.is_float()));
            let Some((node, int)) = node else { continue };
            let n = self
                .body
                .op(&format!("arith.index_cast %n_{input} : i64 to index"));
            let elem = if int { "i32" } else { "f32" };
            let v = self.body.op(&format!(
                "memref.reinterpret_cast %{name} to offset: [0], sizes: [{n}], strides: [1] : memref<{elem}> to memref<?x{elem}>"
            ));
            self.inputs.insert(node, (v, int));
        }
        Ok(())
    }

    pub(crate) fn dim(&mut self, d: &Dim) -> String {
        match d {
            Dim::Sym(s) => self
                .dims
                .get(s)
                .map(|(i, _)| i.clone())
                .unwrap_or_else(|| self.c0.clone()),
            Dim::Const(c) => self.body.index(*c),
            Dim::Add(a, b) | Dim::Sub(a, b) | Dim::Mul(a, b) | Dim::FloorDiv(a, b) => {
                let (x, y) = (self.dim(a), self.dim(b));
                let op = match d {
                    Dim::Add(..) => "addi",
                    Dim::Sub(..) => "subi",
                    Dim::Mul(..) => "muli",
                    _ => "floordivsi",
                };
                self.body.bini(op, &x, &y)
            }
        }
    }

    /// A dim's value as f32.
    pub(crate) fn dim_f32(&self, d: &str) -> Result<String, CodegenError> {
        self.dims
            .get(d)
            .map(|(_, f)| f.clone())
            .ok_or_else(|| CodegenError::Internal(format!("dim {d}")))
    }

    fn feature_len(&mut self, f: &Feature) -> Result<String, CodegenError> {
        match f {
            Feature::Scalar => Ok(self.body.index(1)),
            Feature::Vector(d) => Ok(self.dim(d)),
            other => Err(CodegenError::Unsupported(format!(
                "a value of shape {other:?} in a parallel kernel"
            ))),
        }
    }

    fn value_type(&self, n: NodeIndex) -> Option<attnc_ir::types::ValueType> {
        match self.graph.node(n).results.first() {
            Some(PortType::Value(t)) => Some(t.clone()),
            _ => None,
        }
    }

    /// Allocates a node's buffer in the work item (at function scope).
    pub(crate) fn allocate(&mut self, n: NodeIndex) -> Result<(), CodegenError> {
        if self.buffers.contains_key(&n) {
            return Ok(());
        }
        let Some(t) = self.value_type(n) else {
            return Ok(());
        };
        let mut class = class_of(t.indices);
        // A reduction over j is accumulated row by row of the query tile even when its value
        // does not vary with i (`sum_j(2.0)`, `max_j(k[b, h, j, 0])`): it needs a slot per row.
        if class == Class::PerHead
            && matches!(self.graph.node(n).op, Op::RowReduce { .. } | Op::Aggregate)
        {
            class = Class::Query;
        }
        let f = self.feature_len(&t.feature)?;
        let rows = match class {
            Class::PerHead => self.body.index(1),
            Class::Query => self.body.index(self.bq as i64),
            Class::Key => self.body.index(self.bk as i64),
            Class::Pair => self.body.index((self.bq * self.bk) as i64),
        };
        let size = self.body.bini("muli", &rows, &f);
        let buf = self.body.alloca_zeroed(&size);
        if self.feature_major.contains(&n) && self.transposable(n) {
            let staging = self.body.alloca_zeroed(&size);
            self.staging.insert(n, staging);
        }
        self.buffers.insert(n, (buf, f));
        self.classes.insert(n, class);
        Ok(())
    }

    fn offset(&mut self, n: NodeIndex, at: &At) -> Result<String, CodegenError> {
        let (_, f) =
            self.buffers.get(&n).cloned().ok_or_else(|| {
                CodegenError::Internal(format!("node {} has no buffer", n.index()))
            })?;
        let class = self.classes[&n];
        let fe = at.f.clone().unwrap_or_else(|| self.c0.clone());
        // A scalar value broadcasts over feature positions.
        let scalar = matches!(self.value_type(n).map(|t| t.feature), Some(Feature::Scalar));
        let fe = if scalar { self.c0.clone() } else { fe };
        let need = |x: &Option<String>, what: &str| {
            x.clone().ok_or_else(|| {
                CodegenError::Internal(format!("no {what} position for node {}", n.index()))
            })
        };
        Ok(match class {
            Class::PerHead => fe,
            Class::Query => {
                // A reduction that does not vary with i holds the same value in every row;
                // a reader with no query position (a per-head value) takes row 0.
                let per_head = self
                    .value_type(n)
                    .is_some_and(|t| !t.indices.contains(FrameIndex::I));
                let ii = match &at.ii {
                    None if per_head => self.c0.clone(),
                    _ => need(&at.ii, "query")?,
                };
                self.body.row_offset(&ii, &f, &fe)
            }
            Class::Key if self.feature_major.contains(&n) => {
                let jj = need(&at.jj, "key")?;
                let bk = self.body.index(self.bk as i64);
                self.body.row_offset(&fe, &bk, &jj)
            }
            Class::Key => {
                let jj = need(&at.jj, "key")?;
                self.body.row_offset(&jj, &f, &fe)
            }
            Class::Pair => {
                let ii = need(&at.ii, "query")?;
                let jj = need(&at.jj, "key")?;
                let bk = self.body.index(self.bk as i64);
                let pair = self.body.row_offset(&ii, &bk, &jj);
                // A vector per pair (`s + v[b, h, j]`, `q[b, h, i] - k[b, h, j]`) keeps its
                // features apart: each pair owns `f` consecutive slots, as allocated.
                if scalar {
                    pair
                } else {
                    self.body.row_offset(&pair, &f, &fe)
                }
            }
        })
    }

    pub(crate) fn load_value(&mut self, v: ValueRef, at: &At) -> Result<String, CodegenError> {
        let (buf, _) = self.buffers.get(&v.node).cloned().ok_or_else(|| {
            CodegenError::Internal(format!(
                "node {} is read before it is computed",
                v.node.index()
            ))
        })?;
        let o = self.offset(v.node, at)?;
        Ok(self.body.load(&buf, &o))
    }

    /// Opens the loops over the positions of a node's buffer valid in this tile; returns the
    /// position and how many loops to close.
    fn open_positions(&mut self, n: NodeIndex, rows: &str, cols: &str) -> (At, usize) {
        let class = self.classes[&n];
        let f = self.buffers[&n].1.clone();
        let c0 = self.c0.clone();
        let mut at = At::default();
        let mut open = 0;
        if matches!(class, Class::Query | Class::Pair) {
            at.ii = Some(self.body.open_for(&c0, rows));
            open += 1;
        }
        if matches!(class, Class::Key | Class::Pair) {
            at.jj = Some(self.body.open_for(&c0, cols));
            open += 1;
        }
        at.f = Some(self.body.open_for(&c0, &f));
        (at, open + 1)
    }

    fn close_n(&mut self, n: usize) {
        for _ in 0..n {
            self.body.close();
        }
    }

    /// Computes a node into its buffer over the tile.
    pub(crate) fn compute(
        &mut self,
        n: NodeIndex,
        rows: &str,
        cols: &str,
    ) -> Result<(), CodegenError> {
        self.allocate(n)?;
        let node = self.graph.node(n);
        if let Op::Map { .. } = &node.op {
            let tree = Tree::of_map(self.graph, ValueRef { node: n, result: 0 }, &|_| false);
            if let Tree::Call(f @ (Builtin::Cumsum | Builtin::Cumprod), args) = &tree {
                return self.scan(n, *f, &args[0]);
            }
        }
        if matches!(node.op, Op::Score) && self.score_tile(n, rows)? {
            return Ok(());
        }
        // A feature-major value with whole vectors is computed row-major (vectorised along its
        // rows, as its inputs are laid out) into a staging tile, then transposed by blocks.
        let staged = self.staging.get(&n).cloned();
        let feature_major = self.buffers[&n].0.clone();
        if let Some(staging) = &staged {
            self.feature_major.remove(&n);
            if let Some(b) = self.buffers.get_mut(&n) {
                b.0 = staging.clone();
            }
        }
        let buf = self.buffers[&n].0.clone();
        let (at, open) = self.open_positions(n, rows, cols);
        let v = self.node_value(n, &at)?;
        let o = self.offset(n, &at)?;
        self.body.store(&v, &buf, &o);
        self.close_n(open);
        if let Some(staging) = staged {
            self.feature_major.insert(n);
            if let Some(b) = self.buffers.get_mut(&n) {
                b.0 = feature_major.clone();
            }
            self.transpose_tile(&staging, &feature_major, n);
        }
        Ok(())
    }

    /// A prefix sum or product along a per-head vector (`cumsum(x)`).
    fn scan(&mut self, n: NodeIndex, f: Builtin, x: &Tree) -> Result<(), CodegenError> {
        if self.classes[&n] != Class::PerHead {
            return Err(CodegenError::Unsupported(
                "a prefix scan of a value that varies with i or j".into(),
            ));
        }
        let (buf, len) = self.buffers[&n].clone();
        let init = self.body.f32(if f == Builtin::Cumsum { 0.0 } else { 1.0 });
        let c0 = self.c0.clone();
        let (iv, acc, _) = self.body.open_fold(&c0, &len, &init);
        let at = At {
            f: Some(iv.clone()),
            ..At::default()
        };
        let e = self.tree(x, &at)?;
        let next = self
            .body
            .binf(if f == Builtin::Cumsum { "addf" } else { "mulf" }, &acc, &e);
        self.body.store(&next, &buf, &iv);
        self.body.close_fold(&next);
        Ok(())
    }

    fn node_value(&mut self, n: NodeIndex, at: &At) -> Result<String, CodegenError> {
        match &self.graph.node(n).op {
            Op::Load { indices } => self.load_input(n, indices, at),
            Op::Map { .. } | Op::Mask { .. } => {
                let tree = Tree::of_map(self.graph, ValueRef { node: n, result: 0 }, &|_| false);
                self.tree(&tree, at)
            }
            Op::Score => {
                let ops: Vec<ValueRef> = self.graph.operands(n).iter().map(|(v, _)| *v).collect();
                let len = self.buffers[&ops[0].node].1.clone();
                let zero = self.body.f32(0.0);
                let c0 = self.c0.clone();
                let (f, acc, result) = self.body.open_fold(&c0, &len, &zero);
                let pos = At {
                    f: Some(f),
                    ..at.clone()
                };
                let q = self.load_value(ops[0], &pos)?;
                let k = self.load_value(ops[1], &pos)?;
                let p = self.body.binf("mulf", &q, &k);
                let next = self.body.binf("addf", &acc, &p);
                self.body.close_fold(&next);
                Ok(result)
            }
            other => Err(CodegenError::Unsupported(format!(
                "{} inside a parallel kernel",
                other.mnemonic()
            ))),
        }
    }

    pub(crate) fn frame_index(&mut self, fi: FrameIndex, at: &At) -> Result<String, CodegenError> {
        Ok(match fi {
            FrameIndex::B => self.b.clone(),
            FrameIndex::H => self.h.clone(),
            FrameIndex::I => {
                let ii = at
                    .ii
                    .clone()
                    .ok_or_else(|| CodegenError::Internal("i without a query row".into()))?;
                self.body.bini("addi", &self.i0.clone(), &ii)
            }
            FrameIndex::J => {
                let jj = at
                    .jj
                    .clone()
                    .ok_or_else(|| CodegenError::Internal("j without a key row".into()))?;
                self.body.bini("addi", &self.j0.clone(), &jj)
            }
            FrameIndex::T => self
                .t
                .clone()
                .ok_or_else(|| CodegenError::Internal("t outside a scan".into()))?,
        })
    }

    fn load_input(
        &mut self,
        n: NodeIndex,
        indices: &[LoadIndex],
        at: &At,
    ) -> Result<String, CodegenError> {
        let ops: Vec<ValueRef> = self.graph.operands(n).iter().map(|(v, _)| *v).collect();
        let input = ops[0].node;
        let Op::Input { ty, .. } = &self.graph.node(input).op else {
            return Err(CodegenError::Internal("a load of a non-input".into()));
        };
        let dims = ty.dims.clone();
        let mut coords = Vec::new();
        for ix in indices {
            coords.push(match ix {
                LoadIndex::Frame(fi) => self.frame_index(*fi, at)?,
                LoadIndex::Operand(k) => {
                    let v = self.load_value(ops[*k as usize], at)?;
                    let axis = coords.len();
                    let size = self.dim(&dims[axis]);
                    self.guarded_index(n, axis, &v, &size, at)?
                }
            });
        }
        if coords.len() < dims.len() {
            coords.push(at.f.clone().unwrap_or_else(|| self.c0.clone()));
        }
        let mut offset = self.c0.clone();
        for (c, d) in coords.iter().zip(&dims) {
            let size = self.dim(d);
            let scaled = self.body.bini("muli", &offset, &size);
            offset = self.body.bini("addi", &scaled, c);
        }
        let (buf, int) = self.inputs[&input].clone();
        if int {
            let x = self
                .body
                .op(&format!("memref.load {buf}[{offset}] : memref<?xi32>"));
            Ok(self.body.op(&format!("arith.sitofp {x} : i32 to f32")))
        } else {
            Ok(self.body.load(&buf, &offset))
        }
    }

    /// The feature length of a tree's value, `None` for a scalar.
    fn tree_len(&self, t: &Tree) -> Option<String> {
        match t {
            Tree::Value(v) => match self.value_type(v.node).map(|t| t.feature) {
                Some(Feature::Vector(_)) => self.buffers.get(&v.node).map(|b| b.1.clone()),
                _ => None,
            },
            Tree::Unary(_, a) => self.tree_len(a),
            Tree::Binary(_, a, b) => self.tree_len(a).or_else(|| self.tree_len(b)),
            Tree::Call(
                Builtin::Dot
                | Builtin::SumFeature
                | Builtin::MeanFeature
                | Builtin::MaxFeature
                | Builtin::MinFeature
                | Builtin::Norm,
                _,
            ) => None,
            Tree::Call(_, args) => args.iter().find_map(|a| self.tree_len(a)),
            _ => None,
        }
    }

    fn tree(&mut self, t: &Tree, at: &At) -> Result<String, CodegenError> {
        if !self.cache_on {
            return self.tree_uncached(t, at);
        }
        let key = [at.ii.clone(), at.jj.clone(), at.f.clone()];
        if let Some((_, _, v)) = self.cache.iter().find(|(tt, k, _)| tt == t && *k == key) {
            return Ok(v.clone());
        }
        let v = self.tree_uncached(t, at)?;
        self.cache.push((t.clone(), key, v.clone()));
        Ok(v)
    }

    fn tree_uncached(&mut self, t: &Tree, at: &At) -> Result<String, CodegenError> {
        Ok(match t {
            Tree::Value(v) => self.load_value(*v, at)?,
            Tree::Index(fi) => {
                let i = self.frame_index(*fi, at)?;
                self.body.index_to_f32(&i)
            }
            Tree::Dim(d) => self
                .dims
                .get(d)
                .map(|(_, f)| f.clone())
                .ok_or_else(|| CodegenError::Internal(format!("dim {d}")))?,
            Tree::Int(v) => self.body.f32(*v as f64),
            Tree::Float(v) => self.body.f32(*v),
            Tree::Unary(UnaryOp::Neg, a) => {
                let a = self.tree(a, at)?;
                self.body.op(&format!("arith.negf {a} : f32"))
            }
            Tree::Unary(UnaryOp::Not, a) => {
                let a = self.tree(a, at)?;
                let one = self.body.f32(1.0);
                self.body.binf("subf", &one, &a)
            }
            Tree::Binary(op, a, b) => {
                let (a, b) = (self.tree(a, at)?, self.tree(b, at)?);
                self.binary(*op, &a, &b)?
            }
            Tree::Call(f, args) => self.call(*f, args, at)?,
            Tree::Extract(v, k) => {
                let Tree::Value(vv) = v.as_ref() else {
                    return Err(CodegenError::Unsupported(
                        "indexing a computed vector".into(),
                    ));
                };
                let k = self.tree(k, at)?;
                let idx = self.body.f32_to_index(&k);
                // Out-of-range indices are errors the reference reports; here they are clamped
                // so the kernel never reads outside its buffer.
                let len = self
                    .buffers
                    .get(&vv.node)
                    .map(|b| b.1.clone())
                    .ok_or_else(|| CodegenError::Internal("vector without buffer".into()))?;
                let one = self.body.index(1);
                let last = self.body.bini("subi", &len, &one);
                let lo = self.body.bini("maxsi", &idx, &self.c0.clone());
                let clamped = self.body.bini("minsi", &lo, &last);
                let pos = At {
                    f: Some(clamped),
                    ..at.clone()
                };
                self.load_value(*vv, &pos)?
            }
        })
    }

    pub(crate) fn binary(
        &mut self,
        op: BinaryOp,
        a: &str,
        b: &str,
    ) -> Result<String, CodegenError> {
        let cmp = |g: &mut Self, pred: &str| {
            let c = g.body.op(&format!("arith.cmpf {pred}, {a}, {b} : f32"));
            g.body.op(&format!("arith.uitofp {c} : i1 to f32"))
        };
        Ok(match op {
            BinaryOp::Add => self.body.binf("addf", a, b),
            BinaryOp::Sub => self.body.binf("subf", a, b),
            BinaryOp::Mul => self.body.binf("mulf", a, b),
            BinaryOp::Div => self.body.binf("divf", a, b),
            BinaryOp::FloorDiv => {
                let q = self.body.binf("divf", a, b);
                self.body.math("floor", &q)
            }
            BinaryOp::Rem => {
                let q = self.body.binf("divf", a, b);
                let fq = self.body.math("floor", &q);
                let m = self.body.binf("mulf", b, &fq);
                self.body.binf("subf", a, &m)
            }
            BinaryOp::Eq => cmp(self, "oeq"),
            BinaryOp::Ne => cmp(self, "une"),
            BinaryOp::Lt => cmp(self, "olt"),
            BinaryOp::Le => cmp(self, "ole"),
            BinaryOp::Gt => cmp(self, "ogt"),
            BinaryOp::Ge => cmp(self, "oge"),
            BinaryOp::And => self.body.binf("mulf", a, b),
            BinaryOp::Or => self.body.binf("maximumf", a, b),
            BinaryOp::MatMul => {
                return Err(CodegenError::Unsupported("@ in a parallel kernel".into()));
            }
        })
    }

    fn call(&mut self, f: Builtin, args: &[Tree], at: &At) -> Result<String, CodegenError> {
        let reduce = matches!(
            f,
            Builtin::Dot
                | Builtin::SumFeature
                | Builtin::MeanFeature
                | Builtin::MaxFeature
                | Builtin::MinFeature
                | Builtin::Norm
        );
        if reduce {
            let len = self
                .tree_len(&args[0])
                .ok_or_else(|| CodegenError::Internal(format!("{} of a scalar", f.name())))?;
            let init = self.body.f32(match f {
                Builtin::MaxFeature => f64::NEG_INFINITY,
                Builtin::MinFeature => f64::INFINITY,
                _ => 0.0,
            });
            let c0 = self.c0.clone();
            let (fv, acc, r) = self.body.open_fold(&c0, &len, &init);
            let pos = At {
                f: Some(fv),
                ..at.clone()
            };
            let x = self.tree(&args[0], &pos)?;
            let next = match f {
                Builtin::Dot => {
                    let y = self.tree(&args[1], &pos)?;
                    let p = self.body.binf("mulf", &x, &y);
                    self.body.binf("addf", &acc, &p)
                }
                Builtin::Norm => {
                    let p = self.body.binf("mulf", &x, &x);
                    self.body.binf("addf", &acc, &p)
                }
                Builtin::MaxFeature => self.body.binf("maximumf", &acc, &x),
                Builtin::MinFeature => self.body.binf("minimumf", &acc, &x),
                _ => self.body.binf("addf", &acc, &x),
            };
            self.body.close_fold(&next);
            return Ok(match f {
                Builtin::MeanFeature => {
                    let n = self.body.index_to_f32(&len);
                    self.body.binf("divf", &r, &n)
                }
                Builtin::Norm => self.body.math("sqrt", &r),
                _ => r,
            });
        }
        let v: Vec<String> = args
            .iter()
            .map(|a| self.tree(a, at))
            .collect::<Result<_, _>>()?;
        self.scalar_call(f, &v)
    }

    /// A scalar function of already evaluated arguments.
    pub(crate) fn scalar_call(&mut self, f: Builtin, v: &[String]) -> Result<String, CodegenError> {
        let b = &mut self.body;
        Ok(match f {
            Builtin::Exp => b.math("exp", &v[0]),
            Builtin::Log => b.math("log", &v[0]),
            Builtin::Log1p => b.math("log1p", &v[0]),
            Builtin::Sqrt => b.math("sqrt", &v[0]),
            Builtin::Rsqrt => b.math("rsqrt", &v[0]),
            Builtin::Tanh => b.math("tanh", &v[0]),
            Builtin::Abs => b.math("absf", &v[0]),
            Builtin::Sin => b.math("sin", &v[0]),
            Builtin::Cos => b.math("cos", &v[0]),
            Builtin::Tan => b.math("tan", &v[0]),
            Builtin::Asin => b.math("asin", &v[0]),
            Builtin::Acos => b.math("acos", &v[0]),
            Builtin::Atan => b.math("atan", &v[0]),
            Builtin::Sinh => b.math("sinh", &v[0]),
            Builtin::Cosh => b.math("cosh", &v[0]),
            Builtin::Expm1 => b.math("expm1", &v[0]),
            Builtin::Exp2 => b.math("exp2", &v[0]),
            Builtin::Log2 => b.math("log2", &v[0]),
            Builtin::Erf => b.math("erf", &v[0]),
            Builtin::Sign => {
                // 1 above 0, -1 below, and x itself for 0 and NaN (both comparisons false).
                let zero = b.f32(0.0);
                let one = b.f32(1.0);
                let minus = b.f32(-1.0);
                let pos = b.op(&format!("arith.cmpf ogt, {}, {zero} : f32", v[0]));
                let neg = b.op(&format!("arith.cmpf olt, {}, {zero} : f32", v[0]));
                let lo = b.select_f32(&neg, &minus, &v[0]);
                b.select_f32(&pos, &one, &lo)
            }
            Builtin::Floor | Builtin::ToInt => b.math("floor", &v[0]),
            Builtin::Ceil => b.math("ceil", &v[0]),
            Builtin::ToFloat => v[0].clone(),
            Builtin::Pow => b.op(&format!("math.powf {}, {} : f32", v[0], v[1])),
            Builtin::Min => b.binf("minimumf", &v[0], &v[1]),
            Builtin::Max => b.binf("maximumf", &v[0], &v[1]),
            Builtin::Select => {
                let zero = b.f32(0.0);
                let c = b.op(&format!("arith.cmpf une, {}, {zero} : f32", v[0]));
                b.select_f32(&c, &v[1], &v[2])
            }
            Builtin::Relu => {
                let zero = b.f32(0.0);
                b.binf("maximumf", &v[0], &zero)
            }
            Builtin::Sigmoid | Builtin::Silu => {
                let n = b.op(&format!("arith.negf {} : f32", v[0]));
                let e = b.math("exp", &n);
                let one = b.f32(1.0);
                let d = b.binf("addf", &one, &e);
                let s = b.binf("divf", &one, &d);
                if f == Builtin::Silu {
                    b.binf("mulf", &v[0], &s)
                } else {
                    s
                }
            }
            Builtin::Softplus | Builtin::LogSigmoid => {
                // max(x, 0) + log1p(exp(-|x|)); log_sigmoid(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|)).
                let a = b.math("absf", &v[0]);
                let n = b.op(&format!("arith.negf {a} : f32"));
                let e = b.math("exp", &n);
                let l = b.math("log1p", &e);
                let zero = b.f32(0.0);
                if f == Builtin::Softplus {
                    let m = b.binf("maximumf", &v[0], &zero);
                    b.binf("addf", &m, &l)
                } else {
                    let m = b.binf("minimumf", &v[0], &zero);
                    b.binf("subf", &m, &l)
                }
            }
            Builtin::Elu => {
                let zero = b.f32(0.0);
                let c = b.op(&format!("arith.cmpf ogt, {}, {zero} : f32", v[0]));
                let e = b.math("expm1", &v[0]);
                b.select_f32(&c, &v[0], &e)
            }
            Builtin::Gelu => {
                let x = &v[0];
                let c = b.f32(0.044715);
                let k = b.f32((2.0 / std::f64::consts::PI).sqrt());
                let half = b.f32(0.5);
                let one = b.f32(1.0);
                let x2 = b.binf("mulf", x, x);
                let x3 = b.binf("mulf", &x2, x);
                let cx3 = b.binf("mulf", &c, &x3);
                let inner = b.binf("addf", x, &cx3);
                let scaled = b.binf("mulf", &k, &inner);
                let t = b.math("tanh", &scaled);
                let onet = b.binf("addf", &one, &t);
                let hx = b.binf("mulf", &half, x);
                b.binf("mulf", &hx, &onet)
            }
            other => {
                return Err(CodegenError::Unsupported(format!(
                    "`{}` in a parallel kernel",
                    other.name()
                )));
            }
        })
    }
}

mod blocked;
pub(crate) mod index_guard;
mod rows;
mod sweeps;
