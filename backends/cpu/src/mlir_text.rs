//! Writing MLIR text: fresh SSA names, constants, loops. The code generator builds kernels with
//! it; MLIR's parser (through melior) checks what it writes.

use attnc_mlir::{ElementType, Param};
use std::fmt::Write;

pub struct Body {
    text: String,
    next: usize,
    depth: usize,
}

/// An MLIR float literal for an f32 constant (MLIR needs a decimal point or a hex bit pattern).
pub fn f32_literal(x: f64) -> String {
    let x = x as f32;
    if x.is_finite() {
        format!("{:.9e}", x)
    } else {
        format!("0x{:08X}", x.to_bits())
    }
}

impl Body {
    pub fn new(depth: usize) -> Self {
        Body {
            text: String::new(),
            next: 0,
            depth,
        }
    }

    pub fn into_text(self) -> String {
        self.text
    }

    pub fn line(&mut self, s: &str) {
        let _ = writeln!(self.text, "{}{s}", "  ".repeat(self.depth));
    }

    /// Emits `%vN = rhs` and returns `%vN`.
    pub fn op(&mut self, rhs: &str) -> String {
        self.next += 1;
        let v = format!("%v{}", self.next);
        self.line(&format!("{v} = {rhs}"));
        v
    }

    pub fn f32(&mut self, x: f64) -> String {
        self.op(&format!("arith.constant {} : f32", f32_literal(x)))
    }

    pub fn index(&mut self, x: i64) -> String {
        self.op(&format!("arith.constant {x} : index"))
    }

    /// Float arithmetic. Sums and products may be reassociated and contracted into FMAs, which
    /// lets LLVM vectorise reductions (a dot product over the head dimension); nothing assumes
    /// the absence of NaN or infinity, which masks and running maxima rely on.
    pub fn binf(&mut self, op: &str, a: &str, b: &str) -> String {
        let flags = if matches!(op, "addf" | "subf" | "mulf") {
            " fastmath<reassoc,contract>"
        } else {
            ""
        };
        self.op(&format!("arith.{op} {a}, {b}{flags} : f32"))
    }

    pub fn bini(&mut self, op: &str, a: &str, b: &str) -> String {
        self.op(&format!("arith.{op} {a}, {b} : index"))
    }

    /// `row * len + col`: the flat index of an element of a row-major buffer.
    pub fn row_offset(&mut self, row: &str, len: &str, col: &str) -> String {
        let r = self.bini("muli", row, len);
        self.bini("addi", &r, col)
    }

    pub fn math(&mut self, f: &str, a: &str) -> String {
        match f {
            "exp" => return self.exp(a),
            "expm1" => return self.expm1(a),
            _ => {}
        }
        self.op(&format!("math.{f} {a} : f32"))
    }

    /// `exp(x)` written out in arithmetic, so loops of it vectorise (a libm call does not):
    /// `x = k ln 2 + r` with |r| <= ln 2 / 2, `exp(r)` by its degree-6 Taylor polynomial
    /// (relative error below 4e-8), `2^k` built in the exponent bits. Below -87.3 it is 0 (as
    /// `exp(-inf)` must be), above 88.7 it is infinity.
    fn exp(&mut self, x: &str) -> String {
        let lo = self.f32(-87.0);
        let hi = self.f32(88.0);
        let clamped_lo = self.op(&format!("arith.maximumf {x}, {lo} : f32"));
        let c = self.op(&format!("arith.minimumf {clamped_lo}, {hi} : f32"));
        let log2e = self.f32(std::f64::consts::LOG2_E);
        let half = self.f32(0.5);
        let t = self.binf("mulf", &c, &log2e);
        let t = self.binf("addf", &t, &half);
        let k = self.op(&format!("math.floor {t} : f32"));
        let ln2_hi = self.f32(0.693_145_751_953_125);
        let ln2_lo = self.f32(1.428_606_765_330_187e-6);
        let a = self.binf("mulf", &k, &ln2_hi);
        let r = self.binf("subf", &c, &a);
        let b = self.binf("mulf", &k, &ln2_lo);
        let r = self.binf("subf", &r, &b);
        let mut p = self.f32(1.0 / 720.0);
        for coefficient in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            let m = self.binf("mulf", &p, &r);
            let c = self.f32(coefficient);
            p = self.binf("addf", &m, &c);
        }
        let ki = self.op(&format!("arith.fptosi {k} : f32 to i32"));
        let bias = self.op("arith.constant 127 : i32");
        let e = self.op(&format!("arith.addi {ki}, {bias} : i32"));
        let shift = self.op("arith.constant 23 : i32");
        let bits = self.op(&format!("arith.shli {e}, {shift} : i32"));
        let scale = self.op(&format!("arith.bitcast {bits} : i32 to f32"));
        let y = self.binf("mulf", &p, &scale);
        let under = self.f32(-87.3);
        let over = self.f32(88.7);
        let zero = self.f32(0.0);
        let inf = self.f32(f64::INFINITY);
        let small = self.op(&format!("arith.cmpf olt, {x}, {under} : f32"));
        let big = self.op(&format!("arith.cmpf ogt, {x}, {over} : f32"));
        let y = self.op(&format!("arith.select {small}, {zero}, {y} : f32"));
        self.op(&format!("arith.select {big}, {inf}, {y} : f32"))
    }

    /// `exp(x) - 1`, accurate near 0 where that difference cancels: its Taylor polynomial of
    /// degree 10 for |x| < 1/2 (truncation below 1e-11 relative), `exp(x) - 1` beyond, where
    /// the result is at least 0.39 in magnitude and the subtraction loses under 2 bits. MLIR's
    /// LLVM lowering would write `exp(x) - 1` everywhere.
    fn expm1(&mut self, x: &str) -> String {
        let mut p = self.f32(1.0 / 3_628_800.0);
        for n in (1..10).rev() {
            let m = self.binf("mulf", &p, x);
            let c = self.f32(1.0 / factorial(n));
            p = self.binf("addf", &m, &c);
        }
        let near = self.binf("mulf", &p, x);
        let e = self.exp(x);
        let one = self.f32(1.0);
        let far = self.binf("subf", &e, &one);
        let a = self.op(&format!("math.absf {x} : f32"));
        let half = self.f32(0.5);
        let small = self.op(&format!("arith.cmpf olt, {a}, {half} : f32"));
        self.select_f32(&small, &near, &far)
    }

    /// An index value as f32 (indices are small enough to be exact).
    pub fn index_to_f32(&mut self, i: &str) -> String {
        let w = self.op(&format!("arith.index_cast {i} : index to i64"));
        self.op(&format!("arith.sitofp {w} : i64 to f32"))
    }

    /// An f32 holding an integer, as an index (rounded down).
    pub fn f32_to_index(&mut self, x: &str) -> String {
        let f = self.math("floor", x);
        let w = self.op(&format!("arith.fptosi {f} : f32 to i64"));
        self.op(&format!("arith.index_cast {w} : i64 to index"))
    }

    pub fn select_f32(&mut self, cond_i1: &str, a: &str, b: &str) -> String {
        self.op(&format!("arith.select {cond_i1}, {a}, {b} : f32"))
    }

    pub fn load(&mut self, buf: &str, i: &str) -> String {
        self.op(&format!("memref.load {buf}[{i}] : memref<?xf32>"))
    }

    pub fn store(&mut self, v: &str, buf: &str, i: &str) {
        self.line(&format!("memref.store {v}, {buf}[{i}] : memref<?xf32>"));
    }

    /// Opens `for iv in lo..hi {`; returns `iv`. Close with [`Body::close`].
    pub fn open_for(&mut self, lo: &str, hi: &str) -> String {
        let one = self.index(1);
        self.next += 1;
        let iv = format!("%i{}", self.next);
        self.line(&format!("scf.for {iv} = {lo} to {hi} step {one} {{"));
        self.depth += 1;
        iv
    }

    pub fn close(&mut self) {
        self.depth -= 1;
        self.line("}");
    }

    /// Opens a loop carrying one f32 from `init`; returns (iv, the carried value, the loop's
    /// result). Close with [`Body::close_fold`] and the next carried value.
    pub fn open_fold(&mut self, lo: &str, hi: &str, init: &str) -> (String, String, String) {
        let one = self.index(1);
        self.next += 1;
        let iv = format!("%i{}", self.next);
        let acc = format!("%a{}", self.next);
        let result = format!("%r{}", self.next);
        self.line(&format!(
            "{result} = scf.for {iv} = {lo} to {hi} step {one} iter_args({acc} = {init}) -> (f32) {{"
        ));
        self.depth += 1;
        (iv, acc, result)
    }

    pub fn close_fold(&mut self, next: &str) {
        self.line(&format!("scf.yield {next} : f32"));
        self.close();
    }

    /// A stack buffer of `size` f32 set to zero: padded rows and columns of a register block
    /// then hold finite values. Call at function scope only (an alloca in a loop grows the stack
    /// every iteration).
    pub fn alloca_zeroed(&mut self, size: &str) -> String {
        let buf = self.op(&format!("memref.alloca({size}) : memref<?xf32>"));
        let zero = self.f32(0.0);
        let c0 = self.index(0);
        let i = self.open_for(&c0, size);
        self.store(&zero, &buf, &i);
        self.close();
        buf
    }

    /// Opens `for iv in (lo..hi).step_by(step)` carrying values of type `ty` from `inits`;
    /// returns (iv, the carried values, the loop's results). Close with [`Body::close_carry`].
    pub fn open_carry(
        &mut self,
        lo: &str,
        hi: &str,
        step: &str,
        inits: &[String],
        ty: &str,
    ) -> (String, Vec<String>, Vec<String>) {
        self.next += 1;
        let n = self.next;
        let iv = format!("%i{n}");
        let carried: Vec<String> = (0..inits.len()).map(|k| format!("%a{n}_{k}")).collect();
        let results = (0..inits.len()).map(|k| format!("%r{n}#{k}")).collect();
        let args: Vec<String> = carried
            .iter()
            .zip(inits)
            .map(|(a, i)| format!("{a} = {i}"))
            .collect();
        let types = vec![ty; inits.len()].join(", ");
        self.line(&format!(
            "%r{n}:{} = scf.for {iv} = {lo} to {hi} step {step} iter_args({}) -> ({types}) {{",
            inits.len(),
            args.join(", ")
        ));
        self.depth += 1;
        (iv, carried, results)
    }

    pub fn close_carry(&mut self, next: &[String], ty: &str) {
        let types = vec![ty; next.len()].join(", ");
        self.line(&format!("scf.yield {} : {types}", next.join(", ")));
        self.close();
    }

    /// Opens `for iv in (lo..hi).step_by(step) {`; returns `iv`.
    pub fn open_for_step(&mut self, lo: &str, hi: &str, step: &str) -> String {
        self.next += 1;
        let iv = format!("%i{}", self.next);
        self.line(&format!("scf.for {iv} = {lo} to {hi} step {step} {{"));
        self.depth += 1;
        iv
    }

    /// `vector<lanes x f32>` loaded from `buf[i..i + lanes]`.
    pub fn vload(&mut self, buf: &str, i: &str, lanes: usize) -> String {
        self.op(&format!(
            "vector.load {buf}[{i}] : memref<?xf32>, vector<{lanes}xf32>"
        ))
    }

    pub fn vstore(&mut self, v: &str, buf: &str, i: &str, lanes: usize) {
        self.line(&format!(
            "vector.store {v}, {buf}[{i}] : memref<?xf32>, vector<{lanes}xf32>"
        ));
    }

    pub fn vbroadcast(&mut self, x: &str, lanes: usize) -> String {
        self.op(&format!(
            "vector.broadcast {x} : f32 to vector<{lanes}xf32>"
        ))
    }

    /// `a * b + c`, fused, lane by lane.
    pub fn vfma(&mut self, a: &str, b: &str, c: &str, lanes: usize) -> String {
        self.op(&format!("vector.fma {a}, {b}, {c} : vector<{lanes}xf32>"))
    }

    pub fn vzero(&mut self, lanes: usize) -> String {
        self.op(&format!("arith.constant dense<0.0> : vector<{lanes}xf32>"))
    }

    /// Opens `if cond {` for an i1 condition; close with [`Body::close`].
    pub fn open_if(&mut self, cond: &str) {
        self.line(&format!("scf.if {cond} {{"));
        self.depth += 1;
    }
}

/// A kernel function: its parameters (buffers as `memref<T>`, integers, floats) and body.
pub fn function(name: &str, params: &[Param], body: Body) -> String {
    let args: Vec<String> = params
        .iter()
        .map(|p| match p {
            Param::Buffer { name, element, .. } => {
                let element = if *element == ElementType::I32 {
                    "i32"
                } else {
                    "f32"
                };
                format!("%{name}: memref<{element}>")
            }
            Param::Int { name } => format!("%{name}: i64"),
            Param::F32 { name } => format!("%{name}: f32"),
        })
        .collect();
    format!(
        "func.func @{name}({}) attributes {{llvm.emit_c_interface}} {{\n{}}}\n",
        args.join(", "),
        body.into_text()
    )
}

/// `n!` as f64 (exact for the small `n` of polynomial coefficients).
fn factorial(n: u32) -> f64 {
    (1..=n).map(f64::from).product()
}
