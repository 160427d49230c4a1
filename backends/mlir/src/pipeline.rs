//! The named pass pipelines that take generated MLIR down to the LLVM dialect.
//!
//! Each pipeline was found with `mlir-opt-22` first (every pass below was dropped in turn, and a
//! kernel using the ops it handles then failed to translate), and is run through
//! [`crate::MlirModule::run_pipeline`] the same way.

/// From `func`/`scf`/`arith`/`math`/`memref`/`vector` to the LLVM dialect, for the host JIT and
/// `--emit llvm`. Functions take bare pointers (see [`crate::KernelSignature`]).
///
/// The order matters, because conversion passes are partial and several passes create ops that
/// a later one must lower:
/// - `convert-vector-to-scf{full-unroll=1}`: n-D `vector.transfer_read/write` into 1-D transfers
///   (`convert-vector-to-llvm` only lowers 1-D ones); unrolled, so no stack buffer is used.
/// - `func.func(lower-vector-multi-reduction)`: `vector.multi_reduction`, which
///   `convert-vector-to-llvm` no longer lowers in MLIR 22.
/// - `convert-scf-to-cf`: loops and ifs (also those the vector passes made) to branches.
/// - `convert-math-to-llvm{approximate-log1p=false}`: math ops that have an LLVM intrinsic (exp,
///   exp2, log, log2, sqrt, rsqrt, tanh, pow, sin, cos, tan, asin, acos, atan, sinh, cosh, fabs,
///   fma, ...). Sqrt, fabs and fma become instructions; the others become libm calls in the
///   backend, resolved by the JIT. By default it rewrites `log1p(x)` as `log(1 + x)`, which
///   loses every digit for |x| below 1e-7; the option leaves it to libm's `log1pf`. (It rewrites
///   `expm1` as `exp(x) - 1` with no such option, so the CPU code generator never emits
///   `math.expm1`.)
/// - `convert-math-to-libm`: the rest, which has no intrinsic (erf, erfc, cbrt, log1p, ...), as
///   calls to libm (`erff`); vector operands are unrolled into scalar calls. After
///   `convert-math-to-llvm`, so only those ops go to libm; before the vector and arith
///   conversions, because the unrolling it does emits `vector` and `arith` ops.
/// - `convert-vector-to-llvm`: 1-D vector ops (load, store, fma, reduction, contract, ...);
///   before `finalize-memref-to-llvm`, as its masked transfers emit `memref.dim`. A 16 x 16
///   `vector.transpose` becomes the shuffle sequence of an AVX-512 in-register transpose
///   (`shuffle16x16`; other shapes lower element by element).
/// - `expand-strided-metadata`: subviews and reinterpret casts into explicit offset and stride
///   arithmetic, which `finalize-memref-to-llvm` needs; it emits `affine.apply`, hence:
/// - `lower-affine`: `affine.apply` (also from the vector passes) to `arith`.
/// - `finalize-memref-to-llvm`: loads, stores, allocas, descriptors.
/// - `convert-arith-to-llvm`: integer and float arithmetic, including `ceildivsi`/`floordivsi`
///   (expanded by the conversion itself; no `arith-expand` needed).
/// - `convert-ub-to-llvm`: `ub.poison`, which vector lowering creates as a placeholder.
/// - `convert-func-to-llvm{use-bare-ptr-memref-call-conv=1}`: functions; a statically shaped
///   memref argument becomes one `!llvm.ptr` (dynamic ones are not converted at all).
/// - `convert-cf-to-llvm`: branches.
/// - `reconcile-unrealized-casts`: removes the casts the conversions left between them.
pub const CPU_LOWERING_PIPELINE: &str = "builtin.module(\
    convert-vector-to-scf{full-unroll=1}, \
    func.func(lower-vector-multi-reduction), \
    convert-scf-to-cf, \
    convert-math-to-llvm{approximate-log1p=false}, \
    convert-math-to-libm, \
    convert-vector-to-llvm{vector-transpose-lowering=shuffle16x16}, \
    expand-strided-metadata, \
    lower-affine, \
    finalize-memref-to-llvm, \
    convert-arith-to-llvm, \
    convert-ub-to-llvm, \
    convert-func-to-llvm{use-bare-ptr-memref-call-conv=1}, \
    convert-cf-to-llvm, \
    reconcile-unrealized-casts)";

/// From `gpu.module` kernels (`gpu`, `nvgpu`, `nvvm`, `scf`, `arith`, `memref`, `vector`, with
/// math as inline PTX and LLVM intrinsics) to the LLVM and NVVM dialects, ready for
/// [`crate::MlirModule::gpu_module_to_llvm_ir`]. Kernel parameters are bare pointers.
///
/// Found with `mlir-opt-22` as the CPU pipeline was. `convert-gpu-to-nvvm` also lowers `memref`
/// (loads, stores, allocas, views of dynamic shared memory) and maps `math` ops to libdevice
/// calls, which nothing links: kernels must not use `math` (the NVPTX back end checks that its
/// PTX declares no external function). `expand-strided-metadata` and `lower-affine` lower the
/// reinterpret casts of kernel parameters.
pub const NVVM_LOWERING_PIPELINE: &str = "builtin.module(gpu.module(\
    convert-scf-to-cf, \
    convert-nvgpu-to-nvvm, \
    convert-gpu-to-nvvm{use-bare-ptr-memref-call-conv=1}, \
    convert-nvvm-to-llvm, \
    expand-strided-metadata, \
    lower-affine, \
    convert-vector-to-llvm, \
    convert-arith-to-llvm, \
    convert-index-to-llvm, \
    canonicalize, \
    reconcile-unrealized-casts))";
