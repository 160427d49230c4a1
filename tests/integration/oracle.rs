//! Checks the reference interpreter (the oracle every compiled kernel is compared with) against
//! independent, textbook loop implementations written here in plain f64 Rust, on fresh random
//! inputs drawn for the examples' graphs.
//!
//! Each test runs two fixed seeds and one derived from the clock; every seed is printed (shown
//! when a test fails), and `ATTNC_ORACLE_SEED=<seed>` reruns exactly one. Both sides compute in
//! f64 from the same input values, so they may differ only by rounding in a different order of
//! operations: we require max |got - want| / max(1, |want|) below 1e-9.

use crate::common;
use attnc_reference::{Tensor, interpret, random_inputs, to_f64_tensors};
use std::collections::BTreeMap;

/// Both sides are f64; see the module comment.
const TOLERANCE: f64 = 1e-9;

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("ATTNC_ORACLE_SEED") {
        return vec![s.parse().expect("ATTNC_ORACLE_SEED is a u64")];
    }
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos() as u64;
    vec![0x5eed_0001, 0xa77c_2024, clock]
}

/// Parses `"B=2 H=3 S=23"` into dims for `bind_dims`.
fn parse_dims(shape: &str) -> BTreeMap<String, i64> {
    shape
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("dims are written NAME=VALUE");
            (
                k.to_string(),
                v.parse().expect("a dim's value is an integer"),
            )
        })
        .collect()
}

/// One run of a kernel: its bound dims and the f64 inputs both sides read.
struct Case {
    dims: BTreeMap<String, i64>,
    inputs: BTreeMap<String, Tensor>,
}

impl Case {
    fn dim(&self, name: &str) -> usize {
        let v = self
            .dims
            .get(name)
            .unwrap_or_else(|| panic!("dim `{name}` is bound"));
        usize::try_from(*v).expect("dims are non-negative")
    }

    fn t(&self, name: &str) -> &Tensor {
        self.inputs
            .get(name)
            .unwrap_or_else(|| panic!("input `{name}` exists"))
    }

    fn scale(&mut self, name: &str, by: f64) {
        let t = self
            .inputs
            .get_mut(name)
            .expect("the input to scale exists");
        t.data.iter_mut().for_each(|x| *x *= by);
    }

    /// The scaled score q_i . k_j / sqrt(D) of q, k: [B, H, S, D].
    fn qk(&self, b: usize, h: usize, i: usize, j: usize) -> f64 {
        let d = self.t("q").shape[3] as f64;
        dot(self.t("q"), &[b, h, i], self.t("k"), &[b, h, j]) / d.sqrt()
    }
}

/// Row-major element access with bounds checks, so a naive indexing slip fails loudly.
trait At {
    fn at(&self, idx: &[usize]) -> f64;
}

impl At for Tensor {
    fn at(&self, idx: &[usize]) -> f64 {
        assert_eq!(idx.len(), self.shape.len(), "rank of {:?}", self.shape);
        let mut offset = 0;
        for (&x, &n) in idx.iter().zip(&self.shape) {
            assert!(x < n, "index {idx:?} out of shape {:?}", self.shape);
            offset = offset * n + x;
        }
        self.data[offset]
    }
}

fn check(example: &str, shapes: &[&str], naive: impl Fn(&Case) -> Tensor) {
    check_tweaked(example, shapes, |_| {}, naive);
}

/// Compiles `example`; for every shape and seed draws inputs, applies `tweak` to them, runs the
/// interpreter and compares its output `o` with `naive`.
fn check_tweaked(
    example: &str,
    shapes: &[&str],
    tweak: impl Fn(&mut Case),
    naive: impl Fn(&Case) -> Tensor,
) {
    let graph = common::compile(&common::example(example));
    for shape in shapes {
        let bindings = attnc_ir::bind_dims(&graph, &parse_dims(shape), &BTreeMap::new())
            .unwrap_or_else(|d| panic!("{example}: cannot bind {shape}: {d:?}"));
        for seed in seeds() {
            let what = format!("{example} at {bindings} (ATTNC_ORACLE_SEED={seed})");
            eprintln!("oracle: {what}");
            let drawn = random_inputs(&graph, &bindings, seed)
                .unwrap_or_else(|e| panic!("{what}: random inputs: {e}"));
            let mut case = Case {
                dims: bindings.dims.clone(),
                inputs: to_f64_tensors(&drawn),
            };
            tweak(&mut case);
            let outputs = interpret(&graph, &bindings, &case.inputs)
                .unwrap_or_else(|e| panic!("{what}: the interpreter failed: {e}"));
            let got = outputs
                .get("o")
                .unwrap_or_else(|| panic!("{what}: no output `o`"));
            assert_close(&what, got, &naive(&case));
        }
    }
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape, want.shape, "{what}: output shape");
    assert_eq!(got.data.len(), want.data.len(), "{what}: output length");
    if let Some(k) = got.data.iter().position(|x| x.is_nan()) {
        panic!("{what}: the interpreter left element {k} NaN (unwritten?)");
    }
    assert!(
        want.data.iter().all(|x| x.is_finite()),
        "{what}: naive side not finite"
    );
    let mut worst = (0.0, 0);
    for (k, (g, w)) in got.data.iter().zip(&want.data).enumerate() {
        let err = (g - w).abs() / w.abs().max(1.0);
        if err > worst.0 {
            worst = (err, k);
        }
    }
    let (err, k) = worst;
    assert!(
        err < TOLERANCE,
        "{what}: max relative error {err:e} at flat element {k} of {:?}: interpreter {}, naive {}",
        got.shape,
        got.data[k],
        want.data[k]
    );
    let mean_abs = want.data.iter().map(|x| x.abs()).sum::<f64>() / want.data.len() as f64;
    assert!(
        mean_abs > 1e-3,
        "{what}: output ~zero (mean |o| = {mean_abs:e}), vacuous"
    );
}

// ---------------------------------------------------------------------------------------------
// Naive building blocks.

/// The dot product of the rows `a[ai, :]` and `b[bi, :]` (last axes).
fn dot(a: &Tensor, ai: &[usize], b: &Tensor, bi: &[usize]) -> f64 {
    let n = *a.shape.last().expect("a row has an axis");
    assert_eq!(Some(&n), b.shape.last(), "dot of unequal rows");
    let mut s = 0.0;
    for d in 0..n {
        let (mut x, mut y) = (ai.to_vec(), bi.to_vec());
        x.push(d);
        y.push(d);
        s += a.at(&x) * b.at(&y);
    }
    s
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Textbook softmax over one row of scores; `None` is a masked key (weight 0).
fn softmax(scores: &[Option<f64>]) -> Vec<f64> {
    let m = scores
        .iter()
        .flatten()
        .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    assert!(m.is_finite(), "a row with every key masked");
    let e: Vec<f64> = scores
        .iter()
        .map(|s| s.map_or(0.0, |s| (s - m).exp()))
        .collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}

/// `o[b, h, i, e] = sum_j weights(b, h, i)[j] * value(b, h, j, e)` for an output of shape
/// `[nb, nh, sq, dv]` and `sk` keys.
fn aggregate(
    [nb, nh, sq, dv]: [usize; 4],
    sk: usize,
    weights: impl Fn(usize, usize, usize) -> Vec<f64>,
    value: impl Fn(usize, usize, usize, usize) -> f64,
) -> Tensor {
    let mut data = Vec::with_capacity(nb * nh * sq * dv);
    for b in 0..nb {
        for h in 0..nh {
            for i in 0..sq {
                let w = weights(b, h, i);
                assert_eq!(w.len(), sk, "one weight per key");
                for e in 0..dv {
                    let mut acc = 0.0;
                    for (j, wj) in w.iter().enumerate() {
                        acc += wj * value(b, h, j, e);
                    }
                    data.push(acc);
                }
            }
        }
    }
    let shape = vec![nb, nh, sq, dv];
    Tensor { shape, data }
}

/// `aggregate` over Sq (or S) queries and values v: [B, H, Sk, Dv].
fn weighted(c: &Case, weights: impl Fn(usize, usize, usize) -> Vec<f64>) -> Tensor {
    let v = c.t("v");
    let sq = c.dim(if c.dims.contains_key("Sq") { "Sq" } else { "S" });
    let shape = [c.dim("B"), c.dim("H"), sq, v.shape[3]];
    aggregate(shape, v.shape[2], weights, |b, h, j, e| v.at(&[b, h, j, e]))
}

/// Softmax attention with a score per (b, h, i, j), `None` where masked, and v: [B, H, Sk, Dv].
fn softmax_attention(
    c: &Case,
    score: impl Fn(usize, usize, usize, usize) -> Option<f64>,
) -> Tensor {
    let sk = c.t("v").shape[2];
    weighted(c, |b, h, i| {
        softmax(&(0..sk).map(|j| score(b, h, i, j)).collect::<Vec<_>>())
    })
}

// ---------------------------------------------------------------------------------------------
// Softmax family.

#[test]
fn oracle_softmax_full_matches_naive_loops() {
    let shapes = ["B=2 H=3 S=23 D=16", "B=1 H=2 S=1 D=5"];
    check("softmax_full", &shapes, |c| {
        softmax_attention(c, |b, h, i, j| Some(c.qk(b, h, i, j)))
    });
}

#[test]
fn oracle_softmax_causal_matches_naive_loops() {
    let shapes = ["B=2 H=3 S=37 D=8", "B=2 H=1 S=1 D=3"];
    let naive = |c: &Case| softmax_attention(c, |b, h, i, j| (j <= i).then(|| c.qk(b, h, i, j)));
    check("softmax_causal", &shapes, naive);
    // Scores in the thousands: exp overflows f64 unless the row maximum is subtracted first.
    check_tweaked(
        "softmax_causal",
        &shapes[..1],
        |c| c.scale("q", 1000.0),
        naive,
    );
}

#[test]
fn oracle_alibi_causal_matches_naive_loops() {
    check("alibi_causal", &["B=2 H=4 S=23 D=8"], |c| {
        let nh = c.dim("H") as f64;
        softmax_attention(c, |b, h, i, j| {
            let slope = 2f64.powf(-8.0 * (h as f64 + 1.0) / nh);
            (j <= i).then(|| c.qk(b, h, i, j) - slope * (i as f64 - j as f64))
        })
    });
}

#[test]
fn oracle_sliding_window_matches_naive_loops() {
    // W < S, W = 1 (each query sees only itself) and W > S (plain causal).
    let shapes = [
        "B=2 H=2 S=37 D=8 W=5",
        "B=1 H=2 S=9 D=4 W=1",
        "B=1 H=1 S=4 D=4 W=6",
    ];
    check("sliding_window", &shapes, |c| {
        let w = c.dim("W");
        softmax_attention(c, |b, h, i, j| {
            (j <= i && i - j < w).then(|| c.qk(b, h, i, j))
        })
    });
}

#[test]
fn oracle_softcap_causal_matches_naive_loops() {
    let naive = |c: &Case| {
        softmax_attention(c, |b, h, i, j| {
            (j <= i).then(|| 30.0 * (c.qk(b, h, i, j) / 30.0).tanh())
        })
    };
    let shapes = ["B=2 H=3 S=23 D=8"];
    check("softcap_causal", &shapes, naive);
    // N(0, 1) inputs give |s| ~ 1, where the cap hardly bends; scale q so |s| often exceeds 30.
    check_tweaked("softcap_causal", &shapes, |c| c.scale("q", 40.0), naive);
}

#[test]
fn oracle_gqa_causal_matches_naive_loops() {
    let shapes = ["B=2 H=6 Hkv=2 S=23 D=8", "B=1 H=3 Hkv=1 S=1 D=4"];
    check("gqa_causal", &shapes, |c| {
        let (q, k, v) = (c.t("q"), c.t("k"), c.t("v"));
        let (s, d) = (c.dim("S"), c.dim("D"));
        // Query head h reads key/value head h / (H / Hkv).
        let group = c.dim("H") / c.dim("Hkv");
        let weights = |b, h: usize, i| {
            let score = |j| dot(q, &[b, h, i], k, &[b, h / group, j]) / (d as f64).sqrt();
            softmax(
                &(0..s)
                    .map(|j| (j <= i).then(|| score(j)))
                    .collect::<Vec<_>>(),
            )
        };
        let value = |b, h: usize, j, e| v.at(&[b, h / group, j, e]);
        aggregate([c.dim("B"), c.dim("H"), s, d], s, weights, value)
    });
}

#[test]
fn oracle_mqa_causal_matches_naive_loops() {
    check("mqa_causal", &["B=2 H=4 S=23 D=8"], |c| {
        let (q, k, v) = (c.t("q"), c.t("k"), c.t("v"));
        let (s, d) = (c.dim("S"), c.dim("D"));
        // Every query head reads the single k, v: [B, S, D].
        let weights = |b, h, i| {
            let score = |j| dot(q, &[b, h, i], k, &[b, j]) / (d as f64).sqrt();
            softmax(
                &(0..s)
                    .map(|j| (j <= i).then(|| score(j)))
                    .collect::<Vec<_>>(),
            )
        };
        let value = |b, _, j, e| v.at(&[b, j, e]);
        aggregate([c.dim("B"), c.dim("H"), s, d], s, weights, value)
    });
}

#[test]
fn oracle_cross_attention_matches_naive_loops() {
    let shapes = [
        "B=2 H=3 Sq=23 Sk=37 Dqk=16 Dv=5",
        "B=1 H=2 Sq=1 Sk=7 Dqk=3 Dv=9",
        "B=2 H=1 Sq=6 Sk=1 Dqk=4 Dv=2",
    ];
    check("cross_attention", &shapes, |c| {
        softmax_attention(c, |b, h, i, j| Some(c.qk(b, h, i, j)))
    });
}

#[test]
fn oracle_sink_sliding_window_matches_naive_loops() {
    let shapes = ["B=2 H=3 S=37 D=8 W=5", "B=1 H=2 S=1 D=4"];
    check("sink_sliding_window", &shapes, |c| {
        let (s, w, sinks) = (c.dim("S"), c.dim("W"), c.t("sinks"));
        weighted(c, |b, h, i| {
            // p_j = exp(s_j) / (sum_{visible j'} exp(s_j') + exp(sink_h)), without a shift.
            let visible = |j: usize| j <= i && i - j < w;
            let e: Vec<f64> = (0..s)
                .map(|j| {
                    if visible(j) {
                        c.qk(b, h, i, j).exp()
                    } else {
                        0.0
                    }
                })
                .collect();
            let z = e.iter().sum::<f64>() + sinks.at(&[h]).exp();
            e.iter().map(|x| x / z).collect()
        })
    });
}

#[test]
fn oracle_padded_bias_matches_naive_loops() {
    let naive = |c: &Case| {
        let (bias, scale, kv_len) = (c.t("bias"), c.t("head_scale"), c.t("kv_len"));
        let (q, k, d) = (c.t("q"), c.t("k"), c.dim("D") as f64);
        softmax_attention(c, |b, h, i, j| {
            ((j as f64) < kv_len.at(&[b])).then(|| {
                dot(q, &[b, h, i], k, &[b, h, j]) * scale.at(&[h]) / d.sqrt()
                    + bias.at(&[b, h, i, j])
            })
        })
    };
    let shapes = ["B=2 H=3 S=23 D=8"];
    check("padded_bias", &shapes, naive);
    // The mask's extremes: one valid key in one sequence, a partial length in the other.
    let lengths = |c: &mut Case| {
        c.inputs.get_mut("kv_len").expect("kv_len is an input").data = vec![1.0, 17.0];
    };
    check_tweaked("padded_bias", &shapes, lengths, naive);
}

#[test]
fn oracle_document_mask_matches_naive_loops() {
    check("document_mask", &["B=2 H=2 S=37 D=8"], |c| {
        let doc = c.t("doc");
        softmax_attention(c, |b, h, i, j| {
            (j <= i && doc.at(&[b, i]) == doc.at(&[b, j])).then(|| c.qk(b, h, i, j))
        })
    });
}

#[test]
fn oracle_forgetting_attention_matches_naive_loops() {
    let shapes = ["B=2 H=3 S=23 D=8", "B=1 H=1 S=1 D=4"];
    check("forgetting_attention", &shapes, |c| {
        let f = c.t("fgate");
        // c_t = sum_{r <= t} ln(sigmoid(f_r)); the score of (i, j) gains c_i - c_j.
        let cum = |b, h, t| -> f64 { (0..=t).map(|r| sigmoid(f.at(&[b, h, r])).ln()).sum() };
        softmax_attention(c, |b, h, i, j| {
            (j <= i).then(|| c.qk(b, h, i, j) + cum(b, h, i) - cum(b, h, j))
        })
    });
}

#[test]
fn oracle_qk_norm_causal_matches_naive_loops() {
    check("qk_norm_causal", &["B=2 H=2 S=23 D=8"], |c| {
        let d = c.dim("D");
        // rmsnorm(x, w)_e = x_e / sqrt(mean_e'(x_e'^2) + 1e-6) * w_e
        let normed = |x: &str, w: &str, [b, h, i]: [usize; 3]| -> Vec<f64> {
            let row: Vec<f64> = (0..d).map(|e| c.t(x).at(&[b, h, i, e])).collect();
            let ms = row.iter().map(|x| x * x).sum::<f64>() / d as f64;
            (0..d)
                .map(|e| row[e] / (ms + 1e-6).sqrt() * c.t(w).at(&[e]))
                .collect()
        };
        softmax_attention(c, |b, h, i, j| {
            let qn = normed("q", "q_weight", [b, h, i]);
            let kn = normed("k", "k_weight", [b, h, j]);
            let s: f64 = qn.iter().zip(&kn).map(|(x, y)| x * y).sum();
            (j <= i).then(|| s / (d as f64).sqrt())
        })
    });
}

#[test]
fn oracle_relative_bias_table_matches_naive_loops() {
    check("relative_bias_table", &["B=2 H=3 S=23 D=8"], |c| {
        let (table, s) = (c.t("rel_bias"), c.dim("S"));
        // Entry S - 1 + (i - j) of head h's 2S - 1 distances.
        softmax_attention(c, |b, h, i, j| {
            Some(c.qk(b, h, i, j) + table.at(&[h, s - 1 + i - j]))
        })
    });
}

#[test]
fn oracle_block_sparse_matches_naive_loops() {
    check("block_sparse", &["B=2 H=3 S=23 D=8 BLOCK=4 NB=6"], |c| {
        let (layout, bs) = (c.t("layout"), c.dim("BLOCK"));
        softmax_attention(c, |b, h, i, j| {
            let (qb, kb) = (i / bs, j / bs);
            (qb == kb || layout.at(&[h, qb, kb]) != 0.0).then(|| c.qk(b, h, i, j))
        })
    });
}

#[test]
fn oracle_t5_bucketed_bias_matches_naive_loops() {
    // S = 150 reaches distances beyond MAXD = 128, where the bucket is clamped to NB - 1.
    check("t5_bucketed_bias", &["B=1 H=2 S=150 D=4"], |c| {
        let (table, nb, maxd) = (c.t("table"), c.dim("NB"), c.dim("MAXD") as f64);
        let exact = nb / 2;
        let bucket = |dist: usize| -> usize {
            if dist < exact {
                return dist;
            }
            // exact + floor(ln(dist / exact) / ln(MAXD / exact) * (NB - exact)), at most NB - 1.
            let ratio = (dist as f64 / exact as f64).ln() / (maxd / exact as f64).ln();
            (exact + (ratio * (nb - exact) as f64).floor() as usize).min(nb - 1)
        };
        let (q, k) = (c.t("q"), c.t("k"));
        softmax_attention(c, |b, h, i, j| {
            (j <= i).then(|| dot(q, &[b, h, i], k, &[b, h, j]) + table.at(&[h, bucket(i - j)]))
        })
    });
}

#[test]
fn oracle_differential_causal_matches_naive_loops() {
    let shapes = ["B=2 H=3 S=23 D=8 Dv=12", "B=1 H=2 S=1 D=4 Dv=3"];
    check("differential_causal", &shapes, |c| {
        let (s, dv, lambda) = (c.dim("S"), c.dim("Dv"), c.t("lambda"));
        let sqrt_d = (c.dim("D") as f64).sqrt();
        let map = |qn: &str, kn: &str, b, h, i| {
            let score = |j| dot(c.t(qn), &[b, h, i], c.t(kn), &[b, h, j]) / sqrt_d;
            softmax(
                &(0..s)
                    .map(|j| (j <= i).then(|| score(j)))
                    .collect::<Vec<_>>(),
            )
        };
        // a = sum_j (p1 - lambda_h p2) v_j, with both maps causal.
        let mut a = weighted(c, |b, h, i| {
            let (p1, p2) = (map("q1", "k1", b, h, i), map("q2", "k2", b, h, i));
            p1.iter()
                .zip(&p2)
                .map(|(x, y)| x - lambda.at(&[h]) * y)
                .collect()
        });
        // Per (b, h, i): a / sqrt(mean_e(a_e^2) + 1e-5) * (1 - 0.8).
        for row in a.data.chunks_mut(dv) {
            let rms = (row.iter().map(|x| x * x).sum::<f64>() / dv as f64 + 1e-5).sqrt();
            row.iter_mut().for_each(|x| *x = *x / rms * 0.2);
        }
        a
    });
}

// ---------------------------------------------------------------------------------------------
// Weights without a softmax.

#[test]
fn oracle_sigmoid_bias_matches_naive_loops() {
    let shapes = ["B=2 H=3 S=23 D=8", "B=1 H=2 S=1 D=4"];
    check("sigmoid_bias", &shapes, |c| {
        let s = c.dim("S");
        // sigmoid(x - ln S) = 1 / (1 + S e^-x)
        weighted(c, |b, h, i| {
            (0..s)
                .map(|j| 1.0 / (1.0 + s as f64 * (-c.qk(b, h, i, j)).exp()))
                .collect()
        })
    });
}

#[test]
fn oracle_relu_attention_matches_naive_loops() {
    check("relu_attention", &["B=2 H=3 S=37 D=8"], |c| {
        let s = c.dim("S");
        weighted(c, |b, h, i| {
            (0..s)
                .map(|j| c.qk(b, h, i, j).max(0.0) / s as f64)
                .collect()
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Recurrences, checked against closed (parallel) forms; retention also against its recurrence.

/// Retention by its recurrence: S_t = gamma_h S_{t-1} + (k_t / sqrt(D)) v_t^T, o_t = q_t S_t.
fn retention_recurrent(c: &Case) -> Tensor {
    let (q, k, v) = (c.t("q"), c.t("k"), c.t("v"));
    let [nb, nh, ns, d] = [c.dim("B"), c.dim("H"), c.dim("S"), c.dim("D")];
    let mut data = Vec::new();
    for b in 0..nb {
        for h in 0..nh {
            let gamma = 1.0 - 2f64.powi(-5 - h as i32);
            let mut state = vec![vec![0.0; d]; d];
            for t in 0..ns {
                for (r, row) in state.iter_mut().enumerate() {
                    let kr = k.at(&[b, h, t, r]) / (d as f64).sqrt();
                    for (col, x) in row.iter_mut().enumerate() {
                        *x = gamma * *x + kr * v.at(&[b, h, t, col]);
                    }
                }
                // o_t[col] = sum_r q_t[r] S_t[r][col]
                let mut o = vec![0.0; d];
                for (r, row) in state.iter().enumerate() {
                    for (col, x) in row.iter().enumerate() {
                        o[col] += q.at(&[b, h, t, r]) * x;
                    }
                }
                data.extend(o);
            }
        }
    }
    let shape = vec![nb, nh, ns, d];
    Tensor { shape, data }
}

/// Retention's parallel form: o_i = sum_{j <= i} gamma_h^(i - j) (q_i . k_j / sqrt(D)) v_j.
fn retention_parallel(c: &Case) -> Tensor {
    let s = c.dim("S");
    weighted(c, |b, h, i| {
        let gamma = 1.0 - 2f64.powi(-5 - h as i32);
        let w = |j: usize| gamma.powi((i - j) as i32) * c.qk(b, h, i, j);
        (0..s).map(|j| if j <= i { w(j) } else { 0.0 }).collect()
    })
}

const RETENTION_SHAPES: [&str; 2] = ["B=2 H=4 S=37 D=8", "B=1 H=2 S=1 D=3"];

#[test]
fn oracle_retention_matches_naive_recurrence() {
    check("retention", &RETENTION_SHAPES, retention_recurrent);
}

#[test]
fn oracle_retention_matches_naive_parallel_form() {
    check("retention", &RETENTION_SHAPES, retention_parallel);
}

#[test]
fn oracle_gated_linear_attention_matches_naive_loops() {
    let shapes = ["B=2 H=2 S=23 Dk=8 Dv=5", "B=1 H=2 S=1 Dk=3 Dv=4"];
    check("gated_linear_attention", &shapes, |c| {
        let (q, k, g) = (c.t("q"), c.t("k"), c.t("g"));
        let (s, dk) = (c.dim("S"), c.dim("Dk"));
        // o_t = sum_{j <= t} sum_d q_t[d] / sqrt(Dk) * prod_{j < r <= t} alpha_r[d] * k_j[d] * v_j
        // with alpha_r[d] = sigmoid(g_r[d])^(1/16).
        let alpha = |b, h, r, d| sigmoid(g.at(&[b, h, r, d])).powf(1.0 / 16.0);
        weighted(c, |b, h, t| {
            let w = |j: usize| -> f64 {
                (0..dk)
                    .map(|d| {
                        let decay: f64 = (j + 1..=t).map(|r| alpha(b, h, r, d)).product();
                        q.at(&[b, h, t, d]) / (dk as f64).sqrt() * decay * k.at(&[b, h, j, d])
                    })
                    .sum()
            };
            (0..s).map(|j| if j <= t { w(j) } else { 0.0 }).collect()
        })
    });
}

#[test]
fn oracle_linear_attention_matches_naive_loops() {
    let shapes = ["B=2 H=3 S=23 D=8 Dv=5", "B=1 H=1 S=1 D=4 Dv=6"];
    check("linear_attention", &shapes, |c| {
        let (q, k, s, d) = (c.t("q"), c.t("k"), c.dim("S"), c.dim("D"));
        let phi = |x: f64| if x > 0.0 { x + 1.0 } else { x.exp() };
        // o_t = sum_{j <= t} (phi(q_t) . phi(k_j)) v_j / (sum_{j <= t} phi(q_t) . phi(k_j) + 1e-6)
        weighted(c, |b, h, t| {
            let sim = |j| -> f64 {
                (0..d)
                    .map(|e| phi(q.at(&[b, h, t, e])) * phi(k.at(&[b, h, j, e])))
                    .sum()
            };
            let sims: Vec<f64> = (0..s).map(|j| if j <= t { sim(j) } else { 0.0 }).collect();
            let z = sims.iter().sum::<f64>() + 1e-6;
            sims.iter().map(|x| x / z).collect()
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Errors rather than garbage.

/// Runs an inline kernel on random inputs and returns the interpreter's error message.
fn interpret_error(name: &str, source: &str, shape: &str) -> String {
    let graph = common::compile_source(name, source);
    let bindings = attnc_ir::bind_dims(&graph, &parse_dims(shape), &BTreeMap::new())
        .unwrap_or_else(|d| panic!("{name}: cannot bind: {d:?}"));
    let inputs = random_inputs(&graph, &bindings, 7).expect("random inputs are drawn");
    match interpret(&graph, &bindings, &to_f64_tensors(&inputs)) {
        Ok(o) => panic!("{name}: an out-of-range read ran to completion: {o:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn oracle_reports_out_of_range_table_index() {
    // `rel[h, i - j]` without the `+ S - 1` offset reads index -1 at (i = 0, j = 1).
    let source = "kernel bad_table {
  dim B, H, S, D;
  input q, k, v: f32[B, H, S, D];
  input rel: f32[H, 2 * S - 1];
  output o: f32[B, H, S, D];
  let s = dot(q[b, h, i], k[b, h, j]) / sqrt(D) + rel[h, i - j];
  o[b, h, i] = sum_j(softmax(s) * v[b, h, j]);
}";
    let message = interpret_error("bad_table.attn", source, "B=1 H=2 S=5 D=4");
    assert!(
        message.contains("index out of range"),
        "unexpected: {message}"
    );
    assert!(
        message.contains("`rel`"),
        "the message names the tensor: {message}"
    );
}

#[test]
fn oracle_reports_out_of_range_vector_element() {
    // `c[i + 1]` reads one past the end of the S-element prefix sum at i = S - 1.
    let source = "kernel bad_extract {
  dim B, H, S, D;
  input q, k, v: f32[B, H, S, D];
  input f: f32[B, H, S];
  output o: f32[B, H, S, D];
  let c = cumsum(f[b, h]);
  let s = dot(q[b, h, i], k[b, h, j]) + c[i + 1];
  o[b, h, i] = sum_j(softmax(s) * v[b, h, j]);
}";
    let message = interpret_error("bad_extract.attn", source, "B=1 H=1 S=6 D=4");
    assert!(
        message.contains("index out of range"),
        "unexpected: {message}"
    );
}
