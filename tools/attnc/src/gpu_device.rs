//! GPU targets in the command line: compiling a kernel to PTX and a bundle, and running a
//! bundle on the CUDA device of this machine (`attnc run --device cuda`).

use attnc_bundle::Bundle;
use attnc_frontend::Sources;
use attnc_ir::Graph;
use attnc_passes::fusion::FusedProgram;
use attnc_passes::tiling::TiledProgram;
use std::path::Path;

/// Compiles a kernel tiled for a GPU target; unsupported constructs name their place in the
/// source.
pub fn compile_gpu(
    graph: &Graph,
    fused: &FusedProgram,
    tiled: &TiledProgram,
    sources: &Sources,
) -> anyhow::Result<attnc_nvptx::GpuBuild> {
    match &tiled.target {
        attnc_passes::tiling::target::Target::Gpu(g)
            if g.api == attnc_passes::tiling::target::GpuApi::Vulkan =>
        {
            anyhow::bail!(
                "the SPIR-V back end for Vulkan targets is not built yet; use --target cuda:sm_90a"
            )
        }
        _ => {}
    }
    attnc_nvptx::compile(graph, fused, tiled).map_err(|e| match e.span() {
        Some(span) => anyhow::anyhow!("{}: {e}", sources.location(span)),
        None => anyhow::anyhow!("{e}"),
    })
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

/// What one `attnc run --device cuda` measured.
pub struct CudaRun {
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
) -> anyhow::Result<CudaRun> {
    use attnc_device::Device as _;
    let start = std::time::Instant::now();
    let preset = preset_for(device.capability())?;
    let target = attnc_passes::tiling::target::Target::preset(preset)
        .ok_or_else(|| anyhow::anyhow!("internal error: no target preset {preset}"))?;
    let mut graph = graph.clone();
    attnc_passes::pass_manager::PassManager::standard().run(&mut graph, &mut |_, _, _| {})?;
    let fused = attnc_passes::fusion::fuse(&graph)
        .map_err(|e| anyhow::anyhow!("internal compiler error in fusion: {e}"))?;
    let tiled = attnc_nvptx::fit(&graph, &fused, &target, Some(bindings))
        .map_err(|e| anyhow::anyhow!("tiling failed: {e}"))?;
    let build = compile_gpu(&graph, &fused, &tiled, sources)?;
    let bundle = bundle(&build, &graph, sources, file);
    let compile_seconds = start.elapsed().as_secs_f64();
    let kernel = device
        .load(&bundle)
        .map_err(|e| anyhow::anyhow!("cannot load the kernel on {}: {e}", device.name()))?;
    let dims: attnc_kernel_abi::DimValues = bindings.dims.clone();
    let start = std::time::Instant::now();
    let out = kernel
        .run(&dims, inputs)
        .map_err(|e| anyhow::anyhow!("the kernel failed on {}: {e}", device.name()))?;
    let run_seconds = start.elapsed().as_secs_f64();
    let outputs = out
        .into_iter()
        .map(|(name, t)| {
            let tensor = attnc_reference::Tensor {
                shape: t.shape().to_vec(),
                data: t.to_f64_vec(),
            };
            (name, tensor)
        })
        .collect();
    Ok(CudaRun {
        outputs,
        compile_seconds,
        run_seconds,
    })
}
