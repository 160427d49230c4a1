//! Which machine a compiled kernel is for, as a short name a manifest stores and a command line
//! takes: `cuda:sm_90a`, `cuda:sm_80`, `vulkan`, `vulkan:coopmat`, `cpu`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetId {
    /// NVIDIA GPUs through PTX: compute capability `sm / 10 . sm % 10`; `arch_specific` code
    /// (`sm_90a`: wgmma, setmaxnreg) runs only on that exact capability.
    Cuda { sm: u32, arch_specific: bool },
    /// Any Vulkan 1.3 device; `cooperative_matrix` code needs `VK_KHR_cooperative_matrix`.
    Vulkan { cooperative_matrix: bool },
    /// The host CPU.
    Cpu,
}

impl TargetId {
    /// Whether code for this target runs on a CUDA device of compute capability `major.minor`.
    pub fn runs_on_cuda(&self, major: u32, minor: u32) -> bool {
        match *self {
            TargetId::Cuda { sm, arch_specific } => {
                let device = major * 10 + minor;
                if arch_specific {
                    device == sm
                } else {
                    device >= sm
                }
            }
            _ => false,
        }
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetId::Cuda { sm, arch_specific } => {
                write!(f, "cuda:sm_{sm}{}", if *arch_specific { "a" } else { "" })
            }
            TargetId::Vulkan {
                cooperative_matrix: false,
            } => write!(f, "vulkan"),
            TargetId::Vulkan {
                cooperative_matrix: true,
            } => write!(f, "vulkan:coopmat"),
            TargetId::Cpu => write!(f, "cpu"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown target `{0}`: expected cuda:sm_80, cuda:sm_90a (any cuda:sm_NN[a]), vulkan, vulkan:coopmat or cpu"
)]
pub struct UnknownTarget(pub String);

impl FromStr for TargetId {
    type Err = UnknownTarget;

    fn from_str(s: &str) -> Result<TargetId, UnknownTarget> {
        let bad = || UnknownTarget(s.to_string());
        match s {
            "cpu" => return Ok(TargetId::Cpu),
            "vulkan" => {
                return Ok(TargetId::Vulkan {
                    cooperative_matrix: false,
                });
            }
            "vulkan:coopmat" => {
                return Ok(TargetId::Vulkan {
                    cooperative_matrix: true,
                });
            }
            _ => {}
        }
        let arch = s.strip_prefix("cuda:sm_").ok_or_else(bad)?;
        let (digits, arch_specific) = match arch.strip_suffix('a') {
            Some(d) => (d, true),
            None => (arch, false),
        };
        if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let sm: u32 = digits.parse().map_err(|_| bad())?;
        Ok(TargetId::Cuda { sm, arch_specific })
    }
}

impl Serialize for TargetId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for TargetId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TargetId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_devices() {
        for name in [
            "cuda:sm_90a",
            "cuda:sm_80",
            "vulkan",
            "vulkan:coopmat",
            "cpu",
        ] {
            let t: TargetId = name.parse().unwrap();
            assert_eq!(t.to_string(), name);
        }
        let hopper: TargetId = "cuda:sm_90a".parse().unwrap();
        assert!(hopper.runs_on_cuda(9, 0));
        assert!(!hopper.runs_on_cuda(10, 0), "sm_90a code is for 9.0 only");
        let ampere: TargetId = "cuda:sm_80".parse().unwrap();
        assert!(ampere.runs_on_cuda(9, 0) && ampere.runs_on_cuda(8, 0));
        assert!(!ampere.runs_on_cuda(7, 5));
        for bad in [
            "cuda",
            "cuda:sm_9",
            "cuda:90",
            "gpu",
            "cuda:sm_9x",
            "vulkan:x",
        ] {
            assert!(bad.parse::<TargetId>().is_err(), "{bad}");
        }
    }
}
