//! One call of a loaded kernel on the device: the plan (buffer sizes, push constants and grids,
//! all checked before anything is allocated), then the resources (buffers, descriptor sets, a
//! command buffer, a fence, timestamp queries) and the recorded work: zero the status buffer and
//! the workspaces, run every launch in order with a compute-to-compute barrier between them, and
//! make the results visible to the host. Everything is freed when the call's resources drop,
//! always after the call's fence was waited for.

use crate::VulkanDevice;
use crate::abi::LaunchLayout;
use crate::driver_error::{Call, DriverError};
use crate::memory::{Buffer, Role};
use crate::pipelines::Pipelines;
use ash::vk;
use attnc_device::{ArgValue, DeviceError, buffer_bytes, launch_args, launch_grid};
use attnc_kernel_abi::{DimValues, KernelManifest, Param, STATUS_WORDS};
use std::collections::BTreeMap;

/// The status buffer's key among a call's buffers (as `attnc_device::buffer_bytes` names it).
pub(crate) const STATUS: &str = "status";

/// A call checked against the device, before allocation.
pub(crate) struct Plan {
    /// Bytes of every buffer, by key: tensor names, `workspace:NAME`, `status`.
    pub(crate) bytes: BTreeMap<String, u64>,
    pub(crate) launches: Vec<PlannedLaunch>,
}

pub(crate) struct PlannedLaunch {
    /// The buffer key at each binding.
    pub(crate) buffers: Vec<String>,
    pub(crate) push_constants: Vec<u8>,
    pub(crate) grid: [u32; 3],
}

/// Forms and checks every launch of a call under `dims`; errors name the kernel.
pub(crate) fn plan(
    dev: &VulkanDevice,
    manifest: &KernelManifest,
    pipelines: &Pipelines<'_>,
    dims: &DimValues,
) -> Result<Plan, DeviceError> {
    let kernel = &manifest.kernel;
    let caps = dev.capabilities();
    let bytes = buffer_bytes(manifest, dims)?;
    let needed: u64 = bytes.values().map(|b| b.max(&4).div_ceil(4) * 4).sum();
    let available = dev.available_memory();
    if needed > available {
        return Err(DeviceError::Memory { needed, available });
    }
    for (name, &b) in &bytes {
        let limit = (caps.max_storage_buffer_range as u64).min(caps.max_allocation_bytes);
        if b > limit {
            return Err(DeviceError::Input(format!(
                "kernel `{kernel}`: buffer `{name}` needs {b} bytes; one storage buffer on this device holds at most {limit} (maxStorageBufferRange, maxMemoryAllocationSize)"
            )));
        }
    }
    let limits = caps.max_compute_workgroup_count.map(u64::from);
    let mut launches = Vec::new();
    for (launch, lp) in manifest.launches.iter().zip(&pipelines.launches) {
        let entry = &launch.signature.name;
        let args = launch_args(launch, dims)?;
        let grid = launch_grid(launch, dims, limits)?;
        let push_constants = lp
            .layout
            .push_constants(&launch.signature, &args)
            .map_err(|e| DeviceError::Input(format!("kernel `{kernel}`, launch `{entry}`: {e}")))?;
        let buffers = binding_keys(&lp.layout, &args);
        check_extents(manifest, launch, &args, &buffers, &bytes)?;
        launches.push(PlannedLaunch {
            buffers,
            push_constants,
            grid,
        });
    }
    Ok(Plan { bytes, launches })
}

/// The buffer key of each binding.
fn binding_keys(layout: &LaunchLayout, args: &[ArgValue<'_>]) -> Vec<String> {
    layout
        .buffers
        .iter()
        .map(|&p| match &args[p] {
            ArgValue::Tensor(name) => name.to_string(),
            ArgValue::Workspace(name) => format!("workspace:{name}"),
            _ => STATUS.to_string(),
        })
        .collect()
}

/// That each buffer holds at least the elements the signature says the kernel touches.
fn check_extents(
    manifest: &KernelManifest,
    launch: &attnc_kernel_abi::Launch,
    args: &[ArgValue<'_>],
    keys: &[String],
    bytes: &BTreeMap<String, u64>,
) -> Result<(), DeviceError> {
    let ints: Vec<Option<i64>> = args
        .iter()
        .map(|a| match a {
            ArgValue::Int(v) => Some(*v),
            _ => None,
        })
        .collect();
    let buffer_params = launch
        .signature
        .params
        .iter()
        .filter(|p| matches!(p, Param::Buffer { .. }));
    for (param, key) in buffer_params.zip(keys) {
        let Param::Buffer {
            name,
            element,
            extent,
            ..
        } = param
        else {
            continue;
        };
        if extent.is_empty() {
            continue;
        }
        let held = bytes.get(key).copied().unwrap_or(0) / element.size_bytes() as u64;
        match launch.signature.buffer_len(&ints, extent) {
            Some(needed) if needed <= held => {}
            needed => {
                return Err(DeviceError::Input(format!(
                    "kernel `{}`, launch `{}`: buffer parameter `{name}` must hold {} elements, `{key}` has {held}",
                    manifest.kernel,
                    launch.signature.name,
                    needed.map_or("more than 2^64".to_string(), |n| n.to_string())
                )));
            }
        }
    }
    Ok(())
}

/// The device objects of one call.
pub(crate) struct Resources<'d> {
    dev: &'d VulkanDevice,
    buffers: BTreeMap<String, Buffer<'d>>,
    /// Host-visible copies of device buffers that are not mapped, by key.
    staging: BTreeMap<String, Buffer<'d>>,
    uploads: Vec<String>,
    downloads: Vec<String>,
    descriptor_pool: vk::DescriptorPool,
    sets: Vec<vk::DescriptorSet>,
    command_pool: vk::CommandPool,
    command_buffer: vk::CommandBuffer,
    fence: vk::Fence,
    /// Two timestamps around the call, where the queue has them.
    query_pool: Option<vk::QueryPool>,
}

impl<'d> Resources<'d> {
    pub(crate) fn new(
        dev: &'d VulkanDevice,
        plan: &Plan,
        pipelines: &Pipelines<'_>,
        timestamps: bool,
    ) -> Result<Resources<'d>, DriverError> {
        let d = &dev.device;
        let mut this = Resources {
            dev,
            buffers: BTreeMap::new(),
            staging: BTreeMap::new(),
            uploads: Vec::new(),
            downloads: Vec::new(),
            descriptor_pool: vk::DescriptorPool::null(),
            sets: Vec::new(),
            command_pool: vk::CommandPool::null(),
            command_buffer: vk::CommandBuffer::null(),
            fence: vk::Fence::null(),
            query_pool: None,
        };
        for (key, &bytes) in &plan.bytes {
            let role = if dev.stages_always() {
                Role::DeviceUnmapped
            } else {
                Role::Device
            };
            let buffer = Buffer::new(d, &dev.memory, bytes, role)?;
            this.buffers.insert(key.clone(), buffer);
        }
        let descriptors: u32 = plan.launches.iter().map(|l| l.buffers.len() as u32).sum();
        let sizes = [vk::DescriptorPoolSize::default()
            .ty(vk::DescriptorType::STORAGE_BUFFER)
            .descriptor_count(descriptors.max(1))];
        let pool_info = vk::DescriptorPoolCreateInfo::default()
            .max_sets(plan.launches.len().max(1) as u32)
            .pool_sizes(&sizes);
        // SAFETY: the device is live; the info points at `sizes`, alive here.
        this.descriptor_pool =
            unsafe { d.create_descriptor_pool(&pool_info, None) }.call("vkCreateDescriptorPool")?;
        let layouts: Vec<vk::DescriptorSetLayout> = pipelines
            .launches
            .iter()
            .map(|l| pipelines.built[l.built].set_layout)
            .collect();
        let alloc = vk::DescriptorSetAllocateInfo::default()
            .descriptor_pool(this.descriptor_pool)
            .set_layouts(&layouts);
        // SAFETY: the pool was sized for exactly these sets.
        this.sets =
            unsafe { d.allocate_descriptor_sets(&alloc) }.call("vkAllocateDescriptorSets")?;
        let infos: Vec<Vec<vk::DescriptorBufferInfo>> = plan
            .launches
            .iter()
            .map(|l| {
                l.buffers
                    .iter()
                    .map(|key| {
                        vk::DescriptorBufferInfo::default()
                            .buffer(this.buffers[key].buffer)
                            .offset(0)
                            .range(vk::WHOLE_SIZE)
                    })
                    .collect()
            })
            .collect();
        let writes: Vec<vk::WriteDescriptorSet> = infos
            .iter()
            .zip(&this.sets)
            .flat_map(|(infos, set)| {
                infos.iter().enumerate().map(|(k, info)| {
                    vk::WriteDescriptorSet::default()
                        .dst_set(*set)
                        .dst_binding(k as u32)
                        .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                        .buffer_info(std::slice::from_ref(info))
                })
            })
            .collect();
        // SAFETY: every set, binding and buffer is valid and no set is in use.
        unsafe { d.update_descriptor_sets(&writes, &[]) };

        let pool_info = vk::CommandPoolCreateInfo::default()
            .queue_family_index(dev.queue_family)
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
        // SAFETY: the queue family is the device's compute family.
        this.command_pool =
            unsafe { d.create_command_pool(&pool_info, None) }.call("vkCreateCommandPool")?;
        let cb_info = vk::CommandBufferAllocateInfo::default()
            .command_pool(this.command_pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: the pool is owned by this call only.
        this.command_buffer = unsafe { d.allocate_command_buffers(&cb_info) }
            .call("vkAllocateCommandBuffers")?
            .first()
            .copied()
            .unwrap_or_default();
        // SAFETY: the device is live.
        this.fence = unsafe { d.create_fence(&vk::FenceCreateInfo::default(), None) }
            .call("vkCreateFence")?;
        if timestamps {
            let info = vk::QueryPoolCreateInfo::default()
                .query_type(vk::QueryType::TIMESTAMP)
                .query_count(2);
            // SAFETY: the device is live.
            this.query_pool =
                Some(unsafe { d.create_query_pool(&info, None) }.call("vkCreateQueryPool")?);
        }
        Ok(this)
    }

    /// Sets the bytes buffer `key` starts with (before [`Resources::upload`]).
    pub(crate) fn stage_in(&mut self, key: &str, bytes: &[u8]) -> Result<(), DriverError> {
        let Some(buffer) = self.buffers.get(key) else {
            return Ok(());
        };
        if buffer.write(bytes) {
            return Ok(());
        }
        let staging = self.staging_for(key)?;
        staging.write(bytes);
        self.uploads.push(key.to_string());
        Ok(())
    }

    /// Asks for buffer `key` to be readable after the call.
    pub(crate) fn stage_out(&mut self, key: &str) -> Result<(), DriverError> {
        if self.buffers.get(key).is_some_and(|b| !b.is_mapped()) {
            self.staging_for(key)?;
            self.downloads.push(key.to_string());
        }
        Ok(())
    }

    fn staging_for(&mut self, key: &str) -> Result<&Buffer<'d>, DriverError> {
        if !self.staging.contains_key(key) {
            let size = self.buffers[key].size;
            let staging = Buffer::new(&self.dev.device, &self.dev.memory, size, Role::Staging)?;
            self.staging.insert(key.to_string(), staging);
        }
        Ok(&self.staging[key])
    }

    /// Copies staged inputs to their device buffers (nothing to do where buffers are mapped).
    pub(crate) fn upload(&mut self) -> Result<(), DriverError> {
        if self.uploads.is_empty() {
            return Ok(());
        }
        let d = &self.dev.device;
        let cb = self.command_buffer;
        self.begin()?;
        for key in &self.uploads {
            let (src, dst) = (&self.staging[key], &self.buffers[key]);
            let region = [vk::BufferCopy::default().size(dst.size)];
            // SAFETY: both buffers are live, `size` bytes long, and the command buffer records.
            unsafe { d.cmd_copy_buffer(cb, src.buffer, dst.buffer, &region) };
        }
        // SAFETY: recording began above.
        unsafe { d.end_command_buffer(cb) }.call("vkEndCommandBuffer")?;
        self.execute()?;
        self.uploads.clear();
        Ok(())
    }

    fn begin(&self) -> Result<(), DriverError> {
        // SAFETY: the command buffer is not pending (every submission is waited for); its pool
        // allows resetting it by beginning again.
        unsafe {
            self.dev
                .device
                .begin_command_buffer(self.command_buffer, &vk::CommandBufferBeginInfo::default())
        }
        .call("vkBeginCommandBuffer")
    }

    /// Records one call: zero `zeroed` buffers, every launch in order, results to the host.
    pub(crate) fn record(
        &self,
        plan: &Plan,
        pipelines: &Pipelines<'_>,
        zeroed: &[String],
    ) -> Result<(), DriverError> {
        let d = &self.dev.device;
        let cb = self.command_buffer;
        let barrier = |src_stage, dst_stage, src_access, dst_access| {
            let memory = [vk::MemoryBarrier::default()
                .src_access_mask(src_access)
                .dst_access_mask(dst_access)];
            // SAFETY: the command buffer is recording; a global memory barrier has no handles.
            unsafe {
                d.cmd_pipeline_barrier(
                    cb,
                    src_stage,
                    dst_stage,
                    vk::DependencyFlags::empty(),
                    &memory,
                    &[],
                    &[],
                )
            };
        };
        use vk::AccessFlags as A;
        use vk::PipelineStageFlags as S;
        self.begin()?;
        if let Some(pool) = self.query_pool {
            // SAFETY: the pool has two queries, and nothing else uses them.
            unsafe {
                d.cmd_reset_query_pool(cb, pool, 0, 2);
                d.cmd_write_timestamp(cb, S::TOP_OF_PIPE, pool, 0);
            }
        }
        // Earlier submissions (uploads, the previous timed call) wrote these buffers.
        barrier(
            S::TRANSFER | S::COMPUTE_SHADER,
            S::TRANSFER | S::COMPUTE_SHADER,
            A::TRANSFER_WRITE | A::SHADER_WRITE,
            A::TRANSFER_WRITE | A::SHADER_READ | A::SHADER_WRITE,
        );
        for key in zeroed {
            if let Some(b) = self.buffers.get(key) {
                // SAFETY: the buffer is live, a multiple of 4 bytes, made with TRANSFER_DST.
                unsafe { d.cmd_fill_buffer(cb, b.buffer, 0, vk::WHOLE_SIZE, 0) };
            }
        }
        barrier(
            S::TRANSFER,
            S::COMPUTE_SHADER,
            A::TRANSFER_WRITE,
            A::SHADER_READ | A::SHADER_WRITE,
        );
        for (k, (launch, lp)) in plan.launches.iter().zip(&pipelines.launches).enumerate() {
            if k > 0 {
                barrier(
                    S::COMPUTE_SHADER,
                    S::COMPUTE_SHADER,
                    A::SHADER_WRITE,
                    A::SHADER_READ | A::SHADER_WRITE,
                );
            }
            let built = &pipelines.built[lp.built];
            let [x, y, z] = launch.grid;
            // SAFETY: pipeline, layout and set match (made from the same layout); the push
            // constants are exactly the layout's range; the grid is within the device's limits.
            unsafe {
                d.cmd_bind_pipeline(cb, vk::PipelineBindPoint::COMPUTE, built.pipeline);
                d.cmd_bind_descriptor_sets(
                    cb,
                    vk::PipelineBindPoint::COMPUTE,
                    built.pipeline_layout,
                    0,
                    &self.sets[k..k + 1],
                    &[],
                );
                if !launch.push_constants.is_empty() {
                    d.cmd_push_constants(
                        cb,
                        built.pipeline_layout,
                        vk::ShaderStageFlags::COMPUTE,
                        0,
                        &launch.push_constants,
                    );
                }
                d.cmd_dispatch(cb, x, y, z);
            }
        }
        if let Some(pool) = self.query_pool {
            // SAFETY: query 1 of the pool was reset above.
            unsafe { d.cmd_write_timestamp(cb, S::BOTTOM_OF_PIPE, pool, 1) };
        }
        barrier(
            S::COMPUTE_SHADER,
            S::TRANSFER | S::HOST,
            A::SHADER_WRITE,
            A::TRANSFER_READ | A::HOST_READ,
        );
        for key in &self.downloads {
            let (src, dst) = (&self.buffers[key], &self.staging[key]);
            let region = [vk::BufferCopy::default().size(src.size)];
            // SAFETY: both buffers are live and `size` bytes long.
            unsafe { d.cmd_copy_buffer(cb, src.buffer, dst.buffer, &region) };
        }
        barrier(S::TRANSFER, S::HOST, A::TRANSFER_WRITE, A::HOST_READ);
        // SAFETY: recording began above.
        unsafe { d.end_command_buffer(cb) }.call("vkEndCommandBuffer")
    }

    /// Submits the recorded work and waits for it.
    pub(crate) fn execute(&self) -> Result<(), DriverError> {
        let d = &self.dev.device;
        self.dev.submit(self.command_buffer, self.fence)?;
        // SAFETY: the fence belongs to this call and was just submitted with its work.
        unsafe { d.wait_for_fences(&[self.fence], true, u64::MAX) }.call("vkWaitForFences")?;
        // SAFETY: the fence is signalled and no submission uses it any more.
        unsafe { d.reset_fences(&[self.fence]) }.call("vkResetFences")
    }

    /// The device's time for the last executed call, in seconds; `None` without timestamps.
    /// Only after [`Resources::execute`] of work from [`Resources::record`], which writes them.
    pub(crate) fn device_seconds(&self) -> Result<Option<f64>, DriverError> {
        let (Some(pool), Some(period_ns)) =
            (self.query_pool, self.dev.capabilities().timestamp_period_ns)
        else {
            return Ok(None);
        };
        let mut ticks = [0u64; 2];
        // SAFETY: both queries were written by the recorded call, which was waited for.
        unsafe {
            self.dev.device.get_query_pool_results(
                pool,
                0,
                &mut ticks,
                vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT,
            )
        }
        .call("vkGetQueryPoolResults")?;
        let bits = self.dev.timestamp_valid_bits;
        let mask = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let delta = ticks[1].wrapping_sub(ticks[0]) & mask;
        Ok(Some(delta as f64 * period_ns * 1e-9))
    }

    /// The first `len` bytes of buffer `key` after a call (mapped, or through its staging copy).
    pub(crate) fn read(&self, key: &str, len: usize) -> Option<Vec<u8>> {
        match self.staging.get(key) {
            Some(staging) if self.downloads.iter().any(|k| k == key) => staging.read(len),
            _ => self.buffers.get(key)?.read(len),
        }
    }

    /// The status words of the finished call.
    pub(crate) fn status(&self) -> Vec<i32> {
        self.read(STATUS, STATUS_WORDS * 4)
            .unwrap_or_default()
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

impl Drop for Resources<'_> {
    fn drop(&mut self) {
        let d = &self.dev.device;
        // SAFETY: every submission of this call was waited for (or failed to submit), so none
        // of these objects is in use; destroying null handles is a no-op. Buffers drop after.
        unsafe {
            if let Some(pool) = self.query_pool {
                d.destroy_query_pool(pool, None);
            }
            d.destroy_fence(self.fence, None);
            d.destroy_command_pool(self.command_pool, None);
            d.destroy_descriptor_pool(self.descriptor_pool, None);
        }
    }
}
