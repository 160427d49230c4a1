//! The kernel manifest of a SPIR-V build: what the Vulkan runtime needs to bind a call's dims,
//! check its tensors and dispatch the shader, with no compiler linked. The launch's signature
//! follows the runtime's SPIR-V ABI: buffers (inputs, outputs, the status words) are bindings
//! 0.. of set 0 in this order, and every dim is one `Int` push constant, in declaration order.

use crate::SpirvBuild;
use attnc_ir::expr::{ExprArena, ExprId, ExprNode};
use attnc_ir::graph::{Graph, Op};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::Dim;
use attnc_kernel_abi::{
    ABI_VERSION, Access, Arg, BinOp, Bound, DimDecl, ElementType, Expr, Extent, Guard,
    KernelManifest, KernelSignature, Launch, Param, Requirement, STATUS_WORDS, TensorDecl,
    ValueRange,
};
use attnc_source::Span;

/// The section of the bundle that holds the SPIR-V module.
pub const SPIRV_SECTION: &str = "kernel.spv";

/// An IR dim as a manifest expression.
fn dim_expr(d: &Dim) -> Expr {
    match d {
        Dim::Sym(s) => Expr::Dim(s.clone()),
        Dim::Const(c) => Expr::Const(*c),
        Dim::Add(a, b) => Expr::bin(BinOp::Add, dim_expr(a), dim_expr(b)),
        Dim::Sub(a, b) => Expr::bin(BinOp::Sub, dim_expr(a), dim_expr(b)),
        Dim::Mul(a, b) => Expr::bin(BinOp::Mul, dim_expr(a), dim_expr(b)),
        Dim::FloorDiv(a, b) => Expr::bin(BinOp::FloorDiv, dim_expr(a), dim_expr(b)),
    }
}

/// A constant expression of dims as a manifest expression, if it is integral.
fn arena_expr(a: &ExprArena, id: ExprId) -> Option<Expr> {
    let sub = |id| arena_expr(a, id);
    Some(match a.node(id) {
        ExprNode::Int(v) => Expr::Const(*v),
        ExprNode::Dim(d) => Expr::Dim(d.clone()),
        ExprNode::Unary(UnaryOp::Neg, x) => Expr::Neg(Box::new(sub(*x)?)),
        ExprNode::Unary(UnaryOp::Not, x) => Expr::Not(Box::new(sub(*x)?)),
        ExprNode::Binary(op, x, y) => {
            let op = match op {
                BinaryOp::Add => BinOp::Add,
                BinaryOp::Sub => BinOp::Sub,
                BinaryOp::Mul => BinOp::Mul,
                BinaryOp::FloorDiv => BinOp::FloorDiv,
                BinaryOp::Rem => BinOp::Rem,
                BinaryOp::Eq => BinOp::Eq,
                BinaryOp::Ne => BinOp::Ne,
                BinaryOp::Lt => BinOp::Lt,
                BinaryOp::Le => BinOp::Le,
                BinaryOp::Gt => BinOp::Gt,
                BinaryOp::Ge => BinOp::Ge,
                BinaryOp::And => BinOp::And,
                BinaryOp::Or => BinOp::Or,
                BinaryOp::Div | BinaryOp::MatMul => return None,
            };
            Expr::bin(op, sub(*x)?, sub(*y)?)
        }
        _ => return None,
    })
}

/// A declared range's end: an integer expression of the dims, or a float constant.
fn bound(a: &ExprArena, id: ExprId) -> Bound {
    match arena_expr(a, id) {
        Some(e) => Bound::Int(e),
        None => Bound::Float(a.eval_constant(id, &Default::default()).unwrap_or(f64::NAN)),
    }
}

/// The launch's signature and arguments, in the order the shader binds them.
fn signature(graph: &Graph, entry: &str) -> (KernelSignature, Vec<Arg>) {
    let mut params = Vec::new();
    let mut args = Vec::new();
    for (_, name, ty) in graph.inputs() {
        params.push(Param::Buffer {
            name: format!("in_{name}"),
            element: ty.dtype,
            access: Access::Read,
            extent: vec![],
        });
        args.push(Arg::Tensor { name: name.into() });
    }
    for (_, name, ty) in graph.outputs() {
        params.push(Param::Buffer {
            name: format!("out_{name}"),
            element: ty.dtype,
            access: Access::Write,
            extent: vec![],
        });
        args.push(Arg::Tensor { name: name.into() });
    }
    params.push(Param::Buffer {
        name: "status".into(),
        element: ElementType::I32,
        access: Access::ReadWrite,
        extent: vec![Extent::Fixed(STATUS_WORDS as u64)],
    });
    args.push(Arg::Status);
    for d in &graph.dims {
        params.push(Param::Int {
            name: format!("d_{}", d.name),
        });
        args.push(Arg::Int {
            value: Expr::Dim(d.name.clone()),
        });
    }
    (
        KernelSignature {
            name: entry.to_string(),
            params,
        },
        args,
    )
}

/// The manifest of a build; `locate` turns a span into `file:line:col`.
pub fn manifest(
    build: &SpirvBuild,
    graph: &Graph,
    source: &str,
    locate: &dyn Fn(Span) -> String,
) -> KernelManifest {
    let dims = graph
        .dims
        .iter()
        .map(|d| DimDecl {
            name: d.name.clone(),
            specialised: build.specialised.get(&d.name).copied(),
            default: d.default.as_ref().and_then(|(a, r)| arena_expr(a, *r)),
        })
        .collect();
    let requirements = graph
        .requirements
        .iter()
        .filter_map(|r| {
            arena_expr(&r.arena, r.root).map(|condition| Requirement {
                text: r.text.clone(),
                condition,
            })
        })
        .collect();
    let tensor =
        |name: &str, ty: &attnc_ir::types::TensorType, range: Option<ValueRange>| TensorDecl {
            name: name.to_string(),
            element: ty.dtype,
            shape: ty.dims.iter().map(dim_expr).collect(),
            range,
        };
    let inputs = graph
        .inputs()
        .into_iter()
        .map(|(n, name, ty)| {
            let range = match &graph.node(n).op {
                Op::Input {
                    range: Some((lo, hi)),
                    bounds,
                    ..
                } => Some(ValueRange {
                    lo: bound(bounds, *lo),
                    hi: bound(bounds, *hi),
                }),
                _ => None,
            };
            tensor(name, ty, range)
        })
        .collect();
    let outputs = graph
        .outputs()
        .into_iter()
        .map(|(_, name, ty)| tensor(name, ty, None))
        .collect();
    let (signature, args) = signature(graph, &build.entry);
    let launch = Launch {
        code: SPIRV_SECTION.into(),
        signature,
        args,
        grid: [
            dim_expr(&build.grid[0]),
            dim_expr(&build.grid[1]),
            dim_expr(&build.grid[2]),
        ],
        block: [build.threads, 1, 1],
        shared_bytes: 0,
    };
    let guards = build
        .guards
        .iter()
        .map(|g| Guard {
            code: g.code,
            message: g.message.clone(),
            location: Some(locate(graph.node(g.node).span)),
        })
        .collect();
    KernelManifest {
        abi_version: ABI_VERSION,
        kernel: graph.kernel.clone(),
        source: source.to_string(),
        target: build.target,
        dims,
        requirements,
        inputs,
        outputs,
        workspaces: vec![],
        launches: vec![launch],
        guards,
        tiling: build.tiling.clone(),
    }
}
