//! Planner input, part 2: the device profile (a TOML file), read and checked.
//!
//! A profile lists devices in pipeline order, the memory pools they draw from, and the
//! links between them. Units in the file are the ones spec sheets use (TFLOP/s, GB/s with
//! GB = 10⁹ bytes, GiB = 2³⁰ bytes, µs); inside the planner everything is in FLOP/s, bytes
//! per second, bytes and seconds.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::model::Dtype;

const GIB: f64 = (1u64 << 30) as f64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Cpu,
    Gpu,
}

/// One compute device as the roofline model sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    pub name: String,
    pub kind: DeviceKind,
    /// Peak FLOP/s for f32, f16, bf16 (in that order).
    pub peak_flops: [f64; 3],
    /// Bytes per second between the device and its memory.
    pub memory_bandwidth: f64,
    /// Seconds of fixed cost per kernel (launch, synchronisation).
    pub launch_overhead: f64,
    /// Index into [`Profile::pools`].
    pub pool: usize,
}

impl Device {
    pub fn peak(&self, dtype: Dtype) -> f64 {
        match dtype {
            Dtype::F32 => self.peak_flops[0],
            Dtype::F16 => self.peak_flops[1],
            Dtype::Bf16 => self.peak_flops[2],
        }
    }
}

/// Memory that one or more devices share: a discrete GPU's own memory, or the DRAM that a
/// phone's CPU and GPU (or a PC's CPU and integrated GPU) both use.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub name: String,
    pub capacity: f64,
    /// Its devices, which are contiguous in the device list.
    pub devices: Range<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// Bytes per second.
    pub bandwidth: f64,
    /// Seconds per transfer.
    pub latency: f64,
}

/// A checked device profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub source: PathBuf,
    /// In pipeline order: stages run from the first device towards the last.
    pub devices: Vec<Device>,
    /// In device order.
    pub pools: Vec<Pool>,
    links: BTreeMap<(usize, usize), Link>,
    default_link: Link,
}

impl Profile {
    /// The link between two devices (symmetric); the profile's default where none is listed.
    pub fn link(&self, a: usize, b: usize) -> Link {
        let key = (a.min(b), a.max(b));
        self.links.get(&key).copied().unwrap_or(self.default_link)
    }

    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|error| ProfileError::Read {
            file: path.to_path_buf(),
            error,
        })?;
        Profile::parse(&text, path)
    }

    /// Checks a profile given as text; `path` names it in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Profile, ProfileError> {
        let raw: RawProfile = toml::from_str(text).map_err(|error| ProfileError::Parse {
            file: path.to_path_buf(),
            error: Box::new(error),
        })?;
        raw.check(path)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    default_link: RawLinkSpeed,
    device: Vec<RawDevice>,
    #[serde(default)]
    pool: Vec<RawPool>,
    #[serde(default)]
    link: Vec<RawLink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: String,
    kind: DeviceKind,
    peak_tflops: RawPeaks,
    memory_bandwidth_gbs: f64,
    launch_overhead_us: f64,
    memory_gib: Option<f64>,
    pool: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeaks {
    f32: f64,
    f16: f64,
    bf16: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: String,
    memory_gib: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLinkSpeed {
    bandwidth_gbs: f64,
    latency_us: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    between: [String; 2],
    bandwidth_gbs: f64,
    latency_us: f64,
}

impl RawProfile {
    fn check(self, path: &Path) -> Result<Profile, ProfileError> {
        let invalid = |field: String, message: String| ProfileError::Invalid {
            file: path.to_path_buf(),
            field,
            message,
        };
        let positive = |field: String, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(value)
            } else {
                Err(invalid(field, format!("{value} must be a positive number")))
            }
        };
        let non_negative = |field: String, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(value)
            } else {
                Err(invalid(field, format!("{value} must be zero or more")))
            }
        };
        if self.device.is_empty() {
            return Err(invalid("device".into(), "lists no device".into()));
        }
        let default_link = Link {
            bandwidth: positive(
                "default_link.bandwidth_gbs".into(),
                self.default_link.bandwidth_gbs,
            )? * 1e9,
            latency: non_negative(
                "default_link.latency_us".into(),
                self.default_link.latency_us,
            )? / 1e6,
        };
        let mut named_pools: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
        for (i, p) in self.pool.iter().enumerate() {
            let capacity = positive(format!("pool[{i}].memory_gib"), p.memory_gib)? * GIB;
            if named_pools.insert(&p.name, (i, capacity)).is_some() {
                return Err(invalid(
                    format!("pool[{i}].name"),
                    format!("`{}` is listed twice", p.name),
                ));
            }
        }
        let mut devices = Vec::with_capacity(self.device.len());
        let mut pools: Vec<Pool> = Vec::new();
        let mut used_named = vec![false; self.pool.len()];
        for (i, d) in self.device.iter().enumerate() {
            let field = |f: &str| format!("device[{i}].{f}");
            if self.device[..i].iter().any(|e| e.name == d.name) {
                return Err(invalid(
                    field("name"),
                    format!("`{}` is listed twice", d.name),
                ));
            }
            let (pool_name, capacity) = match (&d.pool, d.memory_gib) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        field("memory_gib"),
                        "give either `memory_gib` or `pool`, not both: a pooled device's memory is its pool's".into(),
                    ));
                }
                (None, None) => {
                    return Err(invalid(
                        field("memory_gib"),
                        "missing: give `memory_gib` or name a `pool`".into(),
                    ));
                }
                (None, Some(gib)) => (d.name.clone(), positive(field("memory_gib"), gib)? * GIB),
                (Some(p), None) => {
                    let Some(&(k, capacity)) = named_pools.get(p.as_str()) else {
                        return Err(invalid(
                            field("pool"),
                            format!("no [[pool]] is named `{p}`"),
                        ));
                    };
                    used_named[k] = true;
                    (p.clone(), capacity)
                }
            };
            // Stages own whole pools and pools are cut out of the device order, so a
            // pool's devices must sit next to each other.
            let pool = match pools.iter().position(|p| p.name == pool_name) {
                Some(k) if k + 1 == pools.len() => k,
                Some(_) => {
                    return Err(invalid(
                        field("pool"),
                        format!("devices of pool `{pool_name}` must be listed next to each other"),
                    ));
                }
                None => {
                    pools.push(Pool {
                        name: pool_name,
                        capacity,
                        devices: i..i,
                    });
                    pools.len() - 1
                }
            };
            pools[pool].devices.end = i + 1;
            devices.push(Device {
                name: d.name.clone(),
                kind: d.kind,
                peak_flops: [
                    positive(field("peak_tflops.f32"), d.peak_tflops.f32)? * 1e12,
                    positive(field("peak_tflops.f16"), d.peak_tflops.f16)? * 1e12,
                    positive(field("peak_tflops.bf16"), d.peak_tflops.bf16)? * 1e12,
                ],
                memory_bandwidth: positive(field("memory_bandwidth_gbs"), d.memory_bandwidth_gbs)?
                    * 1e9,
                launch_overhead: non_negative(field("launch_overhead_us"), d.launch_overhead_us)?
                    / 1e6,
                pool,
            });
        }
        if let Some(k) = used_named.iter().position(|u| !u) {
            return Err(invalid(
                format!("pool[{k}]"),
                format!("no device uses pool `{}`", self.pool[k].name),
            ));
        }
        let mut links = BTreeMap::new();
        for (i, l) in self.link.iter().enumerate() {
            let field = |f: &str| format!("link[{i}].{f}");
            let find = |name: &str| {
                devices.iter().position(|d| d.name == name).ok_or_else(|| {
                    invalid(field("between"), format!("no device is named `{name}`"))
                })
            };
            let (a, b) = (find(&l.between[0])?, find(&l.between[1])?);
            if a == b {
                return Err(invalid(field("between"), "names one device twice".into()));
            }
            let link = Link {
                bandwidth: positive(field("bandwidth_gbs"), l.bandwidth_gbs)? * 1e9,
                latency: non_negative(field("latency_us"), l.latency_us)? / 1e6,
            };
            if links.insert((a.min(b), a.max(b)), link).is_some() {
                return Err(invalid(
                    field("between"),
                    "this pair is listed twice".into(),
                ));
            }
        }
        Ok(Profile {
            name: self.name,
            source: path.to_path_buf(),
            devices,
            pools,
            links,
            default_link,
        })
    }
}

/// Why a device profile was refused.
#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("cannot read device profile {}: {error}", file.display())]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("device profile {} is not valid: {error}", file.display())]
    Parse {
        file: PathBuf,
        error: Box<toml::de::Error>,
    },
    #[error("device profile {}, field `{field}`: {message}", file.display())]
    Invalid {
        file: PathBuf,
        field: String,
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
        name = "two"
        default_link = { bandwidth_gbs = 1.0, latency_us = 100 }
        [[device]]
        name = "gpu"
        kind = "gpu"
        peak_tflops = { f32 = 2, f16 = 4, bf16 = 4 }
        memory_bandwidth_gbs = 50
        launch_overhead_us = 10
        pool = "soc"
        [[device]]
        name = "cpu"
        kind = "cpu"
        peak_tflops = { f32 = 0.5, f16 = 1, bf16 = 1 }
        memory_bandwidth_gbs = 50
        launch_overhead_us = 5
        pool = "soc"
        [[device]]
        name = "dgpu"
        kind = "gpu"
        peak_tflops = { f32 = 10, f16 = 20, bf16 = 20 }
        memory_bandwidth_gbs = 500
        launch_overhead_us = 5
        memory_gib = 2
        [[pool]]
        name = "soc"
        memory_gib = 4
        [[link]]
        between = ["cpu", "gpu"]
        bandwidth_gbs = 20
        latency_us = 50
    "#;

    #[test]
    fn units_pools_and_links() {
        let p = Profile::parse(TWO, Path::new("two.toml")).unwrap();
        assert_eq!(p.devices[0].peak(Dtype::Bf16), 4e12);
        assert_eq!(p.devices[1].launch_overhead, 5e-6);
        assert_eq!(p.pools.len(), 2);
        assert_eq!(p.pools[0].devices, 0..2);
        assert_eq!(p.pools[0].capacity, 4.0 * GIB);
        assert_eq!(p.pools[1].name, "dgpu");
        assert_eq!(p.link(0, 1).bandwidth, 20e9);
        assert_eq!(p.link(1, 0).latency, 50e-6);
        assert_eq!(p.link(0, 2).bandwidth, 1e9);
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = Profile::parse(
            &TWO.replace(
                "pool = \"soc\"\n        [[device]]\n        name = \"cpu\"",
                "pool = \"soc\"\n        [[device]]\n        name = \"gpu\"",
            ),
            Path::new("two.toml"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "device profile two.toml, field `device[1].name`: `gpu` is listed twice"
        );
        let e = Profile::parse(
            &TWO.replace("memory_bandwidth_gbs = 500", "memory_bandwidth_gbs = 0"),
            Path::new("two.toml"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "device profile two.toml, field `device[2].memory_bandwidth_gbs`: 0 must be a positive number"
        );
        let e = Profile::parse(
            &TWO.replace("\"cpu\", \"gpu\"", "\"cpu\", \"npu\""),
            Path::new("two.toml"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "device profile two.toml, field `link[0].between`: no device is named `npu`"
        );
    }
}
