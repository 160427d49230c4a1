//! Target descriptions: the parameters the tiling cost model reads. A target is data, not code:
//! CPUs today; GPU targets (shared memory, registers, matrix-unit shapes) join as presets with
//! their own parameters when their backends are built.

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
        }
    }
}

/// What the compiler is tiling for.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Cpu(CpuTarget),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Cpu(c) => write!(f, "cpu: {}", c.name),
        }
    }
}
