//! What a run prints: as text for a person, or as one JSON object for a program
//! (`--format json`; the schema is in the crate documentation). The same fields either way;
//! those a failed run never reached are absent from the text and `null` in the JSON.

use crate::compare::OutputCheck;
use crate::problem::Problem;
use attnc_bundle::fnv1a64;
use attnc_device::Timing;
use attnc_kernel_abi::{DimValues, dims_text};
use attnc_tensors::HostTensor;
use serde_json::{Value, json};

/// A checksum of one output: enough to compare two runs at a glance, and bit for bit by hash.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputSummary {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Over the finite elements.
    pub sum: f64,
    /// Σ|x| over the finite elements, divided by all elements.
    pub mean_abs: f64,
    pub nonfinite: usize,
    /// FNV-1a 64 of the bytes as stored, in the output's dtype.
    pub hash: u64,
}

impl OutputSummary {
    pub fn of(name: &str, t: &HostTensor) -> OutputSummary {
        let values = t.to_f64_vec();
        let finite = || values.iter().filter(|v| v.is_finite());
        OutputSummary {
            name: name.to_string(),
            dtype: t.dtype().to_string(),
            shape: t.shape().to_vec(),
            sum: finite().sum(),
            mean_abs: finite().map(|v| v.abs()).sum::<f64>() / values.len().max(1) as f64,
            nonfinite: values.iter().filter(|v| !v.is_finite()).count(),
            hash: fnv1a64(t.data()),
        }
    }
}

/// `--check`'s outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckSummary {
    pub reference: String,
    pub tolerance: f64,
    pub outputs: Vec<OutputCheck>,
}

impl CheckSummary {
    pub fn ok(&self) -> bool {
        self.outputs.iter().all(|c| c.ok)
    }
}

/// `--time`'s outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeSummary {
    pub iters: usize,
    pub warmup: usize,
    pub timing: Timing,
}

/// Everything a run found out, filled in as it goes.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub bundle: String,
    pub kernel: Option<String>,
    pub target: Option<String>,
    pub device: Option<String>,
    pub inputs: Option<String>,
    pub dims: Option<DimValues>,
    pub outputs: Vec<OutputSummary>,
    pub check: Option<CheckSummary>,
    pub time: Option<TimeSummary>,
    pub written: Option<String>,
    pub info: Option<Value>,
}

impl Report {
    /// The lines of a run, after `--info`'s summary if any; nothing for `--info` alone.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        if let (Some(kernel), Some(device), Some(dims)) = (&self.kernel, &self.device, &self.dims) {
            out.push(format!(
                "kernel {kernel} ({}) on {device} with {}, inputs from {}",
                self.target.as_deref().unwrap_or("?"),
                dims_text(dims),
                self.inputs.as_deref().unwrap_or("?")
            ));
        }
        for o in &self.outputs {
            out.push(format!(
                "  {}: {}{:?} sum={:.6e} mean|x|={:.6e} nonfinite={} hash={:016x}",
                o.name, o.dtype, o.shape, o.sum, o.mean_abs, o.nonfinite, o.hash
            ));
        }
        if let Some(check) = &self.check {
            for c in &check.outputs {
                out.push(format!(
                    "  check {}: relative L2 error {:.3e} (tolerance {:.0e}): {}",
                    c.name,
                    c.rel_l2,
                    check.tolerance,
                    verdict(c)
                ));
            }
        }
        if let Some(t) = &self.time {
            out.push(format!(
                "  time: median {:.4} ms, min {:.4} ms per call ({} timed calls after {} warm-up)",
                t.timing.median_s * 1e3,
                t.timing.min_s * 1e3,
                t.iters,
                t.warmup
            ));
        }
        if let Some(path) = &self.written {
            out.push(format!("  outputs written to {path}"));
        }
        out.join("\n")
    }

    /// The one JSON object of a run; `exit_code` and `errors` say how it ended.
    pub fn json(&self, exit_code: u8, errors: &[Problem]) -> Value {
        let outputs: Vec<Value> = self
            .outputs
            .iter()
            .map(|o| {
                json!({
                    "name": o.name,
                    "dtype": o.dtype,
                    "shape": o.shape,
                    "sum": finite_or_null(o.sum),
                    "mean_abs": finite_or_null(o.mean_abs),
                    "nonfinite": o.nonfinite,
                    "hash": format!("{:016x}", o.hash),
                })
            })
            .collect();
        let check = self.check.as_ref().map(|check| {
            let outputs: Vec<Value> = check
                .outputs
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "rel_l2": finite_or_null(c.rel_l2),
                        "nan": c.nan,
                        "finite_mismatch": c.finite_mismatch,
                        "ok": c.ok,
                    })
                })
                .collect();
            json!({
                "reference": check.reference,
                "tolerance": check.tolerance,
                "outputs": outputs,
                "ok": check.ok(),
            })
        });
        let time = self.time.as_ref().map(|t| {
            json!({
                "iters": t.iters,
                "warmup": t.warmup,
                "median_ms": t.timing.median_s * 1e3,
                "min_ms": t.timing.min_s * 1e3,
            })
        });
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        json!({
            "bundle": self.bundle,
            "kernel": self.kernel,
            "target": self.target,
            "device": self.device,
            "inputs": self.inputs,
            "dims": self.dims,
            "outputs": outputs,
            "check": check,
            "time": time,
            "written": self.written,
            "info": self.info,
            "ok": exit_code == 0,
            "exit_code": exit_code,
            "errors": errors,
        })
    }
}

fn verdict(c: &OutputCheck) -> String {
    if c.ok {
        return "ok".into();
    }
    let mut why = Vec::new();
    if c.nan > 0 {
        why.push(format!("{} NaN in the output", c.nan));
    }
    if c.finite_mismatch > 0 {
        why.push(format!(
            "{} elements finite in one and not the other",
            c.finite_mismatch
        ));
    }
    if why.is_empty() {
        why.push("above the tolerance".into());
    }
    format!("FAILED ({})", why.join(", "))
}

/// JSON has no NaN or infinity.
fn finite_or_null(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}
