//! The attention graph: a petgraph of modular ops (load, map, score, mask, row reduction,
//! aggregation, recurrence) whose edges carry the operand position and the value's type.
//! Node handles are not meant to outlive a pass; the dump renumbers nodes in a stable order.

use crate::expr::{ExprArena, ExprId};
use crate::types::{Dim, FrameIndex, TensorType, ValueType};
use attnc_kernel_abi::ElementType;
use attnc_source::Span;
use petgraph::Direction;
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableGraph};
use petgraph::visit::EdgeRef;
use std::collections::{BTreeMap, BinaryHeap};

/// How one axis of a tensor is indexed by a `load`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LoadIndex {
    /// Directly by a frame index (`q[b, h, i]`).
    Frame(FrameIndex),
    /// By an integer value computed elsewhere, the load's operand at this position (`h // g`).
    Operand(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Max,
    Min,
}

impl ReduceKind {
    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "sum",
            ReduceKind::Max => "max",
            ReduceKind::Min => "min",
        }
    }

    /// The value of the reduction over no element.
    pub fn identity(self) -> f64 {
        match self {
            ReduceKind::Sum => 0.0,
            ReduceKind::Max => f64::NEG_INFINITY,
            ReduceKind::Min => f64::INFINITY,
        }
    }

    pub fn combine(self, acc: f64, x: f64) -> f64 {
        match self {
            ReduceKind::Sum => acc + x,
            ReduceKind::Max => acc.max(x),
            ReduceKind::Min => acc.min(x),
        }
    }
}

/// A recurrent state: its feature shape and its update expression in the recurrence's arena.
#[derive(Clone, Debug, PartialEq)]
pub struct StateDef {
    pub name: String,
    /// The declared shape; the update may be a scalar that broadcasts to it.
    pub feature: crate::types::Feature,
    pub update: ExprId,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A tensor argument of the kernel. `range` is `[lo, hi]` as constant expressions in `bounds`.
    Input {
        name: String,
        ty: TensorType,
        range: Option<(ExprId, ExprId)>,
        bounds: ExprArena,
    },
    /// Reads a tensor: all axes indexed gives a scalar; all but the last gives a row (vector).
    /// Operand 0 is the input; operands 1.. are computed indices.
    Load { indices: Vec<LoadIndex> },
    /// An elementwise expression over its operands, the indices and dims.
    Map { expr: ExprArena, root: ExprId },
    /// The scoring contraction: a query-side row (varies with i, not j) dotted with a key-side row
    /// (varies with j, not i), giving one value per (i, j).
    Score,
    /// The mask: a boolean per (i, j); pairs where it is false take no part in reductions over j.
    Mask { expr: ExprArena, root: ExprId },
    /// A reduction over the key index j (operand 0), restricted to the mask (operand 1, if any).
    RowReduce { kind: ReduceKind },
    /// The aggregation contraction: sum over j of weight (operand 0) times a key-side row
    /// (operand 1), restricted to the mask (operand 2, if any).
    Aggregate,
    /// A scan over t with carried states; one result per entry of `emits`.
    Recurrence {
        arena: ExprArena,
        states: Vec<StateDef>,
        emits: Vec<ExprId>,
    },
    /// A tensor result: `axes` are the frame indices of its leading axes (the last axis is the
    /// value's feature axis when the value is a row).
    Output {
        name: String,
        ty: TensorType,
        axes: Vec<FrameIndex>,
    },
}

impl Op {
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Load { .. } => "load",
            Op::Map { .. } => "map",
            Op::Score => "score",
            Op::Mask { .. } => "mask",
            Op::RowReduce { kind } => match kind {
                ReduceKind::Sum => "row_sum",
                ReduceKind::Max => "row_max",
                ReduceKind::Min => "row_min",
            },
            Op::Aggregate => "aggregate",
            Op::Recurrence { .. } => "recurrence",
            Op::Output { .. } => "output",
        }
    }
}

/// What a node produces on each result port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortType {
    Tensor(TensorType),
    Value(ValueType),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub results: Vec<PortType>,
    /// The `.attn` name this value was bound to (`let s = ...`), for dumps and messages.
    pub name: Option<String>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// Position among the consumer's operands.
    pub operand: u32,
    /// Which result of the producer.
    pub result: u32,
    pub ty: PortType,
}

/// A reference to one result of one node, as handed around while building and rewriting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueRef {
    pub node: NodeIndex,
    pub result: u32,
}

/// A `require` condition on the dims, checked when the shapes are bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Requirement {
    pub arena: ExprArena,
    pub root: ExprId,
    pub span: Span,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DimDef {
    pub name: String,
    pub span: Span,
    /// The default value (`dim W = 256;`) as a constant expression.
    pub default: Option<(ExprArena, ExprId)>,
}

/// One attention kernel as a graph of ops.
#[derive(Clone, Debug)]
pub struct Graph {
    pub kernel: String,
    pub dims: Vec<DimDef>,
    /// The range of every frame index the kernel uses.
    pub extents: BTreeMap<FrameIndex, Dim>,
    pub requirements: Vec<Requirement>,
    inner: StableGraph<Node, Edge>,
}

impl Graph {
    pub fn new(kernel: String) -> Self {
        Graph {
            kernel,
            dims: Vec::new(),
            extents: BTreeMap::new(),
            requirements: Vec::new(),
            inner: StableGraph::new(),
        }
    }

    pub fn add_node(&mut self, node: Node) -> NodeIndex {
        self.inner.add_node(node)
    }

    /// Connects `value` as operand `operand` of `consumer`.
    pub fn connect(&mut self, value: ValueRef, consumer: NodeIndex, operand: u32) -> EdgeIndex {
        let ty = self.result_type(value).clone();
        self.inner.add_edge(
            value.node,
            consumer,
            Edge {
                operand,
                result: value.result,
                ty,
            },
        )
    }

    /// Re-reads every edge's type from its producer, after result types were widened in place.
    pub fn refresh_edge_types(&mut self) {
        let edges: Vec<_> = self.inner.edge_indices().collect();
        for e in edges {
            let Some((producer, _)) = self.inner.edge_endpoints(e) else {
                continue;
            };
            let result = self.inner[e].result as usize;
            if let Some(ty) = self.inner[producer].results.get(result).cloned() {
                self.inner[e].ty = ty;
            }
        }
    }

    /// Replaces every operand of `consumer` by `values`, in order (a pass that rewrites an op's
    /// expression and the values it reads).
    pub fn set_operands(&mut self, consumer: NodeIndex, values: &[ValueRef]) {
        let old: Vec<EdgeIndex> = self
            .inner
            .edges_directed(consumer, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.inner.remove_edge(e);
        }
        for (k, v) in values.iter().enumerate() {
            self.connect(*v, consumer, k as u32);
        }
    }

    /// Removes a node and its edges (passes use it for values nothing reads).
    pub fn remove_node(&mut self, n: NodeIndex) -> Option<Node> {
        self.inner.remove_node(n)
    }

    pub fn node(&self, n: NodeIndex) -> &Node {
        &self.inner[n]
    }

    pub fn node_mut(&mut self, n: NodeIndex) -> &mut Node {
        &mut self.inner[n]
    }

    pub fn result_type(&self, v: ValueRef) -> &PortType {
        &self.inner[v.node].results[v.result as usize]
    }

    /// The type of a result, if `v` names one of this graph's.
    pub fn try_result_type(&self, v: ValueRef) -> Option<&PortType> {
        self.inner
            .node_weight(v.node)
            .and_then(|n| n.results.get(v.result as usize))
    }

    /// The value type of a result; panics only if a builder connected a tensor where a value was
    /// expected, which the verifier rejects first.
    pub fn value_type(&self, v: ValueRef) -> Option<&ValueType> {
        match self.result_type(v) {
            PortType::Value(t) => Some(t),
            PortType::Tensor(_) => None,
        }
    }

    pub fn node_indices(&self) -> impl Iterator<Item = NodeIndex> + '_ {
        self.inner.node_indices()
    }

    pub fn node_count(&self) -> usize {
        self.inner.node_count()
    }

    /// Operands of `n` sorted by position, with the edge that carries each.
    pub fn operands(&self, n: NodeIndex) -> Vec<(ValueRef, &Edge)> {
        let mut ops: Vec<(ValueRef, &Edge)> = self
            .inner
            .edges_directed(n, Direction::Incoming)
            .map(|e| {
                (
                    ValueRef {
                        node: e.source(),
                        result: e.weight().result,
                    },
                    e.weight(),
                )
            })
            .collect();
        ops.sort_by_key(|(_, e)| e.operand);
        ops
    }

    /// The nodes that read any result of `n`.
    pub fn users(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut users: Vec<NodeIndex> = self
            .inner
            .neighbors_directed(n, Direction::Outgoing)
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// A topological order that is the same on every run: among ready nodes, the one created
    /// first goes first. `None` if the graph has a cycle.
    pub fn topo_order(&self) -> Option<Vec<NodeIndex>> {
        let mut indegree: BTreeMap<NodeIndex, usize> = self
            .inner
            .node_indices()
            .map(|n| (n, self.inner.edges_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: BinaryHeap<std::cmp::Reverse<NodeIndex>> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| std::cmp::Reverse(*n))
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(std::cmp::Reverse(n)) = ready.pop() {
            order.push(n);
            for e in self.inner.edges_directed(n, Direction::Outgoing) {
                if let Some(d) = indegree.get_mut(&e.target()) {
                    *d -= 1;
                    if *d == 0 {
                        ready.push(std::cmp::Reverse(e.target()));
                    }
                }
            }
        }
        (order.len() == self.inner.node_count()).then_some(order)
    }

    /// The kernel's inputs in declaration order.
    pub fn inputs(&self) -> Vec<(NodeIndex, &str, &TensorType)> {
        self.inner
            .node_indices()
            .filter_map(|n| match &self.inner[n].op {
                Op::Input { name, ty, .. } => Some((n, name.as_str(), ty)),
                _ => None,
            })
            .collect()
    }

    /// The kernel's outputs in creation order.
    pub fn outputs(&self) -> Vec<(NodeIndex, &str, &TensorType)> {
        self.inner
            .node_indices()
            .filter_map(|n| match &self.inner[n].op {
                Op::Output { name, ty, .. } => Some((n, name.as_str(), ty)),
                _ => None,
            })
            .collect()
    }

    /// The storage dtype of every input and output by name.
    pub fn tensor_dtypes(&self) -> BTreeMap<String, ElementType> {
        self.inputs()
            .into_iter()
            .chain(self.outputs())
            .map(|(_, name, ty)| (name.to_string(), ty.dtype))
            .collect()
    }
}
