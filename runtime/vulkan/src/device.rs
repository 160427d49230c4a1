//! One opened Vulkan device: the logical device with the features its capabilities allow, a
//! compute queue, and the pipeline cache every loaded kernel shares. It implements
//! [`attnc_device::Device`]: `vulkan` bundles run on any Vulkan 1.3 device, `vulkan:coopmat`
//! bundles only where `VK_KHR_cooperative_matrix` is present.

use crate::capabilities::{self, Capabilities, Enable};
use crate::driver_error::{Call, DriverError};
use crate::kernel::VulkanKernel;
use crate::loader::{self, DeviceInfo, Loader};
use crate::memory;
use ash::vk;
use attnc_bundle::Bundle;
use attnc_device::{Device, DeviceError, LoadedKernel};
use attnc_kernel_abi::TargetId;
use std::ffi::c_char;
use std::sync::Mutex;

/// A Vulkan device opened for running attnc kernels.
pub struct VulkanDevice {
    info: DeviceInfo,
    capabilities: Capabilities,
    pub(crate) memory: vk::PhysicalDeviceMemoryProperties,
    memory_budget: bool,
    /// Copy through staging buffers even where device memory is host-visible.
    always_stage: bool,
    physical: vk::PhysicalDevice,
    pub(crate) queue_family: u32,
    pub(crate) timestamp_valid_bits: u32,
    /// Submissions to a queue must be externally synchronised.
    queue: Mutex<vk::Queue>,
    pub(crate) pipeline_cache: vk::PipelineCache,
    pub(crate) device: ash::Device,
    /// Dropped last: the instance outlives the device.
    loader: Loader,
}

impl VulkanDevice {
    /// Opens `vulkan` (the best device: discrete GPU, then integrated, then virtual, then CPU
    /// implementations such as lavapipe) or `vulkan:N` (device N of [`crate::enumerate`]).
    pub fn open(selector: &str) -> Result<VulkanDevice, DeviceError> {
        let loader = Loader::new()?;
        let physical_devices = loader.physical_devices()?;
        let infos: Vec<DeviceInfo> = physical_devices
            .iter()
            .enumerate()
            .map(|(i, d)| loader.describe(i, *d))
            .collect();
        let index = loader::select(selector, &infos)?;
        let physical = physical_devices[index];
        let info = infos[index].clone();
        let probe =
            capabilities::probe(&loader.entry, &loader.instance, physical).ok_or_else(|| {
                DeviceError::Unavailable(format!("{info}: the device has no compute queue"))
            })?;
        let device = create_device(&loader.instance, physical, &probe)
            .map_err(|e| DeviceError::Device(format!("{info}: {e}")))?;
        // SAFETY: the queue family and index 0 were requested at device creation.
        let queue = unsafe { device.get_device_queue(probe.queue_family, 0) };
        let cache_info = vk::PipelineCacheCreateInfo::default();
        // SAFETY: `device` is live; an empty cache needs no initial data.
        let pipeline_cache = match unsafe { device.create_pipeline_cache(&cache_info, None) } {
            Ok(cache) => cache,
            Err(result) => {
                // SAFETY: nothing else was created from the device yet.
                unsafe { device.destroy_device(None) };
                return Err(DeviceError::Device(format!(
                    "{info}: {}",
                    DriverError {
                        call: "vkCreatePipelineCache",
                        result
                    }
                )));
            }
        };
        Ok(VulkanDevice {
            info,
            capabilities: probe.capabilities,
            memory: probe.memory,
            memory_budget: probe.memory_budget,
            always_stage: false,
            physical,
            queue_family: probe.queue_family,
            timestamp_valid_bits: probe.timestamp_valid_bits,
            queue: Mutex::new(queue),
            pipeline_cache,
            device,
            loader,
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Makes every call copy its buffers through host-visible staging buffers, as on a discrete
    /// GPU, even where device memory is mapped directly (lavapipe, integrated GPUs): lets the
    /// staging path be tested on any device.
    pub fn set_always_stage(&mut self, always: bool) {
        self.always_stage = always;
    }

    pub(crate) fn stages_always(&self) -> bool {
        self.always_stage
    }

    /// Bytes the device buffers of a call may use: the remaining budget of the device-local
    /// heap where `VK_EXT_memory_budget` tells it, else that heap's size.
    pub fn available_memory(&self) -> u64 {
        let Some(heap) = memory::device_heap(&self.memory) else {
            return 0;
        };
        let heap = heap as usize;
        let size = self.memory.memory_heaps[heap].size;
        if !self.memory_budget {
            return size;
        }
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        let mut props = vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
        // SAFETY: the device lists VK_EXT_memory_budget (it was enabled), so the structure may
        // be chained; `physical` belongs to the loader's instance.
        unsafe {
            self.loader
                .instance
                .get_physical_device_memory_properties2(self.physical, &mut props)
        };
        match budget.heap_budget[heap] {
            0 => size,
            b => b.saturating_sub(budget.heap_usage[heap]),
        }
    }

    /// Submits one command buffer, to signal `fence` when done.
    pub(crate) fn submit(
        &self,
        command_buffer: vk::CommandBuffer,
        fence: vk::Fence,
    ) -> Result<(), DriverError> {
        let buffers = [command_buffer];
        let submit = vk::SubmitInfo::default().command_buffers(&buffers);
        // A poisoned lock only means another thread panicked while submitting; the queue
        // handle itself is still valid.
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the command buffer is fully recorded and not pending, the fence is unsignalled,
        // and the lock gives this thread the queue.
        unsafe { self.device.queue_submit(*queue, &[submit], fence) }.call("vkQueueSubmit")
    }
}

fn create_device(
    instance: &ash::Instance,
    physical: vk::PhysicalDevice,
    probe: &capabilities::Probe,
) -> Result<ash::Device, DriverError> {
    let Enable {
        shader_int64,
        shader_int16,
        storage_buffer_16bit_access,
        shader_float16,
        shader_int8,
        storage_buffer_8bit_access,
        vulkan_memory_model,
        vulkan_memory_model_device_scope,
        subgroup_size_control,
        compute_full_subgroups,
        cooperative_matrix,
    } = probe.enable;
    let core = vk::PhysicalDeviceFeatures::default()
        .shader_int64(shader_int64)
        .shader_int16(shader_int16);
    let mut f11 = vk::PhysicalDeviceVulkan11Features::default()
        .storage_buffer16_bit_access(storage_buffer_16bit_access);
    let mut f12 = vk::PhysicalDeviceVulkan12Features::default()
        .shader_float16(shader_float16)
        .shader_int8(shader_int8)
        .storage_buffer8_bit_access(storage_buffer_8bit_access)
        .vulkan_memory_model(vulkan_memory_model)
        .vulkan_memory_model_device_scope(vulkan_memory_model_device_scope);
    let mut f13 = vk::PhysicalDeviceVulkan13Features::default()
        .subgroup_size_control(subgroup_size_control)
        .compute_full_subgroups(compute_full_subgroups);
    let mut coop = vk::PhysicalDeviceCooperativeMatrixFeaturesKHR::default()
        .cooperative_matrix(cooperative_matrix);
    let mut features = vk::PhysicalDeviceFeatures2::default()
        .features(core)
        .push_next(&mut f11)
        .push_next(&mut f12)
        .push_next(&mut f13);
    if cooperative_matrix {
        features = features.push_next(&mut coop);
    }
    let priorities = [1.0f32];
    let queues = [vk::DeviceQueueCreateInfo::default()
        .queue_family_index(probe.queue_family)
        .queue_priorities(&priorities)];
    let extensions: Vec<*const c_char> = probe.extensions.iter().map(|e| e.as_ptr()).collect();
    let info = vk::DeviceCreateInfo::default()
        .queue_create_infos(&queues)
        .enabled_extension_names(&extensions)
        .push_next(&mut features);
    // SAFETY: every feature turned on was reported by the device, every extension named is
    // listed by it, and all pointed-to data lives across the call.
    unsafe { instance.create_device(physical, &info, None) }.call("vkCreateDevice")
}

impl Drop for VulkanDevice {
    fn drop(&mut self) {
        // SAFETY: kernels borrow the device, so none is alive here; waiting for idle makes sure
        // no submitted work is left before the cache and the device go.
        unsafe {
            let _ = self.device.device_wait_idle();
            self.device
                .destroy_pipeline_cache(self.pipeline_cache, None);
            self.device.destroy_device(None);
        }
    }
}

impl Device for VulkanDevice {
    fn name(&self) -> String {
        format!(
            "{} (vulkan:{}, {}, Vulkan {})",
            self.info.name,
            self.info.index,
            self.info.kind.name(),
            self.info.api_version
        )
    }

    fn accepts(&self, target: &TargetId) -> bool {
        match target {
            TargetId::Vulkan { cooperative_matrix } => {
                !cooperative_matrix
                    || self
                        .capabilities
                        .cooperative_matrix
                        .as_ref()
                        .is_some_and(|c| c.in_compute)
            }
            _ => false,
        }
    }

    fn load<'d>(&'d self, bundle: &Bundle) -> Result<Box<dyn LoadedKernel + 'd>, DeviceError> {
        Ok(Box::new(VulkanKernel::load(self, bundle)?))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn devices_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<super::VulkanDevice>();
        shareable::<super::VulkanKernel<'static>>();
    }
}
