//! `attnc build FILE --emit ast,graph`: compile and print the requested stages in pipeline order.

use crate::Reported;
use attnc_frontend::{Sources, print_ast, render_all};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

/// A stage of the pipeline that can be printed. Later stages join this list as they are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Stage {
    Ast,
    Graph,
}

#[derive(Args)]
pub struct BuildArgs {
    /// The .attn file to compile.
    pub file: PathBuf,
    /// Stages to print, comma-separated, in pipeline order.
    #[arg(long, value_delimiter = ',', default_value = "graph")]
    pub emit: Vec<Stage>,
}

pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let (mut sources, file) = load_source(&args.file)?;
    let mut stages = args.emit.clone();
    stages.sort();
    stages.dedup();
    let unit = match attnc_frontend::parse_with_prelude(&mut sources, file) {
        Ok(unit) => unit,
        Err(diags) => return Err(report(&diags, &sources)),
    };
    if stages.contains(&Stage::Ast) {
        print!("{}", print_ast::print_program(&unit.program, &sources));
    }
    if stages.contains(&Stage::Graph) {
        let graph = compile_graph(&unit, &sources)?;
        print!("{}", attnc_ir::dump::dump_graph(&graph));
    }
    Ok(())
}

/// Reads a source file into a fresh source map.
pub fn load_source(path: &Path) -> anyhow::Result<(Sources, attnc_frontend::FileId)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut sources = Sources::new();
    let file = sources.add(path.display().to_string(), text);
    Ok((sources, file))
}

/// Builds and verifies the graph, printing diagnostics on failure.
pub fn compile_graph(
    unit: &attnc_frontend::ParsedUnit,
    sources: &Sources,
) -> anyhow::Result<attnc_ir::Graph> {
    let graph = attnc_ir::build_graph(unit).map_err(|d| report(&d, sources))?;
    if let Err(errors) = attnc_ir::verify(&graph) {
        let listed: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::bail!(
            "internal compiler error: the graph of `{}` does not verify (please report this):\n  {}",
            graph.kernel,
            listed.join("\n  ")
        );
    }
    Ok(graph)
}

pub fn report(diags: &[attnc_frontend::Diagnostic], sources: &Sources) -> anyhow::Error {
    eprint!("{}", render_all(diags, sources));
    anyhow::Error::new(Reported)
}
