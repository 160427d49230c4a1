//! Malformed programs under `tests/ui/`, each next to the exact diagnostic it must produce
//! (file, line, column and a caret), and a non-zero exit, through the real binary.

use crate::common;

#[test]
fn every_malformed_program_gets_its_diagnostic() {
    insta::glob!("../ui", "*.attn", |path| {
        let rel = format!(
            "tests/ui/{}",
            path.file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default()
        );
        let out = common::attnc(&["build", &rel, "--emit", "graph"]);
        assert!(!out.status.success(), "{rel} compiled, but it is malformed");
        assert!(
            out.stdout.is_empty(),
            "{rel}: a failed build printed a dump"
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(stderr.contains("error"), "{rel}: no error printed");
        assert!(
            !stderr.contains("panicked"),
            "{rel}: the compiler panicked:\n{stderr}"
        );
        insta::assert_snapshot!("diagnostic", stderr);
    });
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let out = common::attnc(&["build", "tests/ui/no_such_file.attn"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read tests/ui/no_such_file.attn"),
        "{stderr}"
    );
}
