//! Recursive-descent parser, one function per precedence level (lowest
//! first): ternary, `or`, `and`, `not`, comparisons, `+ -`, `* / // %`,
//! `**`, unary `-`, postfix (`.`, `&.`, `[]`, `&[]`), primaries.
//!
//! Sub-expressions without variables are folded into constants as they are
//! built, so `x in ['a', 'b']` evaluates without building the array.
//!
//! The parser enforces the parse-time [`Limits`]: the length before
//! anything else, the depth on entering each nested construct (before
//! recursing, so no text can exhaust the stack), the operand and regex
//! counts at the end. Runs of `and`, `or`, `+ -` and `* / // %` are built
//! flat, so only nesting the reader can see makes the tree deep.

use serde_json::{Map, Number, Value};

use crate::ast::{compile, BinOp, Expr, Pattern, RegexOp};
use crate::error::ParseError;
use crate::eval;
use crate::lexer::{tokenize, Tok, Token};
use crate::limits::{Budget, Limit, Limits};

const KEYWORDS: &[&str] = &["and", "or", "not", "in", "true", "false", "null", "True", "False", "None"];

pub(crate) fn parse(source: &str, limits: &Limits) -> Result<Expr, ParseError> {
    if source.len() > limits.max_source_bytes {
        return Err(ParseError::over(0, Limit::SourceBytes { max: limits.max_source_bytes }));
    }
    let mut parser = Parser { tokens: tokenize(source)?, at: 0, limits, depth: 0, nodes: 0, regexes: 0 };
    let expr = parser.ternary()?;
    let rest = parser.peek();
    if rest.tok != Tok::End {
        return Err(ParseError::new(
            rest.pos,
            format!("expected an operator or end of input, found {}", rest.tok.describe()),
        ));
    }
    // Counted at the end: a long list of constants is many nodes while it
    // is parsed and one once folded.
    if parser.nodes > limits.max_nodes {
        return Err(ParseError::over(0, Limit::Nodes { max: limits.max_nodes }));
    }
    Ok(expr)
}

struct Parser<'l> {
    tokens: Vec<Token>,
    at: usize,
    limits: &'l Limits,
    /// Nesting levels entered and not yet left.
    depth: usize,
    /// Nodes built and not folded away.
    nodes: usize,
    /// Regex operators built.
    regexes: usize,
}

impl Parser<'_> {
    /// Enters one nesting level, refusing to go deeper than the limit.
    /// Called just after the token that opens the level (a bracket, `not`,
    /// `-`, `**`, `?`, `.`), which is where an error points.
    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            let opener = &self.tokens[self.at.saturating_sub(1)];
            return Err(ParseError::over(opener.pos, Limit::Depth { max: self.limits.max_depth }));
        }
        Ok(())
    }

    /// Runs `f` one nesting level down.
    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Result<Expr, ParseError>) -> Result<Expr, ParseError> {
        self.enter()?;
        let expr = f(self);
        self.depth -= 1;
        expr
    }

    /// `expr`, folded into a constant if it can be, and counted: a leaf or
    /// an unfolded node is one more node, a folded one replaces its
    /// operands (all constants, one node each) by one constant.
    fn node(&mut self, expr: Expr) -> Expr {
        let operands = expr.operands();
        let expr = fold(expr);
        if operands > 0 && matches!(expr, Expr::Literal(_)) {
            self.nodes = self.nodes.saturating_sub(operands - 1);
        } else {
            self.nodes += 1;
        }
        expr
    }

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

    /// A whole expression, one nesting level down: every bracket, branch
    /// and index goes through here.
    fn ternary(&mut self) -> Result<Expr, ParseError> {
        self.nested(|p| {
            let condition = p.or()?;
            if !p.eat_sym("?") {
                return Ok(condition);
            }
            let then = p.ternary()?;
            p.expect_sym(":")?;
            let otherwise = p.ternary()?;
            Ok(p.node(Expr::Ternary(Box::new(condition), Box::new(then), Box::new(otherwise))))
        })
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let first = self.and()?;
        if !self.is_word("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_word("or") {
            self.next();
            items.push(self.and()?);
        }
        Ok(self.node(Expr::Or(items)))
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let first = self.not()?;
        if !self.is_word("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_word("and") {
            self.next();
            items.push(self.not()?);
        }
        Ok(self.node(Expr::And(items)))
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.is_word("not") {
            self.next();
            let operand = self.nested(Self::not)?;
            return Ok(self.node(Expr::Not(Box::new(operand))));
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
            Err(op) => self.regex(op, left, right, right_pos)?,
        };
        Ok(self.node(expr))
    }

    /// A regex operator node. Out of line, like `fold`, so that the frames
    /// of the recursive descent stay small.
    #[inline(never)]
    fn regex(&mut self, op: RegexOp, left: Expr, right: Expr, right_pos: usize) -> Result<Expr, ParseError> {
        // Counted before compiling: each compiled pattern takes memory,
        // so too many must fail before they are built.
        self.regexes += 1;
        if self.regexes > self.limits.max_regexes {
            return Err(ParseError::over(right_pos, Limit::Regexes { max: self.limits.max_regexes }));
        }
        let pattern = match right {
            Expr::Literal(Value::String(p)) => Pattern::Compiled(
                compile(&p, op.full())
                    .map_err(|e| ParseError::new(right_pos, format!("invalid regular expression: {e}")))?,
            ),
            Expr::Literal(other) => {
                return Err(ParseError::new(
                    right_pos,
                    format!("the right side of '{}' must be a string, found {}", op.symbol(), eval::type_name(&other)),
                ))
            }
            dynamic => Pattern::Dynamic(Box::new(dynamic)),
        };
        Ok(Expr::Regex { op, subject: Box::new(left), pattern })
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        self.chain(Self::multiplicative, |tok| match tok {
            Tok::Sym("+") => Some(BinOp::Add),
            Tok::Sym("-") => Some(BinOp::Sub),
            _ => None,
        })
    }

    fn multiplicative(&mut self) -> Result<Expr, ParseError> {
        self.chain(Self::power, |tok| match tok {
            Tok::Sym("*") => Some(BinOp::Mul),
            Tok::Sym("/") => Some(BinOp::Div),
            Tok::Sym("//") => Some(BinOp::FloorDiv),
            Tok::Sym("%") => Some(BinOp::Mod),
            _ => None,
        })
    }

    /// A left-associative run of the operators `op` recognises, between
    /// operands parsed by `operand`. A constant prefix is folded as it
    /// grows (`1 + 2 + x` is `3 + x`), as a left-nested tree would be.
    fn chain(
        &mut self,
        operand: fn(&mut Self) -> Result<Expr, ParseError>,
        op: fn(&Tok) -> Option<BinOp>,
    ) -> Result<Expr, ParseError> {
        let mut first = operand(self)?;
        let mut rest: Vec<(BinOp, Expr)> = Vec::new();
        while let Some(op) = op(&self.peek().tok) {
            self.next();
            let right = operand(self)?;
            if rest.is_empty() {
                if let (Expr::Literal(a), Expr::Literal(b)) = (&first, &right) {
                    if let Ok(value) = eval::binary(op, a, b, &mut Budget::new(self.limits)) {
                        // Two constants become one.
                        self.nodes = self.nodes.saturating_sub(1);
                        first = Expr::Literal(value);
                        continue;
                    }
                }
            }
            rest.push((op, right));
        }
        Ok(match rest.len() {
            0 => first,
            1 => {
                let (op, right) = rest.remove(0);
                self.node(Expr::Binary(op, Box::new(first), Box::new(right)))
            }
            _ => self.node(Expr::Chain(Box::new(first), rest)),
        })
    }

    /// `**` is right-associative and binds looser than unary minus, as in
    /// rule-engine: `-2 ** 2` is `(-2) ** 2`.
    fn power(&mut self) -> Result<Expr, ParseError> {
        let base = self.unary()?;
        if !self.eat_sym("**") {
            return Ok(base);
        }
        let exponent = self.nested(Self::power)?;
        Ok(self.node(Expr::Binary(BinOp::Pow, Box::new(base), Box::new(exponent))))
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat_sym("-") {
            let operand = self.nested(Self::unary)?;
            return Ok(self.node(Expr::Neg(Box::new(operand))));
        }
        self.postfix()
    }

    /// Each `.name` or `[index]` step nests the tree one level deeper
    /// (the step's node holds the chain so far), so each counts as a level.
    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let depth = self.depth;
        let expr = self.postfix_steps();
        self.depth = depth;
        expr
    }

    fn postfix_steps(&mut self) -> Result<Expr, ParseError> {
        let mut expr = self.primary()?;
        loop {
            if self.eat_sym(".") || self.eat_sym("&.") {
                self.enter()?;
                let token = self.next();
                let Tok::Word(name) = token.tok else {
                    return Err(ParseError::new(
                        token.pos,
                        format!("expected an attribute name, found {}", token.tok.describe()),
                    ));
                };
                expr = self.node(Expr::Attr(Box::new(expr), name.into()));
            } else if self.eat_sym("[") || self.eat_sym("&[") {
                self.enter()?;
                let index = self.ternary()?;
                self.expect_sym("]")?;
                expr = self.node(Expr::Index(Box::new(expr), Box::new(index)));
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let token = self.next();
        let leaf = match token.tok {
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
                // Grouping adds no node.
                let inner = self.ternary()?;
                self.expect_sym(")")?;
                return Ok(inner);
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
                return Ok(self.node(Expr::Array(items)));
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
                return Ok(self.node(Expr::Object(entries)));
            }
            other => {
                return Err(ParseError::new(token.pos, format!("expected an operand, found {}", other.describe())))
            }
        };
        Ok(self.node(leaf))
    }
}

/// Replaces `expr` by its value when all its operands are constants and it
/// evaluates without error; an expression that fails (`1 / 0`) is kept so
/// that it fails at evaluation time, where errors belong.
#[inline(never)]
fn fold(expr: Expr) -> Expr {
    let lit = |e: &Expr| matches!(e, Expr::Literal(_));
    let constant = match &expr {
        Expr::Literal(_) | Expr::Var(_) => false,
        Expr::Attr(base, _) | Expr::Neg(base) | Expr::Not(base) => lit(base),
        Expr::Index(a, b) | Expr::Binary(_, a, b) => lit(a) && lit(b),
        Expr::Array(items) | Expr::And(items) | Expr::Or(items) => items.iter().all(lit),
        Expr::Chain(first, rest) => lit(first) && rest.iter().all(|(_, e)| lit(e)),
        Expr::Object(entries) => entries.iter().all(|(k, v)| lit(k) && lit(v)),
        Expr::Regex { subject, pattern, .. } => lit(subject) && matches!(pattern, Pattern::Compiled(_)),
        Expr::Ternary(c, a, b) => lit(c) && lit(a) && lit(b),
    };
    if !constant {
        return expr;
    }
    // Constants come from the rule text, which is bounded, so the default
    // budget is ample; a fold that exceeds it is left to fail at evaluation.
    match eval::eval(&expr, &Map::new(), &mut Budget::new(&Limits::DEFAULT)) {
        Ok(value) => Expr::Literal(value.into_owned()),
        Err(_) => expr,
    }
}

#[cfg(test)]
mod tests {
    use crate::{Limit, Limits, Rule};
    use serde_json::{json, Map, Value};

    /// Runs `f` on a thread with a 512 KiB stack (4 MiB in unoptimised
    /// builds, whose frames are several times larger), the size of
    /// wasmtime's default `max_wasm_stack`: a native main thread (8 MiB)
    /// would hide an overflow. Measured in a release build, parsing takes
    /// about 4.3 KiB of native stack per nesting level, so the deepest
    /// rule needs about 280 KiB.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let size = if cfg!(debug_assertions) { 4 << 20 } else { 512 << 10 };
        std::thread::Builder::new().stack_size(size).spawn(f).unwrap().join().unwrap()
    }

    fn limit_of(source: &str, limits: &Limits) -> Option<Limit> {
        match Rule::parse_with(source, limits) {
            Ok(_) => None,
            Err(e) => {
                assert!(e.limit.is_none() || e.message == e.limit.unwrap().to_string());
                e.limit
            }
        }
    }

    const UNBOUNDED_TEXT: Limits = Limits { max_source_bytes: usize::MAX, max_nodes: usize::MAX, ..Limits::DEFAULT };

    #[test]
    fn source_length_is_limited() {
        let at_limit = format!("'{}'", "a".repeat(4094));
        assert_eq!(at_limit.len(), 4096);
        assert!(Rule::parse(&at_limit).is_ok());
        let over = format!("'{}'", "a".repeat(4095));
        let err = Rule::parse(&over).unwrap_err();
        assert_eq!(err.limit, Some(Limit::SourceBytes { max: 4096 }));
        assert_eq!(err.to_string(), "at position 0: rule longer than 4096 bytes");
        // The review's recipe: refused by its length before anything else.
        let minus = format!("{}1", "-".repeat(60_000));
        assert_eq!(limit_of(&minus, &Limits::DEFAULT), Some(Limit::SourceBytes { max: 4096 }));
    }

    #[test]
    fn deep_nesting_is_refused_before_it_can_exhaust_the_stack() {
        const N: usize = 100_000;
        let deep = [
            format!("{}1{}", "(".repeat(N), ")".repeat(N)),
            format!("{}1", "-".repeat(N)),
            format!("{}x", "not ".repeat(N)),
            format!("{}2", "2 ** ".repeat(N)),
            format!("x{}", ".a".repeat(N)),
            format!("x{}", "[0]".repeat(N)),
            format!("x{}", "&[0]".repeat(N)),
            format!("{}1{}", "[".repeat(N), "]".repeat(N)),
            format!("{}1{}", "{'a': ".repeat(N), "}".repeat(N)),
            format!("{}1", "t ? 1 : ".repeat(N)),
            format!("{}1", "t ? ".repeat(N)),
            format!("x[{}0{}]", "x[".repeat(N), "]".repeat(N)),
        ];
        on_small_stack(move || {
            for source in &deep {
                assert_eq!(limit_of(source, &UNBOUNDED_TEXT), Some(Limit::Depth { max: 64 }), "{}", &source[..20]);
            }
        });
        // Within the default length the same happens, at the offending token.
        let err = Rule::parse(&format!("{}1{}", "(".repeat(2000), ")".repeat(2000))).unwrap_err();
        assert_eq!(err.limit, Some(Limit::Depth { max: 64 }));
        assert_eq!(err.to_string(), "at position 63: rule nesting deeper than 64");
    }

    /// `levels` nested brackets, each level holding every operator layer
    /// that adds no depth of its own: the deepest tree a rule can have.
    fn deepest(levels: usize) -> String {
        let mut s = "n".to_owned();
        for _ in 0..levels {
            s = format!("(f or t and n == n + n * {s} ? n : n)");
        }
        s
    }

    #[test]
    fn depth_limit_is_exact() {
        // The whole rule is one level, each bracket one more, and the
        // branches of the innermost `? :` one more.
        assert!(Rule::parse(&deepest(62)).is_ok());
        assert_eq!(limit_of(&deepest(63), &Limits::DEFAULT), Some(Limit::Depth { max: 64 }));
        assert!(Rule::parse(&format!("{}x", "not ".repeat(63))).is_ok());
        assert!(Rule::parse(&format!("{}x", "not ".repeat(64))).is_err());
        assert!(Rule::parse(&format!("x{}", ".a".repeat(63))).is_ok());
        assert!(Rule::parse(&format!("x{}", ".a".repeat(64))).is_err());
    }

    #[test]
    fn the_deepest_accepted_rule_parses_evaluates_and_drops_on_a_small_stack() {
        on_small_stack(|| {
            let rule = Rule::parse(&deepest(62)).unwrap();
            let Value::Object(scope) = json!({"f": false, "t": true, "n": 1}) else { unreachable!() };
            assert_eq!(rule.evaluate(&scope), Ok(json!(1)));
            drop(rule);
        });
    }

    #[test]
    fn flat_runs_are_not_nesting() {
        // Long runs of one operator are common in hand-written rules
        // (`x == 'a' or x == 'b' or ...`) and build no deep tree.
        let ors = vec!["USER.profession == 'p'"; 150].join(" or ");
        assert!(ors.len() < 4096);
        assert!(!Rule::parse(&ors).unwrap().is_true(&Map::new()));
        let sum = vec!["n"; 1000].join("+");
        let Value::Object(scope) = json!({"n": 1}) else { unreachable!() };
        assert_eq!(Rule::parse(&sum).unwrap().evaluate(&scope), Ok(json!(1000)));
        // Even 100,000 terms: parsing, evaluating and dropping them is a
        // loop, not a recursion.
        let limits = Limits { max_eval_steps: usize::MAX, ..UNBOUNDED_TEXT };
        on_small_stack(move || {
            for op in [" or ", " and ", "+", "*"] {
                let source = vec!["n"; 100_000].join(op);
                let rule = Rule::parse_with(&source, &limits).unwrap();
                assert!(rule.test(&scope).is_ok(), "{op}");
            }
        });
    }

    #[test]
    fn operands_are_counted_after_folding() {
        let vars = format!("[{}]", vec!["x"; 1025].join(", "));
        assert!(vars.len() < 4096);
        let err = Rule::parse(&vars).unwrap_err();
        assert_eq!(err.limit, Some(Limit::Nodes { max: 1024 }));
        assert_eq!(err.message, "rule with more than 1024 operands and operators");
        assert!(Rule::parse(&format!("[{}]", vec!["x"; 1023].join(", "))).is_ok());
        // A long list of constants is one constant.
        let constants = format!("x in [{}]", vec!["1"; 1300].join(","));
        assert!(constants.len() < 4096);
        assert!(Rule::parse(&constants).is_ok());
        let folded = format!("{} + x", vec!["1"; 1300].join("+"));
        assert!(Rule::parse(&folded).is_ok());
    }

    #[test]
    fn regexes_are_limited_in_number_size_and_nesting() {
        let many = |n: usize| vec!["x =~ 'a'"; n].join(" or ");
        assert!(Rule::parse(&many(16)).is_ok());
        let err = Rule::parse(&many(17)).unwrap_err();
        assert_eq!(err.limit, Some(Limit::Regexes { max: 16 }));
        assert_eq!(err.message, "rule with more than 16 regular expressions");
        // Ordinary patterns, Unicode classes included, compile.
        for ok in [r"x =~ '\w+@\w+\.\w{2,}'", r"x =~~ '(?i)\d{4}-\d{2}-\d{2}'", r"x =~ '\w{12}'"] {
            assert!(Rule::parse(ok).is_ok(), "{ok}");
        }
        let big = Rule::parse(r"x =~ '\w{1000}'").unwrap_err();
        assert!(big.message.contains("size limit of 262144"), "{}", big.message);
        let nested = format!("x =~~ '{}a{}'", "(".repeat(65), ")".repeat(65));
        let err = Rule::parse(&nested).unwrap_err();
        assert!(err.message.contains("nested"), "{}", err.message);
        let nested = format!("x =~ '{}a{}'", "(".repeat(60), ")".repeat(60));
        assert!(Rule::parse(&nested).is_ok());
    }
}
