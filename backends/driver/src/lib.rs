//! The driver: the one pipeline from a verified graph to a back end's build, shared by every
//! command of `attnc` (`build`, `run`, `bench`) and by the program generator.
//!
//! ```text
//! graph ─passes (verified after each)─▶ graph ─fusion─▶ fused ─Backend::tile─▶ tiled ─Backend::generate─▶ build
//! ```
//! The sequence is written once, here ([`compile`]). What differs per target is a [`Backend`]:
//! how it tiles (the CPU cost model as it is; NVPTX fitted to the exact shared-memory layout;
//! SPIR-V with the shader's own workgroup memory) and what it generates (a JIT-compiled host
//! kernel, PTX, SPIR-V). A caller watches the stages through an [`Observer`] (dumps after each
//! pass, `--emit` of each stage, timings) and chooses where to stop ([`Until`]).

mod backends;

pub use backends::{Cpu, CpuError, Cuda, Vulkan};

use attnc_ir::{Bindings, Graph};
use attnc_passes::fusion::{FusedProgram, FusionError};
use attnc_passes::pass_manager::{PassError, PassManager, Timing};
use attnc_passes::tiling::TiledProgram;
use attnc_passes::tiling::target::Target;

/// A back end: its target and the two steps of the pipeline that depend on it.
pub trait Backend {
    /// What the back end produces from a tiled kernel.
    type Build;
    /// Its errors, for tiling and for code generation alike.
    type Error: std::error::Error + 'static;

    /// The target it compiles for (a preset of `--target`, or the host).
    fn target(&self) -> &Target;

    /// Tiles the fused kernels for the target, for the dims in `given` (nominal ones without).
    fn tile(
        &self,
        graph: &Graph,
        fused: &FusedProgram,
        given: Option<&Bindings>,
    ) -> Result<TiledProgram, Self::Error>;

    /// Generates the target's code for a tiled kernel.
    fn generate(
        &self,
        graph: &Graph,
        fused: &FusedProgram,
        tiled: &TiledProgram,
    ) -> Result<Self::Build, Self::Error>;
}

/// The last stage [`compile`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Until {
    /// The graph after the passes.
    Graph,
    Fused,
    Tiled,
    /// The back end's build.
    Code,
}

/// Watches the pipeline: each callback sees a stage's result as soon as it exists.
pub trait Observer {
    /// After each graph pass, with whether it changed the graph.
    fn after_pass(&mut self, _pass: &str, _changed: bool, _graph: &Graph) {}
    /// After all passes, with each one's time.
    fn passes_done(&mut self, _graph: &Graph, _timings: Vec<Timing>) {}
    fn fused(&mut self, _graph: &Graph, _fused: &FusedProgram) {}
    fn tiled(&mut self, _tiled: &TiledProgram) {}
}

/// An observer that watches nothing.
pub struct Quiet;

impl Observer for Quiet {}

/// What [`compile`] made, stage by stage, up to where it stopped.
pub struct Compiled<B> {
    /// The graph after the passes.
    pub graph: Graph,
    pub fused: Option<FusedProgram>,
    pub tiled: Option<TiledProgram>,
    pub build: Option<B>,
}

/// Which stage failed, and why. Passes and fusion fail only on compiler bugs; tiling and code
/// generation report the back end's own error (which may be a limit of the target).
#[derive(Debug, thiserror::Error)]
pub enum DriverError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Passes(#[from] PassError),
    #[error(transparent)]
    Fusion(#[from] FusionError),
    #[error(transparent)]
    Tiling(E),
    #[error(transparent)]
    Generate(E),
    /// [`build`] got no build back from [`compile`]: a bug in the driver.
    #[error("internal compiler error: the driver stopped before code generation")]
    Stopped,
}

/// Runs the pipeline on a copy of `graph` up to `until`, for `backend`.
pub fn compile<B: Backend>(
    backend: &B,
    graph: &Graph,
    given: Option<&Bindings>,
    until: Until,
    observer: &mut dyn Observer,
) -> Result<Compiled<B::Build>, DriverError<B::Error>> {
    let mut graph = graph.clone();
    let timings = PassManager::standard().run(&mut graph, &mut |pass, changed, g| {
        observer.after_pass(pass, changed, g)
    })?;
    observer.passes_done(&graph, timings);
    let mut out = Compiled {
        graph,
        fused: None,
        tiled: None,
        build: None,
    };
    if until < Until::Fused {
        return Ok(out);
    }
    let fused = attnc_passes::fusion::fuse(&out.graph)?;
    observer.fused(&out.graph, &fused);
    if until >= Until::Tiled {
        let tiled = backend
            .tile(&out.graph, &fused, given)
            .map_err(DriverError::Tiling)?;
        observer.tiled(&tiled);
        if until >= Until::Code {
            let build = backend
                .generate(&out.graph, &fused, &tiled)
                .map_err(DriverError::Generate)?;
            out.build = Some(build);
        }
        out.tiled = Some(tiled);
    }
    out.fused = Some(fused);
    Ok(out)
}

/// Compiles all the way to the back end's build, watching nothing.
pub fn build<B: Backend>(
    backend: &B,
    graph: &Graph,
    given: Option<&Bindings>,
) -> Result<B::Build, DriverError<B::Error>> {
    let compiled = compile(backend, graph, given, Until::Code, &mut Quiet)?;
    compiled.build.ok_or(DriverError::Stopped)
}
