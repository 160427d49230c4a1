//! The `fused` dump (`attnc build --emit fused`): for each kernel, its template, which graph
//! nodes (numbered as in the `graph` dump) go where, the tile-skipping rule, and how each
//! reduction is accumulated: online with its rescaled terms, or in a later sweep and why.

use super::recurrent::{Decay, RecurrentKernel};
use super::tree::Tree;
use super::{Accumulation, FusedProgram, ParallelKernel, Template, Wait};
use attnc_ir::graph::{Graph, Op, ValueRef};
use petgraph::stable_graph::NodeIndex;
use std::collections::HashMap;
use std::fmt::Write;

/// The `%N` name of every result, numbered as the graph dump numbers nodes.
pub fn value_names(graph: &Graph) -> HashMap<ValueRef, String> {
    let mut names = HashMap::new();
    for (k, n) in graph
        .topo_order()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let results = graph.node(n).results.len();
        for r in 0..results.max(1) {
            let name = if results > 1 {
                format!("%{k}.{r}")
            } else {
                format!("%{k}")
            };
            names.insert(
                ValueRef {
                    node: n,
                    result: r as u32,
                },
                name,
            );
        }
    }
    names
}

pub fn dump_fused(graph: &Graph, program: &FusedProgram) -> String {
    let names = value_names(graph);
    let mut out = String::new();
    for k in &program.kernels {
        match &k.template {
            Template::Parallel(p) => parallel(&mut out, graph, &names, &k.name, p),
            Template::Recurrent(r) => recurrent(&mut out, graph, &names, &k.name, r),
        }
    }
    out
}

fn list(graph: &Graph, names: &HashMap<ValueRef, String>, nodes: &[NodeIndex]) -> String {
    if nodes.is_empty() {
        return "-".to_string();
    }
    nodes
        .iter()
        .map(|n| {
            let name = names
                .get(&ValueRef {
                    node: *n,
                    result: 0,
                })
                .cloned()
                .unwrap_or_default();
            match &graph.node(*n).name {
                Some(label) => format!("{name} {label}"),
                None => name,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn parallel(
    out: &mut String,
    graph: &Graph,
    names: &HashMap<ValueRef, String>,
    name: &str,
    p: &ParallelKernel,
) {
    let sweeps = p.sweeps.len();
    let _ = writeln!(
        out,
        "kernel {name}: parallel template (flash-style), {sweeps} sweep{} over the key tiles of each query tile",
        if sweeps == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        out,
        "  grid: b, h, query tiles of i; key tiles of j stream through; no S x S value is stored"
    );
    let _ = writeln!(out, "  per head:   {}", list(graph, names, &p.per_head));
    let _ = writeln!(out, "  query side: {}", list(graph, names, &p.query_side));
    let _ = writeln!(out, "  key side:   {}", list(graph, names, &p.key_side));
    let _ = writeln!(out, "  pair:       {}", list(graph, names, &p.pair));
    match p.mask {
        Some(m) => {
            let text = match &graph.node(m).op {
                Op::Mask { expr, root } => {
                    let ops: Vec<String> = graph
                        .operands(m)
                        .iter()
                        .map(|(v, _)| names.get(v).cloned().unwrap_or_default())
                        .collect();
                    expr.render(*root, &ops, &[])
                }
                _ => String::new(),
            };
            // Through the mask's lets (as the tile rule sees it): `let p = i; mask j <= p;`
            // reads indices only.
            let mut leaves = Vec::new();
            crate::fusion::tile_rule::mask_tree(graph, m).leaves(&mut leaves);
            let data = if leaves.is_empty() {
                "decided per tile from the indices alone"
            } else {
                "reads input data, so only known per element"
            };
            let _ = writeln!(out, "  mask:       {} = {text}", list(graph, names, &[m]));
            let _ = writeln!(
                out,
                "  tile rule:  interval evaluation of the mask over (query tile x key tile): false everywhere -> skip the tile; true everywhere -> no per-element mask; else mask per element ({data})"
            );
        }
        None => {
            let _ = writeln!(out, "  mask:       - (every key tile is full)");
        }
    }
    for (k, sweep) in p.sweeps.iter().enumerate() {
        let _ = writeln!(out, "  sweep {k}:");
        for r in &sweep.reductions {
            let node = names
                .get(&ValueRef {
                    node: r.node,
                    result: 0,
                })
                .cloned()
                .unwrap_or_default();
            let row = r
                .row
                .map(|v| format!(" x {}", names.get(&v).cloned().unwrap_or_default()))
                .unwrap_or_default();
            match &r.accumulation {
                Accumulation::Plain { argument, waits } => {
                    let _ = writeln!(
                        out,
                        "    {node} = running {}_j of {}{row}",
                        r.kind.name(),
                        argument.render(names)
                    );
                    if let Some(w) = waits {
                        let _ = writeln!(out, "      in sweep {k} because {}", wait(w, names));
                    }
                }
                Accumulation::Online { terms } => {
                    let _ = writeln!(
                        out,
                        "    {node} = online sum_j{}:",
                        if row.is_empty() { "" } else { " (aggregation)" }
                    );
                    for t in terms {
                        let sign = if t.sign < 0.0 { "-" } else { "+" };
                        let weight = match &t.exponent {
                            Some(y) if t.factor == Tree::Float(1.0) => {
                                format!("exp({})", y.render(names))
                            }
                            Some(y) => {
                                format!("exp({}) * {}", y.render(names), t.factor.render(names))
                            }
                            None => t.factor.render(names),
                        };
                        let _ = writeln!(out, "      {sign} term: per pair {weight}{row}");
                        if let Some(z) = &t.shift {
                            let _ = writeln!(
                                out,
                                "          shifted by exp(-({})), rescaled by exp(old - new) when it moves",
                                z.render(names)
                            );
                        }
                        if let Some(c) = &t.post {
                            let _ = writeln!(
                                out,
                                "          times {} after the sweep",
                                c.render(names)
                            );
                        }
                    }
                }
            }
        }
    }
    let _ = writeln!(out, "  absorbed:   {}", list(graph, names, &p.absorbed));
    let _ = writeln!(out, "  epilogue:   {}", list(graph, names, &p.epilogue));
}

fn wait(w: &Wait, names: &HashMap<ValueRef, String>) -> String {
    match w {
        Wait::ExtremumOfStatistic { kind, sweep } => {
            format!(
                "a running {} of values that read a statistic needs it final (from sweep {sweep})",
                kind.name()
            )
        }
        Wait::RowsReadStatistic => "the aggregated rows read a statistic".to_string(),
        Wait::NoOnlineForm { reason, part } => {
            format!("it has no online form: {reason}: {}", part.render(names))
        }
    }
}

fn recurrent(
    out: &mut String,
    graph: &Graph,
    names: &HashMap<ValueRef, String>,
    name: &str,
    r: &RecurrentKernel,
) {
    let (form, grid) = match &r.chunked {
        Ok(_) => (
            "chunked form: inside a chunk in parallel, states passed between chunks".to_string(),
            "b, h; t in chunks",
        ),
        Err(why) => (
            format!("sequential scan over t ({why})"),
            "b, h; t in order",
        ),
    };
    let _ = writeln!(out, "kernel {name}: recurrent template, {form}");
    let _ = writeln!(out, "  grid: {grid}");
    let _ = writeln!(out, "  per head:    {}", list(graph, names, &r.per_head));
    let _ = writeln!(out, "  step inputs: {}", list(graph, names, &r.step_inputs));
    let _ = writeln!(
        out,
        "  recurrence:  {}",
        list(graph, names, &[r.recurrence])
    );
    if let Op::Recurrence { arena, .. } = &graph.node(r.recurrence).op {
        let operands: Vec<String> = graph
            .operands(r.recurrence)
            .iter()
            .map(|(v, _)| names.get(v).cloned().unwrap_or_default())
            .collect();
        let states: Vec<String> = r.states.iter().map(|s| s.name.clone()).collect();
        for s in &r.states {
            let decay = match s.decay {
                Decay::None => "none".to_string(),
                Decay::Scalar(ref f) => {
                    let f: Vec<String> = f
                        .iter()
                        .map(|e| arena.render(*e, &operands, &states))
                        .collect();
                    format!("scalar {}", f.join(" * "))
                }
                Decay::PerRow(e) => format!("per row {}", arena.render(e, &operands, &states)),
                Decay::Other => "not of the form decay * S".to_string(),
            };
            let mut updates = String::new();
            for (k, t) in s.inputs.iter().enumerate() {
                let sign = match (k, t.negated) {
                    (0, false) => "",
                    (0, true) => "-",
                    (_, false) => " + ",
                    (_, true) => " - ",
                };
                updates.push_str(sign);
                for f in &t.factors {
                    updates.push_str(&arena.render(*f, &operands, &states));
                    updates.push_str(" * ");
                }
                updates.push_str(&arena.render(t.expr, &operands, &states));
            }
            if updates.is_empty() {
                updates.push('-');
            }
            let delta = match &s.delta {
                Some(d) => {
                    let mut f: Vec<String> = d
                        .distributed
                        .iter()
                        .map(|e| arena.render(*e, &operands, &states))
                        .collect();
                    f.push(arena.render(d.term, &operands, &states));
                    format!(
                        "; delta-rule correction {}{}",
                        if d.negated { "-" } else { "" },
                        f.join(" * ")
                    )
                }
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "    state {}: decay {decay}{delta}; inputs {updates}",
                s.name
            );
        }
        if let Ok(form) = &r.chunked {
            let readouts: Vec<String> = form
                .readouts
                .iter()
                .map(|x| arena.render(x.node, &operands, &states))
                .collect();
            let _ = writeln!(out, "    read-outs: {}", readouts.join(", "));
        }
    }
    let _ = writeln!(out, "  epilogue:    {}", list(graph, names, &r.epilogue));
}
