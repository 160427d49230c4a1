//! The FFI edge of the CUDA runtime: every `unsafe` of this crate is in this file, each block
//! with its reason, behind a safe function. Everything else goes through cudarc's safe API.
//!
//! Four things need it: probing for libcuda (cudarc panics on its first call when the library
//! is missing), launching a kernel (the driver cannot check arguments), loading PTX with a
//! JIT log buffer (cudarc's loader passes none, so a failed load says only "invalid PTX"), and
//! encoding TMA tensor maps (cudarc has no safe wrapper for it).
#![allow(unsafe_code)]

use attnc_kernel_abi::{ElementType, TensorMapEncoding};
use cudarc::driver::sys;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};
use std::ffi::{CStr, c_void};

/// Whether the CUDA driver library can be opened. Must be asked before any other driver call.
pub(crate) fn driver_present() -> bool {
    // SAFETY: this only tries to open libcuda under its usual names (and closes it again); it
    // calls no CUDA function, and running a driver library's initialisers is what using CUDA
    // means anyway.
    unsafe { sys::is_culib_present() }
}

/// `CUDA_ERROR_INVALID_PTX: a PTX JIT compilation failed`, for messages.
pub(crate) fn driver_text(e: &DriverError) -> String {
    let name = e
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(text) => format!("{name}: {}", text.to_string_lossy()),
        Err(_) => name,
    }
}

/// One argument of a launch in the calling convention of the signatures: a buffer's device
/// address, an i64, or an f32.
pub(crate) enum KernelArg<'a> {
    Buffer(&'a CudaSlice<u8>),
    I64(i64),
    F32(f32),
}

/// Queues one launch of `function` on `stream`.
///
/// The caller has checked `args` against the PTX entry (count, size and kind of each
/// parameter, [`crate::ptx_entry::check_entry`]) and each buffer against the extent its
/// parameter declares ([`crate::launch_plan::form_args`]).
pub(crate) fn launch(
    stream: &CudaStream,
    function: &CudaFunction,
    config: LaunchConfig,
    args: &[KernelArg<'_>],
) -> Result<(), DriverError> {
    let mut builder = stream.launch_builder(function);
    for arg in args {
        match arg {
            KernelArg::Buffer(buffer) => builder.arg(*buffer),
            KernelArg::I64(value) => builder.arg(value),
            KernelArg::F32(value) => builder.arg(value),
        };
    }
    // SAFETY: the arguments match the entry's parameters in number, size and kind (checked
    // against the PTX text at load), each buffer is at least as long as the signature says the
    // kernel touches (checked per call), and `args` outlives the call, which copies them. That
    // the kernel stays within those extents is the code generator's contract
    // (`Param::Buffer`); the buffers stay alive until the caller has synchronised the stream.
    unsafe { builder.launch(config) }.map(|_| ())
}

/// The driver's JIT error log for `ptx`, which has just failed to load: the load is repeated
/// once with a log buffer. `None` when the driver writes no log.
pub(crate) fn jit_error_log(ctx: &CudaContext, ptx: &CStr) -> Option<String> {
    const LOG_BYTES: usize = 16 * 1024;
    ctx.bind_to_thread().ok()?;
    let mut log = vec![0u8; LOG_BYTES];
    let mut options = [
        sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER,
        sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
    ];
    // The size option's value is the byte count itself, passed in the pointer slot.
    let mut values: [*mut c_void; 2] = [
        log.as_mut_ptr().cast(),
        std::ptr::without_provenance_mut(LOG_BYTES),
    ];
    let mut module: sys::CUmodule = std::ptr::null_mut();
    // SAFETY: `ptx` is NUL-terminated; `options` and `values` are arrays of the 2 options
    // passed, alive across the call; the log buffer holds LOG_BYTES bytes as the size option
    // says; the context was made current above.
    let status = unsafe {
        sys::cuModuleLoadDataEx(
            &mut module,
            ptx.as_ptr().cast(),
            options.len() as u32,
            options.as_mut_ptr(),
            values.as_mut_ptr(),
        )
    };
    if status == sys::CUresult::CUDA_SUCCESS {
        // SAFETY: the module was loaded just above and nothing else holds it.
        let _ = unsafe { sys::cuModuleUnload(module) };
        return None;
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Encodes one TMA tensor map over the device buffer at `address` (no swizzle, no interleave,
/// zeros outside the tensor), as the 128 bytes a kernel reads.
pub(crate) fn encode_tensor_map(
    element: ElementType,
    address: sys::CUdeviceptr,
    map: &TensorMapEncoding,
) -> Result<[u8; 128], String> {
    use sys::CUtensorMapDataType as T;
    let data_type = match element {
        ElementType::F16 => T::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
        ElementType::Bf16 => T::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
        ElementType::F32 => T::CU_TENSOR_MAP_DATA_TYPE_FLOAT32,
        ElementType::I32 => T::CU_TENSOR_MAP_DATA_TYPE_INT32,
        other => return Err(format!("no tensor map reads {other} elements")),
    };
    let rank = map.dims.len();
    if rank == 0 || rank > 5 || map.strides.len() + 1 != rank || map.boxed.len() != rank {
        return Err(format!(
            "a tensor map of rank {rank} with mismatched arrays"
        ));
    }
    if !address.is_multiple_of(16) {
        return Err("a tensor map's buffer is not 16-byte aligned".into());
    }
    let element_strides = [1u32; 5];
    let mut out = sys::CUtensorMap { opaque: [0; 16] };
    // SAFETY: `out` is a CUtensorMap (64-byte aligned by its type) that the call writes; the
    // dims, strides, box and element strides point at arrays of `rank`, `rank - 1`, `rank` and
    // at least `rank` elements, alive across the call (checked above); `address` is only
    // recorded in the map, not dereferenced.
    let status = unsafe {
        sys::cuTensorMapEncodeTiled(
            &mut out,
            data_type,
            rank as u32,
            address as *mut c_void,
            map.dims.as_ptr(),
            map.strides.as_ptr(),
            map.boxed.as_ptr(),
            element_strides.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_NONE,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if status != sys::CUresult::CUDA_SUCCESS {
        return Err(format!(
            "the driver refused the tensor map (dims {:?}, strides {:?}, box {:?}): {}",
            map.dims,
            map.strides,
            map.boxed,
            driver_text(&DriverError(status))
        ));
    }
    let mut bytes = [0u8; 128];
    for (k, w) in out.opaque.iter().enumerate() {
        bytes[k * 8..k * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    Ok(bytes)
}
