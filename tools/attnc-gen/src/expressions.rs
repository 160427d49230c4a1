//! Drawing expressions of a wanted type for the parallel generator: floats that vary with at
//! most a given set of indices and have a given feature, integer index arithmetic, position
//! terms, weights (normalisers) and masks.

use crate::generate::{B, BH, BHI, BHIJ, Ctx, Feat, Generator, H, I, J, NO_RED};
use crate::program::{Expr, Function, Stmt};
use rand::Rng;

fn has(set: u8, idx: u8) -> bool {
    set & idx == idx
}

fn f(v: f64) -> Expr {
    Expr::Float(v)
}

fn n(name: &str) -> Expr {
    Expr::name(name)
}

fn call1(func: &str, a: Expr) -> Expr {
    Expr::call(func, vec![a])
}

impl Generator {
    /// A float of feature `feat` varying with at most the indices in `idx`.
    pub(crate) fn float(&mut self, idx: u8, feat: Feat, depth: u32, ctx: Ctx) -> Expr {
        if depth == 0 || self.chance(0.3) {
            return self.float_leaf(idx, feat, ctx);
        }
        let d = depth - 1;
        match self.rng.random_range(0..11) {
            0..=2 => {
                let a = self.float(idx, feat, d, ctx);
                self.tame_unary(a)
            }
            3..=5 => {
                let (fa, fb) = self.operand_features(idx, feat);
                let a = self.float(idx, fa, d, ctx);
                let b = self.float(idx, fb, d, ctx);
                Expr::bin(self.pick(&["+", "-", "*"]), a, b)
            }
            6 => {
                let (fa, fb) = self.operand_features(idx, feat);
                let a = self.float(idx, fa, d, ctx);
                let b = self.float(idx, fb, d, ctx);
                Expr::call(self.pick(&["min", "max"]), vec![a, b])
            }
            7 => {
                let a = self.float(idx, feat, d, ctx);
                let den = self.positive(idx, d, ctx);
                Expr::bin("/", a, den)
            }
            8 if feat == Feat::Scalar => self.vector_reduction(idx, d, ctx),
            8 => {
                let x = self.float(idx, feat, d, ctx);
                match self.rng.random_range(0..3) {
                    0 => Expr::bin("-", x.clone(), call1("mean", x)),
                    1 => Expr::bin("/", x.clone(), Expr::bin("+", call1("norm", x), f(1.0))),
                    _ => Expr::bin("/", call1("cumsum", x), n(self.feat_dim(feat))),
                }
            }
            9 => {
                let c = self.int_condition(idx);
                let a = self.float(idx, feat, d, ctx);
                let b = self.float(idx, feat, d, ctx);
                Expr::call("select", vec![c, a, b])
            }
            _ => Expr::Neg(Box::new(self.float(idx, feat, d, ctx))),
        }
    }

    /// The features of the two operands of an elementwise binary operation: a scalar may
    /// broadcast over a vector.
    fn operand_features(&mut self, idx: u8, feat: Feat) -> (Feat, Feat) {
        if feat == Feat::Scalar || !self.has_vector(idx, feat) {
            return (feat, feat);
        }
        match self.rng.random_range(0..4) {
            0 => (feat, Feat::Scalar),
            1 => (Feat::Scalar, feat),
            _ => (feat, feat),
        }
    }

    /// A function that keeps its argument's range tame (no overflow, no poles).
    fn tame_unary(&mut self, x: Expr) -> Expr {
        match self.rng.random_range(0..17) {
            0 => call1("tanh", x),
            1 => call1("sigmoid", x),
            2 => call1("relu", x),
            3 => call1("abs", x),
            4 => call1("silu", x),
            5 => call1("elu", x),
            6 => call1("softplus", x),
            7 => call1("log_sigmoid", x),
            8 => call1("sin", x),
            9 => call1("cos", x),
            10 => call1("gelu", x),
            11 => call1("exp", Expr::Neg(Box::new(call1("abs", x)))),
            12 => call1("exp", call1("tanh", x)),
            13 => call1("log1p", call1("abs", x)),
            14 => call1("sqrt", Expr::bin("+", call1("abs", x), f(0.5))),
            15 => call1(
                "rsqrt",
                Expr::bin("+", Expr::bin("*", x.clone(), x), f(1.0)),
            ),
            _ => {
                let e = self.pick(&[2.0, 0.5, 3.0, -1.0, 1.5]);
                Expr::call(
                    "pow",
                    vec![Expr::bin("+", call1("sigmoid", x), f(0.5)), f(e)],
                )
            }
        }
    }

    /// A scalar bounded away from zero from below (a safe denominator).
    fn positive(&mut self, idx: u8, depth: u32, ctx: Ctx) -> Expr {
        match self.rng.random_range(0..5) {
            0 => call1("sqrt", n("D")),
            1 => n(self.pick(&["D", "H", "W"])),
            2 => {
                let x = self.float(idx, Feat::Scalar, depth, ctx);
                Expr::bin("+", f(1.0), call1("abs", x))
            }
            3 => {
                let x = self.float(idx, Feat::Scalar, depth, ctx);
                Expr::bin("+", f(1.0), call1("sigmoid", x))
            }
            _ => {
                let x = self.float(idx, Feat::Scalar, depth, ctx);
                call1("sqrt", Expr::bin("+", Expr::bin("*", x.clone(), x), f(1.0)))
            }
        }
    }

    /// A scalar from a vector: `sum`, `mean`, `max`, `min`, `norm` or a `dot` of two.
    fn vector_reduction(&mut self, idx: u8, depth: u32, ctx: Ctx) -> Expr {
        let feat = if self.chance(0.5) { Feat::D } else { Feat::Dv };
        if !self.has_vector(idx, feat) {
            return self.float_leaf(idx, Feat::Scalar, ctx);
        }
        let x = self.float(idx, feat, depth, ctx);
        match self.rng.random_range(0..6) {
            0 => call1("sum", x),
            1 => call1("mean", x),
            2 => call1("max", x),
            3 => call1("min", x),
            4 => call1("norm", x),
            _ => {
                let y = self.float(idx, feat, depth, ctx);
                Expr::call("dot", vec![x, y])
            }
        }
    }

    /// Whether some leaf gives a vector of `feat` within `idx`.
    fn has_vector(&self, idx: u8, feat: Feat) -> bool {
        !self.vector_leaves(idx, feat).is_empty()
    }

    fn vector_leaves(&self, idx: u8, feat: Feat) -> Vec<Expr> {
        let mut out = Vec::new();
        let kvh = self.scope.kv_head.clone();
        let (b, h, i, j) = (n("b"), n("h"), n("i"), n("j"));
        if self.same_dim(feat, Feat::D) {
            for (q, k) in &self.scope.qk {
                if has(idx, BHI) {
                    out.push(Expr::index(q, vec![b.clone(), h.clone(), i.clone()]));
                }
                if has(idx, BH | J) {
                    out.push(Expr::index(k, vec![b.clone(), kvh.clone(), j.clone()]));
                }
            }
            if let Some(w) = &self.scope.weight {
                out.push(n(w));
            }
        }
        if self.same_dim(feat, Feat::Dv) {
            if has(idx, BH | J) {
                out.push(Expr::index("v", vec![b.clone(), kvh.clone(), j]));
            }
            if has(idx, BHI) && self.scope.shared_s {
                out.push(Expr::index("v", vec![b, kvh, i]));
            }
        }
        for (name, li, lf) in &self.scope.lets {
            if *lf != Feat::Scalar && self.same_dim(*lf, feat) && has(idx, *li) {
                out.push(n(name));
            }
        }
        out
    }

    fn float_leaf(&mut self, idx: u8, feat: Feat, ctx: Ctx) -> Expr {
        if feat != Feat::Scalar {
            let leaves = self.vector_leaves(idx, feat);
            if leaves.is_empty() {
                // Only reached when a caller asks for what no leaf offers; a scalar broadcast
                // would change the type, so say it loudly.
                panic!("the generator asked for a vector of {feat:?} over {idx:#b} with none");
            }
            return self.pick(&leaves);
        }
        for _ in 0..8 {
            match self.rng.random_range(0..12) {
                0 | 1 => {
                    let c = self.pick(&SAFE);
                    return f(c);
                }
                2 => {
                    let d = self.pick(&["D", self.sq(), self.sk(), "H"]);
                    return n(d);
                }
                3 => {
                    let mut idxs: Vec<Expr> = Vec::new();
                    for (bit, name) in [(I, "i"), (J, "j"), (H, "h"), (B, "b")] {
                        if has(idx, bit) {
                            idxs.push(n(name));
                        }
                    }
                    if has(idx, I | J) {
                        idxs.push(Expr::bin("-", n("i"), n("j")));
                    }
                    if !idxs.is_empty() {
                        let e = self.pick(&idxs);
                        return Expr::bin("*", f(0.125), e);
                    }
                }
                4 | 5 => {
                    let lets: Vec<Expr> = self
                        .scope
                        .lets
                        .iter()
                        .filter(|(_, li, lf)| *lf == Feat::Scalar && has(idx, *li))
                        .map(|(name, _, _)| n(name))
                        .collect();
                    if !lets.is_empty() {
                        return self.pick(&lets);
                    }
                }
                6 => {
                    if let Some(hs) = self.scope.head_scalar.clone()
                        && has(idx, H)
                    {
                        return Expr::index(&hs, vec![n("h")]);
                    }
                }
                7 if has(idx, BHIJ) => return self.position_term(),
                8 if has(idx, BH | J) => {
                    // A value element by a constant index on its feature axis.
                    let last = if self.chance(0.5) {
                        Expr::Int(0)
                    } else {
                        Expr::bin("-", n(self.feat_dim(Feat::Dv)), Expr::Int(1))
                    };
                    let kvh = self.scope.kv_head.clone();
                    return Expr::index("v", vec![n("b"), kvh, n("j"), last]);
                }
                9 if ctx.reductions => {
                    // A row statistic; it varies with the indices of its argument, less j.
                    let x = self.float(idx | J, Feat::Scalar, 1, NO_RED);
                    let x = if self.chance(0.5) {
                        self.tame_unary(x)
                    } else {
                        x
                    };
                    return match self.rng.random_range(0..3) {
                        0 => call1("max_j", x),
                        1 => call1("min_j", x),
                        _ => Expr::bin("/", call1("sum_j", x), n(self.sk())),
                    };
                }
                10 | 11 if self.has_vector(idx, Feat::D) && self.chance(0.5) => {
                    let x = self.float_leaf(idx, Feat::D, ctx);
                    return call1(self.pick(&["sum", "mean", "max", "norm"]), x);
                }
                _ => {}
            }
        }
        f(1.0)
    }

    /// An integer condition on the indices in `idx` (exact on every backend).
    pub(crate) fn int_condition(&mut self, idx: u8) -> Expr {
        let mut options = vec![Expr::bin(">", n("D"), Expr::Int(3))];
        if has(idx, I | J) {
            options.push(Expr::bin("<", n("i"), n("j")));
            options.push(Expr::bin(
                "==",
                Expr::bin("%", Expr::bin("+", n("i"), n("j")), Expr::Int(2)),
                Expr::Int(0),
            ));
        }
        if has(idx, H) {
            options.push(Expr::bin("==", n("h"), Expr::Int(0)));
        }
        if has(idx, I) {
            options.push(Expr::bin(">=", n("i"), n("W")));
        }
        if has(idx, J) {
            options.push(Expr::bin("<", n("j"), Expr::Int(3)));
        }
        if has(idx, B) {
            options.push(Expr::bin("==", n("b"), Expr::Int(0)));
        }
        self.pick(&options)
    }

    /// A scalar over (b, h, i, j) that depends on positions: ALiBi, a bias tensor, relative
    /// and bucketed tables read through computed indices, prefix sums of gates.
    pub(crate) fn position_term(&mut self) -> Expr {
        let (i, j) = (n("i"), n("j"));
        let dist = || Expr::bin("-", n("i"), n("j"));
        for _ in 0..6 {
            match self.rng.random_range(0..7) {
                0 => {
                    let slope = match self.scope.head_scalar.clone() {
                        Some(hs) if self.chance(0.5) => Expr::index(&hs, vec![n("h")]),
                        _ => Expr::call(
                            "pow",
                            vec![
                                f(2.0),
                                Expr::bin(
                                    "/",
                                    Expr::bin("*", f(-8.0), Expr::bin("+", n("h"), Expr::Int(1))),
                                    n("H"),
                                ),
                            ],
                        ),
                    };
                    return Expr::Neg(Box::new(Expr::bin("*", slope, call1("abs", dist()))));
                }
                1 => {
                    if let Some(bias) = &self.scope.bias {
                        return Expr::index(bias, vec![n("b"), n("h"), i, j]);
                    }
                }
                2 => {
                    if let Some(rel) = self.scope.rel.clone() {
                        let k = Expr::bin("-", Expr::bin("+", dist(), n(self.sk())), Expr::Int(1));
                        return Expr::index(&rel, vec![n("h"), k]);
                    }
                }
                3 | 4 => {
                    if let Some(tab) = self.scope.table.clone() {
                        let nb1 = Expr::bin("-", n("NB"), Expr::Int(1));
                        let k = match self.rng.random_range(0..4) {
                            0 => Expr::call(
                                "min",
                                vec![Expr::call("max", vec![dist(), Expr::Int(0)]), nb1],
                            ),
                            // `abs` is a float function: an integer distance is a max.
                            1 => Expr::bin(
                                "%",
                                Expr::call("max", vec![dist(), Expr::bin("-", n("j"), n("i"))]),
                                n("NB"),
                            ),
                            2 => Expr::bin(
                                "%",
                                Expr::bin("+", i, Expr::bin("*", Expr::Int(2), j)),
                                n("NB"),
                            ),
                            _ => {
                                Expr::call("min", vec![Expr::bin("//", n("j"), Expr::Int(2)), nb1])
                            }
                        };
                        return Expr::index(&tab, vec![n("h"), k]);
                    }
                }
                5 => {
                    if let Some(c) = &self.scope.prefix {
                        return Expr::bin("-", Expr::index(c, vec![i]), Expr::index(c, vec![j]));
                    }
                }
                _ => return Expr::bin("*", f(0.0625), dist()),
            }
        }
        Expr::bin("*", f(-0.25), call1("abs", dist()))
    }

    /// The weight of each (i, j) from the score named `s`: a normaliser (the prelude's
    /// softmax, a sink, one drawn at random, one with no online form) or an elementwise map.
    pub(crate) fn weight(&mut self, s: &str, sink: bool) -> Expr {
        let x = n(s);
        let sk = n(self.sk());
        match self.rng.random_range(0..9) {
            0 | 1 => call1("softmax", x),
            2 if sink => {
                self.define_sink();
                Expr::call(
                    "softmax_with_sink",
                    vec![x, Expr::index("sink", vec![n("h")])],
                )
            }
            3 => {
                let name = self.online_normaliser();
                call1(&name, x)
            }
            4 => {
                self.define_zscore();
                Expr::bin("/", call1("sigmoid", call1("zscore", x)), sk)
            }
            5 => call1("sigmoid", Expr::bin("-", x, call1("log", sk))),
            6 => Expr::bin("/", call1(self.pick(&["relu", "tanh", "sigmoid"]), x), sk),
            _ => {
                self.scope.lets.push((s.to_string(), BHIJ, Feat::Scalar));
                let e = self.float(BHIJ, Feat::Scalar, 2, NO_RED);
                let e = Expr::bin(self.pick(&["+", "*", "-"]), x, e);
                Expr::bin("/", self.tame_unary(e), sk)
            }
        }
    }

    fn define(&mut self, func: Function) {
        if !self.functions.iter().any(|g| g.name == func.name) {
            self.functions.push(func);
        }
    }

    fn define_sink(&mut self) {
        let (x, sk) = (n("x"), n("sink"));
        self.define(Function {
            name: "softmax_with_sink".into(),
            params: vec!["x".into(), "sink".into()],
            lets: vec![
                (
                    "m".into(),
                    Expr::call("max", vec![call1("max_j", x.clone()), sk.clone()]),
                ),
                ("e".into(), call1("exp", Expr::bin("-", x, n("m")))),
            ],
            result: Expr::bin(
                "/",
                n("e"),
                Expr::bin(
                    "+",
                    call1("sum_j", n("e")),
                    call1("exp", Expr::bin("-", sk, n("m"))),
                ),
            ),
        });
    }

    /// `(x - mean) / sqrt(var)` over the keys: three sweeps, no online form.
    fn define_zscore(&mut self) {
        let sk = self.sk();
        let centred = Expr::bin("-", n("x"), n("mu"));
        self.define(Function {
            name: "zscore".into(),
            params: vec!["x".into()],
            lets: vec![
                ("mu".into(), Expr::bin("/", call1("sum_j", n("x")), n(sk))),
                (
                    "var".into(),
                    Expr::bin(
                        "/",
                        call1("sum_j", Expr::bin("*", centred.clone(), centred.clone())),
                        n(sk),
                    ),
                ),
            ],
            result: Expr::bin(
                "/",
                centred,
                call1("sqrt", Expr::bin("+", n("var"), f(1e-3))),
            ),
        });
    }

    /// A normaliser with a running maximum, drawn from a few shapes: a temperature, a floor
    /// under the maximum, an extra term in the denominator.
    fn online_normaliser(&mut self) -> String {
        let name = self.fresh("norm");
        let x = n("x");
        let temp = self.pick(&[1.0, 0.5, 2.0]);
        let xs = if temp == 1.0 {
            x.clone()
        } else {
            Expr::bin("*", x.clone(), f(temp))
        };
        let m = if self.chance(0.3) {
            Expr::call("max", vec![call1("max_j", xs.clone()), f(0.0)])
        } else {
            call1("max_j", xs.clone())
        };
        let e = call1("exp", Expr::bin("-", xs, n("m")));
        let den = match self.rng.random_range(0..3) {
            0 => call1("sum_j", n("e")),
            1 => Expr::bin("+", call1("sum_j", n("e")), f(1e-3)),
            _ => Expr::bin(
                "+",
                call1("sum_j", n("e")),
                call1("exp", Expr::Neg(Box::new(n("m")))),
            ),
        };
        self.define(Function {
            name: name.clone(),
            params: vec!["x".into()],
            lets: vec![("m".into(), m), ("e".into(), e)],
            result: Expr::bin("/", n("e"), den),
        });
        name
    }

    /// Which (i, j) take part, from clauses on positions, inputs and lets; `None` for all.
    pub(crate) fn mask(&mut self, lens: bool, doc: bool) -> Option<Expr> {
        let mut clauses = Vec::new();
        if lens {
            clauses.push(Expr::bin("<", n("j"), Expr::index("lens", vec![n("b")])));
        }
        if doc {
            clauses.push(Expr::bin(
                "==",
                Expr::index("doc", vec![n("b"), n("i")]),
                Expr::index("doc", vec![n("b"), n("j")]),
            ));
        }
        if clauses.is_empty() && self.chance(0.4) {
            return None;
        }
        for _ in 0..self.rng.random_range(usize::from(clauses.is_empty())..=2) {
            let c = self.mask_clause();
            clauses.push(c);
        }
        let mut out = clauses.remove(0);
        for c in clauses {
            out = Expr::bin(self.pick(&["&&", "&&", "||"]), out, c);
        }
        if self.chance(0.2) {
            let k = self.fresh("keep");
            self.body.push(Stmt::Let(k.clone(), out));
            out = n(&k);
        }
        Some(out)
    }

    fn mask_clause(&mut self) -> Expr {
        let (i, j) = (n("i"), n("j"));
        let dist = Expr::bin("-", i.clone(), j.clone());
        match self.rng.random_range(0..9) {
            0 | 1 => Expr::bin("<=", j, i),
            2 => Expr::bin("&&", Expr::bin("<=", j, i), Expr::bin("<", dist, n("W"))),
            3 => Expr::bin("<=", call1("abs", dist), n("W")),
            4 => Expr::bin(">=", j, i),
            5 => Expr::bin(
                "!=",
                Expr::bin("%", Expr::bin("+", i, j), Expr::Int(3)),
                Expr::Int(1),
            ),
            6 => {
                // The query's position through a let, as KV-cache code writes it.
                let p = self.fresh("pos");
                let pos = if self.scope.shared_s {
                    i
                } else {
                    Expr::bin("+", i, Expr::bin("-", n("Sk"), n("Sq")))
                };
                self.body.push(Stmt::Let(p.clone(), pos));
                Expr::bin("<=", j, n(&p))
            }
            7 => Expr::bin(
                "||",
                Expr::bin("==", Expr::bin("%", n("h"), Expr::Int(2)), Expr::Int(0)),
                Expr::bin("<=", j, i),
            ),
            _ => Expr::Not(Box::new(Expr::bin(">", j, i))),
        }
    }

    /// The value row each weight multiplies, maybe mapped or read at a clamped neighbour.
    pub(crate) fn value_row(&mut self) -> Expr {
        let kvh = self.scope.kv_head.clone();
        let row = |pos: Expr| Expr::index("v", vec![n("b"), kvh.clone(), pos]);
        let sk1 = Expr::bin("-", n(self.sk()), Expr::Int(1));
        match self.rng.random_range(0..8) {
            0 => call1("tanh", row(n("j"))),
            1 => Expr::bin("*", row(n("j")), f(2.0)),
            2 => row(Expr::call(
                "min",
                vec![Expr::bin("+", n("j"), Expr::Int(1)), sk1],
            )),
            3 => row(Expr::bin(
                "%",
                Expr::bin("+", n("j"), Expr::Int(1)),
                n(self.sk()),
            )),
            _ => row(n("j")),
        }
    }
}

const SAFE: [f64; 8] = [0.5, 1.0, 2.0, 0.25, 3.0, 0.125, 1.5, 0.75];
