//! Types of the graph IR: symbolic dimensions, the frame indices (b, h, i, j, t), and the type of
//! every value flowing on an edge (which indices it varies over, and its per-point feature shape).

use attnc_kernel_abi::ElementType;
use std::collections::BTreeMap;
use std::fmt;

/// A symbolic size: a `dim` symbol, a constant, or arithmetic on them (`2 * S - 1`).
/// Equality is structural after constant folding, which is what shape checking needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    Sym(String),
    Const(i64),
    Add(Box<Dim>, Box<Dim>),
    Sub(Box<Dim>, Box<Dim>),
    Mul(Box<Dim>, Box<Dim>),
    FloorDiv(Box<Dim>, Box<Dim>),
}

impl Dim {
    /// Folds constant sub-expressions so `2 * 3` and `6` compare equal.
    pub fn simplified(self) -> Dim {
        fn fold(
            a: Dim,
            b: Dim,
            f: fn(i64, i64) -> Option<i64>,
            mk: fn(Box<Dim>, Box<Dim>) -> Dim,
        ) -> Dim {
            let (a, b) = (a.simplified(), b.simplified());
            if let (Dim::Const(x), Dim::Const(y)) = (&a, &b)
                && let Some(v) = f(*x, *y)
            {
                return Dim::Const(v);
            }
            mk(Box::new(a), Box::new(b))
        }
        match self {
            Dim::Add(a, b) => fold(*a, *b, i64::checked_add, Dim::Add),
            Dim::Sub(a, b) => fold(*a, *b, i64::checked_sub, Dim::Sub),
            Dim::Mul(a, b) => fold(*a, *b, i64::checked_mul, Dim::Mul),
            Dim::FloorDiv(a, b) => fold(
                *a,
                *b,
                |x, y| (y != 0).then(|| x.div_euclid(y)),
                Dim::FloorDiv,
            ),
            d => d,
        }
    }

    /// The value under `dims`, or the name of the first unbound symbol.
    pub fn eval(&self, dims: &BTreeMap<String, i64>) -> Result<i64, DimEvalError> {
        let bin = |a: &Dim, b: &Dim, f: fn(i64, i64) -> Option<i64>| -> Result<i64, DimEvalError> {
            f(a.eval(dims)?, b.eval(dims)?).ok_or_else(|| DimEvalError::Overflow(self.to_string()))
        };
        match self {
            Dim::Sym(s) => dims
                .get(s)
                .copied()
                .ok_or_else(|| DimEvalError::Unbound(s.clone())),
            Dim::Const(c) => Ok(*c),
            Dim::Add(a, b) => bin(a, b, i64::checked_add),
            Dim::Sub(a, b) => bin(a, b, i64::checked_sub),
            Dim::Mul(a, b) => bin(a, b, i64::checked_mul),
            Dim::FloorDiv(a, b) => bin(a, b, |x, y| (y != 0).then(|| x.div_euclid(y))),
        }
    }

    /// The bare symbol, if this dimension is one (only those can be bound from a tensor's shape).
    pub fn as_symbol(&self) -> Option<&str> {
        match self {
            Dim::Sym(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DimEvalError {
    Unbound(String),
    Overflow(String),
}

impl Dim {
    /// Binding strength, for printing with the fewest parentheses.
    fn precedence(&self) -> u8 {
        match self {
            Dim::Add(..) | Dim::Sub(..) => 1,
            Dim::Mul(..) | Dim::FloorDiv(..) => 2,
            Dim::Sym(_) | Dim::Const(_) => 3,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, op, b) = match self {
            Dim::Sym(s) => return write!(f, "{s}"),
            Dim::Const(c) => return write!(f, "{c}"),
            Dim::Add(a, b) => (a, "+", b),
            Dim::Sub(a, b) => (a, "-", b),
            Dim::Mul(a, b) => (a, "*", b),
            Dim::FloorDiv(a, b) => (a, "//", b),
        };
        // The left operand needs parentheses if it binds looser; the right one also if equal,
        // since - and // are not associative. The text re-parses to the same dimension.
        let own = self.precedence();
        if a.precedence() < own {
            write!(f, "({a})")?;
        } else {
            write!(f, "{a}")?;
        }
        write!(f, " {op} ")?;
        if b.precedence() <= own {
            write!(f, "({b})")
        } else {
            write!(f, "{b}")
        }
    }
}

/// The loop indices of an attention kernel. Their meaning is fixed by the language: batch, query
/// head, query position, key position, and the step of a recurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameIndex {
    B,
    H,
    I,
    J,
    T,
}

impl FrameIndex {
    pub const ALL: [FrameIndex; 5] = [
        FrameIndex::B,
        FrameIndex::H,
        FrameIndex::I,
        FrameIndex::J,
        FrameIndex::T,
    ];

    pub fn from_name(name: &str) -> Option<FrameIndex> {
        Some(match name {
            "b" => FrameIndex::B,
            "h" => FrameIndex::H,
            "i" => FrameIndex::I,
            "j" => FrameIndex::J,
            "t" => FrameIndex::T,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FrameIndex::B => "b",
            FrameIndex::H => "h",
            FrameIndex::I => "i",
            FrameIndex::J => "j",
            FrameIndex::T => "t",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of frame indices: the loop nest over which a value varies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexSet(u8);

impl IndexSet {
    pub const EMPTY: IndexSet = IndexSet(0);

    pub fn of(indices: &[FrameIndex]) -> IndexSet {
        IndexSet(indices.iter().fold(0, |acc, i| acc | i.bit()))
    }

    pub fn contains(self, i: FrameIndex) -> bool {
        self.0 & i.bit() != 0
    }

    pub fn with(self, i: FrameIndex) -> IndexSet {
        IndexSet(self.0 | i.bit())
    }

    pub fn without(self, i: FrameIndex) -> IndexSet {
        IndexSet(self.0 & !i.bit())
    }

    pub fn union(self, other: IndexSet) -> IndexSet {
        IndexSet(self.0 | other.0)
    }

    pub fn is_subset(self, other: IndexSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// In canonical order b, h, i, j, t.
    pub fn iter(self) -> impl Iterator<Item = FrameIndex> {
        FrameIndex::ALL
            .into_iter()
            .filter(move |i| self.contains(*i))
    }
}

impl fmt::Display for IndexSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(FrameIndex::name).collect();
        write!(f, "{}", names.join(","))
    }
}

/// What a value is at each point of its index set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    Scalar,
    /// A row along one feature axis, e.g. a query row over `D`.
    Vector(Dim),
    /// A recurrent state, e.g. `[D, Dv]`.
    Matrix(Dim, Dim),
    /// `diag(v)`: only ever an operand of `@`, never materialised.
    Diag(Dim),
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Feature::Scalar => Ok(()),
            Feature::Vector(d) => write!(f, "{d}"),
            Feature::Matrix(a, b) => write!(f, "{a}x{b}"),
            Feature::Diag(d) => write!(f, "diag {d}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarKind {
    Float,
    Int,
    Bool,
}

impl ScalarKind {
    pub fn name(self) -> &'static str {
        match self {
            ScalarKind::Float => "float",
            ScalarKind::Int => "int",
            ScalarKind::Bool => "bool",
        }
    }
}

/// The type of a value on an edge: e.g. `float[b,h,i,j]` for a score, `float[b,h,i | D]` for a
/// query row. Precision is not fixed here: the reference interpreter computes in f64, kernels
/// pick their accumulator types when they are lowered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValueType {
    pub kind: ScalarKind,
    pub indices: IndexSet,
    pub feature: Feature,
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}", self.kind.name(), self.indices)?;
        if self.feature != Feature::Scalar {
            write!(f, " | {}", self.feature)?;
        }
        write!(f, "]")
    }
}

/// A tensor in memory: an input or output of the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: ElementType,
    pub dims: Vec<Dim>,
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.dims.iter().map(Dim::to_string).collect();
        write!(f, "{}[{}]", self.dtype.name(), dims.join(", "))
    }
}
