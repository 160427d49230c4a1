//! `--device`: which runtime and which of its devices runs the bundle.
//!
//! Every runtime this binary carries is one variant here (CUDA, Vulkan). A new one is a
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
    /// `vulkan` (the best device the loader lists) or `vulkan:N`.
    Vulkan(Option<usize>),
}

impl DeviceChoice {
    /// Reads `--device`.
    pub fn parse(text: &str) -> Result<DeviceChoice, String> {
        if let Some(ordinal) = attnc_cuda::parse_selector(text) {
            return Ok(DeviceChoice::Cuda(ordinal));
        }
        if text == "vulkan" {
            return Ok(DeviceChoice::Vulkan(None));
        }
        if let Some(digits) = text.strip_prefix("vulkan:")
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = digits.parse()
        {
            return Ok(DeviceChoice::Vulkan(Some(n)));
        }
        Err(format!(
            "unknown device `{text}`: this attnc-run runs cuda, cuda:N, vulkan or vulkan:N"
        ))
    }

    /// The device a bundle runs on when `--device` is not given: device 0 of its target's
    /// runtime (the best device for Vulkan).
    pub fn for_target(target: &TargetId) -> Option<DeviceChoice> {
        match target {
            TargetId::Cuda { .. } => Some(DeviceChoice::Cuda(0)),
            TargetId::Vulkan { .. } => Some(DeviceChoice::Vulkan(None)),
            TargetId::Cpu => None,
        }
    }

    /// Whether this runtime runs code for `target` at all (the device itself may still refuse
    /// it: `cuda:sm_90a` code runs only on compute capability 9.0, `vulkan:coopmat` code only
    /// where cooperative matrices are exposed).
    pub fn runs(&self, target: &TargetId) -> bool {
        match self {
            DeviceChoice::Cuda(_) => matches!(target, TargetId::Cuda { .. }),
            DeviceChoice::Vulkan(_) => matches!(target, TargetId::Vulkan { .. }),
        }
    }

    /// Checks the bundle's code as far as the runtime can without a device.
    pub fn check_code(&self, bundle: &Bundle) -> Result<(), DeviceError> {
        match self {
            DeviceChoice::Cuda(_) => attnc_cuda::check_code(bundle),
            DeviceChoice::Vulkan(_) => attnc_vulkan::check_code(bundle),
        }
    }

    pub fn open(&self) -> Result<Box<dyn Device>, DeviceError> {
        match *self {
            DeviceChoice::Cuda(ordinal) => Ok(Box::new(attnc_cuda::CudaDevice::open(ordinal)?)),
            DeviceChoice::Vulkan(_) => Ok(Box::new(attnc_vulkan::VulkanDevice::open(
                &self.to_string(),
            )?)),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceChoice::Vulkan(None) => write!(f, "vulkan"),
            DeviceChoice::Vulkan(Some(n)) => write!(f, "vulkan:{n}"),
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
        assert_eq!(
            DeviceChoice::for_target(&vulkan),
            Some(DeviceChoice::Vulkan(None))
        );
        assert_eq!(DeviceChoice::for_target(&"cpu".parse().unwrap()), None);
        assert!(DeviceChoice::Cuda(0).runs(&hopper));
        assert!(!DeviceChoice::Cuda(0).runs(&vulkan));
        assert!(
            DeviceChoice::Vulkan(None).runs(&vulkan) && !DeviceChoice::Vulkan(None).runs(&hopper)
        );
        assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
        for text in ["vulkan", "vulkan:1"] {
            assert_eq!(DeviceChoice::parse(text).unwrap().to_string(), text);
        }
        assert!(
            DeviceChoice::parse("vulkan:").is_err() && DeviceChoice::parse("vulkan:x").is_err()
        );
    }
}
