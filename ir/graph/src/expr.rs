//! Elementwise expressions inside one op (a score modification, a mask, a recurrence's update), kept
//! in a small typed arena per op with a parallel span table, so errors found later still point
//! into the `.attn` source.

use crate::ops::{BinaryOp, UnaryOp};
use crate::types::{Feature, FrameIndex, ScalarKind};
use attnc_source::Span;
use std::collections::BTreeMap;
use std::fmt;

/// A handle into one op's [`ExprArena`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExprId(u32);

impl ExprId {
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// Stands for "no expression yet" while an arena is empty; never dereferenced.
    pub fn placeholder() -> ExprId {
        ExprId(u32::MAX)
    }
}

/// Functions built into the language (the row reductions over `j` are graph ops, not these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    Exp,
    Log,
    Log1p,
    Sqrt,
    Rsqrt,
    Tanh,
    Sigmoid,
    LogSigmoid,
    Softplus,
    Relu,
    Elu,
    Silu,
    Gelu,
    Abs,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Expm1,
    Exp2,
    Log2,
    Erf,
    /// -1, 0 or 1 (NaN for NaN), as NumPy's and PyTorch's `sign`.
    Sign,
    Floor,
    Ceil,
    Pow,
    /// Elementwise `min(a, b)` / `max(a, b)`.
    Min,
    Max,
    Select,
    /// Floor to an integer (for index arithmetic such as position buckets).
    ToInt,
    ToFloat,
    /// Along the feature axis: `dot(a, b)`, `sum(x)`, `mean(x)`, `max(x)`, `min(x)`, `norm(x)`.
    Dot,
    SumFeature,
    MeanFeature,
    MaxFeature,
    MinFeature,
    Norm,
    Cumsum,
    Cumprod,
    Outer,
    Diag,
}

impl Builtin {
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Exp => "exp",
            Builtin::Log => "log",
            Builtin::Log1p => "log1p",
            Builtin::Sqrt => "sqrt",
            Builtin::Rsqrt => "rsqrt",
            Builtin::Tanh => "tanh",
            Builtin::Sigmoid => "sigmoid",
            Builtin::LogSigmoid => "log_sigmoid",
            Builtin::Softplus => "softplus",
            Builtin::Relu => "relu",
            Builtin::Elu => "elu",
            Builtin::Silu => "silu",
            Builtin::Gelu => "gelu",
            Builtin::Abs => "abs",
            Builtin::Sin => "sin",
            Builtin::Cos => "cos",
            Builtin::Tan => "tan",
            Builtin::Asin => "asin",
            Builtin::Acos => "acos",
            Builtin::Atan => "atan",
            Builtin::Sinh => "sinh",
            Builtin::Cosh => "cosh",
            Builtin::Expm1 => "expm1",
            Builtin::Exp2 => "exp2",
            Builtin::Log2 => "log2",
            Builtin::Erf => "erf",
            Builtin::Sign => "sign",
            Builtin::Floor => "floor",
            Builtin::Ceil => "ceil",
            Builtin::Pow => "pow",
            Builtin::Min => "min",
            Builtin::Max => "max",
            Builtin::Select => "select",
            Builtin::ToInt => "int",
            Builtin::ToFloat => "float",
            Builtin::Dot => "dot",
            Builtin::SumFeature => "sum",
            Builtin::MeanFeature => "mean",
            Builtin::MaxFeature => "max",
            Builtin::MinFeature => "min",
            Builtin::Norm => "norm",
            Builtin::Cumsum => "cumsum",
            Builtin::Cumprod => "cumprod",
            Builtin::Outer => "outer",
            Builtin::Diag => "diag",
        }
    }

    /// The names [`Builtin::unary_elementwise`] accepts, for "did you mean" suggestions.
    pub const UNARY_NAMES: &[&str] = &[
        "exp",
        "log",
        "log1p",
        "sqrt",
        "rsqrt",
        "tanh",
        "sigmoid",
        "log_sigmoid",
        "softplus",
        "relu",
        "elu",
        "silu",
        "gelu",
        "abs",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "sinh",
        "cosh",
        "expm1",
        "exp2",
        "log2",
        "erf",
        "sign",
        "floor",
        "ceil",
    ];

    /// Unary float functions applied point by point (to every element of a vector or matrix).
    pub fn unary_elementwise(name: &str) -> Option<Builtin> {
        Some(match name {
            "exp" => Builtin::Exp,
            "log" => Builtin::Log,
            "log1p" => Builtin::Log1p,
            "sqrt" => Builtin::Sqrt,
            "rsqrt" => Builtin::Rsqrt,
            "tanh" => Builtin::Tanh,
            "sigmoid" => Builtin::Sigmoid,
            "log_sigmoid" => Builtin::LogSigmoid,
            "softplus" => Builtin::Softplus,
            "relu" => Builtin::Relu,
            "elu" => Builtin::Elu,
            "silu" => Builtin::Silu,
            "gelu" => Builtin::Gelu,
            "abs" => Builtin::Abs,
            "sin" => Builtin::Sin,
            "cos" => Builtin::Cos,
            "tan" => Builtin::Tan,
            "asin" => Builtin::Asin,
            "acos" => Builtin::Acos,
            "atan" => Builtin::Atan,
            "sinh" => Builtin::Sinh,
            "cosh" => Builtin::Cosh,
            "expm1" => Builtin::Expm1,
            "exp2" => Builtin::Exp2,
            "log2" => Builtin::Log2,
            "erf" => Builtin::Erf,
            "sign" => Builtin::Sign,
            "floor" => Builtin::Floor,
            "ceil" => Builtin::Ceil,
            _ => return None,
        })
    }

    /// Applies a scalar function; `None` for builtins that are not scalar-to-scalar.
    pub fn apply_scalar(self, x: f64) -> Option<f64> {
        Some(match self {
            Builtin::Exp => x.exp(),
            Builtin::Log => x.ln(),
            Builtin::Log1p => x.ln_1p(),
            Builtin::Sqrt => x.sqrt(),
            Builtin::Rsqrt => 1.0 / x.sqrt(),
            Builtin::Tanh => x.tanh(),
            Builtin::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            // -softplus(-x), written to stay finite for large |x|.
            Builtin::LogSigmoid => x.min(0.0) - (-x.abs()).exp().ln_1p(),
            Builtin::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Builtin::Relu => x.max(0.0),
            Builtin::Elu => {
                if x > 0.0 {
                    x
                } else {
                    x.exp_m1()
                }
            }
            Builtin::Silu => x / (1.0 + (-x).exp()),
            // The tanh approximation, as used by GPT-2 and most kernels.
            Builtin::Gelu => {
                0.5 * x
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
            }
            Builtin::Abs => x.abs(),
            Builtin::Sin => x.sin(),
            Builtin::Cos => x.cos(),
            Builtin::Tan => x.tan(),
            Builtin::Asin => x.asin(),
            Builtin::Acos => x.acos(),
            Builtin::Atan => x.atan(),
            Builtin::Sinh => x.sinh(),
            Builtin::Cosh => x.cosh(),
            Builtin::Expm1 => x.exp_m1(),
            Builtin::Exp2 => x.exp2(),
            Builtin::Log2 => x.log2(),
            Builtin::Erf => crate::special::erf(x),
            Builtin::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    // 0 stays 0 and NaN stays NaN.
                    x
                }
            }
            Builtin::Floor | Builtin::ToInt => x.floor(),
            Builtin::Ceil => x.ceil(),
            Builtin::ToFloat => x,
            _ => return None,
        })
    }
}

/// Whether a state is read before or after this step's update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateTime {
    /// In a `state` update: the value after step `t - 1` (zero before the first step).
    Previous,
    /// In lets and outputs of the recurrence: the value after step `t`.
    Current,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprNode {
    /// The op's operand at this position (an edge into the op).
    Operand(u32),
    Index(FrameIndex),
    /// The bound value of a `dim` symbol.
    Dim(String),
    Int(i64),
    Float(f64),
    /// A recurrence's state by position.
    State(u32, StateTime),
    Unary(UnaryOp, ExprId),
    Binary(BinaryOp, ExprId, ExprId),
    Call(Builtin, Vec<ExprId>),
    /// `v[k]`: one element of a vector value.
    Extract(ExprId, ExprId),
}

impl ExprNode {
    /// The nodes this one reads, in order.
    pub fn children(&self) -> Vec<ExprId> {
        match self {
            ExprNode::Unary(_, a) => vec![*a],
            ExprNode::Binary(_, a, b) | ExprNode::Extract(a, b) => vec![*a, *b],
            ExprNode::Call(_, args) => args.clone(),
            _ => Vec::new(),
        }
    }
}

/// The type of one arena node: scalar kind and per-point feature shape (its index set is the op's).
#[derive(Clone, Debug, PartialEq)]
pub struct ExprType {
    pub kind: ScalarKind,
    pub feature: Feature,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExprArena {
    nodes: Vec<ExprNode>,
    types: Vec<ExprType>,
    spans: Vec<Span>,
}

impl ExprArena {
    pub fn push(&mut self, node: ExprNode, ty: ExprType, span: Span) -> ExprId {
        self.nodes.push(node);
        self.types.push(ty);
        self.spans.push(span);
        ExprId(self.nodes.len() as u32 - 1)
    }

    pub fn node(&self, id: ExprId) -> &ExprNode {
        &self.nodes[id.index()]
    }

    pub fn ty(&self, id: ExprId) -> &ExprType {
        &self.types[id.index()]
    }

    pub fn span(&self, id: ExprId) -> Span {
        self.spans[id.index()]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// All handles in creation order; children always come before their parents.
    pub fn ids(&self) -> impl Iterator<Item = ExprId> {
        (0..self.nodes.len() as u32).map(ExprId)
    }

    /// Renders the expression rooted at `root`, naming operands `%N` with the given node numbers
    /// and states by their names.
    pub fn render(&self, root: ExprId, operands: &[String], states: &[String]) -> String {
        ExprDisplay {
            arena: self,
            root,
            operands,
            states,
        }
        .to_string()
    }

    /// Evaluates an expression with no operands, indices or states (dim arithmetic, `require`
    /// conditions, input ranges) under the given dim values.
    pub fn eval_constant(&self, root: ExprId, dims: &BTreeMap<String, i64>) -> Result<f64, String> {
        self.eval_scalar(root, dims, None)
    }

    /// Evaluates a scalar expression of dims and, when `point` gives their values (indexed by
    /// `FrameIndex as usize`), of the frame indices: what a mask over (i, j) needs.
    pub fn eval_scalar(
        &self,
        root: ExprId,
        dims: &BTreeMap<String, i64>,
        point: Option<&[i64; 5]>,
    ) -> Result<f64, String> {
        self.eval_scalar_with(root, dims, point, &|k| {
            Err(format!(
                "operand {k} in an expression evaluated without operands"
            ))
        })
    }

    /// [`Self::eval_scalar`] where `operand` gives the value of each operand at the point (a
    /// mask reading a `let` of indices, evaluated through the let).
    pub fn eval_scalar_with(
        &self,
        root: ExprId,
        dims: &BTreeMap<String, i64>,
        point: Option<&[i64; 5]>,
        operand: &dyn Fn(u32) -> Result<f64, String>,
    ) -> Result<f64, String> {
        let value = |id: ExprId| self.eval_scalar_with(id, dims, point, operand);
        Ok(match self.node(root) {
            ExprNode::Operand(k) => operand(*k)?,
            ExprNode::Index(fi) => match point {
                Some(p) => p[*fi as usize] as f64,
                None => return Err(format!("index `{}` in a constant expression", fi.name())),
            },
            ExprNode::Int(v) => *v as f64,
            ExprNode::Float(v) => *v,
            ExprNode::Dim(d) => *dims
                .get(d)
                .ok_or_else(|| format!("dim `{d}` has no value"))?
                as f64,
            ExprNode::Unary(UnaryOp::Neg, a) => -value(*a)?,
            ExprNode::Unary(UnaryOp::Not, a) => bool_f64(value(*a)? == 0.0),
            ExprNode::Binary(op, a, b) => binary_scalar(*op, value(*a)?, value(*b)?),
            ExprNode::Call(Builtin::Pow, args) if args.len() == 2 => {
                value(args[0])?.powf(value(args[1])?)
            }
            ExprNode::Call(Builtin::Min, args) if args.len() == 2 => {
                value(args[0])?.min(value(args[1])?)
            }
            ExprNode::Call(Builtin::Max, args) if args.len() == 2 => {
                value(args[0])?.max(value(args[1])?)
            }
            ExprNode::Call(Builtin::Select, args) if args.len() == 3 => {
                if value(args[0])? != 0.0 {
                    value(args[1])?
                } else {
                    value(args[2])?
                }
            }
            ExprNode::Call(f, args) if args.len() == 1 => {
                let x = value(args[0])?;
                f.apply_scalar(x)
                    .ok_or_else(|| format!("`{}` is not a constant function", f.name()))?
            }
            other => return Err(format!("not a constant expression: {other:?}")),
        })
    }
}

pub fn bool_f64(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The scalar meaning of a binary operator. Integers and booleans are carried as exact f64
/// values; `//` and `%` follow Python (floor division, remainder with the divisor's sign).
pub fn binary_scalar(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul | BinaryOp::MatMul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::FloorDiv => (a / b).floor(),
        BinaryOp::Rem => a - b * (a / b).floor(),
        BinaryOp::Eq => bool_f64(a == b),
        BinaryOp::Ne => bool_f64(a != b),
        BinaryOp::Lt => bool_f64(a < b),
        BinaryOp::Le => bool_f64(a <= b),
        BinaryOp::Gt => bool_f64(a > b),
        BinaryOp::Ge => bool_f64(a >= b),
        BinaryOp::And => bool_f64(a != 0.0 && b != 0.0),
        BinaryOp::Or => bool_f64(a != 0.0 || b != 0.0),
    }
}

struct ExprDisplay<'a> {
    arena: &'a ExprArena,
    root: ExprId,
    operands: &'a [String],
    states: &'a [String],
}

impl ExprDisplay<'_> {
    fn write(&self, f: &mut fmt::Formatter<'_>, id: ExprId, top: bool) -> fmt::Result {
        match self.arena.node(id) {
            ExprNode::Operand(k) => match self.operands.get(*k as usize) {
                Some(name) => write!(f, "{name}"),
                None => write!(f, "$operand{k}"),
            },
            ExprNode::Index(i) => write!(f, "{}", i.name()),
            ExprNode::Dim(d) => write!(f, "{d}"),
            ExprNode::Int(v) => write!(f, "{v}"),
            ExprNode::Float(v) if v.is_infinite() => {
                write!(f, "{}inf", if *v < 0.0 { "-" } else { "" })
            }
            ExprNode::Float(v) => write!(f, "{v:?}"),
            ExprNode::State(k, time) => {
                let name = self
                    .states
                    .get(*k as usize)
                    .map_or("$state", |s| s.as_str());
                match time {
                    StateTime::Previous => write!(f, "{name}'prev"),
                    StateTime::Current => write!(f, "{name}"),
                }
            }
            ExprNode::Unary(op, a) => {
                write!(f, "{}", if *op == UnaryOp::Neg { "-" } else { "!" })?;
                self.write(f, *a, false)
            }
            ExprNode::Binary(op, a, b) => {
                if !top {
                    write!(f, "(")?;
                }
                self.write(f, *a, false)?;
                write!(f, " {} ", op.symbol())?;
                self.write(f, *b, false)?;
                if !top {
                    write!(f, ")")?;
                }
                Ok(())
            }
            ExprNode::Call(b, args) => {
                write!(f, "{}(", b.name())?;
                for (n, a) in args.iter().enumerate() {
                    if n > 0 {
                        write!(f, ", ")?;
                    }
                    self.write(f, *a, true)?;
                }
                write!(f, ")")
            }
            ExprNode::Extract(v, k) => {
                self.write(f, *v, false)?;
                write!(f, "[")?;
                self.write(f, *k, true)?;
                write!(f, "]")
            }
        }
    }
}

impl fmt::Display for ExprDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, self.root, true)
    }
}
