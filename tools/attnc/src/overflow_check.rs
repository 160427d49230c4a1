//! Before a compiled run: warns where the kernel's f32 arithmetic may overflow on these inputs
//! although the f64 reference would not (`attnc_ir::ranges`), so a result made wrong by an
//! overflow is never silent. The bounds come from the inputs' actual values, so ordinary data
//! gives no warning.

use attnc_frontend::{Diagnostic, Sources};
use attnc_ir::ranges::{Interval, f32_overflow_risks};
use attnc_ir::{Bindings, Graph};
use attnc_reference::Tensor;
use std::collections::BTreeMap;

/// Prints one warning per place where an overflow may start; returns how many it printed.
pub fn warn(
    graph: &Graph,
    bindings: &Bindings,
    inputs: &BTreeMap<String, Tensor>,
    sources: &Sources,
) -> usize {
    let ranges: BTreeMap<String, Interval> = inputs
        .iter()
        .filter_map(|(name, t)| data_range(&t.data).map(|r| (name.clone(), r)))
        .collect();
    let risks = f32_overflow_risks(graph, bindings, &ranges);
    let diagnostics: Vec<Diagnostic> = risks
        .iter()
        .map(|r| {
            Diagnostic::warning(
                format!(
                    "the compiled kernel may overflow here on these inputs: {} can reach {:.2e}, beyond {:.2e}",
                    r.what, r.bound, r.limit
                ),
                r.span,
                "bounded from the inputs' values",
            )
            .with_note(
                "kernels compute in f32 and the reference in f64: `--check` compares the two, \
                 `--device reference` runs in f64",
            )
        })
        .collect();
    if !diagnostics.is_empty() {
        crate::report::warn(&diagnostics, sources);
    }
    diagnostics.len()
}

/// The smallest and largest value of a tensor; none when it is empty or holds a NaN or an
/// infinity (accepted only with --allow-nonfinite: nothing can be bounded then).
fn data_range(data: &[f64]) -> Option<Interval> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for &x in data {
        if !x.is_finite() {
            return None;
        }
        lo = lo.min(x);
        hi = hi.max(x);
    }
    Interval::new(lo, hi)
}
