//! Every program under `tests/generated/` (cases from issues and programs the generator found,
//! each with `# shape:` and `# seed:` lines) must agree with the reference on every device.

use attnc_gen::{Outcome, check, devices, parse_header};
use std::path::Path;

#[test]
fn saved_programs_agree_with_the_reference() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/generated");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "attn"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "tests/generated/ lost its programs");
    let devices = devices::available();
    let mut failed = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("a readable program");
        let (shape, seed) =
            parse_header(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = check(&text, &shape, seed, &devices);
        eprintln!("{}: {outcome:?}", path.display());
        if outcome != Outcome::Agree {
            failed.push(format!("{}: {outcome:?}", path.display()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
