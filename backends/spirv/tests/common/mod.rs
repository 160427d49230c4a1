//! Helpers of the SPIR-V back end's device tests: examples as graphs, builds checked by
//! `spirv-val` and turned into bundles, the Vulkan device (or why the checks are skipped), and
//! runs compared with the f64 reference.
#![allow(dead_code)]

use attnc_bundle::Bundle;
use attnc_device::{Device, DeviceError};
use attnc_frontend::Sources;
use attnc_ir::Graph;
use attnc_passes::pass_manager::PassManager;
use attnc_passes::tiling::TiledBody;
use attnc_passes::tiling::target::Target;
use attnc_spirv::{Options, SpirvBuild, SpirvError};
use attnc_vulkan::VulkanDevice;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `examples/NAME.attn`, or `PATH.attn` relative to the repository for a name with a folder.
pub fn example(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if name.contains('/') {
        root.join(format!("{name}.attn"))
    } else {
        root.join(format!("examples/{name}.attn"))
    }
}

pub fn parse_shape(text: &str) -> BTreeMap<String, i64> {
    text.split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("NAME=VALUE");
            (k.to_string(), v.parse().expect("an integer"))
        })
        .collect()
}

/// The graph of a `.attn` file after the standard passes, and its sources for locations.
pub fn graph_of(path: &Path) -> (Graph, Sources) {
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
pub const LAYOUTS: [(&str, Options); 2] = [
    (
        "staged",
        Options {
            stage_key_tiles: true,
            max_shared_bytes: None,
            chunk_recurrences: true,
        },
    ),
    (
        "unstaged",
        Options {
            stage_key_tiles: false,
            max_shared_bytes: None,
            chunk_recurrences: true,
        },
    ),
];

/// Compiles for the plain Vulkan preset at `shape` with the default options; the bundle as a
/// runtime reads it.
pub fn build(
    graph: &Graph,
    sources: &Sources,
    shape: &BTreeMap<String, i64>,
) -> Result<(SpirvBuild, Bundle), SpirvError> {
    build_with(graph, sources, shape, Options::default())
}

pub fn build_with(
    graph: &Graph,
    sources: &Sources,
    shape: &BTreeMap<String, i64>,
    options: Options,
) -> Result<(SpirvBuild, Bundle), SpirvError> {
    build_tiled(graph, sources, shape, options, |_| {})
}

/// As [`build_with`], with the plan changed by `change` first (a query tile, a scan in place
/// of chunks).
pub fn build_tiled(
    graph: &Graph,
    sources: &Sources,
    shape: &BTreeMap<String, i64>,
    options: Options,
    change: impl Fn(&mut TiledBody),
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
    if let Some(k) = tiled.kernels.first_mut() {
        change(&mut k.body);
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
pub fn validate(build: &SpirvBuild) {
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
pub fn device() -> Option<VulkanDevice> {
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
pub fn run_device(
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
pub fn run_and_compare(
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
