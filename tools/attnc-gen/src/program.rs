//! The generator's own syntax tree for a kernel, printed as `.attn` text. It is deliberately
//! smaller than the frontend's AST (no spans): the reducer edits it freely and reprints it, and
//! the compiler's frontend is what judges the result.

use std::fmt::{self, Display, Formatter};

/// An expression. Binary operations print fully parenthesised, so the tree is the meaning.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Int(i64),
    Float(f64),
    Name(String),
    Index(String, Vec<Expr>),
    Call(String, Vec<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
}

impl Expr {
    pub fn name(n: &str) -> Expr {
        Expr::Name(n.to_string())
    }

    pub fn call(f: &str, args: Vec<Expr>) -> Expr {
        Expr::Call(f.to_string(), args)
    }

    pub fn index(base: &str, idx: Vec<Expr>) -> Expr {
        Expr::Index(base.to_string(), idx)
    }

    pub fn bin(op: &'static str, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }

    /// The direct subexpressions, in order.
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Int(_) | Expr::Float(_) | Expr::Name(_) => Vec::new(),
            Expr::Index(_, v) | Expr::Call(_, v) => v.iter().collect(),
            Expr::Binary(_, a, b) => vec![a, b],
            Expr::Neg(a) | Expr::Not(a) => vec![a],
        }
    }

    fn children_mut(&mut self) -> Vec<&mut Expr> {
        match self {
            Expr::Int(_) | Expr::Float(_) | Expr::Name(_) => Vec::new(),
            Expr::Index(_, v) | Expr::Call(_, v) => v.iter_mut().collect(),
            Expr::Binary(_, a, b) => vec![a, b],
            Expr::Neg(a) | Expr::Not(a) => vec![a],
        }
    }

    /// The number of nodes, counting this one.
    pub fn size(&self) -> usize {
        1 + self.children().iter().map(|c| c.size()).sum::<usize>()
    }

    /// The `n`th node in pre-order (this one is 0).
    pub fn nth_mut(&mut self, n: usize) -> Option<&mut Expr> {
        if n == 0 {
            return Some(self);
        }
        let mut n = n - 1;
        for c in self.children_mut() {
            let s = c.size();
            if n < s {
                return c.nth_mut(n);
            }
            n -= s;
        }
        None
    }

    /// Whether the name `n` is read anywhere in this expression.
    pub fn mentions(&self, n: &str) -> bool {
        match self {
            Expr::Name(m) => m == n,
            Expr::Index(base, _) if base == n => true,
            Expr::Call(f, _) if f == n => true,
            _ => self.children().iter().any(|c| c.mentions(n)),
        }
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Int(v) if *v < 0 => write!(f, "(-{})", v.unsigned_abs()),
            Expr::Int(v) => write!(f, "{v}"),
            Expr::Float(v) if *v < 0.0 => write!(f, "(-{})", Expr::Float(-v)),
            // `{:?}` keeps a decimal point or an exponent, which the lexer reads as a float.
            Expr::Float(v) => write!(f, "{v:?}"),
            Expr::Name(n) => write!(f, "{n}"),
            Expr::Index(base, idx) => write!(f, "{base}[{}]", list(idx)),
            Expr::Call(callee, args) => write!(f, "{callee}({})", list(args)),
            Expr::Binary(op, a, b) => write!(f, "({a} {op} {b})"),
            Expr::Neg(a) => write!(f, "(-{a})"),
            Expr::Not(a) => write!(f, "(!{a})"),
        }
    }
}

fn list(items: &[Expr]) -> String {
    items
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A statement of a kernel (or of its recurrence block).
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Dims(Vec<(String, Option<i64>)>),
    Require(Expr),
    Input {
        names: Vec<String>,
        dtype: &'static str,
        dims: Vec<Expr>,
        range: Option<(Expr, Expr)>,
    },
    Output {
        name: String,
        dtype: &'static str,
        dims: Vec<Expr>,
    },
    Let(String, Expr),
    Mask(Expr),
    Assign {
        target: String,
        indices: Vec<Expr>,
        value: Expr,
    },
    State {
        name: String,
        dims: Vec<Expr>,
        update: Expr,
    },
    Recurrence(Vec<Stmt>),
}

impl Stmt {
    /// The expressions this statement holds, for the reducer.
    pub fn exprs_mut(&mut self) -> Vec<&mut Expr> {
        match self {
            Stmt::Let(_, e) | Stmt::Mask(e) | Stmt::Require(e) => vec![e],
            Stmt::Assign { value, .. } => vec![value],
            Stmt::State { update, .. } => vec![update],
            _ => Vec::new(),
        }
    }

    fn write(&self, f: &mut Formatter<'_>, indent: &str) -> fmt::Result {
        match self {
            Stmt::Dims(dims) => {
                let dims: Vec<String> = dims
                    .iter()
                    .map(|(n, d)| match d {
                        Some(v) => format!("{n} = {v}"),
                        None => n.clone(),
                    })
                    .collect();
                writeln!(f, "{indent}dim {};", dims.join(", "))
            }
            Stmt::Require(e) => writeln!(f, "{indent}require {e};"),
            Stmt::Input {
                names,
                dtype,
                dims,
                range,
            } => {
                write!(
                    f,
                    "{indent}input {}: {dtype}[{}]",
                    names.join(", "),
                    list(dims)
                )?;
                if let Some((lo, hi)) = range {
                    write!(f, " in [{lo}, {hi}]")?;
                }
                writeln!(f, ";")
            }
            Stmt::Output { name, dtype, dims } => {
                writeln!(f, "{indent}output {name}: {dtype}[{}];", list(dims))
            }
            Stmt::Let(n, e) => writeln!(f, "{indent}let {n} = {e};"),
            Stmt::Mask(e) => writeln!(f, "{indent}mask {e};"),
            Stmt::Assign {
                target,
                indices,
                value,
            } => writeln!(f, "{indent}{target}[{}] = {value};", list(indices)),
            Stmt::State { name, dims, update } => {
                writeln!(f, "{indent}state {name}: [{}] = {update};", list(dims))
            }
            Stmt::Recurrence(body) => {
                writeln!(f, "{indent}recurrence t {{")?;
                let inner = format!("{indent}  ");
                for s in body {
                    s.write(f, &inner)?;
                }
                writeln!(f, "{indent}}}")
            }
        }
    }
}

/// A user function: parameters, `let`s and a result.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    pub params: Vec<String>,
    pub lets: Vec<(String, Expr)>,
    pub result: Expr,
}

/// One generated kernel with the dims it is run at.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub functions: Vec<Function>,
    pub kernel: String,
    pub body: Vec<Stmt>,
    /// The value of every dim, as `--shape` would give them.
    pub shape: Vec<(String, i64)>,
}

impl Program {
    /// The shape as `attnc run --shape` takes it.
    pub fn shape_arg(&self) -> String {
        self.shape
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Display for Program {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for func in &self.functions {
            writeln!(f, "fn {}({}) {{", func.name, func.params.join(", "))?;
            for (n, e) in &func.lets {
                writeln!(f, "  let {n} = {e};")?;
            }
            writeln!(f, "  {}\n}}\n", func.result)?;
        }
        writeln!(f, "kernel {} {{", self.kernel)?;
        for s in &self.body {
            s.write(f, "  ")?;
        }
        writeln!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_negative_numbers_and_parenthesised_operators() {
        let e = Expr::bin(
            "-",
            Expr::Float(-0.5),
            Expr::bin("*", Expr::Int(-2), Expr::name("i")),
        );
        assert_eq!(e.to_string(), "((-0.5) - ((-2) * i))");
        assert_eq!(Expr::Float(1e30).to_string(), "1e30");
        assert_eq!(Expr::Float(2.0).to_string(), "2.0");
    }

    #[test]
    fn nth_mut_walks_in_pre_order() {
        let mut e = Expr::bin(
            "+",
            Expr::name("a"),
            Expr::call("exp", vec![Expr::name("b")]),
        );
        assert_eq!(e.size(), 4);
        assert_eq!(e.nth_mut(3).cloned(), Some(Expr::name("b")));
        assert_eq!(e.nth_mut(2).map(|x| x.to_string()), Some("exp(b)".into()));
        assert!(e.nth_mut(4).is_none());
    }
}
