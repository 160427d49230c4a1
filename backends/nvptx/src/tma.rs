//! Key tiles by bulk tensor copy (TMA, sm_90): one thread moves a whole tile into shared memory
//! and a shared-memory barrier counts its bytes in, instead of every thread issuing 16-byte
//! `cp.async` copies and computing their addresses.
//!
//! A tile qualifies when it is a plain rectangle of an input: a key-side row load in core
//! matrices (the `wgmma` operands), whose index on exactly one axis is the key position `j`
//! (that axis as long as the kernel's key range, so that rows past the end read as the zeros a
//! tensor map gives outside the tensor), whose other indices do not move with the key, and whose
//! feature axis is the tensor's last. Each 8-column slab of the tile is one copy of an `8 x bk`
//! box, which writes exactly the slab's `bk` runs of 16 bytes (`mma::Arrangement`). A kernel
//! uses TMA for all of its prefetched tiles or for none, so one barrier per stage counts every
//! copy of a stage.
//!
//! The tensor maps are data in the manifest (`attnc_kernel_abi::TensorMap`): the runtime
//! encodes them for the call's tensors and passes them in one buffer, the kernel's last
//! parameter.

use crate::classify::{Home, Layout};
use attnc_ir::graph::{Graph, LoadIndex, Op, PortType};
use attnc_ir::types::FrameIndex;
use attnc_kernel_abi::{TENSOR_MAP_BYTES, TensorMap};
use attnc_lower::{Emitter, Ty, Val};
use petgraph::stable_graph::NodeIndex;

/// One key tile copied by TMA.
#[derive(Clone, Debug)]
pub(crate) struct TileCopy {
    /// The prefetched load and its shared buffer.
    pub node: NodeIndex,
    pub buf: usize,
    /// Its tensor map's position in the maps buffer.
    pub map: usize,
    /// 8-column slabs per tile (the buffer's stride over 8): one copy each.
    pub slabs: usize,
}

/// The kernel's TMA plan: the copies, their tensor maps, and the barriers' buffer.
#[derive(Clone, Debug)]
pub(crate) struct Tma {
    pub copies: Vec<TileCopy>,
    pub maps: Vec<TensorMap>,
    /// The shared buffer of the stages' barriers (one 8-byte word each).
    pub barriers: usize,
    /// Bytes one stage receives (every box whole, zeros outside the tensor included).
    pub stage_bytes: usize,
}

/// The kernel parameter that holds the tensor maps.
pub(crate) const PARAM: &str = "%tmaps: memref<i64>";

/// The TMA copies and tensor maps for a layout whose prefetched tiles all qualify, with `bk`
/// keys per tile; `None` when any does not (the kernel then copies with `cp.async`).
pub(crate) fn plan(
    graph: &Graph,
    layout: &Layout,
    bk: usize,
) -> Option<(Vec<TileCopy>, Vec<TensorMap>)> {
    if layout.prefetched.is_empty() || bk > 256 {
        return None;
    }
    let key_extent = graph.extents.get(&FrameIndex::J)?;
    let mut copies = Vec::new();
    let mut maps = Vec::new();
    for &n in &layout.prefetched {
        let Some(Home::Key(buf)) = layout.home(n) else {
            return None;
        };
        let s = &layout.shared[buf];
        if !s.cores || s.elem.bits() != 16 || layout.operand.get(&n) != Some(&buf) {
            return None;
        }
        let Op::Load { indices } = &graph.node(n).op else {
            return None;
        };
        let operands = graph.operands(n);
        let input = operands.first()?.0.node;
        let Op::Input { name, ty, .. } = &graph.node(input).op else {
            return None;
        };
        // Every axis indexed, plus the feature axis last; at most 5 axes for a tensor map.
        if indices.len() + 1 != ty.dims.len() || ty.dims.len() > 5 {
            return None;
        }
        let mut key_axis = None;
        for (axis, ix) in indices.iter().enumerate() {
            match ix {
                LoadIndex::Frame(FrameIndex::J) if key_axis.is_none() => key_axis = Some(axis),
                LoadIndex::Frame(FrameIndex::B | FrameIndex::H) => {}
                // A computed index (a GQA head group, say) that stays put along the tile.
                LoadIndex::Operand(k) => {
                    let value = operands.get(*k as usize)?.0;
                    let Some(PortType::Value(t)) = graph.node(value.node).results.first() else {
                        return None;
                    };
                    if t.indices.contains(FrameIndex::J) || t.indices.contains(FrameIndex::I) {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        let key_axis = key_axis?;
        if &ty.dims[key_axis] != key_extent || !s.stride.is_multiple_of(8) {
            return None;
        }
        let mut boxed = vec![1u32; ty.dims.len()];
        boxed[key_axis] = bk as u32;
        *boxed.last_mut()? = 8;
        copies.push(TileCopy {
            node: n,
            buf,
            map: maps.len(),
            slabs: s.stride / 8,
        });
        maps.push(TensorMap {
            tensor: name.clone(),
            boxed,
        });
    }
    Some((copies, maps))
}

/// The 32-bit shared-memory address of element `at` of the shared view `view`.
pub(crate) fn shared_address(e: &mut Emitter, view: &Val, at: &Val) -> Val {
    let base = e.op(
        Ty::Index,
        &format!(
            "memref.extract_aligned_pointer_as_index {view} : {} -> index",
            view.ty
        ),
    );
    let bytes = e.index((view.ty.element().bits() / 8) as i64);
    let off = e.mul(at, &bytes);
    let addr = e.add(&base, &off);
    e.cast(&addr, &Ty::I32)
}

/// The generic address of tensor map `k` in the maps buffer.
pub(crate) fn map_address(e: &mut Emitter, maps: &Val, k: usize) -> Val {
    let base = e.op(
        Ty::Index,
        &format!(
            "memref.extract_aligned_pointer_as_index {maps} : {} -> index",
            maps.ty
        ),
    );
    let off = e.index((k * TENSOR_MAP_BYTES) as i64);
    let addr = e.add(&base, &off);
    e.cast(&addr, &Ty::I64)
}

fn asm(e: &mut Emitter, text: &str, constraints: &str, args: &[&Val]) {
    let list: Vec<String> = args.iter().map(|v| v.to_string()).collect();
    let types: Vec<String> = args.iter().map(|v| v.ty.to_string()).collect();
    e.line(&format!(
        "llvm.inline_asm has_side_effects asm_dialect = att \"{text}\", \"{constraints}\" {} : ({}) -> ()",
        list.join(", "),
        types.join(", ")
    ));
}

/// Initialises the barrier at `bar` for one arriving thread (the issuing one).
pub(crate) fn init_barrier(e: &mut Emitter, bar: &Val) {
    asm(e, "mbarrier.init.shared::cta.b64 [$0], 1;", "r", &[bar]);
}

/// Makes initialised barriers visible to the copy engine.
pub(crate) fn fence_barrier_init(e: &mut Emitter) {
    asm(e, "fence.mbarrier_init.release.cluster;", "", &[]);
}

/// The issuing thread's arrival on `bar`, announcing `bytes` to come.
pub(crate) fn arrive_expect(e: &mut Emitter, bar: &Val, bytes: usize) {
    let b = e.i32(bytes as i64);
    asm(
        e,
        "mbarrier.arrive.expect_tx.shared::cta.b64 _, [$0], $1;",
        "r,r",
        &[bar, &b],
    );
}

/// One bulk tensor copy of the box at `coords` (innermost axis first, i32) of the map at
/// `map` into shared memory at `dst`, completing on `bar`.
pub(crate) fn copy_box(e: &mut Emitter, dst: &Val, map: &Val, coords: &[Val], bar: &Val) {
    let n = coords.len();
    let at: Vec<String> = (0..n).map(|k| format!("${}", k + 2)).collect();
    let text = format!(
        "cp.async.bulk.tensor.{n}d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [$0], [$1, {{{}}}], [${}];",
        at.join(", "),
        n + 2
    );
    let mut constraints = vec!["r", "l"];
    constraints.extend(std::iter::repeat_n("r", n));
    constraints.push("r");
    let mut args: Vec<&Val> = vec![dst, map];
    args.extend(coords.iter());
    args.push(bar);
    asm(e, &text, &constraints.join(","), &args);
}

/// Waits until the barrier at `bar` has completed the phase of parity `parity` (i32).
pub(crate) fn wait(e: &mut Emitter, bar: &Val, parity: &Val) {
    let zero = e.i32(0);
    let (bar, parity) = (bar.clone(), parity.clone());
    e.while_loop(
        std::slice::from_ref(&zero),
        |e, _| {
            let done = e.op(
                Ty::I32,
                &format!(
                    "llvm.inline_asm has_side_effects asm_dialect = att \"{{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [$1], $2; selp.u32 $0, 1, 0, p; }}\", \"=r,r,r\" {bar}, {parity} : (i32, i32) -> i32"
                ),
            );
            let z = e.i32(0);
            let more = e.cmp(attnc_lower::Cmp::Eq, &done, &z);
            (more, vec![done])
        },
        |_, s| s.to_vec(),
    );
}
