//! Running one program: the frontend, the reference on seeded random inputs, then every device
//! on the same inputs, compared with the device's tolerance. The outcome says which of four
//! things happened: all agree, the program was rejected with a named reason, the reference
//! itself is too sensitive to its inputs for a comparison to mean anything, or a failure (a
//! disagreement, an internal error, a panic).

use crate::devices::{Device, DeviceError};
use attnc_frontend::Sources;
use attnc_ir::{Bindings, Graph};
use attnc_reference::{Tensor, interpret, random_inputs, to_f64_tensors};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Agree,
    /// A stage refused the program with a diagnostic; `reason` is its message.
    Rejected {
        stage: &'static str,
        reason: String,
    },
    /// Perturbing the inputs by one part in a million moves the reference's output by more
    /// than a tenth of the tolerance: f32 rounding alone could explain a difference.
    IllConditioned {
        sensitivity: f64,
    },
    Failure(Failure),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    Disagreement {
        device: String,
        output: String,
        difference: f64,
        tolerance: f64,
        /// Finite and non-finite values disagree.
        finiteness: bool,
    },
    Internal {
        stage: String,
        message: String,
    },
    Panic {
        stage: String,
        message: String,
    },
}

impl Failure {
    /// The kind of failure and its place, as one line (`disagreement cpu`, `internal the
    /// frontend`): what the reducer must keep while it shrinks.
    pub fn tag(&self) -> String {
        match self {
            Failure::Disagreement { device, .. } => format!("disagreement {device}"),
            Failure::Internal { stage, .. } => format!("internal {stage}"),
            Failure::Panic { stage, .. } => format!("panic {stage}"),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Disagreement {
                device,
                output,
                difference,
                tolerance,
                finiteness,
            } => write!(
                f,
                "{device} disagrees with the reference on `{output}`: relative difference {difference:.3e} (tolerance {tolerance:.0e}){}",
                if *finiteness {
                    ", finite and non-finite values differ"
                } else {
                    ""
                }
            ),
            Failure::Internal { stage, message } => {
                write!(f, "internal error in {stage}: {message}")
            }
            Failure::Panic { stage, message } => write!(f, "panic in {stage}: {message}"),
        }
    }
}

/// The message of a caught panic.
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// Runs `f`, turning a panic into a failure of `stage`.
fn guarded<T>(stage: &str, f: impl FnOnce() -> T) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| Failure::Panic {
        stage: stage.to_string(),
        message: panic_message(p),
    })
}

/// A diagnostic's message, unless it is an internal error (which is a failure).
fn rejection(stage: &'static str, message: &str) -> Outcome {
    if message.contains("internal") {
        Outcome::Failure(Failure::Internal {
            stage: stage.to_string(),
            message: message.to_string(),
        })
    } else {
        Outcome::Rejected {
            stage,
            reason: message.to_string(),
        }
    }
}

/// Parses and builds `text` into its verified graph, or the outcome that stops there.
pub fn build(text: &str) -> Result<Graph, Outcome> {
    let mut sources = Sources::new();
    let file = sources.add("generated.attn", text);
    match guarded("the frontend", || {
        attnc_frontend::compile_to_graph(&mut sources, file)
    }) {
        Err(f) => Err(Outcome::Failure(f)),
        Ok(Ok(g)) => Ok(g),
        Ok(Err(diags)) => {
            let first = diags
                .first()
                .map_or("(no diagnostic)", |d| d.message.as_str());
            let spanless = diags.iter().any(|d| d.labels.is_empty());
            if spanless && !first.contains("internal") {
                // Every user error must point into the source.
                return Err(Outcome::Failure(Failure::Internal {
                    stage: "the frontend".into(),
                    message: format!("a diagnostic with no source location: {first}"),
                }));
            }
            Err(rejection("the frontend", first))
        }
    }
}

/// Runs `text` at `shape` on inputs drawn from `seed`, on the reference and on `devices`.
pub fn check(
    text: &str,
    shape: &[(String, i64)],
    seed: u64,
    devices: &[Box<dyn Device>],
) -> Outcome {
    let graph = match build(text) {
        Ok(g) => g,
        Err(o) => return o,
    };
    let fixed: BTreeMap<String, i64> = shape.iter().cloned().collect();
    let bindings = match attnc_ir::bind_dims(&graph, &fixed, &BTreeMap::new()) {
        Ok(b) => b,
        Err(d) => {
            let first = d
                .first()
                .map_or("(no diagnostic)".into(), |d| d.message.clone());
            return rejection("binding dims", &first);
        }
    };
    let inputs = match random_inputs(&graph, &bindings, seed) {
        Ok(i) => to_f64_tensors(&i),
        Err(e) => return rejection("drawing inputs", &e),
    };
    let want = match guarded("the reference", || interpret(&graph, &bindings, &inputs)) {
        Err(f) => return Outcome::Failure(f),
        Ok(Err(e)) => return rejection("the reference", &e.to_string()),
        Ok(Ok(w)) => w,
    };
    // A device that rejects the program leaves it to the others; it is rejected only when every
    // device does (the first reason is reported).
    let mut rejected: Option<String> = None;
    let mut compared = false;
    for device in devices {
        let stage = format!("device {}", device.name());
        let got = match guarded(&stage, || device.run(&graph, &bindings, &inputs)) {
            Err(f) => return Outcome::Failure(f),
            Ok(Err(DeviceError::Rejected(reason))) => {
                rejected.get_or_insert(reason);
                continue;
            }
            Ok(Err(DeviceError::Internal(message))) => {
                return Outcome::Failure(Failure::Internal { stage, message });
            }
            Ok(Ok(got)) => got,
        };
        if let Some(failure) = compare_all(device.as_ref(), &graph, &want, &got) {
            let sensitivity = sensitivity(&graph, &bindings, &inputs, &want);
            let tolerance = match &failure {
                Failure::Disagreement { tolerance, .. } => *tolerance,
                _ => 0.0,
            };
            if sensitivity > tolerance / 10.0 {
                return Outcome::IllConditioned { sensitivity };
            }
            return Outcome::Failure(failure);
        }
        compared = true;
    }
    match rejected {
        Some(reason) if !compared => Outcome::Rejected {
            stage: "a device",
            reason,
        },
        _ => Outcome::Agree,
    }
}

/// The first output on which `got` differs from `want` beyond the device's tolerance.
fn compare_all(
    device: &dyn Device,
    graph: &Graph,
    want: &BTreeMap<String, Tensor>,
    got: &BTreeMap<String, Tensor>,
) -> Option<Failure> {
    for (_, name, ty) in graph.outputs() {
        let tolerance = device.tolerance(ty.dtype);
        let disagreement = |difference, finiteness| {
            Some(Failure::Disagreement {
                device: device.name().to_string(),
                output: name.to_string(),
                difference,
                tolerance,
                finiteness,
            })
        };
        let (Some(w), Some(g)) = (want.get(name), got.get(name)) else {
            return disagreement(f64::INFINITY, true);
        };
        if w.shape != g.shape || w.data.len() != g.data.len() {
            return disagreement(f64::INFINITY, true);
        }
        let (difference, finiteness) = difference(g, w);
        if finiteness || difference > tolerance {
            return disagreement(difference, finiteness);
        }
    }
    None
}

/// The largest difference relative to the reference's largest finite magnitude (at least 1),
/// and whether finite and non-finite values disagree anywhere (infinities must match in sign).
pub fn difference(got: &Tensor, want: &Tensor) -> (f64, bool) {
    let scale = want
        .data
        .iter()
        .filter(|x| x.is_finite())
        .fold(1.0f64, |m, x| m.max(x.abs()));
    let mut worst = 0.0f64;
    let mut finiteness = false;
    for (a, b) in got.data.iter().zip(&want.data) {
        if a.is_finite() && b.is_finite() {
            worst = worst.max((a - b).abs() / scale);
        } else if !(a.is_nan() && b.is_nan()) && a != b {
            finiteness = true;
        }
    }
    (worst, finiteness)
}

/// How far the reference's outputs move when every float input is scaled by a factor within
/// one part in a million of 1 (a fixed pseudo-random pattern).
fn sensitivity(
    graph: &Graph,
    bindings: &Bindings,
    inputs: &BTreeMap<String, Tensor>,
    want: &BTreeMap<String, Tensor>,
) -> f64 {
    let floats: Vec<&str> = graph
        .inputs()
        .iter()
        .filter(|(_, _, ty)| ty.dtype.is_float())
        .map(|(_, n, _)| *n)
        .collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut nudged = inputs.clone();
    for (name, t) in nudged.iter_mut() {
        if !floats.contains(&name.as_str()) {
            continue;
        }
        for x in t.data.iter_mut() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            *x *= 1.0 + 1e-6 * u;
        }
    }
    let Ok(Ok(moved)) = catch_unwind(AssertUnwindSafe(|| interpret(graph, bindings, &nudged)))
    else {
        return f64::INFINITY;
    };
    want.iter()
        .map(|(name, w)| match moved.get(name) {
            Some(m) => {
                let (d, finiteness) = difference(m, w);
                if finiteness { f64::INFINITY } else { d }
            }
            None => f64::INFINITY,
        })
        .fold(0.0, f64::max)
}

/// A rejection reason with names, numbers and source text taken out, for counting by kind.
pub fn reason_kind(reason: &str) -> String {
    let first = reason.lines().next().unwrap_or("");
    let mut out = String::new();
    let mut quoted = false;
    let mut last_digit = false;
    for c in first.chars() {
        if c == '`' {
            if !quoted {
                out.push_str("`_`");
            }
            quoted = !quoted;
            continue;
        }
        if quoted {
            continue;
        }
        if c.is_ascii_digit() {
            if !last_digit {
                out.push('N');
            }
            last_digit = true;
            continue;
        }
        last_digit = false;
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_kinds_drop_names_and_numbers() {
        assert_eq!(
            reason_kind("index `j` ranges over S here, but over `Sk` 12 times\nmore"),
            "index `_` ranges over S here, but over `_` N times"
        );
    }

    #[test]
    fn difference_is_relative_to_the_largest_magnitude_and_sees_infinities() {
        let t = |data: Vec<f64>| Tensor {
            shape: vec![data.len()],
            data,
        };
        let (d, nf) = difference(&t(vec![1.0, 4.1]), &t(vec![1.0, 4.0]));
        assert!((d - 0.025).abs() < 1e-12 && !nf);
        let (_, nf) = difference(&t(vec![f64::INFINITY]), &t(vec![1.0]));
        assert!(nf);
        let (_, nf) = difference(&t(vec![f64::NEG_INFINITY]), &t(vec![f64::INFINITY]));
        assert!(nf);
        let (_, nf) = difference(&t(vec![f64::NAN]), &t(vec![f64::NAN]));
        assert!(!nf);
    }
}
