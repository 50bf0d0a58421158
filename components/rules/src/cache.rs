//! Bounded caches: parsed rules (one [`RuleCache`] per component
//! instance, owned by the caller) and compiled dynamic regexes (one per
//! thread, inside the engine).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use regex::Regex;

use crate::ast::compile;
use crate::{ParseError, Rule};

/// At most `capacity` values by string key; the oldest inserted is
/// evicted first.
#[derive(Debug)]
struct Bounded<V> {
    map: HashMap<Box<str>, V>,
    order: VecDeque<Box<str>>,
    capacity: usize,
}

impl<V: Clone> Bounded<V> {
    fn new(capacity: usize) -> Self {
        Self { map: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    fn get(&self, key: &str) -> Option<V> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: &str, value: V) {
        if self.map.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(key.into(), value);
        self.order.push_back(key.into());
    }

    fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

/// Parsed rules by source text, so that a rule stored on a twin is parsed
/// once per instance rather than once per request. Holds at most
/// `capacity` rules and evicts the oldest-parsed first. Parse errors are
/// not cached. Rules are at most 4 KiB ([`crate::Limits`]), so the keys
/// and the parsed rules stay bounded too.
#[derive(Debug)]
pub struct RuleCache {
    rules: Bounded<Rc<Rule>>,
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
        Self { rules: Bounded::new(capacity) }
    }

    /// The parsed rule for `source`, parsing it on first use.
    pub fn get_or_parse(&mut self, source: &str) -> Result<Rc<Rule>, ParseError> {
        if let Some(rule) = self.rules.get(source) {
            return Ok(rule);
        }
        let rule = Rc::new(Rule::parse(source)?);
        self.rules.insert(source, Rc::clone(&rule));
        Ok(rule)
    }

    /// How many rules are cached.
    pub fn len(&self) -> usize {
        self.rules.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }
}

impl Default for RuleCache {
    fn default() -> Self {
        Self::new()
    }
}

/// How many compiled dynamic patterns each thread keeps, per kind
/// (anchored for `=~`/`!~`, unanchored for `=~~`/`!~~`). A pattern is at
/// most [`crate::limits::REGEX_SIZE_LIMIT`] compiled, so this bounds the
/// cache at 2 × 16 × 256 KiB in the worst case; a typical one is a few KiB.
pub(crate) const DYNAMIC_REGEX_CAPACITY: usize = 16;

thread_local! {
    /// `[unanchored, anchored]` patterns by their text. A rule such as
    /// `TWIN.name =~ USER.pattern` computes the same pattern for every
    /// twin of a scan; compiling it each time cost microseconds to
    /// milliseconds per evaluation.
    static DYNAMIC: RefCell<[Bounded<Regex>; 2]> = RefCell::new([
        Bounded::new(DYNAMIC_REGEX_CAPACITY),
        Bounded::new(DYNAMIC_REGEX_CAPACITY),
    ]);
}

/// `pattern` compiled for a regex operator (anchored when `full`), from
/// this thread's cache when it was compiled before. Errors are not cached.
pub(crate) fn dynamic_regex(pattern: &str, full: bool) -> Result<Regex, regex::Error> {
    let kind = usize::from(full);
    // `Regex` clones share the compiled program; the borrow ends before
    // matching.
    if let Some(regex) = DYNAMIC.with(|c| c.borrow()[kind].get(pattern)) {
        return Ok(regex);
    }
    let regex = compile(pattern, full)?;
    #[cfg(test)]
    COMPILED.with(|n| n.set(n.get() + 1));
    DYNAMIC.with(|c| c.borrow_mut()[kind].insert(pattern, regex.clone()));
    Ok(regex)
}

#[cfg(test)]
thread_local! {
    /// Dynamic patterns this thread compiled, for tests.
    static COMPILED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many dynamic patterns this thread has cached, for tests.
#[cfg(test)]
pub(crate) fn dynamic_regexes_cached() -> usize {
    DYNAMIC.with(|c| c.borrow().iter().map(|b| b.map.len()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_evicts_the_oldest() {
        let mut b = Bounded::new(2);
        b.insert("a", 1);
        b.insert("b", 2);
        b.insert("c", 3);
        assert_eq!((b.get("a"), b.get("b"), b.get("c")), (None, Some(2), Some(3)));
        assert_eq!(b.map.len(), 2);
    }

    #[test]
    fn dynamic_regexes_are_compiled_once_and_bounded() {
        let compiled = || COMPILED.with(std::cell::Cell::get);
        let before = compiled();
        assert!(dynamic_regex("a+", false).unwrap().is_match("xaa"));
        assert!(dynamic_regex("a+", false).unwrap().is_match("xaa"));
        assert_eq!(compiled(), before + 1);
        for i in 0..100 {
            dynamic_regex(&format!("x{i}"), i % 2 == 0).unwrap();
        }
        assert!(dynamic_regexes_cached() <= 2 * DYNAMIC_REGEX_CAPACITY);
        // Anchoring is part of the key: the same text differs by kind.
        assert!(dynamic_regex("b", true).unwrap().is_match("b"));
        assert!(!dynamic_regex("b", true).unwrap().is_match("abc"));
        assert!(dynamic_regex("b", false).unwrap().is_match("abc"));
    }
}
