//! The kernel manifest of a GPU build, shared by the GPU back ends: what a runtime with no
//! compiler needs to bind a call's dims, check its tensors and launch the code. Each back end
//! supplies its launches and workspaces; everything the graph decides is written here once.

use attnc_ir::expr::{ExprArena, ExprId, ExprNode};
use attnc_ir::graph::{Graph, Op};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::Dim;
use attnc_kernel_abi::{
    ABI_VERSION, Access, Arg, BinOp, Bound, DimDecl, ElementType, Expr, Extent, Guard,
    KernelManifest, KernelSignature, Launch, Param, Requirement, STATUS_WORDS, TargetId,
    TensorDecl, ValueRange, Workspace,
};
use attnc_source::Span;
use petgraph::stable_graph::NodeIndex;
use std::collections::BTreeMap;

/// A run-time check the kernel makes, for the manifest's guard table.
#[derive(Clone, Debug)]
pub struct GuardSite {
    pub code: u32,
    pub message: String,
    pub node: NodeIndex,
}

/// What a back end's build adds to the manifest beside what the graph says.
pub struct BuildParts<'a> {
    pub target: TargetId,
    /// The dims the code was compiled for.
    pub specialised: &'a BTreeMap<String, i64>,
    pub guards: &'a [GuardSite],
    /// The tiling, in words.
    pub tiling: &'a str,
    pub launches: Vec<Launch>,
    pub workspaces: Vec<Workspace>,
}

/// An IR dim as a manifest expression.
pub fn dim_expr(d: &Dim) -> Expr {
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

/// The signature every launch of a GPU build shares: inputs, outputs, the workspace, the status
/// word, the dims (in the order of the kernel's parameters).
pub fn signature(graph: &Graph, entry: &str, workspace: bool) -> (KernelSignature, Vec<Arg>) {
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
    if workspace {
        params.push(Param::Buffer {
            name: "ws".into(),
            element: ElementType::F32,
            access: Access::ReadWrite,
            extent: vec![],
        });
        args.push(Arg::Workspace {
            name: "per_head".into(),
        });
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
    graph: &Graph,
    source: &str,
    locate: &dyn Fn(Span) -> String,
    build: BuildParts,
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
        workspaces: build.workspaces,
        launches: build.launches,
        guards,
        tiling: build.tiling.to_string(),
    }
}
