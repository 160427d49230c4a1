//! The SPIR-V back end: a fused, tiled parallel kernel as one Vulkan compute shader, built in
//! Rust with rspirv and run by `attnc-vulkan` through its SPIR-V kernel ABI (set-0 storage
//! buffers in signature order, the dims in one push-constant block, `LocalSize` equal to the
//! manifest's block, guards through the status words).
//!
//! One workgroup covers one (b, h, query tile) and one invocation one query row, whose online
//! statistics and accumulators stay in its registers (`kernel.rs`); key tiles the mask empties
//! are skipped by the tile rule evaluated in the shader (`tile_rule.rs`). The key-side values of
//! each key tile (rows of K and V, maps on them) are staged in workgroup memory by the whole
//! workgroup between barriers, unless [`Options`] says otherwise (a CPU implementation, where
//! barriers cost more than the loads they save). Arithmetic is f32;
//! bf16 and f16 tensors are read as 32-bit words and widened in the shader (outputs are
//! narrowed with round-to-nearest-even and written by atomic AND/OR of their half-word), so
//! no 16-bit device feature is needed. Kernels are specialised only for the head dims; batch,
//! heads, sequence lengths and other dims are push constants, so one module serves every shape.
//!
//! A recurrence runs as a scan (`recurrent.rs`: a workgroup per (b, h, slice of state columns),
//! an invocation per column of every matrix state) or, where the plan chunks it and its decays
//! are scalars or diagonals, in the chunked form (`chunked.rs`: the chunk's pieces in workgroup
//! memory, the state passed from chunk to chunk). The delta rule's chunked form (UT transform)
//! is not written yet: such recurrences run as a scan, and the build's tiling says why.
//!
//! Not yet: subgroup operations, cooperative matrices, several query rows per invocation,
//! prefix scans over per-head vectors (`cumsum`), and vectors whose length is a run-time dim.
//! Each is an [`SpirvError::Unsupported`], never wrong numbers.

mod chunked;
mod error;
mod expr;
mod kernel;
mod manifest;
mod nodes;
mod recurrent;
mod shader;
mod tile_rule;
mod values;

pub use error::SpirvError;
pub use kernel::Shape;
pub use manifest::{SPIRV_SECTION, manifest};
pub use values::GuardSite;

use attnc_ir::graph::Graph;
use attnc_ir::types::{Dim, FrameIndex};
use attnc_kernel_abi::TargetId;
use attnc_passes::fusion::{FusedProgram, Template};
use attnc_passes::tiling::target::Target;
use attnc_passes::tiling::{Mapping, TiledBody, TiledProgram};
use rspirv::binary::{Assemble, Disassemble};
use std::collections::BTreeMap;

/// What `--emit tiled` adds for a Vulkan target: which parts of the plan this back end uses.
pub const PLAN_NOTE: &str = "note: the SPIR-V back end takes only the query tile (rows per workgroup, one invocation each) and the key tile (the unit of the tile rule) from this plan; it stages each key tile's key-side values in workgroup memory, f32, with a key tile of its own (up to 64 keys, as many as fit the target's workgroup memory; the plan's where nothing fits), and keeps each row's statistics and accumulators in its invocation's registers\n";

/// A compiled Vulkan kernel: the module and what its manifest needs.
#[derive(Clone, Debug)]
pub struct SpirvBuild {
    pub target: TargetId,
    /// The module's words.
    pub words: Vec<u32>,
    /// rspirv's disassembly of the module (`--emit spirv`).
    pub disassembly: String,
    pub entry: String,
    /// Workgroups along x, y, z, as dims.
    pub grid: [Dim; 3],
    /// Invocations per workgroup (one per query row).
    pub threads: u32,
    /// The dims the code was compiled for.
    pub specialised: BTreeMap<String, i64>,
    pub guards: Vec<GuardSite>,
    /// Bytes of workgroup memory the shader declares.
    pub shared_bytes: u32,
    /// The tiling, in words.
    pub tiling: String,
}

impl SpirvBuild {
    /// The module as little-endian bytes, as a bundle stores it.
    pub fn bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

/// Tiles `fused` for `target` (a Vulkan preset), at the dims `given` where given. The GPU cost
/// model sizes shared-memory tiles and matrix fragments, which this shader does not have (it
/// stages key-side values, sized by `compile`, and keeps rows in per-invocation registers), so
/// the model's shared-memory and register limits are lifted for the choice and the plan keeps
/// the real target.
pub fn tile(
    graph: &Graph,
    fused: &FusedProgram,
    target: &Target,
    given: Option<&attnc_ir::Bindings>,
) -> Result<TiledProgram, SpirvError> {
    let unsupported = |message: String| SpirvError::Unsupported {
        message,
        span: None,
    };
    let Target::Gpu(gpu) = target else {
        return Err(unsupported(format!("`{target}` is not a Vulkan target")));
    };
    let mut model = gpu.clone();
    model.shared_bytes_per_block = 1 << 30;
    model.shared_bytes_per_multiprocessor = 1 << 30;
    model.max_registers_per_thread = 1 << 20;
    let mut tiled = attnc_passes::tiling::tile(graph, fused, &Target::Gpu(model), given)?;
    tiled.target = target.clone();
    // The plan's fragment layout is not the shader's: `compile` sizes the workgroup memory.
    for k in &mut tiled.kernels {
        if let TiledBody::Parallel(p) = &mut k.body
            && let Mapping::Blocks { shared_bytes, .. } = &mut p.mapping
        {
            *shared_bytes = 0;
        }
    }
    Ok(tiled)
}

/// Choices of code shape that depend on the device rather than on the kernel.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Stage each key tile's key-side values (rows of K and V, maps on them) in workgroup
    /// memory, written once per workgroup behind barriers, instead of every invocation reading
    /// them from the storage buffers. Right for GPUs; on a CPU implementation (lavapipe) a
    /// barrier costs more than the loads it saves (`bench/results/lavapipe-2026-12-02.md`).
    pub stage_key_tiles: bool,
    /// The most workgroup memory the device allows (`maxComputeSharedMemorySize`), where the
    /// device is known: staging then fits both it and the target's limit, so the bundle loads
    /// on a device with less than the target assumes.
    pub max_shared_bytes: Option<u32>,
    /// Run a recurrence in its chunked form where the plan chunks it (`chunked.rs`), rather
    /// than as a scan. Off by default: on lavapipe its outputs turn to NaN after a few hundred
    /// steps at S = 4096 (correct at the tested S <= 150), cause not found yet, and no GPU has
    /// run it; on lavapipe the scan is also faster (`bench/results/lavapipe-2026-12-02.md`).
    pub chunk_recurrences: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stage_key_tiles: true,
            max_shared_bytes: None,
            chunk_recurrences: false,
        }
    }
}

/// Compiles the first kernel of `fused`, tiled for a Vulkan target in `tiled`, to SPIR-V with
/// the default [`Options`] (those for a GPU).
pub fn compile(
    graph: &Graph,
    fused: &FusedProgram,
    tiled: &TiledProgram,
) -> Result<SpirvBuild, SpirvError> {
    compile_with(graph, fused, tiled, Options::default())
}

/// Compiles the first kernel of `fused`, tiled for a Vulkan target in `tiled`, to SPIR-V.
pub fn compile_with(
    graph: &Graph,
    fused: &FusedProgram,
    tiled: &TiledProgram,
    options: Options,
) -> Result<SpirvBuild, SpirvError> {
    let internal = SpirvError::internal;
    let (Some(kernel), Some(tiles)) = (fused.kernels.first(), tiled.kernels.first()) else {
        return Err(internal("no kernel to compile"));
    };
    let Target::Gpu(gpu) = &tiled.target else {
        return Err(internal(
            "the SPIR-V back end was given a kernel tiled for a CPU",
        ));
    };
    if !matches!(gpu.id, TargetId::Vulkan { .. }) {
        return Err(internal(
            "the SPIR-V back end was given a non-Vulkan target",
        ));
    }
    let plan = match &kernel.template {
        Template::Parallel(p) => p,
        Template::Recurrent(r) => {
            let budget = u32::try_from(gpu.shared_bytes_per_block)
                .unwrap_or(u32::MAX)
                .min(options.max_shared_bytes.unwrap_or(u32::MAX));
            return compile_recurrent(graph, r, &tiles.body, &tiled.dims, gpu.id, budget, options);
        }
    };
    let TiledBody::Parallel(tiling) = &tiles.body else {
        return Err(internal("a parallel kernel tiled as a recurrence"));
    };
    // 128 invocations per workgroup is what every Vulkan device must allow.
    let shape = Shape {
        query_tile: (tiling.query_tile as u32).clamp(1, 128),
        key_tile: (tiling.key_tile as u32).max(1),
    };
    let specialised = specialised_dims(graph, plan, &tiled.dims)?;
    let entry = format!("attnc_{}", graph.kernel);
    let written = kernel::write(
        graph,
        plan,
        &specialised,
        shape,
        if options.stage_key_tiles {
            u32::try_from(gpu.shared_bytes_per_block)
                .unwrap_or(u32::MAX)
                .min(options.max_shared_bytes.unwrap_or(u32::MAX))
        } else {
            0
        },
        &entry,
    )?;
    let (module, guards, shape) = (written.module, written.guards, written.shape);
    let staging = if written.shared_bytes > 0 {
        format!(
            "key-side values of each key tile staged in {} bytes of workgroup memory",
            written.shared_bytes
        )
    } else {
        "key rows read from storage buffers".into()
    };
    let ext = |fi| graph.extents.get(&fi).cloned().unwrap_or(Dim::Const(1));
    Ok(SpirvBuild {
        target: gpu.id,
        words: module.assemble(),
        disassembly: module.disassemble(),
        entry,
        grid: [
            ceil_div(ext(FrameIndex::I), shape.query_tile),
            ext(FrameIndex::H),
            ext(FrameIndex::B),
        ],
        threads: shape.query_tile,
        specialised,
        guards,
        shared_bytes: written.shared_bytes,
        tiling: format!(
            "query tile {} (one invocation per query row), key tile {} (the unit of the tile rule); f32 arithmetic, {staging}",
            shape.query_tile, shape.key_tile
        ),
    })
}

/// A recurrence in the form its tiling chose: chunked (`chunked.rs`) where the plan has chunks
/// and the form is written for SPIR-V, else a scan (`recurrent.rs`). Either way a workgroup
/// covers (b, h) or (b, h, a slice of state columns).
fn compile_recurrent(
    graph: &Graph,
    plan: &attnc_passes::fusion::recurrent::RecurrentKernel,
    body: &TiledBody,
    dims: &BTreeMap<String, i64>,
    target: TargetId,
    shared_budget: u32,
    options: Options,
) -> Result<SpirvBuild, SpirvError> {
    let specialised = specialise(graph, recurrent::vector_dims(graph, plan), dims)?;
    let entry = format!("attnc_{}", graph.kernel);
    let chunk = match body {
        TiledBody::Recurrent { chunk, .. } => *chunk,
        TiledBody::Parallel(_) => {
            return Err(SpirvError::internal("a recurrent kernel tiled as parallel"));
        }
    };
    let mut why_scan = String::new();
    let mut written = None;
    if let (Some(c), Ok(form), true) = (chunk, &plan.chunked, options.chunk_recurrences) {
        let c = u32::try_from(c).unwrap_or(u32::MAX);
        match chunked::write(graph, plan, form, c, shared_budget, &specialised, &entry)? {
            chunked::Outcome::Written(w) => written = Some(*w),
            chunked::Outcome::NotHere(why) => why_scan = format!(" (not chunked: {why})"),
        }
    }
    let written = match written {
        Some(w) => w,
        None => recurrent::write(graph, plan, &specialised, &entry)?,
    };
    let ext = |fi| graph.extents.get(&fi).cloned().unwrap_or(Dim::Const(1));
    Ok(SpirvBuild {
        target,
        words: written.module.assemble(),
        disassembly: written.module.disassemble(),
        entry,
        grid: [
            Dim::Const(i64::from(written.slices)),
            ext(FrameIndex::H),
            ext(FrameIndex::B),
        ],
        threads: written.threads,
        specialised,
        guards: written.guards,
        shared_bytes: written.shared_bytes,
        tiling: format!("{}{why_scan}; f32 arithmetic", written.mapping),
    })
}

/// The values of the dims the kernel keeps vectors over: given (or nominal) ones, or their
/// declared defaults.
fn specialised_dims(
    graph: &Graph,
    plan: &attnc_passes::fusion::ParallelKernel,
    given: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, i64>, SpirvError> {
    specialise(graph, kernel::vector_dims(graph, plan), given)
}

/// The values of the dims `names` (less the frame dims): given ones, or their declared defaults.
fn specialise(
    graph: &Graph,
    names: std::collections::BTreeSet<String>,
    given: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, i64>, SpirvError> {
    // Sequence dims stay run-time dims: a vector over one is refused where it is kept.
    let mut frame_dims = std::collections::BTreeSet::new();
    for d in graph.extents.values() {
        if let Some(s) = d.as_symbol() {
            frame_dims.insert(s.to_string());
        }
    }
    let mut out = BTreeMap::new();
    for name in names {
        if frame_dims.contains(&name) {
            continue;
        }
        let def = graph.dims.iter().find(|d| d.name == name);
        let value = given.get(&name).copied().or_else(|| {
            def.and_then(|d| d.default.as_ref())
                .and_then(|(a, r)| a.eval_constant(*r, given).ok())
                .map(|v| v as i64)
        });
        match value {
            Some(v) => {
                out.insert(name, v);
            }
            None => {
                return Err(SpirvError::Unsupported {
                    message: format!(
                        "the shader is compiled for fixed head dims: give `{name}` with --shape {name}=N"
                    ),
                    span: def.map(|d| d.span),
                });
            }
        }
    }
    Ok(out)
}

/// `ceil(d / n)` as a dim: `(d + n - 1) // n`.
fn ceil_div(d: Dim, n: u32) -> Dim {
    Dim::FloorDiv(
        Box::new(Dim::Add(Box::new(d), Box::new(Dim::Const(n as i64 - 1)))),
        Box::new(Dim::Const(n as i64)),
    )
    .simplified()
}
