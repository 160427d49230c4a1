//! Runs a graph on concrete inputs in f64. Ops are evaluated in topological order, one (b, h)
//! slice at a time (no op reduces over b or h, so slices are independent and run in parallel);
//! every value is materialised, which is slow but obviously right: this is the oracle.

use crate::eval_expr::{Env, Evaluator};
use crate::value::{Point, PointShape, Slab, Val, at};
use attnc_ir::bind::Bindings;
use attnc_ir::graph::{Graph, LoadIndex, Op, PortType, ReduceKind};
use attnc_ir::types::{Feature, FrameIndex, ValueType};
use attnc_source::{Diagnostic, Span};
use petgraph::stable_graph::NodeIndex;
use rayon::prelude::*;
use std::collections::BTreeMap;

/// A dense row-major tensor of f64 values.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum InterpretError {
    #[error("input `{0}` was not given")]
    MissingInput(String),
    #[error("input `{name}` has shape {given:?}; the bound dims make it {expected:?}")]
    InputShape {
        name: String,
        given: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{message}")]
    AtSource {
        message: String,
        span: Span,
        label: String,
    },
    #[error(
        "a value of {elements} elements per (b, h) slice is too large for the reference interpreter (limit {limit}); use smaller dims"
    )]
    TooLarge {
        elements: usize,
        limit: usize,
        span: Span,
    },
    #[error("internal error in the reference interpreter: {0}")]
    Internal(String),
}

impl InterpretError {
    pub fn to_diagnostic(&self) -> Diagnostic {
        match self {
            InterpretError::AtSource {
                message,
                span,
                label,
            } => Diagnostic::error(message, *span, label),
            InterpretError::TooLarge { span, .. } => {
                Diagnostic::error(self.to_string(), *span, "this value")
            }
            other => Diagnostic::global(other.to_string()),
        }
    }
}

/// The most f64 values one op may hold for one (b, h) slice (1 GiB).
pub const SLAB_LIMIT: usize = 1 << 27;

/// Evaluates `graph` under `bindings` on `inputs`; returns every output by name.
/// Outputs start as NaN, so an element no op writes stays visibly unwritten.
pub fn interpret(
    graph: &Graph,
    bindings: &Bindings,
    inputs: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>, InterpretError> {
    let order = graph
        .topo_order()
        .ok_or_else(|| InterpretError::Internal("the graph has a cycle".to_string()))?;
    for (_, name, ty) in graph.inputs() {
        let t = inputs
            .get(name)
            .ok_or_else(|| InterpretError::MissingInput(name.to_string()))?;
        let expected = shape_of(bindings, &ty.dims)?;
        if t.shape != expected || t.data.len() != expected.iter().product::<usize>() {
            return Err(InterpretError::InputShape {
                name: name.to_string(),
                given: t.shape.clone(),
                expected,
            });
        }
    }
    let extent = |fi| {
        if graph.extents.contains_key(&fi) {
            bindings.extent(graph, fi)
        } else {
            1
        }
    };
    let slices: Vec<(usize, usize)> = (0..extent(FrameIndex::B))
        .flat_map(|b| (0..extent(FrameIndex::H)).map(move |h| (b, h)))
        .collect();
    let run = SliceRun {
        graph,
        bindings,
        inputs,
        order: &order,
    };
    // Every slice runs; the first failure in (b, h) order is reported, so the message is the
    // same from run to run (a parallel collect would return whichever failed first in time).
    let writes: Vec<Vec<OutputWrite>> = slices
        .par_iter()
        .map(|(b, h)| run.slice(*b, *h))
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut outputs: BTreeMap<String, Tensor> = BTreeMap::new();
    for (_, name, ty) in graph.outputs() {
        let shape = shape_of(bindings, &ty.dims)?;
        let len = shape.iter().product();
        outputs.insert(
            name.to_string(),
            Tensor {
                shape,
                data: vec![f64::NAN; len],
            },
        );
    }
    for w in writes.into_iter().flatten() {
        if let Some(t) = outputs.get_mut(&w.output) {
            t.data[w.offset..w.offset + w.values.len()].copy_from_slice(&w.values);
        }
    }
    Ok(outputs)
}

fn shape_of(
    bindings: &Bindings,
    dims: &[attnc_ir::types::Dim],
) -> Result<Vec<usize>, InterpretError> {
    bindings
        .shape(dims)
        .map_err(|e| InterpretError::Internal(format!("unbound dim: {e:?}")))
}

/// A contiguous run of one output's elements computed by one slice.
struct OutputWrite {
    output: String,
    offset: usize,
    values: Vec<f64>,
}

struct SliceRun<'a> {
    graph: &'a Graph,
    bindings: &'a Bindings,
    inputs: &'a BTreeMap<String, Tensor>,
    order: &'a [NodeIndex],
}

impl SliceRun<'_> {
    fn extent(&self, fi: FrameIndex) -> usize {
        self.bindings.extent(self.graph, fi)
    }

    fn point_shape(&self, f: &Feature) -> Result<PointShape, InterpretError> {
        let eval = |d: &attnc_ir::types::Dim| {
            self.bindings
                .eval(d)
                .map(|v| v.max(0) as usize)
                .map_err(|e| InterpretError::Internal(format!("unbound dim: {e:?}")))
        };
        Ok(match f {
            Feature::Scalar => PointShape::Scalar,
            Feature::Vector(d) | Feature::Diag(d) => PointShape::Vector(eval(d)?),
            Feature::Matrix(a, b) => PointShape::Matrix(eval(a)?, eval(b)?),
        })
    }

    fn new_slab(&self, ty: &ValueType, span: Span) -> Result<Slab, InterpretError> {
        let axes: Vec<(FrameIndex, usize)> = ty
            .indices
            .iter()
            .filter(|fi| !matches!(fi, FrameIndex::B | FrameIndex::H))
            .map(|fi| (fi, self.extent(fi)))
            .collect();
        let shape = self.point_shape(&ty.feature)?;
        let elements = axes
            .iter()
            .map(|(_, e)| *e)
            .product::<usize>()
            .saturating_mul(shape.len());
        if elements > SLAB_LIMIT {
            return Err(InterpretError::TooLarge {
                elements,
                limit: SLAB_LIMIT,
                span,
            });
        }
        Ok(Slab::new(axes, shape))
    }

    fn slice(&self, b: usize, h: usize) -> Result<Vec<OutputWrite>, InterpretError> {
        let mut base: Point = [0; 5];
        base[FrameIndex::B as usize] = b;
        base[FrameIndex::H as usize] = h;
        let size = self
            .graph
            .node_indices()
            .map(|n| n.index() + 1)
            .max()
            .unwrap_or(0);
        let mut slabs: Vec<Vec<Slab>> = vec![Vec::new(); size];
        // Free each value after its last reader, so memory stays near the widest live set.
        let mut remaining: Vec<usize> = vec![0; size];
        for n in self.graph.node_indices() {
            remaining[n.index()] = self.graph.users(n).len();
        }
        let mut writes = Vec::new();
        for &n in self.order {
            let node = self.graph.node(n);
            let operands: Vec<(NodeIndex, u32)> = self
                .graph
                .operands(n)
                .iter()
                .map(|(v, _)| (v.node, v.result))
                .collect();
            let result = {
                let get =
                    |k: usize| -> &Slab { &slabs[operands[k].0.index()][operands[k].1 as usize] };
                match &node.op {
                    Op::Input { .. } => Vec::new(),
                    Op::Output { name, ty, axes } => {
                        self.write_output(name, ty, axes, get(0), &base, &mut writes)?;
                        Vec::new()
                    }
                    Op::Load { indices } => vec![self.load(n, indices, &operands, &slabs, &base)?],
                    Op::Map { expr, root } | Op::Mask { expr, root } => {
                        let ty = value_type(&node.results[0])?;
                        let mut out = self.new_slab(ty, node.span)?;
                        let ops: Vec<&Slab> = (0..operands.len()).map(get).collect();
                        let mut ev = Evaluator::new(expr);
                        let dims = &self.bindings.dims;
                        let mut vals = Vec::with_capacity(ops.len());
                        let mut failure = None;
                        let shape = out.shape;
                        let mut results: Vec<(Point, Val)> = Vec::new();
                        out.for_each_point(&base, |p| {
                            vals.clear();
                            vals.extend(ops.iter().map(|s| s.get_val(p)));
                            ev.reset();
                            let env = Env {
                                operands: &vals,
                                point: p,
                                dims,
                                previous_states: &[],
                                current_states: &[],
                            };
                            let v = ev.eval(*root, &env);
                            if let (None, Some(oor)) = (&failure, ev.out_of_range) {
                                failure = Some((*p, oor));
                            }
                            results.push((*p, v));
                        });
                        if let Some((p, (id, k, len))) = failure {
                            return Err(out_of_range(expr.span(id), k, len, &p));
                        }
                        for (p, v) in results {
                            out.set(&p, &broadcast(&v, shape));
                        }
                        vec![out]
                    }
                    Op::Score => {
                        let ty = value_type(&node.results[0])?;
                        let mut out = self.new_slab(ty, node.span)?;
                        let (q, k) = (get(0), get(1));
                        let mut results = Vec::new();
                        out.for_each_point(&base, |p| {
                            let d: f64 = q.get(p).iter().zip(k.get(p)).map(|(x, y)| x * y).sum();
                            results.push((*p, d));
                        });
                        for (p, d) in results {
                            out.set(&p, &[d]);
                        }
                        vec![out]
                    }
                    Op::RowReduce { kind } => {
                        let mask = (operands.len() > 1).then(|| get(1));
                        vec![self.row_reduce(*kind, node, get(0), mask, &base)?]
                    }
                    Op::Aggregate => {
                        let mask = (operands.len() > 2).then(|| get(2));
                        vec![self.aggregate(node, get(0), get(1), mask, &base)?]
                    }
                    Op::Recurrence {
                        arena,
                        states,
                        emits,
                    } => {
                        let ops: Vec<&Slab> = (0..operands.len()).map(get).collect();
                        self.recurrence(node, arena, states, emits, &ops, &base)?
                    }
                }
            };
            slabs[n.index()] = result;
            for (producer, _) in &operands {
                let r = &mut remaining[producer.index()];
                *r = r.saturating_sub(1);
                if *r == 0 {
                    slabs[producer.index()] = Vec::new();
                }
            }
        }
        Ok(writes)
    }

    fn load(
        &self,
        n: NodeIndex,
        indices: &[LoadIndex],
        operands: &[(NodeIndex, u32)],
        slabs: &[Vec<Slab>],
        base: &Point,
    ) -> Result<Slab, InterpretError> {
        let node = self.graph.node(n);
        let (input, tensor_ty) = match self
            .graph
            .operands(n)
            .first()
            .map(|(v, _)| self.graph.node(v.node))
        {
            Some(attnc_ir::Node {
                op: Op::Input { name, ty, .. },
                ..
            }) => (name.clone(), ty.clone()),
            _ => {
                return Err(InterpretError::Internal(
                    "a load without its input".to_string(),
                ));
            }
        };
        let tensor = self
            .inputs
            .get(&input)
            .ok_or_else(|| InterpretError::MissingInput(input.clone()))?;
        let shape = &tensor.shape;
        let mut strides = vec![1; shape.len()];
        for k in (0..shape.len().saturating_sub(1)).rev() {
            strides[k] = strides[k + 1] * shape[k + 1];
        }
        let ty = value_type(&node.results[0])?;
        let mut out = self.new_slab(ty, node.span)?;
        let row = indices.len() < shape.len();
        let row_len = if row { shape[shape.len() - 1] } else { 1 };
        let mut failure: Option<InterpretError> = None;
        let mut results = Vec::new();
        out.for_each_point(base, |p| {
            if failure.is_some() {
                return;
            }
            let mut offset = 0;
            for (axis, ix) in indices.iter().enumerate() {
                let coord = match ix {
                    LoadIndex::Frame(fi) => at(p, *fi) as i64,
                    LoadIndex::Operand(k) => {
                        let (src, port) = operands[*k as usize];
                        slabs[src.index()][port as usize].scalar(p) as i64
                    }
                };
                if coord < 0 || coord as usize >= shape[axis] {
                    failure = Some(InterpretError::AtSource {
                        message: format!(
                            "index out of range: axis {axis} of `{input}` ({}) has size {}, the index is {coord}{} at {}",
                            tensor_ty.dims[axis],
                            shape[axis],
                            if coord < 0 { " (negative)" } else { "" },
                            describe_point(p)
                        ),
                        span: node.span,
                        label: "this read".to_string(),
                    });
                    return;
                }
                offset += coord as usize * strides[axis];
            }
            results.push((*p, offset));
        });
        if let Some(e) = failure {
            return Err(e);
        }
        for (p, offset) in results {
            out.set(&p, &tensor.data[offset..offset + row_len]);
        }
        Ok(out)
    }

    fn row_reduce(
        &self,
        kind: ReduceKind,
        node: &attnc_ir::Node,
        x: &Slab,
        mask: Option<&Slab>,
        base: &Point,
    ) -> Result<Slab, InterpretError> {
        let ty = value_type(&node.results[0])?;
        let mut out = self.new_slab(ty, node.span)?;
        let keys = self.extent(FrameIndex::J);
        let len = out.shape.len();
        let mut results = Vec::new();
        out.for_each_point(base, |p| {
            let mut acc = vec![kind.identity(); len];
            let mut q = *p;
            for j in 0..keys {
                q[FrameIndex::J as usize] = j;
                if mask.is_some_and(|m| m.scalar(&q) == 0.0) {
                    continue;
                }
                for (a, v) in acc.iter_mut().zip(x.get(&q)) {
                    *a = kind.combine(*a, *v);
                }
            }
            results.push((*p, acc));
        });
        for (p, acc) in results {
            out.set(&p, &acc);
        }
        Ok(out)
    }

    fn aggregate(
        &self,
        node: &attnc_ir::Node,
        w: &Slab,
        v: &Slab,
        mask: Option<&Slab>,
        base: &Point,
    ) -> Result<Slab, InterpretError> {
        let ty = value_type(&node.results[0])?;
        let mut out = self.new_slab(ty, node.span)?;
        let keys = self.extent(FrameIndex::J);
        let len = out.shape.len();
        let mut results = Vec::new();
        out.for_each_point(base, |p| {
            let mut acc = vec![0.0; len];
            let mut q = *p;
            for j in 0..keys {
                q[FrameIndex::J as usize] = j;
                if mask.is_some_and(|m| m.scalar(&q) == 0.0) {
                    continue;
                }
                let weight = w.scalar(&q);
                for (a, x) in acc.iter_mut().zip(v.get(&q)) {
                    *a += weight * x;
                }
            }
            results.push((*p, acc));
        });
        for (p, acc) in results {
            out.set(&p, &acc);
        }
        Ok(out)
    }

    fn recurrence(
        &self,
        node: &attnc_ir::Node,
        arena: &attnc_ir::expr::ExprArena,
        states: &[attnc_ir::graph::StateDef],
        emits: &[attnc_ir::expr::ExprId],
        ops: &[&Slab],
        base: &Point,
    ) -> Result<Vec<Slab>, InterpretError> {
        let mut outs = node
            .results
            .iter()
            .map(|r| self.new_slab(value_type(r)?, node.span))
            .collect::<Result<Vec<Slab>, _>>()?;
        let shapes = states
            .iter()
            .map(|s| self.point_shape(&s.feature))
            .collect::<Result<Vec<PointShape>, _>>()?;
        let mut current: Vec<Val> = shapes.iter().map(|s| s.make(vec![0.0; s.len()])).collect();
        let mut ev = Evaluator::new(arena);
        let dims = &self.bindings.dims;
        let mut p = *base;
        for t in 0..self.extent(FrameIndex::T) {
            p[FrameIndex::T as usize] = t;
            let vals: Vec<Val> = ops.iter().map(|s| s.get_val(&p)).collect();
            ev.reset();
            let previous = std::mem::take(&mut current);
            let env = Env {
                operands: &vals,
                point: &p,
                dims,
                previous_states: &previous,
                current_states: &[],
            };
            current = states
                .iter()
                .zip(&shapes)
                .map(|(s, shape)| shape.make(broadcast(&ev.eval(s.update, &env), *shape)))
                .collect();
            let env = Env {
                operands: &vals,
                point: &p,
                dims,
                previous_states: &previous,
                current_states: &current,
            };
            for (out, e) in outs.iter_mut().zip(emits) {
                let v = ev.eval(*e, &env);
                let shape = out.shape;
                out.set(&p, &broadcast(&v, shape));
            }
            if let Some((id, k, len)) = ev.out_of_range {
                return Err(out_of_range(arena.span(id), k, len, &p));
            }
        }
        Ok(outs)
    }

    fn write_output(
        &self,
        name: &str,
        ty: &attnc_ir::types::TensorType,
        axes: &[FrameIndex],
        value: &Slab,
        base: &Point,
        writes: &mut Vec<OutputWrite>,
    ) -> Result<(), InterpretError> {
        let shape = shape_of(self.bindings, &ty.dims)?;
        let mut strides = vec![1; shape.len()];
        for k in (0..shape.len().saturating_sub(1)).rev() {
            strides[k] = strides[k + 1] * shape[k + 1];
        }
        // Visit every position of the output's own axes within this slice.
        let walk = Slab::new(
            axes.iter()
                .filter(|fi| !matches!(fi, FrameIndex::B | FrameIndex::H))
                .map(|fi| (*fi, self.extent(*fi)))
                .collect(),
            PointShape::Scalar,
        );
        walk.for_each_point(base, |p| {
            let offset: usize = axes
                .iter()
                .zip(&strides)
                .map(|(fi, s)| at(p, *fi) * s)
                .sum();
            writes.push(OutputWrite {
                output: name.to_string(),
                offset,
                values: value.get(p).to_vec(),
            });
        });
        Ok(())
    }
}

fn value_type(p: &PortType) -> Result<&ValueType, InterpretError> {
    match p {
        PortType::Value(t) => Ok(t),
        PortType::Tensor(_) => Err(InterpretError::Internal(
            "expected a value, found a tensor".to_string(),
        )),
    }
}

/// Spreads a scalar over a row or matrix (a `state S: [D, D] = 0` update, say).
fn broadcast(v: &Val, shape: PointShape) -> Vec<f64> {
    match v {
        Val::S(x) => vec![*x; shape.len()],
        other => other.elements().to_vec(),
    }
}

fn out_of_range(span: Span, k: i64, len: usize, p: &Point) -> InterpretError {
    InterpretError::AtSource {
        message: format!(
            "index out of range: the vector has {len} elements, the index is {k} at {}",
            describe_point(p)
        ),
        span,
        label: "this read".to_string(),
    }
}

fn describe_point(p: &Point) -> String {
    let parts: Vec<String> = FrameIndex::ALL
        .iter()
        .map(|fi| format!("{}={}", fi.name(), at(p, *fi)))
        .collect();
    format!("({})", parts.join(", "))
}
