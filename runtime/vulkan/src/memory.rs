//! Buffers in device memory: where a kernel's tensors, workspaces and status words live during a
//! call. A buffer goes in the device's preferred device-local memory; when that memory is also
//! host-visible (integrated GPUs, resizable BAR, lavapipe, where all memory is host memory) it is
//! mapped and written directly, otherwise the call copies through a host-visible staging buffer.
//! Only host-coherent memory is mapped, so no flush or invalidate is ever needed.

use crate::driver_error::{Call, DriverError};
use ash::vk;
use std::ptr::NonNull;

/// What a buffer is for, which decides its memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Bound to kernels as a storage buffer; the source and target of copies and fills.
    Device,
    /// A device buffer that is never mapped, even in host-visible memory, so that it is
    /// written and read through staging copies (as on discrete GPUs).
    DeviceUnmapped,
    /// Host-visible memory a device buffer is copied from or to.
    Staging,
}

/// The memory type for a buffer whose requirements allow `type_bits`, and whether it is mapped.
pub(crate) fn choose_memory(
    props: &vk::PhysicalDeviceMemoryProperties,
    type_bits: u32,
    role: Role,
) -> Option<(u32, bool)> {
    let host = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
    let count = props.memory_type_count.min(vk::MAX_MEMORY_TYPES as u32);
    let types = (0..count)
        .filter(|i| type_bits & (1 << i) != 0)
        .map(|i| (i, props.memory_types[i as usize].property_flags));
    let first = |want: vk::MemoryPropertyFlags| {
        types
            .clone()
            .find(|(_, flags)| flags.contains(want))
            .map(|(i, flags)| (i, flags.contains(host)))
    };
    match role {
        // Drivers list memory types best first, so the first device-local one is the one to use.
        Role::Device | Role::DeviceUnmapped => {
            first(vk::MemoryPropertyFlags::DEVICE_LOCAL).or_else(|| first(host))
        }
        Role::Staging => first(host | vk::MemoryPropertyFlags::HOST_CACHED).or_else(|| first(host)),
    }
}

/// The heap device buffers come from: the heap of the first device-local memory type.
pub(crate) fn device_heap(props: &vk::PhysicalDeviceMemoryProperties) -> Option<u32> {
    choose_memory(props, u32::MAX, Role::Device)
        .map(|(index, _)| props.memory_types[index as usize].heap_index)
}

/// One buffer and its own memory; freed when dropped.
pub(crate) struct Buffer<'d> {
    device: &'d ash::Device,
    pub(crate) buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    /// Bytes, a multiple of 4 (fills work in words).
    pub(crate) size: u64,
    mapped: Option<NonNull<u8>>,
}

impl<'d> Buffer<'d> {
    /// A buffer of at least `bytes` bytes (rounded up to a whole word, and at least one word).
    pub(crate) fn new(
        device: &'d ash::Device,
        props: &vk::PhysicalDeviceMemoryProperties,
        bytes: u64,
        role: Role,
    ) -> Result<Buffer<'d>, DriverError> {
        let size = bytes.max(4).div_ceil(4) * 4;
        let usage = match role {
            Role::Device | Role::DeviceUnmapped => {
                vk::BufferUsageFlags::STORAGE_BUFFER
                    | vk::BufferUsageFlags::TRANSFER_SRC
                    | vk::BufferUsageFlags::TRANSFER_DST
            }
            Role::Staging => {
                vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST
            }
        };
        let info = vk::BufferCreateInfo::default()
            .size(size)
            .usage(usage)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        // SAFETY: `device` is a live logical device and `info` is a valid create info.
        let buffer = unsafe { device.create_buffer(&info, None) }.call("vkCreateBuffer")?;
        let mut this = Buffer {
            device,
            buffer,
            memory: vk::DeviceMemory::null(),
            size,
            mapped: None,
        };
        // SAFETY: `buffer` was just created from `device`.
        let needs = unsafe { device.get_buffer_memory_requirements(buffer) };
        let (memory_type, mapped) =
            choose_memory(props, needs.memory_type_bits, role).ok_or(DriverError {
                call: "choosing a memory type for a buffer",
                result: vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
            })?;
        let alloc = vk::MemoryAllocateInfo::default()
            .allocation_size(needs.size)
            .memory_type_index(memory_type);
        // SAFETY: the memory type index is one the buffer's requirements allow; on failure
        // `this` drops and destroys the buffer (freeing a null memory handle is a no-op).
        this.memory = unsafe { device.allocate_memory(&alloc, None) }.call("vkAllocateMemory")?;
        // SAFETY: buffer and memory are both from `device`, unbound, and the memory is large
        // enough for the requirements at offset 0.
        unsafe { device.bind_buffer_memory(buffer, this.memory, 0) }.call("vkBindBufferMemory")?;
        if mapped && role != Role::DeviceUnmapped {
            // SAFETY: the memory is host-visible and not mapped yet; it stays mapped until freed.
            let ptr = unsafe {
                device.map_memory(this.memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())
            }
            .call("vkMapMemory")?;
            this.mapped = NonNull::new(ptr.cast::<u8>());
        }
        Ok(this)
    }

    pub(crate) fn is_mapped(&self) -> bool {
        self.mapped.is_some()
    }

    /// Writes `bytes` at offset 0 of a mapped buffer; returns false if it is not mapped.
    pub(crate) fn write(&self, bytes: &[u8]) -> bool {
        let Some(ptr) = self.mapped else {
            return false;
        };
        let n = bytes.len().min(self.size as usize);
        // SAFETY: the mapping covers `size` bytes and is host-coherent; no device work touches
        // the buffer while the host writes it (calls write before submitting, after waiting).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), n) };
        true
    }

    /// The first `len` bytes of a mapped buffer; `None` if it is not mapped.
    pub(crate) fn read(&self, len: usize) -> Option<Vec<u8>> {
        let ptr = self.mapped?;
        let n = len.min(self.size as usize);
        let mut out = vec![0u8; n];
        // SAFETY: as in `write`; the device finished writing (fence waited, host barrier
        // recorded) before the host reads.
        unsafe { std::ptr::copy_nonoverlapping(ptr.as_ptr(), out.as_mut_ptr(), n) };
        Some(out)
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        // SAFETY: no submitted work uses the buffer any more: every call waits for its fence
        // before its buffers drop. Freeing memory unmaps it.
        unsafe {
            self.device.destroy_buffer(self.buffer, None);
            self.device.free_memory(self.memory, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(types: &[vk::MemoryPropertyFlags]) -> vk::PhysicalDeviceMemoryProperties {
        let mut p = vk::PhysicalDeviceMemoryProperties {
            memory_type_count: types.len() as u32,
            memory_heap_count: 1,
            ..Default::default()
        };
        for (i, flags) in types.iter().enumerate() {
            p.memory_types[i].property_flags = *flags;
        }
        p
    }

    #[test]
    fn memory_types_follow_the_device() {
        use vk::MemoryPropertyFlags as F;
        let host = F::HOST_VISIBLE | F::HOST_COHERENT;
        // A discrete GPU: host memory first, then device memory, then a BAR window.
        let discrete = props(&[
            host,
            F::DEVICE_LOCAL,
            F::DEVICE_LOCAL | host,
            host | F::HOST_CACHED,
        ]);
        assert_eq!(choose_memory(&discrete, !0, Role::Device), Some((1, false)));
        assert_eq!(choose_memory(&discrete, !0, Role::Staging), Some((3, true)));
        assert_eq!(choose_memory(&discrete, 0b1, Role::Device), Some((0, true)));
        // Unified memory (lavapipe, integrated GPUs): device-local and mapped.
        let unified = props(&[F::DEVICE_LOCAL | host | F::HOST_CACHED]);
        assert_eq!(choose_memory(&unified, !0, Role::Device), Some((0, true)));
        assert_eq!(choose_memory(&unified, 0, Role::Device), None);
    }
}
