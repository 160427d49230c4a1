//! Tests of the MLIR edge, end to end: MLIR text through parse, the CPU lowering pipeline, LLVM IR
//! and the host JIT, with the kernels' outputs compared with Rust loops on seeded random inputs.
//!
//! One test binary on purpose: each binary links MLIR and LLVM statically (hundreds of MB).
//! Outputs start as NaN, so an element a kernel forgot to write fails the comparison.

use attnc_mlir::{
    Arg, ArgumentError, CPU_LOWERING_PIPELINE, HostCpu, HostJit, JitOptions, KernelSignature,
    MlirError, MlirModule, MlirSession,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::{process::Command, sync::Barrier, time::Instant};

const SOFTMAX: &str = include_str!("kernels/softmax.mlir");
const UNARY_MATH: &str = include_str!("kernels/unary_math.mlir");
const VECTOR_ROWS: &str = include_str!("kernels/vector_rows.mlir");
const AXPY: &str = include_str!("kernels/axpy.mlir");
const ATTENTION: &str = include_str!("kernels/attention.mlir");

/// The signatures as a bundle manifest would store them.
const SOFTMAX_SIGNATURE: &str = r#"{"name": "softmax_rows", "params": [
    {"kind": "buffer", "name": "x", "element": "f32", "access": "read", "extent": ["rows", "cols"]},
    {"kind": "buffer", "name": "y", "element": "f32", "access": "write", "extent": ["rows", "cols"]},
    {"kind": "int", "name": "rows"},
    {"kind": "int", "name": "cols"},
    {"kind": "f32", "name": "cap"}]}"#;
const UNARY_MATH_SIGNATURE: &str = r#"{"name": "unary_math", "params": [
    {"kind": "buffer", "name": "x", "element": "f32", "access": "read", "extent": ["n"]},
    {"kind": "buffer", "name": "out", "element": "f32", "access": "write", "extent": [5, "n"]},
    {"kind": "int", "name": "n"}]}"#;
const VECTOR_ROWS_SIGNATURE: &str = r#"{"name": "vector_rows", "params": [
    {"kind": "buffer", "name": "a", "element": "f32", "access": "read", "extent": ["rows", "cols"]},
    {"kind": "buffer", "name": "b", "element": "f32", "access": "read", "extent": ["cols"]},
    {"kind": "buffer", "name": "dots", "element": "f32", "access": "write", "extent": ["rows"]},
    {"kind": "buffer", "name": "fused", "element": "f32", "access": "write", "extent": ["rows", "cols"]},
    {"kind": "int", "name": "rows"},
    {"kind": "int", "name": "cols"}]}"#;
const AXPY_SIGNATURE: &str = r#"{"name": "axpy", "params": [
    {"kind": "buffer", "name": "x", "element": "f32", "access": "read", "extent": ["n"]},
    {"kind": "buffer", "name": "y", "element": "f32", "access": "read_write", "extent": ["n"]},
    {"kind": "int", "name": "n"},
    {"kind": "f32", "name": "a"}]}"#;
const ATTENTION_SIGNATURE: &str = r#"{"name": "attention", "params": [
    {"kind": "buffer", "name": "q", "element": "f32", "access": "read", "extent": ["nq", 64]},
    {"kind": "buffer", "name": "k", "element": "f32", "access": "read", "extent": ["nk", 64]},
    {"kind": "buffer", "name": "v", "element": "f32", "access": "read", "extent": ["nk", 64]},
    {"kind": "buffer", "name": "o", "element": "f32", "access": "write", "extent": ["nq", 64]},
    {"kind": "int", "name": "nq"},
    {"kind": "int", "name": "nk"},
    {"kind": "f32", "name": "scale"}]}"#;

fn signature(json: &str) -> KernelSignature {
    serde_json::from_str(json).expect("test signature is valid JSON")
}

/// Parses and lowers `text` with the CPU pipeline.
fn lowered<'s>(session: &'s MlirSession, text: &str) -> MlirModule<'s> {
    let mut module = session.parse(text).expect("kernel parses");
    module.verify().expect("kernel verifies");
    module
        .run_pipeline(CPU_LOWERING_PIPELINE)
        .expect("CPU pipeline runs");
    module
}

fn jit(text: &str, signatures: &[&str]) -> HostJit {
    let session = MlirSession::new();
    let module = lowered(&session, text);
    let signatures: Vec<_> = signatures.iter().map(|json| signature(json)).collect();
    HostJit::compile(&module, &signatures, JitOptions::default()).expect("JIT compiles")
}

fn random(rng: &mut ChaCha8Rng, len: usize, low: f32, high: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(low..high)).collect()
}

/// |got - want| <= tol · max(1, |want|) for every element (NaN fails).
fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (index, (&got, &want)) in got.iter().zip(want).enumerate() {
        let error = (f64::from(got) - want).abs();
        assert!(
            error <= tol * want.abs().max(1.0),
            "{what}[{index}]: got {got}, want {want}"
        );
    }
}

fn softmax_reference(x: &[f32], cols: usize, cap: f32) -> Vec<f64> {
    let cap = f64::from(cap);
    x.chunks(cols)
        .flat_map(|row| {
            let capped: Vec<f64> = row
                .iter()
                .map(|&v| cap * (f64::from(v) / cap).tanh())
                .collect();
            let max = capped.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = capped.iter().map(|&s| (s - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            exps.into_iter().map(move |e| e / sum)
        })
        .collect()
}

/// erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7): Rust's std has none.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    (1.0 - poly * (-x * x).exp()).copysign(x)
}

#[test]
fn parse_error_carries_mlirs_message_and_location() {
    let session = MlirSession::new();
    let text =
        "func.func @f(%a: f32) -> f32 {\n  %b = arith.addf %a, %c : f32\n  return %b : f32\n}\n";
    let Err(MlirError::Parse { diagnostics }) = session.parse(text) else {
        panic!("an undefined value must not parse");
    };
    println!("{diagnostics}");
    assert!(diagnostics.contains("2:"), "no line in: {diagnostics}");
    assert!(
        diagnostics.contains("use of undeclared SSA value name"),
        "not MLIR's message: {diagnostics}"
    );
    // The session stays usable after an error.
    session
        .parse(SOFTMAX)
        .expect("a good module parses after a bad one");
}

#[test]
fn pipeline_errors_carry_the_reason() {
    let session = MlirSession::new();
    let mut module = session.parse(SOFTMAX).expect("parses");
    match module.run_pipeline("builtin.module(no-such-pass)") {
        Err(MlirError::PipelineSyntax { message, .. }) => {
            assert!(message.contains("no-such-pass"), "{message}");
        }
        other => panic!("expected a pipeline syntax error, got {other:?}"),
    }
    // A full conversion that cannot convert `arith.maximumf` fails the pipeline.
    match module.run_pipeline("builtin.module(convert-arith-to-emitc)") {
        Err(MlirError::Pipeline { diagnostics, .. }) => {
            println!("{diagnostics}");
            assert!(
                diagnostics.contains("22:12: error: failed to legalize operation 'arith.maximumf'"),
                "{diagnostics}"
            );
        }
        other => panic!("expected the pipeline to fail, got {other:?}"),
    }
}

#[test]
fn unlowered_modules_are_refused_with_reasons() {
    let session = MlirSession::new();
    let module = session.parse(VECTOR_ROWS).expect("parses");
    match module.to_llvm_ir() {
        Err(MlirError::Translate { diagnostics }) => {
            println!("{diagnostics}");
            assert!(diagnostics.contains("error:"), "{diagnostics}");
        }
        other => panic!("an unlowered module must not translate, got {other:?}"),
    }
    let signatures = [signature(VECTOR_ROWS_SIGNATURE)];
    match HostJit::compile(&module, &signatures, JitOptions::default()) {
        Err(MlirError::Signature { problem, .. }) => assert!(problem.contains("llvm.func")),
        Err(other) => panic!("expected a signature error, got {other}"),
        Ok(_) => panic!("an unlowered module must not compile"),
    }
}

#[test]
fn llvm_ir_text_defines_the_kernels() {
    let session = MlirSession::new();
    let module = lowered(&session, &format!("{SOFTMAX}{UNARY_MATH}"));
    let ir = module.to_llvm_ir().expect("translates");
    assert!(ir.contains("define void @softmax_rows(ptr"), "{ir}");
    // erf has no LLVM intrinsic, so it must be a libm call; exp stays an intrinsic.
    assert!(ir.contains("declare float @erff(float)"), "{ir}");
    assert!(ir.contains("@llvm.exp.v16f32"), "{ir}");
}

#[test]
fn softmax_matches_rust() {
    let jit = jit(SOFTMAX, &[SOFTMAX_SIGNATURE]);
    let kernel = jit.kernel("softmax_rows").expect("compiled");
    let (rows, cols, cap) = (13, 77, 20.0_f32);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = random(&mut rng, rows * cols, -30.0, 30.0);
    let mut y = vec![f32::NAN; rows * cols];
    kernel
        .call(&[
            Arg::input(&x),
            Arg::output(&mut y),
            Arg::Int(rows as i64),
            Arg::Int(cols as i64),
            Arg::F32(cap),
        ])
        .expect("call");
    assert_close("softmax", &y, &softmax_reference(&x, cols, cap), 1e-5);
}

#[test]
fn softmax_from_two_threads_at_once_on_disjoint_rows() {
    let jit = jit(SOFTMAX, &[SOFTMAX_SIGNATURE]);
    let kernel = jit.kernel("softmax_rows").expect("compiled");
    let (rows, cols, cap) = (64, 256, 15.0_f32);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = random(&mut rng, rows * cols, -20.0, 20.0);
    let mut y = vec![f32::NAN; rows * cols];
    let half = rows / 2 * cols;
    let (x_top, x_bottom) = x.split_at(half);
    let (y_top, y_bottom) = y.split_at_mut(half);
    // The barrier makes both threads enter the kernel together, many times.
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        for (x, y) in [(x_top, y_top), (x_bottom, y_bottom)] {
            let barrier = &barrier;
            scope.spawn(move || {
                for _ in 0..20 {
                    barrier.wait();
                    y.fill(f32::NAN);
                    let rows = (x.len() / cols) as i64;
                    let args = [
                        Arg::input(x),
                        Arg::output(y),
                        Arg::Int(rows),
                        Arg::Int(cols as i64),
                        Arg::F32(cap),
                    ];
                    kernel.call(&args).expect("call");
                }
            });
        }
    });
    assert_close(
        "softmax (2 threads)",
        &y,
        &softmax_reference(&x, cols, cap),
        1e-5,
    );
}

#[test]
fn softmax_over_rayon_work_items() {
    let jit = jit(SOFTMAX, &[SOFTMAX_SIGNATURE]);
    let kernel = jit.kernel("softmax_rows").expect("compiled");
    let (rows, cols, rows_per_item, cap) = (96, 100, 4, 30.0_f32);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = random(&mut rng, rows * cols, -50.0, 50.0);
    let mut y = vec![f32::NAN; rows * cols];
    y.par_chunks_mut(rows_per_item * cols)
        .zip(x.par_chunks(rows_per_item * cols))
        .for_each(|(y, x)| {
            let args = [
                Arg::input(x),
                Arg::output(y),
                Arg::Int(rows_per_item as i64),
                Arg::Int(cols as i64),
                Arg::F32(cap),
            ];
            kernel.call(&args).expect("call");
        });
    assert_close(
        "softmax (rayon)",
        &y,
        &softmax_reference(&x, cols, cap),
        1e-5,
    );
}

#[test]
fn math_ops_work_in_the_jit_on_scalars_and_vectors() {
    let vec_signature = UNARY_MATH_SIGNATURE.replace("\"unary_math\"", "\"unary_math_vec\"");
    let jit = jit(UNARY_MATH, &[UNARY_MATH_SIGNATURE, &vec_signature]);
    let n = 160;
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x = random(&mut rng, n, 0.05, 4.0);
    let functions: [fn(f64) -> f64; 5] = [f64::exp, f64::ln, f64::tanh, f64::sqrt, erf];
    let want: Vec<f64> = functions
        .iter()
        .flat_map(|f| x.iter().map(|&v| f(f64::from(v))))
        .collect();
    for name in ["unary_math", "unary_math_vec"] {
        let mut out = vec![f32::NAN; 5 * n];
        let kernel = jit.kernel(name).expect("compiled");
        kernel
            .call(&[Arg::input(&x), Arg::output(&mut out), Arg::Int(n as i64)])
            .expect("call");
        assert_close(name, &out, &want, 2e-6);
    }
}

#[test]
fn explicit_vector_kernel_matches_rust() {
    let jit = jit(VECTOR_ROWS, &[VECTOR_ROWS_SIGNATURE]);
    let kernel = jit.kernel("vector_rows").expect("compiled");
    let (rows, cols) = (9, 128);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let a = random(&mut rng, rows * cols, -1.0, 1.0);
    let b = random(&mut rng, cols, -1.0, 1.0);
    let mut dots = vec![f32::NAN; rows];
    let mut fused = vec![f32::NAN; rows * cols];
    kernel
        .call(&[
            Arg::input(&a),
            Arg::input(&b),
            Arg::output(&mut dots),
            Arg::output(&mut fused),
            Arg::Int(rows as i64),
            Arg::Int(cols as i64),
        ])
        .expect("call");
    let product = |r: usize, j: usize| f64::from(a[r * cols + j]) * f64::from(b[j]);
    let want_dots: Vec<f64> = (0..rows)
        .map(|r| (0..cols).map(|j| product(r, j)).sum())
        .collect();
    let want_fused: Vec<f64> = (0..rows * cols)
        .map(|i| product(i / cols, i % cols) + 1.0)
        .collect();
    assert_close("dots", &dots, &want_dots, 1e-5);
    assert_close("fused", &fused, &want_fused, 1e-6);
}

#[test]
fn attention_matches_rust() {
    let jit = jit(ATTENTION, &[ATTENTION_SIGNATURE]);
    let kernel = jit.kernel("attention").expect("compiled");
    let (nq, nk, d) = (37, 300, 64);
    let scale = 1.0 / (d as f32).sqrt();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let q = random(&mut rng, nq * d, -2.0, 2.0);
    let k = random(&mut rng, nk * d, -2.0, 2.0);
    let v = random(&mut rng, nk * d, -1.0, 1.0);
    let mut o = vec![f32::NAN; nq * d];
    kernel
        .call(&[
            Arg::input(&q),
            Arg::input(&k),
            Arg::input(&v),
            Arg::output(&mut o),
            Arg::Int(nq as i64),
            Arg::Int(nk as i64),
            Arg::F32(scale),
        ])
        .expect("call");
    let mut want = Vec::with_capacity(nq * d);
    for i in 0..nq {
        let scores: Vec<f64> = (0..nk)
            .map(|j| {
                let dot: f64 = (0..d)
                    .map(|c| f64::from(q[i * d + c]) * f64::from(k[j * d + c]))
                    .sum();
                dot * f64::from(scale)
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f64 = weights.iter().sum();
        want.extend((0..d).map(|c| {
            (0..nk)
                .map(|j| weights[j] * f64::from(v[j * d + c]))
                .sum::<f64>()
                / sum
        }));
    }
    assert_close("attention", &o, &want, 1e-5);
}

#[test]
fn signatures_and_arguments_are_checked() {
    let session = MlirSession::new();
    let module = lowered(&session, SOFTMAX);
    let mut wrong = signature(SOFTMAX_SIGNATURE);
    wrong.params.pop();
    match HostJit::compile(&module, &[wrong], JitOptions::default()) {
        Err(MlirError::Signature { problem, .. }) => {
            assert!(
                problem.contains("!llvm.func<void (ptr, ptr, i64, i64)>"),
                "{problem}"
            );
        }
        Err(other) => panic!("expected a signature error, got {other}"),
        Ok(_) => panic!("a signature missing a parameter must be refused"),
    }
    let jit = HostJit::compile(
        &module,
        &[signature(SOFTMAX_SIGNATURE)],
        JitOptions::default(),
    )
    .expect("compiles");
    assert!(jit.kernel("nope").is_err());
    let kernel = jit.kernel("softmax_rows").expect("compiled");
    let x = vec![0.0_f32; 12];
    let mut y = vec![f32::NAN; 12];
    let refusal = |args: &[Arg]| match kernel.call(args) {
        Err(MlirError::Arguments { source, .. }) => source,
        other => panic!("expected refused arguments, got {other:?}"),
    };
    assert_eq!(
        refusal(&[Arg::input(&x)]),
        ArgumentError::Count {
            expected: 5,
            got: 1
        }
    );
    let source = refusal(&[
        Arg::input(&x),
        Arg::input(&y),
        Arg::Int(3),
        Arg::Int(4),
        Arg::F32(1.0),
    ]);
    assert!(matches!(source, ArgumentError::ReadOnly { .. }), "{source}");
    let source = refusal(&[
        Arg::input(&x),
        Arg::output(&mut y),
        Arg::Int(3),
        Arg::Int(5),
        Arg::F32(1.0),
    ]);
    assert!(
        matches!(source, ArgumentError::TooShort { needed: 15, .. }),
        "{source}"
    );
    let source = refusal(&[
        Arg::input(&x),
        Arg::output(&mut y),
        Arg::Int(-3),
        Arg::Int(4),
        Arg::F32(1.0),
    ]);
    assert!(
        matches!(source, ArgumentError::BadExtent { .. }),
        "{source}"
    );
    let source = refusal(&[
        Arg::input(&x),
        Arg::output(&mut y),
        Arg::F32(3.0),
        Arg::Int(4),
        Arg::F32(1.0),
    ]);
    assert!(
        matches!(source, ArgumentError::Kind { index: 2, .. }),
        "{source}"
    );
    // Nothing ran: the output is untouched.
    assert!(y.iter().all(|v| v.is_nan()));
}

#[test]
fn signatures_round_trip_through_json() {
    let parsed = signature(ATTENTION_SIGNATURE);
    let json = serde_json::to_string(&parsed).expect("serialises");
    assert!(json.contains(r#""extent":["nq",64]"#), "{json}");
    assert_eq!(signature(&json), parsed);
}

/// The JIT's machine code as `llvm-objdump-22 -d` lists it (compiled with `keep_object`).
fn disassembly(jit: &HostJit) -> String {
    let directory = tempfile::tempdir().expect("temp dir");
    let object = directory.path().join("kernels.o");
    jit.write_object_file(&object).expect("object written");
    let output = Command::new("llvm-objdump-22")
        .arg("-d")
        .arg(&object)
        .output()
        .expect("llvm-objdump-22 runs (package llvm-22)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The JIT targets the host CPU: with AVX-512 the explicit vector<16xf32> kernel uses zmm
/// registers, and the loop LLVM vectorises itself uses vector registers (zmm, or ymm on the
/// Intel server cores whose LLVM tuning prefers 256-bit loops: Sapphire and Emerald Rapids).
#[test]
fn jit_code_uses_the_hosts_widest_vectors() {
    let cpu = HostCpu::detect();
    println!("host CPU: {} (avx512f: {})", cpu.name, cpu.has("avx512f"));
    let session = MlirSession::new();
    let module = lowered(&session, &format!("{VECTOR_ROWS}{AXPY}"));
    let signatures = [signature(VECTOR_ROWS_SIGNATURE), signature(AXPY_SIGNATURE)];
    let options = JitOptions {
        keep_object: true,
        ..JitOptions::default()
    };
    let jit = HostJit::compile(&module, &signatures, options).expect("compiles");
    let listing = disassembly(&jit);
    let count_in = |function: &str, register: &str| {
        let header = format!("<{function}>:");
        listing
            .split("\n\n")
            .filter(|block| block.contains(&header))
            .flat_map(str::lines)
            .filter(|line| line.contains(register))
            .count()
    };
    let explicit = count_in("vector_rows", "zmm");
    let (looped_zmm, looped_ymm) = (count_in("axpy", "zmm"), count_in("axpy", "ymm"));
    println!("instructions: vector_rows {explicit} zmm; axpy {looped_zmm} zmm, {looped_ymm} ymm");
    if cpu.has("avx512f") {
        assert!(explicit > 0, "no zmm in vector_rows:\n{listing}");
        assert!(
            looped_zmm + looped_ymm > 0,
            "the axpy loop was not vectorised:\n{listing}"
        );
    }

    // Throughput of the auto-vectorised loop: scalar code manages about one element per cycle.
    let kernel = jit.kernel("axpy").expect("compiled");
    let n = 1 << 14;
    let x = vec![1.0_f32; n];
    let mut y = vec![0.0_f32; n];
    let repeats = 2000;
    let start = Instant::now();
    for _ in 0..repeats {
        let args = [
            Arg::input(&x),
            Arg::output(&mut y),
            Arg::Int(n as i64),
            Arg::F32(0.5),
        ];
        kernel.call(&args).expect("call");
    }
    let per_ns = (n * repeats) as f64 / start.elapsed().as_nanos() as f64;
    println!("axpy: {per_ns:.1} elements/ns");
    assert!(y.iter().all(|&v| v == 0.5 * repeats as f32));
}

/// A module marked for another CPU model (`set_target_cpu`) gets that ISA's code whatever the
/// host: for Haswell the explicit vector<16xf32> kernel and the vectorised loop use ymm
/// registers and no zmm, and the results are the same.
#[test]
fn a_module_marked_for_haswell_gets_avx2_code_on_any_host() {
    let session = MlirSession::new();
    let mut module = lowered(&session, &format!("{VECTOR_ROWS}{AXPY}"));
    module
        .set_target_cpu("haswell", "+avx,+avx2,+fma")
        .expect("features parse");
    let llvm = module.to_llvm_ir().expect("translates");
    assert!(
        llvm.contains("\"target-cpu\"=\"haswell\"") && llvm.contains("+avx2"),
        "{llvm}"
    );
    let signatures = [signature(VECTOR_ROWS_SIGNATURE), signature(AXPY_SIGNATURE)];
    let options = JitOptions {
        keep_object: true,
        ..JitOptions::default()
    };
    let jit = HostJit::compile(&module, &signatures, options).expect("compiles");
    let listing = disassembly(&jit);
    assert!(
        !listing.contains("zmm"),
        "AVX-512 code for haswell:\n{listing}"
    );
    assert!(
        listing.contains("ymm"),
        "no AVX code for haswell:\n{listing}"
    );
    let kernel = jit.kernel("axpy").expect("compiled");
    let n = 1000;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut y = vec![1.0_f32; n];
    let args = [
        Arg::input(&x),
        Arg::output(&mut y),
        Arg::Int(n as i64),
        Arg::F32(0.5),
    ];
    kernel.call(&args).expect("call");
    assert!(
        y.iter()
            .enumerate()
            .all(|(i, &v)| v == 1.0 + 0.5 * i as f32),
        "{y:?}"
    );
}

/// Parse, lower and JIT all test kernels at once: 234 lines of MLIR, 6 functions.
#[test]
fn whole_compile_of_a_200_line_module_is_fast() {
    let text = [SOFTMAX, UNARY_MATH, VECTOR_ROWS, AXPY, ATTENTION].concat();
    let signatures: Vec<KernelSignature> = [
        SOFTMAX_SIGNATURE,
        UNARY_MATH_SIGNATURE,
        VECTOR_ROWS_SIGNATURE,
        AXPY_SIGNATURE,
        ATTENTION_SIGNATURE,
    ]
    .iter()
    .map(|json| signature(json))
    .collect();
    let start = Instant::now();
    let session = MlirSession::new();
    let created = start.elapsed();
    let mut module = session.parse(&text).expect("parses");
    let parsed = start.elapsed();
    module
        .run_pipeline(CPU_LOWERING_PIPELINE)
        .expect("pipeline");
    let piped = start.elapsed();
    let jit = HostJit::compile(&module, &signatures, JitOptions::default()).expect("JIT");
    let total = start.elapsed();
    println!(
        "{} lines: session {:?}, parse {:?}, pipeline {:?}, JIT -O3 {:?}, total {:?}",
        text.lines().count(),
        created,
        parsed - created,
        piped - parsed,
        total - piped,
        total
    );
    assert!(jit.kernel("attention").is_ok());
    // The target is well under 0.5 s; the bound leaves room for a loaded CI machine.
    assert!(total.as_secs_f64() < 2.0, "compile took {total:?}");
}
