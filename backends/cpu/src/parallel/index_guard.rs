//! Computed indices (`v[b, h, j + 1]`, `table[h, bucket]`) are checked where the kernel reads
//! them: an index outside its axis is replaced by 0, so nothing is read outside the tensor, and
//! the first such read of the work item is recorded in its status buffer, from which the host
//! fails the run with the reference interpreter's message.

use super::{At, Gen};
use crate::CodegenError;
use attnc_ir::types::FrameIndex;
use petgraph::stable_graph::NodeIndex;

/// Slots of a work item's status buffer: a flag, the load's node, the axis, the index, then
/// the point (b, h, i, j, t; -1 where the read has no such index).
pub const STATUS_LEN: usize = 9;

impl Gen<'_> {
    /// The status buffer's parameter, reinterpreted once in the prologue.
    pub(crate) fn bind_status(&mut self) {
        let n = self.body.index(STATUS_LEN as i64);
        self.status = Some(self.body.op(&format!(
            "memref.reinterpret_cast %status to offset: [0], sizes: [{n}], strides: [1] : memref<i32> to memref<?xi32>"
        )));
    }

    /// The f32 index `x` into axis `axis` (of extent `size`, an index) of the input read by
    /// `load`, as an index that is always in range; out of range, it records the read.
    pub(crate) fn guarded_index(
        &mut self,
        load: NodeIndex,
        axis: usize,
        x: &str,
        size: &str,
        at: &At,
    ) -> Result<String, CodegenError> {
        let f = self.body.math("floor", x);
        let size_w = self
            .body
            .op(&format!("arith.index_cast {size} : index to i64"));
        let size_f = self.body.op(&format!("arith.sitofp {size_w} : i64 to f32"));
        let zero = self.body.f32(0.0);
        let below = self.body.op(&format!("arith.cmpf olt, {f}, {zero} : f32"));
        // `uge` also holds for NaN.
        let above = self
            .body
            .op(&format!("arith.cmpf uge, {f}, {size_f} : f32"));
        let bad = self.body.op(&format!("arith.ori {below}, {above} : i1"));
        if let Some(status) = self.status.clone() {
            self.body.open_if(&bad);
            let c0 = self.c0.clone();
            let s0 = self
                .body
                .op(&format!("memref.load {status}[{c0}] : memref<?xi32>"));
            let z = self.body.op("arith.constant 0 : i32");
            let first = self.body.op(&format!("arith.cmpi eq, {s0}, {z} : i32"));
            self.body.open_if(&first);
            let lo = self.body.f32(-2.0e9);
            let hi = self.body.f32(2.0e9);
            let clamped = self.body.op(&format!("arith.maximumf {f}, {lo} : f32"));
            let clamped = self
                .body
                .op(&format!("arith.minimumf {clamped}, {hi} : f32"));
            let coord = self
                .body
                .op(&format!("arith.fptosi {clamped} : f32 to i32"));
            let mut slots = vec![
                self.body.op("arith.constant 1 : i32"),
                self.body
                    .op(&format!("arith.constant {} : i32", load.index())),
                self.body.op(&format!("arith.constant {axis} : i32")),
                coord,
            ];
            for fi in [
                FrameIndex::B,
                FrameIndex::H,
                FrameIndex::I,
                FrameIndex::J,
                FrameIndex::T,
            ] {
                let present = match fi {
                    FrameIndex::I => at.ii.is_some(),
                    FrameIndex::J => at.jj.is_some(),
                    FrameIndex::T => self.t.is_some(),
                    _ => true,
                };
                slots.push(if present {
                    let v = self.frame_index(fi, at)?;
                    self.body
                        .op(&format!("arith.index_cast {v} : index to i32"))
                } else {
                    self.body.op("arith.constant -1 : i32")
                });
            }
            for (k, v) in slots.iter().enumerate() {
                let at = self.body.index(k as i64);
                self.body
                    .line(&format!("memref.store {v}, {status}[{at}] : memref<?xi32>"));
            }
            self.body.close();
            self.body.close();
        }
        let safe = self
            .body
            .op(&format!("arith.select {bad}, {zero}, {f} : f32"));
        let w = self.body.op(&format!("arith.fptosi {safe} : f32 to i64"));
        Ok(self
            .body
            .op(&format!("arith.index_cast {w} : i64 to index")))
    }
}
