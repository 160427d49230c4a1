//! What a new user meets at the command line (issue 19): the default device, output formats
//! shared by the commands, machine-readable diagnostics and the help text.

use crate::common;

const KERNEL: &str = "examples/softmax_causal.attn";
const SHAPE: &str = "B=1,H=2,S=16,D=8";

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_defaults_to_the_compiled_kernel_and_says_which_device_ran() {
    let out = common::attnc(&["run", KERNEL, "--shape", SHAPE]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(" on cpu (compiled kernel"),
        "{}",
        stdout(&out)
    );
    let out = common::attnc(&["run", KERNEL, "--shape", SHAPE, "--device", "reference"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(" on reference (f64 reference"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_unavailable_device_is_a_clear_error() {
    // Without a driver, --device cuda fails saying so (never a silent CPU run); where a driver
    // is present the GPU tests cover it.
    let mut cases = Vec::new();
    match attnc_vulkan::VulkanDevice::open("vulkan") {
        Ok(d) => println!("skipped --device vulkan: {} is present here", d.info()),
        Err(_) => cases.push(("vulkan", "Vulkan")),
    }
    if attnc_cuda::driver_present() {
        println!("skipped --device cuda: a CUDA driver is present here");
    } else {
        cases.push(("cuda", "no CUDA driver"));
    }
    for (device, hint) in cases {
        let out = common::attnc(&["run", KERNEL, "--shape", SHAPE, "--device", device]);
        assert!(!out.status.success(), "--device {device} succeeded");
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("--device {device}")) && err.contains(hint),
            "{err}"
        );
    }
}

#[test]
fn vulkan_builds_a_spirv_bundle_and_runs_where_a_device_is() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("k.attnb");
    let bundle = bundle.to_str().unwrap();
    let out = common::attnc(&[
        "build", KERNEL, "--target", "vulkan", "--shape", "D=8", "--emit", "spirv", "-o", bundle,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("OpEntryPoint GLCompute"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("for vulkan"), "{}", stderr(&out));
    let b = attnc_bundle::Bundle::read(std::path::Path::new(bundle)).unwrap();
    assert_eq!(b.manifest.target.to_string(), "vulkan");
    if let Err(e) = attnc_vulkan::VulkanDevice::open("vulkan") {
        println!("skipped the run: {e}");
        return;
    }
    let out = common::attnc(&[
        "run", KERNEL, "--shape", SHAPE, "--device", "vulkan", "--check",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(" on vulkan ("), "{}", stdout(&out));
}

#[test]
fn a_bundle_build_prints_only_what_it_wrote() {
    // Without --emit, `-o NAME.attnb` printed the whole graph to stdout as well.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("k.attnb");
    let bundle = bundle.to_str().unwrap();
    let out = common::attnc(&["build", KERNEL, "--target", "cuda:sm_90a", "-o", bundle]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "stdout holds only what --emit asks for");
    assert!(stderr(&out).contains("wrote "), "{}", stderr(&out));
    assert!(attnc_bundle::Bundle::read(std::path::Path::new(bundle)).is_ok());
    let plain = common::attnc(&["build", KERNEL]);
    assert!(
        stdout(&plain).contains("= score dot("),
        "{}",
        stdout(&plain)
    );
}

/// On CUDA a recurrence with a scalar decay runs chunked by default, and `--scan` forces the
/// scan; the plan says which, and why for the scan.
#[test]
fn a_cuda_plan_of_a_recurrence_is_chunked_unless_scan_is_asked_for() {
    let plan = |extra: &[&str]| {
        let mut a = vec![
            "build",
            "examples/retention.attn",
            "--target",
            "cuda:sm_90a",
            "--shape",
            "D=64",
            "--emit",
            "tiled",
        ];
        a.extend(extra);
        let out = common::attnc(&a);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let chunked = plan(&[]);
    assert!(
        chunked.contains("chunks of 64 steps") && chunked.contains("matrix units"),
        "{chunked}"
    );
    let scan = plan(&["--scan"]);
    assert!(
        scan.contains("step by step") && scan.contains("--scan forces the scan"),
        "{scan}"
    );
}

#[test]
fn a_vulkan_plan_of_a_recurrence_says_it_runs_as_a_scan() {
    // The SPIR-V chunked form is opt-in: the plan said "chunks of 16" for a kernel that ran
    // step by step, and ended with the note about parallel kernels.
    let out = common::attnc(&[
        "build",
        "examples/retention.attn",
        "--target",
        "vulkan",
        "--emit",
        "tiled",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(
        plan.contains("step by step") && plan.contains("opt-in"),
        "{plan}"
    );
    assert!(
        !plan.contains("for chunk in") && !plan.contains("query tile"),
        "{plan}"
    );
}

/// Parses stdout as one JSON document, failing the test with the output otherwise.
fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn run_json_follows_its_schema() {
    let doc = json_of(&common::attnc(&[
        "run", KERNEL, "--shape", SHAPE, "--check", "--format", "json",
    ]));
    assert_eq!(doc["kernel"], "softmax_causal");
    assert_eq!(doc["device"], "cpu");
    assert_eq!(doc["dims"]["S"], 16, "dims is an object of integers: {doc}");
    assert_eq!(doc["inputs"]["seed"], 0);
    let o = &doc["outputs"][0];
    assert_eq!(o["name"], "o");
    assert_eq!(o["dtype"], "bf16");
    assert_eq!(o["shape"], serde_json::json!([1, 2, 16, 8]));
    assert!(o["sum"].is_f64() && o["hash"].as_str().is_some_and(|h| h.len() == 16));
    assert!(doc["time_ms"].is_f64() && doc["compile_ms"].is_f64());
    assert_eq!(doc["checks"][0]["output"], "o");
    assert_eq!(doc["checks"][0]["ok"], true);
}

#[test]
fn bench_json_reports_dims_as_an_object_and_keeps_the_old_flag() {
    let args = ["bench", KERNEL, "--shape", SHAPE, "--repeat", "1"];
    for flag in [&["--format", "json"][..], &["--json"][..]] {
        let all: Vec<&str> = args.iter().chain(flag).copied().collect();
        let doc = json_of(&common::attnc(&all));
        assert_eq!(doc["dims"]["B"], 1, "{doc}");
        assert_eq!(doc["dims"]["D"], 8, "{doc}");
        assert_eq!(doc["timings"][0]["name"], "attnc cpu");
        assert!(doc["timings"][0]["ms"].is_f64());
    }
}

#[test]
fn diagnostics_as_json_carry_rustcs_fields() {
    let out = common::attnc(&[
        "build",
        "tests/ui/unknown_builtin_typo.attn",
        "--error-format",
        "json",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object per diagnostic:\n{err}");
    let d: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON object");
    assert_eq!(d["level"], "error");
    assert_eq!(d["message"], "unknown function `sofmax`");
    let span = &d["spans"][0];
    assert_eq!(span["file_name"], "tests/ui/unknown_builtin_typo.attn");
    assert_eq!(span["line_start"], 7);
    assert_eq!(span["column_start"], 22);
    assert_eq!(span["column_end"], 28);
    assert_eq!(span["is_primary"], true);
    assert_eq!(span["label"], "did you mean `softmax`?");
    let (start, end) = (span["byte_start"].as_u64(), span["byte_end"].as_u64());
    assert_eq!(end.zip(start).map(|(e, s)| e - s), Some(6));
    assert!(d["rendered"].as_str().is_some_and(|r| r.contains("^^^^^^")));
    // An error with no place in a source file is JSON too.
    let out = common::attnc(&["build", "no/such.attn", "--error-format", "json"]);
    let d: serde_json::Value = serde_json::from_str(stderr(&out).trim()).expect("JSON");
    assert!(
        d["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot read"))
    );
    assert_eq!(d["spans"], serde_json::json!([]));
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let file = "tests/ui/unknown_builtin_typo.attn";
    let plain = stderr(&common::attnc(&["build", file]));
    assert!(!plain.contains('\u{1b}'), "colour in a pipe:\n{plain}");
    let coloured = stderr(&common::attnc(&["build", file, "--color", "always"]));
    assert!(
        coloured.contains("\u{1b}["),
        "no colour with --color always"
    );
    let never = stderr(&common::attnc(&["build", file, "--color", "never"]));
    assert_eq!(never, plain);
}

#[test]
fn several_stages_are_separated_and_can_go_to_files() {
    let out = common::attnc(&["build", KERNEL, "--emit", "ast,graph"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("==> ")).collect();
    assert_eq!(headers, ["==> ast <==", "==> graph <=="]);
    let one = stdout(&common::attnc(&["build", KERNEL, "--emit", "graph"]));
    assert!(!one.contains("==>"), "one stage needs no header");

    let dir = std::env::temp_dir().join(format!("attnc-out-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir_arg = dir.display().to_string();
    let out = common::attnc(&[
        "build",
        KERNEL,
        "--emit",
        "graph,fused",
        "--out-dir",
        &dir_arg,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let graph = std::fs::read_to_string(dir.join("softmax_causal.graph")).expect("graph file");
    assert_eq!(graph, one);
    assert!(dir.join("softmax_causal.fused").is_file());

    // -o FILE takes one stage (a .attnb name stays a GPU bundle).
    let file = dir.join("k.graph").display().to_string();
    let out = common::attnc(&["build", KERNEL, "--emit", "graph", "-o", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&file).ok().as_deref(),
        Some(one.as_str())
    );
    let out = common::attnc(&["build", KERNEL, "--emit", "ast,graph", "-o", &file]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--out-dir"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn build_json_holds_each_stage_by_name() {
    let doc = json_of(&common::attnc(&[
        "build",
        KERNEL,
        "--emit",
        "ast,graph",
        "--time-passes",
        "--format",
        "json",
    ]));
    let one = stdout(&common::attnc(&["build", KERNEL, "--emit", "graph"]));
    assert_eq!(doc["file"], KERNEL);
    let target = doc["target"].as_str().unwrap_or_default();
    assert!(target.starts_with("cpu: host"), "{target}");
    assert_eq!(doc["stages"]["graph"].as_str(), Some(one.as_str()));
    assert!(
        doc["stages"]["ast"]
            .as_str()
            .is_some_and(|a| a.contains("kernel"))
    );
    let timings = doc["timings"].as_array().map_or(0, Vec::len);
    assert!(timings >= 2, "{doc}");
}

#[test]
fn every_argument_of_every_command_is_described() {
    for command in ["build", "run", "bench", "plan"] {
        let help = stdout(&common::attnc(&[command, "--help"]));
        let mut in_list = false;
        for line in help.lines() {
            if line.ends_with(':') && !line.starts_with(' ') {
                in_list = matches!(line, "Arguments:" | "Options:" | "Global options:");
                continue;
            }
            let item = line.trim_start();
            // Flags (`--shape`, `-o, --output`) and positionals (`<FILE>`); not the lines of
            // a value list (`- causal: ...`).
            let short_flag = item.starts_with('-') && item.chars().nth(2) == Some(',');
            let is_item = item.starts_with("--") || item.starts_with('<') || short_flag;
            if !in_list || !is_item {
                continue;
            }
            // An item and its description share the line, or the description is on the next.
            let described = item.split("  ").filter(|p| !p.trim().is_empty()).count() > 1
                || help
                    .lines()
                    .skip_while(|l| *l != line)
                    .nth(1)
                    .is_some_and(|next| next.starts_with("          "));
            assert!(
                described,
                "`attnc {command} --help`: `{item}` has no description"
            );
        }
    }
}

/// A .npy file of int16 zeros, as `np.save` writes it, made by hand (NumPy is not needed).
fn int16_npy(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let mut header = format!(
        "{{'descr': '<i2', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + 2 * shape.iter().product::<usize>(), 0);
    bytes
}

#[test]
fn bf16_given_as_int16_gets_the_missing_view_as_a_hint() {
    let dir = std::env::temp_dir().join(format!("attnc-int16-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kernel = dir.join("one.attn");
    std::fs::write(
        &kernel,
        "kernel one {\n  dim B, H, S, D;\n  input q: bf16[B, H, S, D];\n  output o: f32[B, H, S, D];\n  o[b, h, i] = q[b, h, i] * 2.0;\n}\n",
    )
    .expect("write the kernel");
    let npy = dir.join("q.npy");
    std::fs::write(&npy, int16_npy(&[1, 2, 4, 4])).expect("write the array");
    let out = common::attnc(&[
        "run",
        &kernel.display().to_string(),
        "--inputs",
        &npy.display().to_string(),
    ]);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "an int16 array was accepted for bf16"
    );
    assert!(err.contains("int16"), "{err}");
    assert!(
        err.contains(".view(np.uint16)") && err.contains("safetensors.torch.save_file"),
        "no hint:\n{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn rank_0_inputs_are_used_by_name_as_documented() {
    let dir = std::env::temp_dir().join(format!("attnc-rank0-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kernels = [
        (
            "temperature",
            "input tau: f32[];",
            "dot(q[b, h, i], k[b, h, j]) / (1.0 + tau * tau)",
            "j <= i",
        ),
        (
            "valid_keys",
            "input n: i32[] in [1, S];",
            "dot(q[b, h, i], k[b, h, j])",
            "j < n",
        ),
    ];
    for (name, input, score, mask) in kernels {
        let path = dir.join(format!("{name}.attn"));
        let text = format!(
            "kernel {name} {{\n  dim B, H, S, D;\n  input q, k, v: f32[B, H, S, D];\n  {input}\n  \
             output o: f32[B, H, S, D];\n  let s = {score};\n  mask {mask};\n  \
             o[b, h, i] = sum_j(softmax(s) * v[b, h, j]);\n}}\n"
        );
        std::fs::write(&path, text).expect("write the kernel");
        let file = path.display().to_string();
        let out = common::attnc(&["run", &file, "--shape", "B=1,H=2,S=19,D=8", "--check"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(stdout(&out).contains("check o:") && stdout(&out).contains(": ok"));
        let graph = stdout(&common::attnc(&["build", &file]));
        assert!(
            graph.contains("[] : float[]") || graph.contains("[] : int[]"),
            "{graph}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs attnc under a pseudo-terminal (util-linux `script`), returning what the terminal
/// showed, or `None` where `script` is not installed.
fn on_a_terminal(args: &str, env: &[(&str, &str)]) -> Option<String> {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_attnc"));
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .envs(env.iter().copied())
        .current_dir(common::repo_root())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn progress_and_colour_on_a_terminal_only() {
    let run = format!("run {KERNEL} --shape B=1,H=2,S=64,D=8 --check");
    let Some(terminal) = on_a_terminal(&run, &[]) else {
        println!("skipped: no `script` to give attnc a terminal");
        return;
    };
    assert!(
        terminal.contains("checking against the f64 reference interpreter"),
        "no progress on a terminal:\n{terminal}"
    );
    let piped = common::attnc(&["run", KERNEL, "--shape", "B=1,H=2,S=64,D=8", "--check"]);
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert_eq!(stderr(&piped), "", "progress in a pipe");

    let build = "build tests/ui/unknown_builtin_typo.attn";
    let coloured = on_a_terminal(build, &[]).unwrap_or_default();
    assert!(
        coloured.contains("\u{1b}["),
        "no colour on a terminal:\n{coloured}"
    );
    let plain = on_a_terminal(build, &[("NO_COLOR", "1")]).unwrap_or_default();
    assert!(
        plain.contains("sofmax") && !plain.contains('\u{1b}'),
        "NO_COLOR ignored:\n{plain}"
    );
    let never = on_a_terminal(&format!("{build} --color never"), &[]).unwrap_or_default();
    assert!(
        never.contains("sofmax") && !never.contains('\u{1b}'),
        "--color never ignored:\n{never}"
    );
}

/// Head dims no tile fits are the program's limit on that target: a located diagnostic at the
/// score contraction (exit 1), on the CPU and on a GPU target alike, never "tiling failed" text
/// or an internal error.
#[test]
fn a_tiling_refusal_points_at_the_contraction() {
    for target in ["x86-avx512", "cuda:sm_90a"] {
        let out = common::attnc(&[
            "build",
            "examples/softmax_full.attn",
            "--emit",
            "tiled",
            "--target",
            target,
            "--shape",
            "B=1,H=1,S=64,D=1000000",
        ]);
        assert_eq!(out.status.code(), Some(1), "{target}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("error: kernel `softmax_full`: no tile size fits")
                && err.contains("head dims 1000000")
                && err.contains("examples/softmax_full.attn:7:11")
                && err.contains("^^^^ the rows of this contraction"),
            "{target}: {err}"
        );
    }
}
