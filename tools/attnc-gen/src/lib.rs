//! attnc-gen: a random-program generator for attnc in the spirit of Csmith and YARPGen. It
//! draws valid `.attn` kernels over the whole language (scores, maps on q/k/v, masks, user
//! normalisers, extra inputs with value ranges, computed indices, several maps, recurrences) at
//! random shapes, runs each on the reference interpreter and on every device on fresh random
//! inputs, and reports any disagreement with its program and seed. A failing program can be
//! shrunk by the reducer before it becomes a regression test.

pub mod devices;
mod expressions;
mod generate;
pub mod harness;
pub mod program;
mod recurrence;
pub mod reduce;

pub use harness::{Failure, Outcome, check};
pub use program::Program;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The program of `seed`: the same seed always gives the same program and shape.
pub fn generate(seed: u64) -> Program {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let name = format!("gen_{seed}");
    if rng.random_bool(0.2) {
        recurrence::recurrent_kernel(rng, &name)
    } else {
        generate::Generator::new(rng).parallel_kernel(&name)
    }
}

/// A program's header for a saved file: what `attnc-gen --file` needs to rerun it.
pub fn header(p: &Program, seed: u64) -> String {
    format!("# shape: {}\n# seed: {seed}\n", p.shape_arg())
}

/// Reads the `# shape:` and `# seed:` lines of a saved program.
pub fn parse_header(text: &str) -> Result<(Vec<(String, i64)>, u64), String> {
    let mut shape = None;
    let mut seed = None;
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("# shape:") {
            let mut dims = Vec::new();
            for kv in s.trim().split(',').filter(|kv| !kv.is_empty()) {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("`{kv}` is not NAME=VALUE"))?;
                let v = v.trim().parse().map_err(|e| format!("`{kv}`: {e}"))?;
                dims.push((k.trim().to_string(), v));
            }
            shape = Some(dims);
        } else if let Some(s) = line.strip_prefix("# seed:") {
            seed = Some(s.trim().parse().map_err(|e| format!("seed: {e}"))?);
        }
    }
    match (shape, seed) {
        (Some(shape), Some(seed)) => Ok((shape, seed)),
        _ => Err("a saved program starts with `# shape: ...` and `# seed: ...` lines".into()),
    }
}
