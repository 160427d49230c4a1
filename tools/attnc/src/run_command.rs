//! `attnc run FILE`: runs a kernel on the chosen device and prints, per output, a checksum (sum,
//! mean |x|, and a hash of the values stored in the output's dtype) and the time.
//!
//! The inputs are the user's tensors (`--inputs in.npz`, the dims bound from their shapes) or
//! seeded random ones (`--shape ... --seed N`, optionally saved with `--save-inputs`, so the run
//! can be reproduced outside attnc and again with `--inputs`). `--output` writes the outputs in
//! their declared dtypes. Every check comes before the kernel runs and every file is written
//! after it, each atomically, so a failed run writes nothing.

use crate::build_command::{compile_graph, load_source, report};
use crate::shape_arg::parse_shape;
use crate::stdout::outln;
use crate::tensor_inputs::{self, Inputs};
use attnc_frontend::{Diagnostic, Sources};
use attnc_ir::{Bindings, Graph};
use attnc_reference::{interpret, random_inputs, to_f64_tensors};
use attnc_tensors::{HostTensor, TensorFormat, write_tensors};
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where a kernel runs. Compiled backends join this list as they are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The f64 reference interpreter (the oracle).
    Reference,
    /// This machine's cores, through the compiled CPU kernel.
    Cpu,
}

/// The largest relative difference from the reference that `--check` accepts. Kernels compute
/// in f32 (a relative rounding error near 6e-8 per operation); sums over a few thousand keys in
/// a different order than the reference stay well below this.
pub const CHECK_TOLERANCE: f64 = 1e-4;

#[derive(Args)]
pub struct RunArgs {
    /// The .attn file to run.
    pub file: PathBuf,
    /// Values of the kernel's dims, e.g. B=2,H=4,S=128,D=64. With --inputs, those given must
    /// agree with the tensors' shapes, and the others are taken from them.
    #[arg(long, default_value = "")]
    pub shape: String,
    /// Seed of the random inputs (when no --inputs are given).
    #[arg(long, default_value_t = 0, conflicts_with = "inputs")]
    pub seed: u64,
    /// Run on these tensors (.npz or .safetensors; .npy for a kernel with one input), matched
    /// to the kernel's inputs by name. bf16 may also be given as its bits in a uint16 array.
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// Write the outputs, in their declared dtypes, to this .npy (one output), .npz or
    /// .safetensors file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write the random inputs drawn (in their dtypes) to this .npz or .safetensors file, to
    /// run them again with --inputs or outside attnc.
    #[arg(long, value_name = "FILE", conflicts_with = "inputs")]
    pub save_inputs: Option<PathBuf>,
    /// Accept NaN and infinities in --inputs (rejected by default).
    #[arg(long, requires = "inputs")]
    pub allow_nonfinite: bool,
    /// Where to run.
    #[arg(long, value_enum, default_value = "reference")]
    pub device: Device,
    /// Also run the reference interpreter and fail if the outputs differ beyond the tolerance.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let (mut sources, file) = load_source(&args.file)?;
    let fixed =
        parse_shape(&args.shape).map_err(|e| crate::usage(anyhow::anyhow!("--shape: {e}")))?;
    let unit =
        attnc_frontend::parse_with_prelude(&mut sources, file).map_err(|d| report(&d, &sources))?;
    let graph = compile_graph(&unit, &sources)?;
    check_destinations(args, &graph).map_err(|d| report(&d, &sources))?;
    let (bindings, inputs, origin) = match &args.inputs {
        Some(path) => {
            let (bindings, inputs) =
                load_inputs(args.allow_nonfinite, path, &graph, &fixed, &sources)?;
            crate::run_memory::check(&graph, &bindings, false)?;
            (bindings, inputs, format!("inputs from {}", path.display()))
        }
        None => {
            let no_tensors = BTreeMap::new();
            let bindings = attnc_ir::bind_dims(&graph, &fixed, &no_tensors)
                .map_err(|d| report(&d, &sources))?;
            crate::run_memory::check(&graph, &bindings, true)?;
            let inputs = random_inputs(&graph, &bindings, args.seed)
                .map_err(|e| anyhow::anyhow!("cannot draw inputs: {e}"))?;
            (bindings, inputs, format!("seed {}", args.seed))
        }
    };
    let values = to_f64_tensors(&inputs);
    let mut compile_seconds = None;
    let (outputs, seconds) = match args.device {
        Device::Reference => {
            let start = Instant::now();
            let out = interpret(&graph, &bindings, &values)
                .map_err(|e| crate::ice::interpret_failed(e, &graph, &sources))?;
            (out, start.elapsed().as_secs_f64())
        }
        Device::Cpu => {
            let start = Instant::now();
            let kernel = crate::cpu_device::compile(&graph, &bindings, &sources)?;
            compile_seconds = Some(start.elapsed().as_secs_f64());
            let start = Instant::now();
            let out = crate::cpu_device::run(&kernel, &bindings, &values)?;
            (out, start.elapsed().as_secs_f64())
        }
    };
    let mut stored = Vec::new();
    for (_, name, ty) in graph.outputs() {
        let Some(tensor) = outputs.get(name) else {
            return Err(crate::internal(anyhow::anyhow!(
                "internal compiler error: the kernel did not produce output `{name}` (at {})",
                crate::ice::kernel_location(&graph, &sources)
            )));
        };
        let t = HostTensor::from_f64(ty.dtype, tensor.shape.clone(), &tensor.data)
            .map_err(|e| anyhow::anyhow!("output `{name}`: {e}"))?;
        stored.push((name.to_string(), t));
    }
    outln!(
        "kernel {} on {:?} with {bindings}, {origin}",
        graph.kernel,
        args.device
    );
    for (name, tensor) in &stored {
        outln!("  {}", checksum_line(name, tensor));
    }
    let flops = attnc_ir::work::estimate(&graph, &bindings)
        .map(|w| w.flops)
        .unwrap_or(0.0);
    if let Some(c) = compile_seconds {
        outln!("  compile {:.1} ms", c * 1e3);
    }
    outln!(
        "  time {:.3} ms, {:.2} GFLOP/s",
        seconds * 1e3,
        flops / seconds.max(1e-12) / 1e9
    );
    if args.check && args.device != Device::Reference {
        let reference = interpret(&graph, &bindings, &values)
            .map_err(|e| crate::ice::interpret_failed(e, &graph, &sources))?;
        for (name, want) in &reference {
            let got = outputs.get(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "the {:?} kernel did not produce output `{name}`",
                    args.device
                )
            })?;
            let (err, mismatch) = crate::cpu_device::compare(got, want);
            let ok = !mismatch && err <= CHECK_TOLERANCE;
            outln!(
                "  check {name}: max relative difference from the reference {err:.3e} (tolerance {CHECK_TOLERANCE:.0e}){}",
                if ok { ": ok" } else { "" }
            );
            if !ok {
                anyhow::bail!(
                    "output `{name}` differs from the reference interpreter{}",
                    if mismatch {
                        " (finite and non-finite values disagree)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    if let Some(path) = &args.save_inputs {
        write_tensors(path, &in_declared_order(&graph, inputs))?;
        outln!("  inputs saved to {}", path.display());
    }
    if let Some(path) = &args.output {
        write_tensors(path, &stored)?;
        outln!("  outputs written to {}", path.display());
    }
    Ok(())
}

/// Reads `--inputs`, binds the dims from the tensors' shapes (and `--shape`), and checks the
/// values; all problems of one stage are reported together.
pub(crate) fn load_inputs(
    allow_nonfinite: bool,
    path: &Path,
    graph: &Graph,
    fixed: &BTreeMap<String, i64>,
    sources: &Sources,
) -> anyhow::Result<(Bindings, Inputs)> {
    let inputs = tensor_inputs::read_inputs(path, graph).map_err(|d| report(&d, sources))?;
    let shapes: BTreeMap<String, Vec<usize>> = inputs
        .iter()
        .map(|(name, t)| (name.clone(), t.shape().to_vec()))
        .collect();
    let bindings = attnc_ir::bind_dims(graph, fixed, &shapes).map_err(|diags| {
        let note = format!(
            "the input shapes are those of the tensors in {}",
            path.display()
        );
        let diags: Vec<Diagnostic> = diags.into_iter().map(|d| d.with_note(&note)).collect();
        report(&diags, sources)
    })?;
    tensor_inputs::check_values(path, graph, &bindings, &inputs, allow_nonfinite)
        .map_err(|d| report(&d, sources))?;
    Ok((bindings, inputs))
}

/// Rejects output paths that cannot be written, before spending a run on them: an unknown
/// extension, several tensors for a .npy file, a missing folder, or one file named twice.
fn check_destinations(args: &RunArgs, graph: &Graph) -> Result<(), Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let outputs: Vec<&str> = graph.outputs().iter().map(|(_, n, _)| *n).collect();
    let inputs: Vec<&str> = graph.inputs().iter().map(|(_, n, _)| *n).collect();
    let destinations = [
        ("--output", &args.output, "outputs", outputs),
        ("--save-inputs", &args.save_inputs, "inputs", inputs),
    ];
    for (flag, path, what, names) in &destinations {
        let Some(path) = path else { continue };
        match TensorFormat::from_path(path) {
            Err(e) => errors.push(Diagnostic::global(format!("{flag}: {e}"))),
            Ok(TensorFormat::Npy) if names.len() != 1 => errors.push(
                Diagnostic::global(format!(
                    "{flag} {}: a .npy file holds one tensor, but kernel `{}` has {} {what} ({})",
                    path.display(),
                    graph.kernel,
                    names.len(),
                    names.join(", ")
                ))
                .with_note("use a .npz or .safetensors file"),
            ),
            Ok(_) => {}
        }
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(folder) = folder
            && !folder.is_dir()
        {
            errors.push(Diagnostic::global(format!(
                "{flag} {}: folder {} does not exist",
                path.display(),
                folder.display()
            )));
        }
    }
    if let (Some(a), Some(b)) = (&args.output, &args.save_inputs)
        && same_file(a, b)
    {
        errors.push(Diagnostic::global(format!(
            "--output and --save-inputs both name {}; give two files",
            a.display()
        )));
    }
    if let (Some(out), Some(inputs)) = (&args.output, &args.inputs)
        && same_file(out, inputs)
    {
        errors.push(Diagnostic::global(format!(
            "--output {} is the --inputs file: the run would overwrite its own inputs; give another file",
            out.display()
        )));
    }
    for (flag, path) in [
        ("--output", &args.output),
        ("--save-inputs", &args.save_inputs),
    ] {
        if let Some(path) = path
            && let Err(why) = probe_writable(path)
        {
            errors.push(Diagnostic::global(format!(
                "{flag} {}: cannot be written: {why}",
                path.display()
            )));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Whether two paths name one file: the same text, or (for files that exist) the same file
/// reached another way (`./in.npz`, a link).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Checks, before the kernel runs, that `path` can be written the way the tensors are written
/// (a temporary file in its folder, renamed over it): the folder takes a new file, and the
/// path is not a folder or a read-only file.
fn probe_writable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("it is a folder".to_string());
    }
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().readonly()
    {
        return Err("the file is read-only".to_string());
    }
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !folder.is_dir() {
        // Reported on its own as a missing folder.
        return Ok(());
    }
    tempfile::NamedTempFile::new_in(folder)
        .map(drop)
        .map_err(|e| format!("folder {} takes no new file: {e}", folder.display()))
}

/// The inputs as named tensors in the kernel's declaration order (the order of an .npz file).
fn in_declared_order(graph: &Graph, mut inputs: Inputs) -> Vec<(String, HostTensor)> {
    graph
        .inputs()
        .iter()
        .filter_map(|(_, name, _)| inputs.remove_entry(*name))
        .collect()
}

/// One line per output: enough to compare two runs at a glance and bit for bit by the hash.
fn checksum_line(name: &str, t: &HostTensor) -> String {
    let values = t.to_f64_vec();
    let nonfinite = values.iter().filter(|v| !v.is_finite()).count();
    let sum: f64 = values.iter().filter(|v| v.is_finite()).sum();
    let mean_abs = values
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| v.abs())
        .sum::<f64>()
        / values.len().max(1) as f64;
    let hash = t.data().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!(
        "{name}: {}{:?} sum={sum:.6e} mean|x|={mean_abs:.6e} nonfinite={nonfinite} hash={hash:016x}",
        t.dtype(),
        t.shape()
    )
}
