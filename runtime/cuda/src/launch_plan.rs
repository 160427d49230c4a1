//! Forming a call's launches from the manifest, with no driver: buffer sizes, grids, blocks and
//! argument lists, each checked against the device's limits and the signature, so that every
//! mistake is a message before anything is allocated, and the forming is tested without a GPU.
//!
//! Buffers are named by the keys of [`attnc_device::buffer_bytes`]: a tensor's name,
//! `workspace:NAME`, and `status`.

use attnc_device::{ArgValue, DeviceError, buffer_bytes, launch_args, launch_grid};
use attnc_kernel_abi::{DimValues, ElementType, KernelManifest, Launch, Param};
use std::collections::BTreeMap;

/// Bytes of shared memory (static and dynamic together) above which a function must opt in.
pub const DEFAULT_SHARED_LIMIT: u32 = 48 * 1024;

/// What one device allows a launch, read from its attributes once when it is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    pub max_grid: [u64; 3],
    pub max_block: [u32; 3],
    pub max_threads_per_block: u32,
    /// Shared memory one block may have once it opts in (static and dynamic together).
    pub max_shared_optin: u32,
}

impl DeviceLimits {
    /// The limits of an H100 or H200 (sm_90), for tests; a device's own are read from it.
    pub const HOPPER: DeviceLimits = DeviceLimits {
        max_grid: [(1 << 31) - 1, 65535, 65535],
        max_block: [1024, 1024, 64],
        max_threads_per_block: 1024,
        max_shared_optin: 227 * 1024,
    };
}

/// One argument of a launch, as this runtime passes it: a buffer by key, or a scalar.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgSlot {
    Buffer(String),
    I64(i64),
    F32(f32),
}

/// One launch of a call, ready for the driver.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchPlan {
    /// Index into the manifest's launches.
    pub launch: usize,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
    pub args: Vec<ArgSlot>,
}

/// Every buffer and launch of one call.
#[derive(Clone, Debug, PartialEq)]
pub struct CallPlan {
    /// Bytes by buffer key.
    pub buffers: BTreeMap<String, u64>,
    pub launches: Vec<LaunchPlan>,
}

impl CallPlan {
    /// Device memory the call allocates.
    pub fn total_bytes(&self) -> u64 {
        self.buffers
            .values()
            .fold(0u64, |sum, b| sum.saturating_add(*b))
    }

    /// Refuses the call before anything is allocated when its buffers exceed `free` bytes.
    pub fn check_fits(&self, free: u64) -> Result<(), DeviceError> {
        let needed = self.total_bytes();
        if needed > free {
            return Err(DeviceError::Memory {
                needed,
                available: free,
            });
        }
        Ok(())
    }
}

/// What can be checked of a launch once, at load: block size and shared memory against the
/// device, and each buffer parameter's element type against the tensor it is given.
pub fn check_launch(
    manifest: &KernelManifest,
    launch: &Launch,
    limits: &DeviceLimits,
) -> Result<(), String> {
    let [x, y, z] = launch.block;
    for (axis, (n, max)) in launch.block.iter().zip(limits.max_block).enumerate() {
        if *n > max {
            return Err(format!(
                "its block {:?} has {n} threads along axis {axis}, the device allows {max}",
                launch.block
            ));
        }
    }
    let threads = u64::from(x) * u64::from(y) * u64::from(z);
    if threads > u64::from(limits.max_threads_per_block) {
        return Err(format!(
            "its block {:?} has {threads} threads, the device allows {} per block",
            launch.block, limits.max_threads_per_block
        ));
    }
    if launch.shared_bytes > limits.max_shared_optin {
        return Err(format!(
            "it asks for {} bytes of shared memory per block, the device allows {}",
            launch.shared_bytes, limits.max_shared_optin
        ));
    }
    for (param, arg) in launch.signature.params.iter().zip(&launch.args) {
        let Param::Buffer { name, element, .. } = param else {
            continue;
        };
        let given = match arg {
            attnc_kernel_abi::Arg::Tensor { name } => manifest
                .input(name)
                .or_else(|| manifest.output(name))
                .map(|t| t.element),
            attnc_kernel_abi::Arg::Workspace { name } => manifest
                .workspaces
                .iter()
                .find(|w| &w.name == name)
                .map(|w| w.element),
            attnc_kernel_abi::Arg::Status => Some(ElementType::I32),
            attnc_kernel_abi::Arg::TensorMaps { .. } => Some(ElementType::I64),
            _ => None,
        };
        if given != Some(*element) {
            return Err(format!(
                "parameter `{name}` takes {element}, but the manifest gives it {}",
                given.map_or("no buffer".to_string(), |e| format!("a buffer of {e}"))
            ));
        }
    }
    Ok(())
}

/// The buffers and launches of one call under `dims`.
pub fn plan_call(
    manifest: &KernelManifest,
    dims: &DimValues,
    limits: &DeviceLimits,
) -> Result<CallPlan, DeviceError> {
    let buffers = buffer_bytes(manifest, dims)?;
    let launches = manifest
        .launches
        .iter()
        .enumerate()
        .map(|(k, launch)| {
            Ok(LaunchPlan {
                launch: k,
                grid: launch_grid(launch, dims, limits.max_grid)?,
                block: launch.block,
                shared_bytes: launch.shared_bytes,
                args: form_args(launch, dims, &buffers)?,
            })
        })
        .collect::<Result<_, DeviceError>>()?;
    Ok(CallPlan { buffers, launches })
}

/// The arguments of `launch` in parameter order, each buffer checked to hold at least the
/// elements the signature's extent says the kernel touches.
pub fn form_args(
    launch: &Launch,
    dims: &DimValues,
    buffers: &BTreeMap<String, u64>,
) -> Result<Vec<ArgSlot>, DeviceError> {
    let kernel = &launch.signature.name;
    let values = launch_args(launch, dims)?;
    let ints: Vec<Option<i64>> = values
        .iter()
        .map(|v| match v {
            ArgValue::Int(n) => Some(*n),
            _ => None,
        })
        .collect();
    let drift = |detail: String| {
        DeviceError::Input(format!(
            "kernel `{kernel}`: {detail}; the manifest and the code disagree (a compiler bug)"
        ))
    };
    let mut out = Vec::with_capacity(values.len());
    for (param, value) in launch.signature.params.iter().zip(values) {
        let slot = match (param, value) {
            (Param::Buffer { .. }, ArgValue::Tensor(name)) => ArgSlot::Buffer(name.to_string()),
            (Param::Buffer { .. }, ArgValue::Workspace(name)) => {
                ArgSlot::Buffer(format!("workspace:{name}"))
            }
            (Param::Buffer { .. }, ArgValue::Status) => ArgSlot::Buffer("status".into()),
            (Param::Buffer { .. }, ArgValue::TensorMaps(kernel, _)) => {
                ArgSlot::Buffer(attnc_device::tensor_maps_key(kernel))
            }
            (Param::Int { .. }, ArgValue::Int(n)) => ArgSlot::I64(n),
            (Param::F32 { .. }, ArgValue::F32(x)) => ArgSlot::F32(x),
            (p, v) => {
                return Err(drift(format!(
                    "parameter `{}` ({}) cannot take {v:?}",
                    p.name(),
                    p.describe()
                )));
            }
        };
        if let (
            Param::Buffer {
                name,
                element,
                extent,
                ..
            },
            ArgSlot::Buffer(key),
        ) = (param, &slot)
        {
            let have = buffers.get(key).copied().ok_or_else(|| {
                drift(format!(
                    "parameter `{name}` names buffer `{key}`, which the call lacks"
                ))
            })?;
            let reach = launch
                .signature
                .buffer_len(&ints, extent)
                .and_then(|n| n.checked_mul(element.size_bytes() as u64))
                .ok_or_else(|| {
                    drift(format!(
                        "the extent of parameter `{name}` is negative or overflows"
                    ))
                })?;
            if reach > have {
                return Err(drift(format!(
                    "parameter `{name}` may touch {reach} bytes, but buffer `{key}` has {have}"
                )));
            }
        }
        out.push(slot);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use attnc_kernel_abi::{
        ABI_VERSION, Access, Arg, DimDecl, Expr, Extent, KernelSignature, STATUS_WORDS, TensorDecl,
        Workspace,
    };

    fn e(s: &str) -> Expr {
        Expr::parse(s).unwrap()
    }

    /// `y = 2x + n` over N floats, with a status word and a scratch buffer.
    fn manifest() -> KernelManifest {
        let tensor = |name: &str| TensorDecl {
            name: name.into(),
            element: ElementType::F32,
            shape: vec![e("N")],
            range: None,
        };
        let buffer = |name: &str, element, access, extent: Vec<Extent>| Param::Buffer {
            name: name.into(),
            element,
            access,
            extent,
        };
        KernelManifest {
            abi_version: ABI_VERSION,
            kernel: "axpb".into(),
            source: "axpb.attn".into(),
            target: "cuda:sm_90a".parse().unwrap(),
            dims: vec![DimDecl {
                name: "N".into(),
                specialised: None,
                default: None,
            }],
            requirements: vec![],
            inputs: vec![tensor("x")],
            outputs: vec![tensor("y")],
            workspaces: vec![Workspace {
                name: "partial".into(),
                element: ElementType::F32,
                len: e("ceil_div(N, 256)"),
            }],
            launches: vec![Launch {
                code: "kernel.ptx".into(),
                signature: KernelSignature {
                    name: "axpb".into(),
                    params: vec![
                        buffer(
                            "x",
                            ElementType::F32,
                            Access::Read,
                            vec![Extent::Param("n".into())],
                        ),
                        buffer(
                            "y",
                            ElementType::F32,
                            Access::Write,
                            vec![Extent::Param("n".into())],
                        ),
                        buffer("w", ElementType::F32, Access::ReadWrite, vec![]),
                        buffer(
                            "status",
                            ElementType::I32,
                            Access::ReadWrite,
                            vec![Extent::Fixed(STATUS_WORDS as u64)],
                        ),
                        Param::Int { name: "n".into() },
                        Param::F32 { name: "a".into() },
                    ],
                },
                args: vec![
                    Arg::Tensor { name: "x".into() },
                    Arg::Tensor { name: "y".into() },
                    Arg::Workspace {
                        name: "partial".into(),
                    },
                    Arg::Status,
                    Arg::Int { value: e("N") },
                    Arg::F32 { value: 2.0 },
                ],
                grid: [e("ceil_div(N, 256)"), e("1"), e("1")],
                block: [256, 1, 1],
                shared_bytes: 0,
            }],
            guards: vec![],
            tiling: String::new(),
        }
    }

    fn dims(n: i64) -> DimValues {
        [("N".to_string(), n)].into()
    }

    #[test]
    fn a_call_is_formed_in_parameter_order() {
        let m = manifest();
        m.validate().unwrap();
        let plan = plan_call(&m, &dims(1000), &DeviceLimits::HOPPER).unwrap();
        assert_eq!(
            plan.buffers,
            [
                ("status".to_string(), 16),
                ("workspace:partial".to_string(), 16),
                ("x".to_string(), 4000),
                ("y".to_string(), 4000),
            ]
            .into()
        );
        assert_eq!(plan.total_bytes(), 8032);
        assert_eq!(
            plan.launches,
            [LaunchPlan {
                launch: 0,
                grid: [4, 1, 1],
                block: [256, 1, 1],
                shared_bytes: 0,
                args: vec![
                    ArgSlot::Buffer("x".into()),
                    ArgSlot::Buffer("y".into()),
                    ArgSlot::Buffer("workspace:partial".into()),
                    ArgSlot::Buffer("status".into()),
                    ArgSlot::I64(1000),
                    ArgSlot::F32(2.0),
                ],
            }]
        );
        plan.check_fits(8032).unwrap();
        let err = plan.check_fits(8031).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the run needs 8032 bytes of device memory, 8031 are free"
        );
    }

    #[test]
    fn grids_past_the_device_limit_are_refused() {
        let m = manifest();
        let limits = DeviceLimits {
            max_grid: [3, 1, 1],
            ..DeviceLimits::HOPPER
        };
        let err = plan_call(&m, &dims(1000), &limits).unwrap_err();
        assert!(
            err.to_string().contains("needs 4 work groups along axis 0"),
            "{err}"
        );
    }

    #[test]
    fn an_extent_beyond_the_buffer_is_a_compiler_bug() {
        let mut m = manifest();
        m.launches[0].args[4] = Arg::Int { value: e("N + 1") };
        let err = plan_call(&m, &dims(10), &DeviceLimits::HOPPER).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel `axpb`: parameter `x` may touch 44 bytes, but buffer `x` has 40; the manifest and the code disagree (a compiler bug)"
        );
        m.launches[0].args[4] = Arg::Int { value: e("0 - N") };
        let err = plan_call(&m, &dims(10), &DeviceLimits::HOPPER).unwrap_err();
        assert!(err.to_string().contains("negative or overflows"), "{err}");
    }

    #[test]
    fn blocks_shared_memory_and_element_types_are_checked_at_load() {
        let m = manifest();
        check_launch(&m, &m.launches[0], &DeviceLimits::HOPPER).unwrap();
        let mut l = m.launches[0].clone();
        l.block = [32, 32, 2];
        assert_eq!(
            check_launch(&m, &l, &DeviceLimits::HOPPER).unwrap_err(),
            "its block [32, 32, 2] has 2048 threads, the device allows 1024 per block"
        );
        l.block = [1, 1, 65];
        assert!(
            check_launch(&m, &l, &DeviceLimits::HOPPER)
                .unwrap_err()
                .contains("65 threads along axis 2")
        );
        let mut l = m.launches[0].clone();
        l.shared_bytes = 300 * 1024;
        assert_eq!(
            check_launch(&m, &l, &DeviceLimits::HOPPER).unwrap_err(),
            "it asks for 307200 bytes of shared memory per block, the device allows 232448"
        );
        let mut l = m.launches[0].clone();
        if let Param::Buffer { element, .. } = &mut l.signature.params[0] {
            *element = ElementType::Bf16;
        }
        assert_eq!(
            check_launch(&m, &l, &DeviceLimits::HOPPER).unwrap_err(),
            "parameter `x` takes bf16, but the manifest gives it a buffer of f32"
        );
    }
}
