//! Evaluation of a parsed rule against a scope.
//!
//! Values are `Cow`s: anything read from the scope or from a constant in
//! the rule is borrowed, and only computed results (booleans, arithmetic,
//! concatenations) are owned, so a typical rule allocates nothing.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::ast::{compile, BinOp, Expr, Pattern, RegexOp};
use crate::error::EvalError;
use crate::Scope;

static NULL: Value = Value::Null;

type Result<T> = std::result::Result<T, EvalError>;

pub(crate) fn eval<'a, S: Scope + ?Sized>(expr: &'a Expr, scope: &'a S) -> Result<Cow<'a, Value>> {
    Ok(match expr {
        Expr::Literal(value) => Cow::Borrowed(value),
        Expr::Var(name) => Cow::Borrowed(scope.variable(name).unwrap_or(&NULL)),
        Expr::Attr(base, name) => match eval(base, scope)? {
            Cow::Borrowed(v) => Cow::Borrowed(v.as_object().and_then(|m| m.get(&**name)).unwrap_or(&NULL)),
            Cow::Owned(Value::Object(mut m)) => Cow::Owned(m.remove(&**name).unwrap_or(Value::Null)),
            Cow::Owned(_) => Cow::Borrowed(&NULL),
        },
        Expr::Index(base, index) => index_of(eval(base, scope)?, eval(index, scope)?.as_ref()),
        Expr::Array(items) => array(items, scope)?,
        Expr::Object(entries) => object(entries, scope)?,
        Expr::Neg(operand) => Cow::Owned(negate(eval(operand, scope)?.as_ref())?),
        Expr::Not(operand) => Cow::Owned(Value::Bool(!test(operand, scope)?)),
        Expr::And(a, b) => Cow::Owned(Value::Bool(test(a, scope)? && test(b, scope)?)),
        Expr::Or(a, b) => Cow::Owned(Value::Bool(test(a, scope)? || test(b, scope)?)),
        Expr::Binary(op, a, b) => {
            let (a, b) = (eval(a, scope)?, eval(b, scope)?);
            Cow::Owned(binary(*op, &a, &b)?)
        }
        Expr::Regex { op, subject, pattern } => Cow::Owned(Value::Bool(regex_match(*op, subject, pattern, scope)?)),
        Expr::Ternary(condition, then, otherwise) => {
            if test(condition, scope)? {
                eval(then, scope)?
            } else {
                eval(otherwise, scope)?
            }
        }
    })
}

// The rarer cases live outside `eval`, keeping its stack frame small for
// the recursion of the common ones.

#[inline(never)]
fn index_of<'a>(base: Cow<'a, Value>, index: &Value) -> Cow<'a, Value> {
    match base {
        Cow::Borrowed(v) => item(v, index).unwrap_or(Cow::Borrowed(&NULL)),
        Cow::Owned(v) => Cow::Owned(item(&v, index).map_or(Value::Null, Cow::into_owned)),
    }
}

#[inline(never)]
fn array<'a, S: Scope + ?Sized>(items: &'a [Expr], scope: &'a S) -> Result<Cow<'a, Value>> {
    let items = items.iter().map(|e| eval(e, scope).map(Cow::into_owned)).collect::<Result<_>>()?;
    Ok(Cow::Owned(Value::Array(items)))
}

#[inline(never)]
fn object<'a, S: Scope + ?Sized>(entries: &'a [(Expr, Expr)], scope: &'a S) -> Result<Cow<'a, Value>> {
    let mut map = Map::with_capacity(entries.len());
    for (key, value) in entries {
        let key = match eval(key, scope)?.into_owned() {
            Value::String(key) => key,
            other => return Err(EvalError::MappingKey { found: type_name(&other) }),
        };
        map.insert(key, eval(value, scope)?.into_owned());
    }
    Ok(Cow::Owned(Value::Object(map)))
}

#[inline(never)]
fn regex_match<S: Scope + ?Sized>(op: RegexOp, subject: &Expr, pattern: &Pattern, scope: &S) -> Result<bool> {
    let subject = eval(subject, scope)?;
    let Value::String(text) = &*subject else {
        return Err(EvalError::TypeMismatch { operator: op.symbol(), left: type_name(&subject), right: "string" });
    };
    let found = match pattern {
        Pattern::Compiled(regex) => regex.is_match(text),
        Pattern::Dynamic(pattern) => {
            let pattern = eval(pattern, scope)?;
            let Value::String(pattern) = &*pattern else {
                return Err(EvalError::TypeMismatch {
                    operator: op.symbol(),
                    left: "string",
                    right: type_name(&pattern),
                });
            };
            let regex = compile(pattern, op.full())
                .map_err(|e| EvalError::InvalidRegex { pattern: pattern.clone(), message: e.to_string() })?;
            regex.is_match(text)
        }
    };
    Ok(found != op.negated())
}

/// The truthiness of `expr`'s value. Boolean operators and (in)equality
/// are answered without building a `Value`: the hot path of most rules.
pub(crate) fn test<S: Scope + ?Sized>(expr: &Expr, scope: &S) -> Result<bool> {
    match expr {
        Expr::Not(operand) => Ok(!test(operand, scope)?),
        Expr::And(a, b) => Ok(test(a, scope)? && test(b, scope)?),
        Expr::Or(a, b) => Ok(test(a, scope)? || test(b, scope)?),
        Expr::Binary(op @ (BinOp::Eq | BinOp::Ne), a, b) => {
            let (a, b) = (eval(a, scope)?, eval(b, scope)?);
            Ok(equal(&a, &b) == (*op == BinOp::Eq))
        }
        _ => eval(expr, scope).map(|value| truthy(&value)),
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
fn binary(op: BinOp, a: &Value, b: &Value) -> Result<Value> {
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
                (Value::Array(items), _) => items.iter().any(|v| equal(a, v)),
                (Value::String(s), Value::String(part)) => s.contains(part.as_str()),
                (Value::Object(map), Value::String(key)) => map.contains_key(key),
                _ => return Err(mismatch()),
            };
            Ok(Value::Bool(found == (op == BinOp::In)))
        }
        BinOp::Add => match (a, b) {
            (Value::String(x), Value::String(y)) => Ok(Value::String([x.as_str(), y].concat())),
            (Value::Array(x), Value::Array(y)) => Ok(Value::Array(x.iter().chain(y).cloned().collect())),
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
