//! The typed MLIR-text emitter every back end writes kernels with.
//!
//! Values carry their types ([`Val`]); op helpers choose the op from them (`arith.addf` for
//! floats, `arith.addi` for integers and `index`, `arith.cmpf` or `arith.cmpi` with the matching
//! predicate, the right cast between any two scalar types), so a kernel generator cannot write a
//! float op on an integer. Truth values are `i1`. Each op line carries the `loc(...)` of the
//! source construct being lowered, so an MLIR error points into the `.attn` file. Float
//! arithmetic gets the target's fast-math flags ([`FastMath`]). The text is parsed and verified
//! by MLIR (through `attnc-mlir`), which is the final check of what this writes.

use crate::types::{Space, Ty, Val};
use std::fmt::Write;

/// Which fast-math liberties float arithmetic may take: a target policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FastMath {
    /// Contract `a * b + c` into an FMA.
    pub contract: bool,
    /// Reassociate sums and products (lets loops vectorise reductions).
    pub reassoc: bool,
    /// Divide approximately (`afn`: on NVPTX `div.approx.f32`, a reciprocal and a multiply,
    /// within 2 ulp), where the IEEE quotient costs a long instruction sequence per element.
    pub approx_div: bool,
}

impl FastMath {
    fn flags(self) -> &'static str {
        match (self.reassoc, self.contract) {
            (true, true) => " fastmath<reassoc,contract>",
            (false, true) => " fastmath<contract>",
            (true, false) => " fastmath<reassoc>",
            (false, false) => "",
        }
    }

    fn div_flags(self) -> &'static str {
        if self.approx_div {
            " fastmath<afn>"
        } else {
            ""
        }
    }
}

/// Arithmetic with a float and an integer form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    /// True division for floats, truncating for integers.
    Div,
    /// Floor division (integers only; floats use `floor(a / b)`).
    FloorDiv,
    CeilDiv,
    /// Remainder with the dividend's sign (`remf`, `remsi`).
    Rem,
    /// `minimumf`/`maximumf` propagate NaN; `minsi`/`maxsi` for integers.
    Min,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Constant values for [`Emitter::constant`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Const {
    Float(f64),
    Int(i64),
    Bool(bool),
}

/// An MLIR float literal of `ty` for `x` (hex bit patterns for NaN and the infinities).
pub fn float_literal(x: f64, ty: &Ty) -> String {
    match ty {
        Ty::F64 if !x.is_finite() => format!("0x{:016X}", x.to_bits()),
        Ty::F64 => format!("{x:.17e}"),
        Ty::F16 | Ty::Bf16 if !x.is_finite() => {
            let f = x as f32;
            let bits = f.to_bits();
            // Both 16-bit formats: infinities and a quiet NaN.
            let pattern: u16 = match (ty, f.is_nan(), bits >> 31 != 0) {
                (Ty::F16, true, _) => 0x7e00,
                (Ty::F16, false, false) => 0x7c00,
                (Ty::F16, false, true) => 0xfc00,
                (_, true, _) => 0x7fc0,
                (_, false, false) => 0x7f80,
                (_, false, true) => 0xff80,
            };
            format!("0x{pattern:04X}")
        }
        _ => {
            let f = x as f32;
            if f.is_finite() {
                format!("{f:.9e}")
            } else {
                format!("0x{:08X}", f.to_bits())
            }
        }
    }
}

/// Writes one function body (or module) of MLIR text.
#[derive(Debug, Default)]
pub struct Emitter {
    text: String,
    depth: usize,
    next: usize,
    /// The `loc(...)` appended to every op line, when set.
    loc: Option<String>,
    pub fast: FastMath,
    /// Allocas, written at the top of the function: LLVM promotes to registers only the
    /// allocas of the entry block.
    hoisted: String,
}

/// A `scf.for` or `scf.while` being written: its results, once closed.
#[derive(Debug)]
pub struct Loop {
    pub results: Vec<Val>,
}

impl Emitter {
    pub fn new(depth: usize, fast: FastMath) -> Self {
        Emitter {
            depth,
            fast,
            ..Emitter::default()
        }
    }

    /// The function body: hoisted allocas first, then the code.
    pub fn into_text(self) -> String {
        self.hoisted + &self.text
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The source location attached to the ops written next (`None`: no location).
    pub fn set_loc(&mut self, loc: Option<String>) {
        self.loc = loc;
    }

    /// Writes a line as is, indented (structure: `}`, region headers, terminators).
    pub fn line(&mut self, s: &str) {
        let _ = writeln!(self.text, "{}{s}", "  ".repeat(self.depth));
    }

    /// Writes an op line with the current location.
    pub fn op_line(&mut self, s: &str) {
        match &self.loc {
            Some(loc) => {
                let line = format!("{s} {loc}");
                self.line(&line);
            }
            None => self.line(s),
        }
    }

    pub fn indent(&mut self) {
        self.depth += 1;
    }

    pub fn dedent(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    pub fn fresh(&mut self) -> String {
        self.next += 1;
        format!("%v{}", self.next)
    }

    /// `%vN = {rhs}` for a value of type `ty`.
    pub fn op(&mut self, ty: Ty, rhs: &str) -> Val {
        let name = self.fresh();
        self.op_line(&format!("{name} = {rhs}"));
        Val { name, ty }
    }

    /// A named value that some enclosing construct defines (function parameters, region
    /// arguments).
    pub fn named(name: &str, ty: Ty) -> Val {
        Val {
            name: name.to_string(),
            ty,
        }
    }

    pub fn constant(&mut self, c: Const, ty: &Ty) -> Val {
        let rhs = match (c, ty) {
            (Const::Bool(b), _) => format!("arith.constant {b}"),
            (Const::Float(x), t) if t.is_float() => {
                format!("arith.constant {} : {t}", float_literal(x, t))
            }
            (Const::Float(x), t) => format!("arith.constant {} : {t}", x as i64),
            (Const::Int(i), t) if t.is_float() => {
                format!("arith.constant {} : {t}", float_literal(i as f64, t))
            }
            (Const::Int(i), t) => format!("arith.constant {i} : {t}"),
        };
        let ty = if matches!(c, Const::Bool(_)) {
            Ty::I1
        } else {
            ty.clone()
        };
        self.op(ty, &rhs)
    }

    pub fn f32(&mut self, x: f64) -> Val {
        self.constant(Const::Float(x), &Ty::F32)
    }

    pub fn index(&mut self, i: i64) -> Val {
        self.constant(Const::Int(i), &Ty::Index)
    }

    pub fn i32(&mut self, i: i64) -> Val {
        self.constant(Const::Int(i), &Ty::I32)
    }

    pub fn bool(&mut self, b: bool) -> Val {
        self.constant(Const::Bool(b), &Ty::I1)
    }

    /// `a op b` for two values of one type.
    pub fn arith(&mut self, op: Arith, a: &Val, b: &Val) -> Val {
        debug_assert_eq!(a.ty, b.ty, "{op:?} of {} and {}", a.ty, b.ty);
        let ty = a.ty.clone();
        if ty.is_float() {
            let (name, flags) = match op {
                Arith::Add => ("addf", true),
                Arith::Sub => ("subf", true),
                Arith::Mul => ("mulf", true),
                Arith::Div => ("divf", false),
                Arith::Rem => ("remf", false),
                Arith::Min => ("minimumf", false),
                Arith::Max => ("maximumf", false),
                Arith::FloorDiv | Arith::CeilDiv => {
                    // Not an arith op on floats: floor (or ceil) of the quotient.
                    let q = self.arith(Arith::Div, a, b);
                    let f = if op == Arith::FloorDiv {
                        "floor"
                    } else {
                        "ceil"
                    };
                    return self.op(ty.clone(), &format!("math.{f} {q} : {ty}"));
                }
            };
            let flags = match (flags, op) {
                (true, _) => self.fast.flags(),
                (false, Arith::Div) => self.fast.div_flags(),
                _ => "",
            };
            self.op(ty.clone(), &format!("arith.{name} {a}, {b}{flags} : {ty}"))
        } else {
            let name = match op {
                Arith::Add => "addi",
                Arith::Sub => "subi",
                Arith::Mul => "muli",
                Arith::Div => "divsi",
                Arith::Rem => "remsi",
                Arith::FloorDiv => "floordivsi",
                Arith::CeilDiv => "ceildivsi",
                Arith::Min => "minsi",
                Arith::Max => "maxsi",
            };
            self.op(ty.clone(), &format!("arith.{name} {a}, {b} : {ty}"))
        }
    }

    pub fn add(&mut self, a: &Val, b: &Val) -> Val {
        self.arith(Arith::Add, a, b)
    }

    pub fn sub(&mut self, a: &Val, b: &Val) -> Val {
        self.arith(Arith::Sub, a, b)
    }

    pub fn mul(&mut self, a: &Val, b: &Val) -> Val {
        self.arith(Arith::Mul, a, b)
    }

    pub fn div(&mut self, a: &Val, b: &Val) -> Val {
        self.arith(Arith::Div, a, b)
    }

    pub fn min(&mut self, a: &Val, b: &Val) -> Val {
        self.arith(Arith::Min, a, b)
    }

    pub fn max(&mut self, a: &Val, b: &Val) -> Val {
        self.arith(Arith::Max, a, b)
    }

    pub fn neg(&mut self, a: &Val) -> Val {
        if a.ty.is_float() {
            let ty = a.ty.clone();
            self.op(ty.clone(), &format!("arith.negf {a} : {ty}"))
        } else {
            let zero = self.constant(Const::Int(0), &a.ty.clone());
            self.sub(&zero, a)
        }
    }

    /// `a * b + c` as one fused multiply-add (a target may prefer an intrinsic: see
    /// [`crate::math::MathHooks::fma`]).
    pub fn fma(&mut self, a: &Val, b: &Val, c: &Val) -> Val {
        let ty = a.ty.clone();
        self.op(ty.clone(), &format!("math.fma {a}, {b}, {c} : {ty}"))
    }

    /// A comparison, giving `i1` (or a vector of them).
    pub fn cmp(&mut self, p: Cmp, a: &Val, b: &Val) -> Val {
        debug_assert_eq!(a.ty, b.ty, "{p:?} of {} and {}", a.ty, b.ty);
        let ty = a.ty.clone();
        let result = match &ty {
            Ty::Vector(shape, _) => Ty::Vector(shape.clone(), Box::new(Ty::I1)),
            _ => Ty::I1,
        };
        if ty.is_float() {
            // Ordered comparisons are false on NaN; `!=` is unordered, so NaN != x holds.
            let pred = match p {
                Cmp::Eq => "oeq",
                Cmp::Ne => "une",
                Cmp::Lt => "olt",
                Cmp::Le => "ole",
                Cmp::Gt => "ogt",
                Cmp::Ge => "oge",
            };
            self.op(result, &format!("arith.cmpf {pred}, {a}, {b} : {ty}"))
        } else {
            let pred = match p {
                Cmp::Eq => "eq",
                Cmp::Ne => "ne",
                Cmp::Lt => "slt",
                Cmp::Le => "sle",
                Cmp::Gt => "sgt",
                Cmp::Ge => "sge",
            };
            self.op(result, &format!("arith.cmpi {pred}, {a}, {b} : {ty}"))
        }
    }

    pub fn select(&mut self, c: &Val, a: &Val, b: &Val) -> Val {
        debug_assert_eq!(a.ty, b.ty, "select of {} and {}", a.ty, b.ty);
        let ty = a.ty.clone();
        self.op(ty.clone(), &format!("arith.select {c}, {a}, {b} : {ty}"))
    }

    pub fn and(&mut self, a: &Val, b: &Val) -> Val {
        let ty = a.ty.clone();
        self.op(ty.clone(), &format!("arith.andi {a}, {b} : {ty}"))
    }

    pub fn or(&mut self, a: &Val, b: &Val) -> Val {
        let ty = a.ty.clone();
        self.op(ty.clone(), &format!("arith.ori {a}, {b} : {ty}"))
    }

    pub fn xor(&mut self, a: &Val, b: &Val) -> Val {
        let ty = a.ty.clone();
        self.op(ty.clone(), &format!("arith.xori {a}, {b} : {ty}"))
    }

    pub fn not(&mut self, a: &Val) -> Val {
        let t = self.bool(true);
        self.xor(a, &t)
    }

    pub fn shl(&mut self, a: &Val, b: &Val) -> Val {
        let ty = a.ty.clone();
        self.op(ty.clone(), &format!("arith.shli {a}, {b} : {ty}"))
    }

    /// Converts a scalar to `to`: floats widen or narrow (round to nearest), integers
    /// sign-extend or truncate, `i1` is 0 or 1, floats to integers truncate toward zero.
    pub fn cast(&mut self, v: &Val, to: &Ty) -> Val {
        let from = v.ty.clone();
        if from == *to {
            return v.clone();
        }
        let rhs = match (&from, to) {
            (f, t) if f.is_float() && t.is_float() => {
                let op = if f.bits() < t.bits() {
                    "extf"
                } else {
                    "truncf"
                };
                format!("arith.{op} {v} : {f} to {t}")
            }
            (Ty::I1, t) if t.is_float() => format!("arith.uitofp {v} : i1 to {t}"),
            (Ty::Index, t) if t.is_float() => {
                let i = self.cast(v, &Ty::I64);
                return self.cast(&i, to);
            }
            (f, t) if f.is_int() && t.is_float() => format!("arith.sitofp {v} : {f} to {t}"),
            (f, Ty::Index) if f.is_float() => {
                let i = self.cast(v, &Ty::I64);
                return self.cast(&i, to);
            }
            (f, t) if f.is_float() && t.is_int() => format!("arith.fptosi {v} : {f} to {t}"),
            (Ty::Index, t) | (t, Ty::Index) if t.is_int() => {
                format!("arith.index_cast {v} : {from} to {to}")
            }
            (Ty::I1, Ty::Index) => {
                let i = self.cast(v, &Ty::I64);
                return self.cast(&i, to);
            }
            (Ty::I1, t) => format!("arith.extui {v} : i1 to {t}"),
            (f, t) if f.is_int() && t.is_int() => {
                let op = if f.bits() < t.bits() {
                    "extsi"
                } else {
                    "trunci"
                };
                format!("arith.{op} {v} : {f} to {t}")
            }
            (f, Ty::I1) if f.is_int() => {
                let zero = self.constant(Const::Int(0), f);
                return self.cmp(Cmp::Ne, v, &zero);
            }
            (f, Ty::I1) if f.is_float() => {
                let zero = self.constant(Const::Float(0.0), f);
                return self.cmp(Cmp::Ne, v, &zero);
            }
            _ => format!("builtin.unrealized_conversion_cast {v} : {from} to {to}"),
        };
        self.op(to.clone(), &rhs)
    }

    pub fn bitcast(&mut self, v: &Val, to: &Ty) -> Val {
        let from = v.ty.clone();
        let op = if matches!(from, Ty::Vector(..)) || matches!(to, Ty::Vector(..)) {
            "vector.bitcast"
        } else {
            "arith.bitcast"
        };
        self.op(to.clone(), &format!("{op} {v} : {from} to {to}"))
    }

    /// `math.<f>` of a float.
    pub fn math(&mut self, f: &str, a: &Val) -> Val {
        let ty = a.ty.clone();
        self.op(ty.clone(), &format!("math.{f} {a} : {ty}"))
    }

    // --- memory

    /// Loads element `index` of a one-dimensional memref.
    pub fn load(&mut self, mem: &Val, index: &Val) -> Val {
        let elem = mem.ty.element().clone();
        let ty = &mem.ty;
        self.op(elem, &format!("memref.load {mem}[{index}] : {ty}"))
    }

    pub fn store(&mut self, v: &Val, mem: &Val, index: &Val) {
        let ty = &mem.ty;
        self.op_line(&format!("memref.store {v}, {mem}[{index}] : {ty}"));
    }

    /// A vector load of `lanes` elements from a one-dimensional memref.
    pub fn vector_load(&mut self, mem: &Val, index: &Val, lanes: usize) -> Val {
        let vt = Ty::vector(&[lanes], mem.ty.element().clone());
        let ty = &mem.ty;
        self.op(
            vt.clone(),
            &format!("vector.load {mem}[{index}] : {ty}, {vt}"),
        )
    }

    pub fn vector_store(&mut self, v: &Val, mem: &Val, index: &Val) {
        let ty = &mem.ty;
        let vt = &v.ty;
        self.op_line(&format!("vector.store {v}, {mem}[{index}] : {ty}, {vt}"));
    }

    /// Element `k` of a one-dimensional vector.
    pub fn extract(&mut self, v: &Val, k: usize) -> Val {
        let elem = v.ty.element().clone();
        let vt = &v.ty;
        self.op(
            elem.clone(),
            &format!("vector.extract {v}[{k}] : {elem} from {vt}"),
        )
    }

    /// A vector built from scalars.
    pub fn from_elements(&mut self, elems: &[Val]) -> Val {
        let elem = elems[0].ty.clone();
        let vt = Ty::vector(&[elems.len()], elem);
        let names: Vec<&str> = elems.iter().map(|v| v.name.as_str()).collect();
        self.op(
            vt.clone(),
            &format!("vector.from_elements {} : {vt}", names.join(", ")),
        )
    }

    /// A private array of `len` elements (registers once every access is constant-indexed),
    /// allocated at the top of the function whatever region asks for it.
    pub fn alloca(&mut self, len: usize, elem: Ty) -> Val {
        let ty = Ty::array(len, elem, Space::Private);
        let name = self.fresh();
        let _ = writeln!(self.hoisted, "    {name} = memref.alloca() : {ty}");
        Val { name, ty }
    }

    /// A one-dimensional view of `len` elements of `elem` at byte `offset` of an `i8` buffer
    /// (how a work group's dynamic shared memory is carved).
    pub fn view(&mut self, bytes: &Val, offset: &Val, len: usize, elem: Ty) -> Val {
        let space = match &bytes.ty {
            Ty::MemRef(_, _, s) => *s,
            _ => Space::Default,
        };
        let ty = Ty::array(len, elem, space);
        let bt = &bytes.ty;
        self.op(
            ty.clone(),
            &format!("memref.view {bytes}[{offset}][] : {bt} to {ty}"),
        )
    }

    /// Reinterprets a kernel parameter (a bare pointer declared as a rank-0 memref) as a
    /// one-dimensional buffer of `len` elements.
    pub fn buffer_of(&mut self, param: &Val, len: &Val) -> Val {
        let elem = param.ty.element().clone();
        let ty = Ty::buffer(elem, Space::Default);
        let pt = &param.ty;
        self.op(
            ty.clone(),
            &format!(
                "memref.reinterpret_cast {param} to offset: [0], sizes: [{len}], strides: [1] : {pt} to {ty}"
            ),
        )
    }

    // --- structured control flow

    /// Opens `scf.for %iv = lo to hi step step`; returns the induction variable. Close with
    /// [`Emitter::end`].
    pub fn for_loop(&mut self, lo: &Val, hi: &Val, step: &Val) -> Val {
        let iv = self.fresh();
        self.line(&format!("scf.for {iv} = {lo} to {hi} step {step} {{"));
        self.indent();
        Val {
            name: iv,
            ty: Ty::Index,
        }
    }

    /// Opens `scf.for` with loop-carried values; returns the induction variable and the carried
    /// values inside the body. Close with [`Emitter::end_for`], yielding the next values.
    pub fn for_iter(
        &mut self,
        lo: &Val,
        hi: &Val,
        step: &Val,
        init: &[Val],
    ) -> (Val, Vec<Val>, Loop) {
        let iv = self.fresh();
        let result = self.fresh();
        let args: Vec<Val> = init
            .iter()
            .map(|v| Val {
                name: self.fresh(),
                ty: v.ty.clone(),
            })
            .collect();
        let bindings: Vec<String> = args
            .iter()
            .zip(init)
            .map(|(a, i)| format!("{a} = {i}"))
            .collect();
        let types: Vec<String> = init.iter().map(|v| v.ty.to_string()).collect();
        let results = results_of(&result, init);
        self.line(&format!(
            "{result}{} = scf.for {iv} = {lo} to {hi} step {step} iter_args({}) -> ({}) {{",
            arity(init.len()),
            bindings.join(", "),
            types.join(", ")
        ));
        self.indent();
        (
            Val {
                name: iv,
                ty: Ty::Index,
            },
            args,
            Loop { results },
        )
    }

    /// Yields the next carried values and closes a loop opened by [`Emitter::for_iter`].
    pub fn end_for(&mut self, next: &[Val], lp: Loop) -> Vec<Val> {
        self.yield_values("scf.yield", next);
        self.dedent();
        self.line("}");
        lp.results
    }

    fn yield_values(&mut self, op: &str, vals: &[Val]) {
        if vals.is_empty() {
            self.line(op);
            return;
        }
        let names: Vec<&str> = vals.iter().map(|v| v.name.as_str()).collect();
        let types: Vec<String> = vals.iter().map(|v| v.ty.to_string()).collect();
        self.line(&format!("{op} {} : {}", names.join(", "), types.join(", ")));
    }

    /// `scf.while` with state `init`: `cond` writes the test and returns the condition and the
    /// values passed to the body; `body` gets them and returns the next state. Returns the final
    /// values the condition passed on.
    pub fn while_loop(
        &mut self,
        init: &[Val],
        cond: impl FnOnce(&mut Emitter, &[Val]) -> (Val, Vec<Val>),
        body: impl FnOnce(&mut Emitter, &[Val]) -> Vec<Val>,
    ) -> Vec<Val> {
        let result = self.fresh();
        let args: Vec<Val> = init
            .iter()
            .map(|v| Val {
                name: self.fresh(),
                ty: v.ty.clone(),
            })
            .collect();
        let bindings: Vec<String> = args
            .iter()
            .zip(init)
            .map(|(a, i)| format!("{a} = {i}"))
            .collect();
        let in_types: Vec<String> = init.iter().map(|v| v.ty.to_string()).collect();
        // The header names the after-region's types, known only once `cond` ran: write the
        // regions into a scratch emitter first.
        let mut inner = self.scratch();
        let (c, passed) = cond(&mut inner, &args);
        inner.yield_values(&format!("scf.condition({c})"), &passed);
        inner.dedent();
        let body_args: Vec<Val> = passed
            .iter()
            .map(|v| Val {
                name: inner.fresh(),
                ty: v.ty.clone(),
            })
            .collect();
        let block_args: Vec<String> = body_args
            .iter()
            .map(|v| format!("{}: {}", v.name, v.ty))
            .collect();
        inner.line(&format!(
            "}} do {{\n{}^bb0({}):",
            "  ".repeat(inner.depth),
            block_args.join(", ")
        ));
        inner.indent();
        let next = body(&mut inner, &body_args);
        inner.yield_values("scf.yield", &next);
        self.next = inner.next;
        self.hoisted.push_str(&inner.hoisted);
        let out_types: Vec<String> = passed.iter().map(|v| v.ty.to_string()).collect();
        self.line(&format!(
            "{result}{} = scf.while ({}) : ({}) -> ({}) {{",
            arity(passed.len()),
            bindings.join(", "),
            in_types.join(", "),
            out_types.join(", ")
        ));
        self.text.push_str(&inner.text);
        self.line("}");
        results_of(&result, &passed)
    }

    /// Opens `scf.if cond` with no results; close with [`Emitter::end`].
    pub fn if_then(&mut self, cond: &Val) {
        self.line(&format!("scf.if {cond} {{"));
        self.indent();
    }

    /// Switches from the then-region to the else-region of an [`Emitter::if_then`].
    pub fn else_(&mut self) {
        self.dedent();
        self.line("} else {");
        self.indent();
    }

    /// `scf.if` with results: `then` and `otherwise` write their regions and return values of
    /// the same types.
    pub fn if_values(
        &mut self,
        cond: &Val,
        then: impl FnOnce(&mut Emitter) -> Vec<Val>,
        otherwise: impl FnOnce(&mut Emitter) -> Vec<Val>,
    ) -> Vec<Val> {
        let result = self.fresh();
        let mut inner = self.scratch();
        let a = then(&mut inner);
        inner.yield_values("scf.yield", &a);
        inner.dedent();
        inner.line("} else {");
        inner.indent();
        let b = otherwise(&mut inner);
        inner.yield_values("scf.yield", &b);
        self.next = inner.next;
        self.hoisted.push_str(&inner.hoisted);
        let types: Vec<String> = a.iter().map(|v| v.ty.to_string()).collect();
        self.line(&format!(
            "{result}{} = scf.if {cond} -> ({}) {{",
            arity(a.len()),
            types.join(", ")
        ));
        self.text.push_str(&inner.text);
        self.line("}");
        results_of(&result, &a)
    }

    /// An emitter for a region written before its header (whose types it decides): it continues
    /// this one's value numbering one level deeper.
    fn scratch(&self) -> Emitter {
        Emitter {
            text: String::new(),
            depth: self.depth + 1,
            next: self.next,
            loc: self.loc.clone(),
            fast: self.fast,
            hoisted: String::new(),
        }
    }

    /// Closes a region opened by [`Emitter::for_loop`] or [`Emitter::if_then`].
    pub fn end(&mut self) {
        self.dedent();
        self.line("}");
    }
}

fn arity(n: usize) -> String {
    if n > 1 {
        format!(":{n}")
    } else {
        String::new()
    }
}

fn results_of(name: &str, like: &[Val]) -> Vec<Val> {
    match like.len() {
        0 => Vec::new(),
        1 => vec![Val {
            name: name.to_string(),
            ty: like[0].ty.clone(),
        }],
        _ => like
            .iter()
            .enumerate()
            .map(|(k, v)| Val {
                name: format!("{name}#{k}"),
                ty: v.ty.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_follow_their_operand_types() {
        let mut e = Emitter::new(0, FastMath::default());
        let x = e.f32(1.5);
        let i = e.i32(3);
        let s = e.add(&x, &x);
        let t = e.add(&i, &i);
        let c = e.cmp(Cmp::Lt, &i, &t);
        let d = e.cmp(Cmp::Ne, &s, &x);
        let both = e.and(&c, &d);
        let f = e.cast(&i, &Ty::F32);
        let ix = e.cast(&f, &Ty::Index);
        let text = e.into_text();
        assert!(text.contains("arith.addf %v1, %v1 : f32"), "{text}");
        assert!(text.contains("arith.addi %v2, %v2 : i32"), "{text}");
        assert!(text.contains("arith.cmpi slt, %v2, %v4 : i32"), "{text}");
        assert!(text.contains("arith.cmpf une, %v3, %v1 : f32"), "{text}");
        assert!(text.contains("arith.andi %v5, %v6 : i1"), "{text}");
        assert!(text.contains("arith.sitofp %v2 : i32 to f32"), "{text}");
        assert_eq!(both.ty, Ty::I1);
        assert_eq!(ix.ty, Ty::Index);
        assert!(text.contains("arith.fptosi"), "{text}");
        assert!(text.contains("arith.index_cast"), "{text}");
    }

    #[test]
    fn locations_and_fast_math_are_attached() {
        let mut e = Emitter::new(
            1,
            FastMath {
                contract: true,
                reassoc: false,
                approx_div: false,
            },
        );
        e.set_loc(Some("loc(\"k.attn\":3:7)".into()));
        let x = e.f32(2.0);
        let y = e.mul(&x, &x);
        let z = e.div(&y, &x);
        let text = e.into_text();
        assert!(
            text.contains("arith.mulf %v1, %v1 fastmath<contract> : f32 loc(\"k.attn\":3:7)"),
            "{text}"
        );
        assert!(text.contains("arith.divf %v2, %v1 : f32 loc("), "{text}");
        assert_eq!(z.ty, Ty::F32);
        let mut e = Emitter::new(
            0,
            FastMath {
                approx_div: true,
                ..FastMath::default()
            },
        );
        let x = e.f32(2.0);
        e.div(&x, &x);
        let text = e.into_text();
        assert!(
            text.lines()
                .any(|l| l.contains("arith.divf") && l.contains("fastmath<afn> : f32")),
            "{text}"
        );
    }

    #[test]
    fn loops_carry_their_values() {
        let mut e = Emitter::new(0, FastMath::default());
        let lo = e.index(0);
        let hi = e.index(8);
        let one = e.index(1);
        let zero = e.f32(0.0);
        let (iv, args, lp) = e.for_iter(&lo, &hi, &one, std::slice::from_ref(&zero));
        let f = e.cast(&iv, &Ty::F32);
        let next = e.add(&args[0], &f);
        let out = e.end_for(&[next], lp);
        assert_eq!(out.len(), 1);
        let w = e.while_loop(
            std::slice::from_ref(&lo),
            |e, s| {
                let c = e.cmp(Cmp::Lt, &s[0], &hi);
                (c, s.to_vec())
            },
            |e, s| vec![e.add(&s[0], &one)],
        );
        let text = e.into_text();
        assert!(text.contains("iter_args(%v7 = %v4) -> (f32) {"), "{text}");
        assert!(text.contains("scf.yield %v10 : f32"), "{text}");
        assert!(
            text.contains("scf.while (%v12 = %v1) : (index) -> (index) {"),
            "{text}"
        );
        assert!(text.contains("scf.condition(%v13) %v12 : index"), "{text}");
        assert_eq!(w[0].ty, Ty::Index);
    }
}
