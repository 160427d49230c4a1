//! Deriving the online (single-sweep) form of a sum over the keys.
//!
//! A sum `Σ_j A_ij` whose argument reads statistics that are still being accumulated in the same
//! sweep (a running maximum, a running sum) can be computed online when it splits as
//!
//! `A = Σ_k ± post_k · exp(Y_k − Z_k) · G_k`
//!
//! where `post_k` is a per-row factor (applied once the sweep is over, with final statistics),
//! `Z_k` is a per-row shift computed from the running statistics, and `Y_k`, `G_k` read no running
//! statistic. Then each term keeps an accumulator that is rescaled by `exp(Z_old − Z_new)` when the
//! statistics move; this identity holds for any shift, and with a running maximum it keeps the
//! exponentials bounded. Softmax (`exp(s − m) / l`), a sink (`exp(s − m′) / (l + exp(sink − m′))`)
//! and differential attention (two such terms) are instances; nothing is special-cased.

use super::tree::Tree;
use attnc_ir::expr::Builtin;
use attnc_ir::graph::ValueRef;
use attnc_ir::ops::{BinaryOp, UnaryOp};
use attnc_ir::types::FrameIndex;

/// One term of an online sum.
#[derive(Clone, Debug, PartialEq)]
pub struct OnlineTerm {
    /// +1 or -1.
    pub sign: f64,
    /// `Y`: the exponent of the term's exponential factors, if it has any.
    pub exponent: Option<Tree>,
    /// `G`: the product of the factors that read no running statistic.
    pub factor: Tree,
    /// `Z`: the running shift, if the exponent is shifted by running statistics. The weight of a
    /// pair is `exp(Y − Z) · G`, computed as one exponential so it cannot overflow.
    pub shift: Option<Tree>,
    /// Per-row factor applied after the sweep.
    pub post: Option<Tree>,
}

/// What the derivation needs to know about a value leaf.
pub trait Classify {
    /// Whether the value reads a statistic accumulated in the sweep being planned.
    fn reads_running(&self, v: ValueRef) -> bool;
    /// Whether the value varies with the key index j.
    fn varies_with_keys(&self, v: ValueRef) -> bool;
}

fn reads_running(t: &Tree, c: &dyn Classify) -> bool {
    let mut leaves = Vec::new();
    t.leaves(&mut leaves);
    leaves.iter().any(|v| c.reads_running(*v))
}

fn per_row(t: &Tree, c: &dyn Classify) -> bool {
    let mut leaves = Vec::new();
    t.leaves(&mut leaves);
    !t.mentions_index(FrameIndex::J) && !leaves.iter().any(|v| c.varies_with_keys(*v))
}

/// Splits `t` into signed additive terms.
fn additive(t: &Tree, sign: f64, out: &mut Vec<(f64, Tree)>) {
    match t {
        Tree::Binary(BinaryOp::Add, a, b) => {
            additive(a, sign, out);
            additive(b, sign, out);
        }
        Tree::Binary(BinaryOp::Sub, a, b) => {
            additive(a, sign, out);
            additive(b, -sign, out);
        }
        Tree::Unary(UnaryOp::Neg, a) => additive(a, -sign, out),
        other => out.push((sign, other.clone())),
    }
}

/// Splits `t` into factors with powers +1 (numerator) or -1 (denominator).
fn multiplicative(t: &Tree, power: i32, out: &mut Vec<(i32, Tree)>) {
    match t {
        Tree::Binary(BinaryOp::Mul, a, b) => {
            multiplicative(a, power, out);
            multiplicative(b, power, out);
        }
        Tree::Binary(BinaryOp::Div, a, b) => {
            multiplicative(a, power, out);
            multiplicative(b, -power, out);
        }
        other => out.push((power, other.clone())),
    }
}

fn negate(t: Tree) -> Tree {
    Tree::Unary(UnaryOp::Neg, Box::new(t))
}

fn reciprocal(t: Tree) -> Tree {
    Tree::Binary(BinaryOp::Div, Box::new(Tree::Float(1.0)), Box::new(t))
}

/// Why a sum has no online form: the part of its argument that prevents it.
#[derive(Clone, Debug, PartialEq)]
pub struct NotOnline {
    pub reason: &'static str,
    pub part: Tree,
}

/// Derives the online form of `Σ_j arg`, or says why there is none.
pub fn derive(arg: &Tree, c: &dyn Classify) -> Result<Vec<OnlineTerm>, NotOnline> {
    let mut terms = Vec::new();
    additive(arg, 1.0, &mut terms);
    terms
        .into_iter()
        .map(|(sign, t)| derive_term(sign, &t, c))
        .collect()
}

fn derive_term(sign: f64, term: &Tree, c: &dyn Classify) -> Result<OnlineTerm, NotOnline> {
    let mut factors = Vec::new();
    multiplicative(term, 1, &mut factors);
    let (mut pair, mut post, mut shift, mut exponent) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (power, f) in factors {
        if !reads_running(&f, c) {
            pair.push(if power > 0 { f } else { reciprocal(f) });
            continue;
        }
        if per_row(&f, c) {
            post.push(if power > 0 { f } else { reciprocal(f) });
            continue;
        }
        let Tree::Call(Builtin::Exp, args) = &f else {
            return Err(NotOnline {
                reason: "this factor varies with j and reads a statistic of the same sweep, but not through an exponential",
                part: f.clone(),
            });
        };
        let mut terms = Vec::new();
        additive(&args[0], power as f64, &mut terms);
        for (s, e) in terms {
            if !reads_running(&e, c) {
                exponent.push(if s < 0.0 { negate(e) } else { e });
            } else if per_row(&e, c) {
                // exp(... + s e) = exp(... - Z) with Z = -s e.
                shift.push(if s < 0.0 { e } else { negate(e) });
            } else {
                return Err(NotOnline {
                    reason: "this exponent term varies with j and reads a statistic of the same sweep",
                    part: e.clone(),
                });
            }
        }
    }
    Ok(OnlineTerm {
        sign,
        exponent: (!exponent.is_empty()).then(|| Tree::sum(exponent)),
        factor: Tree::product(pair),
        shift: (!shift.is_empty()).then(|| Tree::sum(shift)),
        post: (!post.is_empty()).then(|| Tree::product(post)),
    })
}
