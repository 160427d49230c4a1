//! The search's cost grows with the number of device groups, not with their sizes, and at
//! worst about quadratically with the layers (here 1000 to 10,000 layers costs about four
//! times as much, the bounds keeping stage lengths short): guards against a regression to
//! a search that tells identical devices apart (exponential in their number). Each plan
//! runs on its own thread and the test fails when it takes longer than a bound about ten
//! times what the test profile needs on a slow machine.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use attnc_planner::{Model, Plan, Profile, SearchOptions, plan};

/// `(name, count, tflops, gib)` groups of identical GPUs, each its own pool, all joined by
/// one default link.
fn fleet(groups: &[(&str, usize, f64, f64)]) -> Profile {
    let mut text =
        "name = \"fleet\"\ndefault_link = { bandwidth_gbs = 50, latency_us = 5 }\n".to_string();
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
    Profile::parse(&text, Path::new("fleet.toml")).expect("the fleet profile is valid")
}

fn model(layers: u64, batch: u64, seq: u64) -> Model {
    let text = format!(
        "name = \"deep\"\nlayers = {layers}\nhidden = 2048\nheads = 32\nkv_heads = 8\nhead_dim = 64\n\
         mlp_hidden = 8192\ndtype = \"bf16\"\nbatch = {batch}\nseq = {seq}\nattention = \"causal.attn\"\n"
    );
    Model::parse(&text, Path::new("deep.toml")).expect("the model is valid")
}

/// Plans on another thread; panics when that takes longer than `limit`.
fn plan_within(model: Model, profile: Profile, limit: Duration) -> (Plan, Duration) {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let p = plan(
            &model,
            &profile,
            &common::ClosedForm,
            &SearchOptions::default(),
        );
        let _ = send.send((p, start.elapsed()));
    });
    match receive.recv_timeout(limit) {
        Ok((Ok(p), took)) => (p, took),
        Ok((Err(e), _)) => panic!("no plan: {e}"),
        Err(_) => panic!("planning took longer than {limit:?}"),
    }
}

/// Three groups, 1000 devices: 8 fast servers, 500 workstations, 492 small GPUs.
const THOUSAND: [(&str, usize, f64, f64); 3] = [
    ("server", 8, 800.0, 80.0),
    ("workstation", 500, 300.0, 80.0),
    ("small", 492, 120.0, 24.0),
];

#[test]
fn a_thousand_devices_and_a_thousand_layers() {
    let (p, took) = plan_within(
        model(1000, 8, 512),
        fleet(&THOUSAND),
        Duration::from_secs(60),
    );
    eprintln!(
        "1000 devices, 1000 layers: {took:?}, {} stages",
        p.stages.len()
    );
    assert_eq!(p.stages.last().map(|s| s.last_layer), Some(999));
}

#[test]
fn sixty_four_identical_devices() {
    // Telling identical devices apart took 1.1 s for 8, 8.8 s for 12 and over 20 s for 14.
    for count in [14, 16, 64] {
        let (p, took) = plan_within(
            model(32, 8, 512),
            fleet(&[("gpu", count, 300.0, 80.0)]),
            Duration::from_secs(20),
        );
        eprintln!(
            "{count} identical devices: {took:?}, {} stages",
            p.stages.len()
        );
        assert!(p.stages.len() > 1, "{count} devices, one stage");
    }
}

#[test]
fn a_million_tokens() {
    // S = 1,048,576 ran past 20 s.
    let profile = fleet(&[("server", 8, 800.0, 80.0), ("workstation", 16, 300.0, 80.0)]);
    let (p, took) = plan_within(model(16, 1, 1 << 20), profile, Duration::from_secs(20));
    eprintln!("S = 1048576: {took:?}, {} stages", p.stages.len());
    assert!(p.total_s.is_finite());
}

/// Ten times deeper, in the normal suite: on a 2-core machine at load 5 to 10, 6.7 s in
/// the test profile (opt-level 1, what `cargo test` builds), 4 to 5.4 s in release (23 s
/// before `stages::Search::rest_bound`), 75 s with the planner at opt-level 0.
#[test]
fn a_thousand_devices_and_ten_thousand_layers() {
    let (p, took) = plan_within(
        model(10_000, 8, 512),
        fleet(&THOUSAND),
        Duration::from_secs(120),
    );
    eprintln!(
        "1000 devices, 10,000 layers: {took:?}, {} stages",
        p.stages.len()
    );
    assert_eq!(p.stages.last().map(|s| s.last_layer), Some(9999));
}

/// Other depths: `LAYERS=6000 cargo test --release -p attnc-planner --test scale --
/// --ignored --nocapture`. Release, loaded 2-core machine: 1000 layers 1.4 s, 6000 layers
/// 2.8 s, 10,000 layers 5.4 s.
#[test]
#[ignore]
fn measure_deep() {
    let layers: u64 = std::env::var("LAYERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10000);
    let (p, took) = plan_within(
        model(layers, 8, 512),
        fleet(&THOUSAND),
        Duration::from_secs(600),
    );
    eprintln!(
        "1000 devices in 3 groups, {layers} layers: {took:?}, total {} s, {} stages",
        p.total_s,
        p.stages.len()
    );
}
