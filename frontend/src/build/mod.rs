//! AST to graph: resolves names, infers every value's type (indices, feature shape, kind),
//! checks shapes symbolically, and emits the ops. All user errors found here are diagnostics
//! with spans; the graph that comes out passes the verifier.

mod declarations;
mod lower;
mod map_key;
mod recurrence;

use crate::ParsedUnit;
use crate::ast::{self, Function, Item, Kernel, Stmt};
use attnc_ir::expr::{ExprArena, ExprId, ExprNode, ExprType, StateTime};
use attnc_ir::graph::{Graph, Node, Op, PortType, ValueRef};
use attnc_ir::types::{Dim, Feature, FrameIndex, IndexSet, ScalarKind, TensorType, ValueType};
use attnc_source::{Diagnostic, Span};
use petgraph::stable_graph::NodeIndex;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Builds the graph of the one kernel in `unit`, or reports every error found.
pub fn build_graph(unit: &ParsedUnit) -> Result<Graph, Vec<Diagnostic>> {
    let mut functions: HashMap<&str, &Function> = HashMap::new();
    let mut diags = Vec::new();
    let mut kernels: Vec<&Kernel> = Vec::new();
    for item in unit.prelude.items.iter().chain(&unit.program.items) {
        match item {
            Item::Function(f) => {
                if let Some(prev) = functions.insert(&f.name.name, f) {
                    diags.push(
                        Diagnostic::error(
                            format!("function `{}` is defined twice", f.name.name),
                            f.name.span,
                            "second definition",
                        )
                        .with_secondary(prev.name.span, "first defined here"),
                    );
                }
            }
            Item::Kernel(k) => kernels.push(k),
        }
    }
    let kernel = match kernels.as_slice() {
        [k] => *k,
        [] => {
            diags.push(Diagnostic::global(
                "the file defines no kernel: write one as `kernel NAME { ... }`",
            ));
            return Err(diags);
        }
        [first, second, ..] => {
            diags.push(
                Diagnostic::error(
                    "a file holds exactly one kernel",
                    second.name.span,
                    "second kernel",
                )
                .with_secondary(first.name.span, "first kernel"),
            );
            return Err(diags);
        }
    };
    let mut builder = Builder::new(kernel, functions);
    builder.diags = diags;
    builder.kernel(kernel);
    if builder.diags.is_empty() {
        Ok(builder.graph)
    } else {
        Err(builder.diags)
    }
}

/// Marks a failure already reported as a diagnostic; callers skip the rest of the statement.
#[derive(Debug)]
pub(crate) struct Reported;

pub(crate) type Res<T> = Result<T, Reported>;

/// What a name in scope stands for.
#[derive(Clone, Debug)]
pub(crate) enum Binding {
    /// A value in the graph.
    Value(ValueRef),
    /// An expression inside the recurrence being built that reads this step's states.
    Inline(ExprId, IndexSet),
    /// A recurrent state by position.
    State(u32),
    /// A constant (numbers and dims only), substituted where it is used rather than made a node.
    Constant(ast::Expr),
}

#[derive(Default)]
pub(crate) struct Scope {
    pub(crate) vars: HashMap<String, (Binding, Span)>,
}

impl Scope {
    pub(crate) fn get(&self, name: &str) -> Option<&(Binding, Span)> {
        self.vars.get(name)
    }
}

/// Where lowered expressions go: a fresh map's arena, or the recurrence being built.
pub(crate) struct Ctx {
    pub(crate) arena: ExprArena,
    pub(crate) operands: Vec<ValueRef>,
    /// `Some` inside a recurrence: which value of a state its name reads.
    pub(crate) state_time: Option<StateTime>,
    /// The calls already inlined into this arena, by function and arguments. A pure function
    /// called again with the same arguments is lowered once more into a value of its own and
    /// then shared (see `Builder::call_values`), so `f(x) + f(x)` nested n deep costs n, not 2^n.
    pub(crate) calls: HashSet<CallKey>,
}

impl Ctx {
    pub(crate) fn map() -> Self {
        Ctx {
            arena: ExprArena::default(),
            operands: Vec::new(),
            state_time: None,
            calls: HashSet::new(),
        }
    }
}

/// A `let` inside a function: its name, what it is bound to, and where.
pub(crate) type LetBinding = (String, (Binding, Span));

/// A function call by what decides its result: the function and its bound arguments.
pub(crate) type CallKey = (String, Vec<ArgKey>);

/// What an argument is bound to, comparable and hashable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ArgKey {
    Value(ValueRef),
    Inline(ExprId),
}

/// How many expression nodes the builder lowers, counting every inlined function body again,
/// before it gives up: the bound that keeps inlining from running away where sharing does not
/// help (arguments that are themselves new expressions at every level).
pub(crate) const MAX_LOWERED_NODES: usize = 4_000_000;

/// How deep lowering may recurse: the parser bounds one expression, but inlining a function
/// continues the caller's recursion into the body, and constants are substituted at each use.
/// 512 keeps a build inside the 2 MiB stack of a spawned thread (2048 did not, in test builds).
pub(crate) const MAX_LOWERING_DEPTH: u32 = 512;

/// A lowered expression: its handle and the indices it varies with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lowered {
    pub(crate) id: ExprId,
    pub(crate) indices: IndexSet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Parallel,
    Recurrent,
}

pub(crate) struct InputInfo {
    pub(crate) node: NodeIndex,
    pub(crate) ty: TensorType,
}

pub(crate) struct OutputInfo {
    pub(crate) ty: TensorType,
    pub(crate) span: Span,
    pub(crate) assigned: Option<Span>,
}

pub(crate) struct Builder<'a> {
    pub(crate) graph: Graph,
    pub(crate) diags: Vec<Diagnostic>,
    pub(crate) functions: HashMap<&'a str, &'a Function>,
    pub(crate) dims: BTreeMap<String, Span>,
    pub(crate) inputs: HashMap<String, InputInfo>,
    pub(crate) outputs: BTreeMap<String, OutputInfo>,
    /// Where each frame index got its range, for messages about conflicting ranges.
    pub(crate) extent_spans: BTreeMap<FrameIndex, Span>,
    pub(crate) frame: Frame,
    /// Every `mask` statement, lowered into one arena and and-ed together as they come.
    pub(crate) mask: Option<(Ctx, Lowered, Span)>,
    /// Reductions over j, which all take the kernel's mask once it is known.
    pub(crate) reductions: Vec<NodeIndex>,
    pub(crate) call_stack: Vec<String>,
    pub(crate) loads:
        HashMap<(NodeIndex, Vec<attnc_ir::graph::LoadIndex>, Vec<ValueRef>), NodeIndex>,
    pub(crate) recurrence_span: Option<Span>,
    /// The first use of i or j, to explain why a kernel cannot also be recurrent.
    pub(crate) parallel_use: Option<Span>,
    /// Where the first `mask` statement is, once the mask op exists.
    pub(crate) mask_span: Option<Span>,
    /// Names whose definition failed (already reported): uses of them stay silent.
    pub(crate) failed: HashSet<String>,
    /// The declared feature shape of each state of the recurrence being built.
    pub(crate) state_features: Vec<Feature>,
    /// Every kernel-level `let` by name, so a use before it can point at the definition.
    pub(crate) lets_ahead: HashMap<String, Span>,
    /// Dim names already reported as unknown: one error per missing dim, not one per use.
    pub(crate) unknown_dims: std::collections::HashSet<String>,
    /// Whether an output declaration failed (already reported): "no output" would repeat it.
    pub(crate) output_failed: bool,
    /// The lets of each function already inlined, by function and arguments: their values
    /// are graph nodes, shared by every later call with the same arguments.
    pub(crate) function_lets: HashMap<CallKey, Vec<LetBinding>>,
    /// Calls made values of their own because they were repeated (see [`Ctx::calls`]).
    pub(crate) call_values: HashMap<CallKey, ValueRef>,
    /// Anonymous maps already made, by content (see [`map_key`]).
    pub(crate) maps: HashMap<map_key::MapKey, ValueRef>,
    /// Expression nodes lowered so far, against [`MAX_LOWERED_NODES`].
    pub(crate) lowered: usize,
    /// The current lowering recursion, against [`MAX_LOWERING_DEPTH`].
    pub(crate) depth: u32,
    /// Set once a size or depth limit was reported, so the rest of the build stays quiet.
    pub(crate) over_limit: bool,
}

impl<'a> Builder<'a> {
    fn new(kernel: &Kernel, functions: HashMap<&'a str, &'a Function>) -> Self {
        Builder {
            graph: Graph::new(kernel.name.name.clone()),
            diags: Vec::new(),
            functions,
            dims: BTreeMap::new(),
            inputs: HashMap::new(),
            outputs: BTreeMap::new(),
            extent_spans: BTreeMap::new(),
            frame: Frame::Parallel,
            mask: None,
            reductions: Vec::new(),
            call_stack: Vec::new(),
            loads: HashMap::new(),
            recurrence_span: None,
            parallel_use: None,
            state_features: Vec::new(),
            mask_span: None,
            failed: std::collections::HashSet::new(),
            lets_ahead: HashMap::new(),
            unknown_dims: std::collections::HashSet::new(),
            output_failed: false,
            function_lets: HashMap::new(),
            call_values: HashMap::new(),
            maps: HashMap::new(),
            lowered: 0,
            depth: 0,
            over_limit: false,
        }
    }

    pub(crate) fn error(&mut self, d: Diagnostic) -> Reported {
        self.diags.push(d);
        Reported
    }

    fn kernel(&mut self, k: &Kernel) {
        let mut scope = Scope::default();
        for stmt in &k.body {
            if let Stmt::Let(l) = stmt {
                self.lets_ahead
                    .entry(l.name.name.clone())
                    .or_insert(l.name.span);
            }
        }
        for stmt in &k.body {
            if let Stmt::Dims(dims) = stmt {
                self.declare_dims(dims, &scope);
            }
        }
        for stmt in &k.body {
            match stmt {
                Stmt::Input(decl) => self.declare_input(decl, &scope),
                Stmt::Output(decl) => self.declare_output(decl),
                _ => {}
            }
        }
        for stmt in &k.body {
            // A failed statement is already reported; carry on to find more errors.
            let _ = self.statement(stmt, &mut scope);
        }
        self.finish(k);
    }

    fn statement(&mut self, stmt: &Stmt, scope: &mut Scope) -> Res<()> {
        match stmt {
            Stmt::Dims(_) | Stmt::Input(_) | Stmt::Output(_) | Stmt::Error(_) => Ok(()),
            Stmt::Let(l) => {
                self.check_new_name(&l.name, scope)?;
                let binding = self.let_binding(l, scope).inspect_err(|_| {
                    self.failed.insert(l.name.name.clone());
                })?;
                scope
                    .vars
                    .insert(l.name.name.clone(), (binding, l.name.span));
                Ok(())
            }
            Stmt::Mask(e) => self.add_mask(e, scope),
            Stmt::Require(e) => self.requirement(e, scope),
            Stmt::Assign(a) => {
                let v = self.value(&a.value, scope, None)?;
                self.assign_output(a, v)
            }
            Stmt::State(s) => {
                self.failed.insert(s.name.name.clone());
                Err(self.error(Diagnostic::error(
                    "`state` is only allowed inside `recurrence t { ... }`",
                    s.span,
                    "outside a recurrence",
                )))
            }
            Stmt::Recurrence(r) => self.recurrence(r, scope),
        }
    }

    /// Rejects a `let` that would hide another name; hiding makes programs hard to read.
    pub(crate) fn check_new_name(&mut self, name: &ast::Ident, scope: &Scope) -> Res<()> {
        let n = name.name.as_str();
        let earlier = if FrameIndex::from_name(n).is_some() || n == "inf" {
            return Err(self.error(Diagnostic::error(
                format!("`{n}` is a reserved name"),
                name.span,
                "b, h, i, j and t are the kernel's indices; inf is infinity",
            )));
        } else if let Some((_, span)) = scope.get(n) {
            Some(*span)
        } else if let Some(span) = self.dims.get(n) {
            Some(*span)
        } else if self.inputs.contains_key(n) || self.outputs.contains_key(n) {
            None
        } else {
            return Ok(());
        };
        let mut d = Diagnostic::error(
            format!("`{n}` is already defined"),
            name.span,
            "defined again here",
        );
        if let Some(span) = earlier {
            d = d.with_secondary(span, "first defined here");
        }
        Err(self.error(d))
    }

    /// Binds a `let`: constants are substituted at their uses, everything else becomes a value.
    pub(crate) fn let_binding(&mut self, l: &ast::Let, scope: &Scope) -> Res<Binding> {
        if self.is_constant(&l.value, scope) {
            // Lowered once here only to report errors in it at its definition.
            let mut ctx = Ctx::map();
            self.lower(&l.value, scope, &mut ctx)?;
            return Ok(Binding::Constant(l.value.clone()));
        }
        Ok(Binding::Value(self.value(
            &l.value,
            scope,
            Some(&l.name.name),
        )?))
    }

    /// Numbers, dims and constants combined by operators and scalar functions.
    fn is_constant(&self, e: &ast::Expr, scope: &Scope) -> bool {
        match &e.kind {
            ast::ExprKind::Int(_) | ast::ExprKind::Float(_) => true,
            ast::ExprKind::Name(n) => {
                self.dims.contains_key(n) || matches!(scope.get(n), Some((Binding::Constant(_), _)))
            }
            ast::ExprKind::Unary(_, a) => self.is_constant(a, scope),
            ast::ExprKind::Binary(op, a, b) => {
                *op != ast::BinaryOp::MatMul
                    && self.is_constant(a, scope)
                    && self.is_constant(b, scope)
            }
            ast::ExprKind::Call { callee, args } => {
                let scalar_fn = attnc_ir::expr::Builtin::unary_elementwise(&callee.name).is_some()
                    || matches!(
                        callee.name.as_str(),
                        "pow" | "min" | "max" | "int" | "float"
                    );
                scalar_fn && !args.is_empty() && args.iter().all(|a| self.is_constant(a, scope))
            }
            ast::ExprKind::Index { .. } => false,
        }
    }

    pub(crate) fn value_type(&self, v: ValueRef) -> ValueType {
        match self.graph.result_type(v) {
            PortType::Value(t) => t.clone(),
            // Tensors are only ever operands of loads, never bound to names.
            PortType::Tensor(_) => ValueType {
                kind: ScalarKind::Float,
                indices: IndexSet::EMPTY,
                feature: Feature::Scalar,
            },
        }
    }

    /// Records that frame index `fi` ranges over `dim`, or reports a conflict with an earlier use.
    pub(crate) fn unify_extent(&mut self, fi: FrameIndex, dim: &Dim, span: Span) -> Res<()> {
        match self.graph.extents.get(&fi) {
            None => {
                self.graph.extents.insert(fi, dim.clone());
                self.extent_spans.insert(fi, span);
                Ok(())
            }
            Some(existing) if existing == dim => Ok(()),
            Some(existing) => {
                let first = self.extent_spans[&fi];
                let msg = format!(
                    "index `{}` ranges over {} here, but over {} where it was first used",
                    fi.name(),
                    dim,
                    existing
                );
                Err(self.error(
                    Diagnostic::error(msg, span, format!("this axis has size {dim}"))
                        .with_secondary(
                            first,
                            format!("here `{}` ranges over {existing}", fi.name()),
                        ),
                ))
            }
        }
    }

    /// Lowers `e` to a value in the graph: a new map node unless `e` is already one value.
    pub(crate) fn value(
        &mut self,
        e: &ast::Expr,
        scope: &Scope,
        name: Option<&str>,
    ) -> Res<ValueRef> {
        let mut ctx = Ctx::map();
        let root = self.lower(e, scope, &mut ctx)?;
        self.materialize(ctx, root, e.span, name)
    }

    pub(crate) fn materialize(
        &mut self,
        ctx: Ctx,
        root: Lowered,
        span: Span,
        name: Option<&str>,
    ) -> Res<ValueRef> {
        let name = name.map(|n| self.qualified(n));
        if let ExprNode::Operand(k) = ctx.arena.node(root.id) {
            let v = ctx.operands[*k as usize];
            let node = self.graph.node_mut(v.node);
            if node.name.is_none() {
                node.name = name;
            }
            return Ok(v);
        }
        let ExprType { kind, feature } = ctx.arena.ty(root.id).clone();
        if let Feature::Diag(_) = feature {
            return Err(self.error(Diagnostic::error(
                "`diag(...)` can only be used as an operand of `@`",
                span,
                "a diagonal matrix is never materialised",
            )));
        }
        let ty = ValueType {
            kind,
            indices: root.indices,
            feature,
        };
        // Named values keep their own nodes (and names in dumps); anonymous ones are shared.
        let key = name
            .is_none()
            .then(|| map_key::MapKey::new(&ctx.arena, root.id, &ctx.operands));
        if let Some(v) = key.as_ref().and_then(|k| self.maps.get(k)) {
            return Ok(*v);
        }
        let node = self.graph.add_node(Node {
            op: Op::Map {
                expr: ctx.arena,
                root: root.id,
            },
            results: vec![PortType::Value(ty)],
            name,
            span,
        });
        for (k, operand) in ctx.operands.iter().enumerate() {
            self.graph.connect(*operand, node, k as u32);
        }
        let v = ValueRef { node, result: 0 };
        if let Some(key) = key {
            self.maps.insert(key, v);
        }
        Ok(v)
    }

    /// Labels nodes made inside an inlined function with the function's name (`softmax.m`).
    pub(crate) fn qualified(&self, name: &str) -> String {
        if self.call_stack.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.call_stack.join("."), name)
        }
    }

    fn finish(&mut self, k: &Kernel) {
        let mask_indices = self.connect_masks();
        if self.graph.topo_order().is_none() {
            let span = self.mask_span.unwrap_or(k.name.span);
            self.diags.push(Diagnostic::error(
                "the mask depends on a reduction over j, which the mask itself restricts",
                span,
                "this mask reads a value computed with sum_j, max_j or min_j",
            ));
        } else if let Some(indices) = mask_indices {
            self.widen_for_mask(indices);
        }
        // An assignment that failed to check leaves its output unassigned: say nothing more then.
        let already_failed = !self.diags.is_empty();
        let unassigned: Vec<(String, Span)> = self
            .outputs
            .iter()
            .filter(|(_, o)| o.assigned.is_none() && !already_failed)
            .map(|(n, o)| (n.clone(), o.span))
            .collect();
        for (name, span) in unassigned {
            self.diags.push(Diagnostic::error(
                format!("output `{name}` is never assigned"),
                span,
                format!("assign it, e.g. `{name}[b, h, i] = ...;`"),
            ));
        }
        if self.outputs.is_empty() && !self.output_failed {
            self.diags.push(Diagnostic::error(
                "the kernel has no output",
                k.name.span,
                "declare one with `output o: f32[B, H, S, D];` and assign it",
            ));
        }
        // A range comes from a use of the index; after an error that use may be what failed.
        if self.diags.is_empty() {
            self.check_index_ranges(k);
        }
        if let (Some(rec), Some(par)) = (self.recurrence_span, self.parallel_use) {
            self.diags.push(
                Diagnostic::error(
                    "a kernel is either parallel (indices i and j) or recurrent (index t), not both",
                    par,
                    "i or j used here",
                )
                .with_secondary(rec, "recurrence here")
                .with_note("write the two parts as two kernels"),
            );
        }
    }

    fn add_mask(&mut self, e: &ast::Expr, scope: &Scope) -> Res<()> {
        let (mut ctx, prev, first_span) = self.mask.take().unwrap_or_else(|| {
            let ctx = Ctx::map();
            let dummy = Lowered {
                id: ExprId::placeholder(),
                indices: IndexSet::EMPTY,
            };
            (ctx, dummy, e.span)
        });
        let had_mask = !ctx.arena.is_empty();
        let result = self.lower(e, scope, &mut ctx).and_then(|low| {
            let ty = ctx.arena.ty(low.id).clone();
            let allowed =
                IndexSet::of(&[FrameIndex::B, FrameIndex::H, FrameIndex::I, FrameIndex::J]);
            if ty.kind != ScalarKind::Bool
                || ty.feature != Feature::Scalar
                || !low.indices.is_subset(allowed)
            {
                let shown = ValueType {
                    kind: ty.kind,
                    indices: low.indices,
                    feature: ty.feature,
                };
                return Err(self.error(Diagnostic::error(
                    "a mask must be a boolean condition on b, h, i and j",
                    e.span,
                    format!("this is {shown}"),
                )));
            }
            if had_mask {
                self.binary(ast::BinaryOp::And, prev, low, e.span, &mut ctx)
            } else {
                Ok(low)
            }
        });
        match result {
            Ok(root) => {
                self.mask = Some((ctx, root, first_span));
                Ok(())
            }
            Err(r) => {
                if had_mask {
                    self.mask = Some((ctx, prev, first_span));
                }
                Err(r)
            }
        }
    }

    /// Makes the mask op from all `mask` statements and hands it to each reduction over j;
    /// returns the indices the mask varies with.
    fn connect_masks(&mut self) -> Option<IndexSet> {
        let (ctx, root, span) = self.mask.take()?;
        let ty = ValueType {
            kind: ScalarKind::Bool,
            indices: root.indices,
            feature: Feature::Scalar,
        };
        let operands = ctx.operands.clone();
        let mask = self.graph.add_node(Node {
            op: Op::Mask {
                expr: ctx.arena,
                root: root.id,
            },
            results: vec![PortType::Value(ty)],
            name: None,
            span,
        });
        for (k, v) in operands.iter().enumerate() {
            self.graph.connect(*v, mask, k as u32);
        }
        self.mask_span = Some(span);
        for r in self.reductions.clone() {
            let position = self.graph.operands(r).len() as u32;
            self.graph.connect(
                ValueRef {
                    node: mask,
                    result: 0,
                },
                r,
                position,
            );
        }
        Some(root.indices)
    }

    /// A sum over the unmasked keys varies with whatever the mask varies with, less j:
    /// `sum_j(k[b, h, j, 0])` under `mask j <= i` differs per query. The masks are only known
    /// once the kernel is read, so the reductions' types, and those of every value computed
    /// from them, are widened here; an output that then varies with an index it is not indexed
    /// by is an error.
    fn widen_for_mask(&mut self, mask: IndexSet) {
        let extra = mask.without(FrameIndex::J);
        let Some(order) = self.graph.topo_order() else {
            return;
        };
        let mut added: BTreeMap<NodeIndex, IndexSet> = BTreeMap::new();
        for n in order {
            let mut add = IndexSet::EMPTY;
            for (v, _) in self.graph.operands(n) {
                if let Some(a) = added.get(&v.node) {
                    add = add.union(*a);
                }
            }
            let op = &self.graph.node(n).op;
            if matches!(op, Op::Mask { .. } | Op::Input { .. }) {
                continue;
            }
            if matches!(op, Op::RowReduce { .. } | Op::Aggregate) {
                add = add.union(extra).without(FrameIndex::J);
            }
            if let Op::Output { name, axes, .. } = op {
                let Some(source) = self.graph.operands(n).first().map(|(v, _)| *v) else {
                    continue;
                };
                let varies = self
                    .graph
                    .value_type(source)
                    .map_or(IndexSet::EMPTY, |t| t.indices)
                    .union(add);
                if let Some(fi) = varies.iter().find(|fi| !axes.contains(fi)) {
                    let span = self.graph.node(n).span;
                    self.diags.push(Diagnostic::error(
                        format!(
                            "output `{name}` varies with `{}` through the mask, which makes its sums over j differ per `{}`, but it is not indexed by `{}`",
                            fi.name(),
                            fi.name(),
                            fi.name()
                        ),
                        span,
                        "this assignment",
                    ));
                }
                continue;
            }
            if add.is_empty() {
                continue;
            }
            for r in &mut self.graph.node_mut(n).results {
                if let PortType::Value(t) = r {
                    t.indices = t.indices.union(add);
                }
            }
            added.insert(n, add);
        }
        self.graph.refresh_edge_types();
    }

    fn check_index_ranges(&mut self, k: &Kernel) {
        let mut used = IndexSet::EMPTY;
        for n in self.graph.node_indices() {
            for r in &self.graph.node(n).results {
                if let PortType::Value(t) = r {
                    used = used.union(t.indices);
                }
            }
        }
        for fi in used.iter() {
            if !self.graph.extents.contains_key(&fi) {
                let example = match fi {
                    FrameIndex::J => "k[b, h, j]",
                    FrameIndex::T => "q[b, h, t]",
                    FrameIndex::I => "q[b, h, i]",
                    FrameIndex::H => "q[b, h, i]",
                    FrameIndex::B => "q[b, h, i]",
                };
                self.diags.push(Diagnostic::error(
                    format!("cannot tell the range of index `{}`", fi.name()),
                    k.name.span,
                    format!(
                        "use `{}` directly as an index of some input, e.g. {example}",
                        fi.name()
                    ),
                ));
            }
        }
    }
}
