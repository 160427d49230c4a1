//! `attnc-run`: runs a compiled kernel bundle (`.attnb`, from `attnc build`) on a GPU, where no
//! compiler is installed. It links only the runtime crates (kernel ABI, bundle, device
//! interface, host tensors, the CUDA and Vulkan runtimes), never LLVM or MLIR, and opens libcuda
//! and libvulkan at run time, so it is one small file that travels with the bundles.
//!
//! ```text
//! attnc-run BUNDLE --inputs IN.npz|IN.safetensors [--shape B=2,S=77]
//!           [--output OUT.npz|OUT.safetensors|OUT.npy] [--device cuda|cuda:N|vulkan|vulkan:N]
//!           [--check REF.npz [--tolerance 1e-2]] [--time ITERS [--warmup N]]
//!           [--allow-nonfinite] [--format text|json] [--info]
//! attnc-run BUNDLE --info
//! ```
//!
//! The inputs are checked as `attnc run` checks them (names, dtypes, ranks, dims bound from the
//! shapes and `--shape`, finite values, declared ranges; bf16 may come as uint16 bits), all
//! before a device is opened. `--device` defaults to device 0 of the bundle's target. The
//! outputs come back NaN where the kernel wrote nothing. `--check` compares every output with
//! the same-named tensor of REF by relative L2 error (‖out − ref‖ / ‖ref‖ in f64) and fails on
//! any NaN in an output or finite/non-finite disagreement. `--output` is written even when the
//! check fails, to look at. `--time` reports the median and minimum per call over ITERS calls,
//! timed by CUDA events (Vulkan timestamps) after `--warmup` calls (default 10).
//!
//! # Exit codes
//! 0 ok · 1 a bad bundle (damaged, for another target, or code that does not match its
//! manifest), bad inputs, reference or output path ·
//! 2 usage (clap) · 3 a failed `--check` · 4 a device or runtime error (no driver, load or
//! launch failure, a kernel's status error, out of device memory).
//!
//! # JSON (`--format json`)
//! One object on stdout per run, also when it fails (then `ok` is false, `errors` says why,
//! and what was not reached is null or empty); messages go to stderr as well:
//!
//! ```text
//! { "bundle": "k.attnb", "kernel": "gqa", "target": "cuda:sm_90a",
//!   "device": "NVIDIA H200 (cuda:0, sm_90)", "inputs": "in.npz", "dims": {"B": 2, "S": 77},
//!   "outputs": [{"name": "o", "dtype": "bf16", "shape": [2, 77, 64], "sum": 1.5,
//!                "mean_abs": 0.25, "nonfinite": 0, "hash": "<16 hex digits, FNV-1a 64>"}],
//!   "check": {"reference": "ref.npz", "tolerance": 0.01, "ok": true,
//!             "outputs": [{"name": "o", "rel_l2": 0.003, "nan": 0, "finite_mismatch": 0,
//!                          "ok": true}]} | null,
//!   "time": {"iters": 100, "warmup": 10, "median_ms": 0.12, "min_ms": 0.11} | null,
//!   "written": "out.npz" | null,
//!   "info": {"bundle": …, "manifest": <the manifest>, "sections": [{"name", "bytes"}]} | null,
//!   "ok": true, "exit_code": 0, "errors": ["error: …"] }
//! ```
//! Floats that are not finite (a sum over an all-NaN output) are null.
//!
//! # Size
//! `cargo build --release -p attnc-run` on Debian 12 (x86-64, 2026-12-02, before the Vulkan
//! runtime joined) gave a 3.4 MB binary (2.7 MB after `strip`) whose `ldd` lists only
//! linux-vdso, libgcc_s.so.1, libm.so.6, libc.so.6 and ld-linux-x86-64.so.2, needing glibc 2.34
//! or later (the GPU machine has 2.39). libcuda and libvulkan are not among them: each is opened
//! when its device is.

mod compare;
mod device_choice;
mod info;
mod inputs;
mod problem;
mod random;
mod report;

use attnc_bundle::{Bundle, BundleError};
use attnc_device::Tensors;
use attnc_kernel_abi::{DimValues, KernelManifest};
use attnc_tensors::{HostTensor, TensorFormat, write_tensors};
use clap::{Parser, ValueEnum};
use device_choice::DeviceChoice;
use problem::{Failure, FailureKind, Problem};
use report::{CheckSummary, OutputSummary, Report, TimeSummary};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "attnc-run",
    version,
    about = "Runs an attnc kernel bundle (.attnb) on a GPU, with no compiler installed"
)]
struct Cli {
    /// The kernel bundle, as written by `attnc build --target … -o NAME.attnb`.
    bundle: PathBuf,
    /// The input tensors (.npz or .safetensors; .npy for a kernel with one input), matched to
    /// the kernel's inputs by name. bf16 may also be given as its bits in a uint16 array.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["info", "random"], conflicts_with = "random")]
    inputs: Option<PathBuf>,
    /// Draw the inputs here from this seed instead of reading them (for timing at shapes too
    /// large to carry); every dim must be given by `--shape`.
    #[arg(long, value_name = "SEED")]
    random: Option<u64>,
    /// Values of the kernel's dims, e.g. B=2,S=77; those given must agree with the inputs'
    /// shapes, the others are taken from them.
    #[arg(long, value_name = "DIMS", default_value = "", value_parser = inputs::parse_shape)]
    shape: DimValues,
    /// Write the outputs, in their dtypes, to this .npy (one output), .npz or .safetensors file.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Where to run: cuda (device 0), cuda:N, vulkan (the best Vulkan device) or vulkan:N; by
    /// default device 0 of the bundle's target (the best device for Vulkan bundles).
    #[arg(long, value_name = "DEVICE", value_parser = DeviceChoice::parse)]
    device: Option<DeviceChoice>,
    /// Compare every output with the same-named tensor in this file.
    #[arg(long, value_name = "REF")]
    check: Option<PathBuf>,
    /// The largest relative L2 error `--check` accepts.
    #[arg(long, value_name = "TOL", default_value_t = 1e-2, value_parser = parse_tolerance)]
    tolerance: f64,
    /// Time ITERS calls on the device (CUDA events) and print the median and minimum.
    #[arg(long, value_name = "ITERS", value_parser = clap::value_parser!(u32).range(1..))]
    time: Option<u32>,
    /// Untimed calls before `--time`'s.
    #[arg(long, value_name = "N", default_value_t = 10)]
    warmup: u32,
    /// Accept NaN and infinities in the inputs (rejected by default).
    #[arg(long)]
    allow_nonfinite: bool,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Print what the bundle holds: kernel, target, dims, tensors, launches, tiling.
    #[arg(long)]
    info: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn parse_tolerance(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("`{text}` is not a tolerance (a number, 0 or more)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut report = Report {
        bundle: cli.bundle.display().to_string(),
        ..Report::default()
    };
    let result = run(&cli, &mut report);
    let (code, problems) = match &result {
        Ok(()) => (0, Vec::new()),
        Err(f) => (f.kind.exit_code(), f.problems.clone()),
    };
    match cli.format {
        Format::Text => {
            let text = report.text();
            if !text.is_empty() {
                println!("{text}");
            }
        }
        Format::Json => println!("{:#}", report.json(code, &problems)),
    }
    for p in &problems {
        eprintln!("{p}");
    }
    ExitCode::from(code)
}

fn run(cli: &Cli, report: &mut Report) -> Result<(), Failure> {
    let bundle = read_bundle(&cli.bundle)?;
    let manifest = &bundle.manifest;
    report.kernel = Some(manifest.kernel.clone());
    report.target = Some(manifest.target.to_string());
    if cli.info {
        match cli.format {
            Format::Text => println!("{}", info::text(&cli.bundle, &bundle)),
            Format::Json => report.info = Some(info::json(&cli.bundle, &bundle)),
        }
    }
    if cli.inputs.is_none() && cli.random.is_none() {
        return Ok(());
    }
    let choice = choose_device(cli.device, manifest)?;
    // A bundle whose code does not match its manifest is bad wherever it runs.
    choice
        .check_code(&bundle)
        .map_err(|e| Failure::one(FailureKind::Input, Problem::new(e.to_string())))?;
    check_output_path(cli.output.as_deref(), manifest)?;
    let (dims, inputs) = match (&cli.inputs, cli.random) {
        (Some(path), _) => {
            let inputs = inputs::read_inputs(path, manifest).map_err(Failure::input)?;
            let dims = inputs::bind(path, manifest, &cli.shape, &inputs).map_err(Failure::input)?;
            inputs::check_values(path, manifest, &dims, &inputs, cli.allow_nonfinite)
                .map_err(Failure::input)?;
            report.inputs = Some(path.display().to_string());
            (dims, inputs)
        }
        (None, Some(seed)) => {
            report.inputs = Some(format!("random, seed {seed}"));
            random::draw(manifest, &cli.shape, seed).map_err(Failure::input)?
        }
        (None, None) => return Ok(()),
    };
    let reference = match &cli.check {
        Some(path) => Some(compare::read_reference(path, manifest, &dims).map_err(Failure::input)?),
        None => None,
    };
    report.dims = Some(dims.clone());

    let device = choice.open()?;
    report.device = Some(device.name());
    let kernel = device.load(&bundle)?;
    let outputs = kernel.run(&dims, &inputs)?;
    report.outputs = manifest
        .outputs
        .iter()
        .filter_map(|t| outputs.get(&t.name).map(|o| OutputSummary::of(&t.name, o)))
        .collect();
    if let Some(iters) = cli.time {
        let (iters, warmup) = (iters as usize, cli.warmup as usize);
        let timing = kernel.time(&dims, &inputs, warmup, iters)?;
        report.time = Some(TimeSummary {
            iters,
            warmup,
            timing,
        });
    }
    if let (Some(path), Some(reference)) = (&cli.check, &reference) {
        report.check = Some(CheckSummary {
            reference: path.display().to_string(),
            tolerance: cli.tolerance,
            outputs: compare::compare(&outputs, reference, cli.tolerance),
        });
    }
    if let Some(path) = &cli.output {
        write_tensors(path, &in_declared_order(manifest, outputs)).map_err(|e| {
            Failure::one(
                FailureKind::Input,
                Problem::new(format!("cannot write the outputs: {e}")),
            )
        })?;
        report.written = Some(path.display().to_string());
    }
    match &report.check {
        Some(check) if !check.ok() => {
            let failed: Vec<&str> = check
                .outputs
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.name.as_str())
                .collect();
            Err(Failure::one(
                FailureKind::Check,
                Problem::new(format!(
                    "output{} {} differ{} from the reference {}",
                    if failed.len() == 1 { "" } else { "s" },
                    failed.join(", "),
                    if failed.len() == 1 { "s" } else { "" },
                    check.reference
                )),
            ))
        }
        _ => Ok(()),
    }
}

fn read_bundle(path: &Path) -> Result<Bundle, Failure> {
    Bundle::read(path).map_err(|e| {
        let message = match e {
            // Already names the file.
            BundleError::Io { .. } => format!("cannot read the bundle: {e}"),
            _ => format!("cannot read the bundle {}: {e}", path.display()),
        };
        Failure::one(FailureKind::Input, Problem::new(message))
    })
}

/// The runtime and device for the bundle: `--device`, or device 0 of its target's runtime.
fn choose_device(
    given: Option<DeviceChoice>,
    manifest: &KernelManifest,
) -> Result<DeviceChoice, Failure> {
    let target = manifest.target;
    let wrong = |message: String| Failure::one(FailureKind::Input, Problem::new(message));
    match given {
        Some(choice) if choice.runs(&target) => Ok(choice),
        Some(choice) => Err(wrong(format!(
            "the bundle is for {target}, which --device {choice} cannot run"
        ))),
        None => DeviceChoice::for_target(&target).ok_or_else(|| {
            wrong(format!(
                "the bundle is for {target}, and this attnc-run has no runtime for it (it runs cuda:sm_NN and vulkan bundles)"
            ))
        }),
    }
}

/// Rejects an output path that cannot be written before spending a run on it.
fn check_output_path(path: Option<&Path>, manifest: &KernelManifest) -> Result<(), Failure> {
    let Some(path) = path else { return Ok(()) };
    let mut problems = Vec::new();
    match TensorFormat::from_path(path) {
        Err(e) => problems.push(Problem::new(format!("--output: {e}"))),
        Ok(TensorFormat::Npy) if manifest.outputs.len() != 1 => {
            let names: Vec<&str> = manifest.outputs.iter().map(|t| t.name.as_str()).collect();
            problems.push(
                Problem::new(format!(
                    "--output {}: a .npy file holds one tensor, but kernel `{}` has {} outputs ({})",
                    path.display(),
                    manifest.kernel,
                    names.len(),
                    names.join(", ")
                ))
                .with_note("use a .npz or .safetensors file"),
            );
        }
        Ok(_) => {}
    }
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !folder.is_dir()
    {
        problems.push(Problem::new(format!(
            "--output {}: folder {} does not exist",
            path.display(),
            folder.display()
        )));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::input(problems))
    }
}

/// The outputs in the manifest's order (the order of an .npz file's members).
fn in_declared_order(manifest: &KernelManifest, mut outputs: Tensors) -> Vec<(String, HostTensor)> {
    manifest
        .outputs
        .iter()
        .filter_map(|t| outputs.remove_entry(&t.name))
        .collect()
}
