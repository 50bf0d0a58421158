//! The two error types: a rule that cannot be parsed, and a parsed rule
//! that cannot be evaluated against a given scope.

use crate::limits::Limit;

/// A rule's text is not valid rule syntax.
///
/// Displays as `at position 7: expected an operand, found ')'`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct ParseError {
    /// 0-based offset, in characters (not bytes), of the offending token;
    /// the length of the text when the rule ends too early.
    pub position: usize,
    /// What was wrong, without the position.
    pub message: String,
    /// The limit exceeded, when that is what was wrong; `message` is then
    /// its text (`rule nesting deeper than 64`).
    pub limit: Option<Limit>,
}

impl ParseError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        Self { position, message: message.into(), limit: None }
    }

    pub(crate) fn over(position: usize, limit: Limit) -> Self {
        Self { position, message: limit.to_string(), limit: Some(limit) }
    }
}

/// A rule could not be evaluated against a scope. [`crate::Rule::is_true`]
/// treats every one of these as "false".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// An operator was applied to values of types it does not accept,
    /// e.g. `null < 3` or `'a' - 1`.
    #[error("operator '{operator}' is not defined for {left} and {right}")]
    TypeMismatch { operator: &'static str, left: &'static str, right: &'static str },
    /// A prefix operator was applied to a value of a type it does not accept.
    #[error("operator '{operator}' is not defined for {operand}")]
    UnaryTypeMismatch { operator: &'static str, operand: &'static str },
    /// `/`, `//` or `%` with a zero right-hand side.
    #[error("division by zero")]
    DivisionByZero,
    /// An arithmetic result is not a finite number (JSON cannot hold it).
    #[error("arithmetic result is not a finite number")]
    NotFinite,
    /// A pattern computed at evaluation time is not a valid regular expression.
    #[error("invalid regular expression {pattern:?}: {message}")]
    InvalidRegex { pattern: String, message: String },
    /// A mapping literal's key evaluated to something other than a string.
    #[error("mapping keys must be strings, found {found}")]
    MappingKey { found: &'static str },
    /// The evaluation exceeded its budget or another limit. Unlike the
    /// other errors this says more about the rule than about the data:
    /// an API may refuse such a rule rather than count it as false.
    #[error(transparent)]
    Limit(#[from] Limit),
}
