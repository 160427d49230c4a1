//! The abstract syntax tree of a `.attn` file, as parsed: names are not yet resolved and nothing
//! is type-checked (that happens when the IR is built). Every node carries its source span.

pub use attnc_ir::ElementType;
pub use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_source::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Kernel(Kernel),
    Function(Function),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `kernel NAME { ... }`: one attention computation with its inputs and outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: Ident,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// `fn NAME(params) { let ...; result }`: inlined at every call; how normalisers such as
/// `softmax` are written (the prelude defines `softmax` this way).
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: Ident,
    pub params: Vec<Ident>,
    pub lets: Vec<Let>,
    pub result: Expr,
    pub span: Span,
}

/// `bf16[B, H, S, D]`: a storage type whose dimensions are expressions over `dim` symbols.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorType {
    pub dtype: ElementType,
    pub dtype_span: Span,
    pub dims: Vec<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DimDecl {
    pub name: Ident,
    /// `dim W = 256;` gives a default that `--shape W=...` may override.
    pub default: Option<Expr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InputDecl {
    pub names: Vec<Ident>,
    pub ty: TensorType,
    /// `in [lo, hi]`: the values' range, used to draw random inputs and to check given ones.
    pub range: Option<(Expr, Expr)>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OutputDecl {
    pub names: Vec<Ident>,
    pub ty: TensorType,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Let {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

/// `o[b, h, i] = expr;`: defines an output by the indices of its leading axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Assign {
    pub target: Ident,
    pub indices: Vec<Expr>,
    pub value: Expr,
    pub span: Span,
}

/// `state S: [D, Dv] = update;` inside a recurrence; `S` in `update` is the previous step's value.
#[derive(Clone, Debug, PartialEq)]
pub struct StateDecl {
    pub name: Ident,
    pub dims: Vec<Expr>,
    pub update: Expr,
    pub span: Span,
}

/// `recurrence t { ... }`: a scan over the sequence axis with carried state.
#[derive(Clone, Debug, PartialEq)]
pub struct Recurrence {
    pub index: Ident,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Dims(Vec<DimDecl>),
    Input(InputDecl),
    Output(OutputDecl),
    Let(Let),
    /// `mask cond;`: pairs (i, j) where `cond` is false take no part in any reduction over `j`.
    Mask(Expr),
    /// `require cond;`: a condition on the bound shapes, checked before running.
    Require(Expr),
    Assign(Assign),
    State(StateDecl),
    Recurrence(Recurrence),
    /// A statement the parser skipped after reporting a syntax error in it.
    Error(Span),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// Levels of the tree rooted here (1 for a leaf). The parser refuses trees deeper than
    /// [`MAX_EXPR_DEPTH`], so every later recursive walk has a bounded stack.
    pub depth: u32,
}

/// The deepest expression tree the parser accepts. Written programs stay far below it (the
/// examples reach 12); a chain of 18,000 `+` terms would otherwise overflow the stack of every
/// stage that walks the tree.
pub const MAX_EXPR_DEPTH: u32 = 256;

impl Expr {
    /// A literal or a name.
    pub fn leaf(kind: ExprKind, span: Span) -> Expr {
        Expr {
            kind,
            span,
            depth: 1,
        }
    }

    /// An operator or call over already-built children; its depth follows from theirs.
    pub fn node(kind: ExprKind, span: Span) -> Expr {
        let below = match &kind {
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Name(_) => 0,
            ExprKind::Unary(_, a) => a.depth,
            ExprKind::Binary(_, a, b) => a.depth.max(b.depth),
            ExprKind::Call { args: es, .. } | ExprKind::Index { indices: es, .. } => {
                es.iter().map(|e| e.depth).max().unwrap_or(0)
            }
        };
        Expr {
            kind,
            span,
            depth: below.saturating_add(1),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Name(String),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call { callee: Ident, args: Vec<Expr> },
    Index { base: Ident, indices: Vec<Expr> },
}
