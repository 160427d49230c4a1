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
    /// The first NVIDIA GPU (cuda:0): the kernel is compiled for it and run in-process.
    Cuda,
    /// The best Vulkan device (any GPU with a Vulkan driver, or Mesa's lavapipe on the CPU):
    /// the kernel is compiled to SPIR-V and run in-process. `auto` never picks it, since on
    /// a machine whose only Vulkan device is lavapipe the CPU kernel is faster.
    Vulkan,
}

/// A device that can actually run a kernel in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    Cpu,
    Reference,
    Cuda,
    Vulkan,
}

impl Resolved {
    /// The name printed after a run, the same word `--device` takes.
    pub fn name(self) -> &'static str {
        match self {
            Resolved::Cpu => "cpu",
            Resolved::Reference => "reference",
            Resolved::Cuda => "cuda",
            Resolved::Vulkan => "vulkan",
        }
    }

    /// What the device is, for the line that says which one ran.
    pub fn describe(self) -> &'static str {
        match self {
            Resolved::Cpu => "compiled kernel on this machine's cores",
            Resolved::Reference => "f64 reference interpreter",
            Resolved::Cuda => "compiled kernel on the NVIDIA GPU cuda:0",
            Resolved::Vulkan => "SPIR-V kernel on the best Vulkan device",
        }
    }
}

/// Turns a request into a runnable device, or explains why it cannot run here.
pub fn resolve(requested: Device) -> anyhow::Result<Resolved> {
    match requested {
        Device::Auto => Ok(probe_gpu().unwrap_or(Resolved::Cpu)),
        Device::Cpu => Ok(Resolved::Cpu),
        Device::Reference => Ok(Resolved::Reference),
        // Without a driver this says so and fails: a run asked for the GPU never falls back.
        Device::Cuda => crate::gpu_device::open_cuda().map(|_| Resolved::Cuda),
        Device::Vulkan => crate::gpu_device::open_vulkan().map(|_| Resolved::Vulkan),
    }
}

/// A GPU under `auto`: cuda:0 when a driver opens one that attnc compiles for. Any failure
/// (no driver, no device, too old a device) leaves the CPU, which always works.
fn probe_gpu() -> Option<Resolved> {
    let device = crate::gpu_device::open_cuda().ok()?;
    crate::gpu_device::preset_for(device.capability())
        .ok()
        .map(|_| Resolved::Cuda)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_the_best_device_and_gpus_explain_themselves() {
        // Where a CUDA device opens, auto and cuda pick it; elsewhere auto is the CPU kernel
        // and cuda fails, saying why.
        let gpu = crate::gpu_device::open_cuda().is_ok();
        let best = if gpu { Resolved::Cuda } else { Resolved::Cpu };
        assert_eq!(resolve(Device::Auto).ok(), Some(best));
        assert_eq!(resolve(Device::Reference).ok(), Some(Resolved::Reference));
        match resolve(Device::Cuda) {
            Ok(d) => assert!(gpu && d == Resolved::Cuda),
            Err(e) => assert!(!gpu && e.to_string().contains("--device cuda: "), "{e}"),
        }
        let vulkan = crate::gpu_device::open_vulkan().is_ok();
        match resolve(Device::Vulkan) {
            Ok(d) => assert!(vulkan && d == Resolved::Vulkan),
            Err(e) => assert!(
                !vulkan && e.to_string().contains("--device vulkan: "),
                "{e}"
            ),
        }
    }
}
