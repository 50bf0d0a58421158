//! What a rule may cost: limits checked when a rule is parsed, and the
//! work budget of one evaluation.
//!
//! Rules come from tenants (role rules, visibility rules, a scan's
//! `match`), so parsing and evaluating one must be bounded in stack, time
//! and memory whatever its text: parsing, constant folding, evaluation and
//! `Drop` all recurse, and the evaluator builds strings and arrays.

/// One of the engine's limits, with its value. Its message names both, so
/// the API's error can tell a tenant which limit a rule exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Limit {
    /// The rule text is longer than [`Limits::max_source_bytes`].
    #[error("rule longer than {max} bytes")]
    SourceBytes { max: usize },
    /// Brackets, `not`, unary minus, `**`, `? :` branches and `.`/`[]`
    /// steps nest deeper than [`Limits::max_depth`].
    #[error("rule nesting deeper than {max}")]
    Depth { max: usize },
    /// More than [`Limits::max_nodes`] operands and operators are left
    /// after constant folding.
    #[error("rule with more than {max} operands and operators")]
    Nodes { max: usize },
    /// More than [`Limits::max_regexes`] regex operators.
    #[error("rule with more than {max} regular expressions")]
    Regexes { max: usize },
    /// A pattern computed at evaluation time is longer than
    /// [`Limits::max_source_bytes`].
    #[error("computed regular expression longer than {max} bytes")]
    PatternBytes { max: usize },
    /// One evaluation built more than [`Limits::max_eval_bytes`] of
    /// strings, arrays and objects.
    #[error("rule evaluation builds more than {max} bytes")]
    EvalBytes { max: usize },
    /// One evaluation scanned more than [`Limits::max_eval_steps`] bytes
    /// or elements.
    #[error("rule evaluation takes more than {max} steps")]
    EvalSteps { max: usize },
}

/// The limits a rule is parsed and evaluated under. [`Limits::DEFAULT`]
/// is what [`crate::Rule::parse`] uses; other values are for tests and
/// for callers with other needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest rule text, in bytes. Trusted Twin documents no limit; its
    /// examples are under 100 bytes, and 4 KiB leaves room for long
    /// `in [...]` lists while bounding what a `+` chain can repeat.
    pub max_source_bytes: usize,
    /// Deepest nesting. Each level costs about fifteen parser frames (some
    /// 4.3 KiB of native stack in a release build) and a few evaluator
    /// frames; at 64 the deepest rule parses and evaluates within 512 KiB,
    /// wasmtime's default `max_wasm_stack` (a test runs it on such a
    /// thread, an end-to-end test through the twins component).
    pub max_depth: usize,
    /// Most operands and operators left after constant folding, so at
    /// most this many nodes are evaluated (the language has no loops).
    pub max_nodes: usize,
    /// Most regex operators in one rule: each compiled pattern may take
    /// up to [`REGEX_SIZE_LIMIT`] bytes, and rules are cached.
    pub max_regexes: usize,
    /// Most bytes of strings, arrays and objects one evaluation may build
    /// (concatenation, copies of scope values into new arrays).
    pub max_eval_bytes: usize,
    /// Most steps of one evaluation: bytes a regex or `in` scans, elements
    /// `in` compares, characters indexing walks.
    pub max_eval_steps: usize,
}

impl Limits {
    /// The limits of [`crate::Rule::parse`].
    pub const DEFAULT: Limits = Limits {
        max_source_bytes: 4096,
        max_depth: 64,
        max_nodes: 1024,
        max_regexes: 16,
        max_eval_bytes: 1 << 20,
        max_eval_steps: 1_000_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Heap size limit of one compiled regex (the `regex` crate's default is
/// 10 MiB). 256 KiB holds `\w+@\w+\.\w{2,}` (Unicode classes, ~80 KiB)
/// and counted repetitions up to `\w{12}`.
pub const REGEX_SIZE_LIMIT: usize = 256 << 10;

/// Deepest group nesting in a regex (the `regex` crate's default is 250).
pub const REGEX_NEST_LIMIT: u32 = 64;

/// What is left of one evaluation's budget. Charged before the work is
/// done, so an over-budget concatenation never allocates.
#[derive(Debug)]
pub(crate) struct Budget<'l> {
    bytes: usize,
    steps: usize,
    limits: &'l Limits,
}

impl<'l> Budget<'l> {
    pub(crate) fn new(limits: &'l Limits) -> Self {
        Self { bytes: limits.max_eval_bytes, steps: limits.max_eval_steps, limits }
    }

    pub(crate) fn limits(&self) -> &Limits {
        self.limits
    }

    /// Charges `n` bytes about to be built.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<(), Limit> {
        self.bytes = self.bytes.checked_sub(n).ok_or(Limit::EvalBytes { max: self.limits.max_eval_bytes })?;
        Ok(())
    }

    /// Charges `n` steps about to be taken.
    pub(crate) fn steps(&mut self, n: usize) -> Result<(), Limit> {
        self.steps = self.steps.checked_sub(n).ok_or(Limit::EvalSteps { max: self.limits.max_eval_steps })?;
        Ok(())
    }

    /// Charges the bytes of a copy of `value` about to be made: roughly
    /// its JSON size. Stops walking as soon as the budget is spent, so the
    /// walk costs no more than the copy it prevents.
    pub(crate) fn copy_of(&mut self, value: &serde_json::Value) -> Result<(), Limit> {
        use serde_json::Value;
        // Every value costs its slot; strings and keys their bytes too.
        const SLOT: usize = 8;
        self.bytes(SLOT)?;
        match value {
            Value::String(s) => self.bytes(s.len()),
            Value::Array(items) => items.iter().try_for_each(|v| self.copy_of(v)),
            Value::Object(map) => map.iter().try_for_each(|(k, v)| {
                self.bytes(k.len())?;
                self.copy_of(v)
            }),
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
        }
    }
}
