//! Binding a manifest's dims for one call: from the caller's values, from the shapes of the
//! tensors given, from defaults; then checking specialised values, tensor shapes and `require`
//! conditions. The compiler's own binder does the same with source spans for its messages; this
//! one serves runtimes that have only the manifest.

use crate::expr::Expr;
use crate::manifest::{Bound, KernelManifest, TensorDecl};
use std::collections::BTreeMap;
use std::fmt;

/// One reason a call cannot be made, in words a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindError(pub String);

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BindError {}

/// The dims of one call, by name.
pub type DimValues = BTreeMap<String, i64>;

impl KernelManifest {
    /// Binds every dim. `given` holds the caller's values (`--shape`), `shapes` the shapes of the
    /// input tensors at hand. Every problem is reported, not only the first.
    pub fn bind(
        &self,
        given: &DimValues,
        shapes: &BTreeMap<String, Vec<usize>>,
    ) -> Result<DimValues, Vec<BindError>> {
        let mut errors = Vec::new();
        let mut values: DimValues = DimValues::new();
        let mut origin: BTreeMap<String, String> = BTreeMap::new();
        for (name, v) in given {
            if self.dims.iter().all(|d| &d.name != name) {
                let known: Vec<&str> = self.dims.iter().map(|d| d.name.as_str()).collect();
                errors.push(BindError(format!(
                    "`{name}` is not a dim of kernel `{}`; its dims are {}",
                    self.kernel,
                    known.join(", ")
                )));
                continue;
            }
            values.insert(name.clone(), *v);
            origin.insert(name.clone(), "the given shape".into());
        }
        for t in &self.inputs {
            let Some(shape) = shapes.get(&t.name) else {
                continue;
            };
            if shape.len() != t.shape.len() {
                errors.push(BindError(format!(
                    "input `{}` must have {} axes ({}), but the given tensor has shape {shape:?}",
                    t.name,
                    t.shape.len(),
                    shape_text(t)
                )));
                continue;
            }
            for (axis, (e, size)) in t.shape.iter().zip(shape).enumerate() {
                let Expr::Dim(sym) = e else { continue };
                let size = *size as i64;
                match values.get(sym) {
                    Some(v) if *v != size => errors.push(BindError(format!(
                        "dim `{sym}` is {v} from {}, but axis {axis} of input `{}` (shape {shape:?}) makes it {size}",
                        origin[sym], t.name
                    ))),
                    Some(_) => {}
                    None => {
                        values.insert(sym.clone(), size);
                        origin.insert(sym.clone(), format!("input `{}`", t.name));
                    }
                }
            }
        }
        for d in &self.dims {
            if values.contains_key(&d.name) {
                continue;
            }
            if let Some(default) = &d.default {
                match default.eval(&values) {
                    Ok(v) => {
                        values.insert(d.name.clone(), v);
                        origin.insert(d.name.clone(), "its default".into());
                    }
                    Err(e) => errors.push(BindError(format!(
                        "cannot compute the default of dim `{}`: {e}",
                        d.name
                    ))),
                }
            } else if let Some(v) = d.specialised {
                values.insert(d.name.clone(), v);
                origin.insert(d.name.clone(), "the compiled kernel".into());
            }
        }
        for d in &self.dims {
            match (values.get(&d.name), d.specialised) {
                (None, _) => errors.push(BindError(format!(
                    "dim `{}` has no value: give it, or pass a tensor that has it",
                    d.name
                ))),
                (Some(v), _) if *v < 1 => errors.push(BindError(format!(
                    "dim `{}` is {v} (from {}); every dim must be at least 1",
                    d.name, origin[&d.name]
                ))),
                (Some(v), Some(s)) if *v != s => errors.push(BindError(format!(
                    "dim `{}` is {v} (from {}), but the kernel was compiled for {}={s}; build it again for this value",
                    d.name, origin[&d.name], d.name
                ))),
                _ => {}
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        for t in &self.inputs {
            let Some(shape) = shapes.get(&t.name) else {
                continue;
            };
            match self.shape_of(t, &values) {
                Ok(want) if want == *shape => {}
                Ok(want) => errors.push(BindError(format!(
                    "input `{}` must have shape {want:?} ({}), but the given tensor has {shape:?}",
                    t.name,
                    shape_text(t)
                ))),
                Err(e) => errors.push(e),
            }
        }
        for r in &self.requirements {
            match r.condition.eval(&values) {
                Ok(0) => errors.push(BindError(format!(
                    "requirement `{}` does not hold for {}",
                    r.text,
                    dims_text(&values)
                ))),
                Ok(_) => {}
                Err(e) => errors.push(BindError(format!(
                    "cannot check requirement `{}`: {e}",
                    r.text
                ))),
            }
        }
        if errors.is_empty() {
            Ok(values)
        } else {
            Err(errors)
        }
    }

    /// The concrete shape of a tensor under bound dims.
    pub fn shape_of(&self, t: &TensorDecl, dims: &DimValues) -> Result<Vec<usize>, BindError> {
        t.shape
            .iter()
            .map(|e| {
                let v = e.eval(dims).map_err(|err| {
                    BindError(format!("cannot compute the shape of `{}`: {err}", t.name))
                })?;
                usize::try_from(v).map_err(|_| {
                    BindError(format!("axis `{e}` of `{}` is {v}, below zero", t.name))
                })
            })
            .collect()
    }

    /// Elements of a tensor under bound dims, with overflow reported rather than wrapped.
    pub fn elements_of(&self, t: &TensorDecl, dims: &DimValues) -> Result<u64, BindError> {
        self.shape_of(t, dims)?
            .iter()
            .try_fold(1u64, |acc, &n| acc.checked_mul(n as u64))
            .ok_or_else(|| {
                BindError(format!(
                    "`{}` has more elements than fit in 64 bits",
                    t.name
                ))
            })
    }

    /// The declared range of a tensor's values under bound dims, as floats.
    pub fn range_of(
        &self,
        t: &TensorDecl,
        dims: &DimValues,
    ) -> Result<Option<(f64, f64)>, BindError> {
        let Some(r) = &t.range else { return Ok(None) };
        let end = |b: &Bound| -> Result<f64, BindError> {
            match b {
                Bound::Float(x) => Ok(*x),
                Bound::Int(e) => e.eval(dims).map(|v| v as f64).map_err(|err| {
                    BindError(format!("cannot compute the range of `{}`: {err}", t.name))
                }),
            }
        };
        Ok(Some((end(&r.lo)?, end(&r.hi)?)))
    }
}

fn shape_text(t: &TensorDecl) -> String {
    let axes: Vec<String> = t.shape.iter().map(Expr::to_string).collect();
    format!("{}[{}]", t.element, axes.join(", "))
}

/// `B=2, H=8, S=128`, for messages.
pub fn dims_text(dims: &DimValues) -> String {
    let parts: Vec<String> = dims.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(", ")
}
