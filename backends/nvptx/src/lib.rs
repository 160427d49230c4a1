//! The NVPTX back end: a fused, tiled parallel kernel as `gpu.module` MLIR whose contractions run
//! on the tensor cores (`ldmatrix`, `mma.sync`, `cp.async` into double-buffered shared memory),
//! lowered by MLIR's NVVM pipeline, translated to LLVM IR, and compiled to PTX by LLVM's NVPTX
//! target machine (`attnc-llvm`). Its [`GpuBuild`] carries everything a bundle's manifest needs:
//! the launches, their grids as expressions of the dims, and the run-time checks.
//!
//! Kernels are specialised only for the head dims (the lengths of the rows a block keeps);
//! batch, heads and sequence lengths are run-time arguments, so one build serves every shape.
//! Code generation lives in `kernel.rs` (prologue, epilogue, outputs), `sweep.rs` (the key tile
//! loop and online reductions), `mma.rs` (fragments), `leaves.rs` (where values are read),
//! `classify.rs` (where values live), `per_head.rs` (the workspace kernel), `scan.rs` (a
//! recurrence, step by step) and `scan/chunked.rs` (a recurrence chunk by chunk, its products
//! on the tensor cores).

mod classify;
mod error;
mod kernel;
mod leaves;
mod manifest;
mod mma;
mod per_head;
mod scan;
mod sweep;
mod tma;

pub use error::NvptxError;
pub use leaves::GuardSite;
pub use manifest::{PTX_SECTION, manifest};

use attnc_ir::ElementType;
use attnc_ir::graph::Graph;
use attnc_ir::types::Dim;
use attnc_kernel_abi::TargetId;
use attnc_passes::fusion::{FusedProgram, Template};
use attnc_passes::tiling::target::Target;
use attnc_passes::tiling::{Instruction, Mapping, Role, TiledBody, TiledProgram};
use std::collections::BTreeMap;

/// One kernel launch of a build.
#[derive(Clone, Debug)]
pub struct LaunchInfo {
    pub entry: String,
    /// Blocks along x, y, z, as dims.
    pub grid: [Dim; 3],
    pub threads: usize,
    pub shared_bytes: usize,
    /// The TMA tensor maps the launch reads its tiles through (its last parameter), if any.
    pub tensor_maps: Vec<attnc_kernel_abi::TensorMap>,
}

/// A compiled GPU kernel: every stage's text and what its manifest needs.
#[derive(Clone, Debug)]
pub struct GpuBuild {
    pub target: TargetId,
    /// The `gpu.module` as written (`--emit mlir`).
    pub mlir: String,
    /// LLVM IR from MLIR's translation (`--emit llvm`).
    pub llvm_ir: String,
    /// PTX from LLVM's NVPTX target machine (`--emit ptx`).
    pub ptx: String,
    /// The launches in order (the per-head prologue kernel, when there is one, first).
    pub launches: Vec<LaunchInfo>,
    /// The dims the code was compiled for.
    pub specialised: BTreeMap<String, i64>,
    /// The workspace's length in f32 elements, if the kernel has one.
    pub workspace: Option<Dim>,
    pub guards: Vec<GuardSite>,
    /// The tiling, in words.
    pub tiling: String,
    /// How long each step of the code generation took (`--time-passes`).
    pub timings: Vec<(&'static str, std::time::Duration)>,
    /// A recurrence's chunk length as built (`None` for a scan or a parallel kernel).
    pub chunk: Option<usize>,
    /// Why a recurrence the plan chunks runs as a scan here.
    pub why_scan: Option<String>,
}

/// The symbol of the gpu.module every kernel is in.
pub const GPU_MODULE: &str = "attnc";

/// Tiles `fused` for a CUDA target so that the kernel this back end writes fits it. The cost
/// model estimates shared memory from the plan; the back end's layout is exact and can need more
/// (a converted copy of a tile beside its storage-type copy, say). Where it does, the model is
/// asked again with its budget lowered by the difference, so the choice stays the model's best
/// among the tilings that really fit.
pub fn fit(
    graph: &Graph,
    fused: &FusedProgram,
    target: &Target,
    given: Option<&attnc_ir::Bindings>,
) -> Result<TiledProgram, NvptxError> {
    let Target::Gpu(gpu) = target else {
        return Err(NvptxError::Internal {
            message: "the NVPTX back end was given a CPU target".into(),
            span: None,
        });
    };
    let mut budget = gpu.clone();
    let mut last = None;
    for _ in 0..8 {
        let mut tiled =
            attnc_passes::tiling::tile(graph, fused, &Target::Gpu(budget.clone()), given)
                .map_err(NvptxError::Tiling)?;
        tiled.target = target.clone();
        // Other errors are the compile step's to report, with the tiling that caused them.
        let e = match generate(graph, fused, &tiled) {
            Ok(build) => {
                // The plan says what runs: the chunk length built, or why the scan runs.
                if let Some(why) = &build.why_scan {
                    tiled.scan_recurrences(why);
                }
                if let (Some(c), Some(k)) = (build.chunk, tiled.kernels.first_mut())
                    && let TiledBody::Recurrent { chunk, .. } = &mut k.body
                {
                    *chunk = Some(c);
                }
                // The plan shows the layout's exact size, not the model's estimate.
                let exact = build.launches.last().map(|l| l.shared_bytes);
                if let (Some(exact), Some(k)) = (exact, tiled.kernels.first_mut())
                    && let TiledBody::Parallel(p) = &mut k.body
                    && let Mapping::Blocks { shared_bytes, .. } = &mut p.mapping
                {
                    *shared_bytes = exact;
                }
                return Ok(tiled);
            }
            Err(e @ NvptxError::SharedMemory { .. }) => e,
            Err(_) => return Ok(tiled),
        };
        if let NvptxError::SharedMemory {
            needed, allowed, ..
        } = &e
        {
            let over = needed.saturating_sub(*allowed).max(1024);
            budget.shared_bytes_per_block = budget.shared_bytes_per_block.saturating_sub(over);
        }
        last = Some(e);
        if budget.shared_bytes_per_block == 0 {
            break;
        }
    }
    Err(last.unwrap_or_else(|| {
        NvptxError::Resources(format!(
            "kernel `{}`: no tiling fits {}'s shared memory",
            graph.kernel, gpu.name
        ))
    }))
}

/// Compiles the first kernel of `fused`, tiled for a CUDA target in `tiled`, to PTX.
pub fn compile(
    graph: &Graph,
    fused: &FusedProgram,
    tiled: &TiledProgram,
) -> Result<GpuBuild, NvptxError> {
    let start = std::time::Instant::now();
    let mut build = generate(graph, fused, tiled)?;
    build.timings.push(("gpu code: MLIR text", start.elapsed()));
    let TargetId::Cuda { sm, arch_specific } = build.target else {
        return Err(NvptxError::Internal {
            message: "the NVPTX back end was given a non-CUDA target".into(),
            span: None,
        });
    };
    let sm_name = format!("sm_{sm}{}", if arch_specific { "a" } else { "" });
    let (llvm_ir, ptx) = lower(&build.mlir, &sm_name, &mut build.timings)?;
    build.llvm_ir = llvm_ir;
    build.ptx = ptx;
    Ok(build)
}

/// Writes the kernel's MLIR and its launch description (`llvm_ir` and `ptx` left empty).
pub fn generate(
    graph: &Graph,
    fused: &FusedProgram,
    tiled: &TiledProgram,
) -> Result<GpuBuild, NvptxError> {
    let internal = |m: &str| NvptxError::Internal {
        message: m.to_string(),
        span: None,
    };
    let (Some(kernel), Some(tiles)) = (fused.kernels.first(), tiled.kernels.first()) else {
        return Err(internal("no kernel to compile"));
    };
    let Target::Gpu(gpu) = &tiled.target else {
        return Err(internal(
            "the NVPTX back end was given a kernel tiled for a CPU",
        ));
    };
    if !matches!(gpu.id, TargetId::Cuda { .. }) {
        return Err(internal("the NVPTX back end was given a non-CUDA target"));
    }
    let plan = match &kernel.template {
        Template::Parallel(p) => p,
        Template::Recurrent(r) => return generate_recurrent(graph, r, tiles, tiled, gpu),
    };
    let TiledBody::Parallel(tiling) = &tiles.body else {
        return Err(internal("a parallel kernel tiled as a recurrence"));
    };
    let Mapping::Blocks {
        warps,
        stages,
        query_in_registers,
        ..
    } = tiling.mapping
    else {
        return Err(internal("a GPU kernel tiled for CPU cores"));
    };
    let kind = |role| {
        let t = tiling
            .contraction(role)
            .map_or(ElementType::F32, |c| c.operand);
        mma::Kind { operand: t }
    };
    let mut shape = kernel::Shape {
        bq: tiling.query_tile,
        bk: tiling.key_tile,
        warps,
        stages: stages.clamp(1, 2),
        query_in_registers,
        score: kind(Role::Score),
        value: kind(Role::Aggregate),
        warpgroup: false,
        warpgroup_values: false,
    };
    if shape.bq != 16 * warps || !shape.bk.is_multiple_of(16) {
        return Err(internal(
            "GPU tiles must be 16 query rows per warp and whole 16-key steps",
        ));
    }
    let specialised = classify::specialised_dims(graph, plan, &tiled.dims)?;
    // The tiling chose the instructions (so `--emit tiled` says what runs); the operands'
    // own lengths are checked here, where each score's are known.
    let chose_wgmma = |role| {
        tiling
            .contraction(role)
            .is_some_and(|c| matches!(c.instruction, Instruction::Warpgroup(_)))
    };
    shape.warpgroup = chose_wgmma(Role::Score);
    if shape.warpgroup {
        if !warpgroup_scores(graph, plan, gpu, &shape, &specialised)? {
            return Err(internal(
                "the tiling chose wgmma for score operands the descriptors cannot address",
            ));
        }
        // The query operand is read from shared memory by every k step's descriptor.
        shape.query_in_registers = false;
        shape.warpgroup_values = chose_wgmma(Role::Aggregate);
        if shape.warpgroup_values && !warpgroup_values(graph, plan, &shape, &specialised)? {
            return Err(internal(
                "the tiling chose wgmma for value rows the descriptors cannot address",
            ));
        }
    }
    let operands = classify::Operands {
        score: shape.score.operand,
        value: shape.value.operand,
    };
    let mut layout = classify::layout(
        graph,
        plan,
        &specialised,
        specialised.clone(),
        shape.bq,
        shape.bk,
        shape.stages,
        &operands,
        classify::Cores {
            scores: shape.warpgroup,
            values: shape.warpgroup_values,
        },
    )?;
    if gpu.bulk_tensor_copy && shape.warpgroup && shape.stages == 2 {
        layout.use_tma(graph, shape.bk, shape.stages);
    }
    layout.place();
    if layout.shared_bytes > gpu.shared_bytes_per_block {
        return Err(NvptxError::SharedMemory {
            kernel: graph.kernel.clone(),
            target: gpu.name.clone(),
            needed: layout.shared_bytes,
            allowed: gpu.shared_bytes_per_block,
            query_tile: shape.bq,
            key_tile: shape.bk,
        });
    }
    let entry = format!("attnc_{}", graph.kernel);
    let prologue_entry = format!("attnc_{}_per_head", graph.kernel);
    let prologue = per_head::write(graph, plan, &layout, &prologue_entry)?;
    let workspace = kernel::workspace_len(graph, &layout);
    let shared_bytes = layout.shared_bytes;
    let tensor_maps = layout
        .tma
        .as_ref()
        .map(|t| t.maps.clone())
        .unwrap_or_default();
    let tiling_text = format!(
        "query tile {}, key tile {}, {} warps, {} stages{}, {}, {} bytes of shared memory; score operands {}, value operands {}",
        shape.bq,
        shape.bk,
        warps,
        shape.stages,
        if tensor_maps.is_empty() {
            ""
        } else {
            " (key tiles by TMA)"
        },
        if shape.warpgroup {
            "scores on wgmma from shared memory"
        } else if shape.query_in_registers {
            "query fragments in registers"
        } else {
            "query fragments from shared memory"
        },
        shared_bytes,
        shape.score.operand,
        shape.value.operand
    );
    let (main, mut guards) = kernel::write_main(graph, plan, layout, shape, &entry)?;
    let mut launches = Vec::new();
    let mut functions = String::new();
    let ext = |fi| graph.extents.get(&fi).cloned().unwrap_or(Dim::Const(1));
    use attnc_ir::types::FrameIndex;
    if let Some((text, g)) = prologue {
        functions.push_str(&text);
        guards.extend(g);
        let slices = Dim::Mul(Box::new(ext(FrameIndex::B)), Box::new(ext(FrameIndex::H)));
        launches.push(LaunchInfo {
            entry: prologue_entry,
            grid: [
                ceil_div(slices, per_head::THREADS),
                Dim::Const(1),
                Dim::Const(1),
            ],
            threads: per_head::THREADS,
            shared_bytes: 0,
            tensor_maps: Vec::new(),
        });
    }
    functions.push_str(&main);
    launches.push(LaunchInfo {
        entry,
        grid: [
            ceil_div(ext(FrameIndex::I), shape.bq),
            ext(FrameIndex::H),
            ext(FrameIndex::B),
        ],
        threads: shape.threads(),
        shared_bytes,
        tensor_maps,
    });
    let mlir = format!(
        "module attributes {{gpu.container_module}} {{\n  gpu.module @{GPU_MODULE} {{\n{functions}  }}\n}}\n"
    );
    Ok(GpuBuild {
        target: gpu.id,
        mlir,
        llvm_ir: String::new(),
        ptx: String::new(),
        launches,
        specialised,
        workspace,
        guards,
        tiling: tiling_text,
        timings: Vec::new(),
        chunk: None,
        why_scan: None,
    })
}

/// A recurrence in the chunked form where the plan chunks it and this back end writes it
/// (`scan/chunked.rs`), else as the scan, saying why.
fn generate_recurrent(
    graph: &Graph,
    plan: &attnc_passes::fusion::recurrent::RecurrentKernel,
    tiles: &attnc_passes::tiling::TiledKernel,
    tiled: &TiledProgram,
    gpu: &attnc_passes::tiling::target::GpuTarget,
) -> Result<GpuBuild, NvptxError> {
    let planned = match &tiles.body {
        TiledBody::Recurrent { chunk, .. } => *chunk,
        TiledBody::Parallel(_) => None,
    };
    let (Some(chunk), Ok(form)) = (planned, &plan.chunked) else {
        return generate_scan(graph, plan, tiled, gpu, None);
    };
    let entry = format!("attnc_{}", graph.kernel);
    let written = scan::write_chunked(
        graph,
        plan,
        form,
        chunk,
        &tiled.dims,
        gpu.shared_bytes_per_block,
        &entry,
    );
    let k = match written {
        Ok(Ok(k)) => k,
        Ok(Err(why)) | Err(NvptxError::Unsupported { message: why, .. }) => {
            return generate_scan(graph, plan, tiled, gpu, Some(why));
        }
        Err(e) => return Err(e),
    };
    use attnc_ir::types::FrameIndex;
    let ext = |fi| graph.extents.get(&fi).cloned().unwrap_or(Dim::Const(1));
    let tiling = format!(
        "chunks of {} steps: a block of {} threads per (b, h) and slice of {} value columns ({} slices), the states' slices in shared memory as f32; per chunk the scores, read-outs and state updates on the tensor cores (mma.sync m16n8k8, tf32 operands, f32 accumulators){}, {} bytes of shared memory",
        k.chunk,
        k.threads,
        k.columns,
        k.slices,
        if k.per_row_scores {
            "; a per-row decay's scores on the CUDA cores"
        } else {
            ""
        },
        k.shared_bytes,
    );
    let mlir = format!(
        "module attributes {{gpu.container_module}} {{\n  gpu.module @{GPU_MODULE} {{\n{}  }}\n}}\n",
        k.text
    );
    Ok(GpuBuild {
        target: gpu.id,
        mlir,
        llvm_ir: String::new(),
        ptx: String::new(),
        launches: vec![LaunchInfo {
            entry,
            grid: [
                Dim::Const(k.slices as i64),
                ext(FrameIndex::H),
                ext(FrameIndex::B),
            ],
            threads: k.threads,
            shared_bytes: k.shared_bytes,
            tensor_maps: Vec::new(),
        }],
        specialised: k.specialised,
        workspace: None,
        guards: k.guards,
        tiling,
        timings: Vec::new(),
        chunk: Some(k.chunk),
        why_scan: None,
    })
}

/// The scan form of a recurrence (`scan.rs`): a block per (b, h) and slice of value columns;
/// `why` says why a recurrence the plan chunks runs as a scan.
fn generate_scan(
    graph: &Graph,
    plan: &attnc_passes::fusion::recurrent::RecurrentKernel,
    tiled: &TiledProgram,
    gpu: &attnc_passes::tiling::target::GpuTarget,
    why: Option<String>,
) -> Result<GpuBuild, NvptxError> {
    use attnc_ir::types::FrameIndex;
    let entry = format!("attnc_{}", graph.kernel);
    let k = scan::write(graph, plan, &tiled.dims, gpu.shared_bytes_per_block, &entry)?;
    let ext = |fi| graph.extents.get(&fi).cloned().unwrap_or(Dim::Const(1));
    let tiling = format!(
        "scan over t: a block per (b, h) and slice of {} value columns ({} slices), {} threads ({} per column, each with its share of the rows of the matrix states in registers), the other states in shared memory, f32 states, {} bytes of shared memory",
        k.columns, k.slices, k.threads, k.group, k.shared_bytes,
    );
    let mlir = format!(
        "module attributes {{gpu.container_module}} {{\n  gpu.module @{GPU_MODULE} {{\n{}  }}\n}}\n",
        k.text
    );
    Ok(GpuBuild {
        target: gpu.id,
        mlir,
        llvm_ir: String::new(),
        ptx: String::new(),
        launches: vec![LaunchInfo {
            entry,
            grid: [
                Dim::Const(k.slices as i64),
                ext(FrameIndex::H),
                ext(FrameIndex::B),
            ],
            threads: k.threads,
            shared_bytes: k.shared_bytes,
            tensor_maps: Vec::new(),
        }],
        specialised: k.specialised,
        workspace: None,
        guards: k.guards,
        tiling,
        timings: Vec::new(),
        chunk: None,
        why_scan: why,
    })
}

/// Whether the score products run on `wgmma`: the target has it, the operands are 16-bit, the
/// block's warps form whole warpgroups, the key tile is a valid `n` (a multiple of 8 up to 256)
/// and every score's operands are whole k steps of 16 (descriptors address no padding).
fn warpgroup_scores(
    graph: &Graph,
    plan: &attnc_passes::fusion::ParallelKernel,
    gpu: &attnc_passes::tiling::target::GpuTarget,
    shape: &kernel::Shape,
    dims: &BTreeMap<String, i64>,
) -> Result<bool, NvptxError> {
    if !gpu.warpgroup_mma
        || !matches!(shape.score.operand, ElementType::Bf16 | ElementType::F16)
        || !shape.warps.is_multiple_of(4)
        || !shape.bk.is_multiple_of(8)
        || shape.bk > 256
    {
        return Ok(false);
    }
    let mut any = false;
    for &n in &plan.pair {
        if let attnc_ir::graph::Op::Score = graph.node(n).op {
            for (v, _) in graph.operands(n) {
                if !classify::feature_len(graph, v.node, dims)?.is_multiple_of(16) {
                    return Ok(false);
                }
            }
            any = true;
        }
    }
    Ok(any)
}

/// Whether the aggregations' products run on `wgmma` too (the weights from registers, the value
/// rows through a descriptor): 16-bit value operands and every aggregated row a valid `n` (a
/// multiple of 8 up to 256).
fn warpgroup_values(
    graph: &Graph,
    plan: &attnc_passes::fusion::ParallelKernel,
    shape: &kernel::Shape,
    dims: &BTreeMap<String, i64>,
) -> Result<bool, NvptxError> {
    if !matches!(shape.value.operand, ElementType::Bf16 | ElementType::F16) {
        return Ok(false);
    }
    let mut any = false;
    for r in plan.sweeps.iter().flat_map(|s| &s.reductions) {
        if let (attnc_ir::graph::Op::Aggregate, Some(row)) = (&graph.node(r.node).op, r.row) {
            let len = classify::feature_len(graph, row.node, dims)?;
            if !len.is_multiple_of(8) || len > 256 {
                return Ok(false);
            }
            any = true;
        }
    }
    Ok(any)
}

/// `ceil(d / n)` as a dim: `(d + n - 1) // n`.
fn ceil_div(d: Dim, n: usize) -> Dim {
    Dim::FloorDiv(
        Box::new(Dim::Add(Box::new(d), Box::new(Dim::Const(n as i64 - 1)))),
        Box::new(Dim::Const(n as i64)),
    )
    .simplified()
}

/// MLIR text to LLVM IR (MLIR's NVVM pipeline and translation) to PTX (LLVM's NVPTX back end).
fn lower(
    mlir: &str,
    sm: &str,
    timings: &mut Vec<(&'static str, std::time::Duration)>,
) -> Result<(String, String), NvptxError> {
    let start = std::time::Instant::now();
    let session = attnc_mlir::MlirSession::new();
    let mut module = session.parse(mlir)?;
    module.verify()?;
    module.run_pipeline(attnc_mlir::NVVM_LOWERING_PIPELINE)?;
    let llvm_ir = module.gpu_module_to_llvm_ir(GPU_MODULE)?;
    timings.push(("gpu code: MLIR to LLVM IR", start.elapsed()));
    let start = std::time::Instant::now();
    let ptx = attnc_llvm::llvm_ir_to_ptx(&llvm_ir, &attnc_llvm::PtxTarget::new(sm))?;
    timings.push(("gpu code: LLVM to PTX", start.elapsed()));
    if let Some(line) = ptx.lines().find(|l| l.contains(".extern .func")) {
        return Err(NvptxError::Internal {
            message: format!(
                "the PTX calls a function nothing links ({}): a math op reached libdevice",
                line.trim()
            ),
            span: None,
        });
    }
    Ok((llvm_ir, ptx))
}
