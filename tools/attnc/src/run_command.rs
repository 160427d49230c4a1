//! `attnc run FILE --shape ... --seed N`: binds the shapes, draws seeded random inputs (rounded
//! to each input's dtype), runs the kernel on the chosen device and prints, per output, a
//! checksum (sum, mean |x|, and a hash of the values stored in the output's dtype) and the time.

use crate::build_command::{compile_graph, load_source, report};
use crate::shape_arg::parse_shape;
use attnc_reference::{element_type, interpret, random_inputs, to_f64_tensors};
use attnc_tensors::HostTensor;
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Where a kernel runs. Compiled backends join this list as they are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The f64 reference interpreter (the oracle).
    Reference,
}

#[derive(Args)]
pub struct RunArgs {
    /// The .attn file to run.
    pub file: PathBuf,
    /// Values of the kernel's dims, e.g. B=2,H=4,S=128,D=64.
    #[arg(long, default_value = "")]
    pub shape: String,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to run.
    #[arg(long, value_enum, default_value = "reference")]
    pub device: Device,
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let (mut sources, file) = load_source(&args.file)?;
    let fixed = parse_shape(&args.shape).map_err(|e| anyhow::anyhow!("--shape: {e}"))?;
    let unit =
        attnc_frontend::parse_with_prelude(&mut sources, file).map_err(|d| report(&d, &sources))?;
    let graph = compile_graph(&unit, &sources)?;
    let bindings =
        attnc_ir::bind_dims(&graph, &fixed, &BTreeMap::new()).map_err(|d| report(&d, &sources))?;
    let inputs = random_inputs(&graph, &bindings, args.seed)
        .map_err(|e| anyhow::anyhow!("cannot draw inputs: {e}"))?;
    let start = Instant::now();
    let outputs = match args.device {
        Device::Reference => interpret(&graph, &bindings, &to_f64_tensors(&inputs))
            .map_err(|e| report(&[e.to_diagnostic()], &sources))?,
    };
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "kernel {} on {:?} with {bindings}, seed {}",
        graph.kernel, args.device, args.seed
    );
    let dtypes = graph.tensor_dtypes();
    for (name, tensor) in &outputs {
        let Some(dtype) = dtypes.get(name) else {
            continue;
        };
        let stored = HostTensor::from_f64(element_type(*dtype), tensor.shape.clone(), &tensor.data)
            .map_err(|e| anyhow::anyhow!("output `{name}`: {e}"))?;
        println!("  {}", checksum_line(name, &stored));
    }
    println!("  time {:.3} ms", seconds * 1e3);
    Ok(())
}

/// One line per output: enough to compare two runs at a glance and bit for bit by the hash.
fn checksum_line(name: &str, t: &HostTensor) -> String {
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
    format!(
        "{name}: {}{:?} sum={sum:.6e} mean|x|={mean_abs:.6e} nonfinite={nonfinite} hash={hash:016x}",
        t.dtype(),
        t.shape()
    )
}
