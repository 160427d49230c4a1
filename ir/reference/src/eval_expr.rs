//! Evaluating one op's expression arena at one point, in f64, memoised per point so shared
//! sub-expressions and the two phases of a recurrence step are each computed once.

use crate::value::{Point, Val, at};
use attnc_ir::expr::{Builtin, ExprArena, ExprId, ExprNode, StateTime, binary_scalar, bool_f64};
use attnc_ir::ops::{BinaryOp, UnaryOp};
use std::collections::BTreeMap;

/// What an expression can read besides constants.
pub struct Env<'a> {
    pub operands: &'a [Val],
    pub point: &'a Point,
    pub dims: &'a BTreeMap<String, i64>,
    pub previous_states: &'a [Val],
    pub current_states: &'a [Val],
}

/// A per-point memo over one arena.
pub struct Evaluator<'a> {
    arena: &'a ExprArena,
    memo: Vec<Option<Val>>,
    /// The first out-of-range element read (`v[k]`), as the expression and the index.
    pub out_of_range: Option<(ExprId, i64, usize)>,
}

impl<'a> Evaluator<'a> {
    pub fn new(arena: &'a ExprArena) -> Self {
        Evaluator {
            arena,
            memo: vec![None; arena.len()],
            out_of_range: None,
        }
    }

    /// Forgets all memoised values (a new point).
    pub fn reset(&mut self) {
        self.memo.iter_mut().for_each(|m| *m = None);
    }

    /// The value of `id` at the current point.
    pub fn eval(&mut self, id: ExprId, env: &Env) -> Val {
        if let Some(v) = &self.memo[id.index()] {
            return v.clone();
        }
        let v = self.compute(id, env);
        self.memo[id.index()] = Some(v.clone());
        v
    }

    fn compute(&mut self, id: ExprId, env: &Env) -> Val {
        match self.arena.node(id) {
            ExprNode::Operand(k) => env.operands[*k as usize].clone(),
            ExprNode::Index(fi) => Val::S(at(env.point, *fi) as f64),
            ExprNode::Dim(d) => Val::S(env.dims.get(d).copied().unwrap_or(0) as f64),
            ExprNode::Int(v) => Val::S(*v as f64),
            ExprNode::Float(v) => Val::S(*v),
            ExprNode::State(k, StateTime::Previous) => env.previous_states[*k as usize].clone(),
            ExprNode::State(k, StateTime::Current) => env.current_states[*k as usize].clone(),
            ExprNode::Unary(op, a) => {
                let a = self.eval(*a, env);
                match op {
                    UnaryOp::Neg => a.map(|x| -x),
                    UnaryOp::Not => a.map(|x| bool_f64(x == 0.0)),
                }
            }
            ExprNode::Binary(BinaryOp::MatMul, a, b) => {
                let (a, b) = (self.eval(*a, env), self.eval(*b, env));
                matmul(&a, &b)
            }
            ExprNode::Binary(op, a, b) => {
                let (a, b) = (self.eval(*a, env), self.eval(*b, env));
                let op = *op;
                a.zip(&b, |x, y| binary_scalar(op, x, y))
            }
            ExprNode::Call(f, args) => {
                let vals: Vec<Val> = args.iter().map(|a| self.eval(*a, env)).collect();
                call(*f, &vals)
            }
            ExprNode::Extract(v, k) => {
                let v = self.eval(*v, env);
                let k = self.eval(*k, env).scalar();
                let elems = v.elements();
                if k >= 0.0 && (k as usize) < elems.len() {
                    Val::S(elems[k as usize])
                } else {
                    self.out_of_range.get_or_insert((id, k as i64, elems.len()));
                    Val::S(f64::NAN)
                }
            }
        }
    }
}

fn call(f: Builtin, a: &[Val]) -> Val {
    match f {
        Builtin::Pow => a[0].zip(&a[1], f64::powf),
        Builtin::Min => a[0].zip(&a[1], f64::min),
        Builtin::Max => a[0].zip(&a[1], f64::max),
        Builtin::Select => {
            let elem = |v: &Val, k: usize| match v {
                Val::S(x) => *x,
                _ => v.elements()[k],
            };
            let template = a.iter().find(|v| !matches!(v, Val::S(_))).unwrap_or(&a[0]);
            let picked = (0..template.elements().len())
                .map(|k| {
                    if elem(&a[0], k) != 0.0 {
                        elem(&a[1], k)
                    } else {
                        elem(&a[2], k)
                    }
                })
                .collect();
            template.with_elements(picked)
        }
        Builtin::Dot => Val::S(
            a[0].elements()
                .iter()
                .zip(a[1].elements())
                .map(|(x, y)| x * y)
                .sum(),
        ),
        Builtin::SumFeature => Val::S(a[0].elements().iter().sum()),
        Builtin::MeanFeature => {
            let e = a[0].elements();
            Val::S(e.iter().sum::<f64>() / e.len().max(1) as f64)
        }
        Builtin::MaxFeature => Val::S(
            a[0].elements()
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max),
        ),
        Builtin::MinFeature => Val::S(
            a[0].elements()
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min),
        ),
        Builtin::Norm => Val::S(a[0].elements().iter().map(|x| x * x).sum::<f64>().sqrt()),
        Builtin::Cumsum => scan(&a[0], 0.0, |acc, x| acc + x),
        Builtin::Cumprod => scan(&a[0], 1.0, |acc, x| acc * x),
        Builtin::Outer => {
            let (x, y) = (a[0].elements(), a[1].elements());
            let data = x
                .iter()
                .flat_map(|xi| y.iter().map(move |yj| xi * yj))
                .collect();
            Val::M {
                rows: x.len(),
                cols: y.len(),
                data,
            }
        }
        Builtin::Diag => Val::Diag(a[0].elements().to_vec()),
        scalar_fn => a[0].map(|x| scalar_fn.apply_scalar(x).unwrap_or(f64::NAN)),
    }
}

fn scan(v: &Val, init: f64, f: impl Fn(f64, f64) -> f64) -> Val {
    let mut acc = init;
    Val::V(
        v.elements()
            .iter()
            .map(|x| {
                acc = f(acc, *x);
                acc
            })
            .collect(),
    )
}

/// `@` between rows, matrices and diagonals, as typed by the graph builder.
fn matmul(a: &Val, b: &Val) -> Val {
    match (a, b) {
        (Val::V(x), Val::M { rows, cols, data }) => Val::V(
            (0..*cols)
                .map(|c| (0..*rows).map(|r| x[r] * data[r * cols + c]).sum())
                .collect(),
        ),
        (Val::M { rows, cols, data }, Val::V(y)) => Val::V(
            (0..*rows)
                .map(|r| (0..*cols).map(|c| data[r * cols + c] * y[c]).sum())
                .collect(),
        ),
        (Val::Diag(d), Val::M { rows, cols, data }) => Val::M {
            rows: *rows,
            cols: *cols,
            data: data
                .iter()
                .enumerate()
                .map(|(k, x)| x * d[k / cols])
                .collect(),
        },
        (Val::M { rows, cols, data }, Val::Diag(d)) => Val::M {
            rows: *rows,
            cols: *cols,
            data: data
                .iter()
                .enumerate()
                .map(|(k, x)| x * d[k % cols])
                .collect(),
        },
        (
            Val::M {
                rows,
                cols,
                data: x,
            },
            Val::M {
                cols: c2, data: y, ..
            },
        ) => {
            let mut out = vec![0.0; rows * c2];
            for r in 0..*rows {
                for k in 0..*cols {
                    for c in 0..*c2 {
                        out[r * c2 + c] += x[r * cols + k] * y[k * c2 + c];
                    }
                }
            }
            Val::M {
                rows: *rows,
                cols: *c2,
                data: out,
            }
        }
        // A scalar state (`state z: [] = ...`) times anything is plain scaling.
        (Val::S(_), _) | (_, Val::S(_)) => a.zip(b, |x, y| x * y),
        _ => Val::S(f64::NAN),
    }
}
