//! Where values live inside the shader and how they are read: SSA scalars, per-invocation
//! arrays (`Function` storage) for vectors, rows of input tensors read in place from their
//! storage buffers (16-bit tensors are read as 32-bit words and widened to f32, so no 16-bit
//! device feature is needed), and the run-time range checks of computed indices, which report
//! through the status word and read element 0 instead.

use crate::error::{Result, SpirvError};
use crate::expr::Leaves;
use crate::shader::{Atomic, Cmp, Shader, Ty, Val};
use attnc_ir::ElementType;
use attnc_ir::graph::{Graph, PortType, ValueRef};
use attnc_ir::types::{Dim, Feature, FrameIndex};
use petgraph::stable_graph::NodeIndex;
use rspirv::spirv::Word;
use std::collections::{BTreeMap, HashMap};

pub use attnc_lower::manifest::GuardSite;

/// Where one node's value is at the current position.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Home {
    Scalar(Val),
    /// A `Function` array of `len` values.
    Array {
        var: Word,
        ty: Ty,
        len: u32,
    },
    /// A row of an input tensor: element f at flat offset `base + f`.
    Row {
        input: NodeIndex,
        base: Val,
        len: u32,
    },
    /// A key-side value staged in a `Workgroup` array for the key tile: element f (or the
    /// scalar) at `base + f`. Truth values are stored as i32 (`ty` is the value's own type).
    Staged {
        var: Word,
        ty: Ty,
        base: Val,
        len: Option<u32>,
    },
}

/// A tensor's storage buffer and how its elements are stored.
pub(crate) struct Tensor {
    pub var: Word,
    pub element: ElementType,
    pub name: String,
}

/// The word type a tensor of `element`s is declared with in the shader.
pub(crate) fn storage_ty(element: ElementType, name: &str) -> Result<Ty> {
    match element {
        ElementType::F32 => Ok(Ty::F32),
        ElementType::I32 => Ok(Ty::I32),
        ElementType::Bf16 | ElementType::F16 => Ok(Ty::U32),
        other => Err(SpirvError::Unsupported {
            message: format!("tensor `{name}` of element type {other}"),
            span: None,
        }),
    }
}

/// The word type a staged value of type `ty` is kept in (truth values as i32: a `Workgroup`
/// array of bools is allowed, but an integer has a defined layout everywhere).
pub(crate) fn staged_ty(ty: Ty) -> Ty {
    if ty == Ty::Bool { Ty::I32 } else { ty }
}

/// Everything the kernel's code reads values through.
pub(crate) struct Ctx<'g> {
    pub graph: &'g Graph,
    pub homes: HashMap<NodeIndex, Home>,
    /// Running accumulators of the sweep being written (plain reductions), by node.
    pub running: HashMap<NodeIndex, Word>,
    pub tensors: HashMap<NodeIndex, Tensor>,
    pub status: Word,
    /// Every dim as i32 (specialised ones as constants).
    pub dims: BTreeMap<String, Val>,
    pub specialised: BTreeMap<String, i64>,
    pub frame: BTreeMap<FrameIndex, Val>,
    pub guards: Vec<GuardSite>,
}

impl<'g> Ctx<'g> {
    /// The value of an IR dim expression, as i32.
    pub fn dim_value(&self, s: &mut Shader, d: &Dim) -> Result<Val> {
        Ok(match d {
            Dim::Sym(name) => *self
                .dims
                .get(name)
                .ok_or_else(|| SpirvError::internal(format!("dim `{name}` has no value")))?,
            Dim::Const(c) => s.i32(*c),
            Dim::Add(a, b) => {
                let (a, b) = (self.dim_value(s, a)?, self.dim_value(s, b)?);
                s.add(a, b)?
            }
            Dim::Sub(a, b) => {
                let (a, b) = (self.dim_value(s, a)?, self.dim_value(s, b)?);
                s.sub(a, b)?
            }
            Dim::Mul(a, b) => {
                let (a, b) = (self.dim_value(s, a)?, self.dim_value(s, b)?);
                s.mul(a, b)?
            }
            Dim::FloorDiv(a, b) => {
                let (a, b) = (self.dim_value(s, a)?, self.dim_value(s, b)?);
                crate::expr::floor_div(s, a, b)?
            }
        })
    }

    /// The compile-time value of a dim expression, if every symbol in it is specialised.
    pub fn dim_constant(&self, d: &Dim) -> Option<i64> {
        d.eval(&self.specialised).ok()
    }

    /// The feature length of a node's vector value, which must be a compile-time constant.
    pub fn vector_len(&self, n: NodeIndex) -> Result<Option<u32>> {
        let Some(PortType::Value(t)) = self.graph.node(n).results.first() else {
            return Ok(None);
        };
        match &t.feature {
            Feature::Scalar => Ok(None),
            Feature::Vector(d) => match self.dim_constant(d) {
                Some(v) if (1..=4096).contains(&v) => Ok(Some(v as u32)),
                Some(v) => Err(SpirvError::unsupported(
                    self.graph,
                    n,
                    format!(
                        "a vector of length {v} (the shader keeps vectors of 1 to 4096 elements per invocation)"
                    ),
                )),
                None => Err(SpirvError::unsupported(
                    self.graph,
                    n,
                    format!(
                        "a vector over the run-time dim `{d}` (vectors live in registers, so their length must be a head dim the kernel is specialised for)"
                    ),
                )),
            },
            Feature::Matrix(..) | Feature::Diag(..) => Err(SpirvError::unsupported(
                self.graph,
                n,
                "a matrix value outside a recurrence",
            )),
        }
    }

    /// Reads element `offset` (i32) of an input tensor as f32 or i32.
    pub fn read(&self, s: &mut Shader, input: NodeIndex, offset: Val) -> Result<Val> {
        let t = self
            .tensors
            .get(&input)
            .ok_or_else(|| SpirvError::internal("a load of a tensor with no buffer"))?;
        match t.element {
            ElementType::F32 | ElementType::I32 => {
                let ty = storage_ty(t.element, &t.name)?;
                let p = s.buffer_element(t.var, ty, offset)?;
                s.load(ty, p)
            }
            ElementType::Bf16 | ElementType::F16 => {
                let one = s.i32(1);
                let word = s.shr(offset, one)?;
                let p = s.buffer_element(t.var, Ty::U32, word)?;
                let w = s.load(Ty::U32, p)?;
                let odd = s.bit_and(offset, one)?;
                let four = s.i32(4);
                let shift = s.shl(odd, four)?;
                let half = s.shr(w, shift)?;
                if t.element == ElementType::F16 {
                    s.unpack_half(half)
                } else {
                    let sixteen = s.u32(16);
                    let bits = s.shl(half, sixteen)?;
                    s.bitcast(bits, Ty::F32)
                }
            }
            other => Err(SpirvError::internal(format!(
                "a read of a tensor of {other}"
            ))),
        }
    }

    /// Writes `x` (f32 or i32) to element `offset` of an output tensor. 16-bit elements are
    /// written with an atomic AND and OR on their word, so invocations writing the two halves of
    /// one word never lose each other's half.
    pub fn write(&self, s: &mut Shader, output: &Tensor, offset: Val, x: Val) -> Result<()> {
        match output.element {
            ElementType::F32 | ElementType::I32 => {
                let ty = storage_ty(output.element, &output.name)?;
                let v = s.to(x, ty)?;
                let p = s.buffer_element(output.var, ty, offset)?;
                s.store(p, v)
            }
            ElementType::Bf16 | ElementType::F16 => {
                let x = s.float(x)?;
                let bits = if output.element == ElementType::F16 {
                    s.pack_half(x)?
                } else {
                    bf16_bits(s, x)?
                };
                let one = s.i32(1);
                let word = s.shr(offset, one)?;
                let odd = s.bit_and(offset, one)?;
                let four = s.i32(4);
                let shift = s.shl(odd, four)?;
                let low = s.u32(0xffff);
                let bits = s.bit_and(bits, low)?;
                let placed = s.shl(bits, shift)?;
                let mine = s.shl(low, shift)?;
                let all = s.u32(u32::MAX);
                let keep = s.sub(all, mine)?;
                let p = s.buffer_element(output.var, Ty::U32, word)?;
                s.atomic(Atomic::And, p, keep)?;
                s.atomic(Atomic::Or, p, placed)?;
                Ok(())
            }
            other => Err(SpirvError::internal(format!(
                "a write of a tensor of {other}"
            ))),
        }
    }

    /// Reports a failed check through the status word (the first failure of a run wins) and
    /// returns a safe index (0) where `idx` is outside `[0, size)`.
    pub fn guard(
        &mut self,
        s: &mut Shader,
        node: NodeIndex,
        what: String,
        idx: Val,
        size: Val,
    ) -> Result<Val> {
        let code = match self
            .guards
            .iter()
            .find(|g| g.node == node && g.message == what)
        {
            Some(g) => g.code,
            None => {
                let code = self.guards.len() as u32 + 1;
                self.guards.push(GuardSite {
                    code,
                    message: what,
                    node,
                });
                code
            }
        };
        let zero = s.i32(0);
        let neg = s.cmp(Cmp::Lt, idx, zero)?;
        let over = s.cmp(Cmp::Ge, idx, size)?;
        let bad = s.or(neg, over)?;
        let status = self.status;
        s.when(bad, |s| report(s, status, code, idx, size))?;
        s.select(bad, zero, idx)
    }
}

/// Stores `code`, `value` and `bound` into the status words, if no failure was stored before.
fn report(s: &mut Shader, status: Word, code: u32, value: Val, bound: Val) -> Result<()> {
    let w0 = s.i32(0);
    let p0 = s.buffer_element(status, Ty::I32, w0)?;
    let zero = s.i32(0);
    let code = s.i32(code as i64);
    let old = s.compare_exchange(p0, zero, code)?;
    let won = s.cmp(Cmp::Eq, old, zero)?;
    s.when(won, |s| {
        let (w1, w2) = (s.i32(1), s.i32(2));
        let p1 = s.buffer_element(status, Ty::I32, w1)?;
        s.store(p1, value)?;
        let p2 = s.buffer_element(status, Ty::I32, w2)?;
        s.store(p2, bound)
    })
}

/// The bf16 bits of `x` in the low half of a word, rounded to nearest even (NaN stays a NaN).
fn bf16_bits(s: &mut Shader, x: Val) -> Result<Val> {
    let bits = s.bitcast(x, Ty::U32)?;
    let sixteen = s.u32(16);
    let upper = s.shr(bits, sixteen)?;
    let one = s.u32(1);
    let lsb = s.bit_and(upper, one)?;
    let bias = s.u32(0x7fff);
    let rounding = s.add(bias, lsb)?;
    let rounded = s.add(bits, rounding)?;
    let r = s.shr(rounded, sixteen)?;
    let nan = s.is_nan(x)?;
    let quiet = s.u32(0x7fc0);
    s.select(nan, quiet, r)
}

impl Leaves for Ctx<'_> {
    fn value(&mut self, s: &mut Shader, v: ValueRef, feature: Option<Val>) -> Result<Val> {
        if let Some(home) = self.homes.get(&v.node).copied() {
            return match (home, feature) {
                (Home::Scalar(x), _) => Ok(x),
                (Home::Array { var, ty, .. }, Some(f)) => {
                    let p = s.local_element(var, ty, f)?;
                    s.load(ty, p)
                }
                (Home::Row { input, base, .. }, Some(f)) => {
                    let at = s.add(base, f)?;
                    self.read(s, input, at)
                }
                (Home::Staged { var, ty, base, len }, f) => {
                    let at = match (len, f) {
                        (None, _) => base,
                        (Some(_), Some(f)) => s.add(base, f)?,
                        (Some(_), None) => {
                            return Err(SpirvError::internal(format!(
                                "staged vector node {} read without a feature position",
                                v.node.index()
                            )));
                        }
                    };
                    let p = s.workgroup_element(var, staged_ty(ty), at)?;
                    let x = s.load(staged_ty(ty), p)?;
                    s.to(x, ty)
                }
                (_, None) => Err(SpirvError::internal(format!(
                    "vector node {} read without a feature position",
                    v.node.index()
                ))),
            };
        }
        if let Some(var) = self.running.get(&v.node).copied() {
            return s.load(Ty::F32, var);
        }
        Err(SpirvError::internal(format!(
            "the value of node {} ({}) is not available where it is read",
            v.node.index(),
            self.graph.node(v.node).op.mnemonic()
        )))
    }

    fn index(&mut self, _s: &mut Shader, fi: FrameIndex) -> Result<Val> {
        self.frame.get(&fi).copied().ok_or_else(|| {
            SpirvError::internal(format!("index `{}` read outside its loop", fi.name()))
        })
    }

    fn dim(&mut self, _s: &mut Shader, name: &str) -> Result<Val> {
        self.dims
            .get(name)
            .copied()
            .ok_or_else(|| SpirvError::internal(format!("dim `{name}` has no value")))
    }

    fn len(&mut self, v: ValueRef) -> Result<u32> {
        match self.homes.get(&v.node) {
            Some(Home::Array { len, .. } | Home::Row { len, .. }) => return Ok(*len),
            Some(Home::Staged { len: Some(len), .. }) => return Ok(*len),
            _ => {}
        }
        Ok(self.vector_len(v.node)?.unwrap_or(1))
    }

    fn element(&mut self, s: &mut Shader, v: ValueRef, k: Val) -> Result<Val> {
        let len = self.len(v)?;
        let size = s.i32(len as i64);
        let name = self
            .graph
            .node(v.node)
            .name
            .clone()
            .unwrap_or_else(|| "a vector".into());
        let safe = self.guard(
            s,
            v.node,
            format!("index {{value}} is outside `{name}` (length {{bound}})"),
            k,
            size,
        )?;
        self.value(s, v, Some(safe))
    }
}
