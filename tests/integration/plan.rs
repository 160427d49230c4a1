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
    follows_the_documented_schema(&parsed);
    let drawn = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert!(
        drawn.starts_with("<svg") || drawn.starts_with("<?xml"),
        "not an SVG"
    );
    assert!(
        drawn.contains("s23-gpu"),
        "the timeline has no row for the devices"
    );
    draws_what_issue_19_asks(&drawn, &parsed);
    std::fs::remove_dir_all(&dir).ok();
}

/// The text between `start` and the next `end` after it, for each `start` in `text`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    text.split(start)
        .skip(1)
        .filter_map(|rest| rest.split(end).next())
        .collect()
}

/// What the SVG must show (issue 19): each device's memory against its pool's capacity, the
/// heads, K/V groups and layers of each working device, transfers on the sending device's
/// row, and a `<title>` tooltip on every bar.
fn draws_what_issue_19_asks(svg: &str, plan: &serde_json::Value) {
    let gib = |bytes: &serde_json::Value| {
        format!(
            "{:.2} GiB",
            bytes.as_f64().unwrap_or(-1.0) / f64::from(1u32 << 30)
        )
    };
    let memory = plan["memory"].as_array().expect("memory");
    for m in memory {
        let shown = format!(
            "{} / {}",
            gib(&m["used_bytes"]),
            gib(&m["pool_capacity_bytes"])
        );
        assert!(svg.contains(&shown), "no `{shown}` for {}", m["device"]);
    }
    // Row tops in drawing order, and the device each row is for.
    let tops: Vec<f64> = between(svg, r#"<rect x="10" y=""#, "\"")
        .iter()
        .filter_map(|y| y.parse().ok())
        .collect();
    // Bold texts: the title, then each row's `NAME (stage N)` or `NAME (unused)`.
    let names: Vec<&str> = between(svg, r#"font-weight="bold">"#, "</text>")
        .iter()
        .skip(1)
        .filter_map(|t| t.split(" (").next())
        .collect();
    assert_eq!(names.len(), memory.len(), "one row per device");
    assert_eq!(tops.len(), memory.len(), "one row band per device");
    for stage in plan["stages"].as_array().expect("stages") {
        for d in stage["devices"].as_array().expect("devices") {
            let (h, g) = (&d["heads"], &d["kv_groups"]);
            let range = |r: &serde_json::Value, i: usize| r[i].as_u64().unwrap_or(0);
            let span = |r: &serde_json::Value| match range(r, 1) - range(r, 0) {
                1 => format!("{}", range(r, 0)),
                _ => format!("{}-{}", range(r, 0), range(r, 1) - 1),
            };
            let label = format!(
                "heads {}, K/V {}, layers {}-{}",
                span(h),
                span(g),
                stage["first_layer"],
                stage["last_layer"]
            );
            assert!(svg.contains(&label), "no `{label}` for {}", d["device"]);
        }
    }
    let links = between(svg, "<title>hidden state of ", "/></g>");
    assert!(!links.is_empty(), "no transfers drawn");
    for link in links {
        let from = between(link, ": ", " to ")
            .first()
            .copied()
            .unwrap_or_default();
        let row = names
            .iter()
            .position(|n| *n == from)
            .expect("the sender has a row");
        let y: f64 = between(link, r#" y=""#, "\"")
            .first()
            .and_then(|y| y.parse().ok())
            .expect("the transfer's y");
        assert!(
            tops[row] <= y && y < tops[row] + 60.0,
            "a transfer from {from} drawn outside its row: {link}"
        );
    }
    // One bar per working device and micro-batch, each in a group with its tooltip.
    let working: u64 = plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .flat_map(|s| s["devices"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["heads"][0] != d["heads"][1])
        .count() as u64;
    let bars = working * plan["micro_batches"].as_u64().unwrap_or(0);
    let titled_bars = between(svg, "<g><title>stage ", "</g>")
        .iter()
        .filter(|g| g.contains("<rect "))
        .count() as u64;
    assert!(
        bars > 0 && titled_bars == bars,
        "{titled_bars} of {bars} bars have a tooltip"
    );
}

/// The fields and types docs/output-formats.md lists for `plan --format json`, and the
/// relations it states between them.
fn follows_the_documented_schema(plan: &serde_json::Value) {
    let field = |v: &serde_json::Value, name: &str| -> serde_json::Value {
        v.get(name)
            .unwrap_or_else(|| panic!("no `{name}` in {v}"))
            .clone()
    };
    for name in ["model", "profile", "dtype"] {
        assert!(field(plan, name).is_string(), "`{name}` is a string");
    }
    for name in [
        "layers",
        "heads",
        "kv_heads",
        "batch",
        "seq",
        "micro_batches",
        "sequences_per_micro_batch",
    ] {
        assert!(field(plan, name).is_u64(), "`{name}` is an integer");
    }
    for name in ["bottleneck_s", "fill_s", "total_s", "time_per_token_s"] {
        assert!(field(plan, name).is_f64(), "`{name}` is a number");
    }
    let num = |v: &serde_json::Value, name: &str| field(v, name).as_f64().unwrap_or(f64::NAN);
    let int = |v: &serde_json::Value, name: &str| field(v, name).as_u64().unwrap_or(u64::MAX);
    let expected_total =
        num(plan, "fill_s") + (int(plan, "micro_batches") - 1) as f64 * num(plan, "bottleneck_s");
    assert!((num(plan, "total_s") - expected_total).abs() < 1e-9 * expected_total);
    let stages = field(plan, "stages");
    let stages = stages.as_array().expect("stages is a list");
    let mut next_layer = 0;
    for stage in stages {
        assert_eq!(
            int(stage, "first_layer"),
            next_layer,
            "stages cover the layers in order"
        );
        next_layer = int(stage, "last_layer") + 1;
        assert!(field(stage, "primary").is_string() && field(stage, "time_s").is_f64());
        for k in field(stage, "attention")
            .as_array()
            .expect("attention is a list")
        {
            assert!(field(k, "kernel").is_string() && field(k, "layers").is_u64());
        }
        let mut heads = 0;
        for d in field(stage, "devices")
            .as_array()
            .expect("devices is a list")
        {
            assert!(field(d, "device").is_string());
            for range in ["heads", "kv_groups"] {
                let r = field(d, range);
                let r: Vec<u64> = r
                    .as_array()
                    .expect("a range")
                    .iter()
                    .filter_map(|x| x.as_u64())
                    .collect();
                assert!(
                    r.len() == 2 && r[0] <= r[1],
                    "`{range}` is [first, end): {d}"
                );
                if range == "heads" {
                    heads += r[1] - r[0];
                }
            }
            for name in ["compute_s", "transfer_s", "memory_bytes"] {
                assert!(field(d, name).is_f64(), "`{name}` is a number");
            }
        }
        assert_eq!(
            heads,
            int(plan, "heads"),
            "a stage's devices run every head"
        );
    }
    assert_eq!(next_layer, int(plan, "layers"));
    let links = field(plan, "links");
    let links = links.as_array().expect("links is a list");
    assert_eq!(links.len() + 1, stages.len(), "one link between two stages");
    for l in links {
        assert!(field(l, "from").is_string() && field(l, "to").is_string());
        assert!(field(l, "bytes").is_f64() && field(l, "time_s").is_f64());
    }
    for m in field(plan, "memory").as_array().expect("memory is a list") {
        assert!(field(m, "device").is_string() && field(m, "pool").is_string());
        assert!(num(m, "used_bytes") <= num(m, "pool_capacity_bytes"));
    }
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
    assert_eq!(
        out.status.code(),
        Some(1),
        "planned 8 K/V groups with a kernel of 32, or failed with another kind: {stderr}"
    );
    assert!(
        stderr.contains("kv_heads = 8 for heads = 32")
            && stderr.contains("kernel `softmax_causal` declares no `Hkv` dim"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
