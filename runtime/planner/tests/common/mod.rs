//! A closed-form attention work source for the planner's tests, standing in for the
//! compiler's graph IR. The kernel's file name picks the variant: a name containing
//! `window` is causal attention over a 256-token window, `causal` is causal softmax
//! attention, `missing` fails, anything else is full softmax attention.

use std::path::Path;

use attnc_planner::{AttentionShape, AttentionWork, AttentionWorkSource};

const WINDOW: u64 = 256;

pub struct ClosedForm;

/// Query-key pairs scored per head when each query sees at most `window` keys, itself
/// included and none after it.
fn causal_pairs(seq: u64, window: u64) -> f64 {
    let w = window.min(seq);
    (w * (w + 1) / 2 + (seq - w) * w) as f64
}

impl AttentionWorkSource for ClosedForm {
    fn attention_work(&self, kernel: &Path, s: &AttentionShape) -> Result<AttentionWork, String> {
        let name = kernel.to_string_lossy();
        if name.contains("missing") {
            return Err(format!("cannot open {name}"));
        }
        let (pairs, kept_keys) = if name.contains("window") {
            (causal_pairs(s.seq, WINDOW), s.seq.min(WINDOW))
        } else if name.contains("causal") {
            (causal_pairs(s.seq, s.seq), s.seq)
        } else {
            ((s.seq * s.seq) as f64, s.seq)
        };
        let b = s.dtype_bytes as f64;
        Ok(AttentionWork {
            // Q·Kᵀ and P·V: 2·D FLOPs each per pair and head.
            flops: 4.0 * (s.batch * s.heads * s.head_dim) as f64 * pairs,
            // Read Q, K, V and write O once (flash-style, no S×S matrix in memory).
            bytes_moved: (s.batch * s.seq * s.head_dim * (2 * s.heads + 2 * s.kv_heads)) as f64 * b,
            resident_bytes: (2 * s.batch * kept_keys * s.kv_heads * s.head_dim) as f64 * b,
        })
    }
}
