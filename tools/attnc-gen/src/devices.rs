//! The places a generated program runs besides the reference: each is a `Device` that compiles
//! and runs a verified graph on the reference's inputs. A GPU backend joins by implementing the
//! trait and being added to `available()`; the harness needs nothing else.

use attnc_driver::Quiet;
use attnc_ir::{Bindings, Graph};
use attnc_reference::Tensor;
use std::collections::BTreeMap;

/// Why a device gave no outputs.
#[derive(Clone, Debug)]
pub enum DeviceError {
    /// A construct the device does not handle, with the reason it names: allowed, and counted.
    Rejected(String),
    /// A compiler bug or a failed run: always a failure of the program.
    Internal(String),
}

pub trait Device {
    /// The name in reports (`cpu`, `cuda:sm_90a`, ...).
    fn name(&self) -> &str;
    /// The largest difference from the reference it may show, relative to the reference's
    /// largest magnitude (at least 1), for an output stored as `dtype`.
    fn tolerance(&self, dtype: attnc_ir::ElementType) -> f64;
    /// Compiles `graph` for `bindings` and runs it on `inputs`, returning every output.
    fn run(
        &self,
        graph: &Graph,
        bindings: &Bindings,
        inputs: &BTreeMap<String, Tensor>,
    ) -> Result<BTreeMap<String, Tensor>, DeviceError>;
}

/// The host through the CPU backend, compiled exactly as `attnc run --device cpu` does.
pub struct Cpu;

impl Device for Cpu {
    fn name(&self) -> &str {
        "cpu"
    }

    /// The kernel computes in f32 and returns its f32 results (the output dtype is applied
    /// only when a file is written), so the dtype does not widen the tolerance: a few hundred
    /// f32 roundings (6e-8 each) along the longest chain of a generated program, with room.
    fn tolerance(&self, _dtype: attnc_ir::ElementType) -> f64 {
        1e-3
    }

    fn run(
        &self,
        graph: &Graph,
        bindings: &Bindings,
        inputs: &BTreeMap<String, Tensor>,
    ) -> Result<BTreeMap<String, Tensor>, DeviceError> {
        let backend = attnc_driver::Cpu::host();
        let kernel = attnc_driver::build(&backend, graph, Some(bindings)).map_err(|e| match e {
            attnc_driver::DriverError::Generate(e) if e.is_unsupported() => {
                DeviceError::Rejected(e.to_string())
            }
            e => DeviceError::Internal(e.to_string()),
        })?;
        let arrays = inputs
            .iter()
            .map(|(name, t)| (name.clone(), (t.shape.clone(), t.data.clone())))
            .collect();
        let outputs = kernel
            .run(bindings, &arrays)
            .map_err(|e| DeviceError::Internal(format!("the run failed: {e}")))?;
        Ok(outputs
            .into_iter()
            .map(|(name, (shape, data))| (name, Tensor { shape, data }))
            .collect())
    }
}

/// The best Vulkan device (lavapipe in CI) through the SPIR-V back end, compiled as
/// `attnc run --device vulkan` does: a bundle in memory, loaded by the Vulkan runtime.
pub struct Vulkan {
    device: attnc_vulkan::VulkanDevice,
}

impl Device for Vulkan {
    fn name(&self) -> &str {
        "vulkan"
    }

    /// As the CPU's, plus the rounding of a 16-bit output, which the shader narrows on the
    /// device (half a unit in the last place).
    fn tolerance(&self, dtype: attnc_ir::ElementType) -> f64 {
        match dtype {
            attnc_ir::ElementType::Bf16 => 1e-3 + 2f64.powi(-8),
            attnc_ir::ElementType::F16 => 1e-3 + 2f64.powi(-10),
            _ => 1e-3,
        }
    }

    fn run(
        &self,
        graph: &Graph,
        bindings: &Bindings,
        inputs: &BTreeMap<String, Tensor>,
    ) -> Result<BTreeMap<String, Tensor>, DeviceError> {
        use attnc_device::Device as _;
        let internal = |what: &str, e: String| DeviceError::Internal(format!("{what}: {e}"));
        let target = attnc_passes::tiling::target::Target::preset("vulkan")
            .ok_or_else(|| internal("the target", "no vulkan preset".into()))?;
        let backend = attnc_driver::Vulkan::new(target, attnc_spirv::Options::default());
        let until = attnc_driver::Until::Code;
        let compiled = attnc_driver::compile(&backend, graph, Some(bindings), until, &mut Quiet)
            .map_err(|e| match e {
                // A construct it does not compile yet, or head dims no tiling fits: a limit.
                attnc_driver::DriverError::Tiling(e) | attnc_driver::DriverError::Generate(e)
                    if matches!(
                        e,
                        attnc_spirv::SpirvError::Unsupported { .. }
                            | attnc_spirv::SpirvError::Tiling(_)
                    ) =>
                {
                    DeviceError::Rejected(e.to_string())
                }
                e => DeviceError::Internal(e.to_string()),
            })?;
        let (graph, Some(build)) = (compiled.graph, compiled.build) else {
            return Err(internal("the driver", "no build".into()));
        };
        let manifest = attnc_spirv::manifest(&build, &graph, "generated.attn", &|s| {
            format!("generated.attn:{}", s.start)
        });
        let bundle = attnc_bundle::Bundle {
            manifest,
            sections: vec![(attnc_spirv::SPIRV_SECTION.into(), build.bytes())],
        };
        let kernel = self
            .device
            .load(&bundle)
            .map_err(|e| internal("loading", e.to_string()))?;
        let mut host = BTreeMap::new();
        for (_, name, ty) in graph.inputs() {
            let t = inputs
                .get(name)
                .ok_or_else(|| internal("the inputs", format!("no input `{name}`")))?;
            let h = attnc_tensors::HostTensor::from_f64(ty.dtype, t.shape.clone(), &t.data)
                .map_err(|e| internal("the inputs", e.to_string()))?;
            host.insert(name.to_string(), h);
        }
        let out = kernel
            .run(&bindings.dims, &host)
            .map_err(|e| internal("the run failed", e.to_string()))?;
        Ok(out
            .into_iter()
            .map(|(name, t)| {
                let tensor = Tensor {
                    shape: t.shape().to_vec(),
                    data: t.to_f64_vec(),
                };
                (name, tensor)
            })
            .collect())
    }
}

/// Every device this build can run on: the CPU, and a Vulkan device where one opens.
pub fn available() -> Vec<Box<dyn Device>> {
    let mut devices: Vec<Box<dyn Device>> = vec![Box::new(Cpu)];
    if let Ok(device) = attnc_vulkan::VulkanDevice::open("vulkan") {
        devices.push(Box::new(Vulkan { device }));
    }
    devices
}
