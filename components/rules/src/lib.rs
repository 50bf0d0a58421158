//! Trusted-Twin-compatible rules: the Python `rule-engine` syntax
//! (`TWIN.company == USER.company and entry_name in LEDGER.public`)
//! evaluated over `serde_json` values.
//!
//! A library linked into the components that evaluate rules; see the
//! README for the supported syntax and the semantics chosen.
//!
//! ```
//! use rules::Rule;
//! use serde_json::{json, Map, Value};
//!
//! let rule = Rule::parse("TWIN.application == 'Trusted Twin DEMO App'").unwrap();
//! let mut scope = Map::new();
//! scope.insert("TWIN".into(), json!({"application": "Trusted Twin DEMO App"}));
//! assert!(rule.is_true(&scope));
//! assert!(!rule.is_true(&Map::<String, Value>::new()));
//! ```

mod ast;
mod cache;
mod error;
mod eval;
mod lexer;
mod limits;
mod parser;

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use serde_json::{Map, Value};

pub use cache::RuleCache;
pub use error::{EvalError, ParseError};
pub use limits::{Limit, Limits, REGEX_NEST_LIMIT, REGEX_SIZE_LIMIT};

/// Where a rule's top-level variables (`TWIN`, `USER`, `entry_value`, ...)
/// come from. A variable the scope does not have reads as `null`.
pub trait Scope {
    fn variable(&self, name: &str) -> Option<&Value>;
}

impl Scope for Map<String, Value> {
    fn variable(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

impl<H: BuildHasher> Scope for HashMap<String, Value, H> {
    fn variable(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

impl Scope for BTreeMap<String, Value> {
    fn variable(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// A JSON object's members are the variables; any other value has none.
impl Scope for Value {
    fn variable(&self, name: &str) -> Option<&Value> {
        self.as_object()?.get(name)
    }
}

/// Variables held apart, borrowed without building a map:
/// `[("TWIN", &twin), ("USER", &user)]`.
impl Scope for [(&str, &Value)] {
    fn variable(&self, name: &str) -> Option<&Value> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// A parsed rule. Parse once and evaluate many times; a `Rule` is
/// immutable and `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Rule {
    source: Box<str>,
    expr: ast::Expr,
    /// The top-level variables read, sorted and deduplicated.
    variables: Box<[Box<str>]>,
    /// The limits it was parsed under, which bound its evaluations too.
    limits: Limits,
}

impl Rule {
    /// Parses rule text under [`Limits::DEFAULT`]. Constant patterns of
    /// regex operators are compiled here, so an invalid one is a parse
    /// error; so is a rule over a limit ([`ParseError::limit`] says which).
    pub fn parse(source: &str) -> Result<Rule, ParseError> {
        Self::parse_with(source, &Limits::DEFAULT)
    }

    /// Parses rule text under `limits`, which also bound each evaluation
    /// of the rule.
    pub fn parse_with(source: &str, limits: &Limits) -> Result<Rule, ParseError> {
        let expr = parser::parse(source, limits)?;
        let mut variables: Vec<Box<str>> = Vec::new();
        expr.visit_vars(&mut |name| variables.push(name.into()));
        variables.sort_unstable();
        variables.dedup();
        Ok(Rule { source: source.into(), expr, variables: variables.into(), limits: *limits })
    }

    /// The text the rule was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The rule's value in `scope`. Missing variables, members and
    /// elements read as `null`; type errors (`null < 3`), division by zero,
    /// invalid computed regex patterns and exceeding the evaluation budget
    /// ([`EvalError::Limit`]) are errors.
    pub fn evaluate<S: Scope + ?Sized>(&self, scope: &S) -> Result<Value, EvalError> {
        let mut budget = limits::Budget::new(&self.limits);
        eval::eval(&self.expr, scope, &mut budget).map(std::borrow::Cow::into_owned)
    }

    /// Whether the rule holds in `scope`: its value is truthy in Python's
    /// sense (not `null`, `false`, `0`, `""`, `[]` or `{}`). A rule that
    /// fails to evaluate does not hold.
    pub fn is_true<S: Scope + ?Sized>(&self, scope: &S) -> bool {
        self.test(scope).unwrap_or(false)
    }

    /// Whether the rule holds in `scope`, or why it could not be
    /// evaluated: for callers that treat some errors (an exceeded
    /// [`Limit`]) differently from "does not hold".
    pub fn test<S: Scope + ?Sized>(&self, scope: &S) -> Result<bool, EvalError> {
        let mut budget = limits::Budget::new(&self.limits);
        eval::test(&self.expr, scope, &mut budget)
    }

    /// The limits the rule was parsed under and is evaluated under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the rule reads the top-level variable `variable`, so a
    /// caller can skip loading what no rule needs (e.g. `LEDGER`).
    pub fn uses(&self, variable: &str) -> bool {
        self.variables.iter().any(|v| &**v == variable)
    }

    /// The top-level variables the rule reads, sorted.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(|v| &**v)
    }
}

impl std::str::FromStr for Rule {
    type Err = ParseError;

    fn from_str(source: &str) -> Result<Rule, ParseError> {
        Rule::parse(source)
    }
}
