//! `--device`: which runtime and which of its devices runs the bundle.
//!
//! Every runtime this binary carries is one variant here. A new one (Vulkan, `vulkan[:N]`) is a
//! variant, an arm in [`DeviceChoice::parse`], [`DeviceChoice::for_target`],
//! [`DeviceChoice::runs`], [`DeviceChoice::check_code`] and [`DeviceChoice::open`], and its
//! crate in Cargo.toml.

use attnc_bundle::Bundle;
use attnc_device::{Device, DeviceError};
use attnc_kernel_abi::TargetId;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// `cuda` (= `cuda:0`) or `cuda:N`.
    Cuda(usize),
}

impl DeviceChoice {
    /// Reads `--device`.
    pub fn parse(text: &str) -> Result<DeviceChoice, String> {
        if let Some(ordinal) = attnc_cuda::parse_selector(text) {
            return Ok(DeviceChoice::Cuda(ordinal));
        }
        Err(format!(
            "unknown device `{text}`: this attnc-run runs cuda or cuda:N"
        ))
    }

    /// The device a bundle runs on when `--device` is not given: device 0 of its target's
    /// runtime.
    pub fn for_target(target: &TargetId) -> Option<DeviceChoice> {
        match target {
            TargetId::Cuda { .. } => Some(DeviceChoice::Cuda(0)),
            TargetId::Vulkan { .. } | TargetId::Cpu => None,
        }
    }

    /// Whether this runtime runs code for `target` at all (the device itself may still refuse
    /// it: `cuda:sm_90a` code runs only on compute capability 9.0).
    pub fn runs(&self, target: &TargetId) -> bool {
        match self {
            DeviceChoice::Cuda(_) => matches!(target, TargetId::Cuda { .. }),
        }
    }

    /// Checks the bundle's code as far as the runtime can without a device.
    pub fn check_code(&self, bundle: &Bundle) -> Result<(), DeviceError> {
        match self {
            DeviceChoice::Cuda(_) => attnc_cuda::check_code(bundle),
        }
    }

    pub fn open(&self) -> Result<Box<dyn Device>, DeviceError> {
        match *self {
            DeviceChoice::Cuda(ordinal) => Ok(Box::new(attnc_cuda::CudaDevice::open(ordinal)?)),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_serve_their_targets() {
        assert_eq!(DeviceChoice::parse("cuda"), Ok(DeviceChoice::Cuda(0)));
        assert_eq!(DeviceChoice::parse("cuda:1"), Ok(DeviceChoice::Cuda(1)));
        assert!(DeviceChoice::parse("gpu").is_err());
        let hopper: TargetId = "cuda:sm_90a".parse().unwrap();
        let vulkan: TargetId = "vulkan".parse().unwrap();
        assert_eq!(
            DeviceChoice::for_target(&hopper),
            Some(DeviceChoice::Cuda(0))
        );
        assert_eq!(DeviceChoice::for_target(&vulkan), None);
        assert!(DeviceChoice::Cuda(0).runs(&hopper));
        assert!(!DeviceChoice::Cuda(0).runs(&vulkan));
        assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
    }
}
