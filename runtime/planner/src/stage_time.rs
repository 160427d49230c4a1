//! Planner step 3: the time and memory of one pipeline stage under a given head split.
//!
//! A stage is a run of layers on a group of devices. Inside it, every layer is split the
//! same way, Megatron-style tensor parallelism in proportion to the heads: a device that
//! owns `g` of the `kv_heads` K/V groups owns the fraction `g / kv_heads` of
//!
//! - the QKV projection (the Q columns of its query heads, the K and V columns of its
//!   groups), attention for its heads, and the matching rows of the output projection;
//! - the MLP's hidden units (columns of the up/gate matrices, rows of the down matrix);
//! - the weights and the KV cache (or recurrent state) of all those.
//!
//! Why one split for the whole stage and not one per layer: a device then keeps a fixed
//! slice of every weight matrix and of the cache, the runtime launches the same kernels for
//! every layer, and memory stays a simple sum. Layers only differ in their attention kernel
//! (hybrid models), which scales with the heads like everything else, so per-layer splits
//! would rarely differ.
//!
//! Why whole K/V groups: the query heads of a group read the same K and V. Splitting a
//! group puts its K/V projection and its KV cache on two devices, which costs memory and
//! work exactly where the cache is large. The limit: a multi-query model (one K/V head) is
//! never split inside a stage; its stages each run on one device.
//!
//! The stage's primary device (the one with the most K/V groups) holds the residual
//! stream: it receives the stage input, and after each half of a layer it reduces the
//! partial sums of the others. So every other participating device, a helper, receives the
//! hidden state and sends back a full-width partial sum twice per layer (before and after
//! attention, before and after the MLP). The devices synchronise there, so a layer takes
//! the slowest device's attention half plus the slowest device's MLP half. Transfers from
//! the primary to different helpers run at once over their own links; the reductions'
//! additions are not counted.

use crate::cost::{op_time, transfer_time};
use crate::devices::Profile;
use crate::model::Model;
use crate::work::{LayerWork, ModelWork, OpWork};

/// A model and a profile at one micro-batch count: the context of every stage cost.
pub(crate) struct Workload<'a> {
    pub model: &'a Model,
    pub profile: &'a Profile,
    pub work: ModelWork,
    pub micro_batches: u64,
}

/// A stage's layers summarised by how many use each kernel: layers of one kind cost the
/// same, so the search works on counts, not layer lists.
pub(crate) fn kind_counts(model: &Model, layers: std::ops::Range<usize>) -> Vec<u32> {
    let mut counts = vec![0; model.kernels.len()];
    for layer in layers {
        counts[model.layer_kernel[layer]] += 1;
    }
    counts
}

/// Layers of each kind before each layer boundary, so that the search gets the counts of
/// any run of layers in time independent of its length.
pub(crate) struct KindPrefix(Vec<Vec<u32>>);

impl KindPrefix {
    pub fn new(model: &Model) -> Self {
        let mut rows = vec![vec![0; model.kernels.len()]];
        for &k in &model.layer_kernel {
            let mut next = rows[rows.len() - 1].clone();
            next[k] += 1;
            rows.push(next);
        }
        KindPrefix(rows)
    }

    /// Layers of kind `kind` from layer `first` to the end.
    pub fn after(&self, first: usize, kind: usize) -> u32 {
        self.0[self.0.len() - 1][kind] - self.0[first][kind]
    }

    pub fn counts(&self, layers: std::ops::Range<usize>) -> Vec<u32> {
        let (a, b) = (&self.0[layers.start], &self.0[layers.end]);
        a.iter().zip(b).map(|(x, y)| y - x).collect()
    }
}

/// Where the stage's residual stream lives: the device with the most K/V groups, so the
/// device doing the most work pays no transfers (the faster, then the earlier, of equals).
/// Returns a position in `devices`.
pub(crate) fn primary(w: &Workload, devices: &[usize], kv_groups: &[u64]) -> usize {
    let key = |i: usize| {
        (
            kv_groups[i],
            w.profile.devices[devices[i]].peak(w.model.dtype),
        )
    };
    (0..devices.len())
        .reduce(|best, i| if key(i) > key(best) { i } else { best })
        .unwrap_or(0)
}

/// The device of `devices` with the highest peak for the model's dtype (the earlier of
/// equals), as a position in `devices`.
pub(crate) fn fastest(w: &Workload, devices: &[usize]) -> usize {
    primary(w, devices, &vec![0; devices.len()])
}

/// Per micro-batch: the stage's time, and each device's busy time split into computing and
/// transferring (to or from the primary).
pub(crate) struct StageLoad {
    pub time: f64,
    pub compute: Vec<f64>,
    pub transfer: Vec<f64>,
    /// Per layer kind, the slowest device of each half for one layer (zero for kinds the
    /// stage does not run), so that the stage time for other layer counts under the same
    /// split is [`time_for`] without pricing every device again.
    pub slowest: Vec<[f64; 2]>,
}

/// The time of a stage whose one-layer halves are `slowest`, running `counts` layers per
/// kind: the same sum, in the same order, as [`stage_load`], so the two agree to the bit.
pub(crate) fn time_for(slowest: &[[f64; 2]], counts: &[u32]) -> f64 {
    let mut time = 0.0;
    for (halves, &count) in slowest.iter().zip(counts) {
        if count == 0 {
            continue;
        }
        for s in halves {
            time += f64::from(count) * s;
        }
    }
    time
}

/// One device's time for one half of one layer kind: its kernels plus, for a helper, the
/// hidden state in and the partial sum out.
fn half_time(w: &Workload, device: usize, ops: &[OpWork], share: f64, transfer: f64) -> (f64, f64) {
    let d = &w.profile.devices[device];
    let compute: f64 = ops
        .iter()
        .map(|op| op_time(d, w.model.dtype, op, share))
        .sum();
    (compute, if share > 0.0 { transfer } else { 0.0 })
}

/// Time and busy times of a stage over `devices` running layers with `counts` per kind,
/// device `devices[i]` owning `kv_groups[i]` K/V groups.
pub(crate) fn stage_load(
    w: &Workload,
    devices: &[usize],
    counts: &[u32],
    kv_groups: &[u64],
) -> StageLoad {
    let p = primary(w, devices, kv_groups);
    let n = devices.len();
    let mut load = StageLoad {
        time: 0.0,
        compute: vec![0.0; n],
        transfer: vec![0.0; n],
        slowest: vec![[0.0; 2]; counts.len()],
    };
    let hops: Vec<f64> = (0..n)
        .map(|i| {
            if i == p {
                0.0
            } else {
                let link = w.profile.link(devices[p], devices[i]);
                2.0 * transfer_time(link, w.work.hidden_state_bytes)
            }
        })
        .collect();
    for (k, (kind, &count)) in w.work.kinds.iter().zip(counts).enumerate() {
        if count == 0 {
            continue;
        }
        let count = f64::from(count);
        let o = &kind.ops;
        for (h, half) in [
            &[o.qkv, o.attention, o.out_proj][..],
            &[o.mlp_up, o.mlp_down][..],
        ]
        .into_iter()
        .enumerate()
        {
            let mut slowest: f64 = 0.0;
            for i in 0..n {
                let share = kv_groups[i] as f64 / w.model.kv_heads as f64;
                let (c, t) = half_time(w, devices[i], half, share, hops[i]);
                load.compute[i] += count * c;
                load.transfer[i] += count * t;
                slowest = slowest.max(c + t);
            }
            load.time += count * slowest;
            load.slowest[k][h] = slowest;
        }
    }
    load
}

/// Bytes a device holds in a stage: its share of weights and resident state of every layer,
/// and, if it takes part at all, the activations of the micro-batch in flight. Layers run
/// one after the other, so activation buffers are reused across layers.
pub(crate) fn device_memory(
    w: &Workload,
    counts: &[u32],
    kv_groups: u64,
    participates: bool,
) -> f64 {
    let share = kv_groups as f64 / w.model.kv_heads as f64;
    let kinds = w.work.kinds.iter().zip(counts);
    let kept: f64 = kinds
        .clone()
        .map(|(k, &c)| f64::from(c) * (k.weight_bytes + k.resident_bytes))
        .sum();
    if !participates {
        return share * kept;
    }
    let activations = kinds
        .filter(|(_, c)| **c > 0)
        .map(|(k, _): (&LayerWork, _)| k.shared_activation_bytes + share * k.split_activation_bytes)
        .fold(0.0, f64::max);
    share * kept + activations
}

/// Bytes each device of the stage holds.
pub(crate) fn stage_memory(w: &Workload, counts: &[u32], kv_groups: &[u64]) -> Vec<f64> {
    kv_groups
        .iter()
        .map(|&g| device_memory(w, counts, g, g > 0))
        .collect()
}

/// Whether the stage fits in its devices' memory pools, counting only these devices (a
/// search stage owns whole pools).
pub(crate) fn stage_fits(
    w: &Workload,
    devices: &[usize],
    counts: &[u32],
    kv_groups: &[u64],
) -> bool {
    let used = stage_memory(w, counts, kv_groups);
    let mut per_pool: Vec<(usize, f64)> = Vec::new();
    for (&d, u) in devices.iter().zip(used) {
        let pool = w.profile.devices[d].pool;
        match per_pool.iter_mut().find(|(p, _)| *p == pool) {
            Some((_, sum)) => *sum += u,
            None => per_pool.push((pool, u)),
        }
    }
    per_pool
        .iter()
        .all(|&(p, sum)| sum <= w.profile.pools[p].capacity)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::work::{AttentionShape, AttentionWork, AttentionWorkSource, WorkCache};

    /// Attention costs 1 GFLOP and nothing else, whatever the shape.
    struct OneGflop;

    impl AttentionWorkSource for OneGflop {
        fn attention_work(&self, _: &Path, _: &AttentionShape) -> Result<AttentionWork, String> {
            Ok(AttentionWork {
                flops: 1e9,
                bytes_moved: 0.0,
                resident_bytes: 0.0,
            })
        }
    }

    const MODEL: &str = r#"
        name = "m"
        layers = 1
        hidden = 1024
        heads = 2
        kv_heads = 2
        head_dim = 512
        mlp_hidden = 2048
        mlp = "plain"
        dtype = "f32"
        batch = 1
        seq = 1024
        attention = "a.attn"
    "#;

    // Memory bandwidth so high that every kernel is compute-bound; no launch overhead.
    const PROFILE: &str = r#"
        name = "p"
        default_link = { bandwidth_gbs = 4, latency_us = 0 }
        [[device]]
        name = "fast"
        kind = "gpu"
        peak_tflops = { f32 = 1, f16 = 1, bf16 = 1 }
        memory_bandwidth_gbs = 1e6
        launch_overhead_us = 0
        memory_gib = 1
        [[device]]
        name = "slow"
        kind = "cpu"
        peak_tflops = { f32 = 0.5, f16 = 0.5, bf16 = 0.5 }
        memory_bandwidth_gbs = 1e6
        launch_overhead_us = 0
        memory_gib = 1
    "#;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs()
    }

    #[test]
    fn a_stage_split_in_half() {
        let model = Model::parse(MODEL, Path::new("m.toml")).unwrap();
        let profile = Profile::parse(PROFILE, Path::new("p.toml")).unwrap();
        let work = WorkCache::new(&OneGflop).model_work(&model, 1).unwrap();
        let w = Workload {
            model: &model,
            profile: &profile,
            work,
            micro_batches: 1,
        };
        // One group each; on a tie the faster device is primary, the slow one a helper.
        let load = stage_load(&w, &[0, 1], &[1], &[1, 1]);
        // T = 1024 tokens. Attention half, all devices together:
        //   QKV 2·1024·1024·(2+2·2)·512 = 6442450944, attention 1e9,
        //   output 2·1024·1024·1024 = 2147483648; sum 9589934592 FLOPs, half each.
        // fast: 4794967296 / 1e12 = 4.794967296 ms.
        // slow: 4794967296 / 0.5e12 = 9.589934592 ms, plus the hidden state in and the
        //   partial sum out, 2 · (1024·1024·4 B) / 4e9 B/s = 2.097152 ms: 11.687086592 ms.
        // MLP half: up and down 2 · 2·1024·1024·2048 = 8589934592 FLOPs, half each.
        // fast: 4.294967296 ms; slow: 8.589934592 + 2.097152 = 10.687086592 ms.
        // Stage: 11.687086592 + 10.687086592 = 22.374173184 ms.
        assert!(close(load.time, 22.374173184e-3), "{}", load.time);
        assert!(close(load.compute[0], 4.794967296e-3 + 4.294967296e-3));
        assert_eq!(load.transfer[0], 0.0);
        assert!(close(load.compute[1], 9.589934592e-3 + 8.589934592e-3));
        assert!(close(load.transfer[1], 4.194304e-3));
        // Memory of each: half the weights, (1024·3072 + 1024·1024 + 2·1024·2048)·4 / 2 =
        // 16777216; the input and residual, 2·1024·1024·4 = 8388608; half the widest
        // intermediate (QKV, 3072 wide), 1024·3072·4 / 2 = 6291456. Sum 31457280 = 30 MiB.
        assert_eq!(
            stage_memory(&w, &[1], &[1, 1]),
            vec![31457280.0, 31457280.0]
        );
        // A device with no share holds nothing and costs nothing.
        let alone = stage_load(&w, &[0, 1], &[1], &[2, 0]);
        assert_eq!(alone.compute[1], 0.0);
        assert_eq!(stage_memory(&w, &[1], &[2, 0])[1], 0.0);
    }
}
