//! The chunked form's contractions: the scores of the read-out rows against the terms' left
//! vectors, the read-outs (weights times right vectors plus the decayed rows times the carried
//! state) and the states passed on (decayed state plus the terms decayed to the chunk's end),
//! on the tensor cores as `mma.sync` m16n8k8 with tf32 operands from the f32 arrays in shared
//! memory and f32 accumulators. A per-row decay's scores depend on the decay between every
//! pair of steps row by row, which no product of two matrices gives without ratios of running
//! products (which underflow to 0 / 0 over a long chunk): they are summed on the CUDA cores,
//! a warp's lanes splitting the rows.
//!
//! Fragments (PTX ISA, m16n8k8 tf32; lane = 4g + t): A a0 = (g, t), a1 = (g+8, t),
//! a2 = (g, t+4), a3 = (g+8, t+4); B b0 = (k t, n g), b1 = (k t+4, n g); the accumulator
//! c0 = (g, 2t), c1 = (g, 2t+1), c2 = (g+8, 2t), c3 = (g+8, 2t+1).

use super::Chunk;
use super::layout::{Arr, StateArrs};
use crate::mma;
use attnc_ir::ElementType;
use attnc_lower::{Cmp, Emitter, MathHooks, PtxMath, Ty, Val};

const TF32: mma::Kind = mma::Kind {
    operand: ElementType::F32,
};

/// An element loader: (row, column) of an operand to its f32 value.
type Load<'l> = &'l mut dyn FnMut(&mut Emitter, &Val, &Val) -> Val;

/// An f32 as a tf32 operand, rounded to nearest (the matrix unit would truncate the low 13
/// mantissa bits, a bias that adds up over a long recurrence).
fn tf32(e: &mut Emitter, x: &Val) -> Val {
    let i = e.bitcast(x, &Ty::I32);
    let half = e.i32(0x1000);
    let up = e.add(&i, &half);
    let mask = e.i32(0xffff_e000u32 as i32 as i64);
    e.op(Ty::I32, &format!("arith.andi {up}, {mask} : i32"))
}

/// Where an accumulator register `q` of 8-column block `nb` lies: (row, column).
pub(super) fn accumulator_at(
    e: &mut Emitter,
    row0: &Val,
    g: &Val,
    t: &Val,
    nb: usize,
    q: usize,
) -> (Val, Val) {
    let r = e.add(row0, g);
    let r = if q >= 2 {
        let eight = e.index(8);
        e.add(&r, &eight)
    } else {
        r
    };
    let two = e.index(2);
    let c = e.mul(t, &two);
    let n0 = e.index((nb * 8 + q % 2) as i64);
    let c = e.add(&c, &n0);
    (r, c)
}

impl Chunk<'_> {
    /// The A fragment of rows `row0..row0 + 16`, columns `k0..k0 + 8`.
    fn a_frag(&self, e: &mut Emitter, row0: &Val, k0: &Val, load: Load) -> Vec<Val> {
        let r_lo = e.add(row0, &self.g);
        let eight = e.index(8);
        let r_hi = e.add(&r_lo, &eight);
        let c_lo = e.add(k0, &self.t);
        let four = e.index(4);
        let c_hi = e.add(&c_lo, &four);
        [
            (&r_lo, &c_lo),
            (&r_hi, &c_lo),
            (&r_lo, &c_hi),
            (&r_hi, &c_hi),
        ]
        .into_iter()
        .map(|(r, c)| {
            let x = load(e, r, c);
            tf32(e, &x)
        })
        .collect()
    }

    /// The B fragment of rows (k) `k0..k0 + 8`, columns (n) `n0..n0 + 8`.
    fn b_frag(&self, e: &mut Emitter, k0: &Val, n0: usize, load: Load) -> Vec<Val> {
        let k_lo = e.add(k0, &self.t);
        let four = e.index(4);
        let k_hi = e.add(&k_lo, &four);
        let n = e.index(n0 as i64);
        let n = e.add(&n, &self.g);
        [&k_lo, &k_hi]
            .into_iter()
            .map(|k| {
                let x = load(e, k, &n);
                tf32(e, &x)
            })
            .collect()
    }

    fn zeros(e: &mut Emitter, blocks: usize) -> Vec<Vec<Val>> {
        let z = e.f32(0.0);
        vec![vec![z; 4]; blocks]
    }

    /// `acc += A B` over `k_steps` steps of 8, A and B given by their loaders. The steps are a
    /// loop, not unrolled: unrolled, every fragment's address is invariant in the chunk loop,
    /// hoisted out of it and kept in registers, and the state products spill.
    fn accumulate(
        &self,
        e: &mut Emitter,
        acc: &mut Vec<Vec<Val>>,
        row0: &Val,
        k_steps: usize,
        a: Load,
        b: Load,
    ) {
        let flat: Vec<Val> = acc.iter().flatten().cloned().collect();
        let (zero, hi, step) = (e.index(0), e.index(8 * k_steps as i64), e.index(8));
        let (k0, carried, lp) = e.for_iter(&zero, &hi, &step, &flat);
        let af = self.a_frag(e, row0, &k0, a);
        let mut next = Vec::with_capacity(flat.len());
        for (nb, c) in carried.chunks(4).enumerate() {
            let bf = self.b_frag(e, &k0, nb * 8, b);
            next.extend(mma::mma(e, TF32, &af, &bf, c));
        }
        let out = e.end_for(&next, lp);
        *acc = out.chunks(4).map(|c| c.to_vec()).collect();
    }

    /// Opens `scf.if` for the warps that own a 16-row tile `mt` of `tiles`: warp w owns
    /// tiles w, w + 4, ...; returns the tile's first row. Close with `e.end()`.
    fn own_tile(&self, e: &mut Emitter, round: usize, tiles: usize) -> Val {
        let base = e.index((round * super::WARPS) as i64);
        let mt = e.add(&base, &self.warp);
        let n = e.index(tiles as i64);
        let inside = e.cmp(Cmp::Lt, &mt, &n);
        e.if_then(&inside);
        let sixteen = e.index(16);
        e.mul(&mt, &sixteen)
    }

    /// The decay from the chunk's start to step `t` (inclusive) at row `r`.
    fn to_step(&self, e: &mut Emitter, s: &StateArrs, t: &Val, r: &Val) -> Val {
        let r = if s.per_row { r.clone() } else { e.index(0) };
        self.ld(e, &s.to_step, t, &r)
    }

    fn to_end(&self, e: &mut Emitter, s: &StateArrs, t: &Val, r: &Val) -> Val {
        let r = if s.per_row { r.clone() } else { e.index(0) };
        self.ld(e, &s.to_end, t, &r)
    }

    /// The weights of every read-out against every term of its state:
    /// `W[t][s] = scale_s Σ_r x_t[r] D[t, s][r] l_s[r]` for s <= t, 0 otherwise.
    pub(super) fn scores(&self, e: &mut Emitter) {
        for ro in &self.arrays.readouts {
            let s = &self.arrays.states[ro.state];
            for (term, w) in s.terms.iter().zip(&ro.weights) {
                if s.per_row {
                    self.per_row_scores(e, s, &ro.query, &term.left, &term.scale, w);
                } else {
                    self.scalar_scores(e, s, &ro.query, &term.left, &term.scale, w);
                }
            }
        }
    }

    /// A scalar decay: `X Lᵀ` on the tensor cores, then weighted by `D[t][s] scale_s` and
    /// masked to s <= t as it is stored.
    fn scalar_scores(
        &self,
        e: &mut Emitter,
        s: &StateArrs,
        query: &Arr,
        left: &Arr,
        scale: &Arr,
        w: &Arr,
    ) {
        let c = self.c;
        let Some(between) = &s.between else { return };
        let row0 = self.own_tile(e, 0, c / 16);
        let mut acc = Self::zeros(e, c / 8);
        self.accumulate(
            e,
            &mut acc,
            &row0,
            s.padded / 8,
            &mut |e, r, k| self.ld(e, query, r, k),
            // B[k][n] = L[n][k]: the left vector of step n, row k.
            &mut |e, k, n| self.ld(e, left, n, k),
        );
        let zero_i = e.index(0);
        let zero = e.f32(0.0);
        for (nb, regs) in acc.iter().enumerate() {
            for (q, v) in regs.iter().enumerate() {
                let (t, sc) = accumulator_at(e, &row0, &self.g, &self.t, nb, q);
                let d = self.ld(e, between, &t, &sc);
                let k = self.ld(e, scale, &sc, &zero_i);
                let x = e.mul(v, &d);
                let x = e.mul(&x, &k);
                let keep = e.cmp(Cmp::Le, &sc, &t);
                let x = e.select(&keep, &x, &zero);
                self.st(e, w, &t, &sc, &x);
            }
        }
        e.end();
    }

    /// A per-row decay: warp w takes the steps t = w, w + 4, ...; for each, s runs down from t
    /// with the decay `Π_{u=s+1..t} a_u[r]` kept per row in the lanes' registers (lane l has
    /// rows l, l + 32, ...), each score summed over the lanes by shuffles. The weights above
    /// the diagonal were zeroed with the chunk's pieces.
    fn per_row_scores(
        &self,
        e: &mut Emitter,
        s: &StateArrs,
        query: &Arr,
        left: &Arr,
        scale: &Arr,
        w: &Arr,
    ) {
        let per_lane = s.padded / 32;
        let hi = e.index(self.c as i64);
        let step = e.index(super::WARPS as i64);
        let t = e.for_loop(&self.warp, &hi, &step);
        let rows: Vec<Val> = (0..per_lane)
            .map(|q| {
                let o = e.index(32 * q as i64);
                e.add(&self.lane, &o)
            })
            .collect();
        let xs: Vec<Val> = rows.iter().map(|r| self.ld(e, query, &t, r)).collect();
        let one = e.f32(1.0);
        let zero_i = e.index(0);
        let step1 = e.index(1);
        let upto = e.add(&t, &step1);
        let (i, run, lp) = e.for_iter(&zero_i, &upto, &step1, &vec![one; per_lane]);
        let sv = e.sub(&t, &i);
        let mut part = e.f32(0.0);
        for ((x, r), d) in xs.iter().zip(&rows).zip(&run) {
            let l = self.ld(e, left, &sv, r);
            let xd = e.mul(x, d);
            part = PtxMath.fma(e, &xd, &l, &part);
        }
        for m in [16, 8, 4, 2, 1] {
            let other = mma::shuffle_xor(e, &part, m);
            part = e.add(&part, &other);
        }
        let first = e.cmp(Cmp::Eq, &self.lane, &zero_i);
        e.if_then(&first);
        let k = self.ld(e, scale, &sv, &zero_i);
        let x = e.mul(&part, &k);
        self.st(e, w, &t, &sv, &x);
        e.end();
        let next: Vec<Val> = run
            .iter()
            .zip(&rows)
            .map(|(d, r)| {
                let a = self.ld(e, &s.decay, &sv, r);
                e.mul(d, &a)
            })
            .collect();
        e.end_for(&next, lp);
        e.end();
    }

    /// Every read-out of the chunk: `Σ_terms W R + (X ⊙ decay since the chunk began) S` for a
    /// matrix state on the tensor cores (warp w the steps 16w..16w + 15), the same sums with no
    /// right vectors for a vector state on the CUDA cores (a thread per step).
    pub(super) fn readouts(&self, e: &mut Emitter) {
        let c = self.c;
        for ro in &self.arrays.readouts {
            let s = &self.arrays.states[ro.state];
            if !s.matrix {
                let vector = |e: &mut Emitter, t: &Val| {
                    let zero = e.index(0);
                    let one = e.index(1);
                    let rows = e.index(s.padded as i64);
                    let init = e.f32(0.0);
                    let (r, acc, lp) = e.for_iter(&zero, &rows, &one, &[init]);
                    let x = self.ld(e, &ro.query, t, &r);
                    let d = self.to_step(e, s, t, &r);
                    let z = self.ld(e, &s.state, &zero, &r);
                    let xd = e.mul(&x, &d);
                    let next = PtxMath.fma(e, &xd, &z, &acc[0]);
                    let mut y = e.end_for(&[next], lp).remove(0);
                    for w in &ro.weights {
                        let hi = e.index(c as i64);
                        let (sv, acc, lp) = e.for_iter(&zero, &hi, &one, &[y]);
                        let x = self.ld(e, w, t, &sv);
                        let next = e.add(&acc[0], &x);
                        y = e.end_for(&[next], lp).remove(0);
                    }
                    self.st(e, &ro.out, t, &zero, &y);
                };
                self.shared_out(e, c, vector);
                continue;
            }
            let row0 = self.own_tile(e, 0, c / 16);
            let mut acc = Self::zeros(e, self.np / 8);
            for (term, w) in s.terms.iter().zip(&ro.weights) {
                let Some(right) = &term.right else { continue };
                self.accumulate(
                    e,
                    &mut acc,
                    &row0,
                    c / 8,
                    &mut |e, t, sv| self.ld(e, w, t, sv),
                    &mut |e, sv, n| self.ld(e, right, sv, n),
                );
            }
            self.accumulate(
                e,
                &mut acc,
                &row0,
                s.padded / 8,
                &mut |e, t, r| {
                    let x = self.ld(e, &ro.query, t, r);
                    let d = self.to_step(e, s, t, r);
                    e.mul(&x, &d)
                },
                &mut |e, r, n| self.ld(e, &s.state, r, n),
            );
            for (nb, regs) in acc.iter().enumerate() {
                for (q, v) in regs.iter().enumerate() {
                    let (t, n) = accumulator_at(e, &row0, &self.g, &self.t, nb, q);
                    self.st(e, &ro.out, &t, &n, v);
                }
            }
            e.end();
        }
    }

    /// Every state passed to the next chunk: `total decay ⊙ S + Σ_terms (L ⊙ scale ⊙ decay to
    /// the end)ᵀ R`, a matrix state on the tensor cores (warp w its row tiles w, w + 4, ...,
    /// each element read and written by the thread that holds it), a vector state on the CUDA
    /// cores (a thread per row).
    pub(super) fn pass_states(&self, e: &mut Emitter) {
        let c = self.c;
        for s in &self.arrays.states {
            let last = e.index(c as i64 - 1);
            if !s.matrix {
                let vector = |e: &mut Emitter, r: &Val| {
                    let zero = e.index(0);
                    let one = e.index(1);
                    let total = self.to_step(e, s, &last, r);
                    let z = self.ld(e, &s.state, &zero, r);
                    let mut v = e.mul(&total, &z);
                    for term in &s.terms {
                        let hi = e.index(c as i64);
                        let (sv, acc, lp) = e.for_iter(&zero, &hi, &one, &[v]);
                        let l = self.ld(e, &term.left, &sv, r);
                        let k = self.ld(e, &term.scale, &sv, &zero);
                        let d = self.to_end(e, s, &sv, r);
                        let x = e.mul(&l, &k);
                        let next = PtxMath.fma(e, &x, &d, &acc[0]);
                        v = e.end_for(&[next], lp).remove(0);
                    }
                    self.st(e, &s.state, &zero, r, &v);
                };
                self.shared_out(e, s.padded, vector);
                continue;
            }
            let tiles = s.padded / 16;
            for round in 0..tiles.div_ceil(super::WARPS) {
                let row0 = self.own_tile(e, round, tiles);
                let mut acc = Vec::new();
                for nb in 0..self.np / 8 {
                    let mut regs = Vec::new();
                    for q in 0..4 {
                        let (r, n) = accumulator_at(e, &row0, &self.g, &self.t, nb, q);
                        let total = self.to_step(e, s, &last, &r);
                        let x = self.ld(e, &s.state, &r, &n);
                        regs.push(e.mul(&total, &x));
                    }
                    acc.push(regs);
                }
                for term in &s.terms {
                    let Some(right) = &term.right else { continue };
                    let zero = e.index(0);
                    self.accumulate(
                        e,
                        &mut acc,
                        &row0,
                        c / 8,
                        // A[r][s] = L[s][r] scale_s (decay from s to the end)[r].
                        &mut |e, r, sv| {
                            let l = self.ld(e, &term.left, sv, r);
                            let k = self.ld(e, &term.scale, sv, &zero);
                            let d = self.to_end(e, s, sv, r);
                            let x = e.mul(&l, &k);
                            e.mul(&x, &d)
                        },
                        &mut |e, sv, n| self.ld(e, right, sv, n),
                    );
                }
                for (nb, regs) in acc.iter().enumerate() {
                    for (q, v) in regs.iter().enumerate() {
                        let (r, n) = accumulator_at(e, &row0, &self.g, &self.t, nb, q);
                        self.st(e, &s.state, &r, &n, v);
                    }
                }
                e.end();
            }
        }
    }
}
