//! The CUDA runtime of attnc: runs a bundle's PTX on an NVIDIA GPU through the CUDA driver API
//! (cudarc), behind the [`attnc_device::Device`] and [`attnc_device::LoadedKernel`] traits.
//!
//! libcuda is opened at run time, never linked: this crate builds, and its tests pass, on a
//! machine with no CUDA at all, where [`CudaDevice::open`] returns
//! [`attnc_device::DeviceError::Unavailable`] ("no CUDA driver on this machine") instead of
//! the panic cudarc gives on its first call without the library. It links no compiler (no
//! LLVM, no MLIR): it ships in `attnc-run`, the small binary that runs bundles where no
//! compiler is installed.
//!
//! - Loading checks each launch before the driver sees it: the PTX entry's parameters against
//!   the signature ([`ptx_entry`]), the block and shared memory against the device, buffer
//!   element types against the manifest; one module per code section; dynamic shared memory
//!   above 48 KiB opted in per function. A failed JIT reports the driver's own log.
//! - A call ([`launch_plan`]) is formed and checked before anything is allocated: grids against
//!   the device's limits, buffer lengths against the signature's extents, the total against
//!   free device memory.
//! - Outputs start as NaN, status and workspaces as zeros; a failed in-kernel check comes back
//!   as the guard's message ([`attnc_kernel_abi::KernelManifest::check_status`]).
//!
//! ```no_run
//! use attnc_cuda::CudaDevice;
//! use attnc_device::{Device, DeviceError};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (bundle, dims, inputs): (attnc_bundle::Bundle, attnc_kernel_abi::DimValues, attnc_device::Tensors) = todo!();
//! match CudaDevice::open(0) {
//!     Err(DeviceError::Unavailable(why)) => println!("skipped: {why}"),
//!     Err(e) => return Err(e.into()),
//!     Ok(gpu) => {
//!         let kernel = gpu.load(&bundle)?;
//!         let outputs = kernel.run(&dims, &inputs)?;
//!         let timing = kernel.time(&dims, &inputs, 10, 100)?;
//!         println!("{} ms on {}", timing.median_s * 1e3, gpu.name());
//!     }
//! }
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

mod device;
mod driver;
mod kernel;
pub mod launch_plan;
pub mod ptx_entry;
mod timing;

pub use device::{CudaDevice, NO_DRIVER, check_code, driver_present, parse_selector};
pub use kernel::CudaKernel;
pub use launch_plan::DeviceLimits;
pub use timing::summarize;
