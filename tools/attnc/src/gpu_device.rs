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
