//! Seeded random inputs for a kernel: floats from N(0, 1), or uniform in a declared range;
//! integers uniform in their declared range. Each input has its own stream (seeded by the seed
//! and the input's name), so adding an input does not change the others' values. Values are
//! rounded to the input's dtype, so a kernel and the oracle see exactly the same numbers.

use attnc_ir::bind::Bindings;
use attnc_ir::graph::{Graph, Op};
use attnc_tensors::HostTensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Draws every input of `graph` at the bound shapes.
pub fn random_inputs(
    graph: &Graph,
    bindings: &Bindings,
    seed: u64,
) -> Result<BTreeMap<String, HostTensor>, String> {
    let mut out = BTreeMap::new();
    for n in graph.node_indices() {
        let Op::Input {
            name,
            ty,
            range,
            bounds,
            ..
        } = &graph.node(n).op
        else {
            continue;
        };
        let shape = bindings.shape(&ty.dims).map_err(|e| format!("{e:?}"))?;
        let count: usize = shape.iter().product();
        let range = match range {
            Some((lo, hi)) => Some((
                bounds.eval_constant(*lo, &bindings.dims)?,
                bounds.eval_constant(*hi, &bindings.dims)?,
            )),
            None => None,
        };
        if let Some((lo, hi)) = range
            && lo > hi
        {
            return Err(format!("input `{name}` has an empty range [{lo}, {hi}]"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(name));
        let values: Vec<f64> = (0..count)
            .map(|_| match (ty.dtype.is_float(), range) {
                (true, Some((lo, hi))) => lo + (hi - lo) * rng.random::<f64>(),
                (true, None) => standard_normal(&mut rng),
                (false, Some((lo, hi))) => rng.random_range(lo as i64..=hi as i64) as f64,
                (false, None) => 0.0,
            })
            .collect();
        let tensor = HostTensor::from_f64(ty.dtype, shape, &values).map_err(|e| e.to_string())?;
        out.insert(name.clone(), tensor);
    }
    Ok(out)
}

/// Box-Muller; `1 - u` keeps the logarithm's argument in (0, 1].
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.random();
    let v: f64 = rng.random();
    (-2.0 * (1.0 - u).ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
