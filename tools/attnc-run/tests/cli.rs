//! `attnc-run` end to end, as a user runs it: a bundle for `cuda:sm_90a` written here with
//! `attnc_bundle`, input files written with `attnc_tensors`, and the real binary. Every bad
//! input gives its message and exit code before any device is opened, so these run on a
//! machine with no GPU; the run itself checks its numbers where a CUDA driver is present and
//! checks the "no CUDA driver" report (exit 4) where none is.

use attnc_bundle::Bundle;
use attnc_kernel_abi::{
    ABI_VERSION, Access, Arg, Bound, DimDecl, ElementType, Expr, Extent, KernelManifest,
    KernelSignature, Launch, Param, TensorDecl, ValueRange,
};
use attnc_tensors::{HostTensor, write_tensors};
use std::path::PathBuf;
use std::process::{Command, Output};

const AXPB_PTX: &str = include_str!("../../../runtime/cuda/tests/ptx/axpb.ptx");

fn e(s: &str) -> Expr {
    Expr::parse(s).unwrap()
}

/// `y = 2 x + N·D` over x: f32[N, D] (D compiled as 4), with two more inputs that only their
/// checks use: idx: i32[N] in [0, N - 1] and w: bf16[N] in [-1, 1].
fn manifest() -> KernelManifest {
    let tensor = |name: &str, element, shape: &[&str], range: Option<(Bound, Bound)>| TensorDecl {
        name: name.into(),
        element,
        shape: shape.iter().map(|s| e(s)).collect(),
        range: range.map(|(lo, hi)| ValueRange { lo, hi }),
    };
    let buffer = |name: &str, access| Param::Buffer {
        name: name.into(),
        element: ElementType::F32,
        access,
        extent: vec![Extent::Param("n".into())],
    };
    KernelManifest {
        abi_version: ABI_VERSION,
        kernel: "axpb".into(),
        source: "axpb.attn".into(),
        target: "cuda:sm_90a".parse().unwrap(),
        dims: vec![
            DimDecl {
                name: "N".into(),
                specialised: None,
                default: None,
            },
            DimDecl {
                name: "D".into(),
                specialised: Some(4),
                default: None,
            },
        ],
        requirements: vec![],
        inputs: vec![
            tensor("x", ElementType::F32, &["N", "D"], None),
            tensor(
                "idx",
                ElementType::I32,
                &["N"],
                Some((Bound::Int(e("0")), Bound::Int(e("N - 1")))),
            ),
            tensor(
                "w",
                ElementType::Bf16,
                &["N"],
                Some((Bound::Float(-1.0), Bound::Float(1.0))),
            ),
        ],
        outputs: vec![tensor("y", ElementType::F32, &["N", "D"], None)],
        workspaces: vec![],
        launches: vec![Launch {
            code: "kernel.ptx".into(),
            signature: KernelSignature {
                name: "attnc_axpb".into(),
                params: vec![
                    buffer("x", Access::Read),
                    buffer("y", Access::Write),
                    Param::Int { name: "n".into() },
                    Param::F32 { name: "a".into() },
                ],
            },
            args: vec![
                Arg::Tensor { name: "x".into() },
                Arg::Tensor { name: "y".into() },
                Arg::Int { value: e("N * D") },
                Arg::F32 { value: 2.0 },
            ],
            grid: [e("ceil_div(N * D, 256)"), e("1"), e("1")],
            block: [256, 1, 1],
            shared_bytes: 0,
        }],
        guards: vec![],
        tiling: "one element per thread".into(),
    }
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let case = Case {
            dir: tempfile::tempdir().unwrap(),
        };
        case.bundle("k.attnb", manifest());
        case
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bundle(&self, name: &str, manifest: KernelManifest) -> PathBuf {
        self.bundle_with_code(name, manifest, AXPB_PTX)
    }

    fn bundle_with_code(&self, name: &str, manifest: KernelManifest, ptx: &str) -> PathBuf {
        let bundle = Bundle {
            manifest,
            sections: vec![("kernel.ptx".into(), ptx.as_bytes().to_vec())],
        };
        let path = self.path(name);
        bundle.write(&path).unwrap();
        path
    }

    fn tensors(&self, name: &str, tensors: &[(&str, HostTensor)]) -> PathBuf {
        let path = self.path(name);
        let named: Vec<(String, HostTensor)> = tensors
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        write_tensors(&path, &named).unwrap();
        path
    }

    /// Good inputs for N rows, with `x[r, c] = r - c / 4`.
    fn good_inputs(&self, n: usize) -> Vec<(&'static str, HostTensor)> {
        let x: Vec<f64> = (0..n * 4)
            .map(|k| (k / 4) as f64 - (k % 4) as f64 / 4.0)
            .collect();
        let idx: Vec<f64> = (0..n).map(|k| ((k * 3) % n) as f64).collect();
        let w: Vec<f64> = (0..n).map(|k| k as f64 / n as f64 - 0.5).collect();
        vec![
            ("x", f(ElementType::F32, vec![n, 4], &x)),
            ("idx", f(ElementType::I32, vec![n], &idx)),
            ("w", f(ElementType::Bf16, vec![n], &w)),
        ]
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(binary())
            .current_dir(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        println!(
            "$ attnc-run {}\nexit {:?}\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// The binary under test: `$ATTNC_RUN` where the test executable travelled without its build
/// folder (scripts/gpu/cuda-tests.sh), else the one cargo built.
fn binary() -> PathBuf {
    std::env::var_os("ATTNC_RUN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_attnc-run")))
}

fn f(dtype: ElementType, shape: Vec<usize>, values: &[f64]) -> HostTensor {
    HostTensor::from_f64(dtype, shape, values).unwrap()
}

fn replace(inputs: &mut [(&'static str, HostTensor)], name: &str, t: HostTensor) {
    if let Some(slot) = inputs.iter_mut().find(|(n, _)| *n == name) {
        slot.1 = t;
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails unless the run exited with `code` and its stderr holds each of `parts`.
fn expect(out: &Output, code: i32, parts: &[&str]) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    for part in parts {
        assert!(
            stderr(out).contains(part),
            "missing `{part}` in:\n{}",
            stderr(out)
        );
    }
}

#[test]
fn usage_errors_are_exit_2() {
    let case = Case::new();
    let out = case.run(&["k.attnb"]);
    expect(&out, 2, &["--inputs"]);
    let out = case.run(&["k.attnb", "--inputs", "in.npz", "--shape", "N=x"]);
    expect(&out, 2, &["`x` in `N=x` is not an integer"]);
    let out = case.run(&["k.attnb", "--inputs", "in.npz", "--device", "gpu"]);
    expect(&out, 2, &["unknown device `gpu`"]);
    let out = case.run(&["k.attnb", "--inputs", "in.npz", "--time", "0"]);
    expect(&out, 2, &["--time"]);
    let out = case.run(&["k.attnb", "--inputs", "in.npz", "--tolerance=-1"]);
    expect(&out, 2, &["not a tolerance"]);
}

#[test]
fn info_summarises_the_manifest() {
    let case = Case::new();
    let out = case.run(&["k.attnb", "--info"]);
    expect(&out, 0, &[]);
    let text = stdout(&out);
    for part in [
        "kernel     axpb (from axpb.attn)",
        "target     cuda:sm_90a",
        "dims       N, D = 4 (compiled for)",
        "input      x: f32[N, D]",
        "input      idx: i32[N] in [0, N - 1]",
        "input      w: bf16[N] in [-1, 1]",
        "output     y: f32[N, D]",
        "launch 0   attnc_axpb (code kernel.ptx,",
        "grid [ceil_div(N * D, 256), 1, 1], block [256, 1, 1], shared 0 bytes",
        "args x=x, y=y, n=N * D, a=2",
        "tiling     one element per thread",
    ] {
        assert!(text.contains(part), "missing `{part}` in:\n{text}");
    }
    let out = case.run(&["k.attnb", "--info", "--format", "json"]);
    expect(&out, 0, &[]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["info"]["manifest"]["kernel"], "axpb");
    assert_eq!(v["info"]["sections"][0]["name"], "kernel.ptx");
    assert_eq!(v["ok"], true);
}

#[test]
fn missing_and_extra_inputs() {
    let case = Case::new();
    let mut inputs = case.good_inputs(8);
    inputs.retain(|(n, _)| *n != "idx");
    inputs.push(("z", f(ElementType::F32, vec![1], &[0.0])));
    case.tensors("in.npz", &inputs);
    let out = case.run(&["k.attnb", "--inputs", "in.npz"]);
    expect(
        &out,
        1,
        &[
            "error: input `idx` is missing from in.npz (declared as i32[N])",
            "= note: the file holds: w, x, z",
            "error: in.npz holds a tensor `z`, which kernel `axpb` does not take",
        ],
    );
}

#[test]
fn wrong_dtypes_say_how_to_convert() {
    let case = Case::new();
    let mut inputs = case.good_inputs(8);
    let x = inputs[0].1.to_f64_vec();
    replace(&mut inputs, "x", f(ElementType::F64, vec![8, 4], &x));
    replace(&mut inputs, "w", f(ElementType::F32, vec![8], &[0.0; 8]));
    case.tensors("in.npz", &inputs);
    let out = case.run(&["k.attnb", "--inputs", "in.npz"]);
    expect(
        &out,
        1,
        &[
            "error: input `x` must be f32, but in.npz holds it as f64",
            "convert it before saving, e.g. x.astype(np.float32)",
            "error: input `w` must be bf16, but in.npz holds it as f32",
            "NumPy has no bf16",
        ],
    );
    // bf16 bits in a uint16 array are taken where bf16 is declared, and nowhere else.
    let mut inputs = case.good_inputs(8);
    let bits: Vec<f64> = inputs[2]
        .1
        .data()
        .chunks_exact(2)
        .map(|b| f64::from(u16::from_le_bytes([b[0], b[1]])))
        .collect();
    replace(&mut inputs, "w", f(ElementType::U16, vec![8], &bits));
    case.tensors("bits.npz", &inputs);
    let out = case.run(&["k.attnb", "--inputs", "bits.npz"]);
    assert_ne!(out.status.code(), Some(1), "{}", stderr(&out));
    replace(&mut inputs, "idx", f(ElementType::U16, vec![8], &[0.0; 8]));
    case.tensors("bits2.npz", &inputs);
    let out = case.run(&["k.attnb", "--inputs", "bits2.npz"]);
    expect(
        &out,
        1,
        &[
            "input `idx` must be i32",
            "uint16 arrays are taken only as the bits of bf16 inputs",
        ],
    );
}

#[test]
fn wrong_shapes() {
    let case = Case::new();
    let mut inputs = case.good_inputs(8);
    replace(
        &mut inputs,
        "x",
        f(ElementType::F32, vec![8, 3], &[0.0; 24]),
    );
    case.tensors("in.npz", &inputs);
    let out = case.run(&["k.attnb", "--inputs", "in.npz"]);
    expect(
        &out,
        1,
        &[
            "dim `D` is 3 (from input `x`), but the kernel was compiled for D=4",
            "= note: the input shapes are those of the tensors in in.npz",
        ],
    );
    let mut inputs = case.good_inputs(8);
    replace(
        &mut inputs,
        "idx",
        f(ElementType::I32, vec![8, 1], &[0.0; 8]),
    );
    case.tensors("rank.npz", &inputs);
    let out = case.run(&["k.attnb", "--inputs", "rank.npz"]);
    expect(
        &out,
        1,
        &["input `idx` must have 1 axes (i32[N]), but rank.npz holds it with 2 (shape [8, 1])"],
    );
    case.tensors("ok.npz", &case.good_inputs(8));
    let out = case.run(&["k.attnb", "--inputs", "ok.npz", "--shape", "N=9"]);
    expect(
        &out,
        1,
        &["dim `N` is 9 from the given shape, but axis 0 of input `x` (shape [8, 4]) makes it 8"],
    );
}

#[test]
fn values_outside_their_ranges() {
    let case = Case::new();
    let mut inputs = case.good_inputs(8);
    replace(
        &mut inputs,
        "idx",
        f(
            ElementType::I32,
            vec![8],
            &[0.0, 1.0, 9.0, 3.0, 8.0, 5.0, 6.0, 7.0],
        ),
    );
    replace(
        &mut inputs,
        "w",
        f(
            ElementType::Bf16,
            vec![8],
            &[0.0, 0.0, 0.0, 0.0, 0.0, 1.5, 0.0, 0.0],
        ),
    );
    case.tensors("in.safetensors", &inputs);
    let out = case.run(&["k.attnb", "--inputs", "in.safetensors"]);
    expect(
        &out,
        1,
        &[
            "input `idx` in in.safetensors holds 9 at index [2] (flat index 2), outside its declared range [0, N - 1] = [0, 7]; it is the first of 2 out-of-range values (of 8)",
            "input `w` in in.safetensors holds 1.5 at index [5] (flat index 5), outside its declared range [-1, 1]",
            "values outside it are rejected, not clamped",
        ],
    );
}

#[test]
fn nonfinite_inputs_are_refused_unless_allowed() {
    let case = Case::new();
    let mut inputs = case.good_inputs(8);
    let mut x = inputs[0].1.to_f64_vec();
    x[6] = f64::NAN;
    x[9] = f64::INFINITY;
    replace(&mut inputs, "x", f(ElementType::F32, vec![8, 4], &x));
    case.tensors("in.npz", &inputs);
    let out = case.run(&["k.attnb", "--inputs", "in.npz"]);
    expect(
        &out,
        1,
        &[
            "input `x` in in.npz holds NaN at index [1, 2] (flat index 6); it is the first of 2 non-finite values (of 32)",
            "pass --allow-nonfinite to run on it anyway",
        ],
    );
    let out = case.run(&["k.attnb", "--inputs", "in.npz", "--allow-nonfinite"]);
    assert_ne!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn damaged_bundles() {
    let case = Case::new();
    case.tensors("in.npz", &case.good_inputs(8));
    let bytes = std::fs::read(case.path("k.attnb")).unwrap();
    std::fs::write(case.path("short.attnb"), &bytes[..bytes.len() - 10]).unwrap();
    let out = case.run(&["short.attnb", "--inputs", "in.npz"]);
    expect(
        &out,
        1,
        &["cannot read the bundle short.attnb: the bundle is truncated"],
    );
    let mut flipped = bytes.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x20;
    std::fs::write(case.path("flipped.attnb"), &flipped).unwrap();
    let out = case.run(&["flipped.attnb", "--inputs", "in.npz"]);
    expect(&out, 1, &["the bundle is corrupt: its checksum is"]);
    std::fs::write(case.path("text.attnb"), b"hello").unwrap();
    let out = case.run(&["text.attnb", "--info"]);
    expect(&out, 1, &["not an attnc kernel bundle"]);
    let out = case.run(&["absent.attnb", "--info"]);
    expect(&out, 1, &["cannot read the bundle: absent.attnb:"]);
}

#[test]
fn code_that_does_not_match_its_manifest() {
    let case = Case::new();
    case.tensors("in.npz", &case.good_inputs(8));
    let drifted = AXPB_PTX.replace(".param .f32 attnc_axpb_a", ".param .u64 attnc_axpb_a");
    case.bundle_with_code("drift.attnb", manifest(), &drifted);
    let out = case.run(&["drift.attnb", "--inputs", "in.npz"]);
    expect(
        &out,
        1,
        &[
            "cannot load kernel `attnc_axpb`: the PTX in `kernel.ptx` does not match the manifest: parameter 3 (`a`, an f32) is declared in the PTX as `attnc_axpb_a`, 8 bytes",
        ],
    );
}

#[test]
fn bundles_for_other_targets() {
    let case = Case::new();
    case.tensors("in.npz", &case.good_inputs(8));
    let mut m = manifest();
    m.target = "vulkan".parse().unwrap();
    case.bundle("vk.attnb", m);
    // The Vulkan runtime refuses the PTX it holds before opening a device.
    let out = case.run(&["vk.attnb", "--inputs", "in.npz"]);
    expect(
        &out,
        1,
        &["cannot load kernel `attnc_axpb`: code section `kernel.ptx`: the code"],
    );
    let out = case.run(&["vk.attnb", "--inputs", "in.npz", "--device", "cuda:0"]);
    expect(
        &out,
        1,
        &["the bundle is for vulkan, which --device cuda:0 cannot run"],
    );
    let mut m = manifest();
    m.target = "cpu".parse().unwrap();
    case.bundle("cpu.attnb", m);
    let out = case.run(&["cpu.attnb", "--inputs", "in.npz"]);
    expect(&out, 1, &["the bundle is for cpu"]);
    // sm_100a code on any device this test may meet: refused by the device (exit 1), or no
    // driver (exit 4).
    let mut m = manifest();
    m.target = "cuda:sm_100a".parse().unwrap();
    case.bundle("b200.attnb", m);
    let out = case.run(&["b200.attnb", "--inputs", "in.npz"]);
    if attnc_cuda::driver_present() {
        expect(&out, 1, &["the bundle is for cuda:sm_100a, which"]);
    } else {
        expect(&out, 4, &["no CUDA driver"]);
    }
}

#[test]
fn bad_reference_and_output_paths_fail_before_the_run() {
    let case = Case::new();
    case.tensors("in.npz", &case.good_inputs(8));
    case.tensors(
        "ref.npz",
        &[("o", f(ElementType::F32, vec![8, 4], &[0.0; 32]))],
    );
    let out = case.run(&["k.attnb", "--inputs", "in.npz", "--check", "ref.npz"]);
    expect(
        &out,
        1,
        &["the reference ref.npz has no tensor `y`", "it holds: o"],
    );
    case.tensors(
        "ref2.npz",
        &[("y", f(ElementType::F32, vec![8, 3], &[0.0; 24]))],
    );
    let out = case.run(&["k.attnb", "--inputs", "in.npz", "--check", "ref2.npz"]);
    expect(
        &out,
        1,
        &["the reference `y` in ref2.npz has shape [8, 3], but the output has [8, 4]"],
    );
    let out = case.run(&["k.attnb", "--inputs", "in.npz", "--output", "out.txt"]);
    expect(
        &out,
        1,
        &["--output: out.txt: unknown tensor file extension"],
    );
    let out = case.run(&[
        "k.attnb",
        "--inputs",
        "in.npz",
        "--output",
        "no/such/out.npz",
    ]);
    expect(&out, 1, &["folder no/such does not exist"]);
}

/// With a driver: the outputs match every element, `--check` passes on the right reference and
/// fails (exit 3) on a wrong one, `--time` times. Without: exit 4, "no CUDA driver", in text
/// and in JSON.
#[test]
fn runs_checks_and_times_or_reports_no_driver() {
    let case = Case::new();
    let n = 1000;
    let inputs = case.good_inputs(n);
    case.tensors("in.npz", &inputs);
    let x = inputs[0].1.to_f64_vec();
    let want: Vec<f64> = x
        .iter()
        .map(|v| f64::from(2.0f32.mul_add(*v as f32, (n * 4) as f32)))
        .collect();
    case.tensors("ref.npz", &[("y", f(ElementType::F32, vec![n, 4], &want))]);
    let wrong: Vec<f64> = want.iter().map(|v| v * 1.1).collect();
    case.tensors(
        "wrong.npz",
        &[("y", f(ElementType::F32, vec![n, 4], &wrong))],
    );
    let args = [
        "k.attnb", "--inputs", "in.npz", "--check", "ref.npz", "--output", "out.npz", "--time",
        "5", "--warmup", "2",
    ];
    let out = case.run(&args);
    if !attnc_cuda::driver_present() {
        assert!(
            std::env::var_os("ATTNC_REQUIRE_GPU").is_none(),
            "ATTNC_REQUIRE_GPU is set, but there is no CUDA driver"
        );
        expect(&out, 4, &["error: no CUDA driver on this machine"]);
        let mut json_args = args.to_vec();
        json_args.extend(["--format", "json"]);
        let out = case.run(&json_args);
        expect(&out, 4, &["no CUDA driver"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(
            (v["ok"].clone(), v["exit_code"].clone()),
            (false.into(), 4.into())
        );
        assert_eq!(v["kernel"], "axpb");
        assert_eq!(v["dims"]["N"], 1000);
        assert!(v["errors"][0].as_str().unwrap().contains("no CUDA driver"));
        assert!(v["device"].is_null() && v["time"].is_null());
        println!("skipped the run itself: no CUDA driver (libcuda.so cannot be opened)");
        return;
    }
    expect(&out, 0, &[]);
    let text = stdout(&out);
    assert!(
        text.contains("check y: relative L2 error 0.000e0 (tolerance 1e-2): ok"),
        "{text}"
    );
    assert!(text.contains("time: median"), "{text}");
    let written = attnc_tensors::read_tensors(case.path("out.npz")).unwrap();
    assert_eq!(written[0].1.to_f64_vec(), want);
    let out = case.run(&["k.attnb", "--inputs", "in.npz", "--check", "wrong.npz"]);
    expect(&out, 3, &["output y differs from the reference wrong.npz"]);
    assert!(stdout(&out).contains("FAILED (above the tolerance)"));
    let out = case.run(&[
        "k.attnb", "--inputs", "in.npz", "--check", "ref.npz", "--time", "3", "--format", "json",
    ]);
    expect(&out, 0, &[]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["check"]["ok"], true);
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([n, 4]));
    assert!(v["time"]["median_ms"].as_f64().unwrap() > 0.0);
}
