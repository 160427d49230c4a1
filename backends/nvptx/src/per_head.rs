//! The prologue kernel: per-head vectors (a prefix sum of gates over the sequence, say) and the
//! per-head scalars computed from them, one thread per (b, h), into the workspace the main
//! kernel reads. Run before the main kernel in the same call.

use crate::NvptxError;
use crate::classify::{Home, Layout};
use crate::kernel::{extent, head_values, params, slot_bases, start_kernel, value_at};
use crate::leaves::{At, Ctx};
use attnc_ir::expr::Builtin;
use attnc_ir::graph::{Graph, ValueRef};
use attnc_ir::types::FrameIndex;
use attnc_lower::{Cmp, ExprLowering, PtxMath, Ty};
use attnc_passes::fusion::ParallelKernel;
use attnc_passes::fusion::tree::Tree;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// The prologue kernel's guard codes start after the main kernel's.
const GUARD_BASE: u32 = 1000;

/// Threads per block of the prologue kernel.
pub(crate) const THREADS: usize = 64;

/// Writes the prologue kernel; `None` when the workspace is empty.
pub(crate) fn write(
    graph: &Graph,
    plan: &ParallelKernel,
    layout: &Layout,
    name: &str,
) -> Result<Option<(String, Vec<crate::leaves::GuardSite>)>, NvptxError> {
    if layout.slots.is_empty() {
        return Ok(None);
    }
    let (order, mut e, (dims, inputs, _outputs, ws, status)) = start_kernel(graph, layout)?;
    let bx = e.op(Ty::Index, "gpu.block_id x");
    let tid = e.op(Ty::Index, "gpu.thread_id x");
    let per = e.index(THREADS as i64);
    let start = e.mul(&bx, &per);
    let gid = e.add(&start, &tid);
    let nb = extent(&mut e, graph, &dims, FrameIndex::B);
    let nh = extent(&mut e, graph, &dims, FrameIndex::H);
    let slices = e.mul(&nb, &nh);
    let inside = e.cmp(Cmp::Lt, &gid, &slices);
    e.if_then(&inside);
    let b = e.div(&gid, &nh);
    let h = e.arith(attnc_lower::Arith::Rem, &gid, &nh);
    let zero = e.index(0);
    let mut ctx = Ctx {
        graph,
        layout: Layout {
            homes: layout.homes.clone(),
            shared: Vec::new(),
            slots: layout.slots.clone(),
            prefetched: Default::default(),
            operand: Default::default(),
            shared_bytes: 0,
            tma: None,
            specialised: layout.specialised.clone(),
        },
        views: Vec::new(),
        inputs,
        workspace: ws,
        status,
        tmaps: None,
        dims,
        b: b.clone(),
        h: h.clone(),
        head: BTreeMap::new(),
        slot_base: Vec::new(),
        guards: RefCell::new(Vec::new()),
        guard_base: GUARD_BASE,
        zero,
    };
    ctx.slot_base = slot_bases(&mut e, graph, &ctx.layout, &ctx.dims, &b, &h);
    ctx.head = head_values(&mut e, &ctx, plan, &order)?;
    let ws = ctx.workspace.clone().ok_or_else(|| NvptxError::Internal {
        message: "a prologue without a workspace".into(),
        span: None,
    })?;
    for &n in &order {
        let Some(Home::HeadWorkspace(slot)) = ctx.layout.home(n) else {
            continue;
        };
        let len = ctx.dim_index(&mut e, &ctx.layout.slots[slot].len.clone());
        let base = ctx.slot_base[slot].clone();
        let tree = Tree::of_map(graph, ValueRef { node: n, result: 0 }, &|_| false);
        let lo = e.index(0);
        let one = e.index(1);
        if let Tree::Call(f @ (Builtin::Cumsum | Builtin::Cumprod), args) = &tree {
            // A prefix scan along the vector: one running value.
            let init = e.f32(if *f == Builtin::Cumsum { 0.0 } else { 1.0 });
            let (k, acc, lp) = e.for_iter(&lo, &len, &one, std::slice::from_ref(&init));
            let local = BTreeMap::new();
            let mut here = crate::leaves::Here {
                ctx: &ctx,
                at: At::Head,
                local: &local,
            };
            let mut low = ExprLowering::new(graph, &PtxMath);
            let x = low
                .lower_f32(&mut e, &mut here, &args[0], Some(&k))
                .map_err(|err| NvptxError::lowering(graph, n, err))?;
            let next = if *f == Builtin::Cumsum {
                e.add(&acc[0], &x)
            } else {
                e.mul(&acc[0], &x)
            };
            let at = e.add(&base, &k);
            e.store(&next, &ws, &at);
            e.end_for(&[next], lp);
        } else {
            let k = e.for_loop(&lo, &len, &one);
            let local = BTreeMap::new();
            let v = value_at(&mut e, &ctx, n, At::Head, &local, Some(&k))?;
            let v = e.cast(&v, &Ty::F32);
            let at = e.add(&base, &k);
            e.store(&v, &ws, &at);
            e.end();
        }
    }
    e.end();
    e.line("gpu.return");
    let p = params(graph, true);
    let text = format!(
        "    gpu.func @{name}({}) kernel attributes {{known_block_size = array<i32: {THREADS}, 1, 1>}} {{\n{}    }}\n",
        p.text.join(", "),
        e.into_text()
    );
    Ok(Some((text, ctx.guards.into_inner())))
}
