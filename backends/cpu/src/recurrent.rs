//! The recurrent template as MLIR for the host: one function scans t for one (b, h) slice. The
//! per-step inputs (loads, feature maps, gates) are computed at each step, every state's new
//! value from the previous ones (all updates are simultaneous, so new values go to a second
//! buffer), then the outputs read the updated states. This is the sequential form, for
//! recurrences with no chunked form (`chunked.rs` runs the others).

use crate::mlir_text::Body;
use crate::parallel::Gen;
use crate::{CodegenError, Layout, OutputTile};
use attnc_ir::expr::{Builtin, ExprArena, ExprId, ExprNode, StateTime};
use attnc_ir::graph::{Graph, Op, ValueRef};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::{Feature, FrameIndex};
use attnc_mlir::{Access, ElementType, KernelSignature, Param};
use attnc_passes::fusion::recurrent::RecurrentKernel;

pub const SCAN_KERNEL: &str = "attnc_scan";

/// A state's two buffers and its shape (rows, columns; 1 for missing axes).
pub(crate) struct StateBuf {
    current: String,
    next: String,
    rows: String,
    cols: String,
}

/// Each output's name with the index of the emitted value it writes.
pub(crate) type Emitted = Vec<(String, usize)>;

/// The parameters and layout of a recurrent kernel (a scan or chunked: the same signature), and
/// each output's name with the emitted value it writes.
pub(crate) fn signature(
    graph: &Graph,
    plan: &RecurrentKernel,
    entry: &'static str,
) -> Result<(Vec<Param>, Layout, Emitted), CodegenError> {
    let mut params = Vec::new();
    let mut ints = Vec::new();
    let mut layout = Layout {
        inputs: Vec::new(),
        int_inputs: Vec::new(),
        outputs: Vec::new(),
        dims: graph.dims.iter().map(|d| d.name.clone()).collect(),
        query_tile: 0,
        key_tile: 0,
        mask: None,
        scan: true,
        entry,
    };
    layout.add_inputs(graph, &mut params, &mut ints);
    let mut emitted: Vec<(String, usize)> = Vec::new();
    for n in &plan.epilogue {
        let Op::Output { name, ty, axes } = &graph.node(*n).op else {
            return Err(CodegenError::Unsupported(
                "values computed after a recurrence".into(),
            ));
        };
        let source = graph.operands(*n)[0].0;
        if source.node != plan.recurrence || !axes.contains(&FrameIndex::T) {
            return Err(CodegenError::Unsupported(format!(
                "output `{name}` is not a step of the recurrence"
            )));
        }
        params.push(Param::Buffer {
            name: format!("out_{name}"),
            element: ElementType::F32,
            access: Access::Write,
            extent: vec![
                attnc_mlir::Extent::Param("n_steps".into()),
                attnc_mlir::Extent::Param(format!("f_{name}")),
            ],
        });
        ints.push(Param::Int {
            name: format!("f_{name}"),
        });
        layout.outputs.push(OutputTile {
            name: name.clone(),
            axes: axes.clone(),
            dims: ty.dims.clone(),
        });
        emitted.push((name.clone(), source.result as usize));
    }
    params.push(crate::parallel::status_param());
    ints.push(Param::Int {
        name: "n_steps".into(),
    });
    for d in &graph.dims {
        ints.push(Param::Int {
            name: format!("d_{}", d.name),
        });
    }
    for w in ["b", "h"] {
        ints.push(Param::Int {
            name: format!("w_{w}"),
        });
    }
    params.extend(ints);
    Ok((params, layout, emitted))
}

/// A state's rows and columns (1 for a missing axis).
pub(crate) fn state_shape(g: &mut Gen, f: &Feature) -> (String, String) {
    match f {
        Feature::Scalar => (g.body.index(1), g.body.index(1)),
        Feature::Vector(d) | Feature::Diag(d) => (g.dim(d), g.body.index(1)),
        Feature::Matrix(a, b) => (g.dim(a), g.dim(b)),
    }
}

/// Writes emitted value `id` of step `t` (of `steps`) to `out_{name}`.
pub(crate) fn write_emit(
    scan: &mut Scan,
    name: &str,
    id: ExprId,
    t: &str,
    steps: &str,
) -> Result<(), CodegenError> {
    let feature = scan.arena.ty(id).feature.clone();
    let len = match &feature {
        Feature::Vector(d) => scan.g.dim(d),
        _ => scan.g.body.index(1),
    };
    let out = scan.g.body.op(&format!(
        "memref.reinterpret_cast %out_{name} to offset: [0], sizes: [{steps}, {len}], strides: [{len}, 1] : memref<f32> to memref<?x?xf32>"
    ));
    let c0 = scan.g.c0.clone();
    let f = scan.g.body.open_for(&c0, &len);
    let pos = if feature == Feature::Scalar {
        Vec::new()
    } else {
        vec![f.clone()]
    };
    let v = scan.eval(id, &pos)?;
    scan.g.body.line(&format!(
        "memref.store {v}, {out}[{t}, {f}] : memref<?x?xf32>"
    ));
    scan.g.body.close();
    Ok(())
}

pub fn generate(
    graph: &Graph,
    plan: &RecurrentKernel,
    constants: &std::collections::BTreeMap<String, i64>,
) -> Result<(String, KernelSignature, Layout), CodegenError> {
    let order = graph
        .topo_order()
        .ok_or_else(|| CodegenError::Internal("cyclic graph".into()))?;
    let Op::Recurrence {
        arena,
        states,
        emits,
    } = &graph.node(plan.recurrence).op
    else {
        return Err(CodegenError::Internal("no recurrence".into()));
    };
    let (params, layout, emitted) = signature(graph, plan, SCAN_KERNEL)?;
    let mut g = Gen::new(graph, 1, 1);
    g.constants = constants.clone();
    g.prologue_scan(&params)?;
    // Values of the slice, then per-step buffers, then states: all allocated before any loop.
    for &n in &order {
        if matches!(graph.node(n).op, Op::Map { .. } | Op::Load { .. }) {
            g.allocate(n)?;
        }
    }
    let mut bufs = Vec::new();
    for s in states.iter() {
        let (rows, cols) = state_shape(&mut g, &s.feature);
        let size = g.body.bini("muli", &rows, &cols);
        let current = g.body.op(&format!("memref.alloca({size}) : memref<?xf32>"));
        let next = g.body.op(&format!("memref.alloca({size}) : memref<?xf32>"));
        let zero = g.body.f32(0.0);
        let c0 = g.c0.clone();
        let i = g.body.open_for(&c0, &size);
        g.body.store(&zero, &current, &i);
        g.body.close();
        bufs.push(StateBuf {
            current,
            next,
            rows,
            cols,
        });
    }
    let operands: Vec<ValueRef> = graph
        .operands(plan.recurrence)
        .iter()
        .map(|(v, _)| *v)
        .collect();
    for &n in &plan.per_head {
        g.compute(n, "", "")?;
    }
    let steps = g.body.op("arith.index_cast %n_steps : i64 to index");
    let c0 = g.c0.clone();
    let t = g.body.open_for(&c0, &steps);
    g.t = Some(t.clone());
    for &n in &plan.step_inputs {
        g.compute(n, "", "")?;
    }
    let mut scan = Scan {
        g: &mut g,
        arena,
        operands: &operands,
        states: &bufs,
        readouts: Vec::new(),
    };
    for (k, s) in states.iter().enumerate() {
        let (rows, cols, next) = (
            bufs[k].rows.clone(),
            bufs[k].cols.clone(),
            bufs[k].next.clone(),
        );
        let c0 = scan.g.c0.clone();
        let r = scan.g.body.open_for(&c0, &rows);
        let c = scan.g.body.open_for(&c0, &cols);
        let pos = position(&s.feature, &r, &c);
        let v = scan.eval(s.update, &pos)?;
        let o = scan.g.body.row_offset(&r, &cols, &c);
        scan.g.body.store(&v, &next, &o);
        scan.g.body.close();
        scan.g.body.close();
    }
    for b in &bufs {
        let size = scan.g.body.bini("muli", &b.rows, &b.cols);
        let c0 = scan.g.c0.clone();
        let i = scan.g.body.open_for(&c0, &size);
        let v = scan.g.body.load(&b.next, &i);
        scan.g.body.store(&v, &b.current, &i);
        scan.g.body.close();
    }
    for (name, k) in &emitted {
        write_emit(&mut scan, name, emits[*k], &t, &steps)?;
    }
    g.body.close();
    g.body.line("return");
    let text = crate::mlir_text::function(
        SCAN_KERNEL,
        &params,
        std::mem::replace(&mut g.body, Body::new(0)),
    );
    Ok((
        text,
        KernelSignature {
            name: SCAN_KERNEL.into(),
            params,
        },
        layout,
    ))
}

/// The element index list of a value of this shape: none, [r], or [r, c].
fn position(f: &Feature, r: &str, c: &str) -> Vec<String> {
    match f {
        Feature::Scalar => Vec::new(),
        Feature::Vector(_) | Feature::Diag(_) => vec![r.to_string()],
        Feature::Matrix(..) => vec![r.to_string(), c.to_string()],
    }
}

/// Evaluates expressions of a recurrence's arena at one step, element by element.
pub(crate) struct Scan<'a, 'g> {
    pub(crate) g: &'a mut Gen<'g>,
    pub(crate) arena: &'a ExprArena,
    pub(crate) operands: &'a [ValueRef],
    pub(crate) states: &'a [StateBuf],
    /// Read-outs already computed for this step (the chunked form): the node, and the
    /// buffer element holding it for each column (the step's row offset added).
    pub(crate) readouts: Vec<(ExprId, String, String)>,
}

impl Scan<'_, '_> {
    fn feature(&self, id: ExprId) -> Feature {
        self.arena.ty(id).feature.clone()
    }

    /// The value of `id` at element `pos` of its own shape.
    pub(crate) fn eval(&mut self, id: ExprId, pos: &[String]) -> Result<String, CodegenError> {
        let at = |p: &[String], k: usize| p.get(k).cloned();
        if let Some((_, buf, row)) = self.readouts.iter().find(|r| r.0 == id).cloned() {
            // `x @ S` is read at its column; `dot(x, z)` is one value per step.
            let o = match at(pos, 0) {
                Some(c) => self.g.body.bini("addi", &row, &c),
                None => row,
            };
            return Ok(self.g.body.load(&buf, &o));
        }
        Ok(match self.arena.node(id).clone() {
            ExprNode::Operand(k) => {
                let v = self.operands[k as usize];
                let position = crate::parallel::At {
                    f: at(pos, 0),
                    ..Default::default()
                };
                self.g.load_value(v, &position)?
            }
            ExprNode::State(k, time) => {
                let s = &self.states[k as usize];
                let buf = match time {
                    StateTime::Previous | StateTime::Current => s.current.clone(),
                };
                let r = at(pos, 0).unwrap_or_else(|| self.g.c0.clone());
                let c = at(pos, 1).unwrap_or_else(|| self.g.c0.clone());
                let cols = s.cols.clone();
                let o = self.g.body.row_offset(&r, &cols, &c);
                self.g.body.load(&buf, &o)
            }
            ExprNode::Index(fi) => {
                let i = self.g.frame_index(fi, &crate::parallel::At::default())?;
                self.g.body.index_to_f32(&i)
            }
            ExprNode::Dim(d) => self.g.dim_f32(&d)?,
            ExprNode::Int(v) => self.g.body.f32(v as f64),
            ExprNode::Float(v) => self.g.body.f32(v),
            ExprNode::Unary(UnaryOp::Neg, a) => {
                let a = self.broadcast(a, pos)?;
                self.g.body.op(&format!("arith.negf {a} : f32"))
            }
            ExprNode::Unary(UnaryOp::Not, a) => {
                let a = self.broadcast(a, pos)?;
                let one = self.g.body.f32(1.0);
                self.g.body.binf("subf", &one, &a)
            }
            ExprNode::Binary(BinaryOp::MatMul, a, b) => self.matmul(a, b, pos)?,
            ExprNode::Binary(op, a, b) => {
                let (x, y) = (self.broadcast(a, pos)?, self.broadcast(b, pos)?);
                self.g.binary(op, &x, &y)?
            }
            ExprNode::Call(Builtin::Outer, args) => {
                let x = self.eval(args[0], &pos[..1])?;
                let y = self.eval(args[1], &pos[1..])?;
                self.g.body.binf("mulf", &x, &y)
            }
            ExprNode::Call(
                f @ (Builtin::Dot
                | Builtin::SumFeature
                | Builtin::MeanFeature
                | Builtin::MaxFeature
                | Builtin::MinFeature
                | Builtin::Norm),
                args,
            ) => self.feature_reduction(f, &args)?,
            ExprNode::Call(f, args) => {
                let vals = args
                    .iter()
                    .map(|a| self.broadcast(*a, pos))
                    .collect::<Result<Vec<_>, _>>()?;
                self.g.scalar_call(f, &vals)?
            }
            ExprNode::Extract(..) => {
                return Err(CodegenError::Unsupported(
                    "indexing a vector inside a recurrence".into(),
                ));
            }
        })
    }

    /// A child evaluated at the parent's position: a scalar child ignores it.
    pub(crate) fn broadcast(&mut self, id: ExprId, pos: &[String]) -> Result<String, CodegenError> {
        if self.feature(id) == Feature::Scalar {
            self.eval(id, &[])
        } else {
            self.eval(id, pos)
        }
    }

    fn len(&mut self, f: &Feature, axis: usize) -> String {
        match (f, axis) {
            (Feature::Vector(d) | Feature::Diag(d), 0)
            | (Feature::Matrix(d, _), 0)
            | (Feature::Matrix(_, d), 1) => self.g.dim(d),
            _ => self.g.body.index(1),
        }
    }

    fn matmul(&mut self, a: ExprId, b: ExprId, pos: &[String]) -> Result<String, CodegenError> {
        let (fa, fb) = (self.feature(a), self.feature(b));
        let diag = |id: ExprId| match self.arena.node(id) {
            ExprNode::Call(Builtin::Diag, args) => Some(args[0]),
            _ => None,
        };
        if let Some(d) = diag(a) {
            let x = self.eval(d, &pos[..1])?;
            let m = self.eval(b, pos)?;
            return Ok(self.g.body.binf("mulf", &x, &m));
        }
        if let Some(d) = diag(b) {
            let m = self.eval(a, pos)?;
            let x = self.eval(d, &pos[1..])?;
            return Ok(self.g.body.binf("mulf", &m, &x));
        }
        // A contraction over the shared axis k.
        let inner = self.len(
            &fa,
            if matches!(fa, Feature::Matrix(..)) {
                1
            } else {
                0
            },
        );
        let zero = self.g.body.f32(0.0);
        let c0 = self.g.c0.clone();
        let (k, acc, result) = self.g.body.open_fold(&c0, &inner, &zero);
        let (pa, pb): (Vec<String>, Vec<String>) = match (&fa, &fb) {
            (Feature::Vector(_), Feature::Matrix(..)) => {
                (vec![k.clone()], vec![k.clone(), pos[0].clone()])
            }
            (Feature::Matrix(..), Feature::Vector(_)) => {
                (vec![pos[0].clone(), k.clone()], vec![k.clone()])
            }
            (Feature::Matrix(..), Feature::Matrix(..)) => (
                vec![pos[0].clone(), k.clone()],
                vec![k.clone(), pos[1].clone()],
            ),
            _ => return Err(CodegenError::Internal("@ of these shapes".into())),
        };
        let x = self.eval(a, &pa)?;
        let y = self.eval(b, &pb)?;
        let p = self.g.body.binf("mulf", &x, &y);
        let next = self.g.body.binf("addf", &acc, &p);
        self.g.body.close_fold(&next);
        Ok(result)
    }

    fn feature_reduction(&mut self, f: Builtin, args: &[ExprId]) -> Result<String, CodegenError> {
        let fa = self.feature(args[0]);
        let len = self.len(&fa, 0);
        let init = self.g.body.f32(match f {
            Builtin::MaxFeature => f64::NEG_INFINITY,
            Builtin::MinFeature => f64::INFINITY,
            _ => 0.0,
        });
        let c0 = self.g.c0.clone();
        let (k, acc, result) = self.g.body.open_fold(&c0, &len, &init);
        let x = self.eval(args[0], std::slice::from_ref(&k))?;
        let next = match f {
            Builtin::Dot => {
                let y = self.eval(args[1], std::slice::from_ref(&k))?;
                let p = self.g.body.binf("mulf", &x, &y);
                self.g.body.binf("addf", &acc, &p)
            }
            Builtin::Norm => {
                let p = self.g.body.binf("mulf", &x, &x);
                self.g.body.binf("addf", &acc, &p)
            }
            Builtin::MaxFeature => self.g.body.binf("maximumf", &acc, &x),
            Builtin::MinFeature => self.g.body.binf("minimumf", &acc, &x),
            _ => self.g.body.binf("addf", &acc, &x),
        };
        self.g.body.close_fold(&next);
        Ok(match f {
            Builtin::MeanFeature => {
                let n = self.g.body.index_to_f32(&len);
                self.g.body.binf("divf", &result, &n)
            }
            Builtin::Norm => self.g.body.math("sqrt", &result),
            _ => result,
        })
    }
}
