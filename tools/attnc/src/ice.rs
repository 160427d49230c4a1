//! Internal compiler errors: a stage failed on a graph that verified, which is a bug in attnc.
//! Each message names the stage and a place in the user's source, so a report can be turned
//! into a test, and exits with [`crate::exit_code::INTERNAL`].

use attnc_frontend::Sources;
use attnc_ir::Graph;
use attnc_ir::graph::Op;
use attnc_passes::pass_manager::PassError;
use std::fmt::Display;

/// `file:line:col` of the kernel's output assignment (the statement the failing stage was
/// compiling), or of its first node when it has none.
pub fn kernel_location(graph: &Graph, sources: &Sources) -> String {
    let nodes: Vec<_> = graph.node_indices().collect();
    let output = nodes
        .iter()
        .find(|&&n| matches!(graph.node(n).op, Op::Output { .. }))
        .or(nodes.first());
    match output {
        Some(&n) => sources.location(graph.node(n).span),
        None => format!("kernel `{}`", graph.kernel),
    }
}

/// An internal compiler error in `stage`, located in the kernel's source.
pub fn internal_at(
    stage: &str,
    message: impl Display,
    graph: &Graph,
    sources: &Sources,
) -> anyhow::Error {
    crate::internal(anyhow::anyhow!(
        "internal compiler error in {stage}, compiling the kernel at {}: {message}\nnote: this is a bug in attnc; please report it with the command and the .attn file",
        kernel_location(graph, sources)
    ))
}

/// An internal compiler error in `stage` at `span` (the op it is about), or at the kernel when
/// the error has no span.
pub fn internal_at_span(
    stage: &str,
    message: impl Display,
    span: Option<attnc_frontend::Span>,
    graph: &Graph,
    sources: &Sources,
) -> anyhow::Error {
    let Some(span) = span else {
        return internal_at(stage, message, graph, sources);
    };
    crate::internal(anyhow::anyhow!(
        "internal compiler error in {stage}, compiling the kernel at {}: {message}\nnote: this is a bug in attnc; please report it with the command and the .attn file",
        sources.location(span)
    ))
}

/// Fusion refused a graph that verified: always a compiler bug, located at the op concerned.
pub fn fusion_failed(
    e: attnc_passes::fusion::FusionError,
    graph: &Graph,
    sources: &Sources,
) -> anyhow::Error {
    internal_at_span("fusion", &e, e.span(), graph, sources)
}

/// Tiling refused a kernel: a located diagnostic when no tile fits the target at the program's
/// head dims (the user's to change), an internal compiler error otherwise.
pub fn tiling_failed(
    e: attnc_passes::tiling::TilingError,
    graph: &Graph,
    sources: &Sources,
) -> anyhow::Error {
    if e.is_internal() {
        internal_at_span("tiling", &e, e.span(), graph, sources)
    } else {
        crate::build_command::report(&[e.to_diagnostic()], sources)
    }
}

/// A failure of the driver's pipeline: the passes and fusion are compiler bugs, located; the
/// back end's errors go to `backend` with the stage that failed (`Until::Tiled` for tiling,
/// `Until::Code` for code generation), which knows which are limits of the target.
pub fn driver_failed<E: std::error::Error + 'static>(
    e: attnc_driver::DriverError<E>,
    graph: &Graph,
    sources: &Sources,
    backend: impl FnOnce(attnc_driver::Until, E, &Graph, &Sources) -> anyhow::Error,
) -> anyhow::Error {
    use attnc_driver::DriverError;
    match e {
        DriverError::Passes(e) => pass_failed(e, graph, sources),
        DriverError::Fusion(e) => fusion_failed(e, graph, sources),
        DriverError::Tiling(e) => backend(attnc_driver::Until::Tiled, e, graph, sources),
        DriverError::Generate(e) => backend(attnc_driver::Until::Code, e, graph, sources),
        DriverError::Stopped => internal_at("the driver", "no build came back", graph, sources),
    }
}

/// A pass that failed or broke the graph: always a compiler bug.
pub fn pass_failed(e: PassError, graph: &Graph, sources: &Sources) -> anyhow::Error {
    let message = e.to_string();
    let message = message
        .strip_prefix("internal compiler error: ")
        .unwrap_or(&message);
    internal_at("the passes", message, graph, sources)
}

/// A failure of the reference interpreter: a located diagnostic when the program is to blame
/// (an index out of range, a value too large), an internal compiler error otherwise.
pub fn interpret_failed(
    e: attnc_reference::InterpretError,
    graph: &Graph,
    sources: &Sources,
) -> anyhow::Error {
    match e {
        attnc_reference::InterpretError::Internal(message) => {
            internal_at("the reference interpreter", message, graph, sources)
        }
        other => crate::build_command::report(&[other.to_diagnostic()], sources),
    }
}
