//! The planner's attention cost, from the compiler: each layer's `.attn` kernel is compiled to
//! its graph once, its dims bound from the model's sizes, and its work estimated from the graph
//! (so a causal mask, a sliding window or a recurrent state cost what they really cost).

use attnc_frontend::{Sources, render_all};
use attnc_ir::{Graph, bind_dims, work};
use attnc_planner::{AttentionShape, AttentionWork, AttentionWorkSource};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Compiles each kernel file once and estimates its work at any shape the planner asks for.
#[derive(Default)]
pub struct GraphWorkSource {
    graphs: RefCell<HashMap<PathBuf, Graph>>,
}

impl GraphWorkSource {
    fn graph(&self, kernel: &Path) -> Result<Graph, String> {
        if let Some(g) = self.graphs.borrow().get(kernel) {
            return Ok(g.clone());
        }
        let text = std::fs::read_to_string(kernel)
            .map_err(|e| format!("cannot read {}: {e}", kernel.display()))?;
        let mut sources = Sources::new();
        let file = sources.add(kernel.display().to_string(), text);
        let graph = attnc_frontend::compile_to_graph(&mut sources, file)
            .map_err(|d| render_all(&d, &sources))?;
        self.graphs
            .borrow_mut()
            .insert(kernel.to_path_buf(), graph.clone());
        Ok(graph)
    }
}

/// The model's sizes under the dim names the examples use; a kernel's other dims keep their
/// defaults (a window `W`, a block size), and one with no default is an error naming it.
fn model_dims(graph: &Graph, shape: &AttentionShape) -> BTreeMap<String, i64> {
    let value = |name: &str| -> Option<u64> {
        Some(match name {
            "B" => shape.batch,
            "S" | "Sq" | "Sk" => shape.seq,
            "H" => shape.heads,
            "Hkv" => shape.kv_heads,
            "D" | "Dk" | "Dv" | "Dqk" => shape.head_dim,
            _ => return None,
        })
    };
    graph
        .dims
        .iter()
        .filter_map(|d| value(&d.name).map(|v| (d.name.clone(), v as i64)))
        .collect()
}

/// A grouped-query model (fewer K/V heads than heads) needs a kernel whose k and v have their
/// own head count `Hkv`; priced with a kernel without one, every query head would get its own
/// K/V head, and the K/V cache would be counted `heads / kv_heads` times too large.
fn check_kv_heads(graph: &Graph, shape: &AttentionShape) -> Result<(), String> {
    if shape.kv_heads == shape.heads || graph.dims.iter().any(|d| d.name == "Hkv") {
        return Ok(());
    }
    Err(format!(
        "the model has kv_heads = {} for heads = {}, but kernel `{}` declares no `Hkv` dim, \
         so its k and v would have one head per query head; use a grouped-query kernel \
         (dim Hkv, as in examples/gqa_causal.attn) or set kv_heads = heads in the model",
        shape.kv_heads, shape.heads, graph.kernel
    ))
}

impl AttentionWorkSource for GraphWorkSource {
    fn attention_work(
        &self,
        kernel: &Path,
        shape: &AttentionShape,
    ) -> Result<AttentionWork, String> {
        let graph = self.graph(kernel)?;
        check_kv_heads(&graph, shape)?;
        let bindings =
            bind_dims(&graph, &model_dims(&graph, shape), &BTreeMap::new()).map_err(|d| {
                d.iter()
                    .map(|d| d.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            })?;
        let w = work::estimate(&graph, &bindings)?;
        Ok(AttentionWork {
            flops: w.flops,
            bytes_moved: w.bytes_moved,
            resident_bytes: w.resident_bytes,
        })
    }
}
