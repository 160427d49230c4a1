//! Planner step 1: what one layer costs, in FLOPs and bytes, independent of any device.
//!
//! Projections and the MLP are dense matrix products, so their work is written here in
//! closed form. Attention is not: its cost depends on the variant (a causal mask halves the
//! score work, a sliding window makes it proportional to the window, a recurrent form keeps
//! a state instead of a KV cache), which only the compiler knows from its graph IR. The
//! planner asks an [`AttentionWorkSource`] for it.

use std::collections::BTreeMap;
use std::path::Path;

use thiserror::Error;

use crate::model::Model;

/// Shape of one attention call: the whole layer, all heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AttentionShape {
    pub batch: u64,
    pub seq: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub dtype_bytes: u64,
}

/// Work of one attention kernel over a whole layer (all heads).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionWork {
    pub flops: f64,
    /// Bytes read and written in device memory by the kernel.
    pub bytes_moved: f64,
    /// Bytes kept between steps: the KV cache, or a recurrent state.
    pub resident_bytes: f64,
}

/// Where attention cost comes from. The compiler implements it from its graph IR; tests
/// implement it in closed form.
///
/// The planner assumes the work is the same for every head, so one head's share is
/// `total / heads` and one K/V group's share is `total / kv_heads`.
pub trait AttentionWorkSource {
    /// Work of one attention kernel for the whole layer at this shape (all heads), or a
    /// message saying why it cannot be computed.
    fn attention_work(
        &self,
        kernel: &Path,
        shape: &AttentionShape,
    ) -> Result<AttentionWork, String>;
}

/// One kernel of a layer, as the roofline model needs it.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct OpWork {
    pub flops: f64,
    /// Bytes that shrink with a device's share of the heads (its weight slice, its outputs).
    pub split_bytes: f64,
    /// Bytes every participating device moves in full (the layer input it reads, or the
    /// full-width partial sum it writes).
    pub shared_bytes: f64,
}

/// The kernels of a layer, in the order they run. Attention-block kernels come first; a
/// stage synchronises after them (reduce the partial sums of the output projection) and
/// again after the MLP.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LayerOps {
    pub(crate) qkv: OpWork,
    pub(crate) attention: OpWork,
    pub(crate) out_proj: OpWork,
    pub(crate) mlp_up: OpWork,
    pub(crate) mlp_down: OpWork,
}

/// Everything the planner needs to know about one layer kind at one micro-batch size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LayerWork {
    pub(crate) ops: LayerOps,
    /// All weights of the layer.
    pub(crate) weight_bytes: f64,
    /// KV cache or recurrent state of the layer for the whole batch (all micro-batches
    /// leave theirs behind).
    pub(crate) resident_bytes: f64,
    /// Activation memory every participating device holds for one micro-batch: the layer
    /// input and the residual (or the partial sum being reduced).
    pub(crate) shared_activation_bytes: f64,
    /// Activation memory that scales with a device's share: its slice of the widest
    /// intermediate (QKV outputs or the MLP's hidden units).
    pub(crate) split_activation_bytes: f64,
}

/// The work of every layer kind of a model at one micro-batch size.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ModelWork {
    /// One entry per model kernel (see [`Model::kernels`]).
    pub(crate) kinds: Vec<LayerWork>,
    /// Bytes of one micro-batch's hidden state (`tokens × hidden`), the unit of every
    /// transfer between devices.
    pub(crate) hidden_state_bytes: f64,
}

/// The work source failed, or gave a number the planner cannot use.
#[derive(Debug, Error)]
#[error("attention work for kernel `{kernel}` (batch {batch}, seq {seq}): {message}")]
pub struct WorkError {
    pub kernel: String,
    pub batch: u64,
    pub seq: u64,
    pub message: String,
}

/// Remembers the work source's answers: the search asks for the same shapes many times,
/// and a compiler-backed source builds a graph for each question.
pub(crate) struct WorkCache<'a> {
    source: &'a dyn AttentionWorkSource,
    answers: BTreeMap<(usize, AttentionShape), AttentionWork>,
}

impl<'a> WorkCache<'a> {
    pub(crate) fn new(source: &'a dyn AttentionWorkSource) -> Self {
        WorkCache {
            source,
            answers: BTreeMap::new(),
        }
    }

    fn attention(
        &mut self,
        model: &Model,
        kernel: usize,
        batch: u64,
    ) -> Result<AttentionWork, WorkError> {
        let shape = AttentionShape {
            batch,
            seq: model.seq,
            heads: model.heads,
            kv_heads: model.kv_heads,
            head_dim: model.head_dim,
            dtype_bytes: model.dtype.bytes(),
        };
        if let Some(w) = self.answers.get(&(kernel, shape)) {
            return Ok(*w);
        }
        let k = &model.kernels[kernel];
        let error = |message: String| WorkError {
            kernel: k.shown(),
            batch,
            seq: model.seq,
            message,
        };
        let w = self
            .source
            .attention_work(&k.resolved, &shape)
            .map_err(error)?;
        for (name, v) in [
            ("flops", w.flops),
            ("bytes_moved", w.bytes_moved),
            ("resident_bytes", w.resident_bytes),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(error(format!("{name} is {v}, not a finite number ≥ 0")));
            }
        }
        self.answers.insert((kernel, shape), w);
        Ok(w)
    }

    /// Work of every layer kind when a micro-batch holds `micro_batch` sequences.
    pub(crate) fn model_work(
        &mut self,
        model: &Model,
        micro_batch: u64,
    ) -> Result<ModelWork, WorkError> {
        let b = model.dtype.bytes() as f64;
        let tokens = (micro_batch * model.seq) as f64;
        let hidden = model.hidden as f64;
        let qkv_width = ((model.heads + 2 * model.kv_heads) * model.head_dim) as f64;
        let attn_width = (model.heads * model.head_dim) as f64;
        // Gated MLPs compute gate and up projections as one product of twice the width.
        let up_width = ((model.mlp.matrices() - 1) * model.mlp_hidden) as f64;
        let mlp_hidden = model.mlp_hidden as f64;
        let x = tokens * hidden * b;
        let mut kinds = Vec::with_capacity(model.kernels.len());
        for kernel in 0..model.kernels.len() {
            let step = self.attention(model, kernel, micro_batch)?;
            let whole = self.attention(model, kernel, model.batch)?;
            let ops = LayerOps {
                qkv: OpWork {
                    flops: 2.0 * tokens * hidden * qkv_width,
                    split_bytes: (hidden * qkv_width + tokens * qkv_width) * b,
                    shared_bytes: x,
                },
                attention: OpWork {
                    flops: step.flops,
                    split_bytes: step.bytes_moved,
                    shared_bytes: 0.0,
                },
                out_proj: OpWork {
                    flops: 2.0 * tokens * attn_width * hidden,
                    split_bytes: (attn_width * hidden + tokens * attn_width) * b,
                    shared_bytes: x,
                },
                mlp_up: OpWork {
                    flops: 2.0 * tokens * hidden * up_width,
                    split_bytes: (hidden * up_width + tokens * up_width) * b,
                    shared_bytes: x,
                },
                mlp_down: OpWork {
                    flops: 2.0 * tokens * mlp_hidden * hidden,
                    split_bytes: (mlp_hidden * hidden + tokens * mlp_hidden) * b,
                    shared_bytes: x,
                },
            };
            kinds.push(LayerWork {
                ops,
                weight_bytes: (hidden * qkv_width
                    + attn_width * hidden
                    + hidden * up_width
                    + mlp_hidden * hidden)
                    * b,
                resident_bytes: whole.resident_bytes,
                shared_activation_bytes: 2.0 * x,
                split_activation_bytes: tokens * qkv_width.max(up_width) * b,
            });
        }
        Ok(ModelWork {
            kinds,
            hidden_state_bytes: x,
        })
    }
}
