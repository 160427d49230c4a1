//! Snapshots of the planner's outputs for every shipped profile and model, priced with the
//! closed-form work source of the tests. Review their diffs like code: a changed number is
//! a changed prediction.

mod common;

use attnc_planner::{SearchOptions, compare, plan, render_comparison, render_svg, shipped};

#[test]
fn plans_for_the_shipped_profiles() {
    let profiles = shipped::profiles().unwrap();
    let models = shipped::models().unwrap();
    for profile in &profiles {
        for model in &models {
            let p = plan(
                model,
                profile,
                &common::ClosedForm,
                &SearchOptions::default(),
            )
            .unwrap();
            let name = format!("{}__{}", profile.name, model.name);
            insta::assert_snapshot!(format!("{name}.txt"), attnc_planner::render_text(&p));
            insta::assert_snapshot!(format!("{name}.json"), p.to_json().unwrap());
        }
    }
}

#[test]
fn comparison_with_the_baselines() {
    let profiles = shipped::profiles().unwrap();
    let models = shipped::models().unwrap();
    let rows = compare(&models, &profiles, &common::ClosedForm).unwrap();
    insta::assert_snapshot!(render_comparison(&rows));
}

#[test]
fn svg_timeline_of_the_phones() {
    let profiles = shipped::profiles().unwrap();
    let models = shipped::models().unwrap();
    let p = plan(
        &models[1],
        &profiles[0],
        &common::ClosedForm,
        &SearchOptions::default(),
    )
    .unwrap();
    let svg = render_svg(&p);
    // Every device's memory against its capacity, and what each one runs.
    for m in &p.memory {
        let gauge = format!("<title>{}: ", m.device);
        assert!(svg.contains(&gauge), "no memory gauge for {}", m.device);
    }
    assert!(
        svg.contains("heads 0-27, K/V 0-6, layers 0-"),
        "no head split in a label"
    );
    // Every bar and lane carries a tooltip: no rect of a timeline slot outside a <g><title>.
    for line in svg
        .lines()
        .filter(|l| l.contains("micro-batch") && l.contains("<rect"))
    {
        assert!(
            line.starts_with("<g><title>"),
            "a slot without a tooltip: {line}"
        );
    }
    // Each transfer lane lies inside the row of the device that sends it.
    for link in &p.links {
        let row = p.memory.iter().position(|m| m.device == link.from).unwrap() as f64;
        let (top, bottom) = (64.0 + row * 60.0, 64.0 + (row + 1.0) * 60.0);
        let needle = format!(": {} to {},", link.from, link.to);
        for line in svg.lines().filter(|l| l.contains(&needle)) {
            let y: f64 = line
                .split(" y=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|y| y.parse().ok())
                .unwrap();
            assert!(
                top < y && y + 8.0 < bottom,
                "lane at {y} outside its row {top}..{bottom}"
            );
        }
    }
    insta::assert_snapshot!(svg);
}

#[test]
fn a_hybrid_model_on_the_phones() {
    // Llama 1B with every other layer on a 256-token sliding window.
    let text = format!(
        "{}\n[[layer_attention]]\nfirst = 0\nlast = 15\nevery = 2\nattention = \"../../../examples/sliding_window.attn\"\n",
        shipped::MODELS[0].1
    );
    let model =
        attnc_planner::Model::parse(&text, std::path::Path::new(shipped::MODELS[0].0)).unwrap();
    let profiles = shipped::profiles().unwrap();
    let p = plan(
        &model,
        &profiles[0],
        &common::ClosedForm,
        &SearchOptions::default(),
    )
    .unwrap();
    insta::assert_snapshot!(attnc_planner::render_text(&p));
}
