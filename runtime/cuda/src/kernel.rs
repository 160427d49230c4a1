//! A loaded bundle on a CUDA device: one call is plan, allocate (inputs uploaded, outputs
//! NaN-poisoned, status and workspaces zeroed), launch in order, synchronise, read the status
//! words, download. Timing reuses the allocation and measures each call between two events on
//! the device's own clock.

use crate::device::CudaDevice;
use crate::driver::{self, KernelArg, driver_text};
use crate::launch_plan::{ArgSlot, CallPlan, plan_call};
use crate::timing::summarize;
use attnc_device::{
    DeviceError, LoadedKernel, Tensors, Timing, check_inputs, poison_element, tensor_maps_key,
};
use attnc_kernel_abi::{Arg, DimValues, KernelManifest, STATUS_WORDS, TENSOR_MAP_BYTES};
use attnc_tensors::HostTensor;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaEvent, CudaFunction, CudaSlice, DevicePtr, DriverError, LaunchConfig};
use std::collections::BTreeMap;

/// Device buffers of one call, by the keys of [`attnc_device::buffer_bytes`].
type Buffers = BTreeMap<String, CudaSlice<u8>>;

/// A bundle loaded on a [`CudaDevice`]: its manifest and one function per launch.
pub struct CudaKernel<'d> {
    device: &'d CudaDevice,
    manifest: KernelManifest,
    functions: Vec<CudaFunction>,
}

impl<'d> CudaKernel<'d> {
    pub(crate) fn new(
        device: &'d CudaDevice,
        manifest: KernelManifest,
        functions: Vec<CudaFunction>,
    ) -> CudaKernel<'d> {
        CudaKernel {
            device,
            manifest,
            functions,
        }
    }

    /// Checks the call, refuses it if it does not fit, and allocates and fills its buffers.
    fn prepare(
        &self,
        dims: &DimValues,
        inputs: &Tensors,
    ) -> Result<(CallPlan, Buffers), DeviceError> {
        check_inputs(&self.manifest, dims, inputs)?;
        let plan = plan_call(&self.manifest, dims, &self.device.limits)?;
        let (free, _) = self
            .device
            .ctx
            .mem_get_info()
            .map_err(|e| device_error("cannot read the free device memory", &e))?;
        plan.check_fits(free as u64)?;
        let mut buffers = Buffers::new();
        for (key, &bytes) in &plan.buffers {
            let bytes = usize::try_from(bytes)
                .map_err(|_| DeviceError::Input(format!("buffer `{key}` has {bytes} bytes")))?;
            let input = self.manifest.input(key).and_then(|_| inputs.get(key));
            let contents = match (input, self.manifest.output(key)) {
                (Some(tensor), _) => Contents::Bytes(tensor.data()),
                (None, Some(out)) => Contents::Poison(
                    poison_element(out.element)
                        .unwrap_or_else(|| vec![0xff; out.element.size_bytes()]),
                ),
                (None, None) => Contents::Zeros,
            };
            buffers.insert(key.clone(), self.allocate(key, bytes, contents)?);
        }
        self.write_tensor_maps(dims, &mut buffers)?;
        Ok((plan, buffers))
    }

    /// Encodes every launch's TMA tensor maps for this call's tensors and uploads them into the
    /// launch's tensor-map buffer.
    fn write_tensor_maps(
        &self,
        dims: &DimValues,
        buffers: &mut Buffers,
    ) -> Result<(), DeviceError> {
        let stream = &self.device.stream;
        for launch in &self.manifest.launches {
            for arg in &launch.args {
                let Arg::TensorMaps { maps } = arg else {
                    continue;
                };
                let mut bytes = Vec::with_capacity(maps.len() * TENSOR_MAP_BYTES);
                for map in maps {
                    let tensor = self.manifest.input(&map.tensor).ok_or_else(|| {
                        DeviceError::Input(format!(
                            "a tensor map names `{}`, which is no input",
                            map.tensor
                        ))
                    })?;
                    let shape: Vec<u64> = self
                        .manifest
                        .shape_of(tensor, dims)
                        .map_err(|e| DeviceError::Input(e.to_string()))?
                        .into_iter()
                        .map(|d| d as u64)
                        .collect();
                    let encoding = map
                        .encoding(&shape, tensor.element.size_bytes() as u64)
                        .map_err(DeviceError::Input)?;
                    let buffer = buffers.get(&map.tensor).ok_or_else(|| {
                        DeviceError::Device(format!("input `{}` was not allocated", map.tensor))
                    })?;
                    let (address, _sync) = buffer.device_ptr(stream);
                    let encoded = driver::encode_tensor_map(tensor.element, address, &encoding)
                        .map_err(|e| {
                            DeviceError::Device(format!(
                                "kernel `{}`, tensor `{}`: {e}",
                                launch.signature.name, map.tensor
                            ))
                        })?;
                    bytes.extend_from_slice(&encoded);
                }
                let key = tensor_maps_key(&launch.signature.name);
                let buffer = buffers.get_mut(&key).ok_or_else(|| {
                    DeviceError::Device(format!("buffer `{key}` was not allocated"))
                })?;
                stream
                    .memcpy_htod(&bytes, buffer)
                    .map_err(|e| device_error("cannot upload the tensor maps", &e))?;
            }
        }
        Ok(())
    }

    /// One buffer of `bytes` (at least 4: the driver allocates nothing for 0).
    fn allocate(
        &self,
        key: &str,
        bytes: usize,
        contents: Contents<'_>,
    ) -> Result<CudaSlice<u8>, DeviceError> {
        let stream = &self.device.stream;
        let padded = bytes.max(4);
        let fail = |e: DriverError| {
            device_error(&format!("cannot allocate {padded} bytes for `{key}`"), &e)
        };
        match contents {
            Contents::Zeros => stream.alloc_zeros::<u8>(padded).map_err(fail),
            Contents::Bytes(data) => {
                if data.len() != bytes {
                    return Err(DeviceError::Input(format!(
                        "input `{key}` holds {} bytes, its buffer {bytes}",
                        data.len()
                    )));
                }
                let mut host = data.to_vec();
                host.resize(padded, 0);
                stream.clone_htod(&host).map_err(fail)
            }
            Contents::Poison(element) => {
                let host: Vec<u8> = element.iter().copied().cycle().take(padded).collect();
                stream.clone_htod(&host).map_err(fail)
            }
        }
    }

    /// Queues every launch of a call in order; with `each`, waits for each one, so that a
    /// fault while a kernel runs is reported against that kernel.
    fn launch_all(
        &self,
        plan: &CallPlan,
        buffers: &Buffers,
        each: bool,
    ) -> Result<(), DeviceError> {
        for step in &plan.launches {
            let kernel = &self.manifest.launches[step.launch].signature.name;
            let args = step
                .args
                .iter()
                .map(|slot| match slot {
                    ArgSlot::Buffer(key) => {
                        buffers.get(key).map(KernelArg::Buffer).ok_or_else(|| {
                            DeviceError::Device(format!(
                                "kernel `{kernel}`: buffer `{key}` was not allocated"
                            ))
                        })
                    }
                    ArgSlot::I64(v) => Ok(KernelArg::I64(*v)),
                    ArgSlot::F32(v) => Ok(KernelArg::F32(*v)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let config = LaunchConfig {
                grid_dim: (step.grid[0], step.grid[1], step.grid[2]),
                block_dim: (step.block[0], step.block[1], step.block[2]),
                shared_mem_bytes: step.shared_bytes,
            };
            driver::launch(
                &self.device.stream,
                &self.functions[step.launch],
                config,
                &args,
            )
            .map_err(|e| DeviceError::Launch {
                kernel: kernel.clone(),
                detail: driver_text(&e),
            })?;
            if each {
                self.device
                    .stream
                    .synchronize()
                    .map_err(|e| DeviceError::Launch {
                        kernel: kernel.clone(),
                        detail: format!("{} (while it ran)", driver_text(&e)),
                    })?;
            }
        }
        Ok(())
    }

    /// Waits for everything queued; a fault is named after the whole call.
    fn synchronize(&self, what: &str) -> Result<(), DeviceError> {
        self.device
            .stream
            .synchronize()
            .map_err(|e| DeviceError::Launch {
                kernel: self.manifest.kernel.clone(),
                detail: format!("{} (during {what})", driver_text(&e)),
            })
    }

    /// Reads the status words and turns a failed check into its message.
    fn check_status(&self, buffers: &Buffers) -> Result<(), DeviceError> {
        let Some(status) = buffers.get("status") else {
            return Ok(());
        };
        let bytes = self
            .device
            .stream
            .clone_dtoh(status)
            .map_err(|e| device_error("cannot read the status words", &e))?;
        let words: Vec<i32> = bytes
            .chunks_exact(4)
            .take(STATUS_WORDS)
            .map(|w| i32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        Ok(self.manifest.check_status(&words)?)
    }

    fn download(&self, dims: &DimValues, buffers: &Buffers) -> Result<Tensors, DeviceError> {
        let mut out = Tensors::new();
        for t in &self.manifest.outputs {
            let shape = self
                .manifest
                .shape_of(t, dims)
                .map_err(|e| DeviceError::Input(e.to_string()))?;
            let buffer = buffers.get(&t.name).ok_or_else(|| {
                DeviceError::Device(format!("output `{}` was not allocated", t.name))
            })?;
            let mut bytes = self
                .device
                .stream
                .clone_dtoh(buffer)
                .map_err(|e| device_error(&format!("cannot read output `{}`", t.name), &e))?;
            let len = shape.iter().product::<usize>() * t.element.size_bytes();
            bytes.truncate(len);
            let tensor = HostTensor::new(t.element, shape, bytes).map_err(|e| {
                // Bool outputs start as byte 0xff, which is no bool: an element left unwritten.
                DeviceError::Device(format!(
                    "output `{}` is not what the kernel should write: {e}",
                    t.name
                ))
            })?;
            out.insert(t.name.clone(), tensor);
        }
        Ok(out)
    }
}

/// What a buffer starts as.
enum Contents<'a> {
    Bytes(&'a [u8]),
    /// One element's bytes, repeated: NaN for floats, all ones for the others.
    Poison(Vec<u8>),
    Zeros,
}

fn device_error(what: &str, e: &DriverError) -> DeviceError {
    DeviceError::Device(format!("{what}: {}", driver_text(e)))
}

impl LoadedKernel for CudaKernel<'_> {
    fn manifest(&self) -> &KernelManifest {
        &self.manifest
    }

    fn run(&self, dims: &DimValues, inputs: &Tensors) -> Result<Tensors, DeviceError> {
        let (plan, buffers) = self.prepare(dims, inputs)?;
        self.launch_all(&plan, &buffers, true)?;
        self.synchronize("the call")?;
        self.check_status(&buffers)?;
        self.download(dims, &buffers)
    }

    fn time(
        &self,
        dims: &DimValues,
        inputs: &Tensors,
        warmup: usize,
        iters: usize,
    ) -> Result<Timing, DeviceError> {
        if iters == 0 {
            return Err(DeviceError::Input(
                "timing needs at least one timed call".into(),
            ));
        }
        let (plan, buffers) = self.prepare(dims, inputs)?;
        for _ in 0..warmup {
            self.launch_all(&plan, &buffers, false)?;
        }
        self.synchronize("the warm-up calls")?;
        self.check_status(&buffers)?;
        let ctx = &self.device.ctx;
        let event = || {
            ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(|e| device_error("cannot create a timing event", &e))
        };
        let events: Vec<(CudaEvent, CudaEvent)> = (0..iters)
            .map(|_| Ok((event()?, event()?)))
            .collect::<Result<_, DeviceError>>()?;
        let stream = &self.device.stream;
        let record = |e: &CudaEvent| {
            e.record(stream)
                .map_err(|err| device_error("cannot record a timing event", &err))
        };
        // All calls are queued back to back, so host-side launch gaps do not enter the times.
        for (start, end) in &events {
            record(start)?;
            self.launch_all(&plan, &buffers, false)?;
            record(end)?;
        }
        self.synchronize("the timed calls")?;
        self.check_status(&buffers)?;
        let samples = events
            .iter()
            .map(|(start, end)| {
                start
                    .elapsed_ms(end)
                    .map(|ms| f64::from(ms) / 1e3)
                    .map_err(|e| device_error("cannot read a timing event", &e))
            })
            .collect::<Result<Vec<f64>, _>>()?;
        summarize(&samples).ok_or_else(|| {
            DeviceError::Device(format!(
                "the device's timers gave unusable times: {samples:?}"
            ))
        })
    }
}
