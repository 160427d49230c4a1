//! Target descriptions: the parameters the tiling cost models read. A target is data, not code:
//! CPUs (vector width, registers, caches) and GPUs (multiprocessors, shared memory, registers,
//! the matrix units' instruction shapes, bandwidths, peak rates), each with presets that tests
//! and dumps name (`x86-avx512`, `x86-avx2`, `sm_80`, `sm_90a`, `vulkan-coopmat`, `vulkan`).

use attnc_kernel_abi::{ElementType, TargetId};
use std::fmt;

/// A CPU as the cost model sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuTarget {
    pub name: String,
    /// Cores that run work items in parallel.
    pub cores: usize,
    /// f32 lanes of one vector register (16 with AVX-512, 8 with AVX2).
    pub f32_lanes: usize,
    /// Architectural vector registers (32 with AVX-512, 16 with AVX2): they bound the
    /// accumulators a register block of a contraction may keep.
    pub vector_registers: usize,
    /// Peak f32 FLOP/s of one core (lanes x 2 for FMA x FMA units x clock).
    pub core_flops: f64,
    /// Per-core data cache sizes in bytes.
    pub l1_bytes: usize,
    pub l2_bytes: usize,
    /// Memory bandwidth of the whole chip, bytes per second.
    pub dram_bytes_per_s: f64,
    /// L2 read bandwidth of one core, bytes per second.
    pub l2_bytes_per_s: f64,
    /// The CPU LLVM generates code for, where it is not the machine the JIT runs on (a preset
    /// for another ISA); `None` compiles for the host as LLVM detects it.
    pub llvm_cpu: Option<LlvmCpu>,
}

/// A CPU model for LLVM's code generator: its name and exactly the features it may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlvmCpu {
    /// LLVM's CPU name, e.g. `haswell`.
    pub name: String,
    /// Comma-separated features, e.g. `+avx2,+fma`; they replace the host's.
    pub features: String,
}

impl CpuTarget {
    /// A 2-core AVX-512 Xeon, like the project's CI machine: deterministic, for dumps and tests.
    pub fn xeon_avx512_2core() -> Self {
        CpuTarget {
            name: "x86-64 avx512, 2 cores".to_string(),
            cores: 2,
            f32_lanes: 16,
            vector_registers: 32,
            // 16 lanes x 2 (FMA) x 2 FMA units x 3.0 GHz.
            core_flops: 16.0 * 2.0 * 2.0 * 3.0e9,
            l1_bytes: 48 << 10,
            l2_bytes: 2 << 20,
            dram_bytes_per_s: 20e9,
            // 64 bytes per cycle at 3.0 GHz, halved for a realistic sustained rate.
            l2_bytes_per_s: 96e9,
            llvm_cpu: None,
        }
    }

    /// An AVX2 machine with `cores` cores (8 f32 lanes, 16 vector registers): what an AVX-512
    /// machine builds to time AVX2 code (LLVM generates Haswell code for it: AVX2 and FMA,
    /// no AVX-512, whatever the host has), and what AVX2-only hosts detect.
    pub fn x86_avx2(cores: usize) -> Self {
        let base = Self::xeon_avx512_2core();
        CpuTarget {
            name: format!("x86-64 avx2, {cores} cores"),
            cores,
            f32_lanes: 8,
            vector_registers: 16,
            core_flops: 8.0 * 2.0 * 2.0 * 3.0e9,
            l1_bytes: 32 << 10,
            l2_bytes: 1 << 20,
            llvm_cpu: Some(LlvmCpu {
                name: "haswell".to_string(),
                features: "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+popcnt,+sse4.2".to_string(),
            }),
            ..base
        }
    }

    /// The machine this runs on: core count from the OS, caches and vector width from Linux's
    /// sysfs and cpuinfo when readable, else the CI preset's values.
    pub fn host() -> Self {
        let preset = Self::xeon_avx512_2core();
        let cores = std::thread::available_parallelism().map_or(preset.cores, |n| n.get());
        let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let (f32_lanes, vector_registers) = if flags.contains(" avx512f") {
            (16, 32)
        } else if flags.contains(" avx2") {
            (8, 16)
        } else {
            (4, 16)
        };
        let cache = |index: usize| -> Option<usize> {
            let text = std::fs::read_to_string(format!(
                "/sys/devices/system/cpu/cpu0/cache/index{index}/size"
            ))
            .ok()?;
            let t = text.trim();
            let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
            let n: usize = num.parse().ok()?;
            Some(match unit {
                "K" => n << 10,
                "M" => n << 20,
                _ => n,
            })
        };
        CpuTarget {
            name: format!("host ({cores} cores, {} f32 lanes)", f32_lanes),
            cores,
            f32_lanes,
            vector_registers,
            core_flops: f32_lanes as f64 * 2.0 * 2.0 * 3.0e9,
            l1_bytes: cache(0).unwrap_or(preset.l1_bytes),
            l2_bytes: cache(2).unwrap_or(preset.l2_bytes),
            dram_bytes_per_s: preset.dram_bytes_per_s,
            l2_bytes_per_s: preset.l2_bytes_per_s,
            llvm_cpu: None,
        }
    }
}

/// One instruction shape of a GPU's matrix units: `m x n x k` per instruction (per warp for
/// `mma.sync`, per subgroup for cooperative matrices), operands of `operand`, accumulating in
/// `accumulator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub operand: ElementType,
    pub accumulator: ElementType,
    /// f32 operands rounded to tf32 (10 mantissa bits) by the matrix unit.
    pub tf32: bool,
}

/// How a GPU is programmed: CUDA through PTX, or Vulkan through SPIR-V.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuApi {
    Cuda,
    Vulkan,
}

/// A GPU as the cost model sees it. Presets describe known chips; a device's real limits
/// (read by the runtime) may override them at build time.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuTarget {
    pub name: String,
    pub id: TargetId,
    pub api: GpuApi,
    /// Multiprocessors (SMs, compute units).
    pub multiprocessors: usize,
    /// Shared (workgroup) memory one block may use, in bytes.
    pub shared_bytes_per_block: usize,
    pub shared_bytes_per_multiprocessor: usize,
    /// 32-bit registers of one multiprocessor, and the most one thread may have.
    pub registers_per_multiprocessor: usize,
    pub max_registers_per_thread: usize,
    pub max_threads_per_block: usize,
    /// Threads of a warp (subgroup): the unit that issues a matrix instruction.
    pub subgroup: usize,
    /// Subgroup operations (shuffles) for row reductions.
    pub subgroup_shuffle: bool,
    /// The matrix units' instruction shapes, in order of preference.
    pub matrix: Vec<MatrixShape>,
    /// `cp.async` copies from global to shared memory (sm_80 and later).
    pub async_copy: bool,
    /// Products on `wgmma` (sm_90a) instead of `mma.sync`. Only the `cuda:sm_90a-wgmma` preset
    /// sets it for now: that template is correct on the H200 (153 of 153 check cases) but
    /// slower than mma.sync until the Hopper pipeline (swizzled tiles, TMA, overlapped waits)
    /// lands (`bench/results/h200-wgmma-2026-12-03.md`).
    pub warpgroup_mma: bool,
    /// Bulk tensor copies (TMA, sm_90) completing on shared-memory barriers: one thread moves a
    /// whole tile, described by a tensor map the runtime encodes (the `wgmma` template uses
    /// them for its key and value tiles).
    pub bulk_tensor_copy: bool,
    pub dram_bytes_per_s: f64,
    pub l2_bytes: usize,
    /// Dense matrix-unit rate for 16-bit operands, FLOP/s.
    pub matrix_flops_16bit: f64,
    /// Plain f32 FMA rate, FLOP/s.
    pub f32_flops: f64,
    /// (query tile, key tile) fixed from outside the model (`attnc build --tile`), so that
    /// candidates can be timed on a device; the model still chooses everything else.
    pub pinned_tiles: Option<(usize, usize)>,
}

impl GpuTarget {
    fn mma_shapes() -> Vec<MatrixShape> {
        let shape = |k, operand, tf32| MatrixShape {
            m: 16,
            n: 8,
            k,
            operand,
            accumulator: ElementType::F32,
            tf32,
        };
        vec![
            shape(16, ElementType::Bf16, false),
            shape(16, ElementType::F16, false),
            shape(8, ElementType::F32, true),
        ]
    }

    /// NVIDIA A100 (sm_80): 108 SMs, 164 KiB shared memory per SM, `mma.sync` and `cp.async`.
    pub fn sm_80() -> Self {
        GpuTarget {
            name: "sm_80 (A100)".into(),
            id: TargetId::Cuda {
                sm: 80,
                arch_specific: false,
            },
            api: GpuApi::Cuda,
            multiprocessors: 108,
            shared_bytes_per_block: 163 << 10,
            shared_bytes_per_multiprocessor: 164 << 10,
            registers_per_multiprocessor: 65536,
            max_registers_per_thread: 255,
            max_threads_per_block: 1024,
            subgroup: 32,
            subgroup_shuffle: true,
            matrix: Self::mma_shapes(),
            async_copy: true,
            warpgroup_mma: false,
            bulk_tensor_copy: false,
            dram_bytes_per_s: 1.55e12,
            l2_bytes: 40 << 20,
            matrix_flops_16bit: 312e12,
            f32_flops: 19.5e12,
            pinned_tiles: None,
        }
    }

    /// NVIDIA H100 / H200 SXM (sm_90a): 132 SMs, 227 KiB of shared memory per block, `wgmma`.
    /// Memory bandwidth is the H200's 4.8 TB/s datasheet figure (4.24 TB/s measured copy).
    pub fn sm_90a() -> Self {
        GpuTarget {
            name: "sm_90a (H100/H200)".into(),
            id: TargetId::Cuda {
                sm: 90,
                arch_specific: true,
            },
            multiprocessors: 132,
            shared_bytes_per_block: 227 << 10,
            shared_bytes_per_multiprocessor: 228 << 10,
            warpgroup_mma: false,
            bulk_tensor_copy: true,
            dram_bytes_per_s: 4.24e12,
            l2_bytes: 50 << 20,
            matrix_flops_16bit: 790e12,
            f32_flops: 67e12,
            pinned_tiles: None,
            ..Self::sm_80()
        }
    }

    /// The sm_90a target with the score and value products on `wgmma` (the first slice of the
    /// Hopper template: no-swizzle descriptors, each product waited for at once).
    pub fn sm_90a_wgmma() -> Self {
        GpuTarget {
            name: "sm_90a (H100/H200, wgmma)".into(),
            warpgroup_mma: true,
            ..Self::sm_90a()
        }
    }

    /// The H100 / H200 without the arch-specific sm_90a features (for drivers or tools that
    /// reject sm_90a code): `mma.sync`.
    pub fn sm_90() -> Self {
        GpuTarget {
            name: "sm_90 (H100/H200)".into(),
            id: TargetId::Cuda {
                sm: 90,
                arch_specific: false,
            },
            ..Self::sm_90a()
        }
    }

    /// A Vulkan device with cooperative matrices, as NVIDIA's driver exposes them on an H100:
    /// 16 x 16 x 16 f16/bf16 shapes at subgroup scope, 48 KiB of workgroup memory.
    pub fn vulkan_coopmat() -> Self {
        let shape = |operand| MatrixShape {
            m: 16,
            n: 16,
            k: 16,
            operand,
            accumulator: ElementType::F32,
            tf32: false,
        };
        GpuTarget {
            name: "vulkan-coopmat (NVIDIA driver profile)".into(),
            id: TargetId::Vulkan {
                cooperative_matrix: true,
            },
            api: GpuApi::Vulkan,
            shared_bytes_per_block: 48 << 10,
            matrix: vec![shape(ElementType::F16), shape(ElementType::Bf16)],
            async_copy: false,
            warpgroup_mma: false,
            bulk_tensor_copy: false,
            ..Self::sm_90a()
        }
    }

    /// Any Vulkan 1.3 device without matrix units (lavapipe, mobile GPUs): 32 KiB of
    /// workgroup memory, no subgroup operations assumed.
    pub fn vulkan_plain() -> Self {
        GpuTarget {
            name: "vulkan (no matrix units)".into(),
            id: TargetId::Vulkan {
                cooperative_matrix: false,
            },
            multiprocessors: 8,
            shared_bytes_per_block: 32 << 10,
            shared_bytes_per_multiprocessor: 32 << 10,
            subgroup_shuffle: false,
            matrix: vec![],
            dram_bytes_per_s: 50e9,
            l2_bytes: 4 << 20,
            matrix_flops_16bit: 0.0,
            f32_flops: 1e12,
            ..Self::vulkan_coopmat()
        }
    }

    /// The matrix instruction for operands of `operand` type, if the target has one.
    pub fn matrix_shape(&self, operand: ElementType) -> Option<MatrixShape> {
        self.matrix.iter().copied().find(|m| m.operand == operand)
    }
}

/// What the compiler is tiling for.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Cpu(CpuTarget),
    Gpu(GpuTarget),
}

impl Target {
    /// The target names `--target` takes, with what each is.
    pub const PRESETS: &'static [(&'static str, &'static str)] = &[
        ("host", "this machine's CPU, as its OS describes it"),
        ("x86-avx512", "a 2-core AVX-512 Xeon (the CI machine)"),
        ("x86-avx2", "a 2-core AVX2 machine"),
        ("cuda:sm_80", "NVIDIA A100 and later, mma.sync"),
        ("cuda:sm_90", "NVIDIA H100/H200, portable sm_90 code"),
        ("cuda:sm_90a", "NVIDIA H100/H200"),
        (
            "cuda:sm_90a-wgmma",
            "NVIDIA H100/H200, products on wgmma (experimental: slower for now)",
        ),
        ("vulkan", "any Vulkan 1.3 device"),
        ("vulkan:coopmat", "Vulkan with cooperative matrices"),
    ];

    /// The target a `--target` name stands for.
    pub fn preset(name: &str) -> Option<Target> {
        Some(match name {
            "host" | "cpu" => Target::Cpu(CpuTarget::host()),
            "x86-avx512" | "xeon-avx512-2core" => Target::Cpu(CpuTarget::xeon_avx512_2core()),
            "x86-avx2" => Target::Cpu(CpuTarget::x86_avx2(2)),
            "cuda:sm_80" | "sm_80" => Target::Gpu(GpuTarget::sm_80()),
            "cuda:sm_90" | "sm_90" => Target::Gpu(GpuTarget::sm_90()),
            "cuda:sm_90a" | "sm_90a" | "cuda" => Target::Gpu(GpuTarget::sm_90a()),
            "cuda:sm_90a-wgmma" | "sm_90a-wgmma" => Target::Gpu(GpuTarget::sm_90a_wgmma()),
            "vulkan:coopmat" | "vulkan-coopmat" => Target::Gpu(GpuTarget::vulkan_coopmat()),
            "vulkan" => Target::Gpu(GpuTarget::vulkan_plain()),
            _ => return None,
        })
    }

    /// What compiled code for this target runs on.
    pub fn id(&self) -> TargetId {
        match self {
            Target::Cpu(_) => TargetId::Cpu,
            Target::Gpu(g) => g.id,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Cpu(c) => write!(f, "cpu: {}", c.name),
            Target::Gpu(g) => write!(f, "gpu: {}", g.name),
        }
    }
}
