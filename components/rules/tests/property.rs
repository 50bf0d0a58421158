//! Random small expressions over a fixed scope, checked against a separate,
//! deliberately naive reference evaluator, in two renderings: fully
//! parenthesised (semantics) and with only the parentheses precedence needs
//! (the parser's precedence and associativity).

use rules::Rule;
use serde_json::{json, Value};

/// xorshift64*: deterministic, no crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Or,
    And,
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
}

const OPS: [Op; 13] =
    [Op::Or, Op::And, Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::In, Op::NotIn, Op::Add, Op::Sub, Op::Mul];

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Or => "or",
            Op::And => "and",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::NotIn => "not in",
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
        }
    }

    fn level(self) -> u8 {
        match self {
            Op::Or => 2,
            Op::And => 3,
            Op::Add | Op::Sub => 6,
            Op::Mul => 7,
            _ => 5,
        }
    }
}

#[derive(Debug, Clone)]
enum E {
    /// Literal or variable text, its value in the reference scope, and its
    /// precedence level (a negative number is a unary minus).
    Leaf(String, Value, u8),
    Not(Box<E>),
    Neg(Box<E>),
    Bin(Op, Box<E>, Box<E>),
    Ternary(Box<E>, Box<E>, Box<E>),
}

fn scope() -> Value {
    json!({"i": 3, "j": -2, "s": "ab", "t": "", "b": true, "n": null, "l": [1, "a", 2], "o": {"a": 1, "b": "x"}})
}

fn leaf(rng: &mut Rng) -> E {
    let scope = scope();
    let lit = |text: &str, value: Value| E::Leaf(text.to_owned(), value, 10);
    match rng.below(16) {
        0..=4 => {
            let v = rng.below(7) as i64 - 3;
            E::Leaf(v.to_string(), json!(v), if v < 0 { 9 } else { 10 })
        }
        5 => string_leaf(rng),
        6 => [lit("true", json!(true)), lit("False", json!(false)), lit("null", Value::Null), lit("None", Value::Null)]
            [rng.below(4) as usize]
            .clone(),
        7 => lit("[1, 'a']", json!([1, "a"])),
        8 => lit("o.a", json!(1)),
        9 => lit("o['b']", json!("x")),
        10 => lit("o.zz", Value::Null),
        11 => lit("missing.x", Value::Null),
        12 => lit("l[2]", json!(2)),
        _ => {
            let names = ["i", "j", "s", "t", "b", "n", "l", "o"];
            let name = names[rng.below(names.len() as u64) as usize];
            lit(name, scope[name].clone())
        }
    }
}

fn string_leaf(rng: &mut Rng) -> E {
    let (text, value) = [("'a'", "a"), ("'b'", "b"), ("'ab'", "ab"), ("''", "")][rng.below(4) as usize];
    E::Leaf(text.to_owned(), json!(value), 10)
}

fn gen(rng: &mut Rng, depth: u32) -> E {
    if depth == 0 || rng.below(4) == 0 {
        return leaf(rng);
    }
    match rng.below(10) {
        0 => E::Not(Box::new(gen(rng, depth - 1))),
        1 => E::Neg(Box::new(gen(rng, depth - 1))),
        2 => E::Ternary(Box::new(gen(rng, depth - 1)), Box::new(gen(rng, depth - 1)), Box::new(gen(rng, depth - 1))),
        _ => {
            let op = OPS[rng.below(OPS.len() as u64) as usize];
            E::Bin(op, Box::new(gen(rng, depth - 1)), Box::new(gen(rng, depth - 1)))
        }
    }
}

fn level(e: &E) -> u8 {
    match e {
        E::Leaf(_, _, level) => *level,
        E::Not(_) => 4,
        E::Neg(_) => 9,
        E::Bin(op, ..) => op.level(),
        E::Ternary(..) => 1,
    }
}

fn full(e: &E) -> String {
    match e {
        E::Leaf(text, ..) => format!("({text})"),
        E::Not(a) => format!("(not {})", full(a)),
        E::Neg(a) => format!("(-{})", full(a)),
        E::Bin(op, a, b) => format!("({} {} {})", full(a), op.text(), full(b)),
        E::Ternary(c, a, b) => format!("({} ? {} : {})", full(c), full(a), full(b)),
    }
}

/// Only the parentheses needed: a child at a lower level than its position
/// requires gets them.
fn minimal(e: &E) -> String {
    fn wrap(e: &E, need: u8) -> String {
        let text = minimal(e);
        if level(e) < need {
            format!("({text})")
        } else {
            text
        }
    }
    match e {
        E::Leaf(text, ..) => text.clone(),
        E::Not(a) => format!("not {}", wrap(a, 4)),
        E::Neg(a) => format!("-{}", wrap(a, 9)),
        E::Bin(op, a, b) => {
            let p = op.level();
            // Comparisons do not chain: both sides must bind tighter.
            let left_need = if p == 5 { 6 } else { p };
            format!("{} {} {}", wrap(a, left_need), op.text(), wrap(b, p + 1))
        }
        E::Ternary(c, a, b) => format!("{} ? {} : {}", wrap(c, 2), wrap(a, 1), wrap(b, 1)),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() != Some(0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The reference: integers only, `None` for an evaluation error.
fn reference(e: &E) -> Option<Value> {
    Some(match e {
        E::Leaf(_, value, _) => value.clone(),
        E::Not(a) => json!(!truthy(&reference(a)?)),
        E::Neg(a) => json!(-reference(a)?.as_i64()?),
        E::Ternary(c, a, b) => {
            if truthy(&reference(c)?) {
                reference(a)?
            } else {
                reference(b)?
            }
        }
        E::Bin(Op::And, a, b) => json!(truthy(&reference(a)?) && truthy(&reference(b)?)),
        E::Bin(Op::Or, a, b) => json!(truthy(&reference(a)?) || truthy(&reference(b)?)),
        E::Bin(op, a, b) => {
            let (a, b) = (reference(a)?, reference(b)?);
            match op {
                Op::Eq => json!(a == b),
                Op::Ne => json!(a != b),
                Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                    let ordering = match (&a, &b) {
                        (Value::Number(x), Value::Number(y)) => x.as_i64()?.cmp(&y.as_i64()?),
                        (Value::String(x), Value::String(y)) => x.cmp(y),
                        _ => return None,
                    };
                    json!(match op {
                        Op::Lt => ordering.is_lt(),
                        Op::Le => ordering.is_le(),
                        Op::Gt => ordering.is_gt(),
                        _ => ordering.is_ge(),
                    })
                }
                Op::In | Op::NotIn => {
                    let found = match (&b, &a) {
                        (Value::Null, _) => false,
                        (Value::Array(items), _) => items.contains(&a),
                        (Value::String(s), Value::String(part)) => s.contains(part.as_str()),
                        (Value::Object(o), Value::String(key)) => o.contains_key(key),
                        _ => return None,
                    };
                    json!(found == (*op == Op::In))
                }
                Op::Add => match (&a, &b) {
                    (Value::Number(x), Value::Number(y)) => json!(x.as_i64()? + y.as_i64()?),
                    (Value::String(x), Value::String(y)) => json!(format!("{x}{y}")),
                    (Value::Array(x), Value::Array(y)) => Value::Array(x.iter().chain(y).cloned().collect()),
                    _ => return None,
                },
                Op::Sub => json!(a.as_i64()? - b.as_i64()?),
                Op::Mul => json!(a.as_i64()? * b.as_i64()?),
                Op::And | Op::Or => unreachable!(),
            }
        }
    })
}

#[test]
fn random_expressions_match_the_reference() {
    let scope = scope();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut errors) = (0, 0);
    for i in 0..1500 {
        let e = gen(&mut rng, 1 + i % 3);
        let expected = reference(&e);
        for text in [full(&e), minimal(&e)] {
            let rule = Rule::parse(&text).unwrap_or_else(|err| panic!("{text}: {err}"));
            let got = rule.evaluate(&scope).ok();
            assert_eq!(got, expected, "{text}");
            assert_eq!(rule.is_true(&scope), expected.as_ref().is_some_and(truthy), "{text}");
        }
        if expected.is_some() {
            ok += 1;
        } else {
            errors += 1;
        }
    }
    // The generator must exercise both outcomes to mean anything.
    assert!(ok > 500 && errors > 100, "ok {ok}, errors {errors}");
}

#[test]
fn de_morgan() {
    let scope = scope();
    let mut rng = Rng(42);
    for _ in 0..300 {
        let (a, b) = (minimal(&gen(&mut rng, 2)), minimal(&gen(&mut rng, 2)));
        let left = Rule::parse(&format!("not (({a}) and ({b}))")).unwrap().evaluate(&scope).ok();
        let right = Rule::parse(&format!("not ({a}) or not ({b})")).unwrap().evaluate(&scope).ok();
        assert_eq!(left, right, "{a} / {b}");
        let left = Rule::parse(&format!("not (({a}) or ({b}))")).unwrap().evaluate(&scope).ok();
        let right = Rule::parse(&format!("not ({a}) and not ({b})")).unwrap().evaluate(&scope).ok();
        assert_eq!(left, right, "{a} / {b}");
    }
}
