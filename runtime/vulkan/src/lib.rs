//! The Vulkan runtime of attnc: runs the SPIR-V compute kernels of a `vulkan` or
//! `vulkan:coopmat` bundle on any Vulkan 1.3 device, through ash, behind the
//! [`attnc_device::Device`] and [`attnc_device::LoadedKernel`] traits every runtime implements.
//!
//! libvulkan is opened at run time, so the binary links no Vulkan library, and a machine without
//! a loader, a driver or a device gets [`attnc_device::DeviceError::Unavailable`] with the reason.
//! [`enumerate`] lists the devices for `--device vulkan:N`; [`VulkanDevice::open`] opens one and
//! reads its [`Capabilities`] (the compiler's Vulkan target preset is built from them). Only
//! what the device reports is enabled: cooperative matrices, 16- and 8-bit storage, float16,
//! int64, the Vulkan memory model, subgroup size control. Like every runtime crate it links no
//! LLVM, MLIR or SPIRV-Tools.
//!
//! # The SPIR-V kernel ABI
//!
//! What a SPIR-V code generator emits for one launch of a manifest, and what this runtime binds:
//!
//! - **Entry point**: a `GLCompute` entry point named `signature.name`. A code section (one
//!   SPIR-V module) may hold several entry points; launches name theirs.
//! - **Buffers**: descriptor set 0. The k-th `Buffer` parameter of the signature (counting only
//!   buffers, in signature order) is binding k, a storage buffer (`StorageBuffer` storage class,
//!   a `Block`-decorated struct holding a runtime array of the parameter's element type), bound
//!   whole from offset 0. Tensors, workspaces and the status buffer are all such buffers; each
//!   is at least 4 bytes and a whole number of 4-byte words long.
//! - **Scalars**: the `Int` and `F32` parameters, in signature order, form one push-constant
//!   block: the s-th scalar parameter is a 32-bit value at byte offset 4·s (`Int` as `i32`,
//!   `F32` as `f32`). The runtime refuses a block larger than `maxPushConstantsSize` at load
//!   time and an `Int` value outside the `i32` range at call time, both with the parameter named.
//! - **Workgroup size**: baked into the shader (`LocalSize`, `LocalSizeId` of constants, or a
//!   `WorkgroupSize` built-in constant) and equal to the manifest's `block`; the runtime reads
//!   it back from the module and refuses a mismatch. No specialisation constants are set.
//! - **Shared memory**: declared statically in the shader as `Workgroup` variables; the
//!   manifest's `shared_bytes` states their total, which must be within
//!   `maxComputeSharedMemorySize` (checked at load; the runtime does not size the shader's
//!   variables itself).
//! - **Grid**: each launch is dispatched with `attnc_device::launch_grid` work groups, within
//!   `maxComputeWorkGroupCount`.
//! - **Status**: the status buffer is [`attnc_kernel_abi::STATUS_WORDS`] `i32` words, zero at the
//!   start of every call; the first failing guard stores its code in word 0 with
//!   `OpAtomicCompareExchange` from 0, then the value in word 1 and the bound in word 2.
//! - **Order**: launches run in manifest order, each seeing every write of the ones before (a
//!   compute-to-compute memory barrier separates them). Workspaces start zeroed; outputs start
//!   as NaN (zeros for non-float outputs).
//! - **Bindings are checked**: for SPIR-V 1.4 and later, whose entry points list every resource
//!   they use, the runtime refuses a shader that uses a binding outside set 0 or beyond the
//!   signature's buffers.

// Every `unsafe` block says why it is sound.
#![warn(clippy::undocumented_unsafe_blocks)]

mod abi;
mod call;
mod capabilities;
mod device;
mod driver_error;
mod kernel;
mod loader;
mod memory;
mod pipelines;
mod spirv_module;

pub use abi::{AbiError, LaunchLayout, SCALAR_BYTES};
pub use capabilities::{
    Capabilities, ComponentType, CooperativeMatrix, CooperativeMatrixShape, MemoryHeap, Scope,
    ShaderStage, SubgroupOperation, SubgroupSizeControl,
};
pub use device::VulkanDevice;
pub use driver_error::DriverError;
pub use kernel::VulkanKernel;
pub use loader::{ApiVersion, DeviceInfo, DeviceKind, enumerate};
pub use pipelines::check_code;
pub use spirv_module::{
    EntryPoint, SpirvError, entry_point as spirv_entry_point, words as spirv_words,
};
