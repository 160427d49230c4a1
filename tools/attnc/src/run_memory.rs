//! Before a run allocates its tensors: the bytes they need at the bound shapes, in checked
//! arithmetic, against the memory this machine has free. `--shape S=100000000` would otherwise
//! abort on a 51 GB allocation, and `B=9223372036854775807` overflow a size.

use attnc_ir::{Bindings, Graph};

/// Bytes per element beyond a tensor's stored dtype: the f64 copy the reference and the CPU
/// kernel read (inputs), or the f64 result, the reference's for `--check` and the stored copy
/// (outputs).
const INPUT_EXTRA: u128 = 8;
const OUTPUT_EXTRA: u128 = 16;

/// Fails, naming the bytes needed and the bytes available, when the run's tensors cannot fit.
/// `drawn` adds the f64 values random inputs are drawn as before rounding to their dtype.
pub fn check(graph: &Graph, bindings: &Bindings, drawn: bool) -> anyhow::Result<()> {
    let mut needed: u128 = 0;
    let mut largest: Option<(String, u128)> = None;
    let tensors = graph
        .inputs()
        .into_iter()
        .map(|(_, n, t)| (n, t, INPUT_EXTRA + if drawn { 8 } else { 0 }))
        .chain(
            graph
                .outputs()
                .into_iter()
                .map(|(_, n, t)| (n, t, OUTPUT_EXTRA)),
        );
    for (name, ty, extra) in tensors {
        let mut elements: u128 = 1;
        for d in &ty.dims {
            let v = bindings
                .eval(d)
                .map_err(|e| anyhow::anyhow!("tensor `{name}`: cannot size axis {d}: {e:?}"))?;
            elements = elements.saturating_mul(v.max(0) as u128);
        }
        let bytes = elements.saturating_mul(ty.dtype.size_bytes() as u128 + extra);
        needed = needed.saturating_add(bytes);
        if largest.as_ref().is_none_or(|(_, b)| bytes > *b) {
            largest = Some((name.to_string(), bytes));
        }
    }
    let largest = largest.map_or(String::new(), |(n, b)| {
        format!(" (the largest, `{n}`, {})", bytes_text(b))
    });
    if needed > usize::MAX as u128 / 2 {
        anyhow::bail!(
            "the tensors of this run need {}{largest}: more than this machine can address; use smaller dims",
            bytes_text(needed)
        );
    }
    if let Some(available) = available_bytes()
        && needed > available as u128
    {
        anyhow::bail!(
            "the tensors of this run need {}{largest}, but only {} of memory are available; use smaller dims",
            bytes_text(needed),
            bytes_text(available as u128)
        );
    }
    Ok(())
}

/// `123456789 bytes (123.5 MB)`: the exact figure and a readable one.
fn bytes_text(b: u128) -> String {
    let units = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)];
    let f = b as f64;
    match units.iter().find(|(_, size)| f >= *size) {
        Some((unit, size)) => format!("{b} bytes ({:.1} {unit})", f / size),
        None => format!("{b} bytes"),
    }
}

/// Free memory as the kernel counts it (`MemAvailable` in /proc/meminfo); `None` where unknown,
/// and then only the overflow check applies.
fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
