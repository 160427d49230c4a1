//! Planner output, text form: the default of `attnc plan` and `--emit plan`, for people.

use std::fmt::Write;

use crate::plan::{Plan, gib};

/// Seconds in the unit a person would use.
pub(crate) fn seconds(t: f64) -> String {
    if t == 0.0 {
        // Zero in the unit its neighbours use most ("transfer 0 ms" beside "compute 90.83 ms").
        "0 ms".to_string()
    } else if t < 1e-3 {
        format!("{:.1} us", t * 1e6)
    } else if t < 1.0 {
        format!("{:.2} ms", t * 1e3)
    } else {
        format!("{:.3} s", t)
    }
}

/// "1 stage", "2 stages".
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / (1u64 << 20) as f64)
}

pub(crate) fn range(r: [u64; 2]) -> String {
    match r[1] - r[0] {
        0 => "none".to_string(),
        1 => format!("{}", r[0]),
        _ => format!("{}-{}", r[0], r[1] - 1),
    }
}

/// The plan as text: a summary, each stage with its devices' heads, times and memory, the
/// transfers between stages, and memory per pool.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, hence the ignored results below.
    let _ = writeln!(out, "plan: model `{}` on `{}`", plan.model, plan.profile);
    let _ = writeln!(
        out,
        "  {} layers, {} heads in {} K/V groups, {}, batch {} x {} tokens",
        plan.layers, plan.heads, plan.kv_heads, plan.dtype, plan.batch, plan.seq
    );
    let _ = writeln!(
        out,
        "  {} of {}, {}",
        plural(plan.micro_batches, "micro-batch", "micro-batches"),
        plural(plan.sequences_per_micro_batch, "sequence", "sequences"),
        plural(plan.stages.len() as u64, "stage", "stages")
    );
    for note in &plan.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    let _ = writeln!(
        out,
        "predicted: {} per token, {} for the batch (fill {} + {} x bottleneck {})",
        seconds(plan.time_per_token_s),
        seconds(plan.total_s),
        seconds(plan.fill_s),
        plan.micro_batches - 1,
        seconds(plan.bottleneck_s)
    );
    let width = plan
        .memory
        .iter()
        .map(|m| m.device.len())
        .max()
        .unwrap_or(0);
    for (i, stage) in plan.stages.iter().enumerate() {
        let kernels: Vec<String> = stage
            .attention
            .iter()
            .map(|k| format!("{} x {}", k.layers, k.shown))
            .collect();
        let _ = writeln!(
            out,
            "\nstage {i}: layers {}-{} ({}), {} per micro-batch, primary {}",
            stage.first_layer,
            stage.last_layer,
            kernels.join(", "),
            seconds(stage.time_s),
            stage.primary
        );
        for d in &stage.devices {
            if d.heads[0] == d.heads[1] {
                let _ = writeln!(out, "  {:width$}  idle", d.device);
                continue;
            }
            let groups = if d.kv_groups[1] - d.kv_groups[0] == 1 {
                "group"
            } else {
                "groups"
            };
            let share = format!(
                "heads {} (K/V {groups} {})",
                range(d.heads),
                range(d.kv_groups)
            );
            let _ = writeln!(
                out,
                "  {:width$}  {share:30}  compute {:>10}  transfer {:>10}  memory {}",
                d.device,
                seconds(d.compute_s),
                seconds(d.transfer_s),
                gib(d.memory_bytes)
            );
        }
        if let Some(link) = plan.links.get(i) {
            let _ = writeln!(
                out,
                "  -> {} from {} to {}: {}",
                mib(link.bytes),
                link.from,
                link.to,
                seconds(link.time_s)
            );
        }
    }
    let _ = writeln!(
        out,
        "\nmemory per pool (devices in a pool share its capacity):"
    );
    let mut k = 0;
    while k < plan.memory.len() {
        let pool = &plan.memory[k].pool;
        let members: Vec<_> = plan.memory[k..]
            .iter()
            .take_while(|m| &m.pool == pool)
            .collect();
        let used: f64 = members.iter().map(|m| m.used_bytes).sum();
        let parts: Vec<String> = members
            .iter()
            .map(|m| format!("{} {}", m.device, gib(m.used_bytes)))
            .collect();
        let _ = writeln!(
            out,
            "  {pool}: {} of {} ({})",
            gib(used),
            gib(members[0].pool_capacity_bytes),
            parts.join(", ")
        );
        k += members.len();
    }
    out
}
