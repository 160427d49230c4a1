//! The tiling cost model: predicts the time of a fused attention kernel for candidate tile sizes
//! on a target, as the larger of compute time and memory time plus per-tile overheads, and picks
//! the cheapest candidate whose working set fits the caches.

use super::target::CpuTarget;

/// The sizes a choice depends on (bound dims, or nominal ones when building without a shape).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Problem {
    /// Independent (b, h) slices.
    pub slices: usize,
    pub queries: usize,
    pub keys: usize,
    /// Query/key row length and value row length.
    pub d_qk: usize,
    pub d_v: usize,
    /// Fraction of key tiles visited (not skipped by the tile rule; 1 without a mask).
    pub density: f64,
    /// Fraction of the visited tiles that need the mask per element.
    pub partial: f64,
    /// Sweeps over the key tiles.
    pub sweeps: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    pub query_tile: usize,
    pub key_tile: usize,
    /// The register block of the score (query rows x keys), if the key tile allows one.
    pub score_block: Option<RegisterBlock>,
    /// The register block of the aggregation (query rows x value features), if the value rows
    /// are a whole number of vectors.
    pub aggregate_block: Option<RegisterBlock>,
    pub predicted_seconds: f64,
    /// Bytes of the tiles one work item keeps live.
    pub working_set: usize,
}

/// A register block of a contraction: `rows` query rows by `vectors` vector registers of
/// `lanes` f32 each, the accumulators one step of the contraction keeps in registers. Each
/// step loads `vectors` registers of one operand, broadcasts `rows` scalars of the other and
/// issues `rows x vectors` FMAs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterBlock {
    pub rows: usize,
    pub vectors: usize,
    pub lanes: usize,
}

impl RegisterBlock {
    /// Columns one block covers.
    pub fn width(&self) -> usize {
        self.vectors * self.lanes
    }

    /// The fraction of FMA issue slots a step keeps busy, with as many loads as FMAs per cycle:
    /// `rows x vectors` FMAs against `rows + vectors` loads.
    pub fn efficiency(&self) -> f64 {
        let fmas = (self.rows * self.vectors) as f64;
        fmas / fmas.max((self.rows + self.vectors) as f64)
    }
}

/// The register block for a contraction whose result is `rows` x `cols` per tile: the block
/// with the most FMAs per load whose accumulators, loaded vectors and one broadcast fit the
/// registers; its rows divide `rows` and its width divides `cols`. `None` when `cols` is not a
/// whole number of vectors.
pub fn register_block(t: &CpuTarget, rows: usize, cols: usize) -> Option<RegisterBlock> {
    if cols == 0 || !cols.is_multiple_of(t.f32_lanes) {
        return None;
    }
    let mut best: Option<RegisterBlock> = None;
    for vectors in (1..=8).filter(|v| (cols / t.f32_lanes).is_multiple_of(*v)) {
        for r in [1, 2, 4, 8].into_iter().filter(|r| rows.is_multiple_of(*r)) {
            if r * vectors + vectors + 1 > t.vector_registers {
                continue;
            }
            let b = RegisterBlock {
                rows: r,
                vectors,
                lanes: t.f32_lanes,
            };
            let ratio =
                |b: &RegisterBlock| (b.rows * b.vectors) as f64 / (b.rows + b.vectors) as f64;
            if best.is_none_or(|x| ratio(&b) > ratio(&x) + 1e-9) {
                best = Some(b);
            }
        }
    }
    best
}

/// The fraction of peak a contraction without a register block reaches (a dot product per
/// pair with a horizontal sum, or a row update that loads and stores its accumulator).
const UNBLOCKED_EFFICIENCY: f64 = 0.4;

const QUERY_TILES: &[usize] = &[8, 16, 32, 64, 128, 256];
const KEY_TILES: &[usize] = &[16, 32, 64, 128, 256, 512];

/// Per key tile: loop control and the tile-rule test.
const TILE_OVERHEAD_S: f64 = 40e-9;

/// Per pair of a partially masked tile: evaluating the mask and branching on it, in FLOPs at
/// peak rate (scalar, unvectorised work costs several).
const MASK_FLOPS: f64 = 32.0;

/// Per element of a key tile transposed for the score's register block, in FLOPs at peak rate:
/// a 16 x 16 block takes about 100 instructions (loads, shuffles, stores) for 256 elements.
const TRANSPOSE_FLOPS: f64 = 12.0;

/// Per element of a key or value tile copied out of the inputs, in FLOPs at peak rate.
const COPY_FLOPS: f64 = 4.0;

/// Per key tile and query row: the running maximum, the exponentials of the rescale, and the
/// rescale of the row's accumulator (one multiply per element, at a quarter of peak as it is
/// scattered work), in FLOPs.
fn rescale_flops(d_v: usize) -> f64 {
    20.0 + 4.0 * d_v as f64
}

fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// The predicted time of one choice, or `None` if its working set does not fit in L2.
pub fn predict(t: &CpuTarget, p: &Problem, bq: usize, bk: usize) -> Option<Choice> {
    // Tiles never exceed the (lane-rounded) problem: a bigger one only computes padding.
    let bq_eff = bq.min(round_up(p.queries, 8));
    let bk_eff = bk.min(round_up(p.keys, t.f32_lanes));
    let f32 = 4;
    // Query tile, key tile (and its feature-major copy), value tile, score and weight tiles,
    // accumulators.
    let working_set = f32
        * (bq_eff * p.d_qk + bk_eff * (2 * p.d_qk + p.d_v) + 2 * bq_eff * bk_eff + bq_eff * p.d_v);
    if working_set > t.l2_bytes / 2 {
        return None;
    }
    let query_tiles = p.queries.div_ceil(bq_eff);
    let key_tiles = p.keys.div_ceil(bk_eff);
    // Counts of tiles and items can pass 2^64 for absurd shapes (S = 1e12): saturate, and
    // price in f64.
    let items = p.slices.saturating_mul(query_tiles);
    // Work is spread over cores in whole items: the last wave may leave cores idle.
    let waves = items.div_ceil(t.cores);
    let balance = items as f64 / (waves as f64 * t.cores as f64);
    // Padding computed in partial tiles is wasted.
    let padded = (query_tiles * bq_eff) as f64 * (key_tiles * bk_eff) as f64;
    let score_block = register_block(t, bq_eff, bk_eff);
    let aggregate_block = register_block(t, bq_eff, p.d_v);
    let efficiency = |b: Option<RegisterBlock>| b.map_or(UNBLOCKED_EFFICIENCY, |b| b.efficiency());
    // FLOPs at full rate: each contraction's divided by the efficiency of its block.
    let flops = 2.0
        * padded
        * (p.d_qk as f64 / efficiency(score_block) + p.d_v as f64 / efficiency(aggregate_block))
        * p.density
        * p.sweeps as f64
        * p.slices as f64;
    // Vector lanes are wasted when the inner dimension is not a multiple of them.
    let lane_use = p.d_v as f64 / round_up(p.d_v, t.f32_lanes) as f64;
    // The query tile, the pair tile and the accumulators are reused for every key row and every
    // element of a row: out of L1 they slow the inner loops. Key and value tiles stream once
    // per query tile and are fine in L2.
    // Register blocks keep their accumulators in registers and stream the tiles, so only the
    // scalar loops pay for tiles out of L1.
    let reused = f32 * bq_eff * (p.d_qk + bk_eff + p.d_v);
    let blocked = score_block.is_some() && aggregate_block.is_some();
    let l1_penalty = if reused > t.l1_bytes && !blocked {
        1.3
    } else {
        1.0
    };
    let compute = flops / (t.core_flops * t.cores as f64 * balance * lane_use) * l1_penalty;
    // Each query tile reads the slice's key and value rows once per sweep. The first read
    // comes from memory; the others from L2 when one slice's rows fit there, else from memory.
    let slice_bytes = p.keys as f64 * (p.d_qk + p.d_v) as f64 * f32 as f64 * p.density;
    let first = p.slices as f64 * slice_bytes;
    let again = p.slices as f64 * (query_tiles as f64 * p.sweeps as f64 - 1.0) * slice_bytes;
    let memory = if slice_bytes <= (t.l2_bytes / 2) as f64 {
        first / t.dram_bytes_per_s + again / (t.l2_bytes_per_s * t.cores as f64)
    } else {
        (first + again) / t.dram_bytes_per_s
    };
    let visited = items as f64 * key_tiles as f64 * p.sweeps as f64 * p.density;
    let rescale = visited * bq_eff as f64 * rescale_flops(p.d_v) / (t.core_flops * t.cores as f64);
    // Partially masked tiles evaluate the mask for every pair.
    let masking = visited * p.partial * (bq_eff * bk_eff) as f64 * MASK_FLOPS
        / (t.core_flops * t.cores as f64);
    // A register-blocked score reads the key tile feature-major: each work item transposes
    // every key tile it visits (row loads, shuffles in registers, stores).
    // Each work item copies every key and value tile it visits out of the inputs, and with a
    // register-blocked score transposes the key tile: work per query tile, not per pair.
    let per_key = p.d_qk as f64
        * if score_block.is_some() {
            TRANSPOSE_FLOPS
        } else {
            COPY_FLOPS
        }
        + p.d_v as f64 * COPY_FLOPS;
    let transpose = visited * bk_eff as f64 * per_key / (t.core_flops * t.cores as f64);
    let overhead = visited * TILE_OVERHEAD_S / t.cores as f64 + rescale + masking + transpose;
    Some(Choice {
        query_tile: bq_eff,
        key_tile: bk_eff,
        score_block,
        aggregate_block,
        predicted_seconds: compute.max(memory) + overhead,
        working_set,
    })
}

/// The cheapest choice over the candidate tile sizes, for a problem whose tile coverage does
/// not depend on the tile sizes (no mask, or a measured average).
pub fn choose(t: &CpuTarget, p: &Problem) -> Option<Choice> {
    choose_with(t, p, &|_, _| (p.density, p.partial))
}

/// The cheapest choice, with the tile rule's coverage measured for each candidate:
/// `coverage(bq, bk)` gives (fraction of tiles visited, fraction of those partially masked).
pub fn choose_with(
    t: &CpuTarget,
    p: &Problem,
    coverage: &dyn Fn(usize, usize) -> (f64, f64),
) -> Option<Choice> {
    let mut best: Option<Choice> = None;
    for &bq in QUERY_TILES {
        for &bk in KEY_TILES {
            let (density, partial) = coverage(bq, bk);
            let candidate = Problem {
                density,
                partial,
                ..*p
            };
            let Some(c) = predict(t, &candidate, bq, bk) else {
                continue;
            };
            // Ties go to the first (smaller) candidate, so the choice is deterministic.
            if best.is_none_or(|b| c.predicted_seconds < b.predicted_seconds * (1.0 - 1e-9)) {
                best = Some(c);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(slices: usize, s: usize, d: usize) -> Problem {
        Problem {
            slices,
            queries: s,
            keys: s,
            d_qk: d,
            d_v: d,
            density: 1.0,
            partial: 0.0,
            sweeps: 1,
        }
    }

    #[test]
    fn a_working_set_over_half_of_l2_is_refused() {
        let t = CpuTarget::xeon_avx512_2core();
        // 256 x 512 tiles at D = 512: (256*512 + 512*1536 + 2*256*512 + 256*512) * 4 bytes = 5 MiB.
        assert!(predict(&t, &problem(16, 4096, 512), 256, 512).is_none());
        assert!(predict(&t, &problem(16, 4096, 64), 64, 64).is_some());
    }

    #[test]
    fn every_head_width_gets_tiles_that_fit_half_of_l2() {
        let t = CpuTarget::xeon_avx512_2core();
        for d in [16, 64, 128, 256, 512] {
            let c = choose(&t, &problem(16, 4096, d)).expect("a choice");
            assert!(c.working_set <= t.l2_bytes / 2, "D={d}: {c:?}");
        }
        // The largest candidate pair would need more than half of L2 at D = 512.
        let wide = choose(&t, &problem(16, 4096, 512)).expect("a choice");
        assert!(wide.query_tile * wide.key_tile < 256 * 512, "{wide:?}");
    }

    #[test]
    fn tiles_are_not_larger_than_a_short_sequence() {
        let t = CpuTarget::xeon_avx512_2core();
        let c = choose(&t, &problem(4, 20, 64)).expect("a choice");
        assert!(c.query_tile <= 24 && c.key_tile <= 32, "{c:?}");
    }

    #[test]
    fn few_slices_on_many_cores_get_smaller_query_tiles_for_parallelism() {
        let mut t = CpuTarget::xeon_avx512_2core();
        t.cores = 64;
        let one_slice = choose(&t, &problem(1, 2048, 64)).expect("a choice");
        // 2048 queries over 64 cores: tiles of at most 32 rows keep every core busy.
        assert!(one_slice.query_tile <= 32, "{one_slice:?}");
    }

    #[test]
    fn register_blocks_fit_the_registers_and_divide_the_tile() {
        let avx512 = CpuTarget::xeon_avx512_2core();
        let mut avx2 = avx512.clone();
        avx2.f32_lanes = 8;
        avx2.vector_registers = 16;
        for t in [&avx512, &avx2] {
            for rows in [8, 16, 24, 64] {
                for cols in [16, 32, 48, 64, 80, 128, 256] {
                    let Some(b) = register_block(t, rows, cols) else {
                        assert!(!cols.is_multiple_of(t.f32_lanes), "{rows} x {cols}");
                        continue;
                    };
                    assert!(b.rows * b.vectors + b.vectors < t.vector_registers, "{b:?}");
                    assert_eq!(rows % b.rows, 0, "{b:?}");
                    assert_eq!(cols % b.width(), 0, "{b:?}");
                }
            }
        }
        // AVX-512 at 64 keys: 4 rows x 4 vectors (16 accumulators, 8 loads per 16 FMAs).
        let b = register_block(&avx512, 64, 64).expect("a block");
        assert_eq!((b.rows, b.vectors), (4, 4));
        assert_eq!(b.efficiency(), 1.0);
        // Fewer registers give a smaller block.
        let b = register_block(&avx2, 64, 64).expect("a block");
        assert!(b.rows * b.vectors <= 12, "{b:?}");
        // Value rows of 20 floats are not whole vectors.
        assert!(register_block(&avx512, 64, 20).is_none());
    }

    #[test]
    fn key_tiles_are_long_enough_to_amortise_the_online_rescale() {
        let t = CpuTarget::xeon_avx512_2core();
        let c = choose(&t, &problem(16, 4096, 64)).expect("a choice");
        assert!(c.key_tile >= 64, "{c:?}");
    }

    #[test]
    fn partially_masked_tiles_cost_more() {
        let t = CpuTarget::xeon_avx512_2core();
        let mut p = problem(16, 4096, 64);
        p.density = 0.5;
        let clean = predict(&t, &p, 64, 64).expect("fits");
        p.partial = 1.0;
        let masked = predict(&t, &p, 64, 64).expect("fits");
        assert!(masked.predicted_seconds > clean.predicted_seconds);
    }

    #[test]
    fn a_sparse_mask_makes_the_kernel_cheaper() {
        let t = CpuTarget::xeon_avx512_2core();
        let full = choose(&t, &problem(16, 4096, 64)).expect("a choice");
        let mut causal = problem(16, 4096, 64);
        causal.density = 0.5;
        let half = choose(&t, &causal).expect("a choice");
        let ratio = half.predicted_seconds / full.predicted_seconds;
        assert!(
            (0.4..0.6).contains(&ratio),
            "causal/full predicted = {ratio}"
        );
    }
}
