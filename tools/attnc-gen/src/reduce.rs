//! Shrinking a failing program: delete statements and functions, replace subexpressions by
//! their operands or by constants, and lower the dims, keeping each change only while the
//! program still fails the same way. What is left is usually a few lines, ready to become a
//! regression test.

use crate::program::{Expr, Program, Stmt};

/// Shrinks `program` while `fails` holds, trying at most `budget` candidates.
pub fn reduce(
    program: &Program,
    budget: usize,
    fails: &mut dyn FnMut(&Program) -> bool,
) -> Program {
    let mut best = program.clone();
    let mut tries = 0;
    let mut changed = true;
    while changed && tries < budget {
        changed = false;
        for candidate in candidates(&best) {
            if tries >= budget {
                break;
            }
            tries += 1;
            if fails(&candidate) {
                best = candidate;
                changed = true;
                break;
            }
        }
    }
    best
}

/// Every one-step simplification of `p`, smallest first in spirit: whole statements before
/// subexpressions, then dims.
fn candidates(p: &Program) -> Vec<Program> {
    let mut out = Vec::new();
    for k in (0..p.functions.len()).rev() {
        let mut c = p.clone();
        c.functions.remove(k);
        out.push(c);
    }
    for k in (0..p.body.len()).rev() {
        if matches!(p.body[k], Stmt::Dims(_)) {
            continue;
        }
        let mut c = p.clone();
        c.body.remove(k);
        out.push(c);
        if let Stmt::Recurrence(inner) = &p.body[k] {
            for m in (0..inner.len()).rev() {
                let mut c = p.clone();
                if let Stmt::Recurrence(inner) = &mut c.body[k] {
                    inner.remove(m);
                }
                out.push(c);
            }
        }
    }
    // Subexpressions: statement by statement, node by node.
    let count = expression_slots(&mut p.clone()).len();
    for slot in 0..count {
        let mut probe = p.clone();
        let size = expression_slots(&mut probe)[slot].size();
        for node in 0..size {
            let mut probe = p.clone();
            let Some(e) = expression_slots(&mut probe)[slot].nth_mut(node).cloned() else {
                continue;
            };
            let mut replacements: Vec<Expr> = e.children().into_iter().cloned().collect();
            if !matches!(e, Expr::Float(_) | Expr::Int(_)) {
                replacements.push(Expr::Float(1.0));
                replacements.push(Expr::Float(0.0));
            }
            for r in replacements {
                let mut c = p.clone();
                if let Some(target) = expression_slots(&mut c)[slot].nth_mut(node) {
                    *target = r;
                }
                out.push(c);
            }
        }
    }
    for k in 0..p.shape.len() {
        let v = p.shape[k].1;
        for smaller in [1, v / 2, v - 1] {
            if smaller >= 1 && smaller < v {
                let mut c = p.clone();
                c.shape[k].1 = smaller;
                out.push(c);
            }
        }
    }
    out
}

/// Every expression of the program that the reducer may edit, in a fixed order.
fn expression_slots(p: &mut Program) -> Vec<&mut Expr> {
    let mut out: Vec<&mut Expr> = Vec::new();
    for f in &mut p.functions {
        for (_, e) in &mut f.lets {
            out.push(e);
        }
        out.push(&mut f.result);
    }
    for s in &mut p.body {
        match s {
            Stmt::Recurrence(inner) => {
                for t in inner {
                    out.extend(t.exprs_mut());
                }
            }
            other => out.extend(other.exprs_mut()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_to_what_the_predicate_needs() {
        let p = Program {
            functions: Vec::new(),
            kernel: "k".into(),
            body: vec![
                Stmt::Dims(vec![("S".into(), None)]),
                Stmt::Let("a".into(), Expr::bin("+", Expr::name("x"), Expr::name("y"))),
                Stmt::Let("b".into(), Expr::call("exp", vec![Expr::name("z")])),
            ],
            shape: vec![("S".into(), 40)],
        };
        // "Fails" while some statement still mentions `y`.
        let mut fails = |c: &Program| c.to_string().contains('y');
        let r = reduce(&p, 1000, &mut fails);
        assert_eq!(r.body.len(), 2, "{r}");
        assert_eq!(r.body[1], Stmt::Let("a".into(), Expr::name("y")));
        assert_eq!(r.shape, vec![("S".to_string(), 1)]);
    }
}
