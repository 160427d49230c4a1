//! Every parallel example compiles to SPIR-V that `spirv-val` accepts for Vulkan 1.3, and runs
//! on a Vulkan device (lavapipe in CI) on fresh seeded random inputs, its outputs poisoned with
//! NaN first and compared with the f64 reference interpreter by relative L2 error. Examples the
//! back end does not handle yet must fail to compile with an "unsupported" error, never panic.
//! With no Vulkan device the device checks print "skipped: …", unless `ATTNC_REQUIRE_VULKAN`
//! is set (CI), where a missing device fails.

mod common;

use attnc_device::Device;
use attnc_spirv::{Options, SpirvError};
use common::*;
use std::collections::BTreeMap;
use std::time::Instant;

/// Lavapipe timings of two kernels at a larger shape, staged and unstaged
/// (`cargo test -- --ignored`): the median of five calls on resident inputs, by the device's
/// timestamps.
#[test]
#[ignore]
fn lavapipe_timings() {
    let Some(dev) = device() else { return };
    for ((name, text), (layout, options)) in [
        ("softmax_causal", "B=1,H=8,S=1024,D=64"),
        ("softmax_full", "B=1,H=8,S=1024,D=64"),
    ]
    .into_iter()
    .flat_map(|case| LAYOUTS.map(|l| (case, l)))
    {
        let (graph, sources) = graph_of(&example(name));
        let shape = parse_shape(text);
        let (_, bundle) = build_with(&graph, &sources, &shape, options).unwrap();
        let bindings = attnc_ir::bind_dims(&graph, &shape, &BTreeMap::new()).unwrap();
        let inputs = attnc_reference::random_inputs(&graph, &bindings, 1).unwrap();
        let kernel = dev.load(&bundle).unwrap();
        let dims = bundle
            .manifest
            .bind(&bindings.dims, &BTreeMap::new())
            .unwrap();
        let t = kernel.time(&dims, &inputs, 1, 5).unwrap();
        let flops = attnc_ir::work::estimate(&graph, &bindings).map_or(0.0, |w| w.flops);
        println!(
            "{name} {text} {layout} on {}: median {:.1} ms, {:.2} GFLOP/s",
            dev.name(),
            t.median_s * 1e3,
            flops / t.median_s / 1e9
        );
    }
}

/// Each parallel example with the shapes it runs at: a ragged S, Sq ≠ Sk and GQA where the
/// example has them, head dims 8 to 32 (lavapipe is a CPU: shapes stay small).
const CASES: &[(&str, &[&str])] = &[
    (
        "softmax_full",
        &[
            "B=1,H=2,S=77,D=16",
            "B=2,H=1,S=40,D=32",
            "B=1,H=1,S=33,D=128",
        ],
    ),
    (
        "softmax_causal",
        &[
            "B=1,H=2,S=77,D=16",
            "B=2,H=1,S=64,D=32",
            "B=1,H=1,S=70,D=64",
        ],
    ),
    (
        "gqa_causal",
        &["B=1,H=4,Hkv=2,S=77,D=16", "B=1,H=3,Hkv=1,S=50,D=8"],
    ),
    ("mqa_causal", &["B=1,H=3,S=77,D=16"]),
    (
        "cross_attention",
        &[
            "B=1,H=2,Sq=77,Sk=50,Dqk=16,Dv=8",
            "B=2,H=1,Sq=20,Sk=130,Dqk=8,Dv=16",
        ],
    ),
    ("alibi_causal", &["B=1,H=4,S=77,D=16"]),
    ("softcap_causal", &["B=1,H=2,S=77,D=16"]),
    ("relu_attention", &["B=1,H=2,S=77,D=16"]),
    ("sigmoid_bias", &["B=1,H=2,S=77,D=16"]),
    (
        "sliding_window",
        &["B=1,H=2,S=77,D=16,W=16", "B=1,H=1,S=150,D=8"],
    ),
    (
        "sink_sliding_window",
        &["B=1,H=2,S=77,D=16,W=20", "B=1,H=2,S=90,D=8"],
    ),
    (
        "block_sparse",
        &["B=1,H=2,S=77,D=16,NB=2", "B=1,H=1,S=130,D=8,NB=3"],
    ),
    ("document_mask", &["B=2,H=2,S=77,D=16"]),
    ("padded_bias", &["B=2,H=2,S=77,D=16"]),
    ("qk_norm_causal", &["B=1,H=2,S=77,D=16"]),
    ("relative_bias_table", &["B=1,H=2,S=77,D=16"]),
    ("t5_bucketed_bias", &["B=1,H=2,S=77,D=16"]),
    ("differential_causal", &["B=1,H=2,S=77,D=16,Dv=8"]),
    ("standardized_scores", &["B=1,H=2,S=77,D=16"]),
    // Computed indices clamped into range: every guard passes.
    ("tests/bounds/bucket_table", &["B=1,H=2,S=77,D=8"]),
];

/// The examples the back end refuses today, with a word of the reason it must give.
const UNSUPPORTED: &[(&str, &str, &str)] = &[(
    "forgetting_attention",
    "B=1,H=2,S=77,D=16",
    "run-time dim `S`",
)];

#[test]
fn every_supported_example_matches_the_reference_on_vulkan() {
    let dev = device();
    if let Some(d) = &dev {
        println!("device: {}", d.name());
    }
    let mut failures = Vec::new();
    for (k, (name, shapes)) in CASES.iter().enumerate() {
        let (graph, sources) = graph_of(&example(name));
        for ((m, text), (layout, options)) in shapes
            .iter()
            .enumerate()
            .flat_map(|shape| LAYOUTS.map(|l| (shape, l)))
        {
            let shape = parse_shape(text);
            let (build, bundle) = match build_with(&graph, &sources, &shape, options) {
                Ok(b) => b,
                Err(e) => {
                    failures.push(format!("{name} {text} {layout}: {e}"));
                    continue;
                }
            };
            let Some(dev) = &dev else { continue };
            let seed = 1000 + 10 * k as u64 + m as u64;
            let sixteen = graph
                .outputs()
                .iter()
                .any(|(_, _, t)| t.dtype != attnc_ir::ElementType::F32);
            let tolerance = if sixteen { 1e-2 } else { 1e-4 };
            let start = Instant::now();
            match run_and_compare(dev, &graph, &bundle, &shape, seed) {
                Ok(err) if err <= tolerance => println!(
                    "{name} {text} {layout} seed {seed}: relative L2 error {err:.2e} (tolerance {tolerance:.0e}), {:.2} s, {}",
                    start.elapsed().as_secs_f64(),
                    build.tiling
                ),
                Ok(err) => failures.push(format!(
                    "{name} {text} {layout} seed {seed}: relative L2 error {err:.2e} > {tolerance:.0e}"
                )),
                Err(e) => failures.push(format!("{name} {text} {layout} seed {seed}: {e}")),
            }
        }
    }
    for f in &failures {
        println!("FAILED {f}");
    }
    assert!(failures.is_empty(), "{} cases failed", failures.len());
}

#[test]
fn unsupported_examples_are_refused_with_a_reason() {
    for (name, text, why) in UNSUPPORTED {
        let (graph, sources) = graph_of(&example(name));
        match build(&graph, &sources, &parse_shape(text)) {
            Err(e @ SpirvError::Unsupported { .. }) => {
                let message = e.to_string();
                println!("{name}: {message}");
                assert!(
                    message.starts_with("unsupported by the SPIR-V back end:")
                        && message.contains(why),
                    "{name}: {message}"
                );
            }
            Err(e) => panic!("{name}: expected an unsupported error, got: {e}"),
            Ok(_) => panic!("{name} compiled; move it to CASES and check its numbers"),
        }
    }
}

#[test]
fn indices_out_of_range_are_reported_through_the_status_word() {
    let dev = device();
    for (name, text, want) in [
        (
            "value_next_key",
            "B=1,H=1,S=33,D=8",
            "index 33 is outside axis 2 of `v` (size 33)",
        ),
        (
            "value_previous_key",
            "B=1,H=2,S=33,D=4",
            "index -1 is outside axis 2 of `v` (size 33)",
        ),
        (
            "short_bias_table",
            "B=1,H=3,S=70,D=8",
            "is outside axis 1 of `rel_bias` (size 70)",
        ),
    ] {
        let (graph, sources) = graph_of(&example(&format!("tests/bounds/{name}")));
        let shape = parse_shape(text);
        for (layout, options) in LAYOUTS {
            let (_, bundle) = build_with(&graph, &sources, &shape, options).unwrap();
            let Some(dev) = &dev else { return };
            let bindings = attnc_ir::bind_dims(&graph, &shape, &BTreeMap::new()).unwrap();
            let inputs = attnc_reference::random_inputs(&graph, &bindings, 5).unwrap();
            let err = run_device(dev, &bundle, &bindings, &inputs).unwrap_err();
            println!("{name} {layout}: {err}");
            assert!(
                err.contains(want) && err.contains(&format!("{name}.attn:")),
                "{name} {layout}: {err}"
            );
        }
    }
}

/// A plan change: `rows` query rows per workgroup.
fn query_tile(rows: usize) -> impl Fn(&mut attnc_passes::tiling::TiledBody) {
    move |body| {
        if let attnc_passes::tiling::TiledBody::Parallel(p) = body {
            p.query_tile = rows;
        }
    }
}

/// Workgroups of fewer invocations than the staged key tile has keys: each invocation stages
/// several keys (and, in the last tile of a ragged S, some stage none); a computed index out of
/// range is still reported from the staging code.
#[test]
fn staging_with_fewer_rows_than_keys() {
    let dev = device();
    let staged = LAYOUTS[0].1;
    for (name, text, rows) in [
        ("softmax_causal", "B=1,H=2,S=77,D=16", 16),
        ("gqa_causal", "B=1,H=4,Hkv=2,S=77,D=16", 8),
        ("qk_norm_causal", "B=1,H=2,S=77,D=16", 24),
        ("document_mask", "B=2,H=2,S=77,D=16", 16),
        ("cross_attention", "B=2,H=1,Sq=20,Sk=130,Dqk=8,Dv=16", 5),
    ] {
        let (graph, sources) = graph_of(&example(name));
        let shape = parse_shape(text);
        let (build, bundle) =
            build_tiled(&graph, &sources, &shape, staged, query_tile(rows)).unwrap();
        assert!(build.shared_bytes > 0, "{name}: nothing staged");
        assert_eq!(build.threads, rows as u32, "{name}");
        let Some(dev) = &dev else { continue };
        let err = run_and_compare(dev, &graph, &bundle, &shape, 77).unwrap();
        println!(
            "{name} {text}, {rows} rows per workgroup: relative L2 error {err:.2e}, {}",
            build.tiling
        );
        assert!(err <= 1e-2, "{name}: relative L2 error {err:.2e}");
    }
    let (graph, sources) = graph_of(&example("tests/bounds/value_next_key"));
    let shape = parse_shape("B=1,H=1,S=33,D=8");
    let (_, bundle) = build_tiled(&graph, &sources, &shape, staged, query_tile(8)).unwrap();
    let Some(dev) = &dev else { return };
    let bindings = attnc_ir::bind_dims(&graph, &shape, &BTreeMap::new()).unwrap();
    let inputs = attnc_reference::random_inputs(&graph, &bindings, 5).unwrap();
    let err = run_device(dev, &bundle, &bindings, &inputs).unwrap_err();
    assert!(
        err.contains("index 33 is outside axis 2 of `v` (size 33)"),
        "{err}"
    );
}

/// A device limit below the target's: the staged key tile shrinks to fit it, and where not
/// one key fits nothing is staged (the key rows are read from the storage buffers).
#[test]
fn staging_fits_the_device_limit() {
    let dev = device();
    let (graph, sources) = graph_of(&example("softmax_causal"));
    let shape = parse_shape("B=1,H=2,S=77,D=16");
    for (limit, staged) in [(4096, true), (1024, true), (100, false)] {
        let options = Options {
            stage_key_tiles: true,
            max_shared_bytes: Some(limit),
            chunk_recurrences: true,
        };
        let (build, bundle) = build_with(&graph, &sources, &shape, options).unwrap();
        assert!(
            build.shared_bytes <= limit,
            "{limit}: {}",
            build.shared_bytes
        );
        assert_eq!(build.shared_bytes > 0, staged, "{limit}: {}", build.tiling);
        let Some(dev) = &dev else { continue };
        let err = run_and_compare(dev, &graph, &bundle, &shape, 78).unwrap();
        println!(
            "limit {limit}: relative L2 error {err:.2e}, {}",
            build.tiling
        );
        assert!(err <= 1e-2, "{limit}: relative L2 error {err:.2e}");
    }
}
