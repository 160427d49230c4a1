//! Expressions to ops: elementwise parts go into a map's arena; tensor reads, the scoring and
//! aggregation contractions and reductions over j become nodes of their own, referenced as
//! operands. Types are inferred and checked on the way.

use super::{
    ArgKey, Binding, Builder, CallKey, Ctx, Frame, Lowered, MAX_LOWERED_NODES, MAX_LOWERING_DEPTH,
    Res, Scope,
};
use crate::ast::{self, BinaryOp, ExprKind, UnaryOp};
use attnc_ir::expr::{Builtin, ExprId, ExprNode, ExprType, StateTime};
use attnc_ir::graph::{LoadIndex, Node, Op, PortType, ReduceKind, ValueRef};
use attnc_ir::types::{Feature, FrameIndex, IndexSet, ScalarKind, ValueType};
use attnc_source::wording::count;
use attnc_source::{Diagnostic, Span};

/// The calls that are not unary elementwise built-ins, for "did you mean" suggestions.
const OTHER_CALLS: &[&str] = &[
    "sum_j", "max_j", "min_j", "max", "min", "sum", "mean", "norm", "pow", "select", "int",
    "float", "dot", "outer", "diag", "cumsum", "cumprod",
];

fn scalar(kind: ScalarKind) -> ExprType {
    ExprType {
        kind,
        feature: Feature::Scalar,
    }
}

fn describe_feature(f: &Feature) -> String {
    match f {
        Feature::Scalar => "a scalar".to_string(),
        Feature::Vector(d) => format!("a vector over {d}"),
        Feature::Matrix(a, b) => format!("a {a}x{b} matrix"),
        Feature::Diag(d) => format!("diag over {d}"),
    }
}

impl Builder<'_> {
    /// Lowers one expression, within the size and depth limits (see [`MAX_LOWERED_NODES`]).
    pub(crate) fn lower(&mut self, e: &ast::Expr, scope: &Scope, ctx: &mut Ctx) -> Res<Lowered> {
        if self.over_limit {
            return Err(super::Reported);
        }
        self.lowered += 1;
        if self.lowered > MAX_LOWERED_NODES || self.depth >= MAX_LOWERING_DEPTH {
            self.over_limit = true;
            let (message, label) = if self.depth >= MAX_LOWERING_DEPTH {
                (
                    format!(
                        "expressions nest more than {MAX_LOWERING_DEPTH} levels deep once functions and constants are substituted"
                    ),
                    "too deep here",
                )
            } else {
                (
                    format!(
                        "the kernel grows past {MAX_LOWERED_NODES} expression nodes once its functions are inlined and its constants substituted"
                    ),
                    "the limit was reached here",
                )
            };
            let mut d = Diagnostic::error(message, e.span, label);
            if !self.call_stack.is_empty() {
                d = d.with_note(format!(
                    "while inlining {}",
                    describe_calls(&self.call_stack)
                ));
            }
            return Err(self.error(d));
        }
        self.depth += 1;
        let result = self.lower_unlimited(e, scope, ctx);
        self.depth -= 1;
        result
    }

    fn lower_unlimited(&mut self, e: &ast::Expr, scope: &Scope, ctx: &mut Ctx) -> Res<Lowered> {
        // Inside a recurrence, whatever does not read a state is computed outside it, once per
        // step, as ordinary ops: only the state arithmetic stays in the recurrence.
        if ctx.state_time.is_some()
            && !is_leaf(e)
            && !stays_in_recurrence(e)
            && !self.mentions_state(e, scope)
        {
            let v = self.value(e, scope, None)?;
            return Ok(self.operand(ctx, v, e.span));
        }
        match &e.kind {
            ExprKind::Int(v) => Ok(push(
                ctx,
                ExprNode::Int(*v),
                scalar(ScalarKind::Int),
                IndexSet::EMPTY,
                e.span,
            )),
            ExprKind::Float(v) => Ok(push(
                ctx,
                ExprNode::Float(*v),
                scalar(ScalarKind::Float),
                IndexSet::EMPTY,
                e.span,
            )),
            ExprKind::Name(n) => self.lower_name(n, e.span, scope, ctx),
            ExprKind::Unary(op, a) => {
                let a = self.lower(a, scope, ctx)?;
                self.unary(*op, a, e.span, ctx)
            }
            ExprKind::Binary(op, a, b) => {
                let a = self.lower(a, scope, ctx)?;
                let b = self.lower(b, scope, ctx)?;
                self.binary(*op, a, b, e.span, ctx)
            }
            ExprKind::Call { callee, args } => self.lower_call(callee, args, e.span, scope, ctx),
            ExprKind::Index { base, indices } => {
                self.lower_index(base, indices, e.span, scope, ctx)
            }
        }
    }

    /// Adds `v` as an operand of the expression being built (once, however often it is used).
    pub(crate) fn operand(&mut self, ctx: &mut Ctx, v: ValueRef, span: Span) -> Lowered {
        let ty = self.value_type(v);
        let k = match ctx.operands.iter().position(|o| *o == v) {
            Some(k) => k,
            None => {
                ctx.operands.push(v);
                ctx.operands.len() - 1
            }
        };
        push(
            ctx,
            ExprNode::Operand(k as u32),
            ExprType {
                kind: ty.kind,
                feature: ty.feature,
            },
            ty.indices,
            span,
        )
    }

    /// Whether `e` reads a recurrent state, directly or through a let that does.
    pub(crate) fn mentions_state(&self, e: &ast::Expr, scope: &Scope) -> bool {
        let bound_to_state = |n: &str| {
            matches!(
                scope.get(n),
                Some((Binding::State(_), _)) | Some((Binding::Inline(..), _))
            )
        };
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Float(_) => false,
            ExprKind::Name(n) => bound_to_state(n),
            ExprKind::Unary(_, a) => self.mentions_state(a, scope),
            ExprKind::Binary(_, a, b) => {
                self.mentions_state(a, scope) || self.mentions_state(b, scope)
            }
            ExprKind::Call { args, .. } => args.iter().any(|a| self.mentions_state(a, scope)),
            ExprKind::Index { base, indices } => {
                bound_to_state(&base.name) || indices.iter().any(|a| self.mentions_state(a, scope))
            }
        }
    }

    fn note_index_use(&mut self, fi: FrameIndex, span: Span) -> Res<()> {
        match (self.frame, fi) {
            (Frame::Parallel, FrameIndex::T) => Err(self.error(Diagnostic::error(
                "index `t` only exists inside `recurrence t { ... }`",
                span,
                "outside a recurrence",
            ))),
            (Frame::Recurrent, FrameIndex::I | FrameIndex::J) => {
                Err(self.error(Diagnostic::error(
                    format!("index `{}` is not available inside a recurrence", fi.name()),
                    span,
                    "a recurrence steps over `t`",
                )))
            }
            (Frame::Parallel, FrameIndex::I | FrameIndex::J) => {
                self.parallel_use.get_or_insert(span);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn lower_name(&mut self, n: &str, span: Span, scope: &Scope, ctx: &mut Ctx) -> Res<Lowered> {
        // A failed definition, or a dim already reported as undeclared: said once already.
        let reported = self.failed.contains(n) || self.unknown_dims.contains(n);
        if reported && scope.get(n).is_none() {
            return Err(super::Reported);
        }
        if let Some(fi) = FrameIndex::from_name(n) {
            self.note_index_use(fi, span)?;
            return Ok(push(
                ctx,
                ExprNode::Index(fi),
                scalar(ScalarKind::Int),
                IndexSet::of(&[fi]),
                span,
            ));
        }
        if let Some((binding, _)) = scope.get(n) {
            return match binding.clone() {
                Binding::Value(v) => Ok(self.operand(ctx, v, span)),
                Binding::Inline(id, indices) => match ctx.state_time {
                    Some(StateTime::Current) => Ok(Lowered { id, indices }),
                    _ => Err(self.error(Diagnostic::error(
                        format!("`{n}` reads this step's states, which a state update cannot use"),
                        span,
                        "a `state` update reads the previous step's states only",
                    ))),
                },
                Binding::State(k) => self.lower_state(n, k, span, ctx),
                Binding::Constant(e) => self.lower(&e, scope, ctx),
            };
        }
        if self.dims.contains_key(n) {
            return Ok(push(
                ctx,
                ExprNode::Dim(n.to_string()),
                scalar(ScalarKind::Int),
                IndexSet::EMPTY,
                span,
            ));
        }
        if n == "inf" {
            return Ok(push(
                ctx,
                ExprNode::Float(f64::INFINITY),
                scalar(ScalarKind::Float),
                IndexSet::EMPTY,
                span,
            ));
        }
        if let Some(input) = self.inputs.get(n) {
            let rank = input.ty.dims.len();
            if rank > 1 {
                let example = if rank == 4 { "[b, h, i]" } else { "[...]" };
                return Err(self.error(Diagnostic::error(
                    format!("`{n}` has {rank} axes and must be indexed"),
                    span,
                    format!("e.g. `{n}{example}` for a row"),
                )));
            }
            let v = self.load(n, &[], span, scope)?;
            return Ok(self.operand(ctx, v, span));
        }
        if let Some(&definition) = self.lets_ahead.get(n)
            && definition.start > span.start
        {
            return Err(self.error(
                Diagnostic::error(
                    format!("`{n}` is used before its definition"),
                    span,
                    "used here",
                )
                .with_secondary(definition, "defined here, later")
                .with_note(format!("move `let {n} = ...;` above its first use")),
            ));
        }
        let msg = if self.outputs.contains_key(n) {
            format!("output `{n}` cannot be read; bind the value with `let` and use that")
        } else if self.functions.contains_key(n) {
            format!("`{n}` is a function; call it, e.g. `{n}(...)`")
        } else {
            format!("unknown name `{n}`")
        };
        let label = match self.closest_name(n, scope) {
            Some(near) => format!("did you mean `{near}`?"),
            None => "not defined here".to_string(),
        };
        Err(self.error(Diagnostic::error(msg, span, label)))
    }

    /// The frame index an undefined name written as an index most likely stands for: the one
    /// index a single edit away (`jj`, `j1` for `j`) that can range over `dim`. The general
    /// "did you mean" allows no edit to names this short, and a bare letter such as `x` is
    /// one edit from every index, so it gets no suggestion.
    fn misspelt_index(
        &self,
        n: &str,
        dim: &attnc_ir::types::Dim,
        scope: &Scope,
    ) -> Option<FrameIndex> {
        let defined = scope.get(n).is_some()
            || self.inputs.contains_key(n)
            || self.outputs.contains_key(n)
            || self.dims.contains_key(n)
            || self.functions.contains_key(n)
            || self.lets_ahead.contains_key(n);
        if defined || n.chars().count() < 2 {
            return None;
        }
        let mut near = FrameIndex::ALL.into_iter().filter(|fi| {
            attnc_source::suggest::edit_distance(n, fi.name()) == 1
                && self.graph.extents.get(fi).is_none_or(|d| d == dim)
        });
        match (near.next(), near.next()) {
            (Some(fi), None) => Some(fi),
            _ => None,
        }
    }

    /// The frame index a tensor name written as an index most likely stands for: the index
    /// that tensor is itself read with on an axis of the same size (`v[b, h, k]` after
    /// `k[b, h, j]` means `j`), else an index of the query or key axes with that size.
    fn index_for(&self, tensor: &str, dim: &attnc_ir::types::Dim) -> Option<FrameIndex> {
        let info = self.inputs.get(tensor)?;
        let from_loads = self
            .loads
            .keys()
            .filter(|(node, _, _)| *node == info.node)
            .flat_map(|(_, indices, _)| indices.iter().zip(&info.ty.dims))
            .find_map(|(index, d)| match index {
                LoadIndex::Frame(fi) if d == dim && matches!(fi, FrameIndex::I | FrameIndex::J) => {
                    Some(*fi)
                }
                _ => None,
            });
        from_loads.or_else(|| {
            [FrameIndex::J, FrameIndex::I]
                .into_iter()
                .find(|fi| self.graph.extents.get(fi) == Some(dim))
        })
    }

    /// The known name nearest to a misspelt one: names in scope, dims, inputs, functions and
    /// the kernel's indices.
    fn closest_name(&self, n: &str, scope: &Scope) -> Option<String> {
        let indices = ["b", "h", "i", "j", "t"];
        let known = scope
            .vars
            .keys()
            .map(String::as_str)
            .chain(self.dims.keys().map(String::as_str))
            .chain(self.inputs.keys().map(String::as_str))
            .chain(self.functions.keys().copied())
            .chain(indices);
        attnc_source::suggest::closest(n, known).map(str::to_string)
    }

    fn lower_state(&mut self, n: &str, k: u32, span: Span, ctx: &mut Ctx) -> Res<Lowered> {
        let Some(time) = ctx.state_time else {
            return Err(self.error(Diagnostic::error(
                format!("state `{n}` can only be read inside its recurrence"),
                span,
                "outside the recurrence",
            )));
        };
        let feature = self
            .state_features
            .get(k as usize)
            .cloned()
            .unwrap_or(Feature::Scalar);
        Ok(push(
            ctx,
            ExprNode::State(k, time),
            ExprType {
                kind: ScalarKind::Float,
                feature,
            },
            IndexSet::of(&[FrameIndex::T]),
            span,
        ))
    }

    fn lower_index(
        &mut self,
        base: &ast::Ident,
        indices: &[ast::Expr],
        span: Span,
        scope: &Scope,
        ctx: &mut Ctx,
    ) -> Res<Lowered> {
        if self.failed.contains(&base.name) && scope.get(&base.name).is_none() {
            return Err(super::Reported);
        }
        if scope.get(&base.name).is_none() && self.inputs.contains_key(&base.name) {
            let v = self.load(&base.name, indices, span, scope)?;
            return Ok(self.operand(ctx, v, span));
        }
        let b = self.lower_name(&base.name, base.span, scope, ctx)?;
        let ExprType { kind, feature } = ctx.arena.ty(b.id).clone();
        let Feature::Vector(dim) = feature else {
            return Err(self.error(Diagnostic::error(
                format!("`{}` cannot be indexed", base.name),
                base.span,
                format!(
                    "it is {}, not an input or a vector",
                    describe_feature(&feature)
                ),
            )));
        };
        let [idx] = indices else {
            return Err(self.error(Diagnostic::error(
                format!("`{}` is a vector: index it with one index", base.name),
                span,
                format!("{} indices given", indices.len()),
            )));
        };
        if let ExprKind::Name(n) = &idx.kind
            && let Some(fi) = FrameIndex::from_name(n)
        {
            self.unify_extent(fi, &dim, idx.span)?;
        }
        let k = self.lower(idx, scope, ctx)?;
        self.expect_index(k, idx.span, ctx)?;
        Ok(push(
            ctx,
            ExprNode::Extract(b.id, k.id),
            scalar(kind),
            b.indices.union(k.indices),
            span,
        ))
    }

    fn expect_index(&mut self, k: Lowered, span: Span, ctx: &Ctx) -> Res<()> {
        let ty = ctx.arena.ty(k.id);
        if ty.kind == ScalarKind::Int && ty.feature == Feature::Scalar {
            return Ok(());
        }
        let mut d = Diagnostic::error(
            "an index must be an integer",
            span,
            format!(
                "this is {} of kind {}",
                describe_feature(&ty.feature),
                ty.kind.name()
            ),
        );
        if ty.kind == ScalarKind::Float {
            d = d.with_note("`/` always gives a float; use `//` for integer division, or int(x)");
        }
        Err(self.error(d))
    }

    /// A read of input `name`: all axes indexed gives a scalar, all but the last gives a row.
    pub(crate) fn load(
        &mut self,
        name: &str,
        indices: &[ast::Expr],
        span: Span,
        scope: &Scope,
    ) -> Res<ValueRef> {
        let (input_node, ty) = match self.inputs.get(name) {
            Some(i) => (i.node, i.ty.clone()),
            None => {
                return Err(self.error(Diagnostic::error(
                    format!("unknown input `{name}`"),
                    span,
                    "",
                )));
            }
        };
        let rank = ty.dims.len();
        if indices.len() != rank && indices.len() + 1 != rank {
            return Err(self.error(Diagnostic::error(
                format!(
                    "`{name}` has {}: index all {rank} for an element, or the first {} for a row",
                    count(rank, "axis", "axes"),
                    rank.saturating_sub(1)
                ),
                span,
                format!("{} given", count(indices.len(), "index", "indices")),
            )));
        }
        let mut load_indices = Vec::new();
        let mut operands = Vec::new();
        let mut set = IndexSet::EMPTY;
        for (axis, idx) in indices.iter().enumerate() {
            let frame = match &idx.kind {
                ExprKind::Name(n) => FrameIndex::from_name(n),
                _ => None,
            };
            if let Some(fi) = frame {
                self.note_index_use(fi, idx.span)?;
                self.unify_extent(fi, &ty.dims[axis], idx.span)?;
                load_indices.push(LoadIndex::Frame(fi));
                set = set.with(fi);
                continue;
            }
            if let ExprKind::Name(n) = &idx.kind
                && scope.get(n).is_none()
                && self.inputs.get(n).is_some_and(|t| t.ty.dims.len() > 1)
            {
                let label = match self.index_for(n, &ty.dims[axis]) {
                    Some(fi) => format!("did you mean the index `{}`?", fi.name()),
                    None => "an index is b, h, i, j, t or an integer expression".to_string(),
                };
                return Err(self.error(Diagnostic::error(
                    format!("`{n}` is an input tensor, not an index of `{name}`"),
                    idx.span,
                    label,
                )));
            }
            if let ExprKind::Name(n) = &idx.kind
                && let Some(fi) = self.misspelt_index(n, &ty.dims[axis], scope)
            {
                return Err(self.error(Diagnostic::error(
                    format!("unknown name `{n}`"),
                    idx.span,
                    format!("did you mean the index `{}`?", fi.name()),
                )));
            }
            let mut ctx = Ctx::map();
            let k = self.lower(idx, scope, &mut ctx)?;
            self.expect_index(k, idx.span, &ctx)?;
            let v = self.materialize(ctx, k, idx.span, None)?;
            set = set.union(self.value_type(v).indices);
            load_indices.push(LoadIndex::Operand(operands.len() as u32 + 1));
            operands.push(v);
        }
        let key = (input_node, load_indices.clone(), operands.clone());
        if let Some(node) = self.loads.get(&key) {
            return Ok(ValueRef {
                node: *node,
                result: 0,
            });
        }
        let kind = if ty.dtype.is_float() {
            ScalarKind::Float
        } else {
            ScalarKind::Int
        };
        let feature = if indices.len() == rank {
            Feature::Scalar
        } else {
            Feature::Vector(ty.dims[rank - 1].clone())
        };
        let node = self.graph.add_node(Node {
            op: Op::Load {
                indices: load_indices,
            },
            results: vec![PortType::Value(ValueType {
                kind,
                indices: set,
                feature,
            })],
            name: None,
            span,
        });
        self.graph.connect(
            ValueRef {
                node: input_node,
                result: 0,
            },
            node,
            0,
        );
        for (k, v) in operands.iter().enumerate() {
            self.graph.connect(*v, node, k as u32 + 1);
        }
        self.loads.insert(key, node);
        Ok(ValueRef { node, result: 0 })
    }

    fn unary(&mut self, op: UnaryOp, a: Lowered, span: Span, ctx: &mut Ctx) -> Res<Lowered> {
        let ty = ctx.arena.ty(a.id).clone();
        let ok = match op {
            UnaryOp::Neg => ty.kind != ScalarKind::Bool,
            UnaryOp::Not => ty.kind == ScalarKind::Bool,
        };
        if !ok {
            let (what, label) = match op {
                UnaryOp::Neg => ("`-` needs a number", "this is a boolean"),
                UnaryOp::Not => ("`!` needs a boolean condition", "this is a number"),
            };
            return Err(self.error(Diagnostic::error(what, span, label)));
        }
        Ok(push(ctx, ExprNode::Unary(op, a.id), ty, a.indices, span))
    }

    pub(crate) fn binary(
        &mut self,
        op: BinaryOp,
        a: Lowered,
        b: Lowered,
        span: Span,
        ctx: &mut Ctx,
    ) -> Res<Lowered> {
        let (ta, tb) = (ctx.arena.ty(a.id).clone(), ctx.arena.ty(b.id).clone());
        let logical = matches!(op, BinaryOp::And | BinaryOp::Or);
        let comparison = matches!(
            op,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        );
        let bools = (ta.kind == ScalarKind::Bool, tb.kind == ScalarKind::Bool);
        if logical && bools != (true, true) {
            return Err(self.error(Diagnostic::error(
                format!("`{}` needs boolean conditions on both sides", op.symbol()),
                span,
                "a number is not a condition: compare it, e.g. `x != 0`",
            )));
        }
        if !logical && (bools.0 || bools.1) {
            return Err(self.error(Diagnostic::error(
                format!("`{}` needs numbers, not boolean conditions", op.symbol()),
                span,
                "use select(cond, a, b) to turn a condition into a number",
            )));
        }
        let kind = if logical || comparison {
            ScalarKind::Bool
        } else if matches!(op, BinaryOp::Div | BinaryOp::MatMul)
            || ta.kind == ScalarKind::Float
            || tb.kind == ScalarKind::Float
        {
            ScalarKind::Float
        } else {
            ScalarKind::Int
        };
        let feature = if op == BinaryOp::MatMul {
            self.matmul_feature(&ta.feature, &tb.feature, span)?
        } else {
            self.broadcast(&ta.feature, &tb.feature, span)?
        };
        Ok(push(
            ctx,
            ExprNode::Binary(op, a.id, b.id),
            ExprType { kind, feature },
            a.indices.union(b.indices),
            span,
        ))
    }

    fn broadcast(&mut self, a: &Feature, b: &Feature, span: Span) -> Res<Feature> {
        match (a, b) {
            (Feature::Diag(_), _) | (_, Feature::Diag(_)) => Err(self.error(Diagnostic::error(
                "`diag(...)` can only be used as an operand of `@`",
                span,
                "e.g. `diag(a) @ S` scales the rows of S",
            ))),
            (Feature::Scalar, f) | (f, Feature::Scalar) => Ok(f.clone()),
            (x, y) if x == y => Ok(x.clone()),
            (x, y) => Err(self.error(Diagnostic::error(
                format!(
                    "shape mismatch: cannot combine {} with {}",
                    describe_feature(x),
                    describe_feature(y)
                ),
                span,
                "the feature shapes differ",
            ))),
        }
    }

    fn matmul_feature(&mut self, a: &Feature, b: &Feature, span: Span) -> Res<Feature> {
        use Feature::*;
        let out = match (a, b) {
            (Vector(x), Matrix(r, c)) if x == r => Some(Vector(c.clone())),
            (Matrix(r, c), Vector(x)) if x == c => Some(Vector(r.clone())),
            (Diag(x), Matrix(r, c)) if x == r => Some(Matrix(r.clone(), c.clone())),
            (Matrix(r, c), Diag(x)) if x == c => Some(Matrix(r.clone(), c.clone())),
            (Matrix(r, c), Matrix(r2, c2)) if c == r2 => Some(Matrix(r.clone(), c2.clone())),
            _ => None,
        };
        out.ok_or_else(|| {
            let note = if matches!((a, b), (Vector(_), Vector(_))) {
                "for two vectors, use dot(a, b) or outer(a, b)"
            } else {
                "the inner sizes must agree"
            };
            self.error(Diagnostic::error(
                format!(
                    "shape mismatch: cannot multiply {} by {}",
                    describe_feature(a),
                    describe_feature(b)
                ),
                span,
                note,
            ))
        })
    }

    fn lower_call(
        &mut self,
        callee: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        scope: &Scope,
        ctx: &mut Ctx,
    ) -> Res<Lowered> {
        let name = callee.name.as_str();
        let reduce = match name {
            "sum_j" => Some(ReduceKind::Sum),
            "max_j" => Some(ReduceKind::Max),
            "min_j" => Some(ReduceKind::Min),
            _ => None,
        };
        if let Some(kind) = reduce {
            self.arity(callee, args, 1)?;
            if self.frame == Frame::Recurrent {
                return Err(self.error(Diagnostic::error(
                    format!("`{name}` is not available inside a recurrence"),
                    callee.span,
                    "a recurrence carries its sums in states",
                )));
            }
            let v = self.reduce(kind, &args[0], span, scope)?;
            return Ok(self.operand(ctx, v, span));
        }
        if name == "dot" && ctx.state_time.is_none() {
            self.arity(callee, args, 2)?;
            let a = self.value(&args[0], scope, None)?;
            let b = self.value(&args[1], scope, None)?;
            if let Some(score) = self.try_score(a, b, span, &args[0], &args[1])? {
                return Ok(self.operand(ctx, score, span));
            }
            let (a, b) = (
                self.operand(ctx, a, args[0].span),
                self.operand(ctx, b, args[1].span),
            );
            return self.builtin(Builtin::Dot, &[a, b], span, ctx);
        }
        if let Some(f) = self.functions.get(name).copied() {
            return self.call_function(f, args, span, scope, ctx);
        }
        let builtin = match (name, args.len()) {
            ("max", 1) => Builtin::MaxFeature,
            ("min", 1) => Builtin::MinFeature,
            ("max", _) => Builtin::Max,
            ("min", _) => Builtin::Min,
            ("sum", _) => Builtin::SumFeature,
            ("mean", _) => Builtin::MeanFeature,
            ("norm", _) => Builtin::Norm,
            ("pow", _) => Builtin::Pow,
            ("select", _) => Builtin::Select,
            ("int", _) => Builtin::ToInt,
            ("float", _) => Builtin::ToFloat,
            ("dot", _) => Builtin::Dot,
            ("outer", _) => Builtin::Outer,
            ("diag", _) => Builtin::Diag,
            ("cumsum", _) => Builtin::Cumsum,
            ("cumprod", _) => Builtin::Cumprod,
            (n, _) => match Builtin::unary_elementwise(n) {
                Some(b) => b,
                None => {
                    let known = OTHER_CALLS
                        .iter()
                        .chain(Builtin::UNARY_NAMES)
                        .copied()
                        .chain(self.functions.keys().copied());
                    let label = match attnc_source::suggest::closest(name, known) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => "not a built-in and not defined with `fn`".to_string(),
                    };
                    return Err(self.error(Diagnostic::error(
                        format!("unknown function `{name}`"),
                        callee.span,
                        label,
                    )));
                }
            },
        };
        let want = match builtin {
            Builtin::Pow | Builtin::Min | Builtin::Max | Builtin::Dot | Builtin::Outer => 2,
            Builtin::Select => 3,
            _ => 1,
        };
        self.arity(callee, args, want)?;
        let lowered = args
            .iter()
            .map(|a| self.lower(a, scope, ctx))
            .collect::<Res<Vec<Lowered>>>()?;
        self.builtin(builtin, &lowered, span, ctx)
    }

    fn arity(&mut self, callee: &ast::Ident, args: &[ast::Expr], want: usize) -> Res<()> {
        if args.len() == want {
            return Ok(());
        }
        Err(self.error(Diagnostic::error(
            format!(
                "`{}` takes {want} argument{}, {} given",
                callee.name,
                if want == 1 { "" } else { "s" },
                args.len()
            ),
            callee.span,
            "wrong number of arguments",
        )))
    }

    /// Types a built-in call and adds it to the arena.
    fn builtin(&mut self, f: Builtin, args: &[Lowered], span: Span, ctx: &mut Ctx) -> Res<Lowered> {
        let tys: Vec<ExprType> = args.iter().map(|a| ctx.arena.ty(a.id).clone()).collect();
        let indices = args.iter().fold(IndexSet::EMPTY, |s, a| s.union(a.indices));
        let fail = |this: &mut Self, label: String| {
            Err(this.error(Diagnostic::error(
                format!("wrong argument to `{}`", f.name()),
                span,
                label,
            )))
        };
        for (t, a) in tys.iter().zip(args) {
            let bool_ok = f == Builtin::Select && a.id == args[0].id;
            if t.kind == ScalarKind::Bool && !bool_ok {
                return fail(self, "a boolean condition is not a number".to_string());
            }
        }
        let ty = match f {
            Builtin::Dot => match (&tys[0].feature, &tys[1].feature) {
                (Feature::Vector(x), Feature::Vector(y)) if x == y => scalar(ScalarKind::Float),
                (x, y) => {
                    return fail(
                        self,
                        format!(
                            "dot needs two vectors of one size, got {} and {}",
                            describe_feature(x),
                            describe_feature(y)
                        ),
                    );
                }
            },
            Builtin::Outer => match (&tys[0].feature, &tys[1].feature) {
                (Feature::Vector(x), Feature::Vector(y)) => ExprType {
                    kind: ScalarKind::Float,
                    feature: Feature::Matrix(x.clone(), y.clone()),
                },
                _ => return fail(self, "outer needs two vectors".to_string()),
            },
            Builtin::Diag => match &tys[0].feature {
                Feature::Vector(x) => ExprType {
                    kind: ScalarKind::Float,
                    feature: Feature::Diag(x.clone()),
                },
                other => {
                    return fail(
                        self,
                        format!("diag needs a vector, got {}", describe_feature(other)),
                    );
                }
            },
            Builtin::SumFeature
            | Builtin::MeanFeature
            | Builtin::MaxFeature
            | Builtin::MinFeature
            | Builtin::Norm => match &tys[0].feature {
                Feature::Vector(_) => ExprType {
                    kind: if matches!(f, Builtin::MeanFeature | Builtin::Norm) {
                        ScalarKind::Float
                    } else {
                        tys[0].kind
                    },
                    feature: Feature::Scalar,
                },
                Feature::Scalar => {
                    let keys = match f {
                        Builtin::SumFeature => "sum_j",
                        Builtin::MaxFeature => "max_j",
                        Builtin::MinFeature => "min_j",
                        _ => "sum_j",
                    };
                    return fail(
                        self,
                        format!(
                            "{}(x) reduces a vector's elements; to reduce over the keys, use {keys}(x)",
                            f.name()
                        ),
                    );
                }
                other => {
                    return fail(
                        self,
                        format!("expected a vector, got {}", describe_feature(other)),
                    );
                }
            },
            Builtin::Cumsum | Builtin::Cumprod => match &tys[0].feature {
                Feature::Vector(_) => ExprType {
                    kind: tys[0].kind,
                    feature: tys[0].feature.clone(),
                },
                other => {
                    return fail(
                        self,
                        format!("expected a vector, got {}", describe_feature(other)),
                    );
                }
            },
            Builtin::Select => {
                if tys[0].kind != ScalarKind::Bool {
                    return fail(
                        self,
                        "the first argument of select must be a condition".to_string(),
                    );
                }
                let f1 = self.broadcast(&tys[0].feature, &tys[1].feature, span)?;
                let feature = self.broadcast(&f1, &tys[2].feature, span)?;
                let kind = if tys[1].kind == ScalarKind::Int && tys[2].kind == ScalarKind::Int {
                    ScalarKind::Int
                } else {
                    ScalarKind::Float
                };
                ExprType { kind, feature }
            }
            Builtin::Pow | Builtin::Min | Builtin::Max => {
                let feature = self.broadcast(&tys[0].feature, &tys[1].feature, span)?;
                let int = tys[0].kind == ScalarKind::Int && tys[1].kind == ScalarKind::Int;
                let kind = if int && f != Builtin::Pow {
                    ScalarKind::Int
                } else {
                    ScalarKind::Float
                };
                ExprType { kind, feature }
            }
            _ => {
                if let Feature::Diag(_) = tys[0].feature {
                    return fail(self, "diag(...) can only be used with @".to_string());
                }
                let kind = if f == Builtin::ToInt {
                    ScalarKind::Int
                } else {
                    ScalarKind::Float
                };
                ExprType {
                    kind,
                    feature: tys[0].feature.clone(),
                }
            }
        };
        let ids = args.iter().map(|a| a.id).collect();
        Ok(push(ctx, ExprNode::Call(f, ids), ty, indices, span))
    }

    /// `dot(a, b)` with `a` a query-side row and `b` a key-side row is the scoring contraction.
    fn try_score(
        &mut self,
        a: ValueRef,
        b: ValueRef,
        span: Span,
        ea: &ast::Expr,
        eb: &ast::Expr,
    ) -> Res<Option<ValueRef>> {
        let (ta, tb) = (self.value_type(a), self.value_type(b));
        let query_side =
            |t: &ValueType| t.indices.contains(FrameIndex::I) && !t.indices.contains(FrameIndex::J);
        let key_side =
            |t: &ValueType| t.indices.contains(FrameIndex::J) && !t.indices.contains(FrameIndex::I);
        let (q, k) = if query_side(&ta) && key_side(&tb) {
            (a, b)
        } else if key_side(&ta) && query_side(&tb) {
            (b, a)
        } else {
            return Ok(None);
        };
        match (&ta.feature, &tb.feature) {
            (Feature::Vector(x), Feature::Vector(y)) if x == y => {}
            (x, y) => {
                return Err(self.error(
                    Diagnostic::error(
                        format!(
                            "shape mismatch: dot of {} and {}",
                            describe_feature(x),
                            describe_feature(y)
                        ),
                        span,
                        "the query and key rows must have the same length",
                    )
                    .with_secondary(ea.span, describe_feature(x))
                    .with_secondary(eb.span, describe_feature(y)),
                ));
            }
        }
        let indices = ta.indices.union(tb.indices);
        let node = self.graph.add_node(Node {
            op: Op::Score,
            results: vec![PortType::Value(ValueType {
                kind: ScalarKind::Float,
                indices,
                feature: Feature::Scalar,
            })],
            name: None,
            span,
        });
        self.graph.connect(q, node, 0);
        self.graph.connect(k, node, 1);
        Ok(Some(ValueRef { node, result: 0 }))
    }

    /// `sum_j(w * v)` with a scalar weight and a key-side row is the aggregation contraction;
    /// every other reduction over j is a row reduction of a mapped value.
    fn reduce(
        &mut self,
        kind: ReduceKind,
        arg: &ast::Expr,
        span: Span,
        scope: &Scope,
    ) -> Res<ValueRef> {
        let value = match (&arg.kind, kind) {
            (ExprKind::Binary(BinaryOp::Mul, a, b), ReduceKind::Sum) => {
                let va = self.value(a, scope, None)?;
                let vb = self.value(b, scope, None)?;
                let (ta, tb) = (self.value_type(va), self.value_type(vb));
                let is_row = |t: &ValueType| {
                    matches!(t.feature, Feature::Vector(_))
                        && t.kind != ScalarKind::Bool
                        && !t.indices.contains(FrameIndex::I)
                };
                let is_weight =
                    |t: &ValueType| t.feature == Feature::Scalar && t.kind == ScalarKind::Float;
                let pair = if is_weight(&ta) && is_row(&tb) {
                    Some((va, tb))
                } else if is_row(&ta) && is_weight(&tb) {
                    Some((vb, ta))
                } else {
                    None
                };
                if let Some((w, row)) = pair {
                    let row_ref = if w == va { vb } else { va };
                    let w_ty = self.value_type(w);
                    let indices = w_ty.indices.union(row.indices).without(FrameIndex::J);
                    let node = self.graph.add_node(Node {
                        op: Op::Aggregate,
                        results: vec![PortType::Value(ValueType {
                            kind: ScalarKind::Float,
                            indices,
                            feature: row.feature,
                        })],
                        name: None,
                        span,
                    });
                    self.graph.connect(w, node, 0);
                    self.graph.connect(row_ref, node, 1);
                    self.reductions.push(node);
                    return Ok(ValueRef { node, result: 0 });
                }
                let mut ctx = Ctx::map();
                let la = self.operand(&mut ctx, va, a.span);
                let lb = self.operand(&mut ctx, vb, b.span);
                let root = self.binary(BinaryOp::Mul, la, lb, arg.span, &mut ctx)?;
                self.materialize(ctx, root, arg.span, None)?
            }
            _ => self.value(arg, scope, None)?,
        };
        let ty = self.value_type(value);
        if ty.kind == ScalarKind::Bool {
            return Err(self.error(Diagnostic::error(
                format!("`{}_j` needs numbers", kind.name()),
                arg.span,
                "this is a boolean condition; use select(cond, 1.0, 0.0)",
            )));
        }
        let node = self.graph.add_node(Node {
            op: Op::RowReduce { kind },
            results: vec![PortType::Value(ValueType {
                kind: ty.kind,
                indices: ty.indices.without(FrameIndex::J),
                feature: ty.feature,
            })],
            name: None,
            span,
        });
        self.graph.connect(value, node, 0);
        self.reductions.push(node);
        Ok(ValueRef { node, result: 0 })
    }

    /// Inlines a user function: its parameters are bound to the arguments, its lets become
    /// values labelled with its name, and its result joins the caller's expression.
    fn call_function(
        &mut self,
        f: &ast::Function,
        args: &[ast::Expr],
        span: Span,
        scope: &Scope,
        ctx: &mut Ctx,
    ) -> Res<Lowered> {
        if self.call_stack.iter().any(|c| c == &f.name.name) {
            return Err(self.error(
                Diagnostic::error(
                    format!("`{}` calls itself", f.name.name),
                    span,
                    "recursive call",
                )
                .with_secondary(f.name.span, "defined here"),
            ));
        }
        if args.len() != f.params.len() {
            return Err(self.error(
                Diagnostic::error(
                    format!(
                        "`{}` takes {} argument{}, {} given",
                        f.name.name,
                        f.params.len(),
                        if f.params.len() == 1 { "" } else { "s" },
                        args.len()
                    ),
                    span,
                    "wrong number of arguments",
                )
                .with_secondary(f.name.span, "defined here"),
            ));
        }
        let mut inner = Scope::default();
        let mut key: CallKey = (f.name.name.clone(), Vec::with_capacity(args.len()));
        for (param, arg) in f.params.iter().zip(args) {
            let binding = self.bind_expr(arg, scope, ctx)?;
            key.1.push(match &binding {
                Binding::Inline(id, _) => ArgKey::Inline(*id),
                Binding::Value(v) => ArgKey::Value(*v),
                // bind_expr makes only the two above.
                Binding::State(_) | Binding::Constant(_) => ArgKey::Inline(ExprId::placeholder()),
            });
            if inner
                .vars
                .insert(param.name.clone(), (binding, param.span))
                .is_some()
            {
                return Err(self.error(Diagnostic::error(
                    format!("parameter `{}` appears twice", param.name),
                    param.span,
                    "repeated parameter",
                )));
            }
        }
        // A recurrence's arena switches between previous and current states, and an argument
        // bound inline lives in one arena: such calls are never shared.
        let memo =
            ctx.state_time.is_none() && !key.1.iter().any(|a| matches!(a, ArgKey::Inline(_)));
        if memo {
            if let Some(v) = self.call_values.get(&key) {
                return Ok(self.operand(ctx, *v, span));
            }
            if ctx.calls.contains(&key) {
                // The same call a second time in one expression: it becomes a value of its own,
                // which every later such call reads. The arena stays a tree.
                let mut own = Ctx::map();
                self.call_stack.push(f.name.name.clone());
                let result = self.function_body(f, &key, &mut inner, &mut own);
                self.call_stack.pop();
                let v = self.materialize(own, result?, span, Some(&f.name.name))?;
                self.call_values.insert(key, v);
                return Ok(self.operand(ctx, v, span));
            }
        }
        self.call_stack.push(f.name.name.clone());
        let result = self.function_body(f, &key, &mut inner, ctx);
        self.call_stack.pop();
        if result.is_ok() && memo {
            ctx.calls.insert(key);
        }
        result
    }

    fn function_body(
        &mut self,
        f: &ast::Function,
        key: &CallKey,
        inner: &mut Scope,
        ctx: &mut Ctx,
    ) -> Res<Lowered> {
        if let Some(lets) = self.function_lets.get(key) {
            inner.vars.extend(lets.iter().cloned());
            return self.lower(&f.result, inner, ctx);
        }
        let mut shareable = true;
        let mut lets = Vec::with_capacity(f.lets.len());
        for l in &f.lets {
            self.check_new_name(&l.name, inner)?;
            let binding = if ctx.state_time.is_some() && self.mentions_state(&l.value, inner) {
                // Lives in this arena only, so the lets cannot be shared with other calls.
                shareable = false;
                let low = self.lower(&l.value, inner, ctx)?;
                Binding::Inline(low.id, low.indices)
            } else {
                self.let_binding(l, inner)?
            };
            lets.push((l.name.name.clone(), (binding.clone(), l.name.span)));
            inner
                .vars
                .insert(l.name.name.clone(), (binding, l.name.span));
        }
        if shareable && !key.1.iter().any(|a| matches!(a, ArgKey::Inline(_))) {
            self.function_lets.insert(key.clone(), lets);
        }
        self.lower(&f.result, inner, ctx)
    }

    /// Binds an argument: as a value, or inline when it reads this step's recurrent states.
    fn bind_expr(&mut self, e: &ast::Expr, scope: &Scope, ctx: &mut Ctx) -> Res<Binding> {
        if ctx.state_time.is_some() && self.mentions_state(e, scope) {
            let low = self.lower(e, scope, ctx)?;
            Ok(Binding::Inline(low.id, low.indices))
        } else {
            Ok(Binding::Value(self.value(e, scope, None)?))
        }
    }
}

/// `f`, or `f → g → h` for nested calls, shortened in the middle when long.
fn describe_calls(stack: &[String]) -> String {
    let shown: Vec<&str> = if stack.len() > 6 {
        let mut v: Vec<&str> = stack[..3].iter().map(String::as_str).collect();
        v.push("…");
        v.extend(stack[stack.len() - 2..].iter().map(String::as_str));
        v
    } else {
        stack.iter().map(String::as_str).collect()
    };
    format!("`{}`", shown.join(" → "))
}

fn push(ctx: &mut Ctx, node: ExprNode, ty: ExprType, indices: IndexSet, span: Span) -> Lowered {
    Lowered {
        id: ctx.arena.push(node, ty, span),
        indices,
    }
}

/// `diag(v)` is never materialised, and `outer(k, v)` is the rank-one update that the chunked
/// form of a recurrence is derived from: both stay in the recurrence, only their arguments are
/// hoisted out of it.
fn stays_in_recurrence(e: &ast::Expr) -> bool {
    matches!(&e.kind, ExprKind::Call { callee, .. } if callee.name == "diag" || callee.name == "outer")
}

/// Literals and names (indices, dims, bound values) are referenced in place, never hoisted.
fn is_leaf(e: &ast::Expr) -> bool {
    matches!(
        e.kind,
        ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Name(_)
    )
}
