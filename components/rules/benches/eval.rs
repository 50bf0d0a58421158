//! Evaluation cost of typical rules, in ns per call, next to a hand-written
//! Rust baseline doing the same lookup on the same scope.
//!
//! `cargo bench -p rules` (plain `Instant`, no harness).

use std::hint::black_box;
use std::time::Instant;

use rules::Rule;
use serde_json::{json, Map, Value};

const ITERATIONS: u32 = 2_000_000;

fn scope() -> Map<String, Value> {
    let mut scope = Map::new();
    scope.insert(
        "TWIN".into(),
        json!({
            "application": "Trusted Twin DEMO App",
            "company": "acme",
            "name": "meter-1042",
            "kind": "cat",
            "serial": 7,
            "created_ts": 1_707_997_392.123,
        }),
    );
    scope.insert("USER".into(), json!({"company": "acme", "profession": "sales", "role": "viewer"}));
    scope.insert("LEDGER".into(), json!({"serial": 12, "public": ["temperature", "humidity", "status", "location"]}));
    scope.insert("entry_name".into(), json!("status"));
    scope.insert("entry_value".into(), json!({"user_list": [1, 2, 5], "user_dict": {"name": "x"}}));
    scope
}

/// Runs `f` `ITERATIONS` times and prints the mean time per call.
fn measure(label: &str, mut f: impl FnMut() -> bool) -> f64 {
    // Warm up, and check the rule does what it says.
    let mut hits = 0u32;
    for _ in 0..ITERATIONS / 10 {
        hits += u32::from(black_box(f()));
    }
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        hits += u32::from(black_box(f()));
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS);
    println!("{label:<72} {ns:>9.1} ns   (true {hits} times)");
    ns
}

fn main() {
    let scope = scope();
    let tutorial = Rule::parse("TWIN.application == 'Trusted Twin DEMO App'").unwrap();
    let compound = Rule::parse("TWIN.company == USER.company and entry_name in LEDGER.public").unwrap();
    let regex = Rule::parse(r#"TWIN.name =~ "^meter-[0-9]+$""#).unwrap();
    let search = Rule::parse(r#"TWIN.name =~~ "[0-9]{4}""#).unwrap();
    let arithmetic = Rule::parse("LEDGER.serial - TWIN.serial > 3 and entry_value.user_list[2] > 3").unwrap();

    println!("rules bench, {ITERATIONS} iterations each");
    let baseline = measure("baseline: scope[\"TWIN\"][\"application\"] == \"Trusted Twin DEMO App\"", || {
        let scope = black_box(&scope);
        scope["TWIN"]["application"] == black_box("Trusted Twin DEMO App")
    });
    let tut = measure("is_true: TWIN.application == 'Trusted Twin DEMO App'", || {
        black_box(&tutorial).is_true(black_box(&scope))
    });
    measure("evaluate: TWIN.application == 'Trusted Twin DEMO App'", || {
        black_box(&tutorial).evaluate(black_box(&scope)) == Ok(Value::Bool(true))
    });
    measure("baseline: company == company && public.contains(entry_name)", || {
        let scope = black_box(&scope);
        scope["TWIN"]["company"] == scope["USER"]["company"]
            && scope["LEDGER"]["public"].as_array().is_some_and(|a| a.contains(&scope["entry_name"]))
    });
    measure("is_true: TWIN.company == USER.company and entry_name in LEDGER.public", || {
        black_box(&compound).is_true(black_box(&scope))
    });
    measure("is_true: TWIN.name =~ \"^meter-[0-9]+$\"", || black_box(&regex).is_true(black_box(&scope)));
    measure("is_true: TWIN.name =~~ \"[0-9]{4}\"", || black_box(&search).is_true(black_box(&scope)));
    measure("is_true: LEDGER.serial - TWIN.serial > 3 and entry_value.user_list[2] > 3", || {
        black_box(&arithmetic).is_true(black_box(&scope))
    });
    let start = Instant::now();
    let parses = ITERATIONS / 10;
    for _ in 0..parses {
        black_box(Rule::parse(black_box("TWIN.application == 'Trusted Twin DEMO App'")).unwrap());
    }
    let parse_ns = start.elapsed().as_nanos() as f64 / f64::from(parses);
    println!("{:<72} {parse_ns:>9.1} ns", "parse: TWIN.application == 'Trusted Twin DEMO App'");
    println!("tutorial rule / baseline: {:.2}x", tut / baseline);
}
