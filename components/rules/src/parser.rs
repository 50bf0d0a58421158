//! Recursive-descent parser, one function per precedence level (lowest
//! first): ternary, `or`, `and`, `not`, comparisons, `+ -`, `* / // %`,
//! `**`, unary `-`, postfix (`.`, `&.`, `[]`, `&[]`), primaries.
//!
//! Sub-expressions without variables are folded into constants as they are
//! built, so `x in ['a', 'b']` evaluates without building the array.

use serde_json::{Map, Number, Value};

use crate::ast::{compile, BinOp, Expr, Pattern, RegexOp};
use crate::error::ParseError;
use crate::eval;
use crate::lexer::{tokenize, Tok, Token};

const KEYWORDS: &[&str] = &["and", "or", "not", "in", "true", "false", "null", "True", "False", "None"];

pub(crate) fn parse(source: &str) -> Result<Expr, ParseError> {
    let mut parser = Parser { tokens: tokenize(source)?, at: 0 };
    let expr = parser.ternary()?;
    let rest = parser.peek();
    if rest.tok != Tok::End {
        return Err(ParseError::new(
            rest.pos,
            format!("expected an operator or end of input, found {}", rest.tok.describe()),
        ));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at]
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        &self.tokens[(self.at + ahead).min(self.tokens.len() - 1)].tok
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.at].clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        token
    }

    fn is_sym(&self, sym: &str) -> bool {
        matches!(&self.peek().tok, Tok::Sym(s) if *s == sym)
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Word(w) if w == word)
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        let found = self.is_sym(sym);
        if found {
            self.next();
        }
        found
    }

    fn expect_sym(&mut self, sym: &str) -> Result<(), ParseError> {
        if self.eat_sym(sym) {
            return Ok(());
        }
        let found = self.peek();
        Err(ParseError::new(found.pos, format!("expected '{sym}', found {}", found.tok.describe())))
    }

    fn ternary(&mut self) -> Result<Expr, ParseError> {
        let condition = self.or()?;
        if !self.eat_sym("?") {
            return Ok(condition);
        }
        let then = self.ternary()?;
        self.expect_sym(":")?;
        let otherwise = self.ternary()?;
        Ok(fold(Expr::Ternary(Box::new(condition), Box::new(then), Box::new(otherwise))))
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.is_word("or") {
            self.next();
            let right = self.and()?;
            left = fold(Expr::Or(Box::new(left), Box::new(right)));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not()?;
        while self.is_word("and") {
            self.next();
            let right = self.not()?;
            left = fold(Expr::And(Box::new(left), Box::new(right)));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.is_word("not") {
            self.next();
            let operand = self.not()?;
            return Ok(fold(Expr::Not(Box::new(operand))));
        }
        self.comparison()
    }

    /// The comparison operator at the cursor, and how many tokens it spans.
    fn comparison_op(&self) -> Option<(Result<BinOp, RegexOp>, usize)> {
        let op = match &self.peek().tok {
            Tok::Sym("==") => Ok(BinOp::Eq),
            Tok::Sym("!=") => Ok(BinOp::Ne),
            Tok::Sym("<") => Ok(BinOp::Lt),
            Tok::Sym("<=") => Ok(BinOp::Le),
            Tok::Sym(">") => Ok(BinOp::Gt),
            Tok::Sym(">=") => Ok(BinOp::Ge),
            Tok::Sym("=~") => Err(RegexOp::Match),
            Tok::Sym("=~~") => Err(RegexOp::Search),
            Tok::Sym("!~") => Err(RegexOp::NotMatch),
            Tok::Sym("!~~") => Err(RegexOp::NotSearch),
            Tok::Word(w) if w == "in" => Ok(BinOp::In),
            Tok::Word(w) if w == "not" && matches!(self.peek_at(1), Tok::Word(w) if w == "in") => {
                return Some((Ok(BinOp::NotIn), 2));
            }
            _ => return None,
        };
        Some((op, 1))
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let left = self.additive()?;
        let Some((op, width)) = self.comparison_op() else {
            return Ok(left);
        };
        for _ in 0..width {
            self.next();
        }
        let right_pos = self.peek().pos;
        let right = self.additive()?;
        if self.comparison_op().is_some() {
            return Err(ParseError::new(
                self.peek().pos,
                "comparison operators cannot be chained; combine them with 'and'",
            ));
        }
        let expr = match op {
            Ok(op) => Expr::Binary(op, Box::new(left), Box::new(right)),
            Err(op) => {
                let pattern = match right {
                    Expr::Literal(Value::String(p)) => Pattern::Compiled(
                        compile(&p, op.full())
                            .map_err(|e| ParseError::new(right_pos, format!("invalid regular expression: {e}")))?,
                    ),
                    Expr::Literal(other) => {
                        return Err(ParseError::new(
                            right_pos,
                            format!(
                                "the right side of '{}' must be a string, found {}",
                                op.symbol(),
                                eval::type_name(&other)
                            ),
                        ))
                    }
                    dynamic => Pattern::Dynamic(Box::new(dynamic)),
                };
                Expr::Regex { op, subject: Box::new(left), pattern }
            }
        };
        Ok(fold(expr))
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match &self.peek().tok {
                Tok::Sym("+") => BinOp::Add,
                Tok::Sym("-") => BinOp::Sub,
                _ => return Ok(left),
            };
            self.next();
            let right = self.multiplicative()?;
            left = fold(Expr::Binary(op, Box::new(left), Box::new(right)));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.power()?;
        loop {
            let op = match &self.peek().tok {
                Tok::Sym("*") => BinOp::Mul,
                Tok::Sym("/") => BinOp::Div,
                Tok::Sym("//") => BinOp::FloorDiv,
                Tok::Sym("%") => BinOp::Mod,
                _ => return Ok(left),
            };
            self.next();
            let right = self.power()?;
            left = fold(Expr::Binary(op, Box::new(left), Box::new(right)));
        }
    }

    /// `**` is right-associative and binds looser than unary minus, as in
    /// rule-engine: `-2 ** 2` is `(-2) ** 2`.
    fn power(&mut self) -> Result<Expr, ParseError> {
        let base = self.unary()?;
        if !self.eat_sym("**") {
            return Ok(base);
        }
        let exponent = self.power()?;
        Ok(fold(Expr::Binary(BinOp::Pow, Box::new(base), Box::new(exponent))))
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat_sym("-") {
            let operand = self.unary()?;
            return Ok(fold(Expr::Neg(Box::new(operand))));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut expr = self.primary()?;
        loop {
            if self.eat_sym(".") || self.eat_sym("&.") {
                let token = self.next();
                let Tok::Word(name) = token.tok else {
                    return Err(ParseError::new(
                        token.pos,
                        format!("expected an attribute name, found {}", token.tok.describe()),
                    ));
                };
                expr = fold(Expr::Attr(Box::new(expr), name.into()));
            } else if self.eat_sym("[") || self.eat_sym("&[") {
                let index = self.ternary()?;
                self.expect_sym("]")?;
                expr = fold(Expr::Index(Box::new(expr), Box::new(index)));
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let token = self.next();
        let expr = match token.tok {
            Tok::Str(s) => Expr::Literal(Value::String(s)),
            Tok::Int(i) => Expr::Literal(Value::from(i)),
            Tok::Float(f) => Expr::Literal(Number::from_f64(f).map_or(Value::Null, Value::Number)),
            Tok::Word(w) => match w.as_str() {
                "true" | "True" => Expr::Literal(Value::Bool(true)),
                "false" | "False" => Expr::Literal(Value::Bool(false)),
                "null" | "None" => Expr::Literal(Value::Null),
                _ if KEYWORDS.contains(&w.as_str()) => {
                    return Err(ParseError::new(token.pos, format!("expected an operand, found '{w}'")))
                }
                _ => Expr::Var(w.into()),
            },
            Tok::Sym("(") => {
                let inner = self.ternary()?;
                self.expect_sym(")")?;
                inner
            }
            Tok::Sym("[") => {
                let mut items = Vec::new();
                while !self.is_sym("]") {
                    items.push(self.ternary()?);
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                self.expect_sym("]")?;
                fold(Expr::Array(items))
            }
            Tok::Sym("{") => {
                let mut entries = Vec::new();
                while !self.is_sym("}") {
                    let key = self.ternary()?;
                    self.expect_sym(":")?;
                    let value = self.ternary()?;
                    entries.push((key, value));
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                self.expect_sym("}")?;
                fold(Expr::Object(entries))
            }
            other => {
                return Err(ParseError::new(token.pos, format!("expected an operand, found {}", other.describe())))
            }
        };
        Ok(expr)
    }
}

/// Replaces `expr` by its value when all its operands are constants and it
/// evaluates without error; an expression that fails (`1 / 0`) is kept so
/// that it fails at evaluation time, where errors belong.
fn fold(expr: Expr) -> Expr {
    let lit = |e: &Expr| matches!(e, Expr::Literal(_));
    let constant = match &expr {
        Expr::Literal(_) | Expr::Var(_) => false,
        Expr::Attr(base, _) | Expr::Neg(base) | Expr::Not(base) => lit(base),
        Expr::Index(a, b) | Expr::And(a, b) | Expr::Or(a, b) | Expr::Binary(_, a, b) => lit(a) && lit(b),
        Expr::Array(items) => items.iter().all(lit),
        Expr::Object(entries) => entries.iter().all(|(k, v)| lit(k) && lit(v)),
        Expr::Regex { subject, pattern, .. } => lit(subject) && matches!(pattern, Pattern::Compiled(_)),
        Expr::Ternary(c, a, b) => lit(c) && lit(a) && lit(b),
    };
    if !constant {
        return expr;
    }
    match eval::eval(&expr, &Map::new()) {
        Ok(value) => Expr::Literal(value.into_owned()),
        Err(_) => expr,
    }
}
