//! Anonymous maps by content, so that two equal expressions built at different places (the same
//! argument of a function inlined at every level) become one node instead of doubling the
//! work at each level.

use attnc_ir::expr::{Builtin, ExprArena, ExprId, ExprNode, StateTime};
use attnc_ir::graph::ValueRef;
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::FrameIndex;

/// What decides a map's result: its arena's nodes, its root and its operands. Types follow from
/// these, and spans are not part of the meaning.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MapKey {
    nodes: Vec<NodeKey>,
    root: u32,
    operands: Vec<ValueRef>,
}

/// An arena node with floats compared by their bits (so `Eq` and `Hash` agree).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum NodeKey {
    Operand(u32),
    Index(FrameIndex),
    Dim(String),
    Int(i64),
    Float(u64),
    State(u32, StateTime),
    Unary(UnaryOp, u32),
    Binary(BinaryOp, u32, u32),
    Call(Builtin, Vec<u32>),
    Extract(u32, u32),
}

impl MapKey {
    pub(crate) fn new(arena: &ExprArena, root: ExprId, operands: &[ValueRef]) -> MapKey {
        let id = |e: &ExprId| e.index() as u32;
        let nodes = arena
            .ids()
            .map(|e| match arena.node(e) {
                ExprNode::Operand(k) => NodeKey::Operand(*k),
                ExprNode::Index(fi) => NodeKey::Index(*fi),
                ExprNode::Dim(d) => NodeKey::Dim(d.clone()),
                ExprNode::Int(v) => NodeKey::Int(*v),
                ExprNode::Float(v) => NodeKey::Float(v.to_bits()),
                ExprNode::State(k, t) => NodeKey::State(*k, *t),
                ExprNode::Unary(op, a) => NodeKey::Unary(*op, id(a)),
                ExprNode::Binary(op, a, b) => NodeKey::Binary(*op, id(a), id(b)),
                ExprNode::Call(f, args) => NodeKey::Call(*f, args.iter().map(id).collect()),
                ExprNode::Extract(v, k) => NodeKey::Extract(id(v), id(k)),
            })
            .collect();
        MapKey {
            nodes,
            root: id(&root),
            operands: operands.to_vec(),
        }
    }
}
