//! Register-blocked micro-kernels for the two contractions of a key tile, in MLIR's vector
//! dialect: the score (query rows x keys, summed over the query/key features) and the
//! aggregation (query rows x value features, summed over the keys). Each step keeps a block of
//! `rows x vectors` accumulators in registers, loads `vectors` vectors of one operand and
//! broadcasts `rows` scalars of the other, so a step issues `rows x vectors` FMAs for
//! `rows + vectors` loads (a dot product per pair needs a load per FMA and a horizontal sum).
//!
//! Both run over whole blocks: the last block of rows may reach past the tile's valid rows into
//! padding, which [`crate::mlir_text::Body::alloca_zeroed`] keeps finite and nothing reads back.

use super::{Class, Gen, class_of};
use crate::CodegenError;
use attnc_ir::graph::{Op, ValueRef};
use attnc_ir::types::Feature;
use attnc_passes::fusion::ParallelKernel;
use attnc_passes::tiling::cost_model::RegisterBlock;
use petgraph::stable_graph::NodeIndex;
use std::collections::BTreeSet;

/// A row-major matrix in a work item's buffer: the buffer and its row length.
struct Matrix<'s> {
    buf: &'s str,
    stride: &'s str,
}

impl<'s> Matrix<'s> {
    fn new(buf: &'s str, stride: &'s str) -> Self {
        Matrix { buf, stride }
    }
}

/// `c[i, n] (+)= sum_k a[i, k] b[k, n]` for `i < rows` (rounded up to whole blocks), `n < cols`
/// (whole blocks) and `k < depth`; `accumulate` adds to `c` instead of overwriting it.
struct Product<'s> {
    a: Matrix<'s>,
    b: Matrix<'s>,
    c: Matrix<'s>,
    rows: &'s str,
    cols: &'s str,
    depth: &'s str,
    accumulate: bool,
}

impl Gen<'_> {
    /// The key-side operands of the kernel's scores that a register block can read: vectors
    /// computed per key tile, stored feature-major so a vector load takes consecutive keys.
    pub(super) fn score_key_operands(&self, plan: &ParallelKernel) -> BTreeSet<NodeIndex> {
        let vector_of = |n: NodeIndex| {
            self.value_type(n)
                .filter(|t| matches!(t.feature, Feature::Vector(_)))
                .map(|t| class_of(t.indices))
        };
        plan.pair
            .iter()
            .filter(|n| matches!(self.graph.node(**n).op, Op::Score))
            .filter_map(|&n| {
                let ops = self.graph.operands(n);
                let (q, k) = (ops.first()?.0.node, ops.get(1)?.0.node);
                let ok = vector_of(q) == Some(Class::Query)
                    && plan.query_side.contains(&q)
                    && vector_of(k) == Some(Class::Key)
                    && plan.key_side.contains(&k);
                ok.then_some(k)
            })
            .collect()
    }

    /// A block-rounded row count: `rows` rounded up to a multiple of `block`.
    fn padded_rows(&mut self, rows: &str, block: usize) -> String {
        let r = self.body.index(block as i64);
        let r1 = self.body.index(block as i64 - 1);
        let up = self.body.bini("addi", rows, &r1);
        let n = self.body.bini("divui", &up, &r);
        self.body.bini("muli", &n, &r)
    }

    /// The score `s[ii, jj] = sum_f q[ii, f] k[jj, f]` of a whole tile by register blocks, if
    /// the tiling chose a block and the key operand is stored feature-major; returns whether it
    /// wrote the score. Columns past the tile's keys get scores of padding, never read.
    pub(super) fn score_tile(&mut self, n: NodeIndex, rows: &str) -> Result<bool, CodegenError> {
        let Some(block) = self.blocks.score else {
            return Ok(false);
        };
        let ops: Vec<ValueRef> = self.graph.operands(n).iter().map(|(v, _)| *v).collect();
        let (q, k) = (ops[0].node, ops[1].node);
        if !self.feature_major.contains(&k) || !self.bk.is_multiple_of(block.width()) {
            return Ok(false);
        }
        let (qbuf, len) = self.buffers[&q].clone();
        let kbuf = self.buffers[&k].0.clone();
        let sbuf = self.buffers[&n].0.clone();
        let bk = self.body.index(self.bk as i64);
        let product = Product {
            a: Matrix::new(&qbuf, &len),
            b: Matrix::new(&kbuf, &bk),
            c: Matrix::new(&sbuf, &bk),
            rows,
            cols: &bk,
            depth: &len,
            accumulate: false,
        };
        self.blocked_product(block, &product);
        Ok(true)
    }

    /// `acc[ii, :] += sum_jj weights[ii, jj] * row[jj, :]` over a whole tile by register blocks
    /// (weights row-major, `bq x bk`), if the tiling chose a block, the rows are stored
    /// key-major and their length is a known whole number of blocks; returns whether it did.
    pub(super) fn aggregate_tile(
        &mut self,
        acc: &str,
        weights: &str,
        row: ValueRef,
        rows: &str,
        cols: &str,
    ) -> Result<bool, CodegenError> {
        let Some(block) = self.blocks.aggregate else {
            return Ok(false);
        };
        let row_major = self.classes.get(&row.node) == Some(&Class::Key)
            && !self.feature_major.contains(&row.node);
        let Some(len) = self.known_len(row.node) else {
            return Ok(false);
        };
        if !row_major || len % block.width() as i64 != 0 {
            return Ok(false);
        }
        let (vbuf, f) = self.buffers[&row.node].clone();
        let bk = self.body.index(self.bk as i64);
        let product = Product {
            a: Matrix::new(weights, &bk),
            b: Matrix::new(&vbuf, &f),
            c: Matrix::new(acc, &f),
            rows,
            cols: &f,
            depth: cols,
            accumulate: true,
        };
        self.blocked_product(block, &product);
        Ok(true)
    }

    /// `c[i, n] (+)= sum_k a[i, k] b[k, n]` by register blocks: per block of `block.rows` rows
    /// and `block.width()` columns, the accumulators stay in registers over the whole depth;
    /// each step loads `block.vectors` vectors of `b` and broadcasts `block.rows` scalars of `a`.
    fn blocked_product(&mut self, block: RegisterBlock, p: &Product) {
        let lanes = block.lanes;
        let c0 = self.c0.clone();
        let all_rows = self.padded_rows(p.rows, block.rows);
        let row_step = self.body.index(block.rows as i64);
        let col_step = self.body.index(block.width() as i64);
        let one = self.body.index(1);
        let ib = self.body.open_for_step(&c0, &all_rows, &row_step);
        let nb = self.body.open_for_step(&c0, p.cols, &col_step);
        let block_rows: Vec<String> = (0..block.rows)
            .map(|r| {
                let dr = self.body.index(r as i64);
                self.body.bini("addi", &ib, &dr)
            })
            .collect();
        let mut places = Vec::new();
        for row in &block_rows {
            let start = self.body.row_offset(row, p.c.stride, &nb);
            places.extend(self.vector_places(&start, block));
        }
        let inits: Vec<String> = if p.accumulate {
            places
                .iter()
                .map(|at| self.body.vload(p.c.buf, at, lanes))
                .collect()
        } else {
            let zero = self.body.vzero(lanes);
            vec![zero; places.len()]
        };
        let ty = format!("vector<{lanes}xf32>");
        let (k, carried, sums) = self.body.open_carry(&c0, p.depth, &one, &inits, &ty);
        let start = self.body.row_offset(&k, p.b.stride, &nb);
        let b_vectors: Vec<String> = self
            .vector_places(&start, block)
            .iter()
            .map(|at| self.body.vload(p.b.buf, at, lanes))
            .collect();
        let mut next = Vec::new();
        for (r, row) in block_rows.iter().enumerate() {
            let at = self.body.row_offset(row, p.a.stride, &k);
            let x = self.body.load(p.a.buf, &at);
            let x = self.body.vbroadcast(&x, lanes);
            for (c, b) in b_vectors.iter().enumerate() {
                next.push(
                    self.body
                        .vfma(&x, b, &carried[r * block.vectors + c], lanes),
                );
            }
        }
        self.body.close_carry(&next, &ty);
        for (sum, at) in sums.iter().zip(&places) {
            self.body.vstore(sum, p.c.buf, at, lanes);
        }
        self.body.close();
        self.body.close();
    }

    /// The offsets of a block's vectors along a row, from `start`.
    fn vector_places(&mut self, start: &str, block: RegisterBlock) -> Vec<String> {
        (0..block.vectors)
            .map(|c| {
                let off = self.body.index((c * block.lanes) as i64);
                self.body.bini("addi", start, &off)
            })
            .collect()
    }

    /// Whether a feature-major key-side value can be transposed by square blocks of one
    /// vector's lanes: its length is a known whole number of vectors, as is the key tile.
    pub(super) fn transposable(&self, n: NodeIndex) -> bool {
        let Some(block) = self.blocks.score else {
            return false;
        };
        let lanes = block.lanes as i64;
        self.known_len(n).is_some_and(|l| l % lanes == 0) && self.bk as i64 % lanes == 0
    }

    /// `to[f * bk + jj] = from[jj * len + f]` for the whole tile, by `lanes x lanes` blocks:
    /// `lanes` row loads, one `vector.transpose` (shuffles in registers) and `lanes` stores,
    /// instead of a strided scalar store per element.
    pub(super) fn transpose_tile(&mut self, from: &str, to: &str, n: NodeIndex) {
        let Some(block) = self.blocks.score else {
            return;
        };
        let lanes = block.lanes;
        let f = self.buffers[&n].1.clone();
        let c0 = self.c0.clone();
        let bk = self.body.index(self.bk as i64);
        let step = self.body.index(lanes as i64);
        let jb = self.body.open_for_step(&c0, &bk, &step);
        let fb = self.body.open_for_step(&c0, &f, &step);
        let square = format!("vector<{lanes}x{lanes}xf32>");
        let mut m = self
            .body
            .op(&format!("arith.constant dense<0.0> : {square}"));
        for r in 0..lanes {
            let dr = self.body.index(r as i64);
            let row = self.body.bini("addi", &jb, &dr);
            let at = self.body.row_offset(&row, &f, &fb);
            let v = self.body.vload(from, &at, lanes);
            m = self.body.op(&format!(
                "vector.insert {v}, {m} [{r}] : vector<{lanes}xf32> into {square}"
            ));
        }
        let t = self.body.op(&format!(
            "vector.transpose {m}, [1, 0] : {square} to {square}"
        ));
        for r in 0..lanes {
            let column = self.body.op(&format!(
                "vector.extract {t}[{r}] : vector<{lanes}xf32> from {square}"
            ));
            let dr = self.body.index(r as i64);
            let feature = self.body.bini("addi", &fb, &dr);
            let at = self.body.row_offset(&feature, &bk, &jb);
            self.body.vstore(&column, to, &at, lanes);
        }
        self.body.close();
        self.body.close();
    }

    /// The feature length of a node's values when the kernel is specialised for it.
    fn known_len(&self, n: NodeIndex) -> Option<i64> {
        match self.value_type(n)?.feature {
            Feature::Vector(d) => d.eval(&self.constants).ok(),
            _ => None,
        }
    }
}
