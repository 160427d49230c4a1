//! Opening a CUDA device: probe for the driver library first (a missing driver is a normal
//! outcome, not a panic), then the context, the device's name, compute capability and limits.
//! Loading a bundle checks each launch against the PTX and the device before the driver runs it.

use crate::driver::{self, driver_text};
use crate::kernel::CudaKernel;
use crate::launch_plan::{DEFAULT_SHARED_LIMIT, DeviceLimits, check_launch};
use crate::ptx_entry::{check_entry, ptx_text};
use attnc_bundle::Bundle;
use attnc_device::{Device, DeviceError, LoadedKernel};
use attnc_kernel_abi::{Launch, TargetId};
use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::Arc;

/// What `Unavailable` says when libcuda cannot be opened.
pub const NO_DRIVER: &str =
    "no CUDA driver on this machine: libcuda.so (the NVIDIA driver's library) cannot be opened";

/// Whether the CUDA driver library is on this machine. Tests ask it to skip with a reason.
pub fn driver_present() -> bool {
    driver::driver_present()
}

/// The ordinal a device name selects: `cuda` is `cuda:0`; `None` for anything else.
pub fn parse_selector(name: &str) -> Option<usize> {
    if name == "cuda" {
        return Some(0);
    }
    let digits = name.strip_prefix("cuda:")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Checks a bundle's code as far as that needs no device: every launch's section is there,
/// is PTX text, and declares the launch's entry with the signature's parameters. Loading checks
/// it again; a runner calls it to refuse a bad bundle before opening a device.
pub fn check_code(bundle: &Bundle) -> Result<(), DeviceError> {
    for launch in &bundle.manifest.launches {
        ptx_of(bundle, launch)?;
    }
    Ok(())
}

/// The PTX of `launch`, checked to declare its entry as the signature says.
fn ptx_of<'b>(bundle: &'b Bundle, launch: &Launch) -> Result<&'b str, DeviceError> {
    let fail = |detail: String| DeviceError::Load {
        kernel: launch.signature.name.clone(),
        detail,
    };
    let code = bundle
        .section(&launch.code)
        .ok_or_else(|| fail(format!("the bundle has no code section `{}`", launch.code)))?;
    let ptx = ptx_text(code).map_err(|e| fail(format!("section `{}`: {e}", launch.code)))?;
    check_entry(ptx, &launch.signature).map_err(|e| {
        fail(format!(
            "the PTX in `{}` does not match the manifest: {e}",
            launch.code
        ))
    })?;
    Ok(ptx)
}

/// One CUDA device with its primary context, and the stream every call runs on.
pub struct CudaDevice {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    ordinal: usize,
    model: String,
    capability: (u32, u32),
    pub(crate) limits: DeviceLimits,
}

impl CudaDevice {
    /// Opens device `cuda:ordinal`; no driver, no GPU or no such device is `Unavailable`.
    pub fn open(ordinal: usize) -> Result<CudaDevice, DeviceError> {
        if !driver_present() {
            return Err(DeviceError::Unavailable(NO_DRIVER.into()));
        }
        let count = CudaContext::device_count().map_err(|e| {
            DeviceError::Unavailable(format!(
                "the CUDA driver is installed but cannot be used: {}",
                driver_text(&e)
            ))
        })?;
        let count = usize::try_from(count).unwrap_or(0);
        if count == 0 {
            return Err(DeviceError::Unavailable(
                "the CUDA driver finds no GPU on this machine".into(),
            ));
        }
        if ordinal >= count {
            return Err(DeviceError::Unavailable(format!(
                "there is no device cuda:{ordinal}: this machine has {count} CUDA device{} (cuda:0 to cuda:{})",
                if count == 1 { "" } else { "s" },
                count - 1
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| {
            DeviceError::Unavailable(format!("cannot open cuda:{ordinal}: {}", driver_text(&e)))
        })?;
        let query = |what: &str, e| {
            DeviceError::Device(format!(
                "cuda:{ordinal}: cannot read {what}: {}",
                driver_text(&e)
            ))
        };
        let model = ctx.name().map_err(|e| query("the device name", e))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| query("the compute capability", e))?;
        let attribute = |a: CUdevice_attribute| -> Result<u32, DeviceError> {
            let v = ctx.attribute(a).map_err(|e| query(&format!("{a:?}"), e))?;
            u32::try_from(v)
                .map_err(|_| DeviceError::Device(format!("cuda:{ordinal}: {a:?} is {v}")))
        };
        use CUdevice_attribute::*;
        let limits = DeviceLimits {
            max_grid: [
                u64::from(attribute(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X)?),
                u64::from(attribute(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y)?),
                u64::from(attribute(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z)?),
            ],
            max_block: [
                attribute(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X)?,
                attribute(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y)?,
                attribute(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z)?,
            ],
            max_threads_per_block: attribute(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
            max_shared_optin: attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?,
        };
        let capability = (
            u32::try_from(major).unwrap_or(0),
            u32::try_from(minor).unwrap_or(0),
        );
        let stream = ctx.default_stream();
        Ok(CudaDevice {
            ctx,
            stream,
            ordinal,
            model,
            capability,
            limits,
        })
    }

    /// Opens the device a name selects: `cuda` or `cuda:N`.
    pub fn open_named(name: &str) -> Result<CudaDevice, DeviceError> {
        let ordinal = parse_selector(name).ok_or_else(|| {
            DeviceError::Input(format!(
                "`{name}` is not a CUDA device; expected cuda or cuda:N"
            ))
        })?;
        CudaDevice::open(ordinal)
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The product name the driver reports (`NVIDIA H200`).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Compute capability (major, minor): (9, 0) on Hopper.
    pub fn capability(&self) -> (u32, u32) {
        self.capability
    }

    pub fn limits(&self) -> &DeviceLimits {
        &self.limits
    }

    /// Loads every launch of `bundle`: the typed form of [`Device::load`].
    pub fn load_kernel(&self, bundle: &Bundle) -> Result<CudaKernel<'_>, DeviceError> {
        let manifest = &bundle.manifest;
        if !self.accepts(&manifest.target) {
            return Err(DeviceError::WrongTarget {
                target: manifest.target,
                device: self.name(),
            });
        }
        let clash = manifest
            .inputs
            .iter()
            .chain(&manifest.outputs)
            .find(|t| t.name == "status" || t.name.starts_with("workspace:"));
        if let Some(t) = clash {
            return Err(DeviceError::Load {
                kernel: manifest.kernel.clone(),
                detail: format!(
                    "tensor `{}` has the name of a runtime buffer (status, workspace:NAME)",
                    t.name
                ),
            });
        }
        let mut modules: BTreeMap<&str, Arc<CudaModule>> = BTreeMap::new();
        let mut functions = Vec::with_capacity(manifest.launches.len());
        for launch in &manifest.launches {
            let fail = |detail: String| DeviceError::Load {
                kernel: launch.signature.name.clone(),
                detail,
            };
            let ptx = ptx_of(bundle, launch)?;
            check_launch(manifest, launch, &self.limits).map_err(fail)?;
            let module = match modules.get(launch.code.as_str()) {
                Some(m) => m.clone(),
                None => {
                    let m = self.load_module(&launch.code, ptx).map_err(fail)?;
                    modules.insert(&launch.code, m.clone());
                    m
                }
            };
            // `ptx_of` found this name as an entry of NUL-free text, so cudarc's C string of it
            // forms.
            let function = module
                .load_function(&launch.signature.name)
                .map_err(|e| fail(driver_text(&e)))?;
            self.configure(&function, launch).map_err(fail)?;
            functions.push(function);
        }
        Ok(CudaKernel::new(self, manifest.clone(), functions))
    }

    /// Loads PTX as a module, with the JIT's own log when it fails.
    fn load_module(&self, section: &str, ptx: &str) -> Result<Arc<CudaModule>, String> {
        self.ctx.load_module(Ptx::from_src(ptx)).map_err(|e| {
            let mut detail = format!(
                "the driver cannot load section `{section}`: {}",
                driver_text(&e)
            );
            // `ptx_text` has ruled out NULs, so this CString always forms.
            if let Ok(c) = CString::new(ptx)
                && let Some(log) = driver::jit_error_log(&self.ctx, &c)
            {
                detail.push_str("\nJIT log:\n");
                detail.push_str(&log);
            }
            detail
        })
    }

    /// Opts the function in to its dynamic shared memory, and checks the block against what
    /// its register use allows (fewer threads than the device's maximum, for a heavy kernel).
    fn configure(&self, function: &CudaFunction, launch: &Launch) -> Result<(), String> {
        use CUfunction_attribute::*;
        let attribute = |a: CUfunction_attribute| {
            function
                .get_attribute(a)
                .map_err(|e| format!("cannot read {a:?}: {}", driver_text(&e)))
        };
        let shared = launch.shared_bytes;
        // The limit counts static and dynamic shared memory together: a kernel asking for
        // exactly 48 KiB dynamic with one static byte needs the opt-in too (measured on the
        // H200: CUDA_ERROR_INVALID_VALUE at launch without it).
        let fixed = u32::try_from(attribute(CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)?).unwrap_or(0);
        if u64::from(fixed) + u64::from(shared) > u64::from(DEFAULT_SHARED_LIMIT) {
            if u64::from(fixed) + u64::from(shared) > u64::from(self.limits.max_shared_optin) {
                return Err(format!(
                    "it declares {fixed} bytes of static shared memory and asks for {shared} dynamic; the device allows {} in all",
                    self.limits.max_shared_optin
                ));
            }
            let value =
                i32::try_from(shared).map_err(|_| format!("{shared} bytes of shared memory"))?;
            function
                .set_attribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, value)
                .map_err(|e| {
                    format!(
                        "cannot allow {shared} bytes of dynamic shared memory: {}",
                        driver_text(&e)
                    )
                })?;
        }
        let [x, y, z] = launch.block;
        let threads = i64::from(x) * i64::from(y) * i64::from(z);
        let allowed = attribute(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?;
        if threads > i64::from(allowed) {
            let registers = attribute(CU_FUNC_ATTRIBUTE_NUM_REGS)?;
            return Err(format!(
                "its block {:?} has {threads} threads, but the compiled code ({registers} registers per thread) allows at most {allowed}",
                launch.block
            ));
        }
        Ok(())
    }
}

impl Device for CudaDevice {
    /// `NVIDIA H200 (cuda:0, sm_90)`.
    fn name(&self) -> String {
        let (major, minor) = self.capability;
        format!("{} (cuda:{}, sm_{major}{minor})", self.model, self.ordinal)
    }

    fn accepts(&self, target: &TargetId) -> bool {
        target.runs_on_cuda(self.capability.0, self.capability.1)
    }

    fn load<'d>(&'d self, bundle: &Bundle) -> Result<Box<dyn LoadedKernel + 'd>, DeviceError> {
        Ok(Box::new(self.load_kernel(bundle)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        assert_eq!(parse_selector("cuda"), Some(0));
        assert_eq!(parse_selector("cuda:0"), Some(0));
        assert_eq!(parse_selector("cuda:7"), Some(7));
        for bad in [
            "cuda:", "cuda:+1", "cuda:-1", "cuda:x", "vulkan", "cuda1", "CUDA",
        ] {
            assert_eq!(parse_selector(bad), None, "{bad}");
        }
    }

    /// Without libcuda, opening is `Unavailable` with the message users see, and never a
    /// panic; with it, opening either works or says why not.
    #[test]
    fn opening_without_a_driver_is_unavailable() {
        match CudaDevice::open(0) {
            Err(DeviceError::Unavailable(message)) if !driver_present() => {
                assert_eq!(message, NO_DRIVER);
            }
            Err(DeviceError::Unavailable(message)) => {
                println!("the driver is present but no device opens: {message}");
            }
            Err(other) => panic!("opening gave {other:?}"),
            Ok(device) => {
                assert!(driver_present());
                println!("opened {}", device.name());
            }
        }
        let err = CudaDevice::open_named("vulkan").err();
        assert!(
            matches!(&err, Some(DeviceError::Input(m)) if m.contains("expected cuda or cuda:N")),
            "{err:?}"
        );
    }

    fn bundle(ptx: &[u8]) -> Bundle {
        use attnc_kernel_abi::*;
        let e = |s: &str| Expr::parse(s).unwrap();
        let f32_tensor = |name: &str| TensorDecl {
            name: name.into(),
            element: ElementType::F32,
            shape: vec![e("N")],
            range: None,
        };
        let buffer = |name: &str| Param::Buffer {
            name: name.into(),
            element: ElementType::F32,
            access: Access::ReadWrite,
            extent: vec![],
        };
        let manifest = KernelManifest {
            abi_version: ABI_VERSION,
            kernel: "k".into(),
            source: "k.attn".into(),
            target: "cuda:sm_90a".parse().unwrap(),
            dims: vec![DimDecl {
                name: "N".into(),
                specialised: None,
                default: None,
            }],
            requirements: vec![],
            inputs: vec![f32_tensor("x")],
            outputs: vec![f32_tensor("y")],
            workspaces: vec![],
            launches: vec![Launch {
                code: "k.ptx".into(),
                signature: KernelSignature {
                    name: "attnc_k".into(),
                    params: vec![buffer("x"), buffer("y"), Param::Int { name: "n".into() }],
                },
                args: vec![
                    Arg::Tensor { name: "x".into() },
                    Arg::Tensor { name: "y".into() },
                    Arg::Int { value: e("N") },
                ],
                grid: [e("N"), e("1"), e("1")],
                block: [32, 1, 1],
                shared_bytes: 0,
            }],
            guards: vec![],
            tiling: String::new(),
        };
        Bundle {
            manifest,
            sections: vec![("k.ptx".into(), ptx.to_vec())],
        }
    }

    #[test]
    fn code_is_checked_without_a_device() {
        let good = b".version 8.0\n.target sm_90a\n.address_size 64\n.visible .entry attnc_k(.param .u64 x, .param .u64 y, .param .u64 n)\n{\n\tret;\n}\n";
        check_code(&bundle(good)).unwrap();
        let message = |ptx: &[u8]| check_code(&bundle(ptx)).unwrap_err().to_string();
        assert_eq!(
            message(b".visible .entry attnc_k(.param .u64 x, .param .f32 s, .param .u64 n) {}"),
            "cannot load kernel `attnc_k`: the PTX in `k.ptx` does not match the manifest: parameter 1 (`y`, a ReadWrite buffer of f32) is declared in the PTX as `s`, 4 bytes, float"
        );
        assert_eq!(
            message(b".visible .entry attnc_j() {}"),
            "cannot load kernel `attnc_k`: the PTX in `k.ptx` does not match the manifest: the PTX has no entry `attnc_k`; its entries are attnc_j"
        );
        assert_eq!(
            message(b".entry attnc_k\0()"),
            "cannot load kernel `attnc_k`: section `k.ptx`: the PTX holds a NUL byte at offset 14"
        );
        let mut b = bundle(good);
        b.sections.clear();
        assert_eq!(
            check_code(&b).unwrap_err().to_string(),
            "cannot load kernel `attnc_k`: the bundle has no code section `k.ptx`"
        );
    }

    #[test]
    fn a_device_that_does_not_exist_is_unavailable() {
        match CudaDevice::open(4096) {
            Err(DeviceError::Unavailable(message)) => {
                assert!(
                    message == NO_DRIVER || message.contains("no device cuda:4096"),
                    "{message}"
                );
            }
            Err(other) => panic!("opening gave {other:?}"),
            Ok(_) => panic!("cuda:4096 opened"),
        }
    }
}
