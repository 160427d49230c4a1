//! The generator's CI run: a fixed number of programs from a fixed seed (both printed, and both
//! overridable with `ATTNC_GEN_COUNT` and `ATTNC_GEN_SEED` to rerun or widen it). Any failure
//! prints its program and seed; the longer campaign is `scripts/generator-campaign.sh`.

use attnc_gen::{Outcome, check, devices, generate, header};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn generated_programs_agree_with_the_reference() {
    let count = env_or("ATTNC_GEN_COUNT", 300);
    let first = env_or("ATTNC_GEN_SEED", 0x17_2026);
    eprintln!("attnc-gen: {count} programs from seed {first} (ATTNC_GEN_SEED, ATTNC_GEN_COUNT)");
    let devices = devices::available();
    let (mut agree, mut rejected, mut ill) = (0, 0, 0);
    let mut failures = Vec::new();
    for k in 0..count {
        let seed = first + k;
        let program = generate(seed);
        let text = program.to_string();
        match check(&text, &program.shape, seed, &devices) {
            Outcome::Agree => agree += 1,
            Outcome::Rejected { .. } => rejected += 1,
            Outcome::IllConditioned { .. } => ill += 1,
            Outcome::Failure(f) => {
                eprintln!(
                    "FAILURE (seed {seed}): {f}\n{}{text}",
                    header(&program, seed)
                );
                failures.push(seed);
            }
        }
    }
    eprintln!("agree {agree}, rejected {rejected}, ill-conditioned {ill}, failed {failures:?}");
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    // Most programs must reach the comparison, or the generator has drifted into what attnc
    // rejects and the run proves little.
    assert!(
        agree * 10 >= count * 7,
        "only {agree} of {count} programs were compared"
    );
}

/// The generator's programs are valid: the frontend accepts every one (a rejection there means
/// the generator broke a typing rule, as `abs(i - j)` as an index once did). Cheap, so it
/// covers many more seeds than the run above.
#[test]
fn the_frontend_accepts_every_generated_program() {
    let first = env_or("ATTNC_GEN_SEED", 0x17_2026);
    let mut rejected = Vec::new();
    for seed in first..first + 2000 {
        let program = generate(seed);
        let text = program.to_string();
        if let Err(outcome) = attnc_gen::harness::build(&text) {
            eprintln!("seed {seed}: {outcome:?}\n{}{text}", header(&program, seed));
            rejected.push(seed);
        }
    }
    assert!(rejected.is_empty(), "rejected seeds: {rejected:?}");
}
