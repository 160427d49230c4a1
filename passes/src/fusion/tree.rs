//! Expressions seen through map nodes: fusion reasons about a reduction's whole argument (e.g.
//! `exp(s - m) / l`, spread over two maps by the softmax function), so maps are inlined into one
//! tree whose leaves are values computed elsewhere.

use attnc_ir::expr::{Builtin, ExprArena, ExprId, ExprNode};
use attnc_ir::graph::{Graph, Op, ValueRef};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::FrameIndex;
use std::collections::HashMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Tree {
    /// A value computed by another node.
    Value(ValueRef),
    Index(FrameIndex),
    Dim(String),
    Int(i64),
    Float(f64),
    Unary(UnaryOp, Box<Tree>),
    Binary(BinaryOp, Box<Tree>, Box<Tree>),
    Call(Builtin, Vec<Tree>),
    Extract(Box<Tree>, Box<Tree>),
}

impl Tree {
    /// The tree of a map's (or the mask's) expression; operands for which `inline` holds are
    /// replaced by their own trees, recursively.
    pub fn of_map(graph: &Graph, node: ValueRef, inline: &dyn Fn(ValueRef) -> bool) -> Tree {
        match &graph.node(node.node).op {
            Op::Map { expr, root } | Op::Mask { expr, root } => {
                let operands: Vec<ValueRef> =
                    graph.operands(node.node).iter().map(|(v, _)| *v).collect();
                from_arena(graph, expr, *root, &operands, inline)
            }
            _ => Tree::Value(node),
        }
    }

    /// Every value leaf, in order of appearance.
    pub fn leaves(&self, out: &mut Vec<ValueRef>) {
        match self {
            Tree::Value(v) => out.push(*v),
            Tree::Unary(_, a) => a.leaves(out),
            Tree::Binary(_, a, b) | Tree::Extract(a, b) => {
                a.leaves(out);
                b.leaves(out);
            }
            Tree::Call(_, args) => args.iter().for_each(|a| a.leaves(out)),
            _ => {}
        }
    }

    pub fn mentions_index(&self, fi: FrameIndex) -> bool {
        match self {
            Tree::Index(i) => *i == fi,
            Tree::Unary(_, a) => a.mentions_index(fi),
            Tree::Binary(_, a, b) | Tree::Extract(a, b) => {
                a.mentions_index(fi) || b.mentions_index(fi)
            }
            Tree::Call(_, args) => args.iter().any(|a| a.mentions_index(fi)),
            _ => false,
        }
    }

    /// Renders with value names from `names` (the dump's `%N` numbering).
    pub fn render(&self, names: &HashMap<ValueRef, String>) -> String {
        TreeDisplay { tree: self, names }.to_string()
    }

    pub fn product(factors: Vec<Tree>) -> Tree {
        factors
            .into_iter()
            .reduce(|a, b| Tree::Binary(BinaryOp::Mul, Box::new(a), Box::new(b)))
            .unwrap_or(Tree::Float(1.0))
    }

    pub fn sum(terms: Vec<Tree>) -> Tree {
        terms
            .into_iter()
            .reduce(|a, b| Tree::Binary(BinaryOp::Add, Box::new(a), Box::new(b)))
            .unwrap_or(Tree::Float(0.0))
    }
}

fn from_arena(
    graph: &Graph,
    arena: &ExprArena,
    id: ExprId,
    operands: &[ValueRef],
    inline: &dyn Fn(ValueRef) -> bool,
) -> Tree {
    let sub = |id: ExprId| Box::new(from_arena(graph, arena, id, operands, inline));
    match arena.node(id) {
        ExprNode::Operand(k) => {
            let v = operands[*k as usize];
            if inline(v) {
                Tree::of_map(graph, v, inline)
            } else {
                Tree::Value(v)
            }
        }
        ExprNode::Index(fi) => Tree::Index(*fi),
        ExprNode::Dim(d) => Tree::Dim(d.clone()),
        ExprNode::Int(v) => Tree::Int(*v),
        ExprNode::Float(v) => Tree::Float(*v),
        // Maps never hold states; a recurrence's arena is not inlined.
        ExprNode::State(..) => Tree::Float(f64::NAN),
        ExprNode::Unary(op, a) => Tree::Unary(*op, sub(*a)),
        ExprNode::Binary(op, a, b) => Tree::Binary(*op, sub(*a), sub(*b)),
        ExprNode::Call(f, args) => Tree::Call(*f, args.iter().map(|a| *sub(*a)).collect()),
        ExprNode::Extract(v, k) => Tree::Extract(sub(*v), sub(*k)),
    }
}

struct TreeDisplay<'a> {
    tree: &'a Tree,
    names: &'a HashMap<ValueRef, String>,
}

impl TreeDisplay<'_> {
    fn write(&self, f: &mut fmt::Formatter<'_>, t: &Tree, top: bool) -> fmt::Result {
        match t {
            Tree::Value(v) => match self.names.get(v) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "%?"),
            },
            Tree::Index(i) => write!(f, "{}", i.name()),
            Tree::Dim(d) => write!(f, "{d}"),
            Tree::Int(v) => write!(f, "{v}"),
            Tree::Float(v) if v.is_infinite() => {
                write!(f, "{}inf", if *v < 0.0 { "-" } else { "" })
            }
            Tree::Float(v) => write!(f, "{v:?}"),
            Tree::Unary(op, a) => {
                write!(f, "{}", if *op == UnaryOp::Neg { "-" } else { "!" })?;
                self.write(f, a, false)
            }
            Tree::Binary(op, a, b) => {
                if !top {
                    write!(f, "(")?;
                }
                self.write(f, a, false)?;
                write!(f, " {} ", op.symbol())?;
                self.write(f, b, false)?;
                if !top {
                    write!(f, ")")?;
                }
                Ok(())
            }
            Tree::Call(b, args) => {
                write!(f, "{}(", b.name())?;
                for (n, a) in args.iter().enumerate() {
                    if n > 0 {
                        write!(f, ", ")?;
                    }
                    self.write(f, a, true)?;
                }
                write!(f, ")")
            }
            Tree::Extract(v, k) => {
                self.write(f, v, false)?;
                write!(f, "[")?;
                self.write(f, k, true)?;
                write!(f, "]")
            }
        }
    }
}

impl fmt::Display for TreeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, self.tree, true)
    }
}
