//! Declarations and definitions at kernel level: dims, inputs, outputs, `require` conditions and
//! the assignments that define outputs.

use super::{Builder, Ctx, InputInfo, OutputInfo, Res, Scope};
use crate::ast::{self, BinaryOp, ExprKind};
use crate::print_ast;
use attnc_ir::expr::{ExprArena, ExprId};
use attnc_ir::graph::{DimDef, Node, Op, PortType, Requirement, ValueRef};
use attnc_ir::types::{Dim, Feature, FrameIndex, IndexSet, ScalarKind, TensorType};
use attnc_source::Diagnostic;
use attnc_source::wording::count;

impl Builder<'_> {
    pub(super) fn declare_dims(&mut self, dims: &[ast::DimDecl], scope: &Scope) {
        for d in dims {
            if self.check_new_name(&d.name, scope).is_err() {
                continue;
            }
            self.dims.insert(d.name.name.clone(), d.name.span);
            let default = match &d.default {
                None => None,
                Some(e) => match self.constant(e, scope, ScalarKind::Int, "a dim's default") {
                    Ok(c) => Some(c),
                    Err(_) => continue,
                },
            };
            self.graph.dims.push(DimDef {
                name: d.name.name.clone(),
                span: d.name.span,
                default,
            });
        }
    }

    pub(super) fn declare_input(&mut self, decl: &ast::InputDecl, scope: &Scope) {
        // Until it is declared successfully, uses of the name report nothing more.
        self.failed
            .extend(decl.names.iter().map(|n| n.name.clone()));
        let Ok(ty) = self.tensor_type(&decl.ty) else {
            return;
        };
        let mut bounds = ExprArena::default();
        let range = match &decl.range {
            Some((lo, hi)) => {
                let want = if ty.dtype.is_float() {
                    ScalarKind::Float
                } else {
                    ScalarKind::Int
                };
                let (Ok(lo), Ok(hi)) = (
                    self.constant_into(lo, scope, want, "a range bound", &mut bounds),
                    self.constant_into(hi, scope, want, "a range bound", &mut bounds),
                ) else {
                    return;
                };
                Some((lo, hi))
            }
            None if !ty.dtype.is_float() => {
                self.diags.push(Diagnostic::error(
                    "an integer input needs a value range",
                    decl.ty.span,
                    "add e.g. `in [0, S]` so values can be drawn and checked",
                ));
                return;
            }
            None => None,
        };
        for name in &decl.names {
            if self.check_new_name(name, scope).is_err() {
                continue;
            }
            let node = self.graph.add_node(Node {
                op: Op::Input {
                    name: name.name.clone(),
                    ty: ty.clone(),
                    range,
                    bounds: bounds.clone(),
                },
                results: vec![PortType::Tensor(ty.clone())],
                name: Some(name.name.clone()),
                span: name.span,
            });
            self.inputs.insert(
                name.name.clone(),
                InputInfo {
                    node,
                    ty: ty.clone(),
                },
            );
            self.failed.remove(&name.name);
        }
    }

    pub(super) fn declare_output(&mut self, decl: &ast::OutputDecl) {
        self.failed
            .extend(decl.names.iter().map(|n| n.name.clone()));
        let Ok(ty) = self.tensor_type(&decl.ty) else {
            self.output_failed = true;
            return;
        };
        if !ty.dtype.is_float() {
            self.output_failed = true;
            self.diags.push(Diagnostic::error(
                "outputs must be f32, f16 or bf16",
                decl.ty.dtype_span,
                "integer output",
            ));
            return;
        }
        for name in &decl.names {
            if self.check_new_name(name, &Scope::default()).is_err() {
                continue;
            }
            self.failed.remove(&name.name);
            self.outputs.insert(
                name.name.clone(),
                OutputInfo {
                    ty: ty.clone(),
                    span: name.span,
                    assigned: None,
                },
            );
        }
    }

    /// A tensor's dtype and dims; no dims is a rank-0 tensor (one value, used by name).
    fn tensor_type(&mut self, t: &ast::TensorType) -> Res<TensorType> {
        let dims = t
            .dims
            .iter()
            .map(|d| self.dim(d))
            .collect::<Res<Vec<Dim>>>()?;
        Ok(TensorType {
            dtype: t.dtype,
            dims,
        })
    }

    /// A symbolic dimension: dim names and integers combined with `+ - * //`.
    fn dim(&mut self, e: &ast::Expr) -> Res<Dim> {
        let dim = match &e.kind {
            ExprKind::Int(v) if *v >= 0 => Dim::Const(*v),
            ExprKind::Name(n) if self.dims.contains_key(n) => Dim::Sym(n.clone()),
            ExprKind::Name(n) => {
                if !self.unknown_dims.insert(n.clone()) {
                    return Err(super::Reported);
                }
                let near = attnc_source::suggest::closest(n, self.dims.keys().map(String::as_str));
                let label = match near {
                    Some(d) if d.eq_ignore_ascii_case(n) => {
                        format!("did you mean `{d}`? dims are case-sensitive")
                    }
                    Some(d) => format!("did you mean `{d}`? or declare it with `dim {n};`"),
                    None => format!("declare it with `dim {n};`"),
                };
                return Err(self.error(Diagnostic::error(
                    format!("unknown dimension `{n}`"),
                    e.span,
                    label,
                )));
            }
            ExprKind::Binary(op, a, b) => {
                let (a, b) = (Box::new(self.dim(a)?), Box::new(self.dim(b)?));
                match op {
                    BinaryOp::Add => Dim::Add(a, b),
                    BinaryOp::Sub => Dim::Sub(a, b),
                    BinaryOp::Mul => Dim::Mul(a, b),
                    BinaryOp::FloorDiv => Dim::FloorDiv(a, b),
                    _ => return Err(self.bad_dim(e)),
                }
            }
            _ => return Err(self.bad_dim(e)),
        };
        Ok(dim.simplified())
    }

    fn bad_dim(&mut self, e: &ast::Expr) -> super::Reported {
        self.error(Diagnostic::error(
            "not a valid dimension",
            e.span,
            "a dimension is a dim name or a non-negative integer, combined with + - * //",
        ))
    }

    /// Lowers a constant expression (dims and numbers only) into a fresh arena.
    pub(super) fn constant(
        &mut self,
        e: &ast::Expr,
        scope: &Scope,
        want: ScalarKind,
        what: &str,
    ) -> Res<(ExprArena, ExprId)> {
        let mut arena = ExprArena::default();
        let id = self.constant_into(e, scope, want, what, &mut arena)?;
        Ok((arena, id))
    }

    fn constant_into(
        &mut self,
        e: &ast::Expr,
        scope: &Scope,
        want: ScalarKind,
        what: &str,
        arena: &mut ExprArena,
    ) -> Res<ExprId> {
        let mut ctx = Ctx {
            arena: std::mem::take(arena),
            ..Ctx::map()
        };
        let lowered = self.lower(e, scope, &mut ctx);
        *arena = ctx.arena;
        let lowered = lowered?;
        let ty = arena.ty(lowered.id).clone();
        let numeric_ok = want == ScalarKind::Float && ty.kind == ScalarKind::Int;
        if !ctx.operands.is_empty() || !lowered.indices.is_empty() || ty.feature != Feature::Scalar
        {
            return Err(self.error(Diagnostic::error(
                format!("{what} must be a constant"),
                e.span,
                "only dims and numbers may appear here",
            )));
        }
        if ty.kind != want && !numeric_ok {
            return Err(self.error(Diagnostic::error(
                format!("{what} must be {}", describe_kind(want)),
                e.span,
                format!("this is {}", describe_kind(ty.kind)),
            )));
        }
        Ok(lowered.id)
    }

    pub(super) fn requirement(&mut self, e: &ast::Expr, scope: &Scope) -> Res<()> {
        let (arena, root) = self.constant(e, scope, ScalarKind::Bool, "a `require` condition")?;
        self.graph.requirements.push(Requirement {
            arena,
            root,
            span: e.span,
            text: print_ast::expr(e),
        });
        Ok(())
    }

    /// Checks `o[b, h, i] = value` against the output's declaration and adds the output node.
    pub(super) fn assign_output(&mut self, a: &ast::Assign, value: ValueRef) -> Res<()> {
        let (axes, ty) = self.output_target(a)?;
        let vt = self.value_type(value);
        self.check_output_value(a, &axes, &ty, &vt.kind, &vt.feature, vt.indices)?;
        let node = self.graph.add_node(Node {
            op: Op::Output {
                name: a.target.name.clone(),
                ty,
                axes,
            },
            results: Vec::new(),
            name: Some(a.target.name.clone()),
            span: a.span,
        });
        self.graph.connect(value, node, 0);
        Ok(())
    }

    /// Resolves an assignment's target and its index list; marks the output assigned.
    pub(super) fn output_target(&mut self, a: &ast::Assign) -> Res<(Vec<FrameIndex>, TensorType)> {
        let name = &a.target.name;
        if self.failed.contains(name) {
            return Err(super::Reported);
        }
        let Some(out) = self.outputs.get(name) else {
            let msg = if self.inputs.contains_key(name) {
                format!("`{name}` is an input; inputs cannot be assigned")
            } else {
                format!("`{name}` is not an output")
            };
            return Err(self.error(Diagnostic::error(
                msg,
                a.target.span,
                format!("declare it with `output {name}: f32[...];`"),
            )));
        };
        if let Some(prev) = out.assigned {
            return Err(self.error(
                Diagnostic::error(
                    format!("output `{name}` is assigned twice"),
                    a.span,
                    "second assignment",
                )
                .with_secondary(prev, "first assignment"),
            ));
        }
        let ty = out.ty.clone();
        let rank = ty.dims.len();
        if a.indices.len() + 1 != rank && a.indices.len() != rank {
            return Err(self.error(Diagnostic::error(
                format!(
                    "`{name}` has {}; index {} of them (the last one takes a row) or all {rank}",
                    count(rank, "axis", "axes"),
                    rank - 1
                ),
                a.span,
                format!("{} given", count(a.indices.len(), "index", "indices")),
            )));
        }
        let mut axes = Vec::new();
        for (k, idx) in a.indices.iter().enumerate() {
            let fi = match &idx.kind {
                ExprKind::Name(n) => FrameIndex::from_name(n),
                _ => None,
            };
            let Some(fi) = fi else {
                return Err(self.error(Diagnostic::error(
                    "an output is indexed by the kernel's indices only",
                    idx.span,
                    "expected one of b, h, i, t",
                )));
            };
            if axes.contains(&fi) {
                return Err(self.error(Diagnostic::error(
                    format!("index `{}` appears twice", fi.name()),
                    idx.span,
                    "repeated index",
                )));
            }
            if fi == FrameIndex::J {
                return Err(self.error(Diagnostic::error(
                    "an output cannot be indexed by j",
                    idx.span,
                    "reduce over the keys instead, e.g. with sum_j(...)",
                )));
            }
            self.unify_extent(fi, &ty.dims[k], idx.span)?;
            axes.push(fi);
        }
        if let Some(out) = self.outputs.get_mut(name) {
            out.assigned = Some(a.span);
        }
        Ok((axes, ty))
    }

    pub(super) fn check_output_value(
        &mut self,
        a: &ast::Assign,
        axes: &[FrameIndex],
        ty: &TensorType,
        kind: &ScalarKind,
        feature: &Feature,
        indices: IndexSet,
    ) -> Res<()> {
        if *kind == ScalarKind::Bool {
            return Err(self.error(Diagnostic::error(
                "an output must be numeric",
                a.value.span,
                "this is a boolean",
            )));
        }
        let extra: Vec<&str> = indices
            .iter()
            .filter(|i| !axes.contains(i))
            .map(FrameIndex::name)
            .collect();
        if !extra.is_empty() {
            let hint = if extra.contains(&"j") {
                "reduce over the keys, e.g. with sum_j(...)"
            } else {
                "index the output by it too"
            };
            return Err(self.error(
                Diagnostic::error(
                    format!(
                        "the value varies with {}, which `{}` is not indexed by",
                        extra.join(", "),
                        a.target.name
                    ),
                    a.value.span,
                    hint,
                )
                .with_secondary(a.target.span, "output indexed here"),
            ));
        }
        let expected = if axes.len() == ty.dims.len() {
            Feature::Scalar
        } else {
            Feature::Vector(ty.dims[ty.dims.len() - 1].clone())
        };
        if *feature != expected {
            let describe = |f: &Feature| match f {
                Feature::Scalar => "a scalar".to_string(),
                Feature::Vector(d) => format!("a row of length {d}"),
                Feature::Matrix(a, b) => format!("a {a}x{b} matrix"),
                Feature::Diag(d) => format!("a diagonal of length {d}"),
            };
            return Err(self.error(Diagnostic::error(
                format!(
                    "shape mismatch: `{}` expects {} here, the value is {}",
                    a.target.name,
                    describe(&expected),
                    describe(feature)
                ),
                a.value.span,
                format!("this is {}", describe(feature)),
            )));
        }
        Ok(())
    }
}

pub(crate) fn describe_kind(k: ScalarKind) -> &'static str {
    match k {
        ScalarKind::Float => "a number",
        ScalarKind::Int => "an integer",
        ScalarKind::Bool => "a boolean condition",
    }
}
