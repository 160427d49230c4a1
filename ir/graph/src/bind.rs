//! Giving the symbolic dims values: from `--shape`, from the shapes of given tensors, and from
//! `dim X = default;`. Every conflict names the symbol, both values and where each came from;
//! `require` conditions are checked last.

use crate::expr::ExprNode;
use crate::graph::Graph;
use crate::types::{Dim, DimEvalError, FrameIndex};
use attnc_source::wording::count;
use attnc_source::{Diagnostic, Span};
use std::collections::BTreeMap;
use std::fmt;

/// The values of all dims of one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bindings {
    pub dims: BTreeMap<String, i64>,
}

impl Bindings {
    pub fn eval(&self, d: &Dim) -> Result<i64, DimEvalError> {
        d.eval(&self.dims)
    }

    /// The number of values a frame index takes; 1 for an index the kernel does not use.
    pub fn extent(&self, graph: &Graph, fi: FrameIndex) -> usize {
        graph
            .extents
            .get(&fi)
            .and_then(|d| self.eval(d).ok())
            .map_or(1, |v| v.max(0) as usize)
    }

    /// The concrete shape of a tensor type.
    pub fn shape(&self, dims: &[Dim]) -> Result<Vec<usize>, DimEvalError> {
        dims.iter()
            .map(|d| self.eval(d).map(|v| v.max(0) as usize))
            .collect()
    }
}

impl fmt::Display for Bindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.dims.iter().map(|(k, v)| format!("{k}={v}")).collect();
        write!(f, "{}", parts.join(","))
    }
}

/// Where a dim's value came from, for messages.
#[derive(Clone, Debug)]
enum Origin {
    Flag,
    Tensor {
        name: String,
        axis: usize,
        shape: Vec<usize>,
        /// The input's declaration, so a conflict can point at both tensors in the source.
        span: Span,
    },
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => write!(f, "--shape"),
            Origin::Tensor {
                name, axis, shape, ..
            } => write!(f, "axis {axis} of input `{name}` (shape {shape:?})"),
            Origin::Default => write!(f, "its default"),
        }
    }
}

/// Binds every dim of `graph`. `fixed` comes from `--shape`; `tensors` are the shapes of the
/// inputs the user gave (empty when attnc draws random inputs).
///
/// Values from `--shape` come first, then from the tensors in declaration order, then from
/// defaults. A tensor that disagrees with an earlier value is reported with the symbol, both
/// values and where each came from; tensors are pointed at in the source.
pub fn bind_dims(
    graph: &Graph,
    fixed: &BTreeMap<String, i64>,
    tensors: &BTreeMap<String, Vec<usize>>,
) -> Result<Bindings, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut values: BTreeMap<String, (i64, Origin)> = BTreeMap::new();
    let known: Vec<&str> = graph.dims.iter().map(|d| d.name.as_str()).collect();
    let unknown: Vec<&String> = fixed
        .keys()
        .filter(|n| !known.contains(&n.as_str()))
        .collect();
    if !unknown.is_empty() {
        // One error for the flag: the dims it failed to give would only repeat it.
        return Err(vec![unknown_shape_names(graph, &known, &unknown)]);
    }
    for (name, value) in fixed {
        values.insert(name.clone(), (*value, Origin::Flag));
    }
    // Tensors that contradict a symbol's first value, per symbol, reported together below.
    let mut conflicts: BTreeMap<String, Vec<Conflict>> = BTreeMap::new();
    for (node, name, ty) in graph.inputs() {
        let Some(shape) = tensors.get(name) else {
            continue;
        };
        let span = graph.node(node).span;
        if shape.len() != ty.dims.len() {
            errors.push(Diagnostic::error(
                format!(
                    "input `{name}` must have {}, but the given tensor has {} (shape {shape:?})",
                    count(ty.dims.len(), "axis", "axes"),
                    shape.len()
                ),
                span,
                format!("declared as {ty}"),
            ));
            continue;
        }
        for (axis, (dim, size)) in ty.dims.iter().zip(shape).enumerate() {
            let Some(sym) = dim.as_symbol() else { continue };
            let size = *size as i64;
            match values.get(sym) {
                Some((v, _)) if *v != size => {
                    conflicts
                        .entry(sym.to_string())
                        .or_default()
                        .push(Conflict {
                            name: name.to_string(),
                            axis,
                            size,
                            shape: shape.clone(),
                            span,
                        });
                }
                Some(_) => {}
                None => {
                    let origin = Origin::Tensor {
                        name: name.to_string(),
                        axis,
                        shape: shape.clone(),
                        span,
                    };
                    values.insert(sym.to_string(), (size, origin));
                }
            }
        }
    }
    for (sym, list) in &conflicts {
        if let Some((value, origin)) = values.get(sym) {
            errors.push(conflict_diagnostic(sym, *value, origin, list));
        }
    }
    for d in &graph.dims {
        if values.contains_key(&d.name) {
            continue;
        }
        if let Some((arena, root)) = &d.default {
            let plain: BTreeMap<String, i64> =
                values.iter().map(|(k, (v, _))| (k.clone(), *v)).collect();
            match arena.eval_constant(*root, &plain) {
                Ok(v) => {
                    values.insert(d.name.clone(), (v as i64, Origin::Default));
                }
                Err(e) => errors.push(Diagnostic::error(
                    format!("cannot compute the default of dim `{}`: {e}", d.name),
                    d.span,
                    "default here",
                )),
            }
        }
    }
    for d in &graph.dims {
        match values.get(&d.name) {
            None => errors.push(
                Diagnostic::error(
                    format!("dim `{}` has no value", d.name),
                    d.span,
                    "declared here",
                )
                .with_note(format!(
                    "give it with --shape {}=N, or from an input tensor",
                    d.name
                )),
            ),
            Some((v, origin)) if *v < 1 => errors.push(Diagnostic::error(
                format!(
                    "dim `{}` is {v} (from {origin}); every dim must be at least 1",
                    d.name
                ),
                d.span,
                "declared here",
            )),
            Some(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    check_tensor_shapes(graph, &values, tensors, &mut errors);
    check_axes_positive(graph, &values, &mut errors);
    let bindings = Bindings {
        dims: values.iter().map(|(k, (v, _))| (k.clone(), *v)).collect(),
    };
    let origins = values;
    for r in &graph.requirements {
        match r.arena.eval_constant(r.root, &bindings.dims) {
            Ok(v) if v != 0.0 => {}
            Ok(_) => {
                let mut d = Diagnostic::error(
                    format!("requirement `{}` does not hold for {bindings}", r.text),
                    r.span,
                    "required here",
                );
                for sym in r.arena.ids().filter_map(|id| match r.arena.node(id) {
                    ExprNode::Dim(sym) => Some(sym),
                    _ => None,
                }) {
                    if let Some((value, origin)) = origins.get(sym)
                        && !d.notes.iter().any(|n| n.starts_with(&format!("`{sym}` ")))
                    {
                        d = d.with_note(format!("`{sym}` = {value} comes from {origin}"));
                    }
                }
                errors.push(d);
            }
            Err(e) => errors.push(Diagnostic::error(
                format!("cannot check requirement `{}`: {e}", r.text),
                r.span,
                "required here",
            )),
        }
    }
    if errors.is_empty() {
        Ok(bindings)
    } else {
        Err(errors)
    }
}

/// `--shape` names dims the kernel does not declare: lists them with the declared dims, and
/// a likely intended name for each (dims are case-sensitive: `b` is not `B`).
fn unknown_shape_names(graph: &Graph, known: &[&str], unknown: &[&String]) -> Diagnostic {
    let listed: Vec<String> = unknown.iter().map(|n| format!("`{n}`")).collect();
    let mut d = Diagnostic::global(format!(
        "--shape names {}, which kernel `{}` does not declare; its dims are {}",
        listed.join(", "),
        graph.kernel,
        known.join(", ")
    ));
    let mut case_only = false;
    for n in unknown {
        if let Some(near) = attnc_source::suggest::closest(n, known.iter().copied()) {
            case_only |= near.eq_ignore_ascii_case(n);
            d = d.with_note(format!("for `{n}`, did you mean `{near}`?"));
        }
    }
    if case_only {
        d = d.with_note("dim names are case-sensitive");
    }
    d
}

/// A tensor whose axis contradicts the value a symbol already has.
struct Conflict {
    name: String,
    axis: usize,
    size: i64,
    shape: Vec<usize>,
    span: Span,
}

/// One diagnostic per symbol: its value and where it came from, then every tensor that
/// disagrees, each pointed at in the source.
fn conflict_diagnostic(sym: &str, value: i64, origin: &Origin, list: &[Conflict]) -> Diagnostic {
    let says = |c: &Conflict| {
        format!(
            "input `{}` has shape {:?}, where `{sym}` (axis {}) is {}",
            c.name, c.shape, c.axis, c.size
        )
    };
    let Some((first, rest)) = list.split_first() else {
        return Diagnostic::global(format!("dim `{sym}` is {value} from {origin}"));
    };
    let mut d = Diagnostic::error(
        format!("dim `{sym}` is {value} from {origin}, but {}", says(first)),
        first.span,
        format!("`{sym}` is {} here", first.size),
    );
    for c in rest {
        d = d
            .with_secondary(c.span, format!("`{sym}` is {} here", c.size))
            .with_note(format!("also, {}", says(c)));
    }
    if let Origin::Tensor { span, .. } = origin {
        d = d.with_secondary(*span, format!("`{sym}` is {value} here"));
    }
    d
}

/// Axes given by expressions (`2 * S - 1`) are checked once all symbols have values; the
/// message says where each symbol of the expression got its value.
/// Every axis of every tensor must have at least one element: an axis written as an
/// expression (`S - 100`, `0`) can come out empty or negative for the bound dims, and a kernel
/// would then index a tensor that holds nothing.
fn check_axes_positive(
    graph: &Graph,
    values: &BTreeMap<String, (i64, Origin)>,
    errors: &mut Vec<Diagnostic>,
) {
    let plain: BTreeMap<String, i64> = values.iter().map(|(k, (v, _))| (k.clone(), *v)).collect();
    let tensors = graph
        .inputs()
        .into_iter()
        .map(|(n, name, ty)| (n, "input", name, ty))
        .chain(
            graph
                .outputs()
                .into_iter()
                .map(|(n, name, ty)| (n, "output", name, ty)),
        );
    for (node, what, name, ty) in tensors {
        for (axis, dim) in ty.dims.iter().enumerate() {
            let Ok(v) = dim.eval(&plain) else { continue };
            if v >= 1 {
                continue;
            }
            let value = if dim.to_string() == v.to_string() {
                format!("{v}")
            } else {
                format!("{dim} = {v}")
            };
            let mut d = Diagnostic::error(
                format!(
                    "axis {axis} of {what} `{name}` is {value}; every axis must have at least 1 element"
                ),
                graph.node(node).span,
                format!("declared as {ty}"),
            );
            for (sym, (value, origin)) in values {
                if mentions(dim, sym) {
                    d = d.with_note(format!("`{sym}` = {value} comes from {origin}"));
                }
            }
            errors.push(d);
        }
    }
}

fn check_tensor_shapes(
    graph: &Graph,
    values: &BTreeMap<String, (i64, Origin)>,
    tensors: &BTreeMap<String, Vec<usize>>,
    errors: &mut Vec<Diagnostic>,
) {
    let plain: BTreeMap<String, i64> = values.iter().map(|(k, (v, _))| (k.clone(), *v)).collect();
    for (node, name, ty) in graph.inputs() {
        let Some(shape) = tensors.get(name) else {
            continue;
        };
        let span = graph.node(node).span;
        for (axis, (dim, size)) in ty.dims.iter().zip(shape).enumerate() {
            match dim.eval(&plain) {
                Ok(v) if v == *size as i64 => {}
                Ok(v) => {
                    let mut d = Diagnostic::error(
                        format!(
                            "axis {axis} of input `{name}` must be {dim} = {v}, but the given \
                             tensor has {size} (shape {shape:?})"
                        ),
                        span,
                        format!("declared as {ty}"),
                    );
                    for (sym, (value, origin)) in values {
                        if mentions(dim, sym) {
                            d = d.with_note(format!("`{sym}` = {value} comes from {origin}"));
                        }
                    }
                    errors.push(d);
                }
                Err(e) => errors.push(Diagnostic::error(
                    format!("cannot compute axis {axis} of input `{name}` ({dim}): {e:?}"),
                    span,
                    format!("declared as {ty}"),
                )),
            }
        }
    }
}

/// Whether the dim expression uses the symbol `sym`.
fn mentions(dim: &Dim, sym: &str) -> bool {
    match dim {
        Dim::Sym(s) => s == sym,
        Dim::Const(_) => false,
        Dim::Add(a, b) | Dim::Sub(a, b) | Dim::Mul(a, b) | Dim::FloorDiv(a, b) => {
            mentions(a, sym) || mentions(b, sym)
        }
    }
}
