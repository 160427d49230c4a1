//! Random small models and device profiles for the property and brute-force tests,
//! written as TOML so that the parsers are exercised too.

use std::fmt::Write;
use std::path::Path;

use attnc_planner::{Model, Profile};
use proptest::prelude::*;

#[derive(Clone, Debug)]
pub struct Case {
    pub model: Model,
    pub profile: Profile,
}

#[derive(Clone, Debug)]
struct DeviceSpec {
    joins_previous_pool: bool,
    gpu: bool,
    tflops: f64,
    bandwidth_gbs: f64,
    launch_us: f64,
    capacity_factor: f64,
    /// How many identical devices, each its own pool, follow one another (a group when
    /// the links allow).
    copies: usize,
}

fn device_spec() -> impl Strategy<Value = DeviceSpec> {
    (
        (any::<bool>(), any::<bool>()),
        0.05f64..100.0,
        5.0f64..3000.0,
        0.0f64..50.0,
        0.15f64..3.0,
        prop::sample::select(vec![1usize, 1, 2, 3]),
    )
        .prop_map(
            |(
                (joins_previous_pool, gpu),
                tflops,
                bandwidth_gbs,
                launch_us,
                capacity_factor,
                copies,
            )| {
                DeviceSpec {
                    joins_previous_pool,
                    gpu,
                    tflops,
                    bandwidth_gbs,
                    launch_us,
                    capacity_factor,
                    copies,
                }
            },
        )
}

/// Bytes of weights and KV cache of the whole model, to size memory pools around it.
fn model_bytes(m: &Model) -> f64 {
    let b = m.dtype.bytes() as f64;
    let (h, d) = (m.hidden as f64, m.head_dim as f64);
    let (q, kv) = (m.heads as f64, m.kv_heads as f64);
    let weights = h * (q + 2.0 * kv) * d + q * d * h + 3.0 * h * m.mlp_hidden as f64;
    let cache = 2.0 * (m.batch * m.seq) as f64 * kv * d;
    m.layers() as f64 * (weights + cache) * b
}

pub fn case(max_layers: u64, max_devices: usize) -> impl Strategy<Value = Case> {
    let model = (
        1..=max_layers,
        1u64..=4,
        1u64..=2,
        prop::sample::select(vec![16u64, 64]),
        prop::sample::select(vec![64u64, 256]),
        prop::sample::select(vec![128u64, 512]),
        prop::sample::select(vec!["f32", "f16", "bf16"]),
        prop::sample::select(vec![1u64, 2, 4]),
        prop::sample::select(vec![16u64, 128, 1024]),
        any::<bool>(),
    );
    let devices = prop::collection::vec(device_spec(), 1..=max_devices);
    let links = prop::collection::vec((0.05f64..50.0, 1.0f64..3000.0), 7);
    let explicit_links = any::<bool>();
    (model, devices, links, explicit_links).prop_map(move |(m, specs, links, explicit_links)| {
        let mut devices = Vec::new();
        for spec in specs {
            for copy in 0..spec.copies {
                let mut d = spec.clone();
                d.joins_previous_pool &= copy == 0;
                devices.push(d);
            }
        }
        devices.truncate(max_devices);
        let (layers, kv, per_group, head_dim, hidden, mlp, dtype, batch, seq, hybrid) = m;
        let mut text = format!(
            "name = \"random\"\nlayers = {layers}\nhidden = {hidden}\nheads = {}\nkv_heads = {kv}\n\
             head_dim = {head_dim}\nmlp_hidden = {mlp}\ndtype = \"{dtype}\"\nbatch = {batch}\n\
             seq = {seq}\nattention = \"causal.attn\"\n",
            kv * per_group
        );
        if hybrid {
            text += "[[layer_attention]]\nfirst = 0\nlast = ";
            let _ = write!(text, "{}\nevery = 2\nattention = \"window.attn\"\n", layers - 1);
        }
        let model = Model::parse(&text, Path::new("random-model.toml")).unwrap();
        let size = model_bytes(&model);
        let (default_bw, default_lat) = links[0];
        let mut p = format!(
            "name = \"random\"\ndefault_link = {{ bandwidth_gbs = {default_bw}, latency_us = {default_lat} }}\n"
        );
        let mut pools = Vec::new();
        for (i, d) in devices.iter().enumerate() {
            if i == 0 || !d.joins_previous_pool {
                pools.push((format!("pool{}", pools.len()), d.capacity_factor * size));
            }
            let kind = if d.gpu { "gpu" } else { "cpu" };
            let _ = write!(
                p,
                "[[device]]\nname = \"d{i}\"\nkind = \"{kind}\"\n\
                 peak_tflops = {{ f32 = {}, f16 = {}, bf16 = {} }}\n\
                 memory_bandwidth_gbs = {}\nlaunch_overhead_us = {}\npool = \"{}\"\n",
                d.tflops / 2.0,
                d.tflops,
                d.tflops,
                d.bandwidth_gbs,
                d.launch_us,
                pools[pools.len() - 1].0
            );
        }
        for (name, bytes) in &pools {
            let _ = write!(
                p,
                "[[pool]]\nname = \"{name}\"\nmemory_gib = {}\n",
                bytes / (1u64 << 30) as f64
            );
        }
        // Some pairs get their own link; the rest use the default.
        let mut next = 1;
        for a in 0..devices.len() {
            for b in a + 1..devices.len() {
                if explicit_links && next < links.len() && (a + b) % 2 == 1 {
                    let (bw, lat) = links[next];
                    let _ = write!(
                        p,
                        "[[link]]\nbetween = [\"d{a}\", \"d{b}\"]\nbandwidth_gbs = {bw}\nlatency_us = {lat}\n"
                    );
                    next += 1;
                }
            }
        }
        let profile = Profile::parse(&p, Path::new("random-profile.toml")).unwrap();
        Case { model, profile }
    })
}
