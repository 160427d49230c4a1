//! `attnc build FILE --emit ast,graph,fused,tiled`: compile and print the requested stages in
//! pipeline order; `--print-after-all` prints the graph after every pass, `--time-passes` the time
//! of every stage.

use crate::output_format::OutputFormat;
use crate::shape_arg::parse_shape;
use crate::stdout::{out, outln};
use attnc_driver::Until;
use attnc_frontend::{Sources, print_ast};
use attnc_passes::pass_manager::Timing;
use attnc_passes::tiling::target::{GpuApi, Target};
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
    /// The compute shader's SPIR-V, disassembled (Vulkan targets).
    Spirv,
}

/// `--tile 64x128`.
fn parse_tiles(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{text}` is not QxK (e.g. 64x128)");
    let (q, k) = text.split_once('x').ok_or_else(bad)?;
    let (q, k): (usize, usize) = (q.parse().map_err(|_| bad())?, k.parse().map_err(|_| bad())?);
    if ![64, 128].contains(&q) || ![16, 32, 64, 128].contains(&k) {
        return Err(format!(
            "`{text}`: the query tile is 64 or 128 (4 or 8 warps of 16 rows) and the key tile 16, 32, 64 or 128"
        ));
    }
    Ok((q, k))
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
    /// Stages to print, comma-separated; they print in pipeline order, each after a header line
    /// `==> STAGE <==` when there are several. Default: graph, or nothing when -o writes a
    /// bundle.
    #[arg(long, value_delimiter = ',')]
    pub emit: Vec<Stage>,
    /// Write each stage to DIR/NAME.STAGE (`.ll` for LLVM IR) instead of stdout, NAME being the
    /// source file's stem.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Dims to tile for, e.g. B=2,H=4,S=4096,D=64 (nominal sizes otherwise).
    #[arg(long, default_value = "")]
    pub shape: String,
    /// What code is generated for: host, x86-avx512, x86-avx2, cuda:sm_80, cuda:sm_90a,
    /// vulkan, vulkan:coopmat. (A target names an instruction set; `attnc run --device` names
    /// where a run executes.)
    #[arg(long, default_value = "host", value_parser = parse_target)]
    pub target: Target,
    /// GPU targets: fix the query and key tiles, e.g. 64x128 (query tiles of 64 or 128 rows, key
    /// tiles of 16, 32, 64 or 128), to time a candidate the cost model did not choose.
    #[arg(long, value_name = "QxK", value_parser = parse_tiles)]
    pub tile: Option<(usize, usize)>,
    /// Print the graph after every pass.
    #[arg(long)]
    pub print_after_all: bool,
    /// What stdout holds: the stages as text, or one JSON document with each stage's text
    /// (and the timings of --time-passes) for programs (docs/output-formats.md).
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Print the time of every stage and pass on stderr.
    #[arg(long)]
    pub time_passes: bool,
    /// FILE.attnb: write the compiled kernel as a bundle (manifest and code) for a GPU target,
    /// to run with `attnc-run`. Any other name: write the one stage of --emit to FILE.
    #[arg(short = 'o', long, value_name = "FILE", conflicts_with = "out_dir")]
    pub output: Option<PathBuf>,
    /// Run a recurrence as the sequential scan even where its chunked form applies (CPU and
    /// CUDA targets), to compare one with the other.
    #[arg(long)]
    pub scan: bool,
}

pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.out_dir
        && !dir.is_dir()
    {
        return Err(crate::usage(anyhow::anyhow!(
            "--out-dir {}: no such folder",
            dir.display()
        )));
    }
    // Checked here, not where the tiles are chosen: with `--emit graph` tiling never runs,
    // and the flag would be ignored without a word.
    if args.tile.is_some() && matches!(args.target, Target::Cpu(_)) {
        return Err(crate::usage(anyhow::anyhow!(
            "--tile is for GPU targets (--target cuda:sm_90a, vulkan); --target {} chooses its own tiles",
            args.target
        )));
    }
    if args.format == OutputFormat::Json && args.print_after_all {
        return Err(crate::usage(anyhow::anyhow!(
            "--print-after-all prints text: use it with --format text"
        )));
    }
    let (mut sources, file) = load_source(&args.file)?;
    let fixed =
        parse_shape(&args.shape).map_err(|e| crate::usage(anyhow::anyhow!("--shape: {e}")))?;
    let bundle_path = args.output.as_ref().filter(|p| is_bundle(p));
    let mut stages = match (args.emit.is_empty(), bundle_path) {
        (true, Some(_)) => Vec::new(),
        (true, None) => vec![Stage::Graph],
        (false, _) => args.emit.clone(),
    };
    stages.sort();
    stages.dedup();
    let mut last = stages.iter().max().copied().unwrap_or(Stage::Graph);
    if bundle_path.is_some() {
        last = Stage::Spirv;
    } else if args.output.is_some() && stages.len() != 1 {
        return Err(crate::usage(anyhow::anyhow!(
            "-o writes one stage (or a .attnb bundle), but --emit names {}; use --out-dir DIR",
            stages.len()
        )));
    }
    let mut laps = Laps::default();
    let mut emit = Emitter::new(args, stages.len());
    let unit =
        attnc_frontend::parse_with_prelude(&mut sources, file).map_err(|d| report(&d, &sources))?;
    laps.lap("parse");
    if stages.contains(&Stage::Ast) {
        emit.stage(
            Stage::Ast,
            &print_ast::print_program(&unit.program, &sources),
        )?;
    }
    if last >= Stage::Graph {
        if last >= Stage::Mlir {
            check_code_stages(args, &stages, bundle_path.is_some())?;
        }
        let graph = compile_graph(&unit, &sources)?;
        laps.lap("build graph");
        if args.print_after_all {
            outln!("// after build\n{}", attnc_ir::dump::dump_graph(&graph));
        }
        let given = given_dims(&graph, &fixed, &sources)?;
        // A GPU kernel's tiles may be pinned; the CPU's are always the cost model's.
        let mut target = args.target.clone();
        if let (Some(tiles), Target::Gpu(g)) = (args.tile, &mut target) {
            g.pinned_tiles = Some(tiles);
        }
        let until = match last {
            Stage::Ast | Stage::Graph => Until::Graph,
            Stage::Fused => Until::Fused,
            Stage::Tiled => Until::Tiled,
            _ => Until::Code,
        };
        let mut watch = Watch {
            print_after_all: args.print_after_all,
            wanted: stages.clone(),
            texts: Vec::new(),
            laps,
            vulkan: matches!(&target, Target::Gpu(g) if g.api == GpuApi::Vulkan),
            emit: &mut emit,
            graph: &graph,
            given: given.as_ref(),
            until,
            sources: &sources,
        };
        let code = match &target {
            Target::Cpu(cpu) => {
                let mut backend = attnc_driver::Cpu::new(cpu.clone());
                backend.scan = args.scan;
                let failed = crate::cpu_device::cpu_failed;
                let compiled = watch.run(&backend, failed)?;
                compiled.build.map(|kernel| {
                    let mut texts = vec![(Stage::Mlir, kernel.mlir().to_string())];
                    texts.push((Stage::Llvm, kernel.llvm_ir().to_string()));
                    ("cpu code", texts, None, Vec::new())
                })
            }
            Target::Gpu(g) if g.api == GpuApi::Vulkan => {
                let backend =
                    attnc_driver::Vulkan::new(target.clone(), attnc_spirv::Options::default());
                let failed = crate::gpu_device::spirv_failed;
                let compiled = watch.run(&backend, failed)?;
                let after = compiled.graph;
                compiled.build.map(|build| {
                    let bundle =
                        crate::gpu_device::vulkan_bundle(&build, &after, &sources, &args.file);
                    (
                        "spir-v",
                        vec![(Stage::Spirv, build.disassembly)],
                        Some(bundle),
                        Vec::new(),
                    )
                })
            }
            Target::Gpu(_) => {
                let mut backend = attnc_driver::Cuda::new(target.clone());
                backend.scan = args.scan;
                let failed = crate::gpu_device::nvptx_failed;
                let compiled = watch.run(&backend, failed)?;
                let after = compiled.graph;
                compiled.build.map(|build| {
                    let bundle = crate::gpu_device::bundle(&build, &after, &sources, &args.file);
                    let texts = vec![
                        (Stage::Mlir, build.mlir),
                        (Stage::Llvm, build.llvm_ir),
                        (Stage::Ptx, build.ptx),
                    ];
                    // The code generation's own steps, for --time-passes.
                    let steps = build
                        .timings
                        .iter()
                        .map(|(name, duration)| Timing {
                            name: name.to_string(),
                            duration: *duration,
                        })
                        .collect();
                    ("gpu code", texts, Some(bundle), steps)
                })
            }
        };
        laps = watch.laps;
        if let Some((lap, texts, bundle, steps)) = code {
            if steps.is_empty() {
                laps.lap(lap);
            } else {
                laps.extend(steps);
            }
            for (stage, text) in texts {
                if stages.contains(&stage) {
                    emit.stage(stage, &text)?;
                }
            }
            if let (Some(path), Some(bundle)) = (bundle_path, bundle) {
                write_bundle(&bundle, path)?;
            }
        }
    }
    let total: f64 = laps.timings.iter().map(|t| t.duration.as_secs_f64()).sum();
    if let Some(stages) = emit.json.take() {
        let mut doc = serde_json::json!({
            "file": args.file.display().to_string(),
            "target": args.target.to_string(),
            "stages": stages,
        });
        if args.time_passes {
            let mut times: Vec<serde_json::Value> = laps
                .timings
                .iter()
                .map(
                    |t| serde_json::json!({ "name": t.name, "ms": t.duration.as_secs_f64() * 1e3 }),
                )
                .collect();
            times.push(serde_json::json!({ "name": "total", "ms": total * 1e3 }));
            doc["timings"] = serde_json::Value::Array(times);
        }
        outln!("{doc}");
    } else if args.time_passes {
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

/// The code stages that `--target` cannot write, refused before any stage runs (exit 2).
fn check_code_stages(args: &BuildArgs, stages: &[Stage], bundle: bool) -> anyhow::Result<()> {
    let wants = |s: Stage| stages.contains(&s);
    let refusal = match &args.target {
        Target::Cpu(_) if bundle || wants(Stage::Ptx) || wants(Stage::Spirv) => format!(
            "--target {} compiles for this process's JIT: bundles and PTX come from GPU targets (--target cuda:sm_90a)",
            args.target
        ),
        Target::Gpu(g)
            if g.api == GpuApi::Vulkan
                && (wants(Stage::Mlir) || wants(Stage::Llvm) || wants(Stage::Ptx)) =>
        {
            format!(
                "--target {} writes SPIR-V directly (rspirv): it has no MLIR, LLVM IR or PTX stage; use --emit spirv",
                g.id
            )
        }
        Target::Gpu(g) if g.api == GpuApi::Cuda && wants(Stage::Spirv) => {
            "--emit spirv is for Vulkan targets (--target vulkan); CUDA targets emit mlir, llvm and ptx".to_string()
        }
        _ => return Ok(()),
    };
    Err(crate::usage(anyhow::anyhow!(refusal)))
}

/// The dims the tiles are chosen for: none given, all (bound and checked), or some (a GPU
/// kernel's head dims, say), the others then nominal for the tile choice and free in the code.
fn given_dims(
    graph: &attnc_ir::Graph,
    fixed: &BTreeMap<String, i64>,
    sources: &Sources,
) -> anyhow::Result<Option<attnc_ir::Bindings>> {
    let complete = graph
        .dims
        .iter()
        .all(|d| fixed.contains_key(&d.name) || d.default.is_some());
    if fixed.is_empty() {
        Ok(None)
    } else if complete {
        let bound =
            attnc_ir::bind_dims(graph, fixed, &BTreeMap::new()).map_err(|d| report(&d, sources))?;
        Ok(Some(bound))
    } else {
        let (mut dims, _) = attnc_passes::tiling::tiling_dims(graph, None);
        dims.extend(fixed.iter().map(|(k, v)| (k.clone(), *v)));
        Ok(Some(attnc_ir::Bindings { dims }))
    }
}

/// Watches the driver for `attnc build`: prints the graph after each pass with
/// `--print-after-all`, keeps the text of each stage `--emit` asks for, times each stage.
struct Watch<'a> {
    print_after_all: bool,
    wanted: Vec<Stage>,
    texts: Vec<(Stage, String)>,
    laps: Laps,
    /// The tiled plan of a Vulkan target gets the SPIR-V back end's note.
    vulkan: bool,
    emit: &'a mut Emitter,
    /// The graph before the passes, as built, and the driver's arguments.
    graph: &'a attnc_ir::Graph,
    given: Option<&'a attnc_ir::Bindings>,
    until: Until,
    sources: &'a Sources,
}

impl attnc_driver::Observer for Watch<'_> {
    fn after_pass(&mut self, pass: &str, changed: bool, graph: &attnc_ir::Graph) {
        if self.print_after_all {
            let note = if changed { "" } else { " (no change)" };
            outln!(
                "// after {pass}{note}\n{}",
                attnc_ir::dump::dump_graph(graph)
            );
        }
    }

    fn passes_done(&mut self, graph: &attnc_ir::Graph, timings: Vec<Timing>) {
        self.laps.extend(timings);
        if self.wanted.contains(&Stage::Graph) {
            self.texts
                .push((Stage::Graph, attnc_ir::dump::dump_graph(graph)));
        }
    }

    fn fused(&mut self, graph: &attnc_ir::Graph, fused: &attnc_passes::fusion::FusedProgram) {
        self.laps.lap("fusion");
        if self.wanted.contains(&Stage::Fused) {
            let text = attnc_passes::fusion::dump::dump_fused(graph, fused);
            self.texts.push((Stage::Fused, text));
        }
    }

    fn tiled(&mut self, tiled: &attnc_passes::tiling::TiledProgram) {
        self.laps.lap("tiling");
        if self.wanted.contains(&Stage::Tiled) {
            let mut text = attnc_passes::tiling::dump::dump_tiled(tiled);
            let parallel = tiled
                .kernels
                .first()
                .is_some_and(|k| matches!(k.body, attnc_passes::tiling::TiledBody::Parallel(_)));
            if self.vulkan && parallel {
                // The plan describes the matrix-fragment layout; the shader differs.
                text.push_str(attnc_spirv::PLAN_NOTE);
            }
            self.texts.push((Stage::Tiled, text));
        }
    }
}

impl Watch<'_> {
    /// Runs the driver for `backend` up to `until`, writes the stages made (also those before
    /// a stage that failed), then hands back the driver's result with its error located.
    fn run<B: attnc_driver::Backend>(
        &mut self,
        backend: &B,
        failed: fn(Until, B::Error, &attnc_ir::Graph, &Sources) -> anyhow::Error,
    ) -> anyhow::Result<attnc_driver::Compiled<B::Build>> {
        let (graph, given, until) = (self.graph, self.given, self.until);
        let compiled = attnc_driver::compile(backend, graph, given, until, self);
        for (stage, text) in self.texts.drain(..) {
            self.emit.stage(stage, &text)?;
        }
        compiled.map_err(|e| crate::ice::driver_failed(e, graph, self.sources, failed))
    }
}

/// Where the printed stages go: stdout (with a header line between stages when several are
/// printed, so `--emit mlir,llvm` can be split), or one file per stage under `--out-dir`.
struct Emitter {
    out_dir: Option<PathBuf>,
    /// `-o FILE` for a single stage.
    file: Option<PathBuf>,
    stem: String,
    headers: bool,
    /// With `--format json` (and no file destination): each stage's text by its name.
    json: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Whether `-o` names a bundle rather than a stage's text.
fn is_bundle(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "attnb")
}

impl Emitter {
    fn new(args: &BuildArgs, stages: usize) -> Emitter {
        let stem = args.file.file_stem().map_or_else(
            || "kernel".to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        Emitter {
            out_dir: args.out_dir.clone(),
            file: args.output.clone().filter(|p| !is_bundle(p)),
            stem,
            headers: stages > 1,
            json: (args.format == OutputFormat::Json).then(serde_json::Map::new),
        }
    }

    fn stage(&mut self, stage: Stage, text: &str) -> anyhow::Result<()> {
        let name = stage.name();
        let path = match (&self.out_dir, &self.file) {
            (Some(dir), _) => {
                let extension = if stage == Stage::Llvm { "ll" } else { name };
                dir.join(format!("{}.{extension}", self.stem))
            }
            (None, Some(file)) => file.clone(),
            (None, None) if self.json.is_some() => {
                if let Some(map) = &mut self.json {
                    map.insert(name.to_string(), serde_json::Value::from(text));
                }
                return Ok(());
            }
            (None, None) => {
                if self.headers {
                    out!("==> {name} <==\n{text}");
                } else {
                    out!("{text}");
                }
                return Ok(());
            }
        };
        std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
        Ok(())
    }
}

impl Stage {
    /// The word `--emit` takes for this stage.
    fn name(self) -> &'static str {
        match self {
            Stage::Ast => "ast",
            Stage::Graph => "graph",
            Stage::Fused => "fused",
            Stage::Tiled => "tiled",
            Stage::Mlir => "mlir",
            Stage::Llvm => "llvm",
            Stage::Ptx => "ptx",
            Stage::Spirv => "spirv",
        }
    }
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

/// Writes a bundle and says what it holds (kernel, target and tiling, from its manifest).
fn write_bundle(bundle: &attnc_bundle::Bundle, path: &Path) -> anyhow::Result<()> {
    bundle
        .write(path)
        .map_err(|e| anyhow::anyhow!("cannot write the bundle: {e}"))?;
    let m = &bundle.manifest;
    eprintln!(
        "wrote {} ({} for {}; {})",
        path.display(),
        m.kernel,
        m.target,
        m.tiling
    );
    Ok(())
}

/// Prints diagnostics in the format and colour chosen on the command line.
pub fn report(diags: &[attnc_frontend::Diagnostic], sources: &Sources) -> anyhow::Error {
    crate::report::report(diags, sources)
}
