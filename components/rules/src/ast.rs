//! The parsed form of a rule.

use regex::Regex;
use serde_json::Value;

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
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
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
/// unbalanced `)` cannot escape the anchoring group.
pub(crate) fn compile(pattern: &str, full: bool) -> Result<Regex, regex::Error> {
    let bare = Regex::new(pattern)?;
    if full {
        Regex::new(&format!(r"\A(?:{pattern})\z"))
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
            Expr::Index(a, b) | Expr::And(a, b) | Expr::Or(a, b) | Expr::Binary(_, a, b) => {
                a.visit_vars(f);
                b.visit_vars(f);
            }
            Expr::Array(items) => items.iter().for_each(|e| e.visit_vars(f)),
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
}
