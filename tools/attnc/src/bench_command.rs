//! `attnc bench FILE`: times the compiled CPU kernel (median of `--repeat` runs, compile time
//! apart) and, on request, the reference interpreter and a textbook unfused loop on the same
//! inputs with the same threads. Prints a table, or one JSON document with `--format json`
//! (`--json` still works) for `bench/cpu_vs_pytorch.py`. A timing is a measurement, never a
//! test.

use crate::build_command::{compile_graph, load_source, report};
use crate::output_format::{OutputFormat, dims_json};
use crate::progress::Progress;
use crate::shape_arg::parse_shape;
use crate::stdout::outln;
use attnc_ir::Graph;
use attnc_passes::tiling::target::{CpuTarget, Target};
use attnc_reference::{Tensor, interpret, random_inputs, to_f64_tensors};
use clap::{Args, ValueEnum};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// The textbook computation a kernel is compared with: S = QKᵀ/√D materialised, softmax, PV.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Unfused {
    /// Every key.
    Full,
    /// Keys j <= i.
    Causal,
}

/// Parses `bench --target`: a CPU preset of [`Target::PRESETS`] (the kernel runs here).
fn parse_cpu_target(name: &str) -> Result<CpuTarget, String> {
    match crate::build_command::parse_target(name)? {
        Target::Cpu(cpu) => Ok(cpu),
        Target::Gpu(_) => Err(format!(
            "`{name}` is a GPU target; `attnc bench` times CPU kernels (attnc-run --time times GPU bundles)"
        )),
    }
}

#[derive(Args)]
pub struct BenchArgs {
    /// The .attn file to time.
    pub file: PathBuf,
    /// Values of the kernel's dims, e.g. B=1,H=16,S=1024,D=64 (with --inputs, taken from the
    /// tensors' shapes).
    #[arg(long, default_value = "")]
    pub shape: String,
    /// Seed of the random inputs (when no --inputs are given).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run on these tensors instead of random ones (.npz or .safetensors).
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    /// Accept NaN and infinities in --inputs (rejected by default, as by `attnc run`).
    #[arg(long, requires = "inputs")]
    pub allow_nonfinite: bool,
    /// Write the kernel's outputs here, to compare them with another implementation.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Timed runs of the kernel (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The CPU to compile for: host (this machine, as LLVM detects it), x86-avx2 (AVX2 and FMA
    /// code, 8-lane tiles and register blocks, run here: how an AVX-512 machine times what an
    /// AVX2-only one would run) or x86-avx512.
    #[arg(long, default_value = "host", value_parser = parse_cpu_target)]
    pub target: CpuTarget,
    /// Run a recurrence as the sequential scan even where its chunked form applies (to time
    /// one against the other).
    #[arg(long)]
    pub scan: bool,
    /// Also time the reference interpreter (slow: small shapes only).
    #[arg(long)]
    pub reference: bool,
    /// Also time a textbook unfused loop over inputs q, k, v of shape [B, H, S, D].
    #[arg(long, value_enum)]
    pub unfused: Option<Unfused>,
    /// What stdout holds: a table, or one JSON document (docs/output-formats.md).
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// The same as --format json (kept for bench/cpu_vs_pytorch.py and older scripts).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()?;
    }
    let (mut sources, file) = load_source(&args.file)?;
    let fixed =
        parse_shape(&args.shape).map_err(|e| crate::usage(anyhow::anyhow!("--shape: {e}")))?;
    let unit =
        attnc_frontend::parse_with_prelude(&mut sources, file).map_err(|d| report(&d, &sources))?;
    let graph = compile_graph(&unit, &sources)?;
    let (bindings, host) = match &args.inputs {
        // The same reading and checks as `attnc run --inputs` (shapes, dtypes, finiteness,
        // declared ranges).
        Some(path) => {
            let loaded = crate::run_command::load_inputs(
                args.allow_nonfinite,
                path,
                &graph,
                &fixed,
                &sources,
            )?;
            crate::run_memory::check(&graph, &loaded.0, false)?;
            loaded
        }
        None => {
            let b = attnc_ir::bind_dims(&graph, &fixed, &BTreeMap::new())
                .map_err(|d| report(&d, &sources))?;
            crate::run_memory::check(&graph, &b, true)?;
            let inputs =
                random_inputs(&graph, &b, args.seed).map_err(|e| anyhow::anyhow!("{e}"))?;
            (b, inputs)
        }
    };
    let inputs = to_f64_tensors(&host);
    let progress = Progress::spinner("compiling the CPU kernel");
    let start = Instant::now();
    let target = args.target.clone();
    let kernel = crate::cpu_device::compile_as(&graph, &bindings, &sources, target, args.scan)?;
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;
    drop(progress);
    let useful = match kernel.chunked_flops(&bindings) {
        Some(flops) => {
            flops.map_err(|e| anyhow::anyhow!("counting the chunked form's work: {e}"))?
        }
        None => useful_flops(&graph, &bindings, &inputs)?,
    };
    // The kernel's inputs are made once: each timed call converts them to f32 and its outputs
    // back, as `attnc run` does, but copies nothing the kernel does not take.
    let arrays = crate::cpu_device::arrays(&inputs);
    let mut outputs = crate::cpu_device::run_arrays(&kernel, &bindings, &arrays)?;
    let mut times = Vec::new();
    let progress = Progress::bar("timing the kernel", args.repeat.max(1) as u64);
    for _ in 0..args.repeat.max(1) {
        let start = Instant::now();
        outputs = crate::cpu_device::run_arrays(&kernel, &bindings, &arrays)?;
        times.push(start.elapsed().as_secs_f64());
        progress.inc();
    }
    drop(progress);
    let kernel_s = median(&mut times);
    // Read before anything that materialises S x S values runs in this process.
    let peak_rss_mb = peak_rss_mb();
    let mut rows = vec![("attnc cpu".to_string(), kernel_s)];
    if let Some(kind) = args.unfused {
        let _progress = Progress::spinner("timing the unfused loop");
        let start = Instant::now();
        let o = unfused(&inputs, kind)?;
        rows.push(("unfused loop".to_string(), start.elapsed().as_secs_f64()));
        if let Some(ours) = outputs.values().next() {
            let (err, _) = crate::cpu_device::compare(ours, &o);
            if err > 1e-3 {
                anyhow::bail!(
                    "the unfused loop and the kernel disagree ({err:.2e}): is --unfused the right computation?"
                );
            }
        }
    }
    if args.reference {
        let _progress = Progress::spinner("timing the f64 reference interpreter");
        let start = Instant::now();
        interpret(&graph, &bindings, &inputs)
            .map_err(|e| crate::ice::interpret_failed(e, &graph, &sources))?;
        rows.push(("reference".to_string(), start.elapsed().as_secs_f64()));
    }
    if let Some(path) = &args.output {
        let dtypes = graph.tensor_dtypes();
        let stored: Vec<(String, attnc_tensors::HostTensor)> = outputs
            .iter()
            .map(|(n, t)| {
                let dtype = dtypes[n];
                attnc_tensors::HostTensor::from_f64(dtype, t.shape.clone(), &t.data)
                    .map(|h| (n.clone(), h))
            })
            .collect::<Result<_, _>>()?;
        attnc_tensors::write_tensors(path, &stored)?;
    }
    let threads = rayon::current_num_threads();
    if args.json || args.format == OutputFormat::Json {
        let timings: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, s)| {
                serde_json::json!({
                    "name": name,
                    "ms": s * 1e3,
                    "gflops": useful / s / 1e9,
                    "relative_to_kernel": s / kernel_s,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "kernel": graph.kernel,
            "device": "cpu",
            "target": args.target.name,
            "dims": dims_json(&bindings),
            "threads": threads,
            "repeat": args.repeat.max(1),
            "useful_flops": useful,
            "chunk": kernel.chunk(),
            "compile_ms": compile_ms,
            "peak_rss_mb": peak_rss_mb,
            "timings": timings,
        });
        outln!("{doc}");
    } else {
        outln!(
            "kernel {} with {bindings}, {threads} threads, target {}, compile {compile_ms:.1} ms, peak RSS {peak_rss_mb:.1} MB",
            graph.kernel,
            args.target.name
        );
        for (name, s) in &rows {
            outln!(
                "  {name:<14} {:>10.3} ms {:>9.2} GFLOP/s  {:>7.2}x",
                s * 1e3,
                useful / s / 1e9,
                s / kernel_s
            );
        }
    }
    Ok(())
}

/// The FLOPs of the two contractions on the pairs the mask keeps: 2·Sq·Sk·(Dqk + Dv) per
/// (b, h), the convention of the peers' reports (4·B·H·S²·D, halved for a causal mask).
fn useful_flops(
    graph: &Graph,
    bindings: &attnc_ir::Bindings,
    inputs: &BTreeMap<String, Tensor>,
) -> anyhow::Result<f64> {
    let w = attnc_ir::work::estimate(graph, bindings).map_err(|e| anyhow::anyhow!(e))?;
    // A mask that reads input data is measured on this run's inputs.
    let density = if w.density_exact {
        w.mask_density
    } else {
        crate::mask_pairs::kept_fraction(graph, bindings, inputs).unwrap_or(w.mask_density)
    };
    let mut total = 0.0;
    for n in graph.node_indices() {
        let node = graph.node(n);
        let is_contraction = matches!(node.op, attnc_ir::Op::Score | attnc_ir::Op::Aggregate);
        if !is_contraction {
            continue;
        }
        let (pairs_ty, len_ty) = match node.op {
            attnc_ir::Op::Score => (
                node.results.first(),
                graph.operands(n).first().map(|(_, e)| &e.ty),
            ),
            _ => (
                graph.operands(n).first().map(|(_, e)| &e.ty),
                node.results.first(),
            ),
        };
        let (Some(attnc_ir::graph::PortType::Value(p)), Some(attnc_ir::graph::PortType::Value(l))) =
            (pairs_ty, len_ty)
        else {
            continue;
        };
        let points: f64 = p
            .indices
            .iter()
            .map(|fi| bindings.extent(graph, fi) as f64)
            .product();
        let len = match &l.feature {
            attnc_ir::types::Feature::Vector(d) => bindings.eval(d).unwrap_or(1) as f64,
            _ => 1.0,
        };
        total += 2.0 * points * len * density;
    }
    if total == 0.0 {
        // A recurrence with no chunked form: count its steps' work rather than print 0 GFLOP/s.
        total = w.flops;
    }
    Ok(total)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The high-water mark of this process's resident memory, from Linux's /proc.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Materialises the scores of each (b, h) slice, applies the softmax, multiplies by V: the
/// straightforward implementation, in f32, parallel over slices like the kernel.
fn unfused(inputs: &BTreeMap<String, Tensor>, kind: Unfused) -> anyhow::Result<Tensor> {
    let get = |n: &str| {
        inputs.get(n).ok_or_else(|| {
            crate::usage(anyhow::anyhow!(
                "--unfused needs an input `{n}` of shape [B, H, S, D]"
            ))
        })
    };
    let (q, k, v) = (get("q")?, get("k")?, get("v")?);
    let [b, h, s, d] = q.shape[..] else {
        return Err(crate::usage(anyhow::anyhow!(
            "--unfused needs q of rank 4, got {:?}",
            q.shape
        )));
    };
    if k.shape != q.shape || v.shape != q.shape {
        return Err(crate::usage(anyhow::anyhow!(
            "--unfused needs q, k and v of one shape"
        )));
    }
    let to32 = |t: &Tensor| t.data.iter().map(|x| *x as f32).collect::<Vec<f32>>();
    let (q, k, v) = (to32(q), to32(k), to32(v));
    let scale = 1.0 / (d as f32).sqrt();
    let slices: Vec<Vec<f32>> = (0..b * h)
        .into_par_iter()
        .map(|slice| {
            let base = slice * s * d;
            let mut scores = vec![0f32; s * s];
            for i in 0..s {
                for j in 0..s {
                    let masked = kind == Unfused::Causal && j > i;
                    scores[i * s + j] = if masked {
                        f32::NEG_INFINITY
                    } else {
                        (0..d)
                            .map(|e| q[base + i * d + e] * k[base + j * d + e])
                            .sum::<f32>()
                            * scale
                    };
                }
            }
            for i in 0..s {
                let row = &mut scores[i * s..(i + 1) * s];
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut l = 0.0;
                for x in row.iter_mut() {
                    *x = (*x - m).exp();
                    l += *x;
                }
                row.iter_mut().for_each(|x| *x /= l);
            }
            let mut o = vec![0f32; s * d];
            for i in 0..s {
                for j in 0..s {
                    let p = scores[i * s + j];
                    for e in 0..d {
                        o[i * d + e] += p * v[base + j * d + e];
                    }
                }
            }
            o
        })
        .collect();
    Ok(Tensor {
        shape: vec![b, h, s, d],
        data: slices.into_iter().flatten().map(f64::from).collect(),
    })
}
