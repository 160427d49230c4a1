//! The GPU tiling cost model: for a flash-style kernel with warp-level matrix instructions
//! (`mma.sync`, cooperative matrices), predicts the time of each candidate block shape and picks
//! the cheapest that fits the target's registers and shared memory.
//!
//! The template it models: a block of `warps` warps owns `16 * warps` query rows (16 per warp,
//! the matrix instruction's m); key and value tiles of `key_tile` rows stream through shared
//! memory `stages` deep; each warp keeps its score accumulators (`16 x key_tile` per score), its
//! value accumulators (`16 x Dv` per term) and, when they fit, its query fragments in registers.
//! Time is the larger of the matrix work (at the matrix units' rate, scaled by how many warps
//! each multiprocessor keeps in flight) and the key/value traffic, plus the per-element work of
//! the pair values (exponentials, masks) on the f32 units and a fixed cost per key tile.

use super::cost_model::Problem;
use super::target::GpuTarget;
use super::{Buffer, Place};
use attnc_kernel_abi::ElementType;

/// What the cost model is asked to tile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Request {
    pub problem: Problem,
    /// Score contractions per pair (two for differential attention).
    pub scores: usize,
    /// Value-row accumulators (one per online term of every aggregation).
    pub accumulators: usize,
    /// Operand types of the score and aggregation products (F32 means tf32 or FMA).
    pub score_operand: ElementType,
    pub value_operand: ElementType,
    /// Shared bytes per query row and per key row of computed values beside the tiles.
    pub extra_query_bytes: usize,
    pub extra_key_bytes: usize,
    /// Loads of data per pair (a bias table, a block layout), gathered per element.
    pub pair_loads: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub warps: usize,
    pub query_tile: usize,
    pub key_tile: usize,
    pub stages: usize,
    pub query_in_registers: bool,
    /// Estimated 32-bit registers per thread.
    pub registers: usize,
    pub shared_bytes: usize,
    pub predicted_seconds: f64,
    pub buffers: Vec<Buffer>,
}

const WARPS: &[usize] = &[4, 8];
const KEY_TILES: &[usize] = &[16, 32, 64, 128];
/// Registers every thread needs besides its fragments: addresses, indices, loop state and
/// row statistics.
const BASE_REGISTERS: usize = 80;
/// Registers ptxas needs as slack to schedule without spilling.
const REGISTER_SLACK: usize = 16;
/// The pair values of a tile's elements live until the row reductions have read them: about
/// three registers for every four score accumulators, and one more per element for each
/// gathered load (ptxas issues them all early). Calibrated on ptxas 13 for sm_90a: without
/// this term an estimate of 208 (key tile 128, D = 128) compiled to 255 registers with spills
/// in 6 of 20 examples, while 224 at key tile 16 (two scores) compiled to 237 without; a block
/// layout gathered per element spilled in the main loop at key tile 64 without the load term.
fn pair_temporaries(score_acc: usize, pair_loads: usize) -> usize {
    3 * score_acc / 4 + pair_loads * score_acc
}

/// f32 operations per pair value per score: the scale, the running maximum, the exponential
/// (a multiply and `ex2`) and the row sum; a partially masked tile adds the mask.
const PAIR_FLOPS: f64 = 8.0;
const MASK_FLOPS: f64 = 6.0;
/// Per key tile of a block: the barrier, the copy issue and the pipeline wait.
const TILE_OVERHEAD_S: f64 = 0.4e-6;
/// Seconds of a multiprocessor per 16-byte asynchronous copy its warps issue, where the
/// products do not hide them: a `wgmma` warpgroup waits for its own products, so the copies its
/// threads issue add to its time. Calibrated on the H200 (2026-12-03, softmax_causal bf16
/// D = 128, B4 H16 S4096): query tiles of 64 and 128 rows at key tile 64 issue 2.7e8 and 1.4e8
/// copies, and took 1.90 and 1.25 ms, about 1.1 cycles per copy.
const WARPGROUP_COPY_S: f64 = 0.65e-9;

fn bytes(t: ElementType) -> usize {
    t.size_bytes()
}

/// The predicted time and resources of one candidate, or `None` when it does not fit.
pub fn predict(
    t: &GpuTarget,
    r: &Request,
    warps: usize,
    key_tile: usize,
    query_in_registers: bool,
) -> Option<Choice> {
    let p = &r.problem;
    let bq = 16 * warps;
    let bk = key_tile;
    // The matrix instruction's k is 16 for 16-bit operands and 8 for tf32; each thread holds
    // 4 registers of every 16 x k fragment of A and 4 f32 of every 16 x 8 accumulator.
    let k_step = if bytes(r.score_operand) == 2 { 16 } else { 8 };
    let d_qk = p.d_qk.div_ceil(k_step) * k_step;
    let d_v = p.d_v.div_ceil(8) * 8;
    let score_acc = r.scores * (bk / 8) * 4;
    let value_acc = r.accumulators * (d_v / 8) * 4;
    // On `wgmma` (whole warpgroups, 16-bit operands) the query operand is read from shared
    // memory by descriptors: no query fragments in registers.
    let warpgroup = t.warpgroup_mma && k_step == 16 && warps.is_multiple_of(4) && bk <= 256;
    if warpgroup && query_in_registers {
        return None;
    }
    let query_frag = if query_in_registers {
        r.scores * (d_qk / k_step) * 4
    } else {
        0
    };
    let registers = BASE_REGISTERS
        + score_acc
        + pair_temporaries(score_acc, r.pair_loads)
        + value_acc
        + query_frag;
    if registers + REGISTER_SLACK > t.max_registers_per_thread {
        return None;
    }
    let threads = warps * t.subgroup;
    if threads > t.max_threads_per_block {
        return None;
    }
    let stages = 2;
    // Rows are padded to whole 16-element steps plus 8 elements (bank-conflict-free ldmatrix).
    let pad = |d: usize| d.div_ceil(16) * 16 + 8;
    let q_bytes = r.scores * bq * pad(d_qk) * bytes(r.score_operand) + bq * r.extra_query_bytes;
    let kv_bytes = stages
        * bk
        * (r.scores * pad(d_qk) * bytes(r.score_operand) + pad(d_v) * bytes(r.value_operand))
        + bk * r.extra_key_bytes;
    // After the sweeps the accumulators go through shared memory to the epilogue, reusing the
    // query and key/value tiles.
    let epilogue = r.accumulators * bq * (d_v + 4) * 4 + 8 * bq * 4;
    let shared = (q_bytes + kv_bytes).max(epilogue);
    if shared > t.shared_bytes_per_block {
        return None;
    }
    let by_shared = t.shared_bytes_per_multiprocessor / shared.max(1);
    let by_registers = t.registers_per_multiprocessor / (threads * (registers + REGISTER_SLACK));
    let blocks_per_sm = by_shared.min(by_registers).clamp(1, 16);
    let query_tiles = p.queries.div_ceil(bq);
    let key_tiles = p.keys.div_ceil(bk);
    let blocks = p.slices * query_tiles;
    let resident = t.multiprocessors * blocks_per_sm;
    let waves = blocks.div_ceil(resident.max(1));
    let balance = blocks as f64 / (waves * resident) as f64;
    // The matrix units stay busy with about eight warps per multiprocessor in flight.
    let warps_in_flight = (blocks_per_sm * warps) as f64;
    let issue = (warps_in_flight / 8.0).min(1.0);
    let visited = p.density * (query_tiles * key_tiles * p.sweeps) as f64 * p.slices as f64;
    let pairs = visited * (bq * bk) as f64;
    let matrix_flops = 2.0 * pairs * (r.scores * d_qk + r.accumulators * d_v) as f64;
    let rate = if bytes(r.score_operand) == 2 {
        t.matrix_flops_16bit
    } else {
        t.matrix_flops_16bit / 2.0
    };
    let matrix = matrix_flops / (rate * issue * balance).max(1.0);
    let elementwise =
        pairs * (PAIR_FLOPS * r.scores as f64 + MASK_FLOPS * p.partial) / (t.f32_flops * balance);
    // Every block reads the key and value rows it visits; those of one head are shared by its
    // query tiles through L2, so memory sees each slice's rows about once per wave.
    let row_bytes =
        (r.scores * p.d_qk * bytes(r.score_operand) + p.d_v * bytes(r.value_operand)) as f64;
    let kv_traffic = visited * bk as f64 * row_bytes;
    let memory = kv_traffic / (2.0 * t.dram_bytes_per_s);
    let overhead = visited * TILE_OVERHEAD_S / (t.multiprocessors * blocks_per_sm) as f64 / balance;
    let copies = if warpgroup {
        visited * (bk as f64 * row_bytes / 16.0) * WARPGROUP_COPY_S
            / (t.multiprocessors as f64 * balance)
    } else {
        0.0
    };
    let predicted = matrix.max(memory) + elementwise + overhead + copies;
    let buffers = vec![
        Buffer {
            name: "query tile",
            shape: format!(
                "{bq} x {d_qk} {} per score{}",
                r.score_operand,
                if query_in_registers {
                    ", fragments in registers"
                } else {
                    ""
                }
            ),
            place: Place::Shared,
        },
        Buffer {
            name: "key tiles",
            shape: format!("{stages} x {bk} x {d_qk} {} per score", r.score_operand),
            place: Place::Shared,
        },
        Buffer {
            name: "value tiles",
            shape: format!("{stages} x {bk} x {d_v} {}", r.value_operand),
            place: Place::Shared,
        },
        Buffer {
            name: "score accumulators",
            shape: format!("16 x {bk} f32 per warp per score"),
            place: Place::Registers,
        },
        Buffer {
            name: "value accumulators",
            shape: format!("16 x {d_v} f32 per warp per term"),
            place: Place::Registers,
        },
        Buffer {
            name: "epilogue rows",
            shape: format!("{bq} x {d_v} f32 per term, over the key tiles"),
            place: Place::Shared,
        },
    ];
    Some(Choice {
        warps,
        query_tile: bq,
        key_tile: bk,
        stages,
        query_in_registers,
        registers,
        shared_bytes: shared,
        predicted_seconds: predicted,
        buffers,
    })
}

/// The cheapest candidate, with the tile rule's coverage measured for each:
/// `coverage(bq, bk)` gives (fraction of tiles visited, fraction of those partially masked).
pub fn choose(
    t: &GpuTarget,
    r: &Request,
    coverage: &dyn Fn(usize, usize) -> (f64, f64),
) -> Option<Choice> {
    let mut best: Option<Choice> = None;
    for &warps in WARPS {
        for &bk in KEY_TILES {
            if t.pinned_tiles.is_some_and(|p| p != (16 * warps, bk)) {
                continue;
            }
            let (density, partial) = coverage(16 * warps, bk);
            let request = Request {
                problem: Problem {
                    density,
                    partial,
                    ..r.problem
                },
                ..*r
            };
            for query_in_registers in [true, false] {
                let Some(c) = predict(t, &request, warps, bk, query_in_registers) else {
                    continue;
                };
                if best
                    .as_ref()
                    .is_none_or(|b| c.predicted_seconds < b.predicted_seconds * (1.0 - 1e-9))
                {
                    best = Some(c);
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(d: usize, scores: usize, accumulators: usize) -> Request {
        Request {
            problem: Problem {
                slices: 64,
                queries: 4096,
                keys: 4096,
                d_qk: d,
                d_v: d,
                density: 1.0,
                partial: 0.0,
                sweeps: 1,
            },
            scores,
            accumulators,
            score_operand: ElementType::Bf16,
            value_operand: ElementType::Bf16,
            extra_query_bytes: 0,
            extra_key_bytes: 0,
            pair_loads: 0,
        }
    }

    #[test]
    fn every_choice_fits_registers_and_shared_memory() {
        let t = GpuTarget::sm_90a();
        for (d, pairs) in [
            (32, &[(1, 1), (2, 2)][..]),
            (64, &[(1, 1), (2, 2)]),
            (128, &[(1, 1), (2, 2)]),
            (192, &[(1, 1)]),
            (256, &[(1, 1)]),
        ] {
            for &(scores, acc) in pairs {
                let c = choose(&t, &request(d, scores, acc), &|_, _| (1.0, 0.0))
                    .unwrap_or_else(|| panic!("D={d}: no choice"));
                assert!(
                    c.registers + REGISTER_SLACK <= t.max_registers_per_thread,
                    "{c:?}"
                );
                assert!(c.shared_bytes <= t.shared_bytes_per_block, "{c:?}");
            }
        }
    }

    #[test]
    fn what_does_not_fit_in_registers_is_refused() {
        // Two 256-wide accumulators need 2 x 32 x 4 = 256 registers per thread.
        let t = GpuTarget::sm_90a();
        assert!(choose(&t, &request(256, 2, 2), &|_, _| (1.0, 0.0)).is_none());
    }

    #[test]
    fn wide_heads_and_two_scores_keep_smaller_tiles() {
        let t = GpuTarget::sm_90a();
        let narrow = choose(&t, &request(64, 1, 1), &|_, _| (1.0, 0.0)).unwrap();
        let differential = choose(&t, &request(128, 2, 2), &|_, _| (1.0, 0.0)).unwrap();
        assert!(
            differential.key_tile * differential.registers <= 255 * 128,
            "{differential:?}"
        );
        assert!(
            narrow.key_tile >= differential.key_tile,
            "{narrow:?} {differential:?}"
        );
    }

    #[test]
    fn the_vulkan_profile_stays_within_48_kib() {
        let t = GpuTarget::vulkan_coopmat();
        let c = choose(&t, &request(128, 1, 1), &|_, _| (1.0, 0.0)).unwrap();
        assert!(c.shared_bytes <= 48 << 10, "{c:?}");
    }

    #[test]
    fn causal_masking_halves_the_predicted_time() {
        let t = GpuTarget::sm_90a();
        let full = choose(&t, &request(128, 1, 1), &|_, _| (1.0, 0.0)).unwrap();
        let causal = choose(&t, &request(128, 1, 1), &|_, _| (0.5, 0.03)).unwrap();
        let ratio = causal.predicted_seconds / full.predicted_seconds;
        assert!((0.4..0.65).contains(&ratio), "causal/full = {ratio}");
    }
}
