//! A bounded cache of parsed rules, one per component instance.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::{ParseError, Rule};

/// Parsed rules by source text, so that a rule stored on a twin is parsed
/// once per instance rather than once per request. Holds at most
/// `capacity` rules and evicts the oldest-parsed first. Parse errors are
/// not cached.
#[derive(Debug)]
pub struct RuleCache {
    rules: HashMap<Box<str>, Rc<Rule>>,
    order: VecDeque<Box<str>>,
    capacity: usize,
}

impl RuleCache {
    /// The default capacity.
    pub const DEFAULT_CAPACITY: usize = 256;

    /// A cache of [`RuleCache::DEFAULT_CAPACITY`] rules.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A cache of at most `capacity` rules (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self { rules: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// The parsed rule for `source`, parsing it on first use.
    pub fn get_or_parse(&mut self, source: &str) -> Result<Rc<Rule>, ParseError> {
        if let Some(rule) = self.rules.get(source) {
            return Ok(Rc::clone(rule));
        }
        let rule = Rc::new(Rule::parse(source)?);
        if self.rules.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.rules.remove(&oldest);
            }
        }
        self.rules.insert(source.into(), Rc::clone(&rule));
        self.order.push_back(source.into());
        Ok(rule)
    }

    /// How many rules are cached.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn clear(&mut self) {
        self.rules.clear();
        self.order.clear();
    }
}

impl Default for RuleCache {
    fn default() -> Self {
        Self::new()
    }
}
