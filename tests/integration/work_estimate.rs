//! The work estimate the planner's cost model uses, on hand-computed cases.

use crate::common;
use attnc_ir::work::estimate;
use std::collections::BTreeMap;

fn work(example: &str, dims: &[(&str, i64)]) -> attnc_ir::work::Work {
    let graph = common::compile(&common::example(example));
    let fixed: BTreeMap<String, i64> = dims.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let bindings = attnc_ir::bind_dims(&graph, &fixed, &BTreeMap::new()).expect("dims bind");
    estimate(&graph, &bindings).expect("work is estimated")
}

const SHAPE: &[(&str, i64)] = &[("B", 2), ("H", 4), ("S", 256), ("D", 64)];

#[test]
fn full_softmax_work_is_dominated_by_the_two_contractions() {
    let w = work("softmax_full", SHAPE);
    // Score and aggregation: 2 * B*H*S*S*D each; the maps and row reductions add a few per pair.
    let contractions = 4.0 * 2.0 * 4.0 * 256.0 * 256.0 * 64.0;
    assert!(w.flops >= contractions, "{} < {contractions}", w.flops);
    assert!(
        w.flops < 1.2 * contractions,
        "{} is far above {contractions}",
        w.flops
    );
    assert_eq!(w.mask_density, 1.0);
    // q, k, v read and o written once, f32: 4 tensors of B*H*S*D*4 bytes.
    assert_eq!(w.bytes_moved, 4.0 * 2.0 * 4.0 * 256.0 * 64.0 * 4.0);
    // The KV cache: k and v.
    assert_eq!(w.resident_bytes, 2.0 * 2.0 * 4.0 * 256.0 * 64.0 * 4.0);
}

#[test]
fn a_causal_mask_keeps_a_little_over_half_the_pairs() {
    let full = work("softmax_full", SHAPE);
    let causal = work("softmax_causal", SHAPE);
    let expected = (256.0 + 1.0) / (2.0 * 256.0);
    assert!(
        (causal.mask_density - expected).abs() < 1e-12,
        "{}",
        causal.mask_density
    );
    assert!(causal.density_exact);
    let ratio = causal.flops / full.flops;
    assert!(
        (ratio - expected).abs() < 0.02,
        "causal/full flops = {ratio}"
    );
}

#[test]
fn a_sliding_window_costs_in_proportion_to_the_window() {
    let w = work(
        "sliding_window",
        &[("B", 1), ("H", 2), ("S", 1024), ("D", 64), ("W", 64)],
    );
    // Each row keeps min(i + 1, W) keys.
    let kept: f64 = (0..1024).map(|i| (i + 1).min(64) as f64).sum();
    let expected = kept / (1024.0 * 1024.0);
    assert!(
        (w.mask_density - expected).abs() < 0.01,
        "{} vs {expected}",
        w.mask_density
    );
}

#[test]
fn a_data_dependent_mask_is_counted_in_full_and_says_so() {
    let w = work("document_mask", SHAPE);
    assert_eq!(w.mask_density, 1.0);
    assert!(!w.density_exact);
}

#[test]
fn a_recurrence_keeps_its_state_not_a_kv_cache() {
    let w = work("retention", SHAPE);
    // The D x D state per (b, h), f32.
    assert_eq!(w.resident_bytes, 2.0 * 4.0 * 64.0 * 64.0 * 4.0);
    // Per step: a scaled state, an outer product, a sum and a row-matrix product, each O(D^2).
    let per_step = 64.0 * 64.0;
    let steps = 2.0 * 4.0 * 256.0;
    assert!(
        w.flops > 4.0 * per_step * steps && w.flops < 8.0 * per_step * steps,
        "{}",
        w.flops
    );
}

#[test]
fn a_mask_reading_a_let_of_indices_is_measured_through_it() {
    // issue 17: `let p = i; mask j <= p;` was counted as a mask reading input data.
    let source = std::fs::read_to_string(common::example("softmax_causal"))
        .expect("read")
        .replace("mask j <= i;", "let p = i;\n  mask j <= p;");
    assert!(source.contains("mask j <= p;"), "the example changed");
    let graph = common::compile_source("let_mask.attn", &source);
    let fixed: BTreeMap<String, i64> = SHAPE.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let bindings = attnc_ir::bind_dims(&graph, &fixed, &BTreeMap::new()).expect("dims bind");
    let w = estimate(&graph, &bindings).expect("work is estimated");
    assert!(w.density_exact);
    let expected = (256.0 + 1.0) / (2.0 * 256.0);
    assert!(
        (w.mask_density - expected).abs() < 1e-12,
        "{}",
        w.mask_density
    );
}
