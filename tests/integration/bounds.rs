//! Computed indices out of range (issue 17): the compiled CPU kernel must fail the run with the
//! reference interpreter's message instead of reading outside a tensor, and a tensor axis that
//! comes out empty or negative for the bound dims is an error before anything runs. The kernels
//! are in `tests/bounds/`.

use crate::common;

/// `attnc run` of `tests/bounds/NAME.attn` on `device`: exit status and the first error line.
fn run(name: &str, device: &str, shape: &str) -> (bool, String) {
    let file = format!("tests/bounds/{name}.attn");
    let out = common::attnc(&["run", &file, "--shape", shape, "--device", device]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{name} on {device}: {stderr}");
    let first = stderr
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or("")
        .to_string();
    (out.status.success(), first)
}

/// Both the reference and the CPU kernel refuse the run, with the same message.
fn fails_alike(name: &str, shape: &str, expected: &str) {
    let (ok_ref, reference) = run(name, "reference", shape);
    let (ok_cpu, cpu) = run(name, "cpu", shape);
    assert!(!ok_ref && !ok_cpu, "{name}: a run succeeded");
    assert!(
        reference.contains(expected),
        "{name}: reference said {reference:?}"
    );
    assert_eq!(cpu, reference, "{name}: the CPU kernel's message differs");
}

#[test]
fn the_next_keys_value_in_a_causal_kernel_fails_the_run() {
    for s in [40, 200] {
        fails_alike(
            "value_next_key",
            &format!("B=2,H=2,S={s},D=8"),
            &format!("axis 2 of `v` (S) has size {s}, the index is {s} at"),
        );
    }
}

#[test]
fn a_negative_index_is_reported_as_negative() {
    fails_alike(
        "value_previous_key",
        "B=1,H=2,S=33,D=4",
        "has size 33, the index is -1 (negative) at (b=0, h=0, i=0, j=0, t=0)",
    );
}

#[test]
fn a_bias_table_declared_too_short_fails_the_run() {
    fails_alike(
        "short_bias_table",
        "B=1,H=3,S=70,D=8",
        "axis 1 of `rel_bias` (S) has size 70, the index is 70",
    );
}

#[test]
fn an_empty_or_negative_axis_is_refused_before_the_run() {
    for (name, message) in [
        ("zero_axis", "axis 1 of input `table` is 0; every axis"),
        (
            "negative_axis",
            "axis 1 of input `table` is S - 100 = -84; every axis",
        ),
    ] {
        fails_alike(name, "B=1,H=2,S=16,D=4", message);
    }
    // With S large enough the same kernel runs.
    let (ok, err) = run("negative_axis", "cpu", "B=1,H=2,S=101,D=4");
    assert!(ok, "{err}");
}

#[test]
fn indices_clamped_into_range_run_and_agree() {
    let file = "tests/bounds/bucket_table.attn";
    let out = common::attnc(&[
        "run",
        file,
        "--shape",
        "B=2,H=2,S=90,D=8",
        "--device",
        "cpu",
        "--check",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("check o:") && stdout.contains(": ok"),
        "{stdout}"
    );
}
