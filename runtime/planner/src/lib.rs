//! The heterogeneous planner: places a transformer's pipeline stages and attention heads
//! on *described* devices (after Confidant), predicting time and memory from a roofline
//! cost model. No kernel runs and nothing here links LLVM, MLIR, CUDA or Vulkan, so the
//! crate ships inside the runtime library. It makes the `plan` stage of `attnc`.
//!
//! # Pipeline
//! Inputs: [`Model`] and [`Profile`] read the two TOML descriptions ([`model`], [`devices`]).
//! 1. [`work`] derives each layer's FLOPs, bytes and memory; attention comes from an
//!    [`AttentionWorkSource`] (the compiler's graph IR), never from a formula in here.
//! 2. [`cost`] turns work into seconds: roofline per kernel, latency + bytes/bandwidth per
//!    transfer.
//! 3. `stage_time` prices a stage under a given head split (tensor-parallel in whole K/V
//!    groups, the device with the most groups as primary).
//! 4. `split_heads` finds, per candidate primary, the split whose devices finish together
//!    within their memory.
//! 5. `stages` cuts the layers into contiguous stages over runs of memory pools by dynamic
//!    programming; `search` does so for every micro-batch count and keeps the fastest.
//! 6. [`evaluate_placement`] prices any placement; [`render_text()`], [`Plan::to_json`] and
//!    [`render_svg()`] print the result, and [`compare()`] sets it beside two baselines.
//!
//! # Model description (TOML)
//! ```toml
//! name = "llama-1b-like"
//! layers = 16          # transformer blocks
//! hidden = 2048        # model width
//! heads = 32           # query heads
//! kv_heads = 8         # K/V heads (GQA: divides heads; = heads for MHA)
//! head_dim = 64
//! mlp_hidden = 8192    # MLP hidden units
//! mlp = "gated"        # "gated" (SwiGLU, 3 matrices, the default) or "plain" (2)
//! dtype = "bf16"       # f32 | f16 | bf16: weights, activations and KV cache
//! batch = 8            # sequences per forward pass; micro-batches divide it
//! seq = 512            # tokens per sequence
//! attention = "../../../examples/gqa_causal.attn"   # relative to this file
//!
//! # Optional, repeated: layers first..=last, every `every`-th (default 1), use another
//! # kernel. Later entries win. This is how hybrid models are written.
//! [[layer_attention]]
//! first = 0
//! last = 15
//! every = 2
//! attention = "../../../examples/sliding_window.attn"
//! ```
//! Each layer is a QKV projection, the attention kernel, an output projection and the MLP.
//! Norms, residual additions, embeddings and the output head are not modelled.
//!
//! # Device profile (TOML)
//! ```toml
//! name = "workstation"
//! default_link = { bandwidth_gbs = 1.0, latency_us = 100 }  # pairs with no [[link]]
//!
//! [[device]]                     # in pipeline order
//! name = "rtx4090"
//! kind = "gpu"                   # gpu | cpu
//! peak_tflops = { f32 = 82.6, f16 = 165.2, bf16 = 165.2 }
//! memory_bandwidth_gbs = 1008    # GB/s, 1 GB = 1e9 bytes
//! launch_overhead_us = 5         # fixed cost per kernel
//! memory_gib = 23                # its own memory...
//!
//! [[device]]
//! name = "cpu"
//! kind = "cpu"
//! peak_tflops = { f32 = 2.3, f16 = 2.3, bf16 = 2.3 }
//! memory_bandwidth_gbs = 89.6
//! launch_overhead_us = 5
//! pool = "host"                  # ...or a share of a pool (CPU + integrated GPU)
//!
//! [[pool]]
//! name = "host"
//! memory_gib = 48
//!
//! [[link]]                       # symmetric
//! between = ["rtx4090", "cpu"]
//! bandwidth_gbs = 25
//! latency_us = 10
//! ```
//! A pool's devices must be listed next to each other: stages own whole pools.

pub mod compare;
pub mod cost;
mod device_groups;
pub mod devices;
mod evaluate;
pub mod model;
mod plan;
mod render_svg;
mod render_text;
mod search;
pub mod shipped;
mod split_heads;
mod stage_time;
mod stages;
mod timeline;
pub mod work;

pub use compare::{Comparison, Outcome, compare, render_comparison};
pub use devices::{Device, DeviceKind, Link, Pool, Profile, ProfileError};
pub use evaluate::evaluate_placement;
pub use model::{Dtype, Kernel, MlpKind, Model, ModelError};
pub use plan::{
    DeviceMemory, DeviceShare, KernelLayers, LinkPlan, Placement, Plan, PlanError, Shortage,
    StagePlacement, StagePlan,
};
pub use render_svg::render_svg;
pub use render_text::render_text;
pub use search::{SearchOptions, plan};
pub use work::{AttentionShape, AttentionWork, AttentionWorkSource, WorkError};
