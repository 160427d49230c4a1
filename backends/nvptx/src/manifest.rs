//! The kernel manifest of a CUDA build: the shared GPU manifest (`attnc_lower::manifest`) with
//! this build's launches (the per-head prologue first, when there is one) and its workspace.

use crate::GpuBuild;
use attnc_ir::graph::Graph;
use attnc_kernel_abi::{
    Access, Arg, ElementType, Extent, KernelManifest, Launch, Param, TENSOR_MAP_BYTES, Workspace,
};
use attnc_lower::manifest::{BuildParts, dim_expr, signature};
use attnc_source::Span;

/// The section of the bundle that holds the PTX.
pub const PTX_SECTION: &str = "kernel.ptx";

/// The manifest of a build; `locate` turns a span into `file:line:col`.
pub fn manifest(
    build: &GpuBuild,
    graph: &Graph,
    source: &str,
    locate: &dyn Fn(Span) -> String,
) -> KernelManifest {
    let workspace = build.workspace.is_some();
    let launches = build
        .launches
        .iter()
        .map(|l| {
            let (mut signature, mut args) = signature(graph, &l.entry, workspace);
            if !l.tensor_maps.is_empty() {
                signature.params.push(Param::Buffer {
                    name: "tmaps".into(),
                    element: ElementType::I64,
                    access: Access::Read,
                    extent: vec![Extent::Fixed(
                        (l.tensor_maps.len() * TENSOR_MAP_BYTES / 8) as u64,
                    )],
                });
                args.push(Arg::TensorMaps {
                    maps: l.tensor_maps.clone(),
                });
            }
            Launch {
                code: PTX_SECTION.into(),
                signature,
                args,
                grid: [
                    dim_expr(&l.grid[0]),
                    dim_expr(&l.grid[1]),
                    dim_expr(&l.grid[2]),
                ],
                block: [l.threads as u32, 1, 1],
                shared_bytes: l.shared_bytes as u32,
            }
        })
        .collect();
    let workspaces = build
        .workspace
        .as_ref()
        .map(|len| Workspace {
            name: "per_head".into(),
            element: ElementType::F32,
            len: dim_expr(len),
        })
        .into_iter()
        .collect();
    attnc_lower::manifest::manifest(
        graph,
        source,
        locate,
        BuildParts {
            target: build.target,
            specialised: &build.specialised,
            guards: &build.guards,
            tiling: &build.tiling,
            launches,
            workspaces,
        },
    )
}
