//! Integer expressions over a kernel's dims: tensor extents (`2 * S - 1`), launch grids
//! (`ceil_div(S, 64)`), argument values and `require` conditions (`H % Hkv == 0`).
//!
//! A manifest stores them as text in the `.attn` spelling, so a bundle reads like the source it
//! came from; [`Expr::parse`] reads them back and [`Expr::eval`] computes them with checked
//! arithmetic. Conditions are integers: 1 is true, 0 is false.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    Const(i64),
    Dim(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    /// Floor division, as `//` in `.attn` and Python.
    FloorDiv,
    /// Remainder with the divisor's sign, as `%` in `.attn` and Python.
    Rem,
    /// `ceil_div(a, b)`: the number of tiles of `b` that cover `a`.
    CeilDiv,
    Min,
    Max,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    /// Binding strength for printing and parsing; functions bind tightest.
    fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::FloorDiv | BinOp::Rem => 5,
            BinOp::CeilDiv | BinOp::Min | BinOp::Max => 7,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::FloorDiv => "//",
            BinOp::Rem => "%",
            BinOp::CeilDiv => "ceil_div",
            BinOp::Min => "min",
            BinOp::Max => "max",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }

    fn is_function(self) -> bool {
        matches!(self, BinOp::CeilDiv | BinOp::Min | BinOp::Max)
    }
}

/// Why an expression has no value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("dim `{0}` has no value")]
    Unbound(String),
    #[error("`{0}` overflows a 64-bit integer")]
    Overflow(String),
    #[error("`{0}` divides by zero")]
    DivisionByZero(String),
}

/// Why a text is not an expression.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot read `{text}` as an integer expression: {reason} at byte {at}")]
pub struct ParseError {
    pub text: String,
    pub reason: String,
    pub at: usize,
}

impl Expr {
    pub fn dim(name: &str) -> Expr {
        Expr::Dim(name.to_string())
    }

    pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }

    pub fn ceil_div(a: Expr, b: Expr) -> Expr {
        Expr::bin(BinOp::CeilDiv, a, b)
    }

    /// The value under `dims`.
    pub fn eval(&self, dims: &BTreeMap<String, i64>) -> Result<i64, EvalError> {
        let overflow = || EvalError::Overflow(self.to_string());
        match self {
            Expr::Const(c) => Ok(*c),
            Expr::Dim(d) => dims
                .get(d)
                .copied()
                .ok_or_else(|| EvalError::Unbound(d.clone())),
            Expr::Neg(a) => a.eval(dims)?.checked_neg().ok_or_else(overflow),
            Expr::Not(a) => Ok((a.eval(dims)? == 0) as i64),
            Expr::Binary(op, a, b) => {
                let (x, y) = (a.eval(dims)?, b.eval(dims)?);
                let zero = || EvalError::DivisionByZero(self.to_string());
                Ok(match op {
                    BinOp::Add => x.checked_add(y).ok_or_else(overflow)?,
                    BinOp::Sub => x.checked_sub(y).ok_or_else(overflow)?,
                    BinOp::Mul => x.checked_mul(y).ok_or_else(overflow)?,
                    BinOp::FloorDiv => {
                        if y == 0 {
                            return Err(zero());
                        }
                        floor_div(x, y).ok_or_else(overflow)?
                    }
                    BinOp::Rem => {
                        if y == 0 {
                            return Err(zero());
                        }
                        let q = floor_div(x, y).ok_or_else(overflow)?;
                        x - q * y
                    }
                    BinOp::CeilDiv => {
                        if y == 0 {
                            return Err(zero());
                        }
                        let q = floor_div(x.checked_neg().ok_or_else(overflow)?, y)
                            .ok_or_else(overflow)?;
                        q.checked_neg().ok_or_else(overflow)?
                    }
                    BinOp::Min => x.min(y),
                    BinOp::Max => x.max(y),
                    BinOp::Eq => (x == y) as i64,
                    BinOp::Ne => (x != y) as i64,
                    BinOp::Lt => (x < y) as i64,
                    BinOp::Le => (x <= y) as i64,
                    BinOp::Gt => (x > y) as i64,
                    BinOp::Ge => (x >= y) as i64,
                    BinOp::And => (x != 0 && y != 0) as i64,
                    BinOp::Or => (x != 0 || y != 0) as i64,
                })
            }
        }
    }

    /// Every dim the expression names, each once, in order of first appearance.
    pub fn dims(&self) -> Vec<&str> {
        fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a str>) {
            match e {
                Expr::Const(_) => {}
                Expr::Dim(d) => {
                    if !out.contains(&d.as_str()) {
                        out.push(d);
                    }
                }
                Expr::Neg(a) | Expr::Not(a) => walk(a, out),
                Expr::Binary(_, a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    pub fn parse(text: &str) -> Result<Expr, ParseError> {
        let mut p = Parser {
            text,
            bytes: text.as_bytes(),
            at: 0,
        };
        let e = p.expr(0)?;
        p.skip_space();
        if p.at != p.bytes.len() {
            return Err(p.error("unexpected text"));
        }
        Ok(e)
    }

    fn precedence(&self) -> u8 {
        match self {
            Expr::Binary(op, ..) => op.precedence(),
            Expr::Neg(_) | Expr::Not(_) => 6,
            Expr::Const(c) if *c < 0 => 6,
            _ => 8,
        }
    }
}

/// Floor division; `None` only for `i64::MIN // -1`.
fn floor_div(x: i64, y: i64) -> Option<i64> {
    let q = x.checked_div(y)?;
    Some(if (x % y != 0) && ((x < 0) != (y < 0)) {
        q - 1
    } else {
        q
    })
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Const(c) => write!(f, "{c}"),
            Expr::Dim(d) => write!(f, "{d}"),
            Expr::Neg(a) | Expr::Not(a) => {
                f.write_str(if matches!(self, Expr::Neg(_)) {
                    "-"
                } else {
                    "!"
                })?;
                if a.precedence() < 6 {
                    write!(f, "({a})")
                } else {
                    write!(f, "{a}")
                }
            }
            Expr::Binary(op, a, b) if op.is_function() => {
                write!(f, "{}({a}, {b})", op.symbol())
            }
            Expr::Binary(op, a, b) => {
                // Left-associative: the right operand needs parentheses also at equal strength.
                let own = op.precedence();
                if a.precedence() < own {
                    write!(f, "({a})")?;
                } else {
                    write!(f, "{a}")?;
                }
                write!(f, " {} ", op.symbol())?;
                if b.precedence() <= own {
                    write!(f, "({b})")
                } else {
                    write!(f, "{b}")
                }
            }
        }
    }
}

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Expr, D::Error> {
        let text = String::deserialize(d)?;
        Expr::parse(&text).map_err(serde::de::Error::custom)
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &str) -> ParseError {
        ParseError {
            text: self.text.to_string(),
            reason: reason.to_string(),
            at: self.at,
        }
    }

    fn skip_space(&mut self) {
        while self.at < self.bytes.len() && self.bytes[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn eat(&mut self, s: &str) -> bool {
        self.skip_space();
        if self.text[self.at..].starts_with(s) {
            self.at += s.len();
            true
        } else {
            false
        }
    }

    /// The infix operator at the cursor, without consuming it.
    fn peek_op(&mut self) -> Option<(BinOp, usize)> {
        self.skip_space();
        let rest = &self.text[self.at..];
        let table: [(&str, BinOp); 13] = [
            ("||", BinOp::Or),
            ("&&", BinOp::And),
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
            ("<=", BinOp::Le),
            (">=", BinOp::Ge),
            ("//", BinOp::FloorDiv),
            ("<", BinOp::Lt),
            (">", BinOp::Gt),
            ("+", BinOp::Add),
            ("-", BinOp::Sub),
            ("*", BinOp::Mul),
            ("%", BinOp::Rem),
        ];
        table
            .iter()
            .find(|(s, _)| rest.starts_with(s))
            .map(|(s, op)| (*op, s.len()))
    }

    /// Precedence climbing over left-associative operators stronger than `min`.
    fn expr(&mut self, min: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        while let Some((op, len)) = self.peek_op() {
            let p = op.precedence();
            if p <= min {
                break;
            }
            self.at += len;
            let rhs = self.expr(p)?;
            lhs = Expr::bin(op, lhs, rhs);
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat("-") {
            let a = self.unary()?;
            return Ok(match a {
                Expr::Const(c) => Expr::Const(-c),
                a => Expr::Neg(Box::new(a)),
            });
        }
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        self.skip_space();
        if self.eat("(") {
            let e = self.expr(0)?;
            if !self.eat(")") {
                return Err(self.error("expected `)`"));
            }
            return Ok(e);
        }
        let start = self.at;
        while self.at < self.bytes.len()
            && (self.bytes[self.at].is_ascii_alphanumeric() || self.bytes[self.at] == b'_')
        {
            self.at += 1;
        }
        let word = &self.text[start..self.at];
        if word.is_empty() {
            return Err(self.error("expected a number, a dim or `(`"));
        }
        if word.as_bytes()[0].is_ascii_digit() {
            return word
                .parse()
                .map(Expr::Const)
                .map_err(|_| self.error("not an integer"));
        }
        let function = match word {
            "ceil_div" => Some(BinOp::CeilDiv),
            "min" => Some(BinOp::Min),
            "max" => Some(BinOp::Max),
            _ => None,
        };
        match function {
            Some(op) if self.eat("(") => {
                let a = self.expr(0)?;
                if !self.eat(",") {
                    return Err(self.error("expected `,`"));
                }
                let b = self.expr(0)?;
                if !self.eat(")") {
                    return Err(self.error("expected `)`"));
                }
                Ok(Expr::bin(op, a, b))
            }
            _ => Ok(Expr::Dim(word.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn text_round_trips_and_evaluates() {
        let d = dims(&[("S", 1000), ("H", 32), ("Hkv", 8), ("D", 128)]);
        for (text, value) in [
            ("2 * S - 1", 1999),
            ("ceil_div(S, 64)", 16),
            ("H % Hkv == 0", 1),
            ("H // (H // Hkv)", 8),
            ("S - (D - 1)", 873),
            ("-S // 7", -143),
            ("-S % 7", 1),
            ("min(S, 64) * max(H, 1)", 2048),
            ("S > 10 && (H < 4 || !(D == 1))", 1),
            ("ceil_div(2 * S - 1, 128) * 4", 64),
        ] {
            let e = Expr::parse(text).unwrap();
            assert_eq!(e.eval(&d).unwrap(), value, "{text}");
            assert_eq!(e.to_string(), text, "prints as written");
            assert_eq!(Expr::parse(&e.to_string()).unwrap(), e);
        }
    }

    #[test]
    fn errors_say_what_went_wrong() {
        let d = dims(&[("S", 4)]);
        assert_eq!(
            Expr::parse("S // 0").unwrap().eval(&d),
            Err(EvalError::DivisionByZero("S // 0".into()))
        );
        assert_eq!(
            Expr::parse("T + 1").unwrap().eval(&d),
            Err(EvalError::Unbound("T".into()))
        );
        assert!(matches!(
            Expr::parse("9223372036854775807 + S").unwrap().eval(&d),
            Err(EvalError::Overflow(_))
        ));
        for bad in [
            "",
            "S +",
            "(S",
            "ceil_div(S)",
            "S $ 2",
            "99999999999999999999",
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serialises_as_text() {
        let e = Expr::ceil_div(Expr::dim("S"), Expr::Const(64));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, "\"ceil_div(S, 64)\"");
        let back: Expr = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        assert!(serde_json::from_str::<Expr>("\"S +\"").is_err());
    }
}
