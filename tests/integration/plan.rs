//! `attnc plan` end to end: the shipped models and profiles, with attention work estimated from
//! the compiled graph of each layer's kernel.

use crate::common;

const MODELS: &[&str] = &["llama_1b", "llama_7b"];
const PROFILES: &[&str] = &["phones", "workstation", "h100_server"];

fn plan(args: &[&str]) -> String {
    let out = common::attnc(args);
    assert!(
        out.status.success(),
        "attnc {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn text_plans_of_the_shipped_models_and_profiles() {
    for model in MODELS {
        for profile in PROFILES {
            let m = format!("runtime/planner/models/{model}.toml");
            let p = format!("runtime/planner/profiles/{profile}.toml");
            let text = plan(&["plan", &m, "--devices", &p]);
            insta::assert_snapshot!(format!("plan_{model}_{profile}"), text);
        }
    }
}

#[test]
fn json_plan_is_one_document_and_the_svg_is_written() {
    let dir = std::env::temp_dir().join(format!("attnc-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let svg = dir.join("timeline.svg");
    let svg_arg = svg.display().to_string();
    let json = plan(&[
        "plan",
        "runtime/planner/models/llama_7b.toml",
        "--devices",
        "runtime/planner/profiles/phones.toml",
        "--format",
        "json",
        "--svg",
        &svg_arg,
    ]);
    let parsed: serde_json::Value =
        serde_json::from_str(&json).expect("stdout is one JSON document");
    assert!(parsed.is_object());
    let drawn = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert!(
        drawn.starts_with("<svg") || drawn.starts_with("<?xml"),
        "not an SVG"
    );
    assert!(
        drawn.contains("s23-gpu"),
        "the timeline has no row for the devices"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn comparison_table_with_graph_work() {
    let text = plan(&[
        "plan",
        "runtime/planner/models/llama_1b.toml",
        "--devices",
        "runtime/planner/profiles/phones.toml",
        "--compare",
    ]);
    insta::assert_snapshot!("plan_compare_llama_1b_phones", text);
}

#[test]
fn a_grouped_query_model_with_a_kernel_without_hkv_is_an_error_naming_both() {
    let dir = std::env::temp_dir().join(format!("attnc-plan-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let shipped =
        std::fs::read_to_string(common::repo_root().join("runtime/planner/models/llama_1b.toml"))
            .expect("the shipped model");
    let kernel = common::example("softmax_causal").display().to_string();
    let model: String = shipped
        .lines()
        .map(|l| {
            if l.starts_with("attention =") {
                format!("attention = {kernel:?}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("model.toml");
    std::fs::write(&path, model).expect("write the model");
    let out = common::attnc(&[
        "plan",
        &path.display().to_string(),
        "--devices",
        "runtime/planner/profiles/phones.toml",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "planned 8 K/V groups with a kernel of 32"
    );
    assert!(
        stderr.contains("kv_heads = 8 for heads = 32")
            && stderr.contains("kernel `softmax_causal` declares no `Hkv` dim"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
