//! Every recurrent example compiles to SPIR-V that `spirv-val` accepts and runs on a Vulkan
//! device (lavapipe in CI) against the f64 reference interpreter, on seeded random inputs
//! with the outputs poisoned with NaN first, at shapes with one step, a step count that is no
//! multiple of the chunk, and more steps than a chunk. With no Vulkan device the device checks
//! print "skipped: …", unless `ATTNC_REQUIRE_VULKAN` is set (CI).

mod common;

use attnc_device::Device;
use attnc_spirv::Options;
use common::*;
use std::collections::BTreeMap;
use std::time::Instant;

/// Each recurrent example with its shapes: S = 1, S ragged against every chunk size (77,
/// 150), head dims from 8 to 32 and Dv ≠ D where the example has both.
const CASES: &[(&str, &[&str])] = &[
    (
        "retention",
        &["B=1,H=2,S=1,D=16", "B=2,H=3,S=77,D=16", "B=1,H=2,S=150,D=8"],
    ),
    (
        "linear_attention",
        &[
            "B=1,H=2,S=1,D=16,Dv=8",
            "B=2,H=2,S=77,D=8,Dv=16",
            "B=1,H=1,S=150,D=16,Dv=40",
        ],
    ),
    (
        "gated_linear_attention",
        &[
            "B=1,H=2,S=1,Dk=16,Dv=8",
            "B=2,H=2,S=77,Dk=8,Dv=16",
            "B=1,H=1,S=150,Dk=16,Dv=40",
        ],
    ),
    (
        "mamba2",
        &[
            "B=1,H=2,S=1,D=16,Dv=8",
            "B=2,H=2,S=77,D=8,Dv=16",
            "B=1,H=3,S=150,D=16,Dv=40",
        ],
    ),
    (
        "deltanet",
        &[
            "B=1,H=2,S=1,D=16,Dv=8",
            "B=2,H=2,S=77,D=8,Dv=16",
            "B=1,H=1,S=150,D=32,Dv=40",
        ],
    ),
    (
        "gated_deltanet",
        &[
            "B=1,H=2,S=1,D=16,Dv=8",
            "B=2,H=2,S=77,D=8,Dv=16",
            "B=1,H=1,S=150,D=32,Dv=40",
        ],
    ),
];

/// Both forms: the scan (the plan's chunks taken away) and the plan as tiled, chunked where
/// the form is written for SPIR-V.
const FORMS: [&str; 2] = ["scan", "chunked"];

/// The examples that must run chunked (scalar and per-row decays).
const CHUNKED: &[&str] = &[
    "retention",
    "linear_attention",
    "gated_linear_attention",
    "mamba2",
];

/// Builds `form` of a recurrent example.
fn build_form(
    graph: &attnc_ir::Graph,
    sources: &attnc_frontend::Sources,
    shape: &BTreeMap<String, i64>,
    form: &str,
) -> Result<(attnc_spirv::SpirvBuild, attnc_bundle::Bundle), attnc_spirv::SpirvError> {
    let scan = form == "scan";
    // The chunked form is opt-in (off by default until it is right at long S on lavapipe).
    let options = Options {
        chunk_recurrences: !scan,
        ..Options::default()
    };
    build_tiled(graph, sources, shape, options, move |body| {
        if let attnc_passes::tiling::TiledBody::Recurrent { chunk, .. } = body
            && scan
        {
            *chunk = None;
        }
    })
}

#[test]
fn every_recurrent_example_matches_the_reference_on_vulkan() {
    let dev = device();
    if let Some(d) = &dev {
        println!("device: {}", d.name());
    }
    let mut failures = Vec::new();
    for (k, (name, shapes)) in CASES.iter().enumerate() {
        let (graph, sources) = graph_of(&example(name));
        for ((m, text), form) in shapes
            .iter()
            .enumerate()
            .flat_map(|shape| FORMS.map(|f| (shape, f)))
        {
            let shape = parse_shape(text);
            let (build, bundle) = match build_form(&graph, &sources, &shape, form) {
                Ok(b) => b,
                Err(e) => {
                    failures.push(format!("{name} {text} {form}: {e}"));
                    continue;
                }
            };
            let Some(dev) = &dev else { continue };
            if form == "chunked" && !build.tiling.starts_with("chunks of") {
                if CHUNKED.contains(name) {
                    failures.push(format!("{name} {text}: not chunked: {}", build.tiling));
                }
                continue;
            }
            let seed = 2000 + 10 * k as u64 + m as u64;
            let start = Instant::now();
            match run_and_compare(dev, &graph, &bundle, &shape, seed) {
                Ok(err) if err <= 1e-4 => println!(
                    "{name} {text} {form} seed {seed}: relative L2 error {err:.2e}, {:.2} s, {}",
                    start.elapsed().as_secs_f64(),
                    build.tiling
                ),
                Ok(err) => failures.push(format!(
                    "{name} {text} {form} seed {seed}: relative L2 error {err:.2e} > 1e-4 ({})",
                    build.tiling
                )),
                Err(e) => failures.push(format!("{name} {text} {form} seed {seed}: {e}")),
            }
        }
    }
    for f in &failures {
        println!("FAILED {f}");
    }
    assert!(failures.is_empty(), "{} cases failed", failures.len());
}

/// Lavapipe timings of the recurrent examples at B1 H4 S4096 D64, scan and chunked
/// (`cargo test -- --ignored`): the median of three calls on resident inputs, by the device's
/// timestamps, after one call that also checks the numbers against the reference.
#[test]
#[ignore]
fn lavapipe_recurrent_timings() {
    let Some(dev) = device() else { return };
    for ((name, text), form) in [
        ("retention", "B=1,H=4,S=4096,D=64"),
        ("mamba2", "B=1,H=4,S=4096,D=64,Dv=64"),
        ("gated_linear_attention", "B=1,H=4,S=4096,Dk=64,Dv=64"),
        ("gated_deltanet", "B=1,H=4,S=4096,D=64,Dv=64"),
    ]
    .into_iter()
    .flat_map(|case| FORMS.map(|f| (case, f)))
    {
        let (graph, sources) = graph_of(&example(name));
        let shape = parse_shape(text);
        let (build, bundle) = build_form(&graph, &sources, &shape, form).unwrap();
        let start = Instant::now();
        let kernel = dev.load(&bundle).unwrap();
        let load = start.elapsed().as_secs_f64();
        let bindings = attnc_ir::bind_dims(&graph, &shape, &BTreeMap::new()).unwrap();
        let inputs = attnc_reference::random_inputs(&graph, &bindings, 1).unwrap();
        let dims = bundle
            .manifest
            .bind(&bindings.dims, &BTreeMap::new())
            .unwrap();
        let t = kernel.time(&dims, &inputs, 1, 3).unwrap();
        let err = match run_and_compare(&dev, &graph, &bundle, &shape, 1) {
            Ok(e) => format!("relative L2 error {e:.2e}"),
            Err(e) => format!("WRONG: {e}"),
        };
        println!(
            "{name} {text} {form} on {}: median {:.1} ms (pipeline {load:.2} s), {err} ({})",
            dev.name(),
            t.median_s * 1e3,
            build.tiling
        );
    }
}

/// Recurrences whose states are read across their columns (`S @ x`, a sum over a row of the
/// state, columns of different counts) are not column-local: one invocation per (b, h) keeps
/// each state whole, and the numbers still match.
#[test]
fn recurrences_read_across_columns_keep_whole_states() {
    let dev = device();
    let dir = tempfile::tempdir().unwrap();
    for (k, (name, text, shape)) in [
        (
            "row_readout",
            "kernel row_readout {\n  dim B, H, S, D, Dv;\n  input q, k: f32[B, H, S, D];\n  input v: f32[B, H, S, Dv];\n  output o: f32[B, H, S, D];\n\n  recurrence t {\n    state kv: [D, Dv] = 0.9 * kv + outer(k[b, h, t], v[b, h, t]);\n    o[b, h, t] = kv @ v[b, h, t];\n  }\n}\n",
            "B=1,H=2,S=37,D=8,Dv=8",
        ),
        (
            "two_widths",
            "kernel two_widths {\n  dim B, H, S, D, Dv;\n  input q, k: f32[B, H, S, D];\n  input v: f32[B, H, S, Dv];\n  output o: f32[B, H, S, Dv];\n\n  recurrence t {\n    state kv: [D, Dv] = kv + outer(k[b, h, t], v[b, h, t]);\n    state kk: [D, D] = 0.5 * kk + outer(k[b, h, t], k[b, h, t]);\n    o[b, h, t] = (q[b, h, t] @ kk) @ kv / (1.0 + sum(q[b, h, t] @ kk));\n  }\n}\n",
            "B=2,H=1,S=20,D=8,Dv=12",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("{name}.attn"));
        std::fs::write(&path, text).unwrap();
        let (graph, sources) = graph_of(&path);
        let shape = parse_shape(shape);
        let (build, bundle) = build_with(&graph, &sources, &shape, Options::default()).unwrap();
        assert_eq!(build.threads, 1, "{name}: {}", build.tiling);
        let Some(dev) = &dev else { continue };
        let err = run_and_compare(dev, &graph, &bundle, &shape, 3000 + k as u64).unwrap();
        println!("{name}: relative L2 error {err:.2e}, {}", build.tiling);
        assert!(err <= 1e-4, "{name}: relative L2 error {err:.2e}");
    }
}
