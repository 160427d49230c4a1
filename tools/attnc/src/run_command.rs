//! `attnc run FILE`: runs a kernel on the chosen device and prints, per output, a checksum (sum,
//! mean |x|, and a hash of the values stored in the output's dtype) and the time.
//!
//! The inputs are the user's tensors (`--inputs in.npz`, the dims bound from their shapes) or
//! seeded random ones (`--shape ... --seed N`, optionally saved with `--save-inputs`, so the run
//! can be reproduced outside attnc and again with `--inputs`). `--output` writes the outputs in
//! their declared dtypes. Every check comes before the kernel runs and every file is written
//! after it, each atomically, so a failed run writes nothing.

use crate::build_command::{compile_graph, load_source, report};
use crate::device_choice::{Device, Resolved};
use crate::output_format::{OutputFormat, dims_json};
use crate::progress::Progress;
use crate::shape_arg::parse_shape;
use crate::stdout::outln;
use crate::tensor_inputs::{self, Inputs};
use attnc_frontend::{Diagnostic, Sources};
use attnc_ir::{Bindings, Graph};
use attnc_reference::{interpret, random_inputs, to_f64_tensors};
use attnc_tensors::{HostTensor, TensorFormat, write_tensors};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The largest relative difference from the reference that `--check` accepts. Kernels compute
/// in f32 (a relative rounding error near 6e-8 per operation); sums over a few thousand keys in
/// a different order than the reference stay well below this.
pub const CHECK_TOLERANCE: f64 = 1e-4;

/// The tolerance of `--check` for one output: [`CHECK_TOLERANCE`], plus the rounding to the
/// output's element type where the device returns outputs in that type (the GPU kernels
/// narrow bf16 and f16 outputs on the device; the CPU kernel hands back its f32 results).
fn check_tolerance(device: Resolved, dtype: attnc_ir::ElementType) -> f64 {
    use attnc_ir::ElementType as E;
    let narrowed = matches!(device, Resolved::Cuda | Resolved::Vulkan);
    match (narrowed, dtype) {
        // Round to nearest: half a unit in the last place, relative to the largest |value|.
        (true, E::Bf16) => CHECK_TOLERANCE + 2f64.powi(-8),
        (true, E::F16) => CHECK_TOLERANCE + 2f64.powi(-10),
        _ => CHECK_TOLERANCE,
    }
}

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
    /// Where to run: auto (the best device present; today the compiled CPU kernel), cpu,
    /// reference (the f64 interpreter), cuda or vulkan. The device used is printed.
    /// (`build --target` names what code is generated for; `--device` where it runs.)
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// Also run the reference interpreter and fail if the outputs differ beyond the tolerance.
    #[arg(long)]
    pub check: bool,
    /// What stdout holds: text, or one JSON document (docs/output-formats.md).
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let device = crate::device_choice::resolve(args.device)?;
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
    if device != Resolved::Reference {
        crate::overflow_check::warn(&graph, &bindings, &values, &sources);
    }
    let mut compile_seconds = None;
    let (outputs, seconds) = match device {
        Resolved::Reference => {
            let _progress = Progress::spinner("running the f64 reference interpreter");
            let start = Instant::now();
            let out = interpret(&graph, &bindings, &values)
                .map_err(|e| crate::ice::interpret_failed(e, &graph, &sources))?;
            (out, start.elapsed().as_secs_f64())
        }
        Resolved::Cpu => {
            let progress = Progress::spinner("compiling the CPU kernel");
            let start = Instant::now();
            let kernel = crate::cpu_device::compile(&graph, &bindings, &sources)?;
            compile_seconds = Some(start.elapsed().as_secs_f64());
            drop(progress);
            let _progress = Progress::spinner("running the CPU kernel");
            let start = Instant::now();
            let out = crate::cpu_device::run(&kernel, &bindings, &values)?;
            (out, start.elapsed().as_secs_f64())
        }
        Resolved::Cuda => {
            let gpu = crate::gpu_device::open_cuda()?;
            unchecked_form_warning(&graph, &sources, args.check);
            let _progress = Progress::spinner("compiling and running the CUDA kernel");
            let run = crate::gpu_device::run_cuda(
                &gpu, &graph, &bindings, &inputs, &sources, &args.file,
            )?;
            compile_seconds = Some(run.compile_seconds);
            (run.outputs, run.run_seconds)
        }
        Resolved::Vulkan => {
            let gpu = crate::gpu_device::open_vulkan()?;
            let _progress = Progress::spinner("compiling and running the SPIR-V kernel");
            let run = crate::gpu_device::run_vulkan(
                &gpu, &graph, &bindings, &inputs, &sources, &args.file,
            )?;
            compile_seconds = Some(run.compile_seconds);
            (run.outputs, run.run_seconds)
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
    let text = args.format == OutputFormat::Text;
    let flops = attnc_ir::work::estimate(&graph, &bindings)
        .map(|w| w.flops)
        .unwrap_or(0.0);
    let gflops = flops / seconds.max(1e-12) / 1e9;
    if text {
        outln!(
            "kernel {} on {} ({}) with {bindings}, {origin}",
            graph.kernel,
            device.name(),
            device.describe()
        );
        for (name, tensor) in &stored {
            outln!("  {}", checksum_line(name, tensor));
        }
        if let Some(c) = compile_seconds {
            outln!("  compile {:.1} ms", c * 1e3);
        }
        outln!("  time {:.3} ms, {gflops:.2} GFLOP/s", seconds * 1e3);
    }
    let mut checks = Vec::new();
    let mut failed = None;
    if args.check && device != Resolved::Reference {
        let progress = Progress::spinner("checking against the f64 reference interpreter");
        let reference = interpret(&graph, &bindings, &values)
            .map_err(|e| report(&[e.to_diagnostic()], &sources))?;
        drop(progress);
        for (name, want) in &reference {
            let got = outputs.get(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "the {} kernel did not produce output `{name}`",
                    device.name()
                )
            })?;
            let (err, mismatch) = crate::cpu_device::compare(got, want);
            let dtype = graph
                .outputs()
                .iter()
                .find(|(_, n, _)| *n == name.as_str())
                .map_or(attnc_ir::ElementType::F32, |(_, _, t)| t.dtype);
            let tolerance = check_tolerance(device, dtype);
            let ok = !mismatch && err <= tolerance;
            if text {
                outln!(
                    "  check {name}: max relative difference from the reference {err:.3e} (tolerance {tolerance:.0e}){}",
                    if ok { ": ok" } else { "" }
                );
            }
            checks.push(serde_json::json!({
                "output": name,
                "max_relative_difference": err,
                "finiteness_differs": mismatch,
                "tolerance": tolerance,
                "ok": ok,
            }));
            if !ok {
                failed = Some(format!(
                    "output `{name}` differs from the reference interpreter{}",
                    if mismatch {
                        " (finite and non-finite values disagree)"
                    } else {
                        ""
                    }
                ));
                break;
            }
        }
    }
    if failed.is_none() {
        if let Some(path) = &args.save_inputs {
            write_tensors(path, &in_declared_order(&graph, inputs))?;
            if text {
                outln!("  inputs saved to {}", path.display());
            }
        }
        if let Some(path) = &args.output {
            write_tensors(path, &stored)?;
            if text {
                outln!("  outputs written to {}", path.display());
            }
        }
    }
    if !text {
        let outputs: Vec<serde_json::Value> = stored
            .iter()
            .map(|(name, t)| checksum_json(name, t))
            .collect();
        let doc = serde_json::json!({
            "kernel": graph.kernel,
            "device": device.name(),
            "dims": dims_json(&bindings),
            "inputs": match &args.inputs {
                Some(path) => serde_json::json!({ "file": path.display().to_string() }),
                None => serde_json::json!({ "seed": args.seed }),
            },
            "outputs": outputs,
            "compile_ms": compile_seconds.map(|c| c * 1e3),
            "time_ms": seconds * 1e3,
            "gflops": gflops,
            "checks": checks,
            "inputs_saved_to": args.save_inputs.as_ref().filter(|_| failed.is_none()).map(|p| p.display().to_string()),
            "outputs_written_to": args.output.as_ref().filter(|_| failed.is_none()).map(|p| p.display().to_string()),
        });
        outln!("{doc}");
    }
    match failed {
        Some(message) => Err(crate::Failure {
            code: crate::exit_code::CHECK_FAILED,
            error: anyhow::anyhow!(message),
        }
        .into()),
        None => Ok(()),
    }
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
    // A file the command line names that is not there is a usage error, as for FILE; what a
    // file that is there holds is the user's input (exit 1).
    if let Err(e) = std::fs::metadata(path) {
        return Err(crate::usage(anyhow::anyhow!(
            "cannot read the inputs: {}: {e}",
            path.display()
        )));
    }
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

/// The figures of [`checksum_line`] for one output, as JSON.
fn checksum_json(name: &str, t: &HostTensor) -> serde_json::Value {
    let c = Checksum::of(t);
    serde_json::json!({
        "name": name,
        "dtype": t.dtype().to_string(),
        "shape": t.shape(),
        "sum": c.sum,
        "mean_abs": c.mean_abs,
        "nonfinite": c.nonfinite,
        "hash": format!("{:016x}", c.hash),
    })
}

/// Sum and mean |x| of the finite values, the count of others, and an FNV-1a hash of the
/// stored bytes (equal hashes: bit-identical outputs).
struct Checksum {
    sum: f64,
    mean_abs: f64,
    nonfinite: usize,
    hash: u64,
}

impl Checksum {
    fn of(t: &HostTensor) -> Checksum {
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
        Checksum {
            sum,
            mean_abs,
            nonfinite,
            hash,
        }
    }
}

/// One line per output: enough to compare two runs at a glance and bit for bit by the hash.
fn checksum_line(name: &str, t: &HostTensor) -> String {
    let Checksum {
        sum,
        mean_abs,
        nonfinite,
        hash,
    } = Checksum::of(t);
    format!(
        "{name}: {}{:?} sum={sum:.6e} mean|x|={mean_abs:.6e} nonfinite={nonfinite} hash={hash:016x}",
        t.dtype(),
        t.shape()
    )
}

/// The CUDA forms of a recurrence (the chunked form, or the scan) assemble and are tested in
/// PTX, but have not yet been run against the reference on a GPU: say so unless `--check`
/// compares them here and now.
fn unchecked_form_warning(graph: &attnc_ir::Graph, sources: &attnc_frontend::Sources, check: bool) {
    let recurrence = graph
        .node_indices()
        .find(|n| matches!(graph.node(*n).op, attnc_ir::graph::Op::Recurrence { .. }));
    if let (Some(n), false) = (recurrence, check) {
        let d = attnc_frontend::Diagnostic::warning(
            "recurrences run on CUDA in a form (chunked, or a scan) not yet checked on a GPU"
                .to_string(),
            graph.node(n).span,
            "compiled for CUDA",
        )
        .with_note("`--check` compares the outputs with the f64 reference on this run");
        crate::report::warn(&[d], sources);
    }
}
