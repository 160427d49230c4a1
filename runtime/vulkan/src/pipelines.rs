//! The compute pipelines of a loaded kernel: one shader module per code section and one pipeline
//! per distinct (section, entry point, layout), made once at load time through the device's
//! pipeline cache and reused by every call. Before anything is created, each launch is checked
//! against the device and against what its SPIR-V declares, so a mismatch is a load error that
//! names the launch rather than a driver crash.

use crate::VulkanDevice;
use crate::abi::LaunchLayout;
use crate::driver_error::{Call, DriverError};
use crate::spirv_module;
use ash::vk;
use attnc_bundle::Bundle;
use attnc_kernel_abi::{Arg, KernelManifest, Launch, Param};
use std::collections::BTreeMap;
use std::ffi::CString;

/// A pipeline and the layouts it was made with.
pub(crate) struct Built {
    pub(crate) set_layout: vk::DescriptorSetLayout,
    pub(crate) pipeline_layout: vk::PipelineLayout,
    pub(crate) pipeline: vk::Pipeline,
}

/// What one launch of the manifest runs with.
pub(crate) struct LaunchPipeline {
    pub(crate) layout: LaunchLayout,
    /// Index into [`Pipelines::built`].
    pub(crate) built: usize,
}

pub(crate) struct Pipelines<'d> {
    device: &'d ash::Device,
    modules: Vec<vk::ShaderModule>,
    pub(crate) built: Vec<Built>,
    /// One per manifest launch, in order.
    pub(crate) launches: Vec<LaunchPipeline>,
}

/// Why a kernel cannot be loaded: a manifest or shader problem (`Invalid`), or the driver.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("launch `{launch}`: {detail}")]
    Invalid { launch: String, detail: String },
    #[error("launch `{launch}`: {source}")]
    Driver { launch: String, source: DriverError },
}

impl<'d> Pipelines<'d> {
    pub(crate) fn new(dev: &'d VulkanDevice, bundle: &Bundle) -> Result<Pipelines<'d>, LoadError> {
        let manifest = &bundle.manifest;
        let mut this = Pipelines {
            device: &dev.device,
            modules: Vec::new(),
            built: Vec::new(),
            launches: Vec::new(),
        };
        let mut modules: BTreeMap<&str, (vk::ShaderModule, Vec<u32>)> = BTreeMap::new();
        let mut built: BTreeMap<(&str, &str, usize, u32), usize> = BTreeMap::new();
        for launch in &manifest.launches {
            let name = &launch.signature.name;
            let invalid = |detail: String| LoadError::Invalid {
                launch: name.clone(),
                detail,
            };
            let driver = |source: DriverError| LoadError::Driver {
                launch: name.clone(),
                source,
            };
            let layout = LaunchLayout::of(&launch.signature);
            check_launch(dev, manifest, launch, &layout).map_err(invalid)?;
            if !modules.contains_key(launch.code.as_str()) {
                let bytes = bundle.section(&launch.code).ok_or_else(|| {
                    invalid(format!("the bundle has no code section `{}`", launch.code))
                })?;
                let words = spirv_module::words(bytes)
                    .map_err(|e| invalid(format!("code section `{}`: {e}", launch.code)))?;
                let info = vk::ShaderModuleCreateInfo::default().code(&words);
                // SAFETY: `words` is a SPIR-V module (magic checked, host byte order) that
                // lives across the call.
                let module = unsafe { dev.device.create_shader_module(&info, None) }
                    .call("vkCreateShaderModule")
                    .map_err(driver)?;
                this.modules.push(module);
                modules.insert(&launch.code, (module, words));
            }
            let (module, words) = &modules[launch.code.as_str()];
            check_entry_point(launch, &layout, words).map_err(invalid)?;
            let key = (
                launch.code.as_str(),
                name.as_str(),
                layout.buffers.len(),
                layout.push_constant_bytes(),
            );
            let index = match built.get(&key) {
                Some(&index) => index,
                None => {
                    let entry = CString::new(name.as_str())
                        .map_err(|_| invalid("the entry point name holds a nul byte".into()))?;
                    let made = this.build(dev, *module, &entry, &layout).map_err(driver)?;
                    this.built.push(made);
                    built.insert(key, this.built.len() - 1);
                    this.built.len() - 1
                }
            };
            this.launches.push(LaunchPipeline {
                layout,
                built: index,
            });
        }
        Ok(this)
    }

    fn build(
        &self,
        dev: &VulkanDevice,
        module: vk::ShaderModule,
        entry: &CString,
        layout: &LaunchLayout,
    ) -> Result<Built, DriverError> {
        let bindings: Vec<vk::DescriptorSetLayoutBinding> = (0..layout.buffers.len() as u32)
            .map(|k| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(k)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        let set_info = vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings);
        let mut built = Built {
            set_layout: vk::DescriptorSetLayout::null(),
            pipeline_layout: vk::PipelineLayout::null(),
            pipeline: vk::Pipeline::null(),
        };
        let result = (|| {
            // SAFETY: the device is live and `set_info` points at `bindings`, alive here.
            built.set_layout = unsafe { self.device.create_descriptor_set_layout(&set_info, None) }
                .call("vkCreateDescriptorSetLayout")?;
            let push = [vk::PushConstantRange::default()
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
                .offset(0)
                .size(layout.push_constant_bytes())];
            let set_layouts = [built.set_layout];
            let mut layout_info = vk::PipelineLayoutCreateInfo::default().set_layouts(&set_layouts);
            if layout.push_constant_bytes() > 0 {
                layout_info = layout_info.push_constant_ranges(&push);
            }
            // SAFETY: the set layout was just made; the push range fits maxPushConstantsSize
            // (checked before).
            built.pipeline_layout =
                unsafe { self.device.create_pipeline_layout(&layout_info, None) }
                    .call("vkCreatePipelineLayout")?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(entry);
            let info = vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(built.pipeline_layout);
            // SAFETY: module, entry point (checked to exist) and layout are valid; the cache
            // belongs to the same device.
            let pipelines = unsafe {
                self.device
                    .create_compute_pipelines(dev.pipeline_cache, &[info], None)
            }
            .map_err(|(_, result)| result)
            .call("vkCreateComputePipelines")?;
            built.pipeline = pipelines.first().copied().unwrap_or_default();
            Ok(())
        })();
        match result {
            Ok(()) => Ok(built),
            Err(e) => {
                destroy(self.device, &built);
                Err(e)
            }
        }
    }
}

fn destroy(device: &ash::Device, built: &Built) {
    // SAFETY: no call is in flight (calls wait for their fences), and destroying null handles
    // is a no-op.
    unsafe {
        device.destroy_pipeline(built.pipeline, None);
        device.destroy_pipeline_layout(built.pipeline_layout, None);
        device.destroy_descriptor_set_layout(built.set_layout, None);
    }
}

impl Drop for Pipelines<'_> {
    fn drop(&mut self) {
        for b in &self.built {
            destroy(self.device, b);
        }
        for m in &self.modules {
            // SAFETY: the pipelines made from the module are destroyed above.
            unsafe { self.device.destroy_shader_module(*m, None) };
        }
    }
}

/// What the device must allow for a launch, and that its buffers hold what the signature says.
fn check_launch(
    dev: &VulkanDevice,
    manifest: &KernelManifest,
    launch: &Launch,
    layout: &LaunchLayout,
) -> Result<(), String> {
    let caps = dev.capabilities();
    layout
        .check_push_constants(caps.max_push_constants_bytes)
        .map_err(|e| e.to_string())?;
    if launch.shared_bytes > caps.max_compute_shared_memory_bytes {
        return Err(format!(
            "it uses {} bytes of workgroup memory; the device allows {} (maxComputeSharedMemorySize)",
            launch.shared_bytes, caps.max_compute_shared_memory_bytes
        ));
    }
    let invocations = launch.block.iter().map(|&b| b as u64).product::<u64>();
    if invocations > caps.max_compute_workgroup_invocations as u64
        || (0..3).any(|a| launch.block[a] > caps.max_compute_workgroup_size[a])
    {
        return Err(format!(
            "its workgroup {:?} exceeds the device's limits ({} invocations, size {:?})",
            launch.block, caps.max_compute_workgroup_invocations, caps.max_compute_workgroup_size
        ));
    }
    if launch
        .args
        .iter()
        .any(|a| matches!(a, Arg::TensorMaps { .. }))
    {
        return Err("it reads through TMA tensor maps, which only CUDA has".into());
    }
    for (param, arg) in launch.signature.params.iter().zip(&launch.args) {
        let Param::Buffer { name, element, .. } = param else {
            continue;
        };
        let held = match arg {
            Arg::Tensor { name } => manifest
                .input(name)
                .or_else(|| manifest.output(name))
                .map(|t| t.element),
            Arg::Workspace { name } => manifest
                .workspaces
                .iter()
                .find(|w| &w.name == name)
                .map(|w| w.element),
            _ => Some(*element),
        };
        if let Some(held) = held
            && held != *element
        {
            return Err(format!(
                "buffer parameter `{name}` is {element}, but its argument {arg:?} holds {held}"
            ));
        }
    }
    Ok(())
}

/// Checks a bundle's SPIR-V as far as that needs no device: every launch's code section is
/// there, holds SPIR-V, and declares the launch's entry point with the manifest's workgroup size
/// and only the bindings its signature provides. Loading checks it again; a runner calls it to
/// refuse a bad bundle before opening a device.
pub fn check_code(bundle: &Bundle) -> Result<(), attnc_device::DeviceError> {
    for launch in &bundle.manifest.launches {
        let fail = |detail: String| attnc_device::DeviceError::Load {
            kernel: launch.signature.name.clone(),
            detail,
        };
        let bytes = bundle
            .section(&launch.code)
            .ok_or_else(|| fail(format!("the bundle has no code section `{}`", launch.code)))?;
        let words = spirv_module::words(bytes)
            .map_err(|e| fail(format!("code section `{}`: {e}", launch.code)))?;
        check_entry_point(launch, &LaunchLayout::of(&launch.signature), &words).map_err(fail)?;
    }
    Ok(())
}

/// That the entry point exists, has the manifest's workgroup size and uses only set 0 bindings
/// the signature provides.
fn check_entry_point(launch: &Launch, layout: &LaunchLayout, words: &[u32]) -> Result<(), String> {
    let name = &launch.signature.name;
    let entry = spirv_module::entry_point(words, name)
        .map_err(|e| format!("code section `{}`: {e}", launch.code))?;
    if entry.workgroup_size != launch.block {
        return Err(format!(
            "the shader's workgroup size is {:?}, the manifest's block is {:?}",
            entry.workgroup_size, launch.block
        ));
    }
    let provided = match layout.buffers.len() {
        0 => "no bindings (it has no buffer parameter)".to_string(),
        n => format!(
            "bindings 0 to {} of set 0 (one per buffer parameter)",
            n - 1
        ),
    };
    for (set, binding) in entry.bindings.iter().flatten() {
        if *set != 0 || *binding as usize >= layout.buffers.len() {
            return Err(format!(
                "the shader uses descriptor set {set} binding {binding}, but the signature provides {provided}"
            ));
        }
    }
    Ok(())
}
