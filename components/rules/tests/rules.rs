//! Behaviour of the rule engine, operator by operator.

use std::collections::HashMap;

use rules::{EvalError, Rule, RuleCache, Scope};
use serde_json::{json, Map, Value};

fn scope() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "TWIN": {
            "application": "Trusted Twin DEMO App",
            "company": "acme",
            "kind": "cat",
            "name": "meter-1042",
            "serial": 7,
            "owner": null,
        },
        "USER": {"company": "acme", "profession": "sales"},
        "LEDGER": {"serial": 12, "public": ["temperature", "status"]},
        "DICT": {"serial": 7},
        "entry_name": "status",
        "entry_value": {"user_list": [1, 2, 5], "user_dict": {"name": "x"}},
        "value_changed_ts": 1707997392.123,
        "now": 1707999000.0,
        "account": "c",
        "empty": "",
        "zero": 0,
        "list": [],
        "obj": {},
    }) else {
        unreachable!()
    };
    map
}

#[track_caller]
fn eval(source: &str) -> Value {
    Rule::parse(source)
        .unwrap_or_else(|e| panic!("{source}: {e}"))
        .evaluate(&scope())
        .unwrap_or_else(|e| panic!("{source}: {e}"))
}

#[track_caller]
fn holds(source: &str) -> bool {
    Rule::parse(source).unwrap_or_else(|e| panic!("{source}: {e}")).is_true(&scope())
}

#[track_caller]
fn eval_err(source: &str) -> EvalError {
    match Rule::parse(source).unwrap().evaluate(&scope()) {
        Ok(v) => panic!("{source}: expected an error, got {v}"),
        Err(e) => e,
    }
}

#[track_caller]
fn parse_err(source: &str) -> (usize, String) {
    match Rule::parse(source) {
        Ok(_) => panic!("{source}: expected a parse error"),
        Err(e) => (e.position, e.message),
    }
}

#[test]
fn trusted_twin_examples() {
    assert!(holds("TWIN.application == 'Trusted Twin DEMO App'"));
    assert!(holds("TWIN.company == USER.company"));
    assert!(holds("USER.profession == 'accounting' or USER.profession == 'sales'"));
    assert!(holds(r#"TWIN.kind == "cat" and entry_name in LEDGER.public"#));
    assert!(holds("entry_value.user_list[2] > 3"));
    assert!(!holds("entry_value.user_list[1] > 3"));
    assert!(holds("entry_value.user_dict.name == 'x'"));
    assert!(holds("LEDGER.serial > 3"));
    assert!(holds("true"));
    assert!(holds("True"));
    assert!(holds(r#""true""#));
    assert!(holds("value_changed_ts == 1707997392.123"));
    assert!(holds("DICT.serial == TWIN.serial"));
    assert!(holds("now - value_changed_ts < 3600"));
    assert!(holds("not (account in ['a', 'b'])"));
    assert!(holds(r#"TWIN.name =~ "^meter-[0-9]+$""#));
    assert!(!holds("TWIN.application == 'Other App'"));
}

#[test]
fn literals() {
    assert_eq!(eval("'it\\'s'"), json!("it's"));
    assert_eq!(eval(r#""say \"hi\"\n\t\\""#), json!("say \"hi\"\n\t\\"));
    assert_eq!(eval(r#""\u00e9\u263A""#), json!("é☺"));
    assert_eq!(eval(r#""\ud83d\ude00""#), json!("😀"));
    assert_eq!(eval(r#""\d+""#), json!("\\d+"), "unknown escapes are kept");
    assert_eq!(eval("42"), json!(42));
    assert_eq!(eval("1.5"), json!(1.5));
    assert_eq!(eval("1e3"), json!(1000.0));
    assert_eq!(eval("2.5E-1"), json!(0.25));
    assert_eq!(eval("-7"), json!(-7));
    assert_eq!(eval("0x1f + 0o10 + 0b11"), json!(42));
    assert_eq!(eval("true"), json!(true));
    assert_eq!(eval("False"), json!(false));
    assert_eq!(eval("null"), Value::Null);
    assert_eq!(eval("None"), Value::Null);
    assert_eq!(eval("[1, 'a', [true],]"), json!([1, "a", [true]]));
    assert_eq!(eval("[]"), json!([]));
    assert_eq!(eval("{'k': 1, \"j\": [TWIN.serial]}"), json!({"k": 1, "j": [7]}));
    assert_eq!(eval("{}"), json!({}));
    assert_eq!(eval("{'k': TWIN.kind}.k"), json!("cat"));
    assert_eq!(eval("1 # a comment"), json!(1));
}

#[test]
fn variables_and_lookups() {
    assert_eq!(eval("TWIN.serial"), json!(7));
    assert_eq!(eval("TWIN&.serial"), json!(7));
    assert_eq!(eval("TWIN['kind']"), json!("cat"));
    assert_eq!(eval("TWIN&['kind']"), json!("cat"));
    assert_eq!(eval("entry_value.user_list[-1]"), json!(5));
    assert_eq!(eval("entry_value.user_list[1.0]"), json!(2));
    assert_eq!(eval("TWIN.kind[0]"), json!("c"));
    assert_eq!(eval("[10, 20][TWIN.serial - 6]"), json!(20));
    // Missing things are null, never errors.
    for missing in [
        "NOPE",
        "NOPE.a.b.c",
        "TWIN.nope",
        "TWIN.owner.name",
        "TWIN.serial.x",
        "entry_value.user_list[3]",
        "entry_value.user_list[-4]",
        "entry_value.user_list['a']",
        "entry_value.user_list[0.5]",
        "TWIN[0]",
        "NOPE[0]",
        "TWIN.kind[9]",
    ] {
        assert_eq!(eval(missing), Value::Null, "{missing}");
    }
    assert!(!holds("NOPE"));
    assert!(!holds("NOPE == 'x'"));
    assert!(holds("NOPE == null"));
    assert!(holds("NOPE != 'x'"));
    assert!(!holds("NOPE.x > 3"), "an error is false");
    // Keywords may be attribute names.
    assert_eq!(Rule::parse("x.in").unwrap().evaluate(&json!({"x": {"in": 1}})).unwrap(), json!(1));
}

#[test]
fn equality() {
    assert!(holds("1 == 1.0"));
    assert!(holds("[1, 2.0] == [1.0, 2]"));
    assert!(holds("{'a': 1} == {'a': 1.0}"));
    assert!(holds("1 != '1'"));
    assert!(holds("true != 1"));
    assert!(holds("null == None"));
    assert!(holds("'a' == \"a\""));
    assert!(!holds("[1, 2] == [2, 1]"));
    assert!(holds("entry_value.user_dict == {'name': 'x'}"));
}

#[test]
fn ordering() {
    assert!(holds("1 < 2 and 2 <= 2 and 3 > 2 and 3 >= 3"));
    assert!(holds("1.5 < 2 and -1 < 0.5"));
    assert!(holds("'abc' < 'abd' and 'b' > 'abc' and 'a' <= 'a'"));
    assert!(!holds("2 < 1"));
    for bad in ["null < 3", "'a' < 1", "[1] < [2]", "true > false", "NOPE >= 0"] {
        assert!(matches!(eval_err(bad), EvalError::TypeMismatch { .. }), "{bad}");
        assert!(!holds(bad));
        assert!(!holds(&format!("not ({bad})")), "an error is false even under not: {bad}");
    }
    assert_eq!(eval_err("null < 3").to_string(), "operator '<' is not defined for null and number");
}

#[test]
fn membership() {
    assert!(holds("'b' in ['a', 'b']"));
    assert!(holds("2 in [1, 2.0]"));
    assert!(holds("'ell' in 'hello'"));
    assert!(holds("'name' in entry_value.user_dict"));
    assert!(!holds("'nope' in entry_value.user_dict"));
    assert!(!holds("'x' in NOPE"));
    assert!(holds("'x' not in NOPE"));
    assert!(holds("'c' not in ['a', 'b']"));
    assert!(!holds("'a' not in ['a', 'b']"));
    assert!(holds("not 'z' in 'abc'"));
    assert!(matches!(eval_err("1 in 'abc'"), EvalError::TypeMismatch { operator: "in", .. }));
    assert!(matches!(eval_err("1 in 5"), EvalError::TypeMismatch { .. }));
    assert!(matches!(eval_err("1 in entry_value.user_dict"), EvalError::TypeMismatch { .. }));
}

#[test]
fn arithmetic() {
    assert_eq!(eval("1 + 2"), json!(3));
    assert_eq!(eval("1 + 2.5"), json!(3.5));
    assert_eq!(eval("5 - 7"), json!(-2));
    assert_eq!(eval("6 * 7"), json!(42));
    assert_eq!(eval("7 / 2"), json!(3.5));
    assert!(holds("6 / 2 == 3"));
    assert_eq!(eval("7 // 2"), json!(3));
    assert_eq!(eval("-7 // 2"), json!(-4));
    assert_eq!(eval("7.5 // 2"), json!(3.0));
    assert_eq!(eval("7 % 3"), json!(1));
    assert_eq!(eval("-7 % 3"), json!(2));
    assert_eq!(eval("7 % -3"), json!(-2));
    assert_eq!(eval("-7.5 % 2"), json!(0.5));
    assert_eq!(eval("2 ** 10"), json!(1024));
    assert_eq!(eval("2 ** -1"), json!(0.5));
    assert_eq!(eval("4 ** 0.5"), json!(2.0));
    assert_eq!(eval("2 ** 3 ** 2"), json!(512), "** is right-associative");
    assert_eq!(eval("-2 ** 2"), json!(4), "unary minus binds tighter than **, as in rule-engine");
    assert_eq!(eval("--3"), json!(3));
    assert_eq!(eval("-TWIN.serial"), json!(-7));
    assert_eq!(eval("9223372036854775807 + 1"), json!(9223372036854775808.0));
    assert_eq!(eval("'ab' + 'cd'"), json!("abcd"));
    assert_eq!(eval("[1] + [2, 3]"), json!([1, 2, 3]));
    assert_eq!(eval("TWIN.kind + '-' + TWIN.company"), json!("cat-acme"));
    assert_eq!(eval_err("1 / 0"), EvalError::DivisionByZero);
    assert_eq!(eval_err("1 // 0"), EvalError::DivisionByZero);
    assert_eq!(eval_err("1 % 0.0"), EvalError::DivisionByZero);
    assert_eq!(eval_err("10.0 ** 400"), EvalError::NotFinite);
    assert!(matches!(eval_err("'a' - 'b'"), EvalError::TypeMismatch { operator: "-", .. }));
    assert!(matches!(eval_err("'a' + 1"), EvalError::TypeMismatch { operator: "+", .. }));
    assert!(matches!(eval_err("NOPE + 1"), EvalError::TypeMismatch { .. }));
    assert!(matches!(eval_err("-'a'"), EvalError::UnaryTypeMismatch { operator: "-", operand: "string" }));
    assert!(!holds("1 / 0 == 1"));
}

#[test]
fn truthiness_and_logic() {
    for falsy in ["null", "false", "0", "0.0", "''", "[]", "{}", "NOPE", "empty", "zero", "list", "obj"] {
        assert!(!holds(falsy), "{falsy}");
        assert_eq!(eval(&format!("not {falsy}")), json!(true), "{falsy}");
    }
    for truthy in ["true", "1", "-0.5", "'0'", "'false'", "[0]", "{'a': null}", "TWIN"] {
        assert!(holds(truthy), "{truthy}");
    }
    assert_eq!(eval("1 and 'x'"), json!(true), "and/or return booleans");
    assert_eq!(eval("0 or ''"), json!(false));
    assert_eq!(eval("null or 3"), json!(true));
    // Short-circuit: the right side's error is never reached.
    assert!(holds("true or 1 / 0"));
    assert!(!holds("false and 1 / 0"));
    assert_eq!(eval("false and 1 / 0"), json!(false));
    assert_eq!(eval_err("true and 1 / 0"), EvalError::DivisionByZero);
    assert_eq!(eval("not not 'x'"), json!(true));
}

#[test]
fn ternary() {
    assert_eq!(eval("TWIN.serial > 5 ? 'big' : 'small'"), json!("big"));
    assert_eq!(eval("NOPE ? 1 : 2"), json!(2));
    assert_eq!(eval("false ? 1 : true ? 2 : 3"), json!(2), "right-associative");
    assert_eq!(eval("true or false ? 'a' : 'b'"), json!("a"), "lowest precedence");
    assert_eq!(eval("false ? 1 / 0 : 5"), json!(5), "only the chosen branch is evaluated");
}

#[test]
fn precedence() {
    assert_eq!(eval("1 + 2 * 3"), json!(7));
    assert_eq!(eval("(1 + 2) * 3"), json!(9));
    assert_eq!(eval("10 - 4 - 3"), json!(3), "left-associative");
    assert_eq!(eval("2 * 3 ** 2"), json!(18));
    assert_eq!(eval("20 // 3 * 3"), json!(18));
    assert!(holds("1 + 1 == 2"));
    assert!(holds("true or false and false"), "and binds tighter than or");
    assert!(!holds("(true or false) and false"));
    assert!(holds("not false and true"), "not binds tighter than and");
    assert!(!holds("not 1 == 1"), "comparisons bind tighter than not");
    assert!(holds("not 1 == 2"));
    assert!(holds("-TWIN.serial + 10 == 3"));
    assert_eq!(eval("entry_value.user_list[0] + entry_value['user_list'][2]"), json!(6));
}

#[test]
fn regex_operators() {
    assert!(holds(r#"TWIN.name =~ "meter-\d+""#));
    assert!(!holds(r#"TWIN.name =~ "meter""#), "=~ matches the whole string");
    assert!(holds(r#"TWIN.name =~~ "meter""#), "=~~ searches");
    assert!(holds(r#"TWIN.name !~ "meter""#));
    assert!(!holds(r#"TWIN.name !~~ "meter""#));
    assert!(holds(r#"TWIN.name !~~ "^x""#));
    assert!(holds("'ab' =~ 'a|ab'"), "full match tries every alternative");
    assert!(holds("'ABC' =~ '(?i)abc'"));
    assert!(!holds("'a\\nb' =~~ '^b$'"), "no multi-line anchors by default");
    // Patterns computed at evaluation time.
    assert!(holds("TWIN.name =~ 'meter-' + '[0-9]+'"));
    assert!(holds("TWIN.kind =~ TWIN.kind"));
    let err = eval_err("TWIN.kind =~ TWIN.kind + '('");
    assert!(matches!(err, EvalError::InvalidRegex { .. }), "{err:?}");
    assert!(matches!(eval_err("TWIN.kind =~ TWIN.serial"), EvalError::TypeMismatch { operator: "=~", .. }));
    assert!(matches!(eval_err("TWIN.serial =~ 'x'"), EvalError::TypeMismatch { .. }));
    assert!(!holds("NOPE =~ 'x'"));
    assert!(!holds("NOPE !~ 'x'"), "a non-string subject is an error, so false");
}

#[test]
fn parse_errors() {
    assert_eq!(parse_err("TWIN.a == "), (10, "expected an operand, found end of input".to_owned()));
    assert_eq!(parse_err("TWIN.a === 'x'").0, 9);
    assert_eq!(parse_err("TWIN.a = 'x'").0, 7);
    assert_eq!(parse_err("TWIN.a == 'x"), (10, "unterminated string".to_owned()));
    assert_eq!(parse_err("(TWIN.a == 1"), (12, "expected ')', found end of input".to_owned()));
    assert_eq!(parse_err("TWIN.a == 1)"), (11, "expected an operator or end of input, found ')'".to_owned()));
    assert_eq!(parse_err("f(1)").0, 1);
    assert_eq!(parse_err("(1 + )"), (5, "expected an operand, found ')'".to_owned()));
    assert_eq!(parse_err("").0, 0);
    assert_eq!(parse_err("TWIN."), (5, "expected an attribute name, found end of input".to_owned()));
    assert_eq!(parse_err("a[1"), (3, "expected ']', found end of input".to_owned()));
    assert_eq!(parse_err("1 < 2 < 3").0, 6);
    assert_eq!(parse_err("a and"), (5, "expected an operand, found end of input".to_owned()));
    assert_eq!(parse_err("a in in").0, 5);
    assert_eq!(parse_err("x =~ '('").0, 5);
    assert!(parse_err("x =~ '('").1.starts_with("invalid regular expression"));
    assert_eq!(parse_err("x =~ 3").0, 5);
    assert_eq!(parse_err("x & y").0, 2);
    assert_eq!(parse_err("1 ? 2").0, 5);
    assert_eq!(parse_err("12ab").0, 0);
    assert_eq!(parse_err(r#""\u12""#).0, 1);
    assert_eq!(parse_err(r#""\ud800""#).0, 1);
    // Positions count characters, not bytes.
    assert_eq!(parse_err("'é' == )").0, 7);
    let err = Rule::parse("TWIN.a == )").unwrap_err();
    assert_eq!(err.to_string(), "at position 10: expected an operand, found ')'");
}

#[test]
fn uses_and_source() {
    let rule = Rule::parse("TWIN.company == USER.company and entry_name in LEDGER.public").unwrap();
    assert!(rule.uses("TWIN") && rule.uses("USER") && rule.uses("LEDGER") && rule.uses("entry_name"));
    assert!(!rule.uses("company") && !rule.uses("public") && !rule.uses("DICT"));
    assert_eq!(rule.variables().collect::<Vec<_>>(), ["LEDGER", "TWIN", "USER", "entry_name"]);
    assert_eq!(rule.source(), "TWIN.company == USER.company and entry_name in LEDGER.public");
    let rule: Rule = "x =~ y and {'k': z}[w]".parse().unwrap();
    assert!(["w", "x", "y", "z"].iter().all(|v| rule.uses(v)));
    assert!(!Rule::parse("true").unwrap().uses("TWIN"));
}

#[test]
fn scopes() {
    let twin = json!({"application": "Trusted Twin DEMO App"});
    let rule = Rule::parse("TWIN.application == 'Trusted Twin DEMO App'").unwrap();
    let pairs: &[(&str, &Value)] = &[("USER", &Value::Null), ("TWIN", &twin)];
    assert!(rule.is_true(pairs));
    let mut hash = HashMap::new();
    hash.insert("TWIN".to_owned(), twin.clone());
    assert!(rule.is_true(&hash));
    assert!(rule.is_true(&json!({"TWIN": twin})));
    assert!(!rule.is_true(&json!("not an object")));
    let dynamic: &dyn Scope = &hash;
    assert!(rule.is_true(dynamic));
}

#[test]
fn evaluation_does_not_need_a_complete_scope() {
    let empty = Map::new();
    let rule = Rule::parse("TWIN.company == USER.company").unwrap();
    assert!(rule.is_true(&empty), "null == null");
    assert!(!Rule::parse("LEDGER.serial > 3").unwrap().is_true(&empty));
}

#[test]
fn cache() {
    let mut cache = RuleCache::with_capacity(2);
    let a = cache.get_or_parse("TWIN.a == 1").unwrap();
    let again = cache.get_or_parse("TWIN.a == 1").unwrap();
    assert!(std::rc::Rc::ptr_eq(&a, &again));
    cache.get_or_parse("TWIN.b == 1").unwrap();
    assert_eq!(cache.len(), 2);
    cache.get_or_parse("TWIN.c == 1").unwrap();
    assert_eq!(cache.len(), 2, "bounded");
    let fresh = cache.get_or_parse("TWIN.a == 1").unwrap();
    assert!(!std::rc::Rc::ptr_eq(&a, &fresh), "the oldest was evicted");
    assert_eq!(cache.get_or_parse("TWIN.a ==").unwrap_err().position, 9);
    assert_eq!(cache.len(), 2, "errors are not cached");
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn rule_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Rule>();
}
