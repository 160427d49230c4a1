//! Every example, parallel or recurrent, through the whole CPU path (passes, fusion, tiling,
//! MLIR, MLIR's pipeline, the JIT) against the reference interpreter, on fresh random inputs, at several shapes: sequences
//! not divisible by the tiles, a single position, different query and key lengths, grouped
//! heads. Outputs start as NaN, so an element no work item wrote fails the comparison.

use crate::common;
use attnc_passes::pass_manager::PassManager;
use attnc_passes::tiling::target::{CpuTarget, Target};
use std::collections::BTreeMap;

/// Kernels compute in f32: a relative error near 1e-7 per operation, sums over up to a few
/// hundred keys here. The reference is f64.
const TOLERANCE: f64 = 1e-4;

/// Values for every dim an example may use; each shape set is applied where the names exist.
fn shape_sets() -> Vec<BTreeMap<&'static str, i64>> {
    let base = |s: i64, sq: i64, sk: i64, d: i64, dv: i64| -> BTreeMap<&'static str, i64> {
        [
            ("B", 2),
            ("H", 4),
            ("Hkv", 2),
            ("S", s),
            ("Sq", sq),
            ("Sk", sk),
            ("D", d),
            ("Dk", d),
            ("Dqk", d),
            ("Dv", dv),
            ("W", 7),
            ("BLOCK", 16),
            ("NB", (s + 15) / 16),
        ]
        .into_iter()
        .collect()
    };
    // Head widths: 16 and 64 are whole AVX-512 vectors (register-blocked contractions), 12 and
    // 20 are not (scalar loops), and 48 is a whole number of vectors but not of a 64-wide block.
    vec![
        base(37, 23, 41, 16, 12),
        base(1, 1, 3, 16, 12),
        base(130, 70, 129, 16, 12),
        base(150, 97, 150, 64, 48),
        base(70, 70, 33, 20, 64),
    ]
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

#[test]
fn every_example_matches_the_reference_on_the_cpu() {
    let seed = seed();
    println!("seed {seed} (rerun with ATTNC_CPU_SEED={seed})");
    let mut checked = 0;
    for path in common::example_files() {
        let mut graph = common::compile(&path);
        PassManager::standard()
            .run(&mut graph, &mut |_, _, _| {})
            .expect("passes run");
        let fused = attnc_passes::fusion::fuse(&graph).expect("fuses");
        for (k, set) in shape_sets().iter().enumerate() {
            let fixed: BTreeMap<String, i64> = graph
                .dims
                .iter()
                .filter(|d| d.default.is_none() || d.name == "W" || d.name == "BLOCK")
                .filter_map(|d| set.get(d.name.as_str()).map(|v| (d.name.clone(), *v)))
                .collect();
            let bindings = attnc_ir::bind_dims(&graph, &fixed, &BTreeMap::new())
                .unwrap_or_else(|d| panic!("{}: dims do not bind: {:?}", path.display(), d));
            let target = Target::Cpu(CpuTarget::host());
            let tiled = attnc_passes::tiling::tile(&graph, &fused, &target, Some(&bindings))
                .expect("tiles");
            let kernel = attnc_cpu::CpuKernel::compile(&graph, &fused, &tiled)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let inputs =
                attnc_reference::random_inputs(&graph, &bindings, seed.wrapping_add(k as u64))
                    .expect("inputs");
            let tensors = attnc_reference::to_f64_tensors(&inputs);
            let want = attnc_reference::interpret(&graph, &bindings, &tensors)
                .expect("the reference runs");
            let arrays = tensors
                .iter()
                .map(|(n, t)| (n.clone(), (t.shape.clone(), t.data.clone())))
                .collect();
            let got = kernel.run(&bindings, &arrays).expect("the kernel runs");
            for (name, w) in &want {
                let (shape, data) = &got[name];
                assert_eq!(*shape, w.shape, "{}: shape of {name}", path.display());
                let scale = w.data.iter().fold(1.0f64, |m, x| m.max(x.abs()));
                for (e, (a, b)) in data.iter().zip(&w.data).enumerate() {
                    let err = (a - b).abs() / scale;
                    assert!(
                        a.is_finite() && err <= TOLERANCE,
                        "{} at {bindings}: {name}[{e}] = {a}, reference {b} (relative {err:.2e}, seed {seed})",
                        path.display()
                    );
                }
                assert!(
                    w.data.iter().any(|x| x.abs() > 1e-6),
                    "{}: an all-zero output proves nothing",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 3 * 19,
        "only {checked} (example, shape) pairs were checked"
    );
}

#[test]
fn attnc_run_on_the_cpu_checks_itself_against_the_reference() {
    let out = common::attnc(&[
        "run",
        "examples/gqa_causal.attn",
        "--device",
        "cpu",
        "--check",
        "--shape",
        "B=1,H=4,Hkv=2,S=67,D=32",
        "--seed",
        "11",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("check o: max relative difference") && stdout.contains(": ok"),
        "{stdout}"
    );
    assert!(stdout.contains("GFLOP/s"), "{stdout}");
}

/// The MLIR of every example, as written: the snapshot shows codegen changes.
#[test]
fn mlir_of_every_example() {
    let target = Target::Cpu(CpuTarget::xeon_avx512_2core());
    insta::glob!("../../examples", "*.attn", |path| {
        let graph = common::compile_with_passes(path);
        let fused = attnc_passes::fusion::fuse(&graph).expect("fuses");
        let tiled = attnc_passes::tiling::tile(&graph, &fused, &target, None).expect("tiles");
        let (mlir, _, _) = attnc_cpu::generate_mlir(&graph, &fused, &tiled).expect("generates");
        insta::assert_snapshot!("mlir", mlir);
    });
}

#[test]
fn llvm_ir_comes_from_mlirs_translation() {
    let out = common::attnc(&["build", "examples/softcap_causal.attn", "--emit", "llvm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ir = String::from_utf8_lossy(&out.stdout);
    assert!(
        ir.contains("define void @attnc_tile("),
        "no kernel function in the LLVM IR"
    );
    assert!(
        ir.contains("@llvm.tanh") || ir.contains("tanhf"),
        "the soft-cap's tanh is missing"
    );
}

/// The LLVM IR of every example, from MLIR's pipeline and translation. It depends on the MLIR
/// and LLVM 22 release installed (Debian's 22.1.x): a new release that changes it shows here as
/// a diff to review, like any change of the compiler's output.
#[test]
fn llvm_ir_of_every_example() {
    let target = Target::Cpu(CpuTarget::xeon_avx512_2core());
    insta::glob!("../../examples", "*.attn", |path| {
        let graph = common::compile_with_passes(path);
        let fused = attnc_passes::fusion::fuse(&graph).expect("fuses");
        let tiled = attnc_passes::tiling::tile(&graph, &fused, &target, None).expect("tiles");
        let (mlir, _, _) = attnc_cpu::generate_mlir(&graph, &fused, &tiled).expect("generates");
        let llvm = attnc_cpu::lower_to_llvm(&mlir, &tiled.target).expect("lowers");
        insta::assert_snapshot!("llvm", llvm);
    });
}
