//! A kernel bundle loaded on a Vulkan device: [`attnc_device::LoadedKernel`] for SPIR-V. Its
//! pipelines are made once at load; every call plans and checks its launches, allocates its
//! buffers, uploads the inputs, poisons the outputs with NaN, runs, reads the status words and
//! downloads the outputs. Timing runs the same recorded call repeatedly on resident data and
//! reads the device's timestamps.

use crate::VulkanDevice;
use crate::call::{self, Plan, Resources, STATUS};
use crate::driver_error::DriverError;
use crate::pipelines::{LoadError, Pipelines};
use attnc_bundle::Bundle;
use attnc_device::{
    Device, DeviceError, LoadedKernel, Tensors, Timing, check_inputs, poison_element,
};
use attnc_kernel_abi::{DimValues, KernelManifest};
use attnc_tensors::HostTensor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A bundle's kernel, ready to run on the device it was loaded on.
pub struct VulkanKernel<'d> {
    dev: &'d VulkanDevice,
    manifest: KernelManifest,
    pipelines: Pipelines<'d>,
    /// Whether the "timing on the host clock" note was printed.
    noted_host_timing: AtomicBool,
}

impl<'d> VulkanKernel<'d> {
    /// Checks the bundle against the device and makes its pipelines.
    pub fn load(dev: &'d VulkanDevice, bundle: &Bundle) -> Result<VulkanKernel<'d>, DeviceError> {
        let manifest = &bundle.manifest;
        if !dev.accepts(&manifest.target) {
            return Err(DeviceError::WrongTarget {
                target: manifest.target,
                device: dev.name(),
            });
        }
        let pipelines = Pipelines::new(dev, bundle).map_err(|e| DeviceError::Load {
            kernel: manifest.kernel.clone(),
            detail: match e {
                LoadError::Invalid { .. } => e.to_string(),
                LoadError::Driver { .. } => format!("{e} (a driver problem)"),
            },
        })?;
        Ok(VulkanKernel {
            dev,
            manifest: manifest.clone(),
            pipelines,
            noted_host_timing: AtomicBool::new(false),
        })
    }

    fn driver(&self, e: DriverError) -> DeviceError {
        DeviceError::Launch {
            kernel: self.manifest.kernel.clone(),
            detail: format!("{e} (a driver problem)"),
        }
    }

    /// Plans a call, allocates it and stages its inputs and poisoned outputs.
    fn prepare(
        &self,
        dims: &DimValues,
        inputs: &Tensors,
        timestamps: bool,
    ) -> Result<(Plan, Resources<'d>), DeviceError> {
        check_inputs(&self.manifest, dims, inputs)?;
        let plan = call::plan(self.dev, &self.manifest, &self.pipelines, dims)?;
        let mut res = Resources::new(self.dev, &plan, &self.pipelines, timestamps)
            .map_err(|e| self.driver(e))?;
        for t in &self.manifest.inputs {
            if let Some(tensor) = inputs.get(&t.name) {
                res.stage_in(&t.name, tensor.data())
                    .map_err(|e| self.driver(e))?;
            }
        }
        for t in &self.manifest.outputs {
            let bytes = plan.bytes.get(&t.name).copied().unwrap_or(0) as usize;
            // Non-float outputs have no NaN; they start as zeros.
            let pattern =
                poison_element(t.element).unwrap_or_else(|| vec![0; t.element.size_bytes()]);
            let poisoned: Vec<u8> = pattern.iter().copied().cycle().take(bytes).collect();
            res.stage_in(&t.name, &poisoned)
                .map_err(|e| self.driver(e))?;
        }
        res.stage_out(STATUS).map_err(|e| self.driver(e))?;
        Ok((plan, res))
    }

    /// Buffers every call starts with zeros in: the status words and every workspace.
    fn zeroed(&self) -> Vec<String> {
        std::iter::once(STATUS.to_string())
            .chain(
                self.manifest
                    .workspaces
                    .iter()
                    .map(|w| format!("workspace:{}", w.name)),
            )
            .collect()
    }

    fn check_status(&self, res: &Resources<'_>) -> Result<(), DeviceError> {
        Ok(self.manifest.check_status(&res.status())?)
    }
}

impl LoadedKernel for VulkanKernel<'_> {
    fn manifest(&self) -> &KernelManifest {
        &self.manifest
    }

    fn run(&self, dims: &DimValues, inputs: &Tensors) -> Result<Tensors, DeviceError> {
        let (plan, mut res) = self.prepare(dims, inputs, false)?;
        for t in &self.manifest.outputs {
            res.stage_out(&t.name).map_err(|e| self.driver(e))?;
        }
        res.upload().map_err(|e| self.driver(e))?;
        res.record(&plan, &self.pipelines, &self.zeroed())
            .map_err(|e| self.driver(e))?;
        res.execute().map_err(|e| self.driver(e))?;
        self.check_status(&res)?;
        let mut out = Tensors::new();
        for t in &self.manifest.outputs {
            let shape = self
                .manifest
                .shape_of(t, dims)
                .map_err(|e| DeviceError::Input(e.to_string()))?;
            let len = plan.bytes.get(&t.name).copied().unwrap_or(0) as usize;
            let bytes = res.read(&t.name, len).ok_or_else(|| DeviceError::Launch {
                kernel: self.manifest.kernel.clone(),
                detail: format!("output `{}` could not be read back (a runtime bug)", t.name),
            })?;
            let tensor =
                HostTensor::new(t.element, shape, bytes).map_err(|e| DeviceError::Launch {
                    kernel: self.manifest.kernel.clone(),
                    detail: format!("output `{}`: {e}", t.name),
                })?;
            out.insert(t.name.clone(), tensor);
        }
        Ok(out)
    }

    /// Each sample is one whole call on the device (zeroing the status and workspaces, then
    /// every launch), between two timestamps; on a queue without timestamps, the host's clock
    /// around submit and wait, which also counts the submission (a note says so once).
    fn time(
        &self,
        dims: &DimValues,
        inputs: &Tensors,
        warmup: usize,
        iters: usize,
    ) -> Result<Timing, DeviceError> {
        if iters == 0 {
            return Err(DeviceError::Input(format!(
                "timing kernel `{}` needs at least one iteration",
                self.manifest.kernel
            )));
        }
        let timestamps = self.dev.capabilities().timestamp_period_ns.is_some();
        if !timestamps && !self.noted_host_timing.swap(true, Ordering::Relaxed) {
            eprintln!(
                "note: {} has no timestamps on its compute queue; timing kernel `{}` on the host clock (includes submission)",
                self.dev.name(),
                self.manifest.kernel
            );
        }
        let (plan, mut res) = self.prepare(dims, inputs, timestamps)?;
        res.upload().map_err(|e| self.driver(e))?;
        res.record(&plan, &self.pipelines, &self.zeroed())
            .map_err(|e| self.driver(e))?;
        let mut samples = Vec::with_capacity(iters);
        for k in 0..warmup + iters {
            let start = Instant::now();
            res.execute().map_err(|e| self.driver(e))?;
            let host = start.elapsed().as_secs_f64();
            let device = res.device_seconds().map_err(|e| self.driver(e))?;
            if k >= warmup {
                samples.push(device.unwrap_or(host));
            }
        }
        self.check_status(&res)?;
        Ok(summarise(samples))
    }
}

/// Median and minimum of the samples (at least one).
fn summarise(mut samples: Vec<f64>) -> Timing {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n == 0 {
        return Timing {
            median_s: 0.0,
            min_s: 0.0,
            samples: 0,
        };
    }
    let median_s = if !n.is_multiple_of(2) {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    };
    Timing {
        median_s,
        min_s: samples.first().copied().unwrap_or(0.0),
        samples: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_minimum() {
        let t = summarise(vec![3.0, 1.0, 2.0]);
        assert_eq!((t.median_s, t.min_s, t.samples), (2.0, 1.0, 3));
        let t = summarise(vec![4.0, 1.0, 2.0, 3.0]);
        assert_eq!((t.median_s, t.min_s, t.samples), (2.5, 1.0, 4));
    }
}
