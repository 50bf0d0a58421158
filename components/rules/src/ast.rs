//! The parsed form of a rule.

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::limits::{REGEX_NEST_LIMIT, REGEX_SIZE_LIMIT};

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// A constant: a literal, or a sub-expression folded at parse time.
    Literal(Value),
    /// A top-level variable, looked up in the scope.
    Var(Box<str>),
    /// `base.name` or `base&.name` (the same under null-propagating lookups).
    Attr(Box<Expr>, Box<str>),
    /// `base[index]` or `base&[index]`.
    Index(Box<Expr>, Box<Expr>),
    Array(Vec<Expr>),
    Object(Vec<(Expr, Expr)>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    /// `a and b and ...`, held flat (at least two operands) so that a long
    /// run costs no stack.
    And(Vec<Expr>),
    /// `a or b or ...`, flat like `And`.
    Or(Vec<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `first op1 e1 op2 e2 ...`: a run of at least two `+ -` or
    /// `* / // %` operators, evaluated left to right. Held flat so that a
    /// long run costs no stack, and so that a string or array being built
    /// is appended to in place instead of copied at every step.
    Chain(Box<Expr>, Vec<(BinOp, Expr)>),
    Regex {
        op: RegexOp,
        subject: Box<Expr>,
        pattern: Pattern,
    },
    /// `condition ? then : otherwise`.
    Ternary(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
}

impl BinOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::NotIn => "not in",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::FloorDiv => "//",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegexOp {
    /// `=~`: the whole string matches.
    Match,
    /// `=~~`: the pattern matches somewhere in the string.
    Search,
    /// `!~`
    NotMatch,
    /// `!~~`
    NotSearch,
}

impl RegexOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            RegexOp::Match => "=~",
            RegexOp::Search => "=~~",
            RegexOp::NotMatch => "!~",
            RegexOp::NotSearch => "!~~",
        }
    }

    /// Whether the pattern must match the whole string.
    pub(crate) fn full(self) -> bool {
        matches!(self, RegexOp::Match | RegexOp::NotMatch)
    }

    pub(crate) fn negated(self) -> bool {
        matches!(self, RegexOp::NotMatch | RegexOp::NotSearch)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Pattern {
    /// A constant pattern, compiled at parse time (anchored for `=~`/`!~`).
    Compiled(Regex),
    /// A pattern computed at evaluation time.
    Dynamic(Box<Expr>),
}

/// Compiles `pattern` for a regex operator: `\A(?:pattern)\z` when the
/// whole string must match. The bare pattern is checked first so that an
/// unbalanced `)` cannot escape the anchoring group. Size and nesting
/// are limited (see [`REGEX_SIZE_LIMIT`]), so a pattern cannot make the
/// compiler take unbounded memory or stack.
pub(crate) fn compile(pattern: &str, full: bool) -> Result<Regex, regex::Error> {
    let build =
        |pattern: &str, nest: u32| RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).nest_limit(nest).build();
    let bare = build(pattern, REGEX_NEST_LIMIT)?;
    if full {
        // The anchoring group is one more level.
        build(&format!(r"\A(?:{pattern})\z"), REGEX_NEST_LIMIT + 1)
    } else {
        Ok(bare)
    }
}

impl Expr {
    /// Calls `f` with every variable name the expression reads.
    pub(crate) fn visit_vars<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Expr::Literal(_) => {}
            Expr::Var(name) => f(name),
            Expr::Attr(base, _) | Expr::Neg(base) | Expr::Not(base) => base.visit_vars(f),
            Expr::Index(a, b) | Expr::Binary(_, a, b) => {
                a.visit_vars(f);
                b.visit_vars(f);
            }
            Expr::Array(items) | Expr::And(items) | Expr::Or(items) => items.iter().for_each(|e| e.visit_vars(f)),
            Expr::Chain(first, rest) => {
                first.visit_vars(f);
                rest.iter().for_each(|(_, e)| e.visit_vars(f));
            }
            Expr::Object(entries) => entries.iter().for_each(|(k, v)| {
                k.visit_vars(f);
                v.visit_vars(f);
            }),
            Expr::Regex { subject, pattern, .. } => {
                subject.visit_vars(f);
                if let Pattern::Dynamic(p) = pattern {
                    p.visit_vars(f);
                }
            }
            Expr::Ternary(c, a, b) => {
                c.visit_vars(f);
                a.visit_vars(f);
                b.visit_vars(f);
            }
        }
    }

    /// How many operands the node has (not counting theirs).
    pub(crate) fn operands(&self) -> usize {
        match self {
            Expr::Literal(_) | Expr::Var(_) => 0,
            Expr::Attr(..) | Expr::Neg(_) | Expr::Not(_) => 1,
            Expr::Index(..) | Expr::Binary(..) | Expr::Regex { .. } => 2,
            Expr::Ternary(..) => 3,
            Expr::Array(items) | Expr::And(items) | Expr::Or(items) => items.len(),
            Expr::Object(entries) => 2 * entries.len(),
            Expr::Chain(_, rest) => 1 + rest.len(),
        }
    }
}
