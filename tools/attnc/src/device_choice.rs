//! `attnc run --device`: which device a run uses. `auto` (the default) takes the best one
//! present, so a new user gets the compiled kernel rather than the f64 oracle; the reference runs
//! only when asked for (or beside a compiled kernel for `--check`).

use clap::ValueEnum;

/// What the user asks for with `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The best device present: a GPU once one can run kernels in-process, else the compiled
    /// CPU kernel.
    Auto,
    /// This machine's cores, through the compiled CPU kernel.
    Cpu,
    /// The f64 reference interpreter (the oracle; slow).
    Reference,
    /// An NVIDIA GPU (not yet runnable from `attnc run`: build a bundle and use `attnc-run`).
    Cuda,
    /// A Vulkan GPU (not yet runnable: the SPIR-V back end is not built).
    Vulkan,
}

/// A device that can actually run a kernel in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    Cpu,
    Reference,
}

impl Resolved {
    /// The name printed after a run, the same word `--device` takes.
    pub fn name(self) -> &'static str {
        match self {
            Resolved::Cpu => "cpu",
            Resolved::Reference => "reference",
        }
    }

    /// What the device is, for the line that says which one ran.
    pub fn describe(self) -> &'static str {
        match self {
            Resolved::Cpu => "compiled kernel on this machine's cores",
            Resolved::Reference => "f64 reference interpreter",
        }
    }
}

/// Turns a request into a runnable device, or explains why it cannot run here.
pub fn resolve(requested: Device) -> anyhow::Result<Resolved> {
    match requested {
        Device::Auto => Ok(probe_gpu().unwrap_or(Resolved::Cpu)),
        Device::Cpu => Ok(Resolved::Cpu),
        Device::Reference => Ok(Resolved::Reference),
        Device::Cuda => anyhow::bail!(
            "--device cuda: `attnc run` cannot launch GPU kernels yet; compile a bundle with \
             `attnc build FILE --target cuda:sm_90a -o k.attnb` and run it with `attnc-run k.attnb`"
        ),
        Device::Vulkan => anyhow::bail!(
            "--device vulkan: the SPIR-V back end is not built yet; use --device cpu (or auto)"
        ),
    }
}

/// The hook for GPUs under `auto`: it returns a GPU device once `attnc run` can launch one
/// in-process. Until then no GPU is ever picked, so `auto` never fails where `cpu` would work.
fn probe_gpu() -> Option<Resolved> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_the_compiled_kernel_and_gpus_explain_themselves() {
        assert_eq!(resolve(Device::Auto).ok(), Some(Resolved::Cpu));
        assert_eq!(resolve(Device::Reference).ok(), Some(Resolved::Reference));
        let cuda = resolve(Device::Cuda).err().map(|e| e.to_string());
        assert!(cuda.is_some_and(|m| m.contains("attnc-run")));
        let vulkan = resolve(Device::Vulkan).err().map(|e| e.to_string());
        assert!(vulkan.is_some_and(|m| m.contains("SPIR-V")));
    }
}
