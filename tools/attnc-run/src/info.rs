//! `--info`: what a bundle holds, from its manifest: the kernel and its source, the target,
//! dims, requirements, tensors, each launch's geometry and arguments, guards and tiling.

use crate::inputs::decl_text;
use attnc_bundle::Bundle;
use attnc_kernel_abi::{Arg, Bound, KernelManifest};
use serde_json::{Value, json};
use std::path::Path;

/// The summary as text, one fact a line.
pub fn text(path: &Path, bundle: &Bundle) -> String {
    let m = &bundle.manifest;
    let mut out = Vec::new();
    let code: usize = bundle.sections.iter().map(|(_, d)| d.len()).sum();
    out.push(format!(
        "bundle     {} ({} code section{}, {code} bytes)",
        path.display(),
        bundle.sections.len(),
        if bundle.sections.len() == 1 { "" } else { "s" }
    ));
    out.push(format!("kernel     {} (from {})", m.kernel, m.source));
    out.push(format!("target     {}", m.target));
    out.push(format!("dims       {}", dims_text(m)));
    for r in &m.requirements {
        out.push(format!("require    {}", r.text));
    }
    for (role, tensors) in [("input", &m.inputs), ("output", &m.outputs)] {
        for t in tensors {
            let range = t.range.as_ref().map_or(String::new(), |r| {
                format!(" in [{}, {}]", bound_text(&r.lo), bound_text(&r.hi))
            });
            out.push(format!("{role:<10} {}: {}{range}", t.name, decl_text(t)));
        }
    }
    for w in &m.workspaces {
        out.push(format!("workspace  {}: {}[{}]", w.name, w.element, w.len));
    }
    for (k, l) in m.launches.iter().enumerate() {
        let bytes = bundle.section(&l.code).map_or(0, <[u8]>::len);
        out.push(format!(
            "launch {k}   {} (code {}, {bytes} bytes)",
            l.signature.name, l.code
        ));
        let grid: Vec<String> = l.grid.iter().map(ToString::to_string).collect();
        out.push(format!(
            "           grid [{}], block {:?}, shared {} bytes",
            grid.join(", "),
            l.block,
            l.shared_bytes
        ));
        let args: Vec<String> = l
            .signature
            .params
            .iter()
            .zip(&l.args)
            .map(|(p, a)| format!("{}={}", p.name(), arg_text(a)))
            .collect();
        out.push(format!("           args {}", args.join(", ")));
    }
    for g in &m.guards {
        let at = g
            .location
            .as_deref()
            .map_or(String::new(), |l| format!("{l}: "));
        out.push(format!("guard {:<4} {at}{}", g.code, g.message));
    }
    if !m.tiling.is_empty() {
        out.push(format!("tiling     {}", m.tiling));
    }
    out.join("\n")
}

/// The summary as JSON: the manifest itself, and the code sections' sizes.
pub fn json(path: &Path, bundle: &Bundle) -> Value {
    let sections: Vec<Value> = bundle
        .sections
        .iter()
        .map(|(name, data)| json!({"name": name, "bytes": data.len()}))
        .collect();
    json!({
        "bundle": path.display().to_string(),
        "manifest": serde_json::to_value(&bundle.manifest).unwrap_or(Value::Null),
        "sections": sections,
    })
}

/// `B, H, S, D = 128 (compiled for), W = 256 (default)`.
fn dims_text(m: &KernelManifest) -> String {
    let parts: Vec<String> = m
        .dims
        .iter()
        .map(|d| match (d.specialised, &d.default) {
            (Some(v), _) => format!("{} = {v} (compiled for)", d.name),
            (None, Some(e)) => format!("{} = {e} (default)", d.name),
            (None, None) => d.name.clone(),
        })
        .collect();
    parts.join(", ")
}

fn bound_text(b: &Bound) -> String {
    match b {
        Bound::Float(x) => format!("{x}"),
        Bound::Int(e) => e.to_string(),
    }
}

fn arg_text(a: &Arg) -> String {
    match a {
        Arg::Tensor { name } => name.clone(),
        Arg::Workspace { name } => format!("workspace:{name}"),
        Arg::Status => "status".into(),
        Arg::Int { value } => value.to_string(),
        Arg::F32 { value } => format!("{value}"),
        Arg::TensorMaps { maps } => {
            let each: Vec<String> = maps
                .iter()
                .map(|m| format!("{} box {:?}", m.tensor, m.boxed))
                .collect();
            format!("tensor maps [{}]", each.join(", "))
        }
    }
}
