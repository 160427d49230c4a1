//! Reductions along one row of a key tile in explicit vectors: a running maximum or sum over
//! the keys of a query row reads `lanes` keys at a time, drops the lanes past the tile's keys or
//! removed by the mask, and folds the vector to a scalar once per row. LLVM does not vectorise
//! a scalar `maximumf` fold (NaN-propagating maxima have no vector reduction it will form), and
//! it fully unrolls short scalar sums before its vectoriser sees them.

use super::{Class, Gen};
use crate::CodegenError;
use attnc_ir::graph::{ReduceKind, ValueRef};
use petgraph::stable_graph::NodeIndex;

/// One row of pair values: a buffer and the offset of the row's first key.
pub(super) struct Row<'s> {
    pub buf: &'s str,
    pub start: &'s str,
}

impl Gen<'_> {
    /// Whether rows of `bk` keys split into whole vectors.
    pub(super) fn vector_rows(&self) -> bool {
        self.blocks.lanes > 1 && self.bk.is_multiple_of(self.blocks.lanes)
    }

    /// Reduces row `ii` over the keys of the tile: the values of `row` (or 1 for every counted
    /// key when `row` is `None`, so a maximum says whether any key counts), counting keys below
    /// `cols` that the mask keeps (every key on a tile the rule found fully kept, `full`).
    /// Returns the identity when no key counts.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reduce_row(
        &mut self,
        kind: ReduceKind,
        row: Option<Row>,
        mask: Option<NodeIndex>,
        ii: &str,
        cols: &str,
        full: &str,
    ) -> Result<String, CodegenError> {
        let lanes = self.blocks.lanes;
        let vf = format!("vector<{lanes}xf32>");
        let vi = format!("vector<{lanes}xi32>");
        let vb = format!("vector<{lanes}xi1>");
        let identity = self.body.f32(kind.identity());
        let identity = self
            .body
            .op(&format!("vector.broadcast {identity} : f32 to {vf}"));
        let iota: Vec<String> = (0..lanes).map(|l| l.to_string()).collect();
        let iota = self.body.op(&format!(
            "arith.constant dense<[{}]> : {vi}",
            iota.join(", ")
        ));
        let cols_i = self
            .body
            .op(&format!("arith.index_cast {cols} : index to i32"));
        let cols_v = self
            .body
            .op(&format!("vector.broadcast {cols_i} : i32 to {vi}"));
        let full_v = self
            .body
            .op(&format!("vector.broadcast {full} : i1 to {vb}"));
        let c0 = self.c0.clone();
        let bk = self.body.index(self.bk as i64);
        let step = self.body.index(lanes as i64);
        let (jb, acc, result) =
            self.body
                .open_carry(&c0, &bk, &step, std::slice::from_ref(&identity), &vf);
        let jb_i = self
            .body
            .op(&format!("arith.index_cast {jb} : index to i32"));
        let jb_v = self
            .body
            .op(&format!("vector.broadcast {jb_i} : i32 to {vi}"));
        let key = self.body.op(&format!("arith.addi {iota}, {jb_v} : {vi}"));
        let mut counted = self
            .body
            .op(&format!("arith.cmpi slt, {key}, {cols_v} : {vi}"));
        if let Some(m) = mask {
            let keep = self.mask_vector(m, ii, &jb)?;
            let zero = self.body.vzero(lanes);
            let kept = self
                .body
                .op(&format!("arith.cmpf une, {keep}, {zero} : {vf}"));
            let kept = self.body.op(&format!("arith.ori {kept}, {full_v} : {vb}"));
            counted = self
                .body
                .op(&format!("arith.andi {counted}, {kept} : {vb}"));
        }
        let x = match &row {
            Some(r) => {
                let at = self.body.bini("addi", r.start, &jb);
                self.body.vload(r.buf, &at, lanes)
            }
            None => {
                let one = self.body.f32(1.0);
                self.body
                    .op(&format!("vector.broadcast {one} : f32 to {vf}"))
            }
        };
        let x = self.body.op(&format!(
            "arith.select {counted}, {x}, {identity} : {vb}, {vf}"
        ));
        let next = match kind {
            ReduceKind::Sum => self.body.op(&format!(
                "arith.addf {}, {x} fastmath<reassoc,contract> : {vf}",
                acc[0]
            )),
            ReduceKind::Max => self
                .body
                .op(&format!("arith.maximumf {}, {x} : {vf}", acc[0])),
            ReduceKind::Min => self
                .body
                .op(&format!("arith.minimumf {}, {x} : {vf}", acc[0])),
        };
        self.body.close_carry(&[next], &vf);
        let combining = match kind {
            ReduceKind::Sum => "add",
            ReduceKind::Max => "maximumf",
            ReduceKind::Min => "minimumf",
        };
        // Reassociable: a tree of shuffles and adds instead of sixteen adds in sequence.
        Ok(self.body.op(&format!(
            "vector.reduction <{combining}>, {} fastmath<reassoc> : {vf} into f32",
            result[0]
        )))
    }

    /// The mask's values for keys `jb..jb + lanes` of row `ii` as a vector.
    fn mask_vector(&mut self, m: NodeIndex, ii: &str, jb: &str) -> Result<String, CodegenError> {
        let lanes = self.blocks.lanes;
        let buf = self.buffers[&m].0.clone();
        Ok(match self.classes[&m] {
            Class::Pair => {
                let bk = self.body.index(self.bk as i64);
                let at = self.body.row_offset(ii, &bk, jb);
                self.body.vload(&buf, &at, lanes)
            }
            Class::Key => self.body.vload(&buf, jb, lanes),
            Class::Query | Class::PerHead => {
                let at = crate::parallel::At {
                    ii: Some(ii.to_string()),
                    ..Default::default()
                };
                let x = self.load_value(ValueRef { node: m, result: 0 }, &at)?;
                self.body.vbroadcast(&x, lanes)
            }
        })
    }
}
