//! Warp-level matrix fragments: `ldmatrix` from shared memory, `mma.sync` m16n8k16 (bf16, f16)
//! and m16n8k8 (tf32), and turning a score accumulator into the A operand of the next product.
//!
//! Layouts (PTX ISA, "Matrix fragments for mma.m16n8k16"; lane = 4g + t): an accumulator of
//! 16 x 8 holds c0 = (g, 2t), c1 = (g, 2t+1), c2 = (g+8, 2t), c3 = (g+8, 2t+1). A 16 x 16
//! 16-bit A holds a0 = row g, k 2t..2t+1; a1 = row g+8; a2 = row g, k 8+2t..; a3 = row g+8,
//! k 8+2t..; B (16 x 8, "col") b0 = k 2t..2t+1 of column g, b1 = k 8+2t... For tf32 (k = 8):
//! a0 = (g, t), a1 = (g+8, t), a2 = (g, t+4), a3 = (g+8, t+4); b0 = (k t, n g), b1 = (k t+4, n g).
//! So the accumulator of two adjacent 8-key blocks is, register for register, the 16-bit A
//! operand of the 16 keys (FlashAttention-2's observation); tf32 needs four shuffles per
//! register instead.

use attnc_ir::ElementType;
use attnc_lower::{Const, Emitter, Ty, Val};

/// The thread's place in its warp: lane, g = lane / 4, t = lane % 4 (all index).
#[derive(Clone, Debug)]
pub(crate) struct Lane {
    pub lane: Val,
    pub g: Val,
    pub t: Val,
    /// The warp's first row in the block tile.
    pub row0: Val,
}

/// The operand type of a product, and the instruction's k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kind {
    pub operand: ElementType,
}

impl Kind {
    pub fn k(self) -> usize {
        if self.operand == ElementType::F32 {
            8
        } else {
            16
        }
    }

    fn elem(self) -> Ty {
        Ty::of_element(self.operand)
    }

    fn ptx(self) -> &'static str {
        match self.operand {
            ElementType::Bf16 => "bf16",
            ElementType::F16 => "f16",
            _ => "tf32",
        }
    }

    /// The register type the nvvm op takes for an A or B operand.
    fn reg(self) -> Ty {
        match self.operand {
            ElementType::F16 => Ty::vector(&[2], Ty::F16),
            _ => Ty::I32,
        }
    }
}

/// `ldmatrix` of `tiles` 8x8 tiles, each lane giving the row at element `index` of `view`.
fn ldmatrix(
    e: &mut Emitter,
    kind: Kind,
    view: &Val,
    index: &Val,
    tiles: usize,
    trans: bool,
) -> Vec<Val> {
    let elem = kind.elem();
    let vt = Ty::vector(&[tiles, 2], elem.clone());
    let v = e.op(
        vt.clone(),
        &format!(
            "nvgpu.ldmatrix {view}[{index}] {{numTiles = {tiles} : i32, transpose = {trans}}} : {} -> {vt}",
            view.ty
        ),
    );
    let pair = Ty::vector(&[2], elem.clone());
    (0..tiles)
        .map(|k| {
            let x = e.op(
                pair.clone(),
                &format!("vector.extract {v}[{k}] : {pair} from {vt}"),
            );
            operand_reg(e, kind, &x)
        })
        .collect()
}

/// Two 16-bit elements as the register an mma takes.
fn operand_reg(e: &mut Emitter, kind: Kind, pair: &Val) -> Val {
    match kind.operand {
        ElementType::F16 => pair.clone(),
        _ => {
            let one = Ty::vector(&[1], Ty::I32);
            let w = e.bitcast(pair, &one);
            e.extract(&w, 0)
        }
    }
}

/// An f32 as a tf32 operand register (the matrix unit ignores the low mantissa bits).
fn tf32_reg(e: &mut Emitter, x: &Val) -> Val {
    e.bitcast(x, &Ty::I32)
}

/// Two f32 values packed as one 16-bit operand register (rounded to nearest even).
pub(crate) fn pack(e: &mut Emitter, kind: Kind, x: &Val, y: &Val) -> Val {
    let elem = kind.elem();
    let a = e.cast(x, &elem);
    let b = e.cast(y, &elem);
    let v = e.from_elements(&[a, b]);
    operand_reg(e, kind, &v)
}

/// `c + a b` for one 16 x 8 block.
pub(crate) fn mma(e: &mut Emitter, kind: Kind, a: &[Val], b: &[Val], c: &[Val]) -> Vec<Val> {
    let k = kind.k();
    let reg = kind.reg();
    let types = if kind.operand == ElementType::F16 {
        format!("{reg}, {reg}, f32")
    } else {
        "i32, i32, f32".to_string()
    };
    let ptx_type = kind.ptx();
    let st = Ty::Other("!llvm.struct<(f32, f32, f32, f32)>".into());
    let d = e.op(
        st.clone(),
        &format!(
            "nvvm.mma.sync A[{}, {}, {}, {}] B[{}, {}] C[{}, {}, {}, {}] {{layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<{ptx_type}>, multiplicandBPtxType = #nvvm.mma_type<{ptx_type}>, shape = #nvvm.shape<m = 16, n = 8, k = {k}>}} : ({types}) -> {st}",
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], c[2], c[3]
        ),
    );
    (0..4)
        .map(|i| e.op(Ty::F32, &format!("llvm.extractvalue {d}[{i}] : {st}")))
        .collect()
}

fn idx(e: &mut Emitter, x: usize) -> Val {
    e.index(x as i64)
}

/// How a shared buffer's rows lie: `stride` elements per row, either row after row or, for the
/// operands `wgmma` reads through descriptors, in 8 x 8 core matrices of 16-bit elements (each
/// 128 contiguous bytes), slab by slab: the core matrices of columns 0..8 for all `rows` rows one
/// after another, then those of columns 8..16, and so on. A slab is then `rows` runs of 16
/// contiguous bytes, which is what one bulk tensor copy of an `8 x rows` box writes. Every 8
/// elements of a row that start at a multiple of 8 are contiguous either way, so `ldmatrix`
/// rows and 16-byte copies address both through [`Arrangement::at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Arrangement {
    pub stride: usize,
    pub cores: bool,
    /// Rows of the buffer (a multiple of 8 when in core matrices).
    pub rows: usize,
}

impl Arrangement {
    /// The element index of (`row`, `col`) after `base`.
    pub fn at(self, e: &mut Emitter, base: &Val, row: &Val, col: &Val) -> Val {
        let rc = if self.cores {
            let eight = idx(e, 8);
            let rb = e.div(row, &eight);
            let cb = e.div(col, &eight);
            let per = idx(e, self.rows / 8);
            let core = e.mul(&cb, &per);
            let core = e.add(&core, &rb);
            let sixty_four = idx(e, 64);
            let core = e.mul(&core, &sixty_four);
            let rr = e.arith(attnc_lower::Arith::Rem, row, &eight);
            let rr = e.mul(&rr, &eight);
            let cr = e.arith(attnc_lower::Arith::Rem, col, &eight);
            let inner = e.add(&rr, &cr);
            e.add(&core, &inner)
        } else {
            let s = idx(e, self.stride);
            let r = e.mul(row, &s);
            e.add(&r, col)
        };
        e.add(base, &rc)
    }

    /// Bytes between core matrices next to each other along the rows (the next 8 rows) and
    /// along the columns (the next slab), for descriptors.
    fn core_distances(self) -> (usize, usize) {
        (128, self.rows * 16)
    }
}

fn at(e: &mut Emitter, base: &Val, row: &Val, arr: Arrangement, col: &Val) -> Val {
    arr.at(e, base, row, col)
}

/// The A fragments of the warp's 16 rows of a buffer, for each k step.
pub(crate) fn a_fragments(
    e: &mut Emitter,
    kind: Kind,
    view: &Val,
    base: &Val,
    stride: Arrangement,
    lane: &Lane,
    k_steps: usize,
) -> Vec<Vec<Val>> {
    let mut out = Vec::new();
    for kk in 0..k_steps {
        if kind.operand == ElementType::F32 {
            let k0 = idx(e, kk * 8);
            let c_lo = e.add(&k0, &lane.t);
            let four = idx(e, 4);
            let c_hi = e.add(&c_lo, &four);
            let r_lo = e.add(&lane.row0, &lane.g);
            let eight = idx(e, 8);
            let r_hi = e.add(&r_lo, &eight);
            let mut regs = Vec::new();
            for (r, c) in [
                (&r_lo, &c_lo),
                (&r_hi, &c_lo),
                (&r_lo, &c_hi),
                (&r_hi, &c_hi),
            ] {
                let p = at(e, base, r, stride, c);
                let x = e.load(view, &p);
                regs.push(tf32_reg(e, &x));
            }
            out.push(regs);
        } else {
            // Lanes 0-15 give rows 0-15 at k 0..7, lanes 16-31 the same rows at k 8..15.
            let sixteen = idx(e, 16);
            let r = e.arith(attnc_lower::Arith::Rem, &lane.lane, &sixteen);
            let row = e.add(&lane.row0, &r);
            let half = e.div(&lane.lane, &sixteen);
            let eight = idx(e, 8);
            let off = e.mul(&half, &eight);
            let k0 = idx(e, kk * 16);
            let col = e.add(&k0, &off);
            let p = at(e, base, &row, stride, &col);
            out.push(ldmatrix(e, kind, view, &p, 4, false));
        }
    }
    out
}

/// How a B operand lies in shared memory: `[n][k]` rows (the key tile, B = K^T) or `[k][n]`
/// rows (the value tile: keys by features).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BLayout {
    NK,
    KN,
}

/// The B fragments (`[b0, b1]` per 8-column block) of `blocks` 8-column blocks of B at k step
/// `kk` (16 keys, or 8 for tf32), from a row-major buffer laid out as `layout` says. The two
/// layouts differ only in which of (n, k) is the memory row: ldmatrix's lanes address memory
/// rows, and a `[k][n]` buffer is read transposed.
#[allow(clippy::too_many_arguments)] // a fragment's address: buffer, stage, row, step
pub(crate) fn b_fragments(
    e: &mut Emitter,
    kind: Kind,
    layout: BLayout,
    view: &Val,
    base: &Val,
    stride: Arrangement,
    lane: &Lane,
    blocks: usize,
    kk: usize,
) -> Vec<Vec<Val>> {
    let address = |e: &mut Emitter, n: &Val, k: &Val| match layout {
        BLayout::NK => at(e, base, n, stride, k),
        BLayout::KN => at(e, base, k, stride, n),
    };
    let mut out = Vec::new();
    if kind.operand == ElementType::F32 {
        let k0 = idx(e, kk * 8);
        let k_lo = e.add(&k0, &lane.t);
        let four = idx(e, 4);
        let k_hi = e.add(&k_lo, &four);
        for nb in 0..blocks {
            let n0 = idx(e, nb * 8);
            let n = e.add(&n0, &lane.g);
            let p0 = address(e, &n, &k_lo);
            let p1 = address(e, &n, &k_hi);
            let x0 = e.load(view, &p0);
            let x1 = e.load(view, &p1);
            out.push(vec![tf32_reg(e, &x0), tf32_reg(e, &x1)]);
        }
        return out;
    }
    let eight = idx(e, 8);
    let sixteen = idx(e, 16);
    let two = idx(e, 2);
    // Lane l addresses row l % 8 of 8x8 matrix l / 8: the matrices' k halves alternate, their
    // n blocks change every two.
    let r8 = e.arith(attnc_lower::Arith::Rem, &lane.lane, &eight);
    let which = e.div(&lane.lane, &eight);
    let kh = e.arith(attnc_lower::Arith::Rem, &which, &two);
    let koff = e.mul(&kh, &eight);
    let k0 = idx(e, kk * 16);
    let k = match layout {
        BLayout::NK => e.add(&k0, &koff),
        BLayout::KN => {
            let rk = e.add(&k0, &r8);
            e.add(&rk, &koff)
        }
    };
    let upper = e.div(&lane.lane, &sixteen);
    let noff = e.mul(&upper, &eight);
    let mut nb = 0;
    while nb < blocks {
        let n0 = idx(e, nb * 8);
        if nb + 1 < blocks {
            // Matrices: (block nb, k lo), (nb, k hi), (nb + 1, k lo), (nb + 1, k hi).
            let n = match layout {
                BLayout::NK => {
                    let rn = e.add(&n0, &r8);
                    e.add(&rn, &noff)
                }
                BLayout::KN => e.add(&n0, &noff),
            };
            let p = address(e, &n, &k);
            let regs = ldmatrix(e, kind, view, &p, 4, layout == BLayout::KN);
            out.push(vec![regs[0].clone(), regs[1].clone()]);
            out.push(vec![regs[2].clone(), regs[3].clone()]);
            nb += 2;
        } else {
            let n = match layout {
                BLayout::NK => e.add(&n0, &r8),
                BLayout::KN => n0,
            };
            let p = address(e, &n, &k);
            let regs = ldmatrix(e, kind, view, &p, 2, layout == BLayout::KN);
            out.push(regs);
            nb += 1;
        }
    }
    out
}

/// The A operand of the weights of key step `kk`, from the weight accumulators `w[nb]` (each
/// in accumulator layout c0..c3).
pub(crate) fn weights_as_a(
    e: &mut Emitter,
    kind: Kind,
    w: &[Vec<Val>],
    kk: usize,
    lane: &Lane,
) -> Vec<Val> {
    if kind.operand != ElementType::F32 {
        let (lo, hi) = (&w[2 * kk], &w[2 * kk + 1]);
        return vec![
            pack(e, kind, &lo[0], &lo[1]),
            pack(e, kind, &lo[2], &lo[3]),
            pack(e, kind, &hi[0], &hi[1]),
            pack(e, kind, &hi[2], &hi[3]),
        ];
    }
    // tf32: a0 = (g, t) lives in lane 4g + t/2, element t % 2; a2 = (g, t + 4) in lane
    // 4g + t/2 + 2.
    let c = &w[kk];
    let four = idx(e, 4);
    let two = idx(e, 2);
    let g4 = e.mul(&lane.g, &four);
    let th = e.div(&lane.t, &two);
    let src0 = e.add(&g4, &th);
    let src2 = e.add(&src0, &two);
    let t2 = e.arith(attnc_lower::Arith::Rem, &lane.t, &two);
    let zero = idx(e, 0);
    let even = e.cmp(attnc_lower::Cmp::Eq, &t2, &zero);
    let pick = |e: &mut Emitter, x: &Val, y: &Val, src: &Val| {
        let a = shuffle_idx(e, x, src);
        let b = shuffle_idx(e, y, src);
        let v = e.select(&even, &a, &b);
        tf32_reg(e, &v)
    };
    vec![
        pick(e, &c[0], &c[1], &src0),
        pick(e, &c[2], &c[3], &src0),
        pick(e, &c[0], &c[1], &src2),
        pick(e, &c[2], &c[3], &src2),
    ]
}

/// `x` from lane `src` of the warp.
pub(crate) fn shuffle_idx(e: &mut Emitter, x: &Val, src: &Val) -> Val {
    let s = e.cast(src, &Ty::I32);
    let w = e.i32(32);
    let name = e.fresh();
    let ok = e.fresh();
    e.op_line(&format!(
        "{name}, {ok} = gpu.shuffle idx {x}, {s}, {w} : f32"
    ));
    Emitter::named(&name, Ty::F32)
}

/// `x` combined with the same register of lane `lane ^ mask`.
pub(crate) fn shuffle_xor(e: &mut Emitter, x: &Val, mask: u32) -> Val {
    let m = e.i32(mask as i64);
    let w = e.i32(32);
    let name = e.fresh();
    let ok = e.fresh();
    let ty = x.ty.clone();
    e.op_line(&format!(
        "{name}, {ok} = gpu.shuffle xor {x}, {m}, {w} : {ty}"
    ));
    Emitter::named(&name, ty)
}

/// A shared-memory matrix descriptor for `wgmma` (PTX ISA, "Matrix Descriptor Format"), without
/// swizzling: the start address of element `offset` of `view`, and the byte distances between
/// core matrices next to each other along K (`along_k`) and along M or N (`along_mn`), each in
/// 16-byte units.
fn descriptor(e: &mut Emitter, view: &Val, offset: &Val, along_k: usize, along_mn: usize) -> Val {
    let base = e.op(
        Ty::Index,
        &format!(
            "memref.extract_aligned_pointer_as_index {view} : {} -> index",
            view.ty
        ),
    );
    let bytes = idx(e, view.ty.element().bits() / 8);
    let off = e.mul(offset, &bytes);
    let addr = e.add(&base, &off);
    let addr = e.cast(&addr, &Ty::I64);
    let mask = e.constant(Const::Int(0x3ffff), &Ty::I64);
    let addr = e.op(Ty::I64, &format!("arith.andi {addr}, {mask} : i64"));
    let four = e.constant(Const::Int(4), &Ty::I64);
    let addr = e.op(Ty::I64, &format!("arith.shrui {addr}, {four} : i64"));
    let fixed = (((along_k >> 4) as i64) << 16) | (((along_mn >> 4) as i64) << 32);
    let fixed = e.constant(Const::Int(fixed), &Ty::I64);
    e.op(Ty::I64, &format!("arith.ori {addr}, {fixed} : i64"))
}

/// `A Bᵀ` on `wgmma` for the warpgroup's 64 rows of A (from element `a_base` of `a`) and `n`
/// rows of B (from `b_base` of `b`), both `[rows][k]` buffers in core matrices, over `k_steps`
/// steps of 16. Returns the warp's accumulators in the `mma.sync` layout (`n / 8` blocks of
/// c0..c3): element i of warp w's wgmma accumulator is row 16w + g + 8·((i/2) mod 2), column
/// 8·(i/4) + 2t + (i mod 2), which is c(i mod 4) of block i/4 for the warp's 16 rows.
///
/// The operands must have been written (and `fence.proxy.async` issued by their writers) before
/// a barrier the whole block passed; all four warps of the warpgroup must call this together.
#[allow(clippy::too_many_arguments)] // two operands, each a view, a base and an arrangement
pub(crate) fn warpgroup_product(
    e: &mut Emitter,
    kind: Kind,
    a: &Val,
    a_base: &Val,
    a_arr: Arrangement,
    b: &Val,
    b_base: &Val,
    b_arr: Arrangement,
    n: usize,
    k_steps: usize,
) -> Vec<Vec<Val>> {
    // K runs along the columns of both (the next slab), M and N along the rows.
    let (a_rows, a_slab) = a_arr.core_distances();
    let (b_rows, b_slab) = b_arr.core_distances();
    let da = descriptor(e, a, a_base, a_slab, a_rows);
    let db = descriptor(e, b, b_base, b_slab, b_rows);
    let st = accumulator_struct(n);
    let mut acc = e.op(st.clone(), &format!("llvm.mlir.undef : {st}"));
    let ptx = kind.ptx();
    e.line("nvvm.wgmma.fence.aligned");
    for kk in 0..k_steps {
        // A k step of 16 is two slabs, in the descriptor's 16-byte address units.
        let (da, db) = if kk == 0 {
            (da.clone(), db.clone())
        } else {
            let sa = e.constant(Const::Int((2 * kk * a_slab / 16) as i64), &Ty::I64);
            let sb = e.constant(Const::Int((2 * kk * b_slab / 16) as i64), &Ty::I64);
            (
                e.op(Ty::I64, &format!("arith.addi {da}, {sa} : i64")),
                e.op(Ty::I64, &format!("arith.addi {db}, {sb} : i64")),
            )
        };
        let scale = if kk == 0 { "zero" } else { "one" };
        acc = e.op(
            st.clone(),
            &format!(
                "nvvm.wgmma.mma_async {da}, {db}, {acc}, #nvvm.shape<m = 64, n = {n}, k = 16>, D [<f32>, #nvvm.wgmma_scale_out<{scale}>], A [<{ptx}>, #nvvm.wgmma_scale_in<one>, <row>], B [<{ptx}>, #nvvm.wgmma_scale_in<one>, <col>] : {st} -> {st}"
            ),
        );
    }
    e.line("nvvm.wgmma.commit.group.sync.aligned");
    e.line("nvvm.wgmma.wait.group.sync.aligned 0");
    unpack(e, &acc, &st, n)
}

/// `acc += A B` on `wgmma` for the warpgroup, one k step of 16: A (the warp's 16 rows, its four
/// `mma.sync` A registers, as [`weights_as_a`] gives them) from registers, B (16 x n) through a
/// descriptor of `[k][n]` rows in core matrices from element `b_base` (wgmma's transposed B).
/// `acc` is in the `mma.sync` layout (n / 8 blocks of c0..c3), as [`warpgroup_product`] says.
/// Issues only: the caller fences before the first and commits and waits after the last.
pub(crate) fn warpgroup_accumulate(
    e: &mut Emitter,
    kind: Kind,
    a: &[Val],
    b: &Val,
    b_base: &Val,
    b_arr: Arrangement,
    acc: &[Vec<Val>],
) -> Vec<Vec<Val>> {
    let n = acc.len() * 8;
    // K runs along the rows here (the next 8 value rows), N along the columns (the next
    // slab). For this transposed B too the leading offset is the one along K: the H200 check
    // with the two swapped failed every case (bench/results/h200-wgmma-2026-12-03.md).
    let (k_rows, n_slab) = b_arr.core_distances();
    let desc = descriptor(e, b, b_base, k_rows, n_slab);
    let regs: Vec<Val> = a
        .iter()
        .map(|r| match kind.operand {
            ElementType::F16 => {
                let one = Ty::vector(&[1], Ty::I32);
                let w = e.bitcast(r, &one);
                e.extract(&w, 0)
            }
            _ => r.clone(),
        })
        .collect();
    let one = e.i32(1);
    let count = n / 2;
    let st = accumulator_struct(n);
    let outs: Vec<String> = (0..count).map(|i| format!("${i}")).collect();
    let a_at: Vec<String> = (0..4).map(|i| format!("${}", 2 * count + i)).collect();
    let asm = format!(
        "{{ .reg .pred p; setp.ne.b32 p, ${}, 0; wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ptx}.{ptx} {{{}}}, {{{}}}, ${}, p, 1, 1, 1; }}",
        2 * count + 5,
        outs.join(", "),
        a_at.join(", "),
        2 * count + 4,
        ptx = kind.ptx(),
    );
    let mut constraints: Vec<String> = (0..count).map(|_| "=f".to_string()).collect();
    constraints.extend((0..count).map(|i| i.to_string()));
    constraints.extend((0..4).map(|_| "r".to_string()));
    constraints.push("l".into());
    constraints.push("r".into());
    let mut args: Vec<String> = acc.iter().flatten().map(|v| v.to_string()).collect();
    args.extend(regs.iter().map(|v| v.to_string()));
    args.push(desc.to_string());
    args.push(one.to_string());
    let mut types: Vec<String> = vec!["f32".to_string(); count];
    types.extend((0..4).map(|_| "i32".to_string()));
    types.push("i64".into());
    types.push("i32".into());
    let out = e.op(
        st.clone(),
        &format!(
            "llvm.inline_asm has_side_effects asm_dialect = att \"{asm}\", \"{}\" {} : ({}) -> {st}",
            constraints.join(","),
            args.join(", "),
            types.join(", ")
        ),
    );
    unpack(e, &out, &st, n)
}

/// The struct type of a warpgroup accumulator over `n` columns: `n / 2` f32 per thread.
fn accumulator_struct(n: usize) -> Ty {
    let fields = vec!["f32"; n / 2].join(", ");
    Ty::Other(format!("!llvm.struct<({fields})>"))
}

/// A warpgroup accumulator struct as `n / 8` blocks of the `mma.sync` c0..c3 (see
/// [`warpgroup_product`] for why the layouts agree).
fn unpack(e: &mut Emitter, acc: &Val, st: &Ty, n: usize) -> Vec<Vec<Val>> {
    (0..n / 8)
        .map(|nb| {
            (0..4)
                .map(|q| {
                    e.op(
                        Ty::F32,
                        &format!("llvm.extractvalue {acc}[{}] : {st}", nb * 4 + q),
                    )
                })
                .collect()
        })
        .collect()
}
