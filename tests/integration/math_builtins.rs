//! The math built-ins through the whole CPU path against the f64 reference: all of them in one
//! score modification (`tests/math/math_builtins.attn`), and the ones with a zero at 0
//! (`expm1`, `log1p`, `sinh`, `erf`, `tan`, `atan`, `asin`) on arguments near 1e-6, where
//! `exp(x) - 1` or `log(1 + x)` in f32 would be wrong in the first digit. The second kernel
//! is elementwise over positive terms, so each output is compared relative to itself.

use crate::common;
use attnc_passes::pass_manager::PassManager;
use attnc_passes::tiling::target::{CpuTarget, Target};
use std::collections::BTreeMap;

/// Compiles `graph` for the host, runs it and the reference on the same random inputs, and
/// returns (compiled, reference) for every element of output `o`.
fn run_both(graph: &mut attnc_ir::Graph, seed: u64) -> Vec<(f64, f64)> {
    PassManager::standard()
        .run(graph, &mut |_, _, _| {})
        .expect("passes run");
    let fused = attnc_passes::fusion::fuse(graph).expect("fuses");
    let fixed: BTreeMap<String, i64> = [("B", 1), ("H", 2), ("S", 37), ("D", 16)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let bindings = attnc_ir::bind_dims(graph, &fixed, &BTreeMap::new()).expect("dims bind");
    let target = Target::Cpu(CpuTarget::host());
    let tiled = attnc_passes::tiling::tile(graph, &fused, &target, Some(&bindings)).expect("tiles");
    let kernel = attnc_cpu::CpuKernel::compile(graph, &fused, &tiled).expect("compiles");
    let inputs = attnc_reference::random_inputs(graph, &bindings, seed).expect("inputs");
    let tensors = attnc_reference::to_f64_tensors(&inputs);
    let want = attnc_reference::interpret(graph, &bindings, &tensors).expect("reference runs");
    let arrays = tensors
        .iter()
        .map(|(n, t)| (n.clone(), (t.shape.clone(), t.data.clone())))
        .collect();
    let got = kernel.run(&bindings, &arrays).expect("the kernel runs");
    let (_, data) = &got["o"];
    data.iter()
        .copied()
        .zip(want["o"].data.iter().copied())
        .collect()
}

fn seed() -> u64 {
    std::env::var("ATTNC_CPU_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11)
}

#[test]
fn every_math_builtin_matches_the_reference_on_the_cpu() {
    let seed = seed();
    let path = common::repo_root().join("tests/math/math_builtins.attn");
    let mut graph = common::compile(&path);
    let pairs = run_both(&mut graph, seed);
    let scale = pairs.iter().fold(1.0f64, |m, (_, w)| m.max(w.abs()));
    for (e, (a, b)) in pairs.iter().enumerate() {
        let err = (a - b).abs() / scale;
        assert!(
            a.is_finite() && err <= 1e-4,
            "o[{e}] = {a}, reference {b} (relative {err:.2e}, seed {seed})"
        );
    }
}

#[test]
fn functions_with_a_zero_at_0_keep_relative_accuracy_near_it() {
    let seed = seed();
    for f in ["expm1", "log1p", "sinh", "erf", "tan", "atan", "asin"] {
        // x in [1e-7, ~1e-5]: positive, so the sum over keys does not cancel.
        let text = format!(
            "kernel near_zero {{
  dim B, H, S, D;
  input q, k: f32[B, H, S, D];
  input v: f32[B, H, S, D] in [0.5, 1.5];
  output o: f32[B, H, S, D];
  let s = dot(q[b, h, i], k[b, h, j]) / sqrt(D);
  o[b, h, i] = sum_j({f}(1e-6 * s * s + 1e-7) * v[b, h, j]);
}}"
        );
        let mut graph = common::compile_source(&format!("{f}.attn"), &text);
        for (e, (a, b)) in run_both(&mut graph, seed).iter().enumerate() {
            let err = ((a - b) / b).abs();
            assert!(
                err <= 1e-5,
                "{f}: o[{e}] = {a:e}, reference {b:e} (relative {err:.2e}, seed {seed})"
            );
        }
    }
}
