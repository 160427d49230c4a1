//! Issue 17's crashes and aborts, through the real binary: deep expressions (also reached by
//! `attnc plan`), sizes that overflow or exceed memory, a closed stdout, exit codes by kind of
//! failure, and destinations checked before a run.

use crate::common;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A fresh folder for this test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("attnc-robust-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A causal softmax kernel whose score gets `terms` additions in one expression.
fn deep_kernel(terms: usize) -> String {
    format!(
        "kernel deep {{
  dim B, H, S, D;
  input q, k, v: f32[B, H, S, D];
  output o: f32[B, H, S, D];
  let s = dot(q[b, h, i], k[b, h, j]){};
  mask j <= i;
  o[b, h, i] = sum_j(softmax(s) * v[b, h, j]);
}}
",
        " + 1.0".repeat(terms)
    )
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_deep_expression_is_a_located_error_in_build_and_in_plan() {
    let dir = scratch("deep");
    let kernel = dir.join("deep.attn");
    std::fs::write(&kernel, deep_kernel(18_000)).expect("write");
    let out = common::attnc(&["build", kernel.to_str().expect("utf-8")]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("deep.attn:5:"), "{}", stderr(&out));
    let model = dir.join("model.toml");
    std::fs::write(
        &model,
        "name = \"deep\"\nlayers = 2\nhidden = 256\nheads = 4\nkv_heads = 4\nhead_dim = 64\nmlp_hidden = 512\ndtype = \"f32\"\nbatch = 1\nseq = 128\nattention = \"deep.attn\"\n",
    )
    .expect("write");
    let out = common::attnc(&[
        "plan",
        model.to_str().expect("utf-8"),
        "--devices",
        "runtime/planner/profiles/workstation.toml",
    ]);
    assert!(!out.status.success());
    assert!(code(&out) != 101, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nested more than"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn huge_shapes_fail_with_the_bytes_needed_not_an_abort() {
    for shape in [
        "B=1,H=1,S=100000000,D=64",
        "B=9223372036854775807,H=1,S=4,D=4",
    ] {
        let out = common::attnc(&["run", "examples/softmax_causal.attn", "--shape", shape]);
        assert_eq!(code(&out), 4, "{shape}: {}", stderr(&out));
        assert!(stderr(&out).contains("bytes"), "{shape}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("panicked"),
            "{shape}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn tiling_a_huge_sequence_is_quick_and_does_not_overflow() {
    for s in ["1000000000", "1000000000000"] {
        let start = Instant::now();
        let out = common::attnc(&[
            "build",
            "examples/sliding_window.attn",
            "--emit",
            "tiled",
            "--shape",
            &format!("B=1,H=1,S={s},D=64"),
        ]);
        assert!(out.status.success(), "S={s}: {}", stderr(&out));
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "S={s} took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn a_closed_stdout_ends_the_dump_quietly() {
    let dir = scratch("pipe");
    let kernel = dir.join("lets.attn");
    // Enough lets that the dump fills the pipe long before it ends.
    let mut body = String::new();
    for n in 0..20_000 {
        body.push_str(&format!("  let u{n} = s + {n}.0;\n  mask u{n} > -1e30;\n"));
    }
    let text = deep_kernel(0).replace("  mask j <= i;\n", &body);
    std::fs::write(&kernel, text).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_attnc"))
        .args([
            "build",
            kernel.to_str().expect("utf-8"),
            "--emit",
            "ast,graph",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 16];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("some output");
    // Dropping the read end closes the pipe, as `| head -c 16` does.
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn exit_codes_tell_the_kinds_of_failure_apart() {
    let help = common::attnc(&["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for line in ["Exit status", "1 ", "2 ", "3 ", "4 ", "101"] {
        assert!(text.contains(line), "--help lacks `{line}`:\n{text}");
    }
    let user = common::attnc(&["build", "tests/ui/unknown_name.attn"]);
    assert_eq!(code(&user), 1, "{}", stderr(&user));
    let usage = common::attnc(&["build", "examples/softmax_causal.attn", "--shape", "S=x"]);
    assert_eq!(code(&usage), 2, "{}", stderr(&usage));
    let missing = common::attnc(&["build", "no/such/file.attn"]);
    assert_eq!(code(&missing), 2, "{}", stderr(&missing));
    let flag = common::attnc(&["build", "--no-such-flag"]);
    assert_eq!(code(&flag), 2, "{}", stderr(&flag));
    // A check that finds a difference: scores of inputs near 1e30 overflow f32 in the compiled
    // kernel and not f64 in the reference, a real difference that --check must report.
    let dir = scratch("check");
    let kernel = dir.join("huge.attn");
    std::fs::write(
        &kernel,
        "kernel huge {\n  dim B, H, S, D;\n  input q, k, v: f32[B, H, S, D] in [1e20, 1e30];\n  output o: f32[B, H, S, D];\n  o[b, h, i] = sum_j(softmax(dot(q[b, h, i], k[b, h, j])) * v[b, h, j]);\n}\n",
    )
    .expect("write");
    let path = kernel.to_str().expect("utf-8");
    let check = common::attnc(&["run", path, "--shape", "B=1,H=1,S=8,D=4", "--check"]);
    assert_eq!(code(&check), 3, "{}", stderr(&check));
    if !attnc_cuda::driver_present() {
        let args = ["run", "examples/softmax_causal.attn", "--device", "cuda"];
        let device = common::attnc(&args);
        assert_eq!(code(&device), 4, "{}", stderr(&device));
    }
}

#[test]
fn a_panic_reaches_the_user_as_an_internal_compiler_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_attnc"))
        .args(["build", "examples/softmax_causal.attn"])
        .current_dir(common::repo_root())
        .env("ATTNC_DEBUG_PANIC", "1")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the attnc binary runs");
    assert_eq!(code(&out), 101, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("internal compiler error: attnc panicked at ")
            && err.contains("ATTNC_DEBUG_PANIC is set")
            && err.contains("please report it"),
        "{err}"
    );
    assert!(
        !err.contains("thread '") && !err.contains("RUST_BACKTRACE"),
        "Rust's own panic message reached the user:\n{err}"
    );
}

#[test]
fn flags_that_do_not_go_together_and_bad_model_files_exit_with_their_kind() {
    let k = "examples/softmax_causal.attn";
    let model = "runtime/planner/models/llama_1b.toml";
    let phones = "runtime/planner/profiles/phones.toml";
    let usage: &[&[&str]] = &[
        &["build", k, "--emit", "ast,graph", "-o", "k.txt"],
        &["build", k, "--tile", "64x64"],
        &["build", k, "--emit", "ptx"],
        &["build", k, "--target", "vulkan", "--emit", "mlir"],
        &["build", k, "--target", "cuda:sm_80", "--emit", "spirv"],
        &["build", k, "--print-after-all", "--format", "json"],
        &["build", k, "--out-dir", "no/such/folder"],
        &[
            "plan",
            model,
            "--devices",
            phones,
            "--compare",
            "--format",
            "json",
        ],
        &["plan", "no/such/model.toml", "--devices", phones],
        &["plan", model, "--devices", "no/such/profile.toml"],
        &["run", k, "--inputs", "no/such/inputs.npz"],
        &["bench", k, "--inputs", "no/such/inputs.npz"],
    ];
    for args in usage {
        let out = common::attnc(args);
        assert_eq!(code(&out), 2, "attnc {}: {}", args.join(" "), stderr(&out));
    }
    // A model file whose field is wrong is the user's input, like a kernel (exit 1).
    let dir = scratch("model");
    let shipped = std::fs::read_to_string(common::repo_root().join(model)).expect("the model");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, shipped.replace("kv_heads = 8", "kv_heads = 5")).expect("write");
    let out = common::attnc(&["plan", bad.to_str().expect("utf-8"), "--devices", phones]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("field `kv_heads`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unsupported_or_internal_failure_of_the_cpu_backend_names_a_place() {
    // issue 17: `float(` replaced by `max_j(` in t5_bucketed_bias; the reference runs it.
    let dir = scratch("t5");
    let source = std::fs::read_to_string(common::example("t5_bucketed_bias")).expect("read");
    let kernel = dir.join("t5_max_j.attn");
    std::fs::write(&kernel, source.replace("float(", "max_j(")).expect("write");
    let path = kernel.to_str().expect("utf-8");
    let shape = "B=1,H=2,S=16,D=8";
    let reference = common::attnc(&["run", path, "--shape", shape, "--device", "reference"]);
    assert!(reference.status.success(), "{}", stderr(&reference));
    let cpu = common::attnc(&["run", path, "--shape", shape, "--device", "cpu"]);
    if !cpu.status.success() {
        assert!(stderr(&cpu).contains("t5_max_j.attn:"), "{}", stderr(&cpu));
    }
}

#[test]
fn outputs_are_checked_before_the_kernel_runs() {
    let dir = scratch("dest");
    let inputs = dir.join("in.npz");
    let inputs_arg = inputs.to_str().expect("utf-8");
    let shape = "B=1,H=1,S=8,D=4";
    let saved = common::attnc(&[
        "run",
        "examples/softmax_causal.attn",
        "--shape",
        shape,
        "--save-inputs",
        inputs_arg,
    ]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    let before = std::fs::read(&inputs).expect("read");
    let same = common::attnc(&[
        "run",
        "examples/softmax_causal.attn",
        "--inputs",
        inputs_arg,
        "--output",
        inputs_arg,
    ]);
    assert!(!same.status.success());
    assert!(
        stderr(&same).contains("overwrite its own inputs"),
        "{}",
        stderr(&same)
    );
    assert_eq!(
        std::fs::read(&inputs).expect("read"),
        before,
        "inputs untouched"
    );
    let folder = dir.join("out.npz");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let unwritable = common::attnc(&[
        "run",
        "examples/softmax_causal.attn",
        "--shape",
        shape,
        "--output",
        folder.to_str().expect("utf-8"),
    ]);
    assert!(!unwritable.status.success());
    assert!(
        stderr(&unwritable).contains("cannot be written"),
        "{}",
        stderr(&unwritable)
    );
    // Reported before the run: nothing was printed about one.
    assert!(!String::from_utf8_lossy(&unwritable.stdout).contains("time"));
}

#[test]
fn the_fused_dump_sees_through_a_let_in_the_mask() {
    // issue 17: `let p = i; mask j <= p;` was described as a mask that "reads input data".
    let dir = scratch("letmask");
    let source = std::fs::read_to_string(common::example("softmax_causal"))
        .expect("read")
        .replace("mask j <= i;", "let p = i;\n  mask j <= p;");
    let kernel = dir.join("let_mask.attn");
    std::fs::write(&kernel, source).expect("write");
    let out = common::attnc(&["build", kernel.to_str().expect("utf-8"), "--emit", "fused"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(
        dump.contains("decided per tile from the indices alone"),
        "{dump}"
    );
    assert!(!dump.contains("reads input data"), "{dump}");
}

#[test]
fn bench_counts_a_recurrence_s_work_as_its_chunked_form() {
    // issue 17: recurrences printed 0.00 GFLOP/s (no contraction to count), then the scan's
    // work; the count is the chunked form's contractions, the same under --scan. S = 100 is no
    // multiple of any chunk length, so the last chunk's shorter count matters.
    let bench = |example: &str, shape: &str, scan: bool| {
        let mut args = vec![
            "bench", example, "--shape", shape, "--repeat", "1", "--json",
        ];
        if scan {
            args.push("--scan");
        }
        let out = common::attnc(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("bench --json prints one document");
        let chunk = json["chunk"].as_u64().expect("a chunked form's chunk") as f64;
        (json["useful_flops"].as_f64().expect("useful_flops"), chunk)
    };
    // Per chunk of c steps with R x C states: 2cRC per state update term, 2cRC for the read-out
    // against the carried state, c(c+1)/2 (2R + 2C) per term for the intra-chunk pairs; the delta
    // rule adds a term, its own 2cRC product with the state and c(c-1)/2 (2R + 2C).
    let expected = |steps: f64, chunk: f64, r: f64, cols: f64, delta: bool| {
        let mut total = 0.0;
        let mut start = 0.0;
        while start < steps {
            let c = chunk.min(steps - start);
            let terms = if delta { 2.0 } else { 1.0 };
            total += terms * 2.0 * c * r * cols
                + 2.0 * c * r * cols
                + terms * c * (c + 1.0) / 2.0 * (2.0 * r + 2.0 * cols);
            if delta {
                total += 2.0 * c * r * cols + c * (c - 1.0) / 2.0 * (2.0 * r + 2.0 * cols);
            }
            start += chunk;
        }
        total
    };
    for (example, shape, slices, r, cols, delta) in [
        (
            "examples/retention.attn",
            "B=1,H=2,S=100,D=16",
            2.0,
            16.0,
            16.0,
            false,
        ),
        (
            "examples/deltanet.attn",
            "B=2,H=1,S=100,D=16,Dv=8",
            2.0,
            16.0,
            8.0,
            true,
        ),
    ] {
        let (flops, chunk) = bench(example, shape, false);
        let want = slices * expected(100.0, chunk, r, cols, delta);
        assert!(
            (flops - want).abs() <= 1e-9 * want,
            "{example}: {flops} != {want}"
        );
        assert_eq!(
            bench(example, shape, true),
            (flops, chunk),
            "{example} under --scan"
        );
    }
    let help = common::attnc(&["bench", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("counts useful work") && help.contains("chunked form"),
        "{help}"
    );
}

#[test]
fn a_plan_at_a_million_tokens_is_quick() {
    // issue 17: measuring the causal mask's density at S = 1,048,576 took over 20 s (42 s here
    // in a debug build); it samples the key positions now.
    let dir = scratch("long");
    let model =
        std::fs::read_to_string(common::repo_root().join("runtime/planner/models/llama_1b.toml"))
            .expect("read")
            .replace("seq = 512", "seq = 1048576")
            .replace("batch = 8", "batch = 1")
            .replace(
                "../../../examples/",
                &format!("{}/examples/", common::repo_root().display()),
            );
    assert!(model.contains("seq = 1048576"), "the model changed");
    let path = dir.join("long.toml");
    std::fs::write(&path, model).expect("write");
    let start = Instant::now();
    let out = common::attnc(&[
        "plan",
        path.to_str().expect("utf-8"),
        "--devices",
        "runtime/planner/profiles/h100_server.toml",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn bench_counts_the_pairs_a_document_mask_keeps() {
    // issue 17: a mask on document ids counted the full square. With random ids in [0, 3]
    // about a quarter of the causal pairs are kept.
    let flops = |example: &str| {
        let out = common::attnc(&[
            "bench",
            &format!("examples/{example}.attn"),
            "--shape",
            "B=1,H=2,S=256,D=32",
            "--repeat",
            "1",
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        json["useful_flops"].as_f64().expect("useful_flops")
    };
    let (document, causal) = (flops("document_mask"), flops("softmax_causal"));
    let ratio = document / causal;
    assert!((0.15..0.4).contains(&ratio), "document / causal = {ratio}");
}

/// A chain of `n` lets, each reading the previous one, between the score and the softmax.
fn let_chain_kernel(n: usize) -> String {
    let mut text = String::from(
        "kernel chain {\n  dim B, H, S, D;\n  input q, k, v: f32[B, H, S, D];\n  output o: f32[B, H, S, D];\n  let s0 = dot(q[b, h, i], k[b, h, j]);\n",
    );
    for t in 1..n {
        text.push_str(&format!("  let s{t} = s{} * 0.999 + 0.001;\n", t - 1));
    }
    text.push_str(&format!(
        "  o[b, h, i] = sum_j(softmax(s{}) * v[b, h, j]);\n}}\n",
        n - 1
    ));
    text
}

#[test]
fn a_long_let_chain_compiles_to_a_few_maps_and_runs_correctly() {
    // issue 17: 300 chained lets overflowed the CPU kernel's stack (one tile buffer per let)
    // and 500 took 93 s in LLVM's loop passes before aborting.
    let dir = scratch("chain");
    let kernel = dir.join("chain.attn");
    std::fs::write(&kernel, let_chain_kernel(2000)).expect("write");
    let path = kernel.to_str().expect("utf-8");
    let graph = common::attnc(&["build", path, "--emit", "graph"]);
    assert!(graph.status.success(), "{}", stderr(&graph));
    let dump = String::from_utf8_lossy(&graph.stdout);
    let maps = dump.lines().filter(|l| l.contains(" = map ")).count();
    // Merged up to 48 levels deep: each let is two levels (a multiply and an add).
    assert!((2..=400).contains(&maps), "{maps} maps:\n{dump}");
    let start = std::time::Instant::now();
    let run = common::attnc(&[
        "run",
        path,
        "--shape",
        "B=1,H=2,S=40,D=8",
        "--device",
        "cpu",
        "--check",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    // Generous: it takes a few seconds in a debug build; the bug took minutes and crashed.
    assert!(start.elapsed().as_secs() < 120, "{:?}", start.elapsed());
}
