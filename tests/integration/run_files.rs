//! `attnc run` on the user's own tensor files (`--inputs`, `--output`, `--save-inputs`), through
//! the real binary.
//!
//! Bad inputs are the cases in `tests/ui/run/*.case`: each must exit non-zero, write no file,
//! print nothing on stdout, and print the message snapshotted in `tests/ui/run/snapshots/`.
//! A case is a few lines, one directive each (`#` starts a comment):
//!
//! ```text
//! # What the case checks (the leading comment lines become the snapshot's description).
//! kernel examples/gqa_causal.attn         the .attn file, relative to the repository root
//! random B=1,H=4,Hkv=2,S=8,D=4 seed=1     start from valid seeded random inputs at these dims
//! drop v                                  remove a tensor
//! rename q query                          rename a tensor
//! zeros k bf16 1,2,6,4                    add or replace a tensor of zeros (dtype, shape)
//! cast q f32                              convert a tensor's values to another dtype
//! set k 21 nan                            set one element (flat index) to a value
//! write in.npz                            write the tensors to $TMP/in.npz (.npy, .npz, .safetensors)
//! truncate in.npz -40                     keep the first N bytes, or drop the last N if negative
//! flip in.npz 200                         invert the bits of the byte at this offset
//! rename-file in.npz in.pt                rename a written file
//! args --inputs $TMP/in.npz ...           the arguments after `attnc run KERNEL`
//! ```
//!
//! `$TMP` is a fresh folder per case; it appears as `[TMP]` in the snapshots. Bad files are made
//! at test time with `attnc_tensors::write_tensors` and byte edits, so no binary fixture is kept.
//! Working runs (round trips through every format, bf16 as uint16 bits, the NumPy script) are
//! the plain tests below.

use crate::common;
use attnc_ir::Graph;
use attnc_tensors::{ElementType, HostTensor, read_tensors, write_tensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

type Tensors = BTreeMap<String, HostTensor>;

#[test]
fn every_bad_input_gets_its_message_and_writes_nothing() {
    insta::glob!("../ui/run", "*.case", |path| {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path).expect("the case file is readable");
        let tmp = fresh_dir(&format!("case-{name}"));
        let (made, args) = prepare_case(&name, &text, &tmp);
        let out = run_attnc(&args);
        let stderr =
            String::from_utf8_lossy(&out.stderr).replace(&tmp.display().to_string(), "[TMP]");
        assert!(!out.status.success(), "{name}: attnc succeeded:\n{stderr}");
        assert!(
            out.stdout.is_empty(),
            "{name}: printed on stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            !stderr.contains("panicked"),
            "{name}: attnc panicked:\n{stderr}"
        );
        assert_eq!(
            files_in(&tmp),
            made,
            "{name}: attnc wrote into the folder although it failed"
        );
        let description: Vec<&str> = text
            .lines()
            .map_while(|l| l.strip_prefix('#'))
            .map(str::trim)
            .collect();
        let description = description.join(" ");
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("../ui/run/snapshots");
        settings.set_prepend_module_to_snapshot(false);
        settings.remove_snapshot_suffix();
        settings.set_description(description);
        settings.set_omit_expression(true);
        settings.bind(|| insta::assert_snapshot!(name.as_str(), stderr));
        let _ = std::fs::remove_dir_all(&tmp);
    });
}

/// Carries out a case's directives; returns the files it made and the arguments to run.
fn prepare_case(name: &str, text: &str, tmp: &Path) -> (Vec<String>, Vec<String>) {
    let mut kernel = String::new();
    let mut tensors = Tensors::new();
    let mut made = Vec::new();
    let mut args = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        macro_rules! need {
            ($e:expr) => {
                match $e {
                    Some(v) => v,
                    None => panic!("{name}: cannot understand `{line}`"),
                }
            };
        }
        match words.as_slice() {
            ["kernel", path] => kernel = path.to_string(),
            ["random", shape, seed] => {
                let seed = need!(seed.strip_prefix("seed=").and_then(|s| s.parse().ok()));
                tensors = random(&common::repo_root().join(&kernel), shape, seed);
            }
            ["drop", t] => {
                need!(tensors.remove(*t));
            }
            ["rename", from, to] => {
                let t = need!(tensors.remove(*from));
                tensors.insert(to.to_string(), t);
            }
            ["zeros", t, dtype, shape] => {
                let shape: Vec<usize> = shape.split(',').map(|d| need!(d.parse().ok())).collect();
                let zeros = vec![0.0; shape.iter().product()];
                let tensor =
                    HostTensor::from_f64(dtype_named(dtype), shape, &zeros).expect("zeros");
                tensors.insert(t.to_string(), tensor);
            }
            ["cast", t, dtype] => {
                let old = need!(tensors.get(*t));
                let new = HostTensor::from_f64(
                    dtype_named(dtype),
                    old.shape().to_vec(),
                    &old.to_f64_vec(),
                );
                tensors.insert(t.to_string(), new.expect("the values fit the new dtype"));
            }
            ["set", t, index, value] => {
                let old = need!(tensors.get(*t));
                let mut values = old.to_f64_vec();
                let index: usize = need!(index.parse().ok());
                assert!(
                    index < values.len(),
                    "{name}: index {index} is outside `{t}`"
                );
                values[index] = need!(value.parse().ok());
                let new = HostTensor::from_f64(old.dtype(), old.shape().to_vec(), &values);
                tensors.insert(t.to_string(), new.expect("the value fits the dtype"));
            }
            ["write", file] => {
                let list: Vec<(String, HostTensor)> = tensors.clone().into_iter().collect();
                write_tensors(tmp.join(file), &list).expect("the case's tensors can be written");
                made.push(file.to_string());
            }
            ["truncate", file, n] => {
                let mut bytes = std::fs::read(tmp.join(file)).expect("a written file");
                let n: i64 = need!(n.parse().ok());
                let keep = if n < 0 {
                    bytes.len() - n.unsigned_abs() as usize
                } else {
                    n as usize
                };
                bytes.truncate(keep);
                std::fs::write(tmp.join(file), bytes).expect("the file can be rewritten");
            }
            ["flip", file, offset] => {
                let mut bytes = std::fs::read(tmp.join(file)).expect("a written file");
                let offset: usize = need!(offset.parse().ok());
                bytes[offset] = !bytes[offset];
                std::fs::write(tmp.join(file), bytes).expect("the file can be rewritten");
            }
            ["rename-file", from, to] => {
                std::fs::rename(tmp.join(from), tmp.join(to)).expect("the file can be renamed");
                made.retain(|f| f != from);
                made.push(to.to_string());
            }
            ["args", rest @ ..] => {
                args = vec!["run".to_string(), kernel.clone()];
                let tmp = tmp.display().to_string();
                args.extend(rest.iter().map(|a| a.replace("$TMP", &tmp)));
            }
            _ => panic!("{name}: cannot understand `{line}`"),
        }
    }
    assert!(!args.is_empty(), "{name}: no `args` line");
    made.sort();
    (made, args)
}

fn dtype_named(name: &str) -> ElementType {
    ElementType::ALL
        .into_iter()
        .find(|t| t.name() == name)
        .unwrap_or_else(|| panic!("no dtype `{name}`"))
}

/// Seeded random inputs for a kernel at the given dims, as `attnc run --seed` draws them.
fn random(kernel: &Path, shape: &str, seed: u64) -> Tensors {
    let graph: Graph = common::compile(kernel);
    let dims: BTreeMap<String, i64> = shape
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("NAME=VALUE");
            (k.to_string(), v.parse().expect("an integer"))
        })
        .collect();
    let bindings = attnc_ir::bind_dims(&graph, &dims, &BTreeMap::new()).expect("the dims bind");
    attnc_reference::random_inputs(&graph, &bindings, seed).expect("inputs can be drawn")
}

/// A new, empty folder of the test target's temporary space.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("run_files")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the temporary folder can be made");
    dir
}

/// The names of the files in `dir`, sorted (temporary files of a failed write included).
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the folder is readable")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

fn run_attnc(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::attnc(&args)
}

/// Runs `attnc run` and returns its stdout, failing the test on a non-zero exit.
fn run_ok(args: &[&str]) -> String {
    let out = common::attnc(args);
    assert!(
        out.status.success(),
        "attnc {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The checksum lines of a run's stdout (`o: bf16[...] ... hash=...`), without the header and
/// time, so runs from different inputs can be compared.
fn checksums(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.contains(" hash="))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The hash `attnc run` prints for a tensor (FNV-1a of its stored bytes).
fn hash_of(t: &HostTensor) -> String {
    let hash = t.data().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("hash={hash:016x}")
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn saved_random_inputs_reproduce_the_run() {
    let tmp = fresh_dir("reproduce");
    let cases = [
        ("gqa_causal", "B=1,H=4,Hkv=2,S=8,D=4", "npz"),
        ("padded_bias", "B=2,H=2,S=8,D=4", "safetensors"),
        ("document_mask", "B=2,H=2,S=8,D=4", "npz"),
        ("retention", "B=1,H=2,S=6,D=4", "npz"),
        ("relative_bias_table", "B=1,H=2,S=5,D=4", "safetensors"),
    ];
    for (example, shape, ext) in cases {
        let kernel = path_str(&common::example(example));
        let saved = tmp.join(format!("{example}.{ext}"));
        let first = run_ok(&[
            "run",
            &kernel,
            "--shape",
            shape,
            "--seed",
            "5",
            "--save-inputs",
            &path_str(&saved),
        ]);
        let again = run_ok(&["run", &kernel, "--inputs", &path_str(&saved)]);
        assert_eq!(checksums(&first), checksums(&again), "{example}");
        assert!(
            !checksums(&first).is_empty(),
            "{example}: no checksum printed"
        );
        // Stored in the declared dtypes, in declaration order for .npz.
        let graph = common::compile(&common::example(example));
        let read: Tensors = read_tensors(&saved)
            .expect("saved inputs read back")
            .into_iter()
            .collect();
        for (_, name, ty) in graph.inputs() {
            let t = &read[name];
            assert_eq!(t.dtype(), ty.dtype, "{example}: {name}");
        }
        assert_eq!(read.len(), graph.inputs().len());
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn bf16_inputs_may_be_given_as_uint16_bits() {
    let tmp = fresh_dir("uint16");
    let kernel = path_str(&common::example("gqa_causal"));
    let saved = tmp.join("in.npz");
    let first = run_ok(&[
        "run",
        &kernel,
        "--shape",
        "B=1,H=4,Hkv=2,S=8,D=4",
        "--seed",
        "9",
        "--save-inputs",
        &path_str(&saved),
    ]);
    let bits: Vec<(String, HostTensor)> = read_tensors(&saved)
        .expect("saved inputs")
        .into_iter()
        .map(|(name, t)| {
            let u16s = HostTensor::new(ElementType::U16, t.shape().to_vec(), t.data().to_vec());
            (name, u16s.expect("same bytes"))
        })
        .collect();
    let as_bits = tmp.join("bits.npz");
    write_tensors(&as_bits, &bits).expect("written");
    let again = run_ok(&["run", &kernel, "--inputs", &path_str(&as_bits)]);
    assert_eq!(checksums(&first), checksums(&again));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn outputs_are_written_in_their_declared_dtypes_in_every_format() {
    let tmp = fresh_dir("outputs");
    let two = "tests/ui/run/self_attention.attn";
    for ext in ["npz", "safetensors"] {
        let out = tmp.join(format!("out.{ext}"));
        let stdout = run_ok(&[
            "run",
            two,
            "--shape",
            "B=1,H=2,S=4,D=4",
            "--output",
            &path_str(&out),
        ]);
        let read = read_tensors(&out).expect("outputs read back");
        let names: Vec<&str> = read.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["o", "o2"]);
        assert_eq!(read[0].1.dtype(), ElementType::F16);
        assert_eq!(read[1].1.dtype(), ElementType::F32);
        for (line, (_, t)) in checksums(&stdout).iter().zip(&read) {
            assert!(line.ends_with(&hash_of(t)), "{ext}: {line}");
        }
    }
    let out = tmp.join("o.npy");
    let kernel = path_str(&common::example("gqa_causal"));
    let stdout = run_ok(&[
        "run",
        &kernel,
        "--shape",
        "B=1,H=4,Hkv=2,S=8,D=4",
        "--output",
        &path_str(&out),
    ]);
    let read = read_tensors(&out).expect("the .npy reads back");
    assert_eq!(read[0].1.dtype(), ElementType::Bf16);
    assert_eq!(read[0].1.shape(), [1, 4, 8, 4]);
    assert!(checksums(&stdout)[0].ends_with(&hash_of(&read[0].1)));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn a_npy_file_feeds_a_kernel_with_one_input() {
    let tmp = fresh_dir("npy_input");
    let kernel = "tests/ui/run/self_attention.attn";
    let x = random(&common::repo_root().join(kernel), "B=1,H=2,S=4,D=4", 3);
    let npy = tmp.join("activations.npy");
    write_tensors(&npy, &[("x".to_string(), x["x"].clone())]).expect("written");
    let first = run_ok(&["run", kernel, "--shape", "B=1,H=2,S=4,D=4", "--seed", "3"]);
    let again = run_ok(&["run", kernel, "--inputs", &path_str(&npy)]);
    assert_eq!(checksums(&first), checksums(&again));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn shape_flags_that_agree_with_the_tensors_are_accepted() {
    let tmp = fresh_dir("shape_agrees");
    let kernel = path_str(&common::example("retention"));
    let saved = tmp.join("in.npz");
    run_ok(&[
        "run",
        &kernel,
        "--shape",
        "B=1,H=2,S=4,D=4",
        "--save-inputs",
        &path_str(&saved),
    ]);
    run_ok(&[
        "run",
        &kernel,
        "--inputs",
        &path_str(&saved),
        "--shape",
        "S=4,D=4",
    ]);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn allow_nonfinite_runs_on_nan_inputs() {
    let tmp = fresh_dir("allow_nonfinite");
    let kernel = path_str(&common::example("retention"));
    let mut inputs = random(&common::example("retention"), "B=1,H=2,S=4,D=4", 1);
    let q = &inputs["q"];
    let mut values = q.to_f64_vec();
    values[3] = f64::NAN;
    let q = HostTensor::from_f64(ElementType::F32, q.shape().to_vec(), &values).expect("f32");
    inputs.insert("q".to_string(), q);
    let file = tmp.join("in.npz");
    write_tensors(&file, &inputs.into_iter().collect::<Vec<_>>()).expect("written");
    let out = tmp.join("out.npz");
    let stdout = run_ok(&[
        "run",
        &kernel,
        "--inputs",
        &path_str(&file),
        "--allow-nonfinite",
        "--output",
        &path_str(&out),
    ]);
    assert!(stdout.contains("nonfinite="), "{stdout}");
    assert!(out.exists());
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Runs `examples/python/check_with_numpy.py` (attnc against NumPy's own formulas) when a
/// Python with NumPy is at hand: `$ATTNC_TEST_PYTHON`, else the repository's `.venv`. CI runs
/// the script itself too; here a missing NumPy is reported and the test passes.
#[test]
fn numpy_agrees_with_attnc_on_user_tensors() {
    let root = common::repo_root();
    let python = match std::env::var_os("ATTNC_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => root.join(".venv/bin/python"),
    };
    let has_numpy = std::process::Command::new(&python)
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_numpy {
        eprintln!(
            "skipped: {} cannot import numpy (set ATTNC_TEST_PYTHON to a Python with NumPy)",
            python.display()
        );
        return;
    }
    let out = std::process::Command::new(&python)
        .arg("examples/python/check_with_numpy.py")
        .env("ATTNC", env!("CARGO_BIN_EXE_attnc"))
        .current_dir(&root)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check_with_numpy.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("gqa_causal") && stdout.contains("retention"),
        "{stdout}"
    );
}
