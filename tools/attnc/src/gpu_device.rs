//! GPU targets in the command line: compiling a kernel to PTX or SPIR-V and a bundle, and
//! running a bundle on the CUDA or Vulkan device of this machine (`attnc run --device cuda`,
//! `--device vulkan`).

use attnc_bundle::Bundle;
use attnc_driver::Until;
use attnc_frontend::Sources;
use attnc_ir::Graph;
use std::path::Path;

/// The NVPTX back end's errors, located: the tiler's refusal as a diagnostic at the
/// contraction, the back end's own tiling failure (a layout over the target's shared memory)
/// at the kernel, and a code generation error at the op it names.
pub fn nvptx_failed(
    stage: Until,
    e: attnc_nvptx::NvptxError,
    graph: &Graph,
    sources: &Sources,
) -> anyhow::Error {
    match e {
        attnc_nvptx::NvptxError::Tiling(e) => crate::ice::tiling_failed(e, graph, sources),
        e if stage == Until::Tiled => tiling_failed_at_kernel(e, graph, sources),
        e => located(e.span(), e, sources),
    }
}

/// As [`nvptx_failed`], for the SPIR-V back end.
pub fn spirv_failed(
    stage: Until,
    e: attnc_spirv::SpirvError,
    graph: &Graph,
    sources: &Sources,
) -> anyhow::Error {
    match e {
        attnc_spirv::SpirvError::Tiling(e) => crate::ice::tiling_failed(e, graph, sources),
        e if stage == Until::Tiled => tiling_failed_at_kernel(e, graph, sources),
        e => located(e.span(), e, sources),
    }
}

fn located(
    span: Option<attnc_frontend::Span>,
    e: impl std::fmt::Display,
    sources: &Sources,
) -> anyhow::Error {
    match span {
        Some(span) => anyhow::anyhow!("{}: {e}", sources.location(span)),
        None => anyhow::anyhow!("{e}"),
    }
}

fn tiling_failed_at_kernel(
    e: impl std::fmt::Display,
    graph: &Graph,
    sources: &Sources,
) -> anyhow::Error {
    let at = crate::ice::kernel_location(graph, sources);
    anyhow::anyhow!("{at}: tiling failed: {e}")
}

/// The bundle of a GPU build: its manifest (guards located in the source) and its PTX.
pub fn bundle(
    build: &attnc_nvptx::GpuBuild,
    graph: &Graph,
    sources: &Sources,
    file: &Path,
) -> Bundle {
    let manifest = attnc_nvptx::manifest(build, graph, &file.display().to_string(), &|span| {
        sources.location(span)
    });
    Bundle {
        manifest,
        sections: vec![(
            attnc_nvptx::PTX_SECTION.to_string(),
            build.ptx.clone().into_bytes(),
        )],
    }
}

/// The preset a CUDA device of compute capability `(major, minor)` compiles for.
pub fn preset_for(capability: (u32, u32)) -> anyhow::Result<&'static str> {
    match capability {
        (9, 0) => Ok("cuda:sm_90a"),
        (8, _) | (9, _) | (10, _) | (12, _) => Ok("cuda:sm_80"),
        (major, minor) => anyhow::bail!(
            "the CUDA device has compute capability {major}.{minor}; attnc's CUDA kernels need 8.0 or newer (tensor cores with bf16)"
        ),
    }
}

/// Opens `cuda:0`, or says why there is none (no driver, no GPU).
pub fn open_cuda() -> anyhow::Result<attnc_cuda::CudaDevice> {
    attnc_cuda::CudaDevice::open(0).map_err(|e| anyhow::anyhow!("--device cuda: {e}"))
}

/// What one `attnc run --device cuda` (or `vulkan`) measured.
pub struct GpuRun {
    pub outputs: std::collections::BTreeMap<String, attnc_reference::Tensor>,
    pub compile_seconds: f64,
    pub run_seconds: f64,
}

/// Compiles the kernel for `device` (a bundle in memory, the same one `attnc build -o` writes)
/// and runs it on `inputs`. The run time is one call's, measured by the host around the launch
/// and copies; `attnc-run --time` gives CUDA-event timings.
pub fn run_cuda(
    device: &attnc_cuda::CudaDevice,
    graph: &Graph,
    bindings: &attnc_ir::Bindings,
    inputs: &std::collections::BTreeMap<String, attnc_tensors::HostTensor>,
    sources: &Sources,
    file: &Path,
) -> anyhow::Result<GpuRun> {
    let start = std::time::Instant::now();
    let preset = preset_for(device.capability())?;
    let target = attnc_passes::tiling::target::Target::preset(preset)
        .ok_or_else(|| anyhow::anyhow!("internal error: no target preset {preset}"))?;
    let backend = attnc_driver::Cuda::new(target);
    let (graph, build) = build_with(&backend, graph, bindings, sources, nvptx_failed)?;
    let bundle = bundle(&build, &graph, sources, file);
    load_and_run(
        device,
        &bundle,
        bindings,
        inputs,
        start.elapsed().as_secs_f64(),
    )
}

/// The bundle of a SPIR-V build: its manifest (guards located in the source) and the module.
pub fn vulkan_bundle(
    build: &attnc_spirv::SpirvBuild,
    graph: &Graph,
    sources: &Sources,
    file: &Path,
) -> Bundle {
    let manifest = attnc_spirv::manifest(build, graph, &file.display().to_string(), &|span| {
        sources.location(span)
    });
    Bundle {
        manifest,
        sections: vec![(attnc_spirv::SPIRV_SECTION.to_string(), build.bytes())],
    }
}

/// Opens the best Vulkan device, or says why there is none (no loader, no driver, no device).
pub fn open_vulkan() -> anyhow::Result<attnc_vulkan::VulkanDevice> {
    attnc_vulkan::VulkanDevice::open("vulkan").map_err(|e| anyhow::anyhow!("--device vulkan: {e}"))
}

/// Compiles the kernel for the plain Vulkan target (a bundle in memory, the same one
/// `attnc build --target vulkan -o` writes, except that a CPU implementation such as lavapipe
/// gets no workgroup staging: its barriers cost more than they save; and staging fits the
/// device's workgroup memory) and runs it on `device`; times as [`run_cuda`].
pub fn run_vulkan(
    device: &attnc_vulkan::VulkanDevice,
    graph: &Graph,
    bindings: &attnc_ir::Bindings,
    inputs: &std::collections::BTreeMap<String, attnc_tensors::HostTensor>,
    sources: &Sources,
    file: &Path,
) -> anyhow::Result<GpuRun> {
    let start = std::time::Instant::now();
    let target = attnc_passes::tiling::target::Target::preset("vulkan")
        .ok_or_else(|| anyhow::anyhow!("internal error: no target preset vulkan"))?;
    let gpu = device.info().kind != attnc_vulkan::DeviceKind::Cpu;
    let options = attnc_spirv::Options {
        stage_key_tiles: gpu,
        max_shared_bytes: Some(device.capabilities().max_compute_shared_memory_bytes),
        // The chunked form is wrong at long S on lavapipe and unrun on GPUs: scans only.
        chunk_recurrences: false,
    };
    let backend = attnc_driver::Vulkan::new(target, options);
    let (graph, build) = build_with(&backend, graph, bindings, sources, spirv_failed)?;
    let bundle = vulkan_bundle(&build, &graph, sources, file);
    load_and_run(
        device,
        &bundle,
        bindings,
        inputs,
        start.elapsed().as_secs_f64(),
    )
}

/// The driver's pipeline for `backend` at the bound dims: the graph after the passes (the
/// bundle's manifest describes it) and the build; errors located, the back end's by `failed`.
fn build_with<B: attnc_driver::Backend>(
    backend: &B,
    graph: &Graph,
    bindings: &attnc_ir::Bindings,
    sources: &Sources,
    failed: fn(Until, B::Error, &Graph, &Sources) -> anyhow::Error,
) -> anyhow::Result<(Graph, B::Build)> {
    let mut quiet = attnc_driver::Quiet;
    let compiled = attnc_driver::compile(backend, graph, Some(bindings), Until::Code, &mut quiet)
        .map_err(|e| crate::ice::driver_failed(e, graph, sources, failed))?;
    match compiled.build {
        Some(build) => Ok((compiled.graph, build)),
        None => Err(crate::ice::internal_at(
            "the driver",
            "no build came back",
            graph,
            sources,
        )),
    }
}

/// Loads a compiled bundle on `device` and runs it once on `inputs`, timed by the host around
/// the launch and copies.
fn load_and_run(
    device: &dyn attnc_device::Device,
    bundle: &Bundle,
    bindings: &attnc_ir::Bindings,
    inputs: &std::collections::BTreeMap<String, attnc_tensors::HostTensor>,
    compile_seconds: f64,
) -> anyhow::Result<GpuRun> {
    let kernel = device
        .load(bundle)
        .map_err(|e| anyhow::anyhow!("cannot load the kernel on {}: {e}", device.name()))?;
    let dims: attnc_kernel_abi::DimValues = bindings.dims.clone();
    let start = std::time::Instant::now();
    let out = kernel
        .run(&dims, inputs)
        .map_err(|e| anyhow::anyhow!("the kernel failed on {}: {e}", device.name()))?;
    Ok(GpuRun {
        outputs: to_reference(out),
        compile_seconds,
        run_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Device outputs as the reference interpreter's f64 tensors.
fn to_reference(
    out: attnc_device::Tensors,
) -> std::collections::BTreeMap<String, attnc_reference::Tensor> {
    out.into_iter()
        .map(|(name, t)| {
            let tensor = attnc_reference::Tensor {
                shape: t.shape().to_vec(),
                data: t.to_f64_vec(),
            };
            (name, tensor)
        })
        .collect()
}
