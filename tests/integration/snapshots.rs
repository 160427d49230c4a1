//! Every stage's dump of every example, snapshotted: a change in the compiler's output shows up
//! as a readable diff to review, never as a silent change.

use crate::common;
use attnc_frontend::{Sources, print_ast};
use attnc_passes::tiling::target::{CpuTarget, Target};

fn relative_name(path: &std::path::Path) -> String {
    format!(
        "examples/{}",
        path.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default()
    )
}

#[test]
fn ast_of_every_example() {
    insta::glob!("../../examples", "*.attn", |path| {
        let text = std::fs::read_to_string(path).expect("readable example");
        let mut sources = Sources::new();
        let file = sources.add(relative_name(path), text);
        let unit = attnc_frontend::parse_with_prelude(&mut sources, file)
            .unwrap_or_else(|d| panic!("{}", attnc_frontend::render_all(&d, &sources)));
        insta::assert_snapshot!("ast", print_ast::print_program(&unit.program, &sources));
    });
}

#[test]
fn graph_of_every_example() {
    insta::glob!("../../examples", "*.attn", |path| {
        let graph = common::compile(path);
        insta::assert_snapshot!("graph", attnc_ir::dump::dump_graph(&graph));
    });
}

#[test]
fn fused_kernels_of_every_example() {
    insta::glob!("../../examples", "*.attn", |path| {
        let graph = common::compile_with_passes(path);
        let fused = attnc_passes::fusion::fuse(&graph).expect("every example fuses");
        insta::assert_snapshot!(
            "fused",
            attnc_passes::fusion::dump::dump_fused(&graph, &fused)
        );
    });
}

/// Tiled for the CI machine's preset at nominal dims, so the choice is the same everywhere.
#[test]
fn tiled_kernels_of_every_example() {
    let target = Target::Cpu(CpuTarget::xeon_avx512_2core());
    insta::glob!("../../examples", "*.attn", |path| {
        let graph = common::compile_with_passes(path);
        let fused = attnc_passes::fusion::fuse(&graph).expect("every example fuses");
        let tiled =
            attnc_passes::tiling::tile(&graph, &fused, &target, None).expect("every example tiles");
        insta::assert_snapshot!("tiled", attnc_passes::tiling::dump::dump_tiled(&tiled));
    });
}

/// The examples the SPIR-V back end refuses (a vector over the sequence).
const NOT_ON_SPIRV: &[&str] = &["forgetting_attention"];

/// `attnc build FILE --target vulkan --emit spirv` (rspirv's disassembly of the shader, at the
/// examples' default head dims) for every example the back end compiles; the others must be
/// refused as unsupported, and only those in [`NOT_ON_SPIRV`]. The snapshots are compared across
/// processes, so a shader that depended on hash-map order would show here.
#[test]
fn spirv_of_every_example() {
    insta::glob!("../../examples", "*.attn", |path| {
        let rel = relative_name(path);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let out = common::attnc(&["build", &rel, "--target", "vulkan", "--emit", "spirv"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if NOT_ON_SPIRV.contains(&stem.as_str()) {
            assert!(
                !out.status.success() && stderr.contains("unsupported by the SPIR-V back end"),
                "{rel} is listed as unsupported on SPIR-V: {stderr}"
            );
            return;
        }
        assert!(
            out.status.success(),
            "attnc build {rel} for vulkan: {stderr}"
        );
        insta::assert_snapshot!("spirv", String::from_utf8_lossy(&out.stdout));
    });
}

/// The template and the sweeps are what the kernels will be built from: check the facts that
/// matter, beside the snapshots.
#[test]
fn fusion_derives_online_forms_without_special_cases() {
    use attnc_passes::fusion::{Accumulation, Template};
    let sweeps = |name: &str| {
        let graph = common::compile(&common::example(name));
        let fused = attnc_passes::fusion::fuse(&graph).expect("fuses");
        match &fused.kernels[0].template {
            Template::Parallel(p) => p.sweeps.clone(),
            Template::Recurrent(_) => panic!("{name} is parallel"),
        }
    };
    let online_terms = |s: &attnc_passes::fusion::Sweep| -> Vec<usize> {
        s.reductions
            .iter()
            .filter_map(|r| match &r.accumulation {
                Accumulation::Online { terms } => Some(terms.len()),
                Accumulation::Plain { .. } => None,
            })
            .collect()
    };
    for one_sweep in [
        "softmax_causal",
        "gqa_causal",
        "sink_sliding_window",
        "alibi_causal",
        "softcap_causal",
    ] {
        let s = sweeps(one_sweep);
        assert_eq!(s.len(), 1, "{one_sweep} needs one sweep");
        assert_eq!(
            online_terms(&s[0]),
            vec![1, 1],
            "{one_sweep}: l and the aggregation are online"
        );
    }
    // Differential attention: both maps in one sweep, the aggregation with two terms.
    let d = sweeps("differential_causal");
    assert_eq!(d.len(), 1);
    assert_eq!(online_terms(&d[0]), vec![1, 1, 2]);
    // Elementwise normalisers: no statistics at all.
    for elementwise in ["sigmoid_bias", "relu_attention"] {
        let s = sweeps(elementwise);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].reductions.len(),
            1,
            "{elementwise}: only the aggregation"
        );
        assert!(online_terms(&s[0]).is_empty());
    }
    // Statistics with no online form: one sweep per dependent statistic.
    assert_eq!(sweeps("standardized_scores").len(), 3);
}

/// The dumps must not depend on anything but the source (no hash-map order, no addresses).
#[test]
fn graph_dump_is_deterministic() {
    for path in common::example_files() {
        let a = attnc_ir::dump::dump_graph(&common::compile(&path));
        let b = attnc_ir::dump::dump_graph(&common::compile(&path));
        assert_eq!(
            a,
            b,
            "{} dumps differently on a second build",
            path.display()
        );
    }
}

/// The command line prints the same dumps.
#[test]
fn attnc_build_emits_every_stage_of_every_example() {
    for path in common::example_files() {
        let rel = relative_name(&path);
        let out = common::attnc(&["build", &rel, "--emit", "ast,graph,fused,tiled"]);
        assert!(
            out.status.success(),
            "attnc build {rel} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("kernel "), "{rel}: no dump printed");
        assert!(
            stdout.contains(" = output "),
            "{rel}: the graph dump has no output"
        );
    }
}

/// Returning the logsumexp (FlexAttention's `return_lse`) is a second output; written as
/// docs/language.md shows, it shares the softmax's statistics and its one sweep.
#[test]
fn the_logsumexp_as_a_second_output_fuses_into_the_same_sweep() {
    use attnc_passes::fusion::Template;
    let head = "kernel softmax_lse {\n  dim B, H, S, D;\n  input q, k, v: f32[B, H, S, D];\n  \
                output o: f32[B, H, S, D];\n  output lse: f32[B, H, S];\n  \
                let s = dot(q[b, h, i], k[b, h, j]) / sqrt(D);\n  mask j <= i;\n  \
                let m = max_j(s);\n";
    let bodies = [
        "  let l = sum_j(exp(s - m));\n  o[b, h, i] = sum_j(exp(s - m) * v[b, h, j]) / l;\n  \
         lse[b, h, i] = m + log(l);\n}\n",
        "  o[b, h, i] = sum_j(softmax(s) * v[b, h, j]);\n  \
         lse[b, h, i] = m + log(sum_j(exp(s - m)));\n}\n",
    ];
    for (k, body) in bodies.iter().enumerate() {
        let graph = common::compile_source("lse.attn", &format!("{head}{body}"));
        let fused = attnc_passes::fusion::fuse(&graph).expect("fuses");
        assert_eq!(fused.kernels.len(), 1, "{body}");
        match &fused.kernels[0].template {
            Template::Parallel(p) => assert_eq!(p.sweeps.len(), 1, "{body}"),
            Template::Recurrent(_) => panic!("a parallel kernel"),
        }
        let dump = attnc_passes::fusion::dump::dump_fused(&graph, &fused);
        assert!(dump.contains("1 sweep over the key tiles"), "{dump}");
        assert!(dump.contains(" lse"), "the epilogue writes lse:\n{dump}");
        // Written from shared statistics: one running max (the prelude's softmax has its own).
        let maxima = dump.matches("running max_j").count();
        assert_eq!(maxima, if k == 0 { 1 } else { 2 }, "{dump}");
    }
}
