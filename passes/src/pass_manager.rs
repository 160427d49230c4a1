//! Runs graph passes in a fixed order, verifying the graph after each one (a pass that breaks an
//! invariant is caught where it happened), timing each, and letting the caller print the graph
//! after each (`attnc build --print-after-all`).

use attnc_ir::Graph;
use std::time::{Duration, Instant};

/// A rewrite of the graph. Passes are small types run in order by [`PassManager`].
pub trait Pass {
    fn name(&self) -> &'static str;
    /// Rewrites the graph; returns whether anything changed.
    fn run(&self, graph: &mut Graph) -> Result<bool, String>;
}

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("pass `{pass}` failed: {message}")]
    Failed { pass: &'static str, message: String },
    #[error("internal compiler error: the graph does not verify after pass `{pass}`:\n  {errors}")]
    Verify { pass: &'static str, errors: String },
}

/// How long one pass or stage took.
#[derive(Clone, Debug)]
pub struct Timing {
    pub name: String,
    pub duration: Duration,
}

pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
}

impl PassManager {
    /// The graph passes attnc runs before fusion, in order.
    pub fn standard() -> Self {
        PassManager {
            passes: vec![
                Box::new(crate::inline_matrix_values::InlineMatrixValues),
                Box::new(crate::dead_values::DeadValues),
                Box::new(crate::map_chains::MergeMapChains),
            ],
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Runs every pass; `after` sees the graph after each one (name, changed, graph).
    pub fn run(
        &self,
        graph: &mut Graph,
        after: &mut dyn FnMut(&'static str, bool, &Graph),
    ) -> Result<Vec<Timing>, PassError> {
        let mut timings = Vec::new();
        for pass in &self.passes {
            let start = Instant::now();
            let changed = pass.run(graph).map_err(|message| PassError::Failed {
                pass: pass.name(),
                message,
            })?;
            if let Err(errors) = attnc_ir::verify(graph) {
                let listed: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                return Err(PassError::Verify {
                    pass: pass.name(),
                    errors: listed.join("\n  "),
                });
            }
            timings.push(Timing {
                name: pass.name().to_string(),
                duration: start.elapsed(),
            });
            after(pass.name(), changed, graph);
        }
        Ok(timings)
    }
}
