//! The device interface of attnc's runtimes: what `attnc run --device`, the runtime-only
//! `attnc-run` and the tests call, whatever runs the code.
//!
//! A [`Device`] loads a [`Bundle`] whose target it accepts; the [`LoadedKernel`] runs the
//! manifest's launches on host tensors (upload, NaN-poisoned outputs, zeroed status and
//! workspaces, every launch in order, status check, download) or times them on resident data.
//! Runtimes implement these traits; the helpers here (argument values, buffer sizes, poison
//! patterns) are shared so that no runtime forms a launch differently from another.
//! This crate links no compiler and no device library.

use attnc_bundle::Bundle;
use attnc_kernel_abi::{
    Arg, DimValues, ElementType, KernelManifest, Launch, STATUS_WORDS, StatusError, TargetId,
};
use attnc_tensors::HostTensor;
use std::collections::BTreeMap;

/// Host tensors by name.
pub type Tensors = BTreeMap<String, HostTensor>;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No driver or loader on this machine: a normal outcome, reported, never a panic.
    #[error("{0}")]
    Unavailable(String),
    #[error("the bundle is for {target}, which {device} cannot run")]
    WrongTarget { target: TargetId, device: String },
    #[error("cannot load kernel `{kernel}`: {detail}")]
    Load { kernel: String, detail: String },
    #[error("launch of kernel `{kernel}` failed: {detail}")]
    Launch { kernel: String, detail: String },
    /// A check inside the kernel failed (a computed index out of range, say).
    #[error("the run failed: {0}")]
    Status(#[from] StatusError),
    #[error("the run needs {needed} bytes of device memory, {available} are free")]
    Memory { needed: u64, available: u64 },
    #[error("{0}")]
    Input(String),
    #[error("device error: {0}")]
    Device(String),
}

/// One timed run: the launches of a call, measured on the device's own clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// Seconds per call, median of the samples.
    pub median_s: f64,
    pub min_s: f64,
    pub samples: usize,
}

pub trait Device {
    /// What the device is, for messages and reports (`NVIDIA H200 (cuda:0, sm_90)`).
    fn name(&self) -> String;
    /// Whether code for `target` runs here.
    fn accepts(&self, target: &TargetId) -> bool;
    fn load<'d>(&'d self, bundle: &Bundle) -> Result<Box<dyn LoadedKernel + 'd>, DeviceError>;
}

pub trait LoadedKernel {
    fn manifest(&self) -> &KernelManifest;
    /// Runs one call under `dims` (bound with [`KernelManifest::bind`]) on `inputs`, each in
    /// its declared element type and shape. Outputs start as NaN on the device, so an element
    /// the kernel leaves unwritten comes back NaN.
    fn run(&self, dims: &DimValues, inputs: &Tensors) -> Result<Tensors, DeviceError>;
    /// Times a call on inputs already on the device: `warmup` calls, then the median of
    /// `iters` calls, each measured by the device's timers.
    fn time(
        &self,
        dims: &DimValues,
        inputs: &Tensors,
        warmup: usize,
        iters: usize,
    ) -> Result<Timing, DeviceError>;
}

/// The value of one launch argument, as every runtime passes it.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgValue<'a> {
    Tensor(&'a str),
    Workspace(&'a str),
    Status,
    Int(i64),
    F32(f32),
    /// The launch's tensor-map buffer ([`tensor_maps_key`]), with the maps to encode into it.
    TensorMaps(&'a str, &'a [attnc_kernel_abi::TensorMap]),
}

/// The buffer key of a launch's tensor maps (one buffer per launch that takes them).
pub fn tensor_maps_key(kernel: &str) -> String {
    format!("tensor_maps:{kernel}")
}

/// The arguments of `launch` under `dims`, in parameter order.
pub fn launch_args<'a>(
    launch: &'a Launch,
    dims: &DimValues,
) -> Result<Vec<ArgValue<'a>>, DeviceError> {
    launch
        .args
        .iter()
        .map(|a| {
            Ok(match a {
                Arg::Tensor { name } => ArgValue::Tensor(name),
                Arg::Workspace { name } => ArgValue::Workspace(name),
                Arg::Status => ArgValue::Status,
                Arg::Int { value } => ArgValue::Int(value.eval(dims).map_err(|e| {
                    DeviceError::Input(format!(
                        "argument of kernel `{}`: {e}",
                        launch.signature.name
                    ))
                })?),
                Arg::F32 { value } => ArgValue::F32(*value as f32),
                Arg::TensorMaps { maps } => ArgValue::TensorMaps(&launch.signature.name, maps),
            })
        })
        .collect()
}

/// The grid of `launch` under `dims`, each extent at least 1 and within `limit`.
pub fn launch_grid(
    launch: &Launch,
    dims: &DimValues,
    limit: [u64; 3],
) -> Result<[u32; 3], DeviceError> {
    let mut grid = [1u32; 3];
    for (axis, e) in launch.grid.iter().enumerate() {
        let v = e.eval(dims).map_err(|err| {
            DeviceError::Input(format!("grid of kernel `{}`: {err}", launch.signature.name))
        })?;
        if v < 1 || v as u64 > limit[axis] {
            return Err(DeviceError::Input(format!(
                "kernel `{}` needs {v} work groups along axis {axis} (`{e}`), the device allows 1 to {}",
                launch.signature.name, limit[axis]
            )));
        }
        grid[axis] = v as u32;
    }
    Ok(grid)
}

/// Bytes of every buffer a call allocates (tensors, workspaces, status), so a runtime can refuse
/// a call that does not fit before allocating anything.
pub fn buffer_bytes(
    manifest: &KernelManifest,
    dims: &DimValues,
) -> Result<BTreeMap<String, u64>, DeviceError> {
    let mut out = BTreeMap::new();
    for t in manifest.inputs.iter().chain(&manifest.outputs) {
        let n = manifest
            .elements_of(t, dims)
            .map_err(|e| DeviceError::Input(e.to_string()))?;
        let bytes = n
            .checked_mul(t.element.size_bytes() as u64)
            .ok_or_else(|| DeviceError::Input(format!("`{}` is too large", t.name)))?;
        out.insert(t.name.clone(), bytes);
    }
    for w in &manifest.workspaces {
        let n = w
            .len
            .eval(dims)
            .map_err(|e| DeviceError::Input(e.to_string()))?;
        let bytes = u64::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(w.element.size_bytes() as u64))
            .ok_or_else(|| {
                DeviceError::Input(format!("workspace `{}` has {n} elements", w.name))
            })?;
        out.insert(format!("workspace:{}", w.name), bytes.max(4));
    }
    out.insert("status".into(), (STATUS_WORDS * 4) as u64);
    for l in &manifest.launches {
        for a in &l.args {
            if let Arg::TensorMaps { maps } = a {
                out.insert(
                    tensor_maps_key(&l.signature.name),
                    (maps.len() * attnc_kernel_abi::TENSOR_MAP_BYTES) as u64,
                );
            }
        }
    }
    Ok(out)
}

/// The bytes of one NaN element of a float type (outputs are filled with it before a run);
/// `None` for types without NaN.
pub fn poison_element(t: ElementType) -> Option<Vec<u8>> {
    Some(match t {
        ElementType::F32 => f32::NAN.to_bits().to_le_bytes().to_vec(),
        ElementType::F64 => f64::NAN.to_bits().to_le_bytes().to_vec(),
        ElementType::F16 => 0x7e00u16.to_le_bytes().to_vec(),
        ElementType::Bf16 => 0x7fc0u16.to_le_bytes().to_vec(),
        _ => return None,
    })
}

/// Checks that `inputs` hold every input of the manifest in its element type and bound shape.
pub fn check_inputs(
    manifest: &KernelManifest,
    dims: &DimValues,
    inputs: &Tensors,
) -> Result<(), DeviceError> {
    for t in &manifest.inputs {
        let given = inputs
            .get(&t.name)
            .ok_or_else(|| DeviceError::Input(format!("input `{}` was not given", t.name)))?;
        let want = manifest
            .shape_of(t, dims)
            .map_err(|e| DeviceError::Input(e.to_string()))?;
        if given.dtype() != t.element || given.shape() != want.as_slice() {
            return Err(DeviceError::Input(format!(
                "input `{}` must be {}{want:?}, the given tensor is {}{:?}",
                t.name,
                t.element,
                given.dtype(),
                given.shape()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use attnc_kernel_abi::Expr;

    #[test]
    fn poison_is_nan_in_every_float_type() {
        for t in [
            ElementType::F32,
            ElementType::F16,
            ElementType::Bf16,
            ElementType::F64,
        ] {
            let bytes = poison_element(t).unwrap();
            let tensor = HostTensor::new(t, vec![1], bytes).unwrap();
            assert!(tensor.to_f64_vec()[0].is_nan(), "{t}");
        }
        assert_eq!(poison_element(ElementType::I32), None);
    }

    #[test]
    fn grids_are_checked_against_the_limits() {
        let launch = Launch {
            code: "k".into(),
            signature: attnc_kernel_abi::KernelSignature {
                name: "k".into(),
                params: vec![],
            },
            args: vec![],
            grid: [
                Expr::parse("ceil_div(S, 64)").unwrap(),
                Expr::parse("H").unwrap(),
                Expr::Const(1),
            ],
            block: [128, 1, 1],
            shared_bytes: 0,
        };
        let dims: DimValues = [("S".to_string(), 1000), ("H".to_string(), 8)].into();
        assert_eq!(
            launch_grid(&launch, &dims, [1 << 31, 65535, 65535]).unwrap(),
            [16, 8, 1]
        );
        let err = launch_grid(&launch, &dims, [1 << 31, 4, 65535]).unwrap_err();
        assert!(
            err.to_string().contains("needs 8 work groups along axis 1"),
            "{err}"
        );
    }
}
