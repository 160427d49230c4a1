//! The search's cost grows with the number of device groups, not with their sizes, and
//! about linearly with the layers: a guard against a complexity regression.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use attnc_planner::{Model, Profile, SearchOptions, plan};

/// `(name, count, tflops, gib)` groups of identical GPUs, each its own pool, all joined by
/// one default link.
fn fleet(groups: &[(&str, usize, f64, f64)]) -> Profile {
    let mut text = "name = \"fleet\"\ndefault_link = { bandwidth_gbs = 50, latency_us = 5 }\n".to_string();
    for &(name, count, tflops, gib) in groups {
        for i in 0..count {
            text += &format!(
                "[[device]]\nname = \"{name}-{i}\"\nkind = \"gpu\"\n\
                 peak_tflops = {{ f32 = {}, f16 = {tflops}, bf16 = {tflops} }}\n\
                 memory_bandwidth_gbs = 2000\nlaunch_overhead_us = 5\nmemory_gib = {gib}\n",
                tflops / 8.0
            );
        }
    }
    Profile::parse(&text, Path::new("fleet.toml")).unwrap()
}

fn model(layers: u64) -> Model {
    let text = format!(
        "name = \"deep\"\nlayers = {layers}\nhidden = 2048\nheads = 32\nkv_heads = 8\nhead_dim = 64\n\
         mlp_hidden = 8192\ndtype = \"bf16\"\nbatch = 8\nseq = 512\nattention = \"causal.attn\"\n"
    );
    Model::parse(&text, Path::new("deep.toml")).unwrap()
}

fn timed(model: &Model, profile: &Profile) -> (Duration, f64, usize) {
    let start = Instant::now();
    let p = plan(model, profile, &common::ClosedForm, &SearchOptions::default()).unwrap();
    (start.elapsed(), p.total_s, p.stages.len())
}

#[test]
#[ignore]
fn measure_deep() {
    let groups = [("h", 8, 800.0, 80.0), ("a", 500, 300.0, 80.0), ("l", 492, 120.0, 24.0)];
    let layers: u64 = std::env::var("LAYERS").ok().and_then(|s| s.parse().ok()).unwrap_or(10000);
    let (t, total, stages) = timed(&model(layers), &fleet(&groups));
    eprintln!("1000 devices in 3 groups, {layers} layers: {t:?}, total {total} s, {stages} stages");
}

#[test]
#[ignore]
fn measure() {
    for (groups, layers) in [
        (vec![("a", 8usize, 300.0, 80.0)], 32u64),
        (vec![("a", 16, 300.0, 80.0)], 32),
        (vec![("a", 64, 300.0, 80.0)], 32),
        (vec![("a", 64, 300.0, 80.0)], 1000),
        (vec![("h", 8, 800.0, 80.0), ("a", 500, 300.0, 80.0), ("l", 492, 120.0, 24.0)], 1000),
        (vec![("h", 8, 800.0, 80.0), ("a", 500, 300.0, 80.0), ("l", 492, 120.0, 24.0)], 10000),
    ] {
        let n: usize = groups.iter().map(|g| g.1).sum();
        let (t, total, stages) = timed(&model(layers), &fleet(&groups));
        eprintln!("{n} devices in {} groups, {layers} layers: {t:?}, total {total} s, {stages} stages", groups.len());
    }
}
