//! The `ast` dump (`attnc build --emit ast`): one line per statement with its `line:col`, and
//! expressions fully parenthesised so precedence is visible. Stable across runs.

use crate::ast::*;
use attnc_source::{Sources, Span};
use std::fmt::Write;

pub fn print_program(program: &Program, sources: &Sources) -> String {
    let mut p = Printer {
        sources,
        out: String::new(),
    };
    for item in &program.items {
        match item {
            Item::Kernel(k) => p.kernel(k),
            Item::Function(f) => p.function(f),
        }
    }
    p.out
}

struct Printer<'a> {
    sources: &'a Sources,
    out: String,
}

impl Printer<'_> {
    fn at(&self, span: Span) -> String {
        let (line, col) = self.sources.line_col(span.file, span.start);
        format!("@{line}:{col}")
    }

    fn line(&mut self, depth: usize, text: String) {
        let _ = writeln!(self.out, "{}{}", "  ".repeat(depth), text);
    }

    fn function(&mut self, f: &Function) {
        let params: Vec<&str> = f.params.iter().map(|p| p.name.as_str()).collect();
        self.line(
            0,
            format!(
                "fn {}({}) {}",
                f.name.name,
                params.join(", "),
                self.at(f.span)
            ),
        );
        for l in &f.lets {
            self.line(
                1,
                format!(
                    "let {} = {} {}",
                    l.name.name,
                    expr(&l.value),
                    self.at(l.span)
                ),
            );
        }
        self.line(
            1,
            format!("result {} {}", expr(&f.result), self.at(f.result.span)),
        );
    }

    fn kernel(&mut self, k: &Kernel) {
        self.line(0, format!("kernel {} {}", k.name.name, self.at(k.span)));
        self.stmts(1, &k.body);
    }

    fn stmts(&mut self, depth: usize, stmts: &[Stmt]) {
        for s in stmts {
            self.stmt(depth, s);
        }
    }

    fn stmt(&mut self, depth: usize, s: &Stmt) {
        match s {
            Stmt::Dims(dims) => {
                let list: Vec<String> = dims
                    .iter()
                    .map(|d| match &d.default {
                        Some(v) => format!("{} = {}", d.name.name, expr(v)),
                        None => d.name.name.clone(),
                    })
                    .collect();
                let at = self.at(dims[0].name.span);
                self.line(depth, format!("dim {} {at}", list.join(", ")));
            }
            Stmt::Input(i) => {
                let range = i
                    .range
                    .as_ref()
                    .map(|(lo, hi)| format!(" in [{}, {}]", expr(lo), expr(hi)))
                    .unwrap_or_default();
                let text = format!(
                    "input {}: {}{range} {}",
                    names(&i.names),
                    tensor_type(&i.ty),
                    self.at(i.span)
                );
                self.line(depth, text);
            }
            Stmt::Output(o) => {
                let text = format!(
                    "output {}: {} {}",
                    names(&o.names),
                    tensor_type(&o.ty),
                    self.at(o.span)
                );
                self.line(depth, text);
            }
            Stmt::Let(l) => {
                let text = format!(
                    "let {} = {} {}",
                    l.name.name,
                    expr(&l.value),
                    self.at(l.span)
                );
                self.line(depth, text);
            }
            Stmt::Mask(e) => {
                let text = format!("mask {} {}", expr(e), self.at(e.span));
                self.line(depth, text);
            }
            Stmt::Require(e) => {
                let text = format!("require {} {}", expr(e), self.at(e.span));
                self.line(depth, text);
            }
            Stmt::Assign(a) => {
                let idx: Vec<String> = a.indices.iter().map(expr).collect();
                let text = format!(
                    "assign {}[{}] = {} {}",
                    a.target.name,
                    idx.join(", "),
                    expr(&a.value),
                    self.at(a.span)
                );
                self.line(depth, text);
            }
            Stmt::State(st) => {
                let dims: Vec<String> = st.dims.iter().map(expr).collect();
                let text = format!(
                    "state {}: [{}] = {} {}",
                    st.name.name,
                    dims.join(", "),
                    expr(&st.update),
                    self.at(st.span)
                );
                self.line(depth, text);
            }
            Stmt::Recurrence(r) => {
                let text = format!("recurrence {} {}", r.index.name, self.at(r.span));
                self.line(depth, text);
                self.stmts(depth + 1, &r.body);
            }
            Stmt::Error(span) => {
                let text = format!("<error> {}", self.at(*span));
                self.line(depth, text);
            }
        }
    }
}

fn names(ids: &[Ident]) -> String {
    ids.iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn tensor_type(t: &TensorType) -> String {
    let dims: Vec<String> = t.dims.iter().map(expr).collect();
    format!("{}[{}]", t.dtype.name(), dims.join(", "))
}

/// Fully parenthesised infix form of an expression.
pub fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(v) => v.to_string(),
        ExprKind::Float(v) => format!("{v:?}"),
        ExprKind::Name(n) => n.clone(),
        ExprKind::Unary(UnaryOp::Neg, a) => format!("(-{})", expr(a)),
        ExprKind::Unary(UnaryOp::Not, a) => format!("(!{})", expr(a)),
        ExprKind::Binary(op, a, b) => format!("({} {} {})", expr(a), op.symbol(), expr(b)),
        ExprKind::Call { callee, args } => {
            let args: Vec<String> = args.iter().map(expr).collect();
            format!("{}({})", callee.name, args.join(", "))
        }
        ExprKind::Index { base, indices } => {
            let idx: Vec<String> = indices.iter().map(expr).collect();
            format!("{}[{}]", base.name, idx.join(", "))
        }
    }
}
