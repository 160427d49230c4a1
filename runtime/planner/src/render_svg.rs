//! Planner output, SVG timeline: one row per device, one bar per stage and micro-batch.
//!
//! Each row's label says what the device runs (stage, heads and K/V groups, layers) and
//! shows its memory use against its pool's capacity as a gauge. Inside a bar, the solid part
//! is the device's kernel time, the orange part its transfers to and from the stage's
//! primary, and the pale rest the time it waits for the stage's slowest device. Those parts
//! interleave layer by layer in reality; the drawing stacks them to show the proportions.
//! Transfers between stages run on a lane just under the sender's bars, inside its row.
//! Every bar, lane and gauge has a `<title>` tooltip with its numbers. The output is
//! deterministic: fixed number formats, no timestamps.

use std::fmt::Write;

use crate::plan::{DeviceShare, Plan, StagePlan, gib};
use crate::render_text::{plural, range, seconds};
use crate::timeline::{Element, schedule};

const WIDTH: f64 = 1280.0;
const LEFT: f64 = 300.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 64.0;
const ROW: f64 = 60.0;
/// Where the bars start below a row's top edge.
const BAR_TOP: f64 = 6.0;
const BAR: f64 = 26.0;
/// The lane of inter-stage transfers: right under the bars, well inside the row.
const LANE_TOP: f64 = BAR_TOP + BAR + 3.0;
const LANE: f64 = 8.0;
const GAUGE: f64 = 110.0;
const STAGE_COLOURS: [&str; 6] = [
    "#4e79a7", "#59a14f", "#b07aa1", "#76b7b2", "#9c755f", "#8c8c8c",
];
const HELPER_TRANSFER: &str = "#f28e2b";
const LINK: &str = "#e15759";
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A tick step of 1, 2 or 5 × 10ᵏ seconds giving at most about ten ticks.
fn tick_step(total: f64) -> f64 {
    let raw = total / 10.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|k| k * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// A tick label: the time in its unit with no trailing zeros ("250 ms", "1.5 s").
fn tick_label(t: f64) -> String {
    if t == 0.0 {
        return "0".to_string();
    }
    let (value, unit) = if t < 1e-3 {
        (t * 1e6, "us")
    } else if t < 1.0 {
        (t * 1e3, "ms")
    } else {
        (t, "s")
    };
    let text = format!("{value:.3}");
    format!(
        "{} {unit}",
        text.trim_end_matches('0').trim_end_matches('.')
    )
}

/// What a device runs in its stage, for its row label: "heads 0-27, K/V 0-6, layers 0-15".
fn share_summary(stage: &StagePlan, d: &DeviceShare) -> String {
    format!(
        "heads {}, K/V {}, layers {}-{}",
        range(d.heads),
        range(d.kv_groups),
        stage.first_layer,
        stage.last_layer
    )
}

/// The plan's forward pass as an SVG timeline.
pub fn render_svg(plan: &Plan) -> String {
    let rows = plan.memory.len();
    let plot_w = WIDTH - LEFT - RIGHT;
    let axis_y = TOP + rows as f64 * ROW + 6.0;
    let height = axis_y + 96.0;
    let total = plan.total_s.max(f64::MIN_POSITIVE);
    let x = |t: f64| LEFT + t / total * plot_w;
    let row_of = |name: &str| {
        plan.memory
            .iter()
            .position(|m| m.device == name)
            .unwrap_or(0)
    };
    // The stage a device works in, and its share there.
    let work_of = |name: &str| {
        plan.stages.iter().enumerate().find_map(|(s, stage)| {
            stage
                .devices
                .iter()
                .find(|d| d.device == name && d.heads[0] < d.heads[1])
                .map(|d| (s, stage, d))
        })
    };
    let mut out = String::new();
    // Writing to a String cannot fail, hence the ignored results below.
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="20" y="22" font-size="15" font-weight="bold">{} on {}</text>"#,
        escape(&plan.model),
        escape(&plan.profile)
    );
    let _ = writeln!(
        out,
        r#"<text x="20" y="42">{} layers, {} heads in {} K/V groups; {}, {} of {}: {} per batch, {} per token, bottleneck {}</text>"#,
        plan.layers,
        plan.heads,
        plan.kv_heads,
        plural(plan.stages.len() as u64, "stage", "stages"),
        plural(plan.micro_batches, "micro-batch", "micro-batches"),
        plural(plan.sequences_per_micro_batch, "sequence", "sequences"),
        seconds(plan.total_s),
        seconds(plan.time_per_token_s),
        seconds(plan.bottleneck_s)
    );
    for (r, m) in plan.memory.iter().enumerate() {
        let y = TOP + r as f64 * ROW;
        let fill = if r % 2 == 0 { "#f4f4f4" } else { "#ffffff" };
        let _ = writeln!(
            out,
            r#"<rect x="10" y="{y:.1}" width="{:.1}" height="{ROW}" fill="{fill}"/>"#,
            WIDTH - 10.0 - RIGHT
        );
        let work = work_of(&m.device);
        let (title, detail, colour) = match work {
            Some((s, stage, d)) => (
                format!("{} (stage {s})", m.device),
                share_summary(stage, d),
                "black",
            ),
            None => (format!("{} (unused)", m.device), String::new(), "#999999"),
        };
        let _ = writeln!(
            out,
            r#"<text x="20" y="{:.1}" fill="{colour}" font-weight="bold">{}</text>"#,
            y + 17.0,
            escape(&title)
        );
        let _ = writeln!(
            out,
            r##"<text x="20" y="{:.1}" fill="#444444" font-size="11">{}</text>"##,
            y + 33.0,
            escape(&detail)
        );
        // Memory gauge: the device's use against its pool's capacity.
        let capacity = m.pool_capacity_bytes.max(f64::MIN_POSITIVE);
        let used = (m.used_bytes / capacity).clamp(0.0, 1.0) * GAUGE;
        // Devices of one pool share its capacity: the pale part is what the others use.
        let pool_used: f64 = plan
            .memory
            .iter()
            .filter(|o| o.pool == m.pool)
            .map(|o| o.used_bytes)
            .sum();
        let pool_w = (pool_used / capacity).clamp(0.0, 1.0) * GAUGE;
        let gauge_y = y + 41.0;
        let pool = if m.pool == m.device {
            String::new()
        } else {
            format!(
                " (pool `{}`, shared: {} used by all its devices)",
                m.pool,
                gib(pool_used)
            )
        };
        let tooltip = format!(
            "{}: {} used of {}{pool}, {:.0}%",
            m.device,
            gib(m.used_bytes),
            gib(m.pool_capacity_bytes),
            m.used_bytes / capacity * 100.0
        );
        let _ = writeln!(
            out,
            r##"<g><title>{}</title><rect x="20" y="{gauge_y:.1}" width="{GAUGE}" height="9" fill="#ffffff" stroke="#888888" stroke-width="0.6"/><rect x="20" y="{gauge_y:.1}" width="{pool_w:.2}" height="9" fill="#c8c8c8"/><rect x="20" y="{gauge_y:.1}" width="{used:.2}" height="9" fill="#6b6b6b"/></g>"##,
            escape(&tooltip)
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="#444444" font-size="11">{} / {}</text>"##,
            20.0 + GAUGE + 6.0,
            gauge_y + 8.5,
            gib(m.used_bytes),
            gib(m.pool_capacity_bytes)
        );
    }
    // Grid lines first, so that bars and their numbers sit on top.
    let step = tick_step(total);
    let ticks: Vec<(f64, f64)> = (0..)
        .map(|k| k as f64 * step)
        .take_while(|&t| t <= total * (1.0 + 1e-9))
        .map(|t| (x(t), t))
        .collect();
    for (tx, _) in &ticks {
        let _ = writeln!(
            out,
            r##"<line x1="{tx:.2}" y1="{TOP}" x2="{tx:.2}" y2="{:.1}" stroke="#cccccc" stroke-dasharray="2,3"/>"##,
            axis_y + 4.0
        );
    }
    for slot in schedule(plan) {
        let (x0, x1) = (x(slot.start), x(slot.end));
        let micro_batch = slot.micro_batch + 1;
        match slot.element {
            Element::Stage(s) => {
                let stage = &plan.stages[s];
                let colour = STAGE_COLOURS[s % STAGE_COLOURS.len()];
                for d in &stage.devices {
                    if d.heads[0] == d.heads[1] {
                        continue;
                    }
                    let y = TOP + row_of(&d.device) as f64 * ROW + BAR_TOP;
                    let compute_w = d.compute_s / total * plot_w;
                    let transfer_w = d.transfer_s / total * plot_w;
                    let tooltip = format!(
                        "stage {s}, micro-batch {micro_batch} on {}: {}; kernels {}, transfers to the primary {}, stage {} ({} to {})",
                        d.device,
                        share_summary(stage, d),
                        seconds(d.compute_s),
                        seconds(d.transfer_s),
                        seconds(stage.time_s),
                        seconds(slot.start),
                        seconds(slot.end)
                    );
                    let _ = write!(out, "<g><title>{}</title>", escape(&tooltip));
                    let _ = write!(
                        out,
                        r#"<rect x="{x0:.2}" y="{y:.1}" width="{:.2}" height="{BAR}" fill="{colour}" fill-opacity="0.25" stroke="{colour}" stroke-width="0.5"/>"#,
                        x1 - x0
                    );
                    let _ = write!(
                        out,
                        r#"<rect x="{x0:.2}" y="{y:.1}" width="{compute_w:.2}" height="{BAR}" fill="{colour}"/>"#
                    );
                    if transfer_w > 0.0 {
                        let _ = write!(
                            out,
                            r#"<rect x="{:.2}" y="{y:.1}" width="{transfer_w:.2}" height="{BAR}" fill="{HELPER_TRANSFER}"/>"#,
                            x0 + compute_w
                        );
                    }
                    if x1 - x0 >= 18.0 {
                        let _ = write!(
                            out,
                            r#"<text x="{:.2}" y="{:.1}" text-anchor="middle" font-size="11">{micro_batch}</text>"#,
                            (x0 + x1) / 2.0,
                            y + BAR / 2.0 + 4.0
                        );
                    }
                    let _ = writeln!(out, "</g>");
                }
            }
            Element::Link(l) => {
                let link = &plan.links[l];
                let y = TOP + row_of(&link.from) as f64 * ROW + LANE_TOP;
                let tooltip = format!(
                    "hidden state of micro-batch {micro_batch}, stage {l} to {}: {} to {}, {:.2} MiB in {} ({} to {})",
                    l + 1,
                    link.from,
                    link.to,
                    link.bytes / (1u64 << 20) as f64,
                    seconds(link.time_s),
                    seconds(slot.start),
                    seconds(slot.end)
                );
                let _ = writeln!(
                    out,
                    r#"<g><title>{}</title><rect x="{x0:.2}" y="{y:.1}" width="{:.2}" height="{LANE}" fill="{LINK}"/></g>"#,
                    escape(&tooltip),
                    (x1 - x0).max(0.5)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}" stroke="#333333"/>"##,
        LEFT + plot_w
    );
    for (tx, t) in &ticks {
        let _ = writeln!(
            out,
            r#"<text x="{tx:.2}" y="{:.1}" text-anchor="middle">{}</text>"#,
            axis_y + 18.0,
            tick_label(*t)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (forward pass of the whole batch; bar numbers are micro-batches)</text>"#,
        LEFT + plot_w / 2.0,
        axis_y + 36.0
    );
    let legend_y = axis_y + 56.0;
    let entries = [
        (STAGE_COLOURS[0], 1.0, "kernels (colour per stage)"),
        (
            STAGE_COLOURS[0],
            0.25,
            "waiting for the stage's slowest device",
        ),
        (
            HELPER_TRANSFER,
            1.0,
            "helper <-> primary transfers in a stage",
        ),
        (
            LINK,
            1.0,
            "hidden state to the next stage (on the sender's row)",
        ),
        ("#6b6b6b", 1.0, "memory: the device's use of its pool"),
        ("#c8c8c8", 1.0, "memory: other devices of the pool"),
    ];
    for (i, (colour, opacity, text)) in entries.into_iter().enumerate() {
        // Three columns.
        let lx = 20.0 + (i % 3) as f64 * (WIDTH - 40.0) / 3.0;
        let ly = legend_y + (i / 3) as f64 * 20.0;
        let _ = writeln!(
            out,
            r#"<rect x="{lx:.1}" y="{ly:.1}" width="14" height="14" fill="{colour}" fill-opacity="{opacity}" stroke="{colour}" stroke-width="0.5"/>"#
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 20.0,
            ly + 11.5,
            escape(text)
        );
    }
    let _ = writeln!(out, "</svg>");
    out
}
