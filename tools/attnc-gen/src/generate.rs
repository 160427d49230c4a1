//! Type-directed generation of parallel (i, j) kernels. Every expression is drawn for a wanted
//! type (the indices it may vary with and its feature: a scalar or a row over `D` or `Dv`), so
//! what comes out is well typed by construction; the compiler's frontend still judges it.
//!
//! Numerics are kept tame on purpose, so that a disagreement means a compiler bug and not f32
//! rounding: divisions only by values bounded away from zero, `exp` only of bounded or
//! max-subtracted arguments, `log` and `sqrt` only of positive ones, and comparisons (whose
//! outcome rounding could flip) only between integers.

use crate::program::{Expr, Function, Program, Stmt};
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

/// The loop indices as a bit set.
pub(crate) const B: u8 = 1;
pub(crate) const H: u8 = 2;
pub(crate) const I: u8 = 4;
pub(crate) const J: u8 = 8;
pub(crate) const BH: u8 = B | H;
pub(crate) const BHI: u8 = B | H | I;
pub(crate) const BHIJ: u8 = B | H | I | J;

/// A value's feature: a scalar or a row over one of the two feature dims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Feat {
    Scalar,
    /// Over `D`: query and key rows, learned per-channel weights.
    D,
    /// Over `Dv`: value rows and the output (the same dim as `D` unless the kernel splits them).
    Dv,
}

/// Where an expression is being drawn.
#[derive(Clone, Copy)]
pub(crate) struct Ctx {
    /// Reductions over `j` (row statistics, aggregations) may appear.
    pub(crate) reductions: bool,
}

/// The tensors and values a kernel offers to expressions.
pub(crate) struct Scope {
    /// Names bound by `let`, with the indices they vary with and their feature.
    pub(crate) lets: Vec<(String, u8, Feat)>,
    /// The name of every `q`/`k` pair (several for differential attention).
    pub(crate) qk: Vec<(String, String)>,
    /// A per-head float input with a declared range.
    pub(crate) head_scalar: Option<String>,
    /// A per-channel weight vector over `D`.
    pub(crate) weight: Option<String>,
    /// A full bias `[B, H, Sq, Sk]`.
    pub(crate) bias: Option<String>,
    /// A relative-position table `[H, Sq + Sk - 1]`.
    pub(crate) rel: Option<String>,
    /// A bucket table `[H, NB]`.
    pub(crate) table: Option<String>,
    /// A vector over S bound by `let` (a prefix sum of gates), indexable by i and j.
    pub(crate) prefix: Option<String>,
    /// Whether q and k (so i and j) share the sequence dim.
    pub(crate) shared_s: bool,
    /// Whether Dv is its own dim.
    pub(crate) split_dv: bool,
    /// The key/value head index: `h`, or `h // (H // Hkv)`.
    pub(crate) kv_head: Expr,
}

pub struct Generator {
    pub(crate) rng: ChaCha8Rng,
    pub(crate) scope: Scope,
    pub(crate) functions: Vec<Function>,
    /// The kernel's statements so far: a sub-expression may bind a `let` before its user.
    pub(crate) body: Vec<Stmt>,
    pub(crate) counter: usize,
}

impl Generator {
    pub fn new(rng: ChaCha8Rng) -> Generator {
        Generator {
            rng,
            scope: Scope {
                lets: Vec::new(),
                qk: Vec::new(),
                head_scalar: None,
                weight: None,
                bias: None,
                rel: None,
                table: None,
                prefix: None,
                shared_s: true,
                split_dv: false,
                kv_head: Expr::name("h"),
            },
            functions: Vec::new(),
            body: Vec::new(),
            counter: 0,
        }
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    pub(crate) fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}{}", self.counter)
    }

    pub(crate) fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items
            .choose(&mut self.rng)
            .cloned()
            .unwrap_or_else(|| panic!("pick from an empty list"))
    }

    pub(crate) fn sq(&self) -> &'static str {
        if self.scope.shared_s { "S" } else { "Sq" }
    }

    pub(crate) fn sk(&self) -> &'static str {
        if self.scope.shared_s { "S" } else { "Sk" }
    }

    pub(crate) fn feat_dim(&self, f: Feat) -> &'static str {
        match f {
            Feat::Dv if self.scope.split_dv => "Dv",
            _ => "D",
        }
    }

    /// Whether two features are the same dim (Dv is D unless the kernel splits them).
    pub(crate) fn same_dim(&self, a: Feat, b: Feat) -> bool {
        a == b || (a != Feat::Scalar && b != Feat::Scalar && !self.scope.split_dv)
    }

    /// A whole parallel kernel with its shape.
    pub fn parallel_kernel(mut self, name: &str) -> Program {
        let rng = &mut self.rng;
        let batch = rng.random_range(1..=2);
        let heads = *[1, 2, 3, 4].choose(rng).unwrap_or(&2);
        let gqa = heads % 2 == 0 && rng.random_bool(0.25);
        self.scope.shared_s = rng.random_bool(0.75);
        self.scope.split_dv = rng.random_bool(0.35);
        // Mostly small, sometimes past one tile of keys or queries.
        let mut seq = || {
            if rng.random_bool(0.2) {
                rng.random_range(40..=140)
            } else {
                rng.random_range(1..=40)
            }
        };
        let (sq, sk) = (seq(), seq());
        let d = rng.random_range(1..=20);
        let dv = rng.random_range(1..=12);
        let dtype = *["f32", "f16", "bf16"].choose(rng).unwrap_or(&"f32");
        let out_dtype = *["f32", "f32", "f16", "bf16"].choose(rng).unwrap_or(&"f32");
        let differential = rng.random_bool(0.15);

        let mut shape = vec![("B".to_string(), batch), ("H".to_string(), heads)];
        let mut dims = vec!["B", "H"];
        if self.scope.shared_s {
            dims.push("S");
            shape.push(("S".into(), sq));
        } else {
            dims.extend(["Sq", "Sk"]);
            shape.push(("Sq".into(), sq));
            shape.push(("Sk".into(), sk));
        }
        dims.push("D");
        shape.push(("D".into(), d));
        if self.scope.split_dv {
            dims.push("Dv");
            shape.push(("Dv".into(), dv));
        }
        let hkv = if gqa {
            dims.push("Hkv");
            let hkv = if self.chance(0.5) { 1 } else { heads / 2 };
            shape.push(("Hkv".into(), hkv));
            self.scope.kv_head = Expr::bin(
                "//",
                Expr::name("h"),
                Expr::bin("//", Expr::name("H"), Expr::name("Hkv")),
            );
            "Hkv"
        } else {
            "H"
        };
        let mut extra_dims = Vec::new();
        let use_table = self.chance(0.2);
        if use_table {
            let nb = self.rng.random_range(1..=12);
            extra_dims.push(("NB".to_string(), Some(nb)));
            shape.push(("NB".into(), nb));
        }
        let window = self.rng.random_range(1..=24);
        let mut dim_decls: Vec<(String, Option<i64>)> =
            dims.iter().map(|d| (d.to_string(), None)).collect();
        dim_decls.extend(extra_dims);
        dim_decls.push(("W".into(), Some(window)));
        shape.push(("W".into(), window));
        self.body.push(Stmt::Dims(dim_decls));
        if gqa {
            self.body.push(Stmt::Require(Expr::bin(
                "==",
                Expr::bin("%", Expr::name("H"), Expr::name("Hkv")),
                Expr::Int(0),
            )));
        }

        let (sqn, skn) = (self.sq(), self.sk());
        let dvn = self.feat_dim(Feat::Dv);
        let row = |h: &str, s: &str, f: &str| {
            vec![Expr::name("B"), Expr::name(h), Expr::name(s), Expr::name(f)]
        };
        let pairs = if differential { 2 } else { 1 };
        for p in 0..pairs {
            let (qn, kn) = if differential {
                (format!("q{}", p + 1), format!("k{}", p + 1))
            } else {
                ("q".to_string(), "k".to_string())
            };
            self.body.push(input(&qn, dtype, row("H", sqn, "D"), None));
            self.body.push(input(&kn, dtype, row(hkv, skn, "D"), None));
            self.scope.qk.push((qn, kn));
        }
        self.body.push(input("v", dtype, row(hkv, skn, dvn), None));

        // Extra inputs, each with its own chance.
        if self.chance(0.35) {
            let (lo, hi) = self.pick(&[(0.5, 2.0), (-1.0, 1.0), (0.1, 0.9), (1.0, 4.0)]);
            self.body.push(input(
                "hs",
                "f32",
                vec![Expr::name("H")],
                Some((Expr::Float(lo), Expr::Float(hi))),
            ));
            self.scope.head_scalar = Some("hs".into());
        }
        if self.chance(0.25) {
            self.body
                .push(input("w", "f32", vec![Expr::name("D")], None));
            self.scope.weight = Some("w".into());
        }
        if self.chance(0.15) {
            let dims = vec![
                Expr::name("B"),
                Expr::name("H"),
                Expr::name(sqn),
                Expr::name(skn),
            ];
            let dtype = self.pick(&["f32", "f16"]);
            self.body.push(input("bias", dtype, dims, None));
            self.scope.bias = Some("bias".into());
        }
        if self.chance(0.2) {
            let len = Expr::bin(
                "-",
                Expr::bin("+", Expr::name(sqn), Expr::name(skn)),
                Expr::Int(1),
            );
            self.body
                .push(input("rel", "f32", vec![Expr::name("H"), len], None));
            self.scope.rel = Some("rel".into());
        }
        if use_table {
            self.body.push(input(
                "tab",
                "f32",
                vec![Expr::name("H"), Expr::name("NB")],
                None,
            ));
            self.scope.table = Some("tab".into());
        }
        let lens = self.chance(0.15);
        if lens {
            self.body.push(input(
                "lens",
                "i32",
                vec![Expr::name("B")],
                Some((Expr::Int(1), Expr::name(skn))),
            ));
        }
        let doc = self.scope.shared_s && self.chance(0.12);
        if doc {
            self.body.push(input(
                "doc",
                "i32",
                vec![Expr::name("B"), Expr::name("S")],
                Some((Expr::Int(0), Expr::Int(3))),
            ));
        }
        let gates = self.scope.shared_s && self.chance(0.15);
        if gates {
            self.body.push(input(
                "fg",
                "f32",
                vec![Expr::name("B"), Expr::name("H"), Expr::name("S")],
                None,
            ));
        }
        let sink = self.chance(0.1);
        if sink {
            self.body
                .push(input("sink", "f32", vec![Expr::name("H")], None));
        }
        let lambda = differential && self.chance(0.7);
        if lambda {
            self.body.push(input(
                "lam",
                "f32",
                vec![Expr::name("H")],
                Some((Expr::Float(0.1), Expr::Float(0.9))),
            ));
        }
        let second_output = self.chance(0.15);
        self.body.push(Stmt::Output {
            name: "o".into(),
            dtype: out_dtype,
            dims: row("H", sqn, dvn),
        });
        if second_output {
            self.body.push(Stmt::Output {
                name: "r".into(),
                dtype: "f32",
                dims: vec![Expr::name("B"), Expr::name("H"), Expr::name(sqn)],
            });
        }

        if gates {
            let c = self.fresh("c");
            let g = Expr::index("fg", vec![Expr::name("b"), Expr::name("h")]);
            let f = self.pick(&["log_sigmoid", "tanh", "sigmoid"]);
            let e = Expr::call("cumsum", vec![Expr::call(f, vec![g])]);
            self.body.push(Stmt::Let(c.clone(), e));
            self.scope.prefix = Some(c);
        }
        // A few lets of every kind, for later expressions to read.
        for _ in 0..self.rng.random_range(0..=3) {
            let (idx, feat) = self.pick(&[
                (BHI, Feat::D),
                (BH | J, Feat::D),
                (BHIJ, Feat::Scalar),
                (BHI, Feat::Scalar),
                (H, Feat::Scalar),
                (BHIJ, Feat::D),
            ]);
            let e = self.float(idx, feat, 2, Ctx { reductions: false });
            let n = self.fresh("x");
            self.body.push(Stmt::Let(n.clone(), e));
            self.scope.lets.push((n, idx, feat));
        }

        // One score (and so one weight map) per q/k pair.
        let mut weights = Vec::new();
        for p in 0..pairs {
            let s = self.score(p);
            let sn = self.fresh("s");
            self.body.push(Stmt::Let(sn.clone(), s));
            let w = self.weight(&sn, sink);
            let pn = self.fresh("p");
            self.body.push(Stmt::Let(pn.clone(), w));
            weights.push(pn);
        }
        if let Some(m) = self.mask(lens, doc) {
            self.body.push(Stmt::Mask(m));
        }
        // The aggregation: one map, or the difference of two (differential attention).
        let mut weight = Expr::name(&weights[0]);
        if let Some(second) = weights.get(1) {
            let l = if lambda {
                Expr::index("lam", vec![Expr::name("h")])
            } else {
                Expr::Float(0.5)
            };
            weight = Expr::bin("-", weight, Expr::bin("*", l, Expr::name(second)));
        }
        let value = self.value_row();
        let mut agg = Expr::call("sum_j", vec![Expr::bin("*", weight, value)]);
        if self.chance(0.3) {
            // An aggregation mixed with other terms inside the sum.
            let extra = self.float(BHIJ, Feat::Dv, 2, Ctx { reductions: false });
            let op = self.pick(&["+", "-"]);
            agg = Expr::call(
                "sum_j",
                vec![Expr::bin(op, agg.children()[0].clone(), extra)],
            );
        }
        let a = self.fresh("a");
        self.body.push(Stmt::Let(a.clone(), agg));
        self.scope.lets.push((a.clone(), BHI, Feat::Dv));
        let out = if self.chance(0.4) {
            let post = self.float(BHI, Feat::Dv, 2, Ctx { reductions: true });
            let op = self.pick(&["+", "-", "*"]);
            Expr::bin(op, Expr::name(&a), post)
        } else if self.chance(0.3) {
            // RMS-normalised heads, as differential attention does.
            let an = Expr::name(&a);
            Expr::bin(
                "/",
                an.clone(),
                Expr::call(
                    "sqrt",
                    vec![Expr::bin(
                        "+",
                        Expr::call("mean", vec![Expr::bin("*", an.clone(), an)]),
                        Expr::Float(1e-3),
                    )],
                ),
            )
        } else {
            Expr::name(&a)
        };
        let ijdx = vec![Expr::name("b"), Expr::name("h"), Expr::name("i")];
        self.body.push(Stmt::Assign {
            target: "o".into(),
            indices: ijdx.clone(),
            value: out,
        });
        if second_output {
            let x = self.float(BHIJ, Feat::Scalar, 2, Ctx { reductions: false });
            let r = match self.rng.random_range(0..3) {
                0 => Expr::call("max_j", vec![x]),
                1 => Expr::call("min_j", vec![x]),
                _ => Expr::bin("/", Expr::call("sum_j", vec![x]), Expr::name(self.sk())),
            };
            self.body.push(Stmt::Assign {
                target: "r".into(),
                indices: ijdx,
                value: r,
            });
        }
        Program {
            functions: self.functions,
            kernel: name.to_string(),
            body: self.body,
            shape,
        }
    }

    /// A row of `q` (query side) or `k` (key side) of pair `p`, maybe mapped.
    fn qk_row(&mut self, p: usize, key: bool) -> Expr {
        let (q, k) = self.scope.qk[p].clone();
        let raw = if key {
            Expr::index(
                &k,
                vec![Expr::name("b"), self.scope.kv_head.clone(), Expr::name("j")],
            )
        } else {
            Expr::index(&q, vec![Expr::name("b"), Expr::name("h"), Expr::name("i")])
        };
        match self.rng.random_range(0..6) {
            0 => self.rmsnorm(raw),
            1 => {
                let other = self.float(if key { BH | J } else { BHI }, Feat::D, 1, NO_RED);
                Expr::bin(self.pick(&["+", "*"]), raw, other)
            }
            2 => Expr::call(self.pick(&["tanh", "elu", "silu", "relu"]), vec![raw]),
            _ => raw,
        }
    }

    /// `rmsnorm(x, w)` through a user function (defined once).
    pub(crate) fn rmsnorm(&mut self, x: Expr) -> Expr {
        if !self.functions.iter().any(|f| f.name == "rmsnorm") {
            let xx = Expr::bin("*", Expr::name("x"), Expr::name("x"));
            let den = Expr::call(
                "sqrt",
                vec![Expr::bin(
                    "+",
                    Expr::call("mean", vec![xx]),
                    Expr::Float(1e-3),
                )],
            );
            self.functions.push(Function {
                name: "rmsnorm".into(),
                params: vec!["x".into(), "w".into()],
                lets: Vec::new(),
                result: Expr::bin("*", Expr::bin("/", Expr::name("x"), den), Expr::name("w")),
            });
        }
        let w = match &self.scope.weight {
            Some(w) if self.rng.random_bool(0.7) => Expr::name(w),
            _ => Expr::Float(1.0),
        };
        Expr::call("rmsnorm", vec![x, w])
    }

    /// The score of pair `p`: a query-key contraction (or a distance), plus position terms.
    fn score(&mut self, p: usize) -> Expr {
        let q = self.qk_row(p, false);
        let k = self.qk_row(p, true);
        let scale = Expr::call("sqrt", vec![Expr::name("D")]);
        let mut s = match self.rng.random_range(0..10) {
            0 => Expr::call("sum", vec![Expr::call("min", vec![q, k])]),
            1 => {
                // A vector varying with both i and j, bound by let (Euclidean distance).
                let d = self.fresh("d");
                self.scope.lets.push((d.clone(), BHIJ, Feat::D));
                self.body.push(Stmt::Let(d.clone(), Expr::bin("-", q, k)));
                let dd = Expr::name(&d);
                match self.rng.random_range(0..3) {
                    0 => Expr::Neg(Box::new(Expr::call(
                        "sum",
                        vec![Expr::bin("*", dd.clone(), dd)],
                    ))),
                    1 => Expr::call("sum", vec![dd]),
                    _ => Expr::Neg(Box::new(Expr::call("norm", vec![dd]))),
                }
            }
            2 => Expr::call("max", vec![Expr::bin("*", q, k)]),
            _ => Expr::call("dot", vec![q, k]),
        };
        s = Expr::bin("/", s, scale);
        for _ in 0..self.rng.random_range(0..=2) {
            let t = self.position_term();
            s = Expr::bin("+", s, t);
        }
        if self.chance(0.15) {
            let cap = Expr::Float(self.pick(&[5.0, 30.0, 2.0]));
            s = Expr::bin(
                "*",
                cap.clone(),
                Expr::call("tanh", vec![Expr::bin("/", s, cap)]),
            );
        }
        s
    }
}

pub(crate) const NO_RED: Ctx = Ctx { reductions: false };

fn input(name: &str, dtype: &'static str, dims: Vec<Expr>, range: Option<(Expr, Expr)>) -> Stmt {
    Stmt::Input {
        names: vec![name.to_string()],
        dtype,
        dims,
        range,
    }
}
