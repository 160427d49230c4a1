//! Every parallel example compiles to SPIR-V that `spirv-val` accepts for Vulkan 1.3, and runs
//! on a Vulkan device (lavapipe in CI) on fresh seeded random inputs, its outputs poisoned with
//! NaN first and compared with the f64 reference interpreter by relative L2 error. Examples the
//! back end does not handle yet must fail to compile with an "unsupported" error, never panic.
//! With no Vulkan device the device checks print "skipped: …", unless `ATTNC_REQUIRE_VULKAN`
//! is set (CI), where a missing device fails.

use attnc_bundle::Bundle;
use attnc_device::{Device, DeviceError};
use attnc_frontend::Sources;
use attnc_ir::Graph;
use attnc_passes::pass_manager::PassManager;
use attnc_passes::tiling::target::Target;
use attnc_spirv::{Options, SpirvBuild, SpirvError};
use attnc_vulkan::VulkanDevice;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `examples/NAME.attn`, or `PATH.attn` relative to the repository for a name with a folder.
fn example(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if name.contains('/') {
        root.join(format!("{name}.attn"))
    } else {
        root.join(format!("examples/{name}.attn"))
    }
}

fn parse_shape(text: &str) -> BTreeMap<String, i64> {
    text.split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("NAME=VALUE");
            (k.to_string(), v.parse().expect("an integer"))
        })
        .collect()
}

/// The graph of a `.attn` file after the standard passes, and its sources for locations.
fn graph_of(path: &Path) -> (Graph, Sources) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut sources = Sources::new();
    let file = sources.add(path.display().to_string(), text);
    let mut graph = attnc_frontend::compile_to_graph(&mut sources, file)
        .unwrap_or_else(|d| panic!("{}", attnc_frontend::render_all(&d, &sources)));
    PassManager::standard()
        .run(&mut graph, &mut |_, _, _| {})
        .unwrap();
    (graph, sources)
}

/// Both ways of reading key-side values: staged in workgroup memory (GPUs), and read by every
/// invocation from the storage buffers (what a CPU implementation gets).
const LAYOUTS: [(&str, Options); 2] = [
    (
        "staged",
        Options {
            stage_key_tiles: true,
            max_shared_bytes: None,
        },
    ),
    (
        "unstaged",
        Options {
            stage_key_tiles: false,
            max_shared_bytes: None,
        },
    ),
];

/// Compiles for the plain Vulkan preset at `shape` with the default options; the bundle as a
/// runtime reads it.
fn build(
    graph: &Graph,
    sources: &Sources,
    shape: &BTreeMap<String, i64>,
) -> Result<(SpirvBuild, Bundle), SpirvError> {
    build_with(graph, sources, shape, Options::default())
}

fn build_with(
    graph: &Graph,
    sources: &Sources,
    shape: &BTreeMap<String, i64>,
    options: Options,
) -> Result<(SpirvBuild, Bundle), SpirvError> {
    build_tiled(graph, sources, shape, options, None)
}

/// As [`build_with`], with the plan's query tile replaced by `query_tile` where given.
fn build_tiled(
    graph: &Graph,
    sources: &Sources,
    shape: &BTreeMap<String, i64>,
    options: Options,
    query_tile: Option<usize>,
) -> Result<(SpirvBuild, Bundle), SpirvError> {
    let fused = attnc_passes::fusion::fuse(graph).map_err(|e| SpirvError::Internal {
        message: e.to_string(),
        span: e.span(),
    })?;
    let given = attnc_ir::Bindings {
        dims: shape.clone(),
    };
    let target = Target::preset("vulkan").unwrap();
    let mut tiled = attnc_spirv::tile(graph, &fused, &target, Some(&given))?;
    if let (Some(rows), Some(k)) = (query_tile, tiled.kernels.first_mut())
        && let attnc_passes::tiling::TiledBody::Parallel(p) = &mut k.body
    {
        p.query_tile = rows;
    }
    let build = attnc_spirv::compile_with(graph, &fused, &tiled, options)?;
    validate(&build);
    let manifest = attnc_spirv::manifest(&build, graph, "example", &|s| sources.location(s));
    manifest.validate().unwrap();
    let bundle = Bundle {
        manifest,
        sections: vec![(attnc_spirv::SPIRV_SECTION.into(), build.bytes())],
    };
    let bundle = Bundle::from_bytes(&bundle.to_bytes().unwrap()).unwrap();
    Ok((build, bundle))
}

/// `spirv-val --target-env vulkan1.3`; required where `ATTNC_REQUIRE_VULKAN` is set.
fn validate(build: &SpirvBuild) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kernel.spv");
    std::fs::write(&path, build.bytes()).unwrap();
    match std::process::Command::new("spirv-val")
        .args(["--target-env", "vulkan1.3"])
        .arg(&path)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "spirv-val rejected {}: {}{}\n{}",
            build.entry,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            build.disassembly
        ),
        Err(e) if std::env::var_os("ATTNC_REQUIRE_VULKAN").is_none() => {
            eprintln!("skipped validation: spirv-val not found ({e})");
        }
        Err(e) => panic!("ATTNC_REQUIRE_VULKAN is set, but spirv-val cannot run: {e}"),
    }
}

/// The best Vulkan device, or `None` after printing why the device checks are skipped.
fn device() -> Option<VulkanDevice> {
    match VulkanDevice::open("vulkan") {
        Ok(d) => Some(d),
        Err(DeviceError::Unavailable(why)) => {
            if std::env::var_os("ATTNC_REQUIRE_VULKAN").is_some() {
                panic!("ATTNC_REQUIRE_VULKAN is set, but no Vulkan device is usable: {why}");
            }
            eprintln!("skipped: {why}");
            None
        }
        Err(e) => panic!("opening a Vulkan device failed: {e}"),
    }
}

/// One call of the bundle on the device.
fn run_device(
    dev: &VulkanDevice,
    bundle: &Bundle,
    bindings: &attnc_ir::Bindings,
    inputs: &attnc_device::Tensors,
) -> Result<attnc_device::Tensors, String> {
    let kernel = dev.load(bundle).map_err(|e| e.to_string())?;
    let dims = bundle
        .manifest
        .bind(&bindings.dims, &BTreeMap::new())
        .map_err(|e| format!("{e:?}"))?;
    kernel.run(&dims, inputs).map_err(|e| e.to_string())
}

/// The relative L2 error of every output against the reference, and whether any element the
/// reference computed came back NaN.
fn run_and_compare(
    dev: &VulkanDevice,
    graph: &Graph,
    bundle: &Bundle,
    shape: &BTreeMap<String, i64>,
    seed: u64,
) -> Result<f64, String> {
    let bindings =
        attnc_ir::bind_dims(graph, shape, &BTreeMap::new()).map_err(|d| format!("{d:?}"))?;
    let inputs = attnc_reference::random_inputs(graph, &bindings, seed)?;
    let want =
        attnc_reference::interpret(graph, &bindings, &attnc_reference::to_f64_tensors(&inputs))
            .map_err(|e| e.to_string())?;
    let got = run_device(dev, bundle, &bindings, &inputs)?;
    let mut worst: f64 = 0.0;
    for (name, w) in &want {
        let g = got
            .get(name)
            .ok_or(format!("no output `{name}`"))?
            .to_f64_vec();
        if g.len() != w.data.len() {
            return Err(format!(
                "`{name}`: {} elements, want {}",
                g.len(),
                w.data.len()
            ));
        }
        let (mut diff, mut norm) = (0.0, 0.0);
        for (k, (x, y)) in g.iter().zip(&w.data).enumerate() {
            if x.is_nan() != y.is_nan() {
                return Err(format!("`{name}`[{k}] = {x}, the reference has {y}"));
            }
            if !y.is_nan() {
                diff += (x - y) * (x - y);
                norm += y * y;
            }
        }
        worst = worst.max((diff / norm.max(1e-30)).sqrt());
    }
    Ok(worst)
}

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
const UNSUPPORTED: &[(&str, &str, &str)] = &[
    (
        "forgetting_attention",
        "B=1,H=2,S=77,D=16",
        "run-time dim `S`",
    ),
    ("retention", "B=1,H=2,S=77,D=16", "recurrence"),
    ("linear_attention", "B=1,H=2,S=77,D=16", "recurrence"),
    ("gated_linear_attention", "B=1,H=2,S=77,D=16", "recurrence"),
];

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
        let (build, bundle) = build_tiled(&graph, &sources, &shape, staged, Some(rows)).unwrap();
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
    let (_, bundle) = build_tiled(&graph, &sources, &shape, staged, Some(8)).unwrap();
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
