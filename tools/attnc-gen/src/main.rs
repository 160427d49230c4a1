//! `attnc-gen`: generates programs and checks each on the reference and every device, or
//! rechecks saved ones (`--file`). Prints every failure with its program and seed, shrunk with
//! `--reduce`, and a summary; exits non-zero when anything failed.

use attnc_gen::devices;
use attnc_gen::harness::reason_kind;
use attnc_gen::{Failure, Outcome, Program, check, generate, header, parse_header, reduce};
use clap::Parser;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Random .attn programs, run on the reference and on every device")]
struct Args {
    /// How many programs to generate.
    #[arg(long, default_value_t = 100)]
    count: u64,
    /// The first program's seed; program k has seed SEED + k (its program, shape and inputs).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Shrink each failing program before printing it.
    #[arg(long)]
    reduce: bool,
    /// Write each failing program (and its shrunk form) to this folder.
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
    /// Print every program before running it.
    #[arg(long)]
    print: bool,
    /// Print each seed to stderr before running it (a crash then names its program).
    #[arg(long)]
    trace: bool,
    /// Check saved programs (with `# shape:` and `# seed:` headers) instead of generating.
    #[arg(long, num_args = 1..)]
    file: Vec<PathBuf>,
    /// Write every generated program to this folder as `gen_SEED.attn` (with the headers
    /// `--file` reads) and run none: inputs for other checks (the GPU check prepares cases from
    /// them).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["file", "reduce", "save"])]
    write_only: Option<PathBuf>,
}

#[derive(Default)]
struct Summary {
    programs: u64,
    agree: u64,
    ill_conditioned: u64,
    rejected: BTreeMap<String, u64>,
    failures: Vec<(u64, Failure)>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.write_only {
        for k in 0..args.count {
            let seed = args.seed.wrapping_add(k);
            let program = generate(seed);
            let text = format!("{}{program}", header(&program, seed));
            let path = dir.join(format!("gen_{seed}.attn"));
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("cannot write {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
        }
        return std::process::ExitCode::SUCCESS;
    }
    let devices = devices::available();
    let names: Vec<&str> = devices.iter().map(|d| d.name()).collect();
    let start = Instant::now();
    let mut summary = Summary::default();
    if !args.file.is_empty() {
        for path in &args.file {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
            };
            let (shape, seed) = match parse_header(&text) {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
            };
            let outcome = check(&text, &shape, seed, &devices);
            println!("{}: {}", path.display(), describe(&outcome));
            if let Outcome::Failure(f) = &outcome {
                println!("failure-tag: {}", f.tag());
            }
            record(&mut summary, seed, outcome);
        }
    } else {
        println!(
            "attnc-gen: {} programs from seed {} on the reference and {}",
            args.count,
            args.seed,
            names.join(", ")
        );
        for k in 0..args.count {
            let seed = args.seed.wrapping_add(k);
            if args.trace {
                eprintln!("seed {seed}");
                let _ = std::io::stderr().flush();
            }
            let program = generate(seed);
            let text = program.to_string();
            if args.print {
                println!("# seed {seed}, shape {}\n{text}", program.shape_arg());
            }
            let outcome = check(&text, &program.shape, seed, &devices);
            if let Outcome::Failure(f) = &outcome {
                report_failure(&args, &program, seed, f);
            }
            record(&mut summary, seed, outcome);
        }
    }
    print_summary(&summary, start.elapsed().as_secs_f64());
    if summary.failures.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Agree => "agrees".into(),
        Outcome::Rejected { stage, reason } => format!("rejected by {stage}: {reason}"),
        Outcome::IllConditioned { sensitivity } => {
            format!("ill-conditioned (sensitivity {sensitivity:.1e})")
        }
        Outcome::Failure(f) => format!("FAILED: {f}"),
    }
}

fn record(s: &mut Summary, seed: u64, o: Outcome) {
    s.programs += 1;
    match o {
        Outcome::Agree => s.agree += 1,
        Outcome::IllConditioned { .. } => s.ill_conditioned += 1,
        Outcome::Rejected { stage, reason } => {
            *s.rejected
                .entry(format!("{stage}: {}", reason_kind(&reason)))
                .or_default() += 1
        }
        Outcome::Failure(f) => s.failures.push((seed, f)),
    }
}

fn report_failure(args: &Args, program: &Program, seed: u64, f: &Failure) {
    println!(
        "\nFAILURE (seed {seed}): {f}\n{}{program}",
        header(program, seed)
    );
    let mut saved = vec![("", program.clone())];
    if args.reduce {
        let mut fails = |c: &Program| fails_alike(c, seed, &f.tag());
        let small = reduce::reduce(program, 400, &mut fails);
        println!("reduced (seed {seed}):\n{}{small}", header(&small, seed));
        saved.push(("-reduced", small));
    }
    if let Some(dir) = &args.save {
        for (suffix, p) in saved {
            let path = dir.join(format!("gen-{seed}{suffix}.attn"));
            let text = format!("# {f}\n{}{p}", header(&p, seed));
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("cannot write {}: {e}", path.display());
            }
        }
    }
}

/// Whether `candidate` fails with the failure tag `tag`, checked in a child process: a
/// candidate may crash the kernel (that is often what a shrunk program does), and must not take
/// the reducer with it.
fn fails_alike(candidate: &Program, seed: u64, tag: &str) -> bool {
    let path = std::env::temp_dir().join(format!("attnc-gen-reduce-{}.attn", std::process::id()));
    let text = format!("{}{candidate}", header(candidate, seed));
    if std::fs::write(&path, text).is_err() {
        return false;
    }
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    let out = std::process::Command::new(exe)
        .arg("--file")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .output();
    let _ = std::fs::remove_file(&path);
    let Ok(out) = out else { return false };
    let want = format!("failure-tag: {tag}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l == want)
}

fn print_summary(s: &Summary, seconds: f64) {
    let rejected: u64 = s.rejected.values().sum();
    println!("\nprograms: {}", s.programs);
    println!("agree: {}", s.agree);
    println!("rejected: {rejected}");
    for (reason, count) in &s.rejected {
        println!("  {count:6}  {reason}");
    }
    println!("ill-conditioned: {}", s.ill_conditioned);
    let internal = s
        .failures
        .iter()
        .filter(|(_, f)| !matches!(f, Failure::Disagreement { .. }))
        .count();
    println!(
        "failures: {} ({} disagreements, {internal} internal errors or panics)",
        s.failures.len(),
        s.failures.len() - internal
    );
    for (seed, f) in &s.failures {
        println!("  seed {seed}: {f}");
    }
    println!("wall time: {seconds:.1} s");
}
