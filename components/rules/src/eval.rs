//! Evaluation of a parsed rule against a scope.
//!
//! Values are `Cow`s: anything read from the scope or from a constant in
//! the rule is borrowed, and only computed results (booleans, arithmetic,
//! concatenations) are owned, so a typical rule allocates nothing.
//!
//! Every evaluation carries a [`Budget`]: bytes built (concatenations,
//! copies of scope values into new arrays and objects) and steps scanned
//! (regex subjects, `in`, string indexing) are charged before the work is
//! done. Node visits need no budget: the language has no loops, so each
//! node is evaluated at most once, and the parser bounds their number.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::ast::{BinOp, Expr, Pattern, RegexOp};
use crate::cache::dynamic_regex;
use crate::error::EvalError;
use crate::limits::{Budget, Limit};
use crate::Scope;

static NULL: Value = Value::Null;

type Result<T> = std::result::Result<T, EvalError>;

pub(crate) fn eval<'a, S: Scope + ?Sized>(
    expr: &'a Expr,
    scope: &'a S,
    budget: &mut Budget<'_>,
) -> Result<Cow<'a, Value>> {
    Ok(match expr {
        Expr::Literal(value) => Cow::Borrowed(value),
        Expr::Var(name) => Cow::Borrowed(scope.variable(name).unwrap_or(&NULL)),
        Expr::Attr(base, name) => match eval(base, scope, budget)? {
            Cow::Borrowed(v) => Cow::Borrowed(v.as_object().and_then(|m| m.get(&**name)).unwrap_or(&NULL)),
            Cow::Owned(Value::Object(mut m)) => Cow::Owned(m.remove(&**name).unwrap_or(Value::Null)),
            Cow::Owned(_) => Cow::Borrowed(&NULL),
        },
        Expr::Index(base, index) => {
            let base = eval(base, scope, budget)?;
            index_of(base, eval(index, scope, budget)?.as_ref(), budget)?
        }
        Expr::Array(items) => array(items, scope, budget)?,
        Expr::Object(entries) => object(entries, scope, budget)?,
        Expr::Neg(operand) => Cow::Owned(negate(eval(operand, scope, budget)?.as_ref())?),
        Expr::Not(_) | Expr::And(_) | Expr::Or(_) => Cow::Owned(Value::Bool(test(expr, scope, budget)?)),
        Expr::Binary(op, a, b) => {
            let (a, b) = (eval(a, scope, budget)?, eval(b, scope, budget)?);
            combine(*op, a, b, budget)?
        }
        Expr::Chain(first, rest) => chain(first, rest, scope, budget)?,
        Expr::Regex { op, subject, pattern } => {
            Cow::Owned(Value::Bool(regex_match(*op, subject, pattern, scope, budget)?))
        }
        Expr::Ternary(condition, then, otherwise) => {
            if test(condition, scope, budget)? {
                eval(then, scope, budget)?
            } else {
                eval(otherwise, scope, budget)?
            }
        }
    })
}

// The rarer cases live outside `eval`, keeping its stack frame small for
// the recursion of the common ones.

#[inline(never)]
fn index_of<'a>(base: Cow<'a, Value>, index: &Value, budget: &mut Budget<'_>) -> Result<Cow<'a, Value>> {
    if let (Value::String(s), Value::Number(_)) = (&*base, index) {
        // Counting and finding characters walks the string.
        budget.steps(s.len())?;
    }
    Ok(match base {
        Cow::Borrowed(v) => item(v, index).unwrap_or(Cow::Borrowed(&NULL)),
        Cow::Owned(v) => match item(&v, index) {
            None => Cow::Borrowed(&NULL),
            Some(Cow::Owned(part)) => Cow::Owned(part),
            Some(Cow::Borrowed(part)) => {
                budget.copy_of(part)?;
                Cow::Owned(part.clone())
            }
        },
    })
}

/// `value` as an owned value, charging the copy when it is borrowed.
fn owned(value: Cow<'_, Value>, budget: &mut Budget<'_>) -> Result<Value> {
    match value {
        Cow::Owned(v) => Ok(v),
        Cow::Borrowed(v) => {
            budget.copy_of(v)?;
            Ok(v.clone())
        }
    }
}

#[inline(never)]
fn array<'a, S: Scope + ?Sized>(items: &'a [Expr], scope: &'a S, budget: &mut Budget<'_>) -> Result<Cow<'a, Value>> {
    let mut values = Vec::with_capacity(items.len());
    for e in items {
        let value = eval(e, scope, budget)?;
        values.push(owned(value, budget)?);
    }
    Ok(Cow::Owned(Value::Array(values)))
}

#[inline(never)]
fn object<'a, S: Scope + ?Sized>(
    entries: &'a [(Expr, Expr)],
    scope: &'a S,
    budget: &mut Budget<'_>,
) -> Result<Cow<'a, Value>> {
    let mut map = Map::with_capacity(entries.len());
    for (key, value) in entries {
        let key = match eval(key, scope, budget)? {
            Cow::Owned(Value::String(key)) => key,
            Cow::Borrowed(Value::String(key)) => {
                budget.bytes(key.len())?;
                key.clone()
            }
            other => return Err(EvalError::MappingKey { found: type_name(&other) }),
        };
        let value = eval(value, scope, budget)?;
        map.insert(key, owned(value, budget)?);
    }
    Ok(Cow::Owned(Value::Object(map)))
}

#[inline(never)]
fn chain<'a, S: Scope + ?Sized>(
    first: &'a Expr,
    rest: &'a [(BinOp, Expr)],
    scope: &'a S,
    budget: &mut Budget<'_>,
) -> Result<Cow<'a, Value>> {
    let mut acc = eval(first, scope, budget)?;
    for (op, operand) in rest {
        let operand = eval(operand, scope, budget)?;
        acc = combine(*op, acc, operand, budget)?;
    }
    Ok(acc)
}

/// `a op b`, appending to `a` in place when it is an owned string or
/// array being built, so a run of `+` costs the bytes of its result, not
/// the square of them.
#[inline(never)]
fn combine<'a>(op: BinOp, a: Cow<'a, Value>, b: Cow<'a, Value>, budget: &mut Budget<'_>) -> Result<Cow<'a, Value>> {
    if op != BinOp::Add {
        return binary(op, &a, &b, budget).map(Cow::Owned);
    }
    match (a, b) {
        (Cow::Owned(Value::String(mut x)), b) => {
            let Value::String(y) = &*b else {
                return Err(EvalError::TypeMismatch { operator: "+", left: "string", right: type_name(&b) });
            };
            budget.bytes(y.len())?;
            x.push_str(y);
            Ok(Cow::Owned(Value::String(x)))
        }
        (Cow::Owned(Value::Array(mut x)), Cow::Owned(Value::Array(y))) => {
            // Built, hence charged, already: moved, not copied.
            x.extend(y);
            Ok(Cow::Owned(Value::Array(x)))
        }
        (Cow::Owned(Value::Array(mut x)), Cow::Borrowed(Value::Array(y))) => {
            y.iter().try_for_each(|v| budget.copy_of(v))?;
            x.extend(y.iter().cloned());
            Ok(Cow::Owned(Value::Array(x)))
        }
        (a, b) => binary(op, &a, &b, budget).map(Cow::Owned),
    }
}

#[inline(never)]
fn regex_match<S: Scope + ?Sized>(
    op: RegexOp,
    subject: &Expr,
    pattern: &Pattern,
    scope: &S,
    budget: &mut Budget<'_>,
) -> Result<bool> {
    let subject = eval(subject, scope, budget)?;
    let Value::String(text) = &*subject else {
        return Err(EvalError::TypeMismatch { operator: op.symbol(), left: type_name(&subject), right: "string" });
    };
    let found = match pattern {
        Pattern::Compiled(regex) => {
            budget.steps(text.len())?;
            regex.is_match(text)
        }
        Pattern::Dynamic(pattern) => {
            let pattern = eval(pattern, scope, budget)?;
            let Value::String(pattern) = &*pattern else {
                return Err(EvalError::TypeMismatch {
                    operator: op.symbol(),
                    left: "string",
                    right: type_name(&pattern),
                });
            };
            // Compiling is linear in the pattern, and the cache keys are
            // patterns: both stay bounded.
            let max = budget.limits().max_source_bytes;
            if pattern.len() > max {
                return Err(Limit::PatternBytes { max }.into());
            }
            // Compiling costs at least a scan of the pattern.
            budget.steps(text.len() + pattern.len())?;
            let regex = dynamic_regex(pattern, op.full())
                .map_err(|e| EvalError::InvalidRegex { pattern: pattern.clone(), message: e.to_string() })?;
            regex.is_match(text)
        }
    };
    Ok(found != op.negated())
}

/// The truthiness of `expr`'s value. Boolean operators and (in)equality
/// are answered without building a `Value`: the hot path of most rules.
pub(crate) fn test<S: Scope + ?Sized>(expr: &Expr, scope: &S, budget: &mut Budget<'_>) -> Result<bool> {
    match expr {
        Expr::Not(operand) => Ok(!test(operand, scope, budget)?),
        Expr::And(items) => {
            for item in items {
                if !test(item, scope, budget)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Expr::Or(items) => {
            for item in items {
                if test(item, scope, budget)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Expr::Binary(op @ (BinOp::Eq | BinOp::Ne), a, b) => {
            let (a, b) = (eval(a, scope, budget)?, eval(b, scope, budget)?);
            Ok(equal(&a, &b) == (*op == BinOp::Eq))
        }
        _ => eval(expr, scope, budget).map(|value| truthy(&value)),
    }
}

/// `base[index]`: an array element (negative indexes count from the end),
/// an object member, or a string's character; `None` when absent.
fn item<'v>(base: &'v Value, index: &Value) -> Option<Cow<'v, Value>> {
    match (base, index) {
        (Value::Object(map), Value::String(key)) => map.get(key).map(Cow::Borrowed),
        (Value::Array(items), Value::Number(n)) => items.get(position(n, items.len())?).map(Cow::Borrowed),
        (Value::String(s), Value::Number(n)) => {
            let at = position(n, s.chars().count())?;
            s.chars().nth(at).map(|c| Cow::Owned(Value::String(c.to_string())))
        }
        _ => None,
    }
}

/// A numeric index into a sequence of `len` elements, Python-style.
fn position(n: &Number, len: usize) -> Option<usize> {
    let i = match n.as_i64() {
        Some(i) => i,
        None => {
            let f = n.as_f64()?;
            if f.fract() != 0.0 || f.abs() > 1e15 {
                return None;
            }
            f as i64
        }
    };
    let i = if i < 0 { i + len as i64 } else { i };
    usize::try_from(i).ok().filter(|&i| i < len)
}

/// Python truthiness: `null`, `false`, `0`, `""`, `[]` and `{}` are false.
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// JSON equality, except that numbers compare by value (`1 == 1.0`), also
/// inside arrays and objects.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.cmp(&y);
    }
    if !a.is_f64() && !b.is_f64() {
        // One is a u64 above i64::MAX, the other a negative i64.
        return if a.is_u64() { Ordering::Greater } else { Ordering::Less };
    }
    // JSON numbers are never NaN.
    let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
    x.partial_cmp(&y).unwrap_or(Ordering::Equal)
}

#[inline(never)]
pub(crate) fn binary(op: BinOp, a: &Value, b: &Value, budget: &mut Budget<'_>) -> Result<Value> {
    let mismatch = || EvalError::TypeMismatch { operator: op.symbol(), left: type_name(a), right: type_name(b) };
    let order = |accept: fn(Ordering) -> bool| -> Result<Value> {
        let ordering = match (a, b) {
            (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
            (Value::String(x), Value::String(y)) => x.cmp(y),
            _ => return Err(mismatch()),
        };
        Ok(Value::Bool(accept(ordering)))
    };
    match op {
        BinOp::Eq => Ok(Value::Bool(equal(a, b))),
        BinOp::Ne => Ok(Value::Bool(!equal(a, b))),
        BinOp::Lt => order(Ordering::is_lt),
        BinOp::Le => order(Ordering::is_le),
        BinOp::Gt => order(Ordering::is_gt),
        BinOp::Ge => order(Ordering::is_ge),
        BinOp::In | BinOp::NotIn => {
            let found = match (b, a) {
                (Value::Null, _) => false,
                (Value::Array(items), _) => {
                    budget.steps(items.len())?;
                    items.iter().any(|v| equal(a, v))
                }
                (Value::String(s), Value::String(part)) => {
                    budget.steps(s.len())?;
                    s.contains(part.as_str())
                }
                (Value::Object(map), Value::String(key)) => map.contains_key(key),
                _ => return Err(mismatch()),
            };
            Ok(Value::Bool(found == (op == BinOp::In)))
        }
        BinOp::Add => match (a, b) {
            (Value::String(x), Value::String(y)) => {
                budget.bytes(x.len() + y.len())?;
                Ok(Value::String([x.as_str(), y].concat()))
            }
            (Value::Array(x), Value::Array(y)) => {
                x.iter().chain(y).try_for_each(|v| budget.copy_of(v))?;
                Ok(Value::Array(x.iter().chain(y).cloned().collect()))
            }
            (Value::Number(x), Value::Number(y)) => arithmetic(op, x, y),
            _ => Err(mismatch()),
        },
        _ => match (a, b) {
            (Value::Number(x), Value::Number(y)) => arithmetic(op, x, y),
            _ => Err(mismatch()),
        },
    }
}

/// Integers stay exact while they fit in an `i64`; everything else is
/// computed in `f64`.
fn arithmetic(op: BinOp, a: &Number, b: &Number) -> Result<Value> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        if y == 0 && matches!(op, BinOp::Div | BinOp::FloorDiv | BinOp::Mod) {
            return Err(EvalError::DivisionByZero);
        }
        let exact = match op {
            BinOp::Add => x.checked_add(y),
            BinOp::Sub => x.checked_sub(y),
            BinOp::Mul => x.checked_mul(y),
            BinOp::FloorDiv => x.checked_div(y).map(|q| if x % y != 0 && (x < 0) != (y < 0) { q - 1 } else { q }),
            BinOp::Mod => x.checked_rem(y).map(|r| if r != 0 && (r < 0) != (y < 0) { r + y } else { r }),
            BinOp::Pow => u32::try_from(y).ok().and_then(|y| x.checked_pow(y)),
            _ => None,
        };
        if let Some(result) = exact {
            return Ok(Value::from(result));
        }
    }
    let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
    if y == 0.0 && matches!(op, BinOp::Div | BinOp::FloorDiv | BinOp::Mod) {
        return Err(EvalError::DivisionByZero);
    }
    let result = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => x / y,
        BinOp::FloorDiv => (x / y).floor(),
        BinOp::Mod => {
            let r = x % y;
            if r != 0.0 && (r < 0.0) != (y < 0.0) {
                r + y
            } else {
                r
            }
        }
        BinOp::Pow => x.powf(y),
        // Not an arithmetic operator; `binary` never passes one.
        _ => f64::NAN,
    };
    Number::from_f64(result).map(Value::Number).ok_or(EvalError::NotFinite)
}

fn negate(value: &Value) -> Result<Value> {
    let Value::Number(n) = value else {
        return Err(EvalError::UnaryTypeMismatch { operator: "-", operand: type_name(value) });
    };
    if let Some(negated) = n.as_i64().and_then(i64::checked_neg) {
        return Ok(Value::from(negated));
    }
    Number::from_f64(-n.as_f64().unwrap_or(0.0)).map(Value::Number).ok_or(EvalError::NotFinite)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::{json, Map, Value};

    use crate::{EvalError, Limit, Limits, Rule};

    /// `TWIN.x` is 60,000 bytes, as in the security review's recipe.
    fn scope() -> Map<String, Value> {
        let Value::Object(map) = json!({
            "TWIN": {"x": "A".repeat(60_000), "l": [1, 2, 3]},
            "USER": {"pattern": "A+", "big": "{1000}", "long": "a".repeat(5000)},
        }) else {
            unreachable!()
        };
        map
    }

    const UNBOUNDED_TEXT: Limits = Limits { max_source_bytes: usize::MAX, max_nodes: usize::MAX, ..Limits::DEFAULT };

    #[track_caller]
    fn fails_fast(rule: &Rule) -> EvalError {
        let scope = scope();
        let start = Instant::now();
        let err = rule.evaluate(&scope).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(1), "took {:?}", start.elapsed());
        assert!(!rule.is_true(&scope));
        assert_eq!(rule.test(&scope), Err(err.clone()));
        err
    }

    #[test]
    fn the_quadratic_concatenation_ends_quickly_with_the_budget_error() {
        // The review's recipe, with the length limit lifted so the budget
        // is what stops it (it copied ~270 GB before).
        let recipe = vec!["TWIN.x"; 3000].join("+") + " == ''";
        assert_eq!(Rule::parse(&recipe).unwrap_err().limit, Some(Limit::SourceBytes { max: 4096 }));
        let rule = Rule::parse_with(&recipe, &UNBOUNDED_TEXT).unwrap();
        let err = fails_fast(&rule);
        assert_eq!(err, EvalError::Limit(Limit::EvalBytes { max: 1 << 20 }));
        assert_eq!(err.to_string(), "rule evaluation builds more than 1048576 bytes");
        // The longest chain within 4 KiB fails the same way.
        let within = vec!["TWIN.x"; 500].join("+");
        assert!(within.len() <= 4096);
        assert_eq!(fails_fast(&Rule::parse(&within).unwrap()), Limit::EvalBytes { max: 1 << 20 }.into());
        // Nested to the right, where nothing can be appended in place.
        let right = format!("{}TWIN.x{}", "TWIN.x + (".repeat(40), ")".repeat(40));
        assert_eq!(fails_fast(&Rule::parse(&right).unwrap()), Limit::EvalBytes { max: 1 << 20 }.into());
        // Arrays too.
        let arrays = vec!["[TWIN.x]"; 20].join("+");
        assert_eq!(fails_fast(&Rule::parse(&arrays).unwrap()), Limit::EvalBytes { max: 1 << 20 }.into());
    }

    #[test]
    fn copies_into_new_values_are_charged() {
        for source in [
            format!("[{}]", vec!["TWIN"; 20].join(", ")),
            format!("{{{}}}", (0..20).map(|i| format!("'{i}': TWIN.x")).collect::<Vec<_>>().join(", ")),
            format!("[{}][0]", vec!["[TWIN]"; 20].join(", ")),
        ] {
            assert_eq!(fails_fast(&Rule::parse(&source).unwrap()), Limit::EvalBytes { max: 1 << 20 }.into());
        }
    }

    #[test]
    fn concatenation_within_the_budget_is_linear_and_correct() {
        let scope = scope();
        let rule = Rule::parse("TWIN.l + TWIN.l + [4] + TWIN.l").unwrap();
        assert_eq!(rule.evaluate(&scope), Ok(json!([1, 2, 3, 1, 2, 3, 4, 1, 2, 3])));
        let rule = Rule::parse("'a' + USER.pattern + 'b' + 'c'").unwrap();
        assert_eq!(rule.evaluate(&scope), Ok(json!("aA+bc")));
        // 16 copies of 60 KB: under the 1 MiB budget.
        let rule = Rule::parse(&(vec!["TWIN.x"; 16].join("+") + " != ''")).unwrap();
        assert_eq!(rule.evaluate(&scope), Ok(json!(true)));
        let rule = Rule::parse("TWIN.l + 'a'").unwrap();
        assert!(matches!(rule.evaluate(&scope), Err(EvalError::TypeMismatch { operator: "+", .. })));
        let rule = Rule::parse("USER.pattern + 1 + 'a'").unwrap();
        assert!(matches!(rule.evaluate(&scope), Err(EvalError::TypeMismatch { operator: "+", .. })));
    }

    #[test]
    fn scans_are_charged_as_steps() {
        let steps = Limit::EvalSteps { max: 1_000_000 };
        // 17 scans of 60 KB.
        let contains = vec!["'B' in TWIN.x"; 17].join(" or ");
        assert_eq!(fails_fast(&Rule::parse(&contains).unwrap()), steps.into());
        let index = vec!["TWIN.x[-1] == 'B'"; 17].join(" or ");
        assert_eq!(fails_fast(&Rule::parse(&index).unwrap()), steps.into());
        let regex = vec!["TWIN.x =~~ 'B'"; 15].join(" or ") + " or 'B' in TWIN.x or TWIN.x =~~ USER.pattern + 'B'";
        assert_eq!(fails_fast(&Rule::parse(&regex).unwrap()), steps.into());
        assert_eq!(steps.to_string(), "rule evaluation takes more than 1000000 steps");
        // A few scans are fine.
        let scope = scope();
        assert_eq!(Rule::parse("'B' in TWIN.x or TWIN.x =~ USER.pattern").unwrap().test(&scope), Ok(true));
    }

    #[test]
    fn computed_patterns_are_limited() {
        let scope = scope();
        let rule = Rule::parse("'a' =~ USER.long").unwrap();
        let err = rule.evaluate(&scope).unwrap_err();
        assert_eq!(err, Limit::PatternBytes { max: 4096 }.into());
        assert_eq!(err.to_string(), "computed regular expression longer than 4096 bytes");
        let rule = Rule::parse(r"'a' =~ '\\w' + USER.big").unwrap();
        match rule.evaluate(&scope) {
            Err(EvalError::InvalidRegex { message, .. }) => assert!(message.contains("size limit"), "{message}"),
            other => panic!("{other:?}"),
        }
        let rule = Rule::parse("TWIN.x =~ USER.pattern").unwrap();
        assert_eq!(rule.evaluate(&scope), Ok(json!(true)));
    }
}
