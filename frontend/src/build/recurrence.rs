//! `recurrence t { state ...; ... }` to one recurrence op: the state updates and the values that
//! read states live in the op's arena; everything else is hoisted out as ordinary ops over t.

use super::{Binding, Builder, Ctx, Frame, Res, Scope};
use crate::ast::{self, Stmt};
use attnc_ir::expr::{ExprId, StateTime};
use attnc_ir::graph::{Node, Op, PortType, StateDef, ValueRef};
use attnc_ir::types::{Feature, FrameIndex, IndexSet, ScalarKind, ValueType};
use attnc_source::{Diagnostic, Span};

/// An output assignment inside the recurrence, waiting for the recurrence node to exist.
struct PendingEmit<'s> {
    assign: &'s ast::Assign,
    axes: Vec<FrameIndex>,
    ty: attnc_ir::types::TensorType,
    expr: ExprId,
    kind: ScalarKind,
    feature: Feature,
}

impl Builder<'_> {
    pub(super) fn recurrence(&mut self, r: &ast::Recurrence, scope: &mut Scope) -> Res<()> {
        if let Some(prev) = self.recurrence_span {
            return Err(self.error(
                Diagnostic::error(
                    "a kernel holds at most one recurrence",
                    r.span,
                    "second recurrence",
                )
                .with_secondary(prev, "first recurrence"),
            ));
        }
        self.recurrence_span = Some(r.span);
        if r.index.name != "t" {
            return Err(self.error(Diagnostic::error(
                "a recurrence steps over the index `t`",
                r.index.span,
                "write `recurrence t { ... }`",
            )));
        }
        self.frame = Frame::Recurrent;
        let result = self.recurrence_body(r, scope);
        self.frame = Frame::Parallel;
        result
    }

    fn recurrence_body(&mut self, r: &ast::Recurrence, outer: &Scope) -> Res<()> {
        // States are visible to every statement of the block, so updates may read each other.
        let mut scope = Scope {
            vars: outer.vars.clone(),
        };
        let mut states: Vec<(String, Span)> = Vec::new();
        self.state_features.clear();
        for stmt in &r.body {
            if let Stmt::State(s) = stmt {
                self.check_new_name(&s.name, &scope)?;
                let feature = self.state_feature(s)?;
                scope.vars.insert(
                    s.name.name.clone(),
                    (Binding::State(states.len() as u32), s.name.span),
                );
                states.push((s.name.name.clone(), s.span));
                self.state_features.push(feature);
            }
        }
        if states.is_empty() {
            return Err(self.error(Diagnostic::error(
                "a recurrence needs at least one `state`",
                r.span,
                "e.g. `state S: [D, D] = decay * S + outer(k[b, h, t], v[b, h, t]);`",
            )));
        }
        let mut ctx = Ctx::map();
        let mut updates: Vec<Option<ExprId>> = vec![None; states.len()];
        let mut emits: Vec<PendingEmit> = Vec::new();
        for stmt in &r.body {
            match stmt {
                Stmt::Let(l) => {
                    self.check_new_name(&l.name, &scope)?;
                    let binding = if self.mentions_state(&l.value, &scope) {
                        ctx.state_time = Some(StateTime::Current);
                        let low = self.lower(&l.value, &scope, &mut ctx)?;
                        Binding::Inline(low.id, low.indices)
                    } else {
                        self.let_binding(l, &scope)?
                    };
                    scope
                        .vars
                        .insert(l.name.name.clone(), (binding, l.name.span));
                }
                Stmt::State(s) => {
                    ctx.state_time = Some(StateTime::Previous);
                    let low = self.lower(&s.update, &scope, &mut ctx)?;
                    let k = states
                        .iter()
                        .position(|(n, _)| *n == s.name.name)
                        .unwrap_or(0);
                    let ty = ctx.arena.ty(low.id).clone();
                    let declared = self.state_features[k].clone();
                    if ty.feature != declared && ty.feature != Feature::Scalar {
                        return Err(self.error(Diagnostic::error(
                            format!("shape mismatch: state `{}` is declared {declared:?} but its update is {:?}", s.name.name, ty.feature),
                            s.update.span,
                            "the update must have the state's shape",
                        )));
                    }
                    if ty.kind == ScalarKind::Bool {
                        return Err(self.error(Diagnostic::error(
                            "a state must be numeric",
                            s.update.span,
                            "this is a boolean condition",
                        )));
                    }
                    updates[k] = Some(low.id);
                }
                Stmt::Assign(a) => {
                    let (axes, ty) = self.output_target(a)?;
                    ctx.state_time = Some(StateTime::Current);
                    let low = self.lower(&a.value, &scope, &mut ctx)?;
                    let t = ctx.arena.ty(low.id).clone();
                    emits.push(PendingEmit {
                        assign: a,
                        axes,
                        ty,
                        expr: low.id,
                        kind: t.kind,
                        feature: t.feature,
                    });
                }
                other => {
                    let span = stmt_span(other).unwrap_or(r.span);
                    return Err(self.error(Diagnostic::error(
                        "only `let`, `state` and output assignments are allowed inside a recurrence",
                        span,
                        "not allowed here",
                    )));
                }
            }
        }
        if emits.is_empty() {
            return Err(self.error(Diagnostic::error(
                "the recurrence assigns no output",
                r.span,
                "assign one, e.g. `o[b, h, t] = q[b, h, t] @ S;`",
            )));
        }
        // Every step's result depends, through the states, on all the values fed in.
        let mut indices = IndexSet::of(&[FrameIndex::T]);
        for v in &ctx.operands {
            indices = indices.union(self.value_type(*v).indices);
        }
        for e in &emits {
            self.check_output_value(e.assign, &e.axes, &e.ty, &e.kind, &e.feature, indices)?;
        }
        // Each `state` statement sets its own update, and a failed one returned early above.
        let state_defs = states
            .iter()
            .zip(updates.into_iter().flatten())
            .zip(&self.state_features)
            .map(|(((name, _), update), feature)| StateDef {
                name: name.clone(),
                feature: feature.clone(),
                update,
            })
            .collect();
        let node = self.graph.add_node(Node {
            op: Op::Recurrence {
                arena: ctx.arena,
                states: state_defs,
                emits: emits.iter().map(|e| e.expr).collect(),
            },
            results: emits
                .iter()
                .map(|e| {
                    PortType::Value(ValueType {
                        kind: ScalarKind::Float,
                        indices,
                        feature: e.feature.clone(),
                    })
                })
                .collect(),
            name: None,
            span: r.span,
        });
        for (k, v) in ctx.operands.iter().enumerate() {
            self.graph.connect(*v, node, k as u32);
        }
        for (k, e) in emits.into_iter().enumerate() {
            let out = self.graph.add_node(Node {
                op: Op::Output {
                    name: e.assign.target.name.clone(),
                    ty: e.ty,
                    axes: e.axes,
                },
                results: Vec::new(),
                name: Some(e.assign.target.name.clone()),
                span: e.assign.span,
            });
            self.graph.connect(
                ValueRef {
                    node,
                    result: k as u32,
                },
                out,
                0,
            );
        }
        Ok(())
    }

    fn state_feature(&mut self, s: &ast::StateDecl) -> Res<Feature> {
        let mut dims = Vec::new();
        for d in &s.dims {
            match &d.kind {
                ast::ExprKind::Name(n) if self.dims.contains_key(n) => {
                    dims.push(attnc_ir::types::Dim::Sym(n.clone()))
                }
                ast::ExprKind::Int(v) if *v > 0 => dims.push(attnc_ir::types::Dim::Const(*v)),
                _ => {
                    return Err(self.error(Diagnostic::error(
                        "a state's shape lists dims",
                        d.span,
                        "expected a dim name or a positive integer",
                    )));
                }
            }
        }
        match dims.as_slice() {
            [] => Ok(Feature::Scalar),
            [a] => Ok(Feature::Vector(a.clone())),
            [a, b] => Ok(Feature::Matrix(a.clone(), b.clone())),
            _ => Err(self.error(Diagnostic::error(
                "a state has at most two axes",
                s.span,
                "e.g. `state S: [D, Dv] = ...;`",
            ))),
        }
    }
}

fn stmt_span(s: &Stmt) -> Option<Span> {
    match s {
        Stmt::Input(d) => Some(d.span),
        Stmt::Output(d) => Some(d.span),
        Stmt::Mask(e) | Stmt::Require(e) => Some(e.span),
        Stmt::Recurrence(r) => Some(r.span),
        Stmt::Dims(d) => d.first().map(|d| d.name.span),
        Stmt::Error(s) => Some(*s),
        _ => None,
    }
}
