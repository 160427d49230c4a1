//! The `graph` dump (`attnc build --emit graph`): one line per node in a deterministic
//! topological order, nodes renumbered `%0, %1, ...` in that order, each with its type.

use crate::graph::{Graph, LoadIndex, Op, PortType, ValueRef};
use petgraph::stable_graph::NodeIndex;
use std::collections::HashMap;
use std::fmt::Write;

pub fn dump_graph(graph: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "kernel {}", graph.kernel);
    let dims: Vec<String> = graph
        .dims
        .iter()
        .map(|d| match &d.default {
            Some((arena, root)) => format!("{} = {}", d.name, arena.render(*root, &[], &[])),
            None => d.name.clone(),
        })
        .collect();
    let _ = writeln!(out, "dims {}", dims.join(", "));
    let extents: Vec<String> = graph
        .extents
        .iter()
        .map(|(fi, d)| format!("{}: {d}", fi.name()))
        .collect();
    let _ = writeln!(out, "indices {}", extents.join(", "));
    for r in &graph.requirements {
        let _ = writeln!(out, "require {}", r.arena.render(r.root, &[], &[]));
    }
    let Some(order) = graph.topo_order() else {
        let _ = writeln!(out, "<cyclic graph>");
        return out;
    };
    let numbers: HashMap<NodeIndex, usize> =
        order.iter().enumerate().map(|(k, n)| (*n, k)).collect();
    let value_name = |v: ValueRef| -> String {
        let n = numbers.get(&v.node).copied().unwrap_or(usize::MAX);
        let multi = graph.node(v.node).results.len() > 1;
        if multi {
            format!("%{n}.{}", v.result)
        } else {
            format!("%{n}")
        }
    };
    out.push('\n');
    for n in &order {
        let node = graph.node(*n);
        let operands: Vec<String> = graph
            .operands(*n)
            .iter()
            .map(|(v, _)| value_name(*v))
            .collect();
        let label = node
            .name
            .as_deref()
            .map(|s| format!(" {s}"))
            .unwrap_or_default();
        let types: Vec<String> = node
            .results
            .iter()
            .map(|r| match r {
                PortType::Tensor(t) => t.to_string(),
                PortType::Value(t) => t.to_string(),
            })
            .collect();
        let ty = types.join(", ");
        let body = match &node.op {
            Op::Input {
                name,
                range,
                bounds,
                ..
            } => {
                let range = range
                    .map(|(lo, hi)| {
                        format!(
                            " in [{}, {}]",
                            bounds.render(lo, &[], &[]),
                            bounds.render(hi, &[], &[])
                        )
                    })
                    .unwrap_or_default();
                format!("input {name}{range}")
            }
            Op::Load { indices } => {
                let tensor = graph
                    .operands(*n)
                    .first()
                    .and_then(|(v, _)| graph.node(v.node).name.clone())
                    .unwrap_or_default();
                // A row is written as the language writes it, by its leading axes only
                // (`q[b, h, i]`); the result type shows the feature axis.
                let idx: Vec<String> = indices
                    .iter()
                    .map(|ix| match ix {
                        LoadIndex::Frame(fi) => fi.name().to_string(),
                        LoadIndex::Operand(k) => {
                            operands.get(*k as usize).cloned().unwrap_or_default()
                        }
                    })
                    .collect();
                format!("load {tensor}[{}]", idx.join(", "))
            }
            Op::Map { expr, root } => format!("map {}", expr.render(*root, &operands, &[])),
            Op::Mask { expr, root } => format!("mask {}", expr.render(*root, &operands, &[])),
            Op::Score => format!("score dot({})", operands.join(", ")),
            Op::RowReduce { .. } | Op::Aggregate => {
                let (args, mask) = split_mask(&node.op, &operands);
                let mask = mask.map(|m| format!(" where {m}")).unwrap_or_default();
                let what = match node.op {
                    Op::Aggregate => {
                        format!("{} * {}", args[0], args.get(1).cloned().unwrap_or_default())
                    }
                    _ => args.join(", "),
                };
                format!("{} over j ({what}){mask}", node.op.mnemonic())
            }
            Op::Recurrence {
                arena,
                states,
                emits,
            } => {
                let names: Vec<String> = states.iter().map(|s| s.name.clone()).collect();
                let mut text = String::from("recurrence over t");
                for s in states {
                    let _ = write!(
                        text,
                        "\n      state {} = {}",
                        s.name,
                        arena.render(s.update, &operands, &names)
                    );
                }
                for (k, e) in emits.iter().enumerate() {
                    let _ = write!(
                        text,
                        "\n      emit {k} = {}",
                        arena.render(*e, &operands, &names)
                    );
                }
                text
            }
            Op::Output { name, ty, axes } => {
                let idx: Vec<&str> = axes.iter().map(|a| a.name()).collect();
                format!(
                    "output {name}[{}]: {ty} = {}",
                    idx.join(", "),
                    operands.join(", ")
                )
            }
        };
        let number = numbers[n];
        if ty.is_empty() {
            let _ = writeln!(out, "  %{number}{label} = {body}");
        } else {
            let _ = writeln!(out, "  %{number}{label} = {body} : {ty}");
        }
    }
    out
}

/// Separates a reduction's mask operand (the last one, when present) from its data operands.
fn split_mask<'a>(op: &Op, operands: &'a [String]) -> (&'a [String], Option<&'a String>) {
    let data = match op {
        Op::Aggregate => 2,
        _ => 1,
    };
    if operands.len() > data {
        (&operands[..data], operands.last())
    } else {
        (operands, None)
    }
}
