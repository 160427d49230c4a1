//! Every recurrent example, and recurrences written to stress the chunked form's derivation
//! (matrix values through lets and functions, subtracted and divided terms, decays that
//! underflow within a chunk, negative decays, several states, the delta rule with different
//! left and query vectors beside other terms), run on the CPU both as the
//! sequential scan and in chunked form at two chunk sizes, against the reference interpreter,
//! on fresh random inputs, at sequence lengths around the chunk size.

use crate::common;
use attnc_passes::fusion::Template;
use attnc_passes::tiling::TiledBody;
use attnc_passes::tiling::target::{CpuTarget, Target};
use std::collections::BTreeMap;

/// f32 kernels against the f64 reference, relative to the output's largest magnitude.
const TOLERANCE: f64 = 1e-4;

const STRESS: &[(&str, &str)] = &[
    (
        "matrix_values_through_lets",
        "fn upd(k, v, c) { outer(k, v) * c }
kernel matrix_values_through_lets {
  dim B, H, S, D;
  input q, k, v: f32[B, H, S, D];
  input c: f32[B, H, S];
  output o: f32[B, H, S, D];
  recurrence t {
    let u = upd(k[b, h, t], v[b, h, t], sigmoid(c[b, h, t]));
    let w = 0.5 * u;
    state kv: [D, D] = 0.9 * kv + w - outer(v[b, h, t], k[b, h, t]) / 3.0;
    o[b, h, t] = q[b, h, t] @ kv;
  }
}",
    ),
    (
        "underflowing_decays",
        "kernel underflowing_decays {
  dim B, H, S, D, Dv;
  input q, k, g: f32[B, H, S, D];
  input v: f32[B, H, S, Dv];
  input c: f32[B, H, S];
  output o: f32[B, H, S, Dv];
  recurrence t {
    let a = exp(-30.0 * sigmoid(g[b, h, t]));
    state kv: [D, Dv] = diag(a) @ kv + outer(k[b, h, t], v[b, h, t]);
    state kw: [D, Dv] = exp(-20.0 * sigmoid(c[b, h, t])) * kw + outer(k[b, h, t], v[b, h, t]);
    o[b, h, t] = q[b, h, t] @ kv + q[b, h, t] @ kw;
  }
}",
    ),
    (
        "negative_decay_and_normaliser",
        "kernel negative_decay_and_normaliser {
  dim B, H, S, D, Dv;
  input q, k: f32[B, H, S, D];
  input v: f32[B, H, S, Dv];
  output o: f32[B, H, S, Dv];
  recurrence t {
    let phi_k = exp(k[b, h, t]);
    state kv: [D, Dv] = -0.95 * kv + outer(phi_k, v[b, h, t]);
    state z: [D] = 0.99 * z + phi_k;
    o[b, h, t] = (exp(q[b, h, t]) @ kv) / (dot(exp(q[b, h, t]), z) + 1.0);
  }
}",
    ),
    (
        "delta_rule_with_two_vectors",
        "fn l2norm(x) { x / sqrt(sum(x * x) + 1e-6) }
kernel delta_rule_with_two_vectors {
  dim B, H, S, D, Dv;
  input q, k: f32[B, H, S, D];
  input v: f32[B, H, S, Dv];
  input c: f32[B, H, S];
  output o: f32[B, H, S, Dv];
  recurrence t {
    let k1 = l2norm(k[b, h, t]);
    let k2 = l2norm(q[b, h, t]);
    state kv: [D, Dv] = 0.9 * kv - 0.5 * outer(k1, k2 @ kv) / 2.0 + outer(k1, v[b, h, t]) * sigmoid(c[b, h, t]) + 0.1 * outer(k2, v[b, h, t]);
    state z: [D] = z + k1;
    o[b, h, t] = (q[b, h, t] @ kv) / (abs(dot(q[b, h, t], z)) + 1.0);
  }
}",
    ),
];

/// A recurrence outside the chunked forms: a per-row decay with the delta rule.
const SCAN_ONLY: &str = "kernel per_row_delta {
  dim B, H, S, D, Dv;
  input q, k, g: f32[B, H, S, D];
  input v: f32[B, H, S, Dv];
  output o: f32[B, H, S, Dv];
  recurrence t {
    state kv: [D, Dv] = diag(sigmoid(g[b, h, t])) @ kv - 0.5 * outer(k[b, h, t], k[b, h, t] @ kv) + outer(k[b, h, t], v[b, h, t]);
    o[b, h, t] = q[b, h, t] @ kv;
  }
}";

#[test]
fn a_recurrence_outside_the_chunked_forms_stays_a_scan_and_says_why() {
    let mut graph = common::compile_source("per_row_delta.attn", SCAN_ONLY);
    attnc_passes::pass_manager::PassManager::standard()
        .run(&mut graph, &mut |_, _, _| {})
        .expect("passes run");
    let fused = attnc_passes::fusion::fuse(&graph).expect("fuses");
    let Template::Recurrent(r) = &fused.kernels[0].template else {
        panic!("not recurrent");
    };
    let Err(why) = &r.chunked else {
        panic!("per_row_delta ran chunked");
    };
    assert!(
        why.contains("per-row decay and a delta-rule correction"),
        "{why}"
    );
    let shape = dims(70, 8, 8);
    let err = max_error("per_row_delta", &graph, &shape, Some(64), seed());
    assert!(err <= TOLERANCE, "scan: relative error {err:.2e}");
}

fn dims(s: i64, d: i64, dv: i64) -> BTreeMap<String, i64> {
    [
        ("B", 1),
        ("H", 3),
        ("S", s),
        ("D", d),
        ("Dk", d),
        ("Dv", dv),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn seed() -> u64 {
    std::env::var("ATTNC_CPU_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_secs())
        })
}

/// Runs `graph` with the recurrence as a scan (`None`) or in chunks of `chunk` steps; returns
/// the largest relative error against the reference.
fn max_error(
    name: &str,
    graph: &attnc_ir::Graph,
    shape: &BTreeMap<String, i64>,
    chunk: Option<usize>,
    seed: u64,
) -> f64 {
    let fixed: BTreeMap<String, i64> = graph
        .dims
        .iter()
        .filter_map(|d| shape.get(&d.name).map(|v| (d.name.clone(), *v)))
        .collect();
    let bindings = attnc_ir::bind_dims(graph, &fixed, &BTreeMap::new())
        .unwrap_or_else(|d| panic!("{name}: dims do not bind: {d:?}"));
    let fused = attnc_passes::fusion::fuse(graph).expect("fuses");
    let target = Target::Cpu(CpuTarget::host());
    let mut tiled =
        attnc_passes::tiling::tile(graph, &fused, &target, Some(&bindings)).expect("tiles");
    if let TiledBody::Recurrent { chunk: c, .. } = &mut tiled.kernels[0].body {
        *c = chunk;
    }
    let kernel = attnc_cpu::CpuKernel::compile(graph, &fused, &tiled)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let inputs = attnc_reference::random_inputs(graph, &bindings, seed).expect("inputs");
    let tensors = attnc_reference::to_f64_tensors(&inputs);
    let want = attnc_reference::interpret(graph, &bindings, &tensors).expect("the reference runs");
    let arrays = tensors
        .iter()
        .map(|(n, t)| (n.clone(), (t.shape.clone(), t.data.clone())))
        .collect();
    let got = kernel.run(&bindings, &arrays).expect("the kernel runs");
    let mut worst = 0.0f64;
    for (out, w) in &want {
        let (shape, data) = &got[out];
        assert_eq!(*shape, w.shape, "{name}: shape of {out}");
        let scale = w.data.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
        for (a, b) in data.iter().zip(&w.data) {
            assert!(
                a.is_finite(),
                "{name} at {bindings}, chunk {chunk:?}: {out} has {a} (seed {seed})"
            );
            worst = worst.max((a - b).abs() / scale);
        }
    }
    worst
}

#[test]
fn recurrences_match_the_reference_as_a_scan_and_in_chunks() {
    let seed = seed();
    println!("seed {seed} (rerun with ATTNC_CPU_SEED={seed})");
    let mut graphs: Vec<(String, attnc_ir::Graph)> = Vec::new();
    for path in common::example_files() {
        let graph = common::compile_with_passes(&path);
        if graph.extents.contains_key(&attnc_ir::types::FrameIndex::T) {
            let name = path.file_stem().map(|s| s.to_string_lossy().to_string());
            graphs.push((name.unwrap_or_default(), graph));
        }
    }
    for (name, text) in STRESS {
        let mut graph = common::compile_source(name, text);
        attnc_passes::pass_manager::PassManager::standard()
            .run(&mut graph, &mut |_, _, _| {})
            .expect("passes run");
        graphs.push((name.to_string(), graph));
    }
    let mut chunked = 0;
    for (name, graph) in &graphs {
        let fused = attnc_passes::fusion::fuse(graph).expect("fuses");
        let Template::Recurrent(r) = &fused.kernels[0].template else {
            panic!("{name}: not recurrent");
        };
        let forms: &[Option<usize>] = if r.chunked.is_ok() {
            chunked += 1;
            &[None, Some(64), Some(16)]
        } else {
            &[None]
        };
        let shapes = [1, 63, 64, 65, 200]
            .map(|s| dims(s, 16, 12))
            .into_iter()
            .chain([dims(130, 64, 48)]);
        for (k, shape) in shapes.enumerate() {
            for &form in forms {
                let err = max_error(name, graph, &shape, form, seed.wrapping_add(k as u64));
                let form_name = form.map_or("scan".to_string(), |c| format!("chunks of {c}"));
                println!(
                    "{name:<32} S={:<4} D={:<3} {form_name:<13} max relative error {err:.2e}",
                    shape["S"], shape["D"]
                );
                assert!(
                    err <= TOLERANCE,
                    "{name} at S={}, {form_name}: relative error {err:.2e} (seed {seed})",
                    shape["S"]
                );
            }
        }
    }
    // Every recurrent example (retention, linear attention, GLA, Mamba-2, DeltaNet, Gated
    // DeltaNet) and the four stress kernels.
    assert!(chunked >= 10, "only {chunked} recurrences ran chunked");
}
