//! `attnc build FILE --emit ast,graph,fused,tiled`: compile and print the requested stages in
//! pipeline order; `--print-after-all` prints the graph after every pass, `--time-passes` the time
//! of every stage.

use crate::Reported;
use crate::shape_arg::parse_shape;
use crate::stdout::{out, outln};
use attnc_frontend::{Sources, print_ast, render_all};
use attnc_passes::pass_manager::{PassManager, Timing};
use attnc_passes::tiling::target::Target;
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A stage of the pipeline that can be printed. Later stages join this list as they are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Stage {
    Ast,
    Graph,
    Fused,
    Tiled,
    /// The kernel in MLIR, as written (before MLIR's passes).
    Mlir,
    /// The kernel in LLVM IR, after MLIR's pipeline and translation.
    Llvm,
    /// The GPU kernel in PTX, from LLVM's NVPTX back end (CUDA targets).
    Ptx,
}

/// Parses `--target`: a preset name of [`Target::PRESETS`].
pub fn parse_target(name: &str) -> Result<Target, String> {
    Target::preset(name).ok_or_else(|| {
        let names: Vec<String> = Target::PRESETS
            .iter()
            .map(|(n, what)| format!("  {n:<16} {what}"))
            .collect();
        format!(
            "unknown target `{name}`; the targets are:\n{}",
            names.join("\n")
        )
    })
}

#[derive(Args)]
pub struct BuildArgs {
    /// The .attn file to compile.
    pub file: PathBuf,
    /// Stages to print, comma-separated; they print in pipeline order.
    #[arg(long, value_delimiter = ',', default_value = "graph")]
    pub emit: Vec<Stage>,
    /// Dims to tile for, e.g. B=2,H=4,S=4096,D=64 (nominal sizes otherwise).
    #[arg(long, default_value = "")]
    pub shape: String,
    /// What to compile for: host, x86-avx512, x86-avx2, cuda:sm_80, cuda:sm_90a, vulkan,
    /// vulkan:coopmat.
    #[arg(long, default_value = "host", value_parser = parse_target)]
    pub target: Target,
    /// Print the graph after every pass.
    #[arg(long)]
    pub print_after_all: bool,
    /// Print the time of every stage and pass on stderr.
    #[arg(long)]
    pub time_passes: bool,
    /// Write the compiled kernel as a bundle (`.attnb`: manifest and code) for a GPU target,
    /// to run with `attnc-run` or `attnc run --device`.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let (mut sources, file) = load_source(&args.file)?;
    let fixed =
        parse_shape(&args.shape).map_err(|e| crate::usage(anyhow::anyhow!("--shape: {e}")))?;
    let mut stages = args.emit.clone();
    stages.sort();
    stages.dedup();
    let mut last = stages.iter().max().copied().unwrap_or(Stage::Graph);
    if args.output.is_some() {
        last = Stage::Ptx;
    }
    let mut laps = Laps::default();
    let unit =
        attnc_frontend::parse_with_prelude(&mut sources, file).map_err(|d| report(&d, &sources))?;
    laps.lap("parse");
    if stages.contains(&Stage::Ast) {
        out!("{}", print_ast::print_program(&unit.program, &sources));
    }
    if last >= Stage::Graph {
        let mut graph = compile_graph(&unit, &sources)?;
        let graph_before_passes = graph.clone();
        laps.lap("build graph");
        if args.print_after_all {
            outln!("// after build\n{}", attnc_ir::dump::dump_graph(&graph));
        }
        let pass_timings = PassManager::standard()
            .run(&mut graph, &mut |name, changed, g| {
                if args.print_after_all {
                    let note = if changed { "" } else { " (no change)" };
                    outln!("// after {name}{note}\n{}", attnc_ir::dump::dump_graph(g));
                }
            })
            .map_err(|e| crate::ice::pass_failed(e, &graph_before_passes, &sources))?;
        laps.extend(pass_timings);
        if stages.contains(&Stage::Graph) {
            out!("{}", attnc_ir::dump::dump_graph(&graph));
        }
        if last >= Stage::Fused {
            let fused = attnc_passes::fusion::fuse(&graph)
                .map_err(|e| crate::ice::internal_at("fusion", e, &graph, &sources))?;
            laps.lap("fusion");
            if stages.contains(&Stage::Fused) {
                out!("{}", attnc_passes::fusion::dump::dump_fused(&graph, &fused));
            }
            if last >= Stage::Tiled {
                let complete = graph
                    .dims
                    .iter()
                    .all(|d| fixed.contains_key(&d.name) || d.default.is_some());
                let given = if fixed.is_empty() {
                    None
                } else if complete {
                    Some(
                        attnc_ir::bind_dims(&graph, &fixed, &BTreeMap::new())
                            .map_err(|d| report(&d, &sources))?,
                    )
                } else {
                    // Some dims given (a GPU kernel's head dims, say): the others take nominal
                    // values for the tile choice, and stay free in the compiled code.
                    let (mut dims, _) = attnc_passes::tiling::tiling_dims(&graph, None);
                    dims.extend(fixed.iter().map(|(k, v)| (k.clone(), *v)));
                    Some(attnc_ir::Bindings { dims })
                };
                let tiled =
                    attnc_passes::tiling::tile(&graph, &fused, &args.target, given.as_ref())
                        .map_err(|e| anyhow::anyhow!("tiling failed: {e}"))?;
                laps.lap("tiling");
                if stages.contains(&Stage::Tiled) {
                    out!("{}", attnc_passes::tiling::dump::dump_tiled(&tiled));
                }
                if last >= Stage::Mlir {
                    match &args.target {
                        Target::Cpu(_) => {
                            if args.output.is_some() || stages.contains(&Stage::Ptx) {
                                anyhow::bail!(
                                    "--target {} compiles for this process's JIT: bundles and PTX come from GPU targets (--target cuda:sm_90a)",
                                    args.target
                                );
                            }
                            let (mlir, _, _) = attnc_cpu::generate_mlir(&graph, &fused, &tiled)?;
                            laps.lap("write mlir");
                            if stages.contains(&Stage::Mlir) {
                                out!("{mlir}");
                            }
                            if last >= Stage::Llvm {
                                let llvm = attnc_cpu::lower_to_llvm(&mlir)?;
                                laps.lap("mlir to llvm");
                                out!("{llvm}");
                            }
                        }
                        Target::Gpu(_) => {
                            let build =
                                crate::gpu_device::compile_gpu(&graph, &fused, &tiled, &sources)?;
                            laps.lap("gpu code");
                            if stages.contains(&Stage::Mlir) {
                                out!("{}", build.mlir);
                            }
                            if stages.contains(&Stage::Llvm) {
                                out!("{}", build.llvm_ir);
                            }
                            if stages.contains(&Stage::Ptx) {
                                out!("{}", build.ptx);
                            }
                            if let Some(path) = &args.output {
                                let bundle =
                                    crate::gpu_device::bundle(&build, &graph, &sources, &args.file);
                                bundle
                                    .write(path)
                                    .map_err(|e| anyhow::anyhow!("cannot write the bundle: {e}"))?;
                                eprintln!(
                                    "wrote {} ({} for {}; {})",
                                    path.display(),
                                    graph.kernel,
                                    build.target,
                                    build.tiling
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    if args.time_passes {
        let total: f64 = laps.timings.iter().map(|t| t.duration.as_secs_f64()).sum();
        for t in &laps.timings {
            eprintln!(
                "time {:<14} {:>9.3} ms",
                t.name,
                t.duration.as_secs_f64() * 1e3
            );
        }
        eprintln!("time {:<14} {:>9.3} ms", "total", total * 1e3);
    }
    Ok(())
}

/// The time of each stage, measured from the end of the previous one.
struct Laps {
    clock: Instant,
    timings: Vec<Timing>,
}

impl Default for Laps {
    fn default() -> Self {
        Laps {
            clock: Instant::now(),
            timings: Vec::new(),
        }
    }
}

impl Laps {
    fn lap(&mut self, name: &str) {
        self.timings.push(Timing {
            name: name.to_string(),
            duration: self.clock.elapsed(),
        });
        self.clock = Instant::now();
    }

    /// Adds timings measured elsewhere (the passes), restarting the clock.
    fn extend(&mut self, timings: Vec<Timing>) {
        self.timings.extend(timings);
        self.clock = Instant::now();
    }
}

/// Reads a source file into a fresh source map.
pub fn load_source(path: &Path) -> anyhow::Result<(Sources, attnc_frontend::FileId)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::usage(anyhow::anyhow!("cannot read {}: {e}", path.display())))?;
    let mut sources = Sources::new();
    let file = sources.add(path.display().to_string(), text);
    Ok((sources, file))
}

/// Builds and verifies the graph, printing diagnostics on failure.
pub fn compile_graph(
    unit: &attnc_frontend::ParsedUnit,
    sources: &Sources,
) -> anyhow::Result<attnc_ir::Graph> {
    let graph = attnc_frontend::build_graph(unit).map_err(|d| report(&d, sources))?;
    if let Err(errors) = attnc_ir::verify(&graph) {
        let listed: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(crate::ice::internal_at(
            "the graph builder",
            format!(
                "the graph of `{}` does not verify:\n  {}",
                graph.kernel,
                listed.join("\n  ")
            ),
            &graph,
            sources,
        ));
    }
    Ok(graph)
}

pub fn report(diags: &[attnc_frontend::Diagnostic], sources: &Sources) -> anyhow::Error {
    eprint!("{}", render_all(diags, sources));
    anyhow::Error::new(Reported)
}
