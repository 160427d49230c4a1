//! Planner step 0: identical devices as groups, so that the search never tells them apart.
//!
//! A group is a maximal run of neighbouring memory pools that are interchangeable: each
//! holds exactly one device, the devices agree in everything the cost model reads (kind,
//! peaks, memory bandwidth, launch overhead, capacity), every two members are joined by the
//! same link, and every device outside the run sees the same link to each member. Then
//! swapping two members changes no stage time, no transfer and no memory check, so a
//! stage only has to say *how many* members of a group it takes, never which. Pools of
//! several devices (a phone's CPU and GPU) and devices unlike their neighbours are groups
//! of one. The search (`stages`, `split_heads`) works on groups, which keeps it
//! independent of how many members a group has.

use std::ops::Range;

use crate::devices::{Link, Profile};

/// A run of interchangeable pools (one device each), or a single pool of any kind.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DeviceGroup {
    pub pools: Range<usize>,
}

impl DeviceGroup {
    pub fn members(&self) -> usize {
        self.pools.len()
    }
}

/// Whether the pools `a` and `b` hold one device each, alike in everything the cost model
/// reads.
fn alike(profile: &Profile, a: usize, b: usize) -> bool {
    let (pa, pb) = (&profile.pools[a], &profile.pools[b]);
    if pa.devices.len() != 1 || pb.devices.len() != 1 || pa.capacity != pb.capacity {
        return false;
    }
    let (da, db) = (
        &profile.devices[pa.devices.start],
        &profile.devices[pb.devices.start],
    );
    da.kind == db.kind
        && da.peak_flops == db.peak_flops
        && da.memory_bandwidth == db.memory_bandwidth
        && da.launch_overhead == db.launch_overhead
}

/// Whether device `d` can join a group whose first member is `first` and whose members are
/// joined by `inner`: it sees every other device as `first` does. Checking the newcomer
/// against the first member alone suffices: each member was checked the same way when it
/// joined, so any two members see each other over `inner` and every outsider over one link.
fn links_alike(profile: &Profile, first: usize, d: usize, inner: Link) -> bool {
    profile.link(first, d) == inner
        && (0..profile.devices.len())
            .filter(|&z| z != first && z != d)
            .all(|z| profile.link(first, z) == profile.link(d, z))
}

/// The profile's pools cut into groups, in order.
pub(crate) fn device_groups(profile: &Profile) -> Vec<DeviceGroup> {
    let pools = &profile.pools;
    let mut groups: Vec<DeviceGroup> = Vec::new();
    let mut k = 0;
    while k < pools.len() {
        let first = pools[k].devices.start;
        let mut end = k + 1;
        if end < pools.len() && alike(profile, k, end) {
            let inner = profile.link(first, pools[end].devices.start);
            while end < pools.len()
                && alike(profile, k, end)
                && links_alike(profile, first, pools[end].devices.start, inner)
            {
                end += 1;
            }
        }
        groups.push(DeviceGroup { pools: k..end });
        k = end;
    }
    groups
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn gpu(name: &str, tflops: f64) -> String {
        format!(
            "[[device]]\nname = \"{name}\"\nkind = \"gpu\"\n\
             peak_tflops = {{ f32 = {tflops}, f16 = {tflops}, bf16 = {tflops} }}\n\
             memory_bandwidth_gbs = 100\nlaunch_overhead_us = 5\nmemory_gib = 8\n"
        )
    }

    #[test]
    fn runs_of_alike_devices_with_alike_links_form_groups() {
        let mut text =
            "name = \"p\"\ndefault_link = { bandwidth_gbs = 1, latency_us = 10 }\n".to_string();
        for (name, tflops) in [
            ("a0", 1.0),
            ("a1", 1.0),
            ("a2", 1.0),
            ("b0", 2.0),
            ("a3", 1.0),
        ] {
            text += &gpu(name, tflops);
        }
        let profile = Profile::parse(&text, Path::new("p.toml")).unwrap();
        let pools: Vec<_> = device_groups(&profile)
            .into_iter()
            .map(|g| g.pools)
            .collect();
        assert_eq!(pools, vec![0..3, 3..4, 4..5]);
        // A fast link between a2 and b0 sets a2 apart: b0 no longer sees a0 and a2 alike.
        let linked = format!(
            "{text}[[link]]\nbetween = [\"a2\", \"b0\"]\nbandwidth_gbs = 50\nlatency_us = 1\n"
        );
        let profile = Profile::parse(&linked, Path::new("p.toml")).unwrap();
        let pools: Vec<_> = device_groups(&profile)
            .into_iter()
            .map(|g| g.pools)
            .collect();
        assert_eq!(pools, vec![0..2, 2..3, 3..4, 4..5]);
    }
}
