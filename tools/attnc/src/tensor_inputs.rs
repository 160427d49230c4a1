//! Part of `attnc run`: reads the user's `--inputs` file and checks it against the kernel's
//! declared inputs. Before the dims are bound: every tensor named, no extra ones, dtypes and
//! ranks as declared. After (`attnc_ir::bind_dims` binds them from the tensors' shapes): finite
//! values, and values inside the ranges the program declares (`in [lo, hi]`). Every problem is a
//! `Diagnostic`, so the command reports them all at once, and writes nothing.
//!
//! Formats are read by `attnc_tensors`. A bf16 input may arrive as bf16 (`|V2` or `<V2` in
//! `.npy`/`.npz`, `BF16` in `.safetensors`) or as its bits in a `uint16` array (`<u2`, `U16`),
//! since NumPy has no bf16; a `uint16` array is accepted only where the program declares bf16.

use attnc_frontend::Diagnostic;
use attnc_ir::Bindings;
use attnc_ir::graph::{Graph, Op};
use attnc_tensors::{ElementType, HostTensor, TensorFormat, read_tensors};
use std::collections::BTreeMap;
use std::path::Path;

/// The input tensors by name, each of its declared dtype.
pub type Inputs = BTreeMap<String, HostTensor>;

/// Reads `path` and matches its tensors to the kernel's inputs by name, dtype and rank.
pub fn read_inputs(path: &Path, graph: &Graph) -> Result<Inputs, Vec<Diagnostic>> {
    let file = path.display();
    let mut tensors = read_tensors(path).map_err(|e| {
        let d = Diagnostic::global(format!("cannot read the inputs: {e}"));
        vec![match bf16_bits_hint(&e, graph) {
            Some(hint) => d.with_note(hint),
            None => d,
        }]
    })?;
    let declared = graph.inputs();
    let names: Vec<&str> = declared.iter().map(|(_, name, _)| *name).collect();
    if matches!(TensorFormat::from_path(path), Ok(TensorFormat::Npy)) {
        // A .npy file holds one unnamed array (`read_tensors` names it after the file stem).
        match (names.as_slice(), tensors.as_mut_slice()) {
            ([only], [(name, _)]) => *name = only.to_string(),
            _ => {
                let savez: Vec<String> = names.iter().map(|n| format!("{n}={n}")).collect();
                return Err(vec![
                    Diagnostic::global(format!(
                        "{file} is a .npy file, which holds one tensor, but kernel `{}` takes {} \
                         inputs: {}",
                        graph.kernel,
                        names.len(),
                        names.join(", ")
                    ))
                    .with_note(format!(
                        "give them in one .npz or .safetensors file, e.g. \
                         np.savez(\"inputs.npz\", {})",
                        savez.join(", ")
                    )),
                ]);
            }
        }
    }
    let mut held: Vec<String> = tensors.iter().map(|(name, _)| name.clone()).collect();
    if held.is_empty() {
        held.push("no tensors".to_string());
    }
    let mut given: BTreeMap<String, HostTensor> = tensors.into_iter().collect();
    let mut errors = Vec::new();
    let mut inputs = Inputs::new();
    for &(node, name, ty) in &declared {
        let span = graph.node(node).span;
        let declared_as = format!("declared as {ty}");
        let Some(tensor) = given.remove(name) else {
            errors.push(
                Diagnostic::error(
                    format!("input `{name}` is missing from {file}"),
                    span,
                    declared_as,
                )
                .with_note(format!("the file holds: {}", held.join(", "))),
            );
            continue;
        };
        let tensor = match with_declared_dtype(name, tensor, ty.dtype, &file) {
            Ok(t) => t,
            Err(note) => {
                errors.push(note.into_diagnostic(span, declared_as));
                continue;
            }
        };
        if tensor.shape().len() != ty.dims.len() {
            errors.push(Diagnostic::error(
                format!(
                    "input `{name}` must have {} axes, but {file} holds it with {} (shape {:?})",
                    ty.dims.len(),
                    tensor.shape().len(),
                    tensor.shape()
                ),
                span,
                declared_as,
            ));
            continue;
        }
        inputs.insert(name.to_string(), tensor);
    }
    for extra in given.keys() {
        errors.push(
            Diagnostic::global(format!(
                "{file} holds a tensor `{extra}`, which kernel `{}` does not take",
                graph.kernel
            ))
            .with_note(format!(
                "its inputs are: {}; remove `{extra}` from the file, or rename it after the \
                 input it stands for",
                names.join(", ")
            )),
        );
    }
    if errors.is_empty() {
        Ok(inputs)
    } else {
        Err(errors)
    }
}

/// A dtype mismatch, before it is placed at the input's declaration.
struct DtypeMismatch {
    message: String,
    hint: String,
}

impl DtypeMismatch {
    fn into_diagnostic(self, span: attnc_frontend::Span, label: String) -> Diagnostic {
        Diagnostic::error(self.message, span, label).with_note(self.hint)
    }
}

/// The tensor in its declared dtype: as it is, or a uint16 array relabelled as bf16 bits.
fn with_declared_dtype(
    name: &str,
    tensor: HostTensor,
    want: ElementType,
    file: &impl std::fmt::Display,
) -> Result<HostTensor, DtypeMismatch> {
    let got = tensor.dtype();
    if got == want {
        return Ok(tensor);
    }
    if want == ElementType::Bf16
        && let Ok(bf16) = tensor.reinterpret_u16_as_bf16()
    {
        return Ok(bf16);
    }
    Err(DtypeMismatch {
        message: format!("input `{name}` must be {want}, but {file} holds it as {got}"),
        hint: dtype_hint(name, want, got),
    })
}

/// How to produce the declared dtype from NumPy, for a dtype mismatch.
fn dtype_hint(name: &str, want: ElementType, got: ElementType) -> String {
    match (want, got) {
        (ElementType::Bf16, _) => format!(
            "NumPy has no bf16: save `{name}` with ml_dtypes ({name}.astype(ml_dtypes.bfloat16)), \
             or its bf16 bits as uint16 ('<u2'), or in a .safetensors file as BF16"
        ),
        (want, ElementType::U16) => format!(
            "uint16 arrays are taken only as the bits of bf16 inputs; save `{name}` as {want}, \
             e.g. {name}.astype(np.{})",
            numpy_name(want)
        ),
        (want, _) => format!(
            "convert it before saving, e.g. {name}.astype(np.{})",
            numpy_name(want)
        ),
    }
}

fn numpy_name(t: ElementType) -> &'static str {
    match t {
        ElementType::F32 => "float32",
        ElementType::F16 => "float16",
        ElementType::I32 => "int32",
        ElementType::F64 => "float64",
        ElementType::I64 => "int64",
        ElementType::U16 => "uint16",
        ElementType::Bool => "bool_",
        ElementType::Bf16 => "bfloat16",
    }
}

/// Checks the values, once the dims are bound: no NaN or infinity unless `allow_nonfinite`,
/// and every value of an input with a declared range inside it.
pub fn check_values(
    path: &Path,
    graph: &Graph,
    bindings: &Bindings,
    inputs: &Inputs,
    allow_nonfinite: bool,
) -> Result<(), Vec<Diagnostic>> {
    let file = path.display();
    let mut errors = Vec::new();
    for (node, name, _) in graph.inputs() {
        let Some(tensor) = inputs.get(name) else {
            continue;
        };
        let values = tensor.to_f64_vec();
        if !allow_nonfinite {
            let bad: Vec<usize> = (0..values.len())
                .filter(|&i| !values[i].is_finite())
                .collect();
            if let Some(&first) = bad.first() {
                errors.push(
                    Diagnostic::global(format!(
                        "input `{name}` in {file} holds {} at {}{}",
                        values[first],
                        position(first, tensor.shape()),
                        count_of(bad.len(), values.len(), "non-finite")
                    ))
                    .with_note("pass --allow-nonfinite to run on it anyway"),
                );
            }
        }
        let op = &graph.node(node).op;
        if let Some(d) = check_range(op, name, tensor, &values, bindings, &file) {
            errors.push(d);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The diagnostic for the first finite value of `tensor` outside its declared range, if any.
/// Float bounds are rounded to the input's dtype first, as the random inputs are.
fn check_range(
    op: &Op,
    name: &str,
    tensor: &HostTensor,
    values: &[f64],
    bindings: &Bindings,
    file: &impl std::fmt::Display,
) -> Option<Diagnostic> {
    let Op::Input {
        range: Some((lo_id, hi_id)),
        bounds,
        ..
    } = op
    else {
        return None;
    };
    let span = bounds.span(*lo_id).to(bounds.span(*hi_id));
    let declared = format!(
        "[{}, {}]",
        bounds.render(*lo_id, &[], &[]),
        bounds.render(*hi_id, &[], &[])
    );
    let bound = |id| bounds.eval_constant(id, &bindings.dims);
    let (lo, hi) = match (bound(*lo_id), bound(*hi_id)) {
        (Ok(lo), Ok(hi)) => (lo, hi),
        (Err(e), _) | (_, Err(e)) => {
            return Some(Diagnostic::error(
                format!("cannot compute the range {declared} of input `{name}`: {e}"),
                span,
                "range declared here",
            ));
        }
    };
    // Compared as the dtype holds the bounds, as the random inputs are drawn and rounded.
    let (lo_held, hi_held) = (in_dtype(tensor.dtype(), lo), in_dtype(tensor.dtype(), hi));
    let outside = |v: f64| v.is_finite() && !(lo_held..=hi_held).contains(&v);
    let bad: Vec<usize> = (0..values.len()).filter(|&i| outside(values[i])).collect();
    let first = *bad.first()?;
    // `[1, S] = [1, 8]` where the range depends on dims; `[0.5, 2.0]` as written otherwise.
    let constant = |id| bounds.eval_constant(id, &BTreeMap::new()).is_ok();
    let (range, shown) = if constant(*lo_id) && constant(*hi_id) {
        (declared.clone(), declared)
    } else {
        let range = format!("[{lo}, {hi}]");
        (range.clone(), format!("{declared} = {range}"))
    };
    let message = format!(
        "input `{name}` in {file} holds {} at {}, outside its declared range {shown}{}",
        values[first],
        position(first, tensor.shape()),
        count_of(bad.len(), values.len(), "out-of-range")
    );
    Some(
        Diagnostic::error(
            message,
            span,
            format!("every value of `{name}` must lie in {range}"),
        )
        .with_note(
            "the range is part of the kernel's contract: values outside it are rejected, \
                 not clamped",
        ),
    )
}

/// A bound as the dtype holds it (rounded to nearest even); the bound itself if it cannot be.
fn in_dtype(dtype: ElementType, value: f64) -> f64 {
    HostTensor::from_f64(dtype, vec![], &[value])
        .ok()
        .and_then(|t| t.to_f64_vec().first().copied())
        .unwrap_or(value)
}

/// `index [0, 1, 2] (flat index 6)` for a flat index into a row-major tensor of `shape`.
fn position(flat: usize, shape: &[usize]) -> String {
    let mut index = vec![0; shape.len()];
    let mut rest = flat;
    for (slot, &size) in index.iter_mut().zip(shape).rev() {
        if size > 0 {
            *slot = rest % size;
            rest /= size;
        }
    }
    format!("index {index:?} (flat index {flat})")
}

/// `; it is the first of 3 non-finite values (of 64)`, or nothing when there is only one.
fn count_of(count: usize, total: usize, what: &str) -> String {
    if count > 1 {
        format!("; it is the first of {count} {what} values (of {total})")
    } else {
        String::new()
    }
}

/// PyTorch's route to bf16 bits is `t.view(torch.int16).numpy().view(np.uint16)`; without
/// the second view the array is int16, which attnc does not read. Says so when a bf16 input
/// arrives as int16.
fn bf16_bits_hint(e: &attnc_tensors::TensorFileError, graph: &Graph) -> Option<String> {
    let attnc_tensors::TensorFileError::UnsupportedDtype { tensor, dtype, .. } = e else {
        return None;
    };
    let bf16 = graph
        .inputs()
        .iter()
        .any(|(_, name, ty)| *name == tensor && ty.dtype == ElementType::Bf16);
    (bf16 && dtype.contains("int16")).then(|| {
        format!(
            "`{tensor}` is bf16: give its bits as uint16, e.g. from PyTorch \
             `t.view(torch.int16).numpy().view(np.uint16)` (the second view makes them uint16), \
             or save the tensor with safetensors.torch.save_file"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::position;

    #[test]
    fn positions_are_row_major() {
        assert_eq!(position(0, &[2, 3]), "index [0, 0] (flat index 0)");
        assert_eq!(position(5, &[2, 3]), "index [1, 2] (flat index 5)");
        assert_eq!(position(7, &[2, 2, 2]), "index [1, 1, 1] (flat index 7)");
        assert_eq!(position(0, &[]), "index [] (flat index 0)");
    }
}
