//! Generation of recurrent kernels: linear attention and its relatives (retention, gated
//! decay per channel or per step, a normaliser state), written as `recurrence t { ... }`.

use crate::program::{Expr, Program, Stmt};
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

fn n(name: &str) -> Expr {
    Expr::name(name)
}

fn call1(func: &str, a: Expr) -> Expr {
    Expr::call(func, vec![a])
}

fn row(t: &str) -> Vec<Expr> {
    vec![n("b"), n("h"), n(t)]
}

fn pick<T: Clone>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items
        .choose(rng)
        .cloned()
        .unwrap_or_else(|| panic!("pick from an empty list"))
}

/// A positive feature map (so a normaliser `dot(phi_q, z)` stays away from zero) or, when
/// `positive` is false, any tame one.
fn feature_map(rng: &mut ChaCha8Rng, x: Expr, positive: bool) -> Expr {
    let k = rng.random_range(0..if positive { 4 } else { 7 });
    match k {
        0 => Expr::bin("+", call1("elu", x), Expr::Float(1.0)),
        1 => call1("sigmoid", x),
        2 => call1("exp", Expr::Neg(Box::new(call1("abs", x)))),
        3 => call1("softplus", x),
        4 => Expr::bin("/", x, call1("sqrt", n("D"))),
        5 => call1("tanh", x),
        _ => x,
    }
}

/// A whole recurrent kernel with its shape.
pub fn recurrent_kernel(mut rng: ChaCha8Rng, name: &str) -> Program {
    let batch = rng.random_range(1..=2);
    let heads = rng.random_range(1..=3);
    let seq = if rng.random_bool(0.2) {
        rng.random_range(40..=150)
    } else {
        rng.random_range(1..=40)
    };
    let d = rng.random_range(1..=16);
    let split = rng.random_bool(0.5);
    let dv = if split { rng.random_range(1..=12) } else { d };
    let dvn = if split { "Dv" } else { "D" };
    let dtype = pick(&mut rng, &["f32", "f16", "bf16"]);
    let mut shape = vec![
        ("B".to_string(), batch),
        ("H".to_string(), heads),
        ("S".to_string(), seq),
        ("D".to_string(), d),
    ];
    let mut dims = vec![
        ("B".to_string(), None),
        ("H".into(), None),
        ("S".into(), None),
    ];
    dims.push(("D".into(), None));
    if split {
        dims.push(("Dv".into(), None));
        shape.push(("Dv".into(), dv));
    }
    let mut body = vec![Stmt::Dims(dims)];
    let bhsd = |f: &str| vec![n("B"), n("H"), n("S"), n(f)];
    let input =
        |name: &str, dtype: &'static str, dims: Vec<Expr>, range: Option<(f64, f64)>| Stmt::Input {
            names: vec![name.to_string()],
            dtype,
            dims,
            range: range.map(|(lo, hi)| (Expr::Float(lo), Expr::Float(hi))),
        };
    body.push(input("q", dtype, bhsd("D"), None));
    body.push(input("k", dtype, bhsd("D"), None));
    body.push(input("v", dtype, bhsd(dvn), None));
    // The decay of the matrix state.
    let decay_kind = rng.random_range(0..6);
    match decay_kind {
        2 => body.push(input("gam", "f32", vec![n("H")], Some((0.8, 0.99)))),
        3 => body.push(input("g", "f32", bhsd("D"), None)),
        4 => body.push(input(
            "gs",
            "f32",
            vec![n("B"), n("H"), n("S")],
            Some((0.5, 1.0)),
        )),
        _ => {}
    }
    body.push(Stmt::Output {
        name: "o".into(),
        dtype: pick(&mut rng, &["f32", "f32", dtype]),
        dims: bhsd(dvn),
    });
    if decay_kind == 1 {
        let gamma = Expr::bin(
            "-",
            Expr::Float(1.0),
            Expr::call(
                "pow",
                vec![Expr::Float(2.0), Expr::bin("-", Expr::Float(-5.0), n("h"))],
            ),
        );
        body.push(Stmt::Let("gamma".into(), gamma));
    }
    let normalised = rng.random_bool(0.35);
    let mut inner = Vec::new();
    let kt = Expr::index("k", row("t"));
    let qt = Expr::index("q", row("t"));
    inner.push(Stmt::Let(
        "phi_k".into(),
        feature_map(&mut rng, kt, normalised),
    ));
    inner.push(Stmt::Let(
        "phi_q".into(),
        feature_map(&mut rng, qt, normalised),
    ));
    let vt = Expr::index("v", row("t"));
    let vmap = if rng.random_bool(0.3) {
        call1("tanh", vt)
    } else {
        vt
    };
    let outer = Expr::call("outer", vec![n("phi_k"), vmap]);
    let kv = n("kv");
    let decayed = match decay_kind {
        0 => kv,
        1 => Expr::bin("*", n("gamma"), kv),
        2 => Expr::bin("*", Expr::index("gam", vec![n("h")]), kv),
        3 => {
            let g = Expr::index("g", row("t"));
            let alpha = call1(
                "exp",
                Expr::bin("/", call1("log_sigmoid", g), Expr::Float(16.0)),
            );
            inner.push(Stmt::Let("alpha".into(), alpha));
            Expr::bin("@", call1("diag", n("alpha")), kv)
        }
        4 => Expr::bin("*", Expr::index("gs", vec![n("b"), n("h"), n("t")]), kv),
        _ => Expr::bin("*", Expr::Float(pick(&mut rng, &[0.9, 0.5, 0.99])), kv),
    };
    inner.push(Stmt::State {
        name: "kv".into(),
        dims: vec![n("D"), n(dvn)],
        update: Expr::bin("+", decayed, outer),
    });
    let mut out = Expr::bin("@", n("phi_q"), n("kv"));
    if normalised {
        inner.push(Stmt::State {
            name: "z".into(),
            dims: vec![n("D")],
            update: Expr::bin("+", n("z"), n("phi_k")),
        });
        let den = Expr::bin(
            "+",
            Expr::call("dot", vec![n("phi_q"), n("z")]),
            Expr::Float(1.0),
        );
        out = Expr::bin("/", out, den);
    }
    if rng.random_bool(0.2) {
        // A scalar state: a decayed count of steps.
        inner.push(Stmt::State {
            name: "c".into(),
            dims: Vec::new(),
            update: Expr::bin(
                "+",
                Expr::bin("*", Expr::Float(0.9), n("c")),
                Expr::Float(1.0),
            ),
        });
        out = Expr::bin("/", out, Expr::bin("+", n("c"), Expr::Float(1.0)));
    }
    if rng.random_bool(0.25) {
        out = Expr::bin("+", out, Expr::index("v", row("t")));
    }
    inner.push(Stmt::Assign {
        target: "o".into(),
        indices: row("t"),
        value: out,
    });
    body.push(Stmt::Recurrence(inner));
    Program {
        functions: Vec::new(),
        kernel: name.to_string(),
        body,
        shape,
    }
}
