//! The f32 overflow warning (issue 17: inputs declared `in [1e20, 1e30]` gave all zeros with
//! exit 0): the range analysis finds where an f32 kernel may overflow, names the place, and
//! stays quiet on ordinary data for every example.

use crate::common;
use attnc_ir::ranges::{Interval, OverflowRisk, f32_overflow_risks};
use std::collections::BTreeMap;

/// The analysis on random inputs drawn for `dims`, with the ranges measured on them.
fn risks_on_random_inputs(graph: &attnc_ir::Graph, dims: &[(&str, i64)]) -> Vec<OverflowRisk> {
    let fixed: BTreeMap<String, i64> = dims
        .iter()
        .filter(|(d, _)| {
            graph
                .dims
                .iter()
                .any(|g| g.name == *d && g.default.is_none())
        })
        .map(|(d, v)| (d.to_string(), *v))
        .collect();
    let bindings = attnc_ir::bind_dims(graph, &fixed, &BTreeMap::new()).expect("dims bind");
    let inputs = attnc_reference::random_inputs(graph, &bindings, 5).expect("inputs");
    let ranges: BTreeMap<String, Interval> = attnc_reference::to_f64_tensors(&inputs)
        .into_iter()
        .map(|(name, t)| {
            let lo = t.data.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = t.data.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (name, Interval::new(lo, hi).expect("finite inputs"))
        })
        .collect();
    f32_overflow_risks(graph, &bindings, &ranges)
}

const SHAPE: &[(&str, i64)] = &[
    ("B", 1),
    ("H", 4),
    ("Hkv", 2),
    ("S", 512),
    ("Sq", 512),
    ("Sk", 512),
    ("D", 128),
    ("Dk", 128),
    ("Dqk", 128),
    ("Dv", 128),
    ("W", 64),
    ("BLOCK", 16),
    ("NB", 8),
];

#[test]
fn no_example_warns_on_ordinary_inputs() {
    for path in common::example_files() {
        let graph = common::compile(&path);
        let risks = risks_on_random_inputs(&graph, SHAPE);
        assert!(risks.is_empty(), "{}: {risks:?}", path.display());
    }
}

fn kernel(inputs: &str, output: &str, body: &str) -> String {
    format!(
        "kernel k {{\n  dim B, H, S, D;\n  {inputs}\n  output o: {output}[B, H, S, D];\n  {body}\n}}\n"
    )
}

#[test]
fn scores_of_huge_inputs_are_found_at_the_score() {
    let text = kernel(
        "input q, k, v: f32[B, H, S, D] in [1e20, 1e30];",
        "f32",
        "o[b, h, i] = sum_j(softmax(dot(q[b, h, i], k[b, h, j])) * v[b, h, j]);",
    );
    let graph = common::compile_source("huge.attn", &text);
    let risks = risks_on_random_inputs(&graph, &[("B", 1), ("H", 1), ("S", 8), ("D", 4)]);
    let first = risks.first().expect("a risk");
    assert!(
        first.bound > 1e40 && first.limit == f32::MAX as f64,
        "{risks:?}"
    );
    assert_eq!(&text[first.span.range()], "dot(q[b, h, i], k[b, h, j])");
}

#[test]
fn an_exponential_without_the_max_subtracted_is_found_at_the_exp() {
    let text = kernel(
        "input q, k, v: f32[B, H, S, D] in [-30.0, 30.0];",
        "f32",
        "o[b, h, i] = sum_j(exp(dot(q[b, h, i], k[b, h, j])) * v[b, h, j]);",
    );
    let graph = common::compile_source("exp.attn", &text);
    let risks = risks_on_random_inputs(&graph, &[("B", 1), ("H", 1), ("S", 8), ("D", 4)]);
    let first = risks.first().expect("a risk");
    assert!(
        text[first.span.range()].starts_with("exp("),
        "{risks:?}: {}",
        &text[first.span.range()]
    );
    // The same kernel with the max subtracted, as softmax does, cannot overflow.
    let safe = kernel(
        "input q, k, v: f32[B, H, S, D] in [-30.0, 30.0];",
        "f32",
        "let s = dot(q[b, h, i], k[b, h, j]);\n  let e = exp(s - max_j(s));\n  o[b, h, i] = sum_j(e / sum_j(e) * v[b, h, j]);",
    );
    let graph = common::compile_source("safe.attn", &safe);
    let risks = risks_on_random_inputs(&graph, &[("B", 1), ("H", 1), ("S", 8), ("D", 4)]);
    assert!(risks.is_empty(), "{risks:?}");
}

#[test]
fn an_f16_output_beyond_65504_is_found_at_the_output() {
    let text = kernel(
        "input q, k: f16[B, H, S, D];\n  input v: f32[B, H, S, D] in [1e5, 2e5];",
        "f16",
        "o[b, h, i] = sum_j(softmax(dot(q[b, h, i], k[b, h, j])) * v[b, h, j]);",
    );
    let graph = common::compile_source("f16.attn", &text);
    let risks = risks_on_random_inputs(&graph, &[("B", 1), ("H", 1), ("S", 8), ("D", 4)]);
    assert_eq!(risks.len(), 1, "{risks:?}");
    assert_eq!(risks[0].limit, 65504.0);
    assert!(risks[0].what.contains("output `o`"), "{risks:?}");
}

#[test]
fn attnc_run_warns_with_the_place_and_still_runs() {
    let dir = std::env::temp_dir().join(format!("attnc-overflow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("huge.attn");
    std::fs::write(
        &path,
        kernel(
            "input q, k, v: f32[B, H, S, D] in [1e20, 1e30];",
            "f32",
            "o[b, h, i] = sum_j(softmax(dot(q[b, h, i], k[b, h, j])) * v[b, h, j]);",
        ),
    )
    .expect("write");
    let path = path.to_str().expect("utf-8");
    let out = common::attnc(&["run", path, "--shape", "B=1,H=1,S=8,D=4", "--device", "cpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: the compiled kernel may overflow")
            && stderr.contains("huge.attn:5:"),
        "{stderr}"
    );
    let json = common::attnc(&[
        "--error-format",
        "json",
        "run",
        path,
        "--shape",
        "B=1,H=1,S=8,D=4",
        "--device",
        "cpu",
    ]);
    let line = String::from_utf8_lossy(&json.stderr);
    let first: serde_json::Value =
        serde_json::from_str(line.lines().next().expect("a line")).expect("JSON");
    assert_eq!(first["level"], "warning");
    // Ordinary inputs: no warning.
    let plain = common::attnc(&[
        "run",
        "examples/softmax_causal.attn",
        "--shape",
        "B=1,H=2,S=64,D=16",
        "--device",
        "cpu",
    ]);
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("warning"));
}
