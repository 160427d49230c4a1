//! The verifier: the invariants of the graph that every pass and backend relies on. It runs after
//! the graph is built and after every pass; a failure is a compiler bug, never a user error.

use crate::expr::ExprNode;
use crate::graph::{Graph, LoadIndex, Op, PortType};
use crate::types::{Feature, FrameIndex, IndexSet, ScalarKind, ValueType};
use petgraph::stable_graph::NodeIndex;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("node {node} ({op}): {message}")]
pub struct VerifyError {
    pub node: usize,
    pub op: &'static str,
    pub message: String,
}

/// Checks the whole graph; returns every violation found.
pub fn verify(graph: &Graph) -> Result<(), Vec<VerifyError>> {
    let mut errors = Vec::new();
    if graph.topo_order().is_none() {
        errors.push(VerifyError {
            node: 0,
            op: "graph",
            message: "the graph has a cycle".to_string(),
        });
        return Err(errors);
    }
    if graph.outputs().is_empty() {
        errors.push(VerifyError {
            node: 0,
            op: "graph",
            message: "the graph has no output".to_string(),
        });
    }
    for n in graph.node_indices() {
        let mut check = Checker {
            graph,
            node: n,
            errors: &mut errors,
        };
        check.edges();
        check.op();
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

struct Checker<'a> {
    graph: &'a Graph,
    node: NodeIndex,
    errors: &'a mut Vec<VerifyError>,
}

impl Checker<'_> {
    fn fail(&mut self, message: impl Into<String>) {
        self.errors.push(VerifyError {
            node: self.node.index(),
            op: self.graph.node(self.node).op.mnemonic(),
            message: message.into(),
        });
    }

    fn operand_types(&self) -> Vec<Option<ValueType>> {
        self.graph
            .operands(self.node)
            .iter()
            .map(|(_, e)| match &e.ty {
                PortType::Value(t) => Some(t.clone()),
                PortType::Tensor(_) => None,
            })
            .collect()
    }

    fn result(&self, k: usize) -> Option<ValueType> {
        match self.graph.node(self.node).results.get(k) {
            Some(PortType::Value(t)) => Some(t.clone()),
            _ => None,
        }
    }

    /// Operand positions are 0..n without gaps, and each edge carries its producer's type.
    fn edges(&mut self) {
        let ops = self.graph.operands(self.node);
        for (k, (v, e)) in ops.iter().enumerate() {
            if e.operand as usize != k {
                self.fail(format!("operand positions are not 0..{}", ops.len()));
                return;
            }
            let producer = &self.graph.node(v.node).results;
            if producer.get(e.result as usize) != Some(&e.ty) {
                self.fail(format!(
                    "operand {k} carries a type its producer does not give"
                ));
            }
        }
        for r in &self.graph.node(self.node).results {
            if let PortType::Value(t) = r {
                for fi in t.indices.iter() {
                    if !self.graph.extents.contains_key(&fi) {
                        self.fail(format!("index {} has no range", fi.name()));
                    }
                }
            }
        }
    }

    fn op(&mut self) {
        let ops = self.operand_types();
        let graph = self.graph;
        let node = graph.node(self.node);
        match &node.op {
            Op::Input { ty, .. } => {
                if !ops.is_empty() || node.results != vec![PortType::Tensor(ty.clone())] {
                    self.fail("an input has no operands and yields its tensor");
                }
            }
            Op::Load { indices } => self.load(indices, &ops),
            Op::Map { expr, root } | Op::Mask { expr, root } => {
                let is_mask = matches!(node.op, Op::Mask { .. });
                if ops.iter().any(Option::is_none) {
                    self.fail("operands must be values");
                }
                for id in expr.ids() {
                    if let ExprNode::Operand(k) = expr.node(id)
                        && *k as usize >= ops.len()
                    {
                        self.fail(format!("expression reads operand {k} of {}", ops.len()));
                    }
                    if let ExprNode::State(..) = expr.node(id) {
                        self.fail("a state outside a recurrence");
                    }
                }
                let rt = expr.ty(*root);
                match self.result(0) {
                    Some(t) if t.kind == rt.kind && t.feature == rt.feature => {
                        let allowed = IndexSet::of(&[
                            FrameIndex::B,
                            FrameIndex::H,
                            FrameIndex::I,
                            FrameIndex::J,
                        ]);
                        if is_mask && (t.kind != ScalarKind::Bool || !t.indices.is_subset(allowed))
                        {
                            self.fail("a mask is a boolean over b, h, i, j");
                        }
                    }
                    _ => self.fail("result type differs from the expression's type"),
                }
            }
            Op::Score => match (ops.as_slice(), self.result(0)) {
                ([Some(q), Some(k)], Some(r)) => {
                    let vectors = matches!((&q.feature, &k.feature), (Feature::Vector(a), Feature::Vector(b)) if a == b);
                    let sides = q.indices.contains(FrameIndex::I)
                        && !q.indices.contains(FrameIndex::J)
                        && k.indices.contains(FrameIndex::J)
                        && !k.indices.contains(FrameIndex::I);
                    if !vectors || !sides {
                        self.fail("score takes a query-side row and a key-side row of one length");
                    }
                    if r.indices != q.indices.union(k.indices) || r.feature != Feature::Scalar {
                        self.fail("score yields one scalar per (query, key) pair");
                    }
                }
                _ => self.fail("score takes two operands"),
            },
            Op::RowReduce { .. } => {
                self.mask_operand(&ops, 1);
                let masked = mask_indices(&ops, 1);
                match (ops.first(), self.result(0)) {
                    (Some(Some(x)), Some(r))
                        if r.indices == x.indices.union(masked).without(FrameIndex::J)
                            && r.feature == x.feature => {}
                    _ => self.fail("a row reduction removes j and keeps the feature shape"),
                }
            }
            Op::Aggregate => {
                self.mask_operand(&ops, 2);
                let masked = mask_indices(&ops, 2);
                match (ops.first(), ops.get(1), self.result(0)) {
                    (Some(Some(w)), Some(Some(v)), Some(r)) => {
                        let ok = w.feature == Feature::Scalar
                            && matches!(v.feature, Feature::Vector(_))
                            && r.feature == v.feature
                            && r.indices
                                == w.indices
                                    .union(v.indices)
                                    .union(masked)
                                    .without(FrameIndex::J);
                        if !ok {
                            self.fail("aggregate sums scalar weight times row over j");
                        }
                    }
                    _ => self.fail("aggregate takes a weight and a row"),
                }
            }
            Op::Recurrence {
                arena,
                states,
                emits,
            } => {
                if node.results.len() != emits.len() {
                    self.fail("one result per emitted value");
                }
                let in_range = states
                    .iter()
                    .map(|s| s.update)
                    .chain(emits.iter().copied())
                    .all(|id| id.index() < arena.len());
                if !in_range {
                    self.fail("expression handle out of range");
                }
                for id in arena.ids() {
                    match arena.node(id) {
                        ExprNode::Operand(k) if *k as usize >= ops.len() => {
                            self.fail("reads a missing operand")
                        }
                        ExprNode::State(k, _) if *k as usize >= states.len() => {
                            self.fail("reads a missing state")
                        }
                        _ => {}
                    }
                }
            }
            Op::Output { ty, axes, .. } => match ops.as_slice() {
                [Some(v)] => {
                    let expect = if axes.len() == ty.dims.len() {
                        Feature::Scalar
                    } else {
                        Feature::Vector(ty.dims[ty.dims.len() - 1].clone())
                    };
                    if !v.indices.is_subset(IndexSet::of(axes))
                        || v.feature != expect
                        || axes.len() + 1 < ty.dims.len()
                    {
                        self.fail("the value does not fit the output's axes");
                    }
                }
                _ => self.fail("an output takes one value"),
            },
        }
    }

    fn load(&mut self, indices: &[LoadIndex], ops: &[Option<ValueType>]) {
        let operands = self.graph.operands(self.node);
        let Some((_, first)) = operands.first() else {
            self.fail("a load reads a tensor");
            return;
        };
        let PortType::Tensor(tensor) = &first.ty else {
            self.fail("operand 0 of a load is a tensor");
            return;
        };
        let rank = tensor.dims.len();
        if indices.len() != rank && indices.len() + 1 != rank {
            self.fail("a load indexes all axes, or all but the last");
        }
        let mut expected = IndexSet::EMPTY;
        let mut computed = 0;
        for ix in indices {
            match ix {
                LoadIndex::Frame(fi) => expected = expected.with(*fi),
                LoadIndex::Operand(k) => {
                    computed += 1;
                    match ops.get(*k as usize) {
                        Some(Some(t))
                            if t.kind == ScalarKind::Int && t.feature == Feature::Scalar =>
                        {
                            expected = expected.union(t.indices)
                        }
                        _ => self.fail(format!("index operand {k} is not an integer scalar")),
                    }
                }
            }
        }
        if ops.len() != computed + 1 {
            self.fail("a load has one operand per computed index");
        }
        if self.result(0).map(|r| r.indices) != Some(expected) {
            self.fail("a load varies with exactly the indices it reads by");
        }
    }

    /// An optional trailing operand must be the kernel's mask.
    fn mask_operand(&mut self, ops: &[Option<ValueType>], position: usize) {
        let operands = self.graph.operands(self.node);
        if operands.len() > position + 1 {
            self.fail("too many operands");
        }
        if let Some((v, _)) = operands.get(position) {
            if !matches!(self.graph.node(v.node).op, Op::Mask { .. }) {
                self.fail("the trailing operand must be the mask");
            }
            if ops[position].as_ref().map(|t| t.kind) != Some(ScalarKind::Bool) {
                self.fail("the mask must be boolean");
            }
        }
    }
}

/// The indices of a reduction's mask operand at `position`, if it has one: a sum over the
/// unmasked keys varies with them too (less j).
fn mask_indices(ops: &[Option<ValueType>], position: usize) -> IndexSet {
    ops.get(position)
        .and_then(|t| t.as_ref())
        .map_or(IndexSet::EMPTY, |t| t.indices)
}
