//! The planner's refusals: each says what is wrong and where.

mod common;

use std::path::Path;

use attnc_planner::{
    Model, Placement, Profile, SearchOptions, StagePlacement, evaluate_placement, plan, shipped,
};

const TINY_PHONES: &str = r#"
    name = "tiny-phones"
    default_link = { bandwidth_gbs = 0.075, latency_us = 3000 }
    [[device]]
    name = "a-gpu"
    kind = "gpu"
    peak_tflops = { f32 = 2, f16 = 4, bf16 = 2 }
    memory_bandwidth_gbs = 60
    launch_overhead_us = 30
    pool = "a"
    [[device]]
    name = "a-cpu"
    kind = "cpu"
    peak_tflops = { f32 = 0.3, f16 = 0.6, bf16 = 0.6 }
    memory_bandwidth_gbs = 60
    launch_overhead_us = 10
    pool = "a"
    [[pool]]
    name = "a"
    memory_gib = 3
    [[device]]
    name = "b-gpu"
    kind = "gpu"
    peak_tflops = { f32 = 2, f16 = 4, bf16 = 2 }
    memory_bandwidth_gbs = 60
    launch_overhead_us = 30
    memory_gib = 2
"#;

fn seven_b() -> Model {
    shipped::models().unwrap().remove(1)
}

#[test]
fn a_model_too_big_says_which_device_lacks_how_much() {
    let profile = Profile::parse(TINY_PHONES, Path::new("tiny.toml")).unwrap();
    let e = plan(
        &seven_b(),
        &profile,
        &common::ClosedForm,
        &SearchOptions::default(),
    )
    .unwrap_err();
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn a_failing_work_source_names_the_kernel() {
    let text = shipped::MODELS[0]
        .1
        .replace("gqa_causal.attn", "missing.attn");
    let model = Model::parse(&text, Path::new("m.toml")).unwrap();
    let profile = shipped::profiles().unwrap().remove(2);
    let e = plan(
        &model,
        &profile,
        &common::ClosedForm,
        &SearchOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "attention work for kernel `../../../examples/missing.attn` (batch 8, seq 512): cannot open ../../../examples/missing.attn"
    );
}

#[test]
fn a_malformed_placement_is_a_bug_report() {
    let model = seven_b();
    let profile = shipped::profiles().unwrap().remove(2);
    let placement = Placement {
        micro_batches: 3,
        stages: vec![StagePlacement {
            devices: vec![0],
            layers: 0..32,
            kv_groups: vec![8],
        }],
    };
    let e = evaluate_placement(&model, &profile, &common::ClosedForm, &placement).unwrap_err();
    assert_eq!(
        e.to_string(),
        "placement is not valid: 3 micro-batches do not divide the batch of 8"
    );
    let placement = Placement {
        micro_batches: 1,
        stages: vec![StagePlacement {
            devices: vec![0, 1],
            layers: 0..31,
            kv_groups: vec![4, 4],
        }],
    };
    let e = evaluate_placement(&model, &profile, &common::ClosedForm, &placement).unwrap_err();
    assert_eq!(
        e.to_string(),
        "placement is not valid: the stages end at layer 31, the model has 32"
    );
}

#[test]
fn a_hand_placement_that_overfills_memory_is_refused() {
    let model = seven_b();
    let profile = Profile::parse(TINY_PHONES, Path::new("tiny.toml")).unwrap();
    let placement = Placement {
        micro_batches: 8,
        stages: vec![StagePlacement {
            devices: vec![0, 1, 2],
            layers: 0..32,
            kv_groups: vec![4, 0, 4],
        }],
    };
    let e = evaluate_placement(&model, &profile, &common::ClosedForm, &placement).unwrap_err();
    insta::assert_snapshot!(e.to_string());
}
