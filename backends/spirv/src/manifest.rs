//! The kernel manifest of a SPIR-V build: what the Vulkan runtime needs to bind a call's dims,
//! check its tensors and dispatch the shader, with no compiler linked. The launch's signature
//! follows the runtime's SPIR-V ABI: buffers (inputs, outputs, the status words) are bindings
//! 0.. of set 0 in this order, and every dim is one `Int` push constant, in declaration order.

use crate::SpirvBuild;
use attnc_ir::graph::Graph;
use attnc_kernel_abi::{KernelManifest, Launch};
use attnc_lower::manifest::{BuildParts, dim_expr, signature};
use attnc_source::Span;

/// The section of the bundle that holds the SPIR-V module.
pub const SPIRV_SECTION: &str = "kernel.spv";

/// The manifest of a build; `locate` turns a span into `file:line:col`.
pub fn manifest(
    build: &SpirvBuild,
    graph: &Graph,
    source: &str,
    locate: &dyn Fn(Span) -> String,
) -> KernelManifest {
    // No workspace: the shared signature's buffers are then exactly the ABI's bindings.
    let (signature, args) = signature(graph, &build.entry, false);
    let launch = Launch {
        code: SPIRV_SECTION.into(),
        signature,
        args,
        grid: [
            dim_expr(&build.grid[0]),
            dim_expr(&build.grid[1]),
            dim_expr(&build.grid[2]),
        ],
        block: [build.threads, 1, 1],
        shared_bytes: build.shared_bytes,
    };
    attnc_lower::manifest::manifest(
        graph,
        source,
        locate,
        BuildParts {
            target: build.target,
            specialised: &build.specialised,
            guards: &build.guards,
            tiling: &build.tiling,
            launches: vec![launch],
            workspaces: vec![],
        },
    )
}
