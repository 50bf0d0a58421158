//! `twinlattice validate`: run the validator component on one document.

use crate::runtime::Runtime;
use crate::ValidateArgs;
use anyhow::{bail, Result};
use std::io::Read;
use std::process::ExitCode;
use wasmtime::component::Val;

const VALIDATOR: &str = "twinlattice:validation/validator@0.1.0";

pub async fn run(args: ValidateArgs) -> Result<ExitCode> {
    // Validation stores nothing; the runtime still wants a data directory.
    let scratch = std::env::temp_dir().join(format!("twinlattice-validate-{}", std::process::id()));
    let options = args.runtime.offline_runtime(scratch.clone(), false);
    let runtime = Runtime::start(&options).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let runtime = runtime?;
    if args.list {
        let mut results = [Val::Bool(false)];
        runtime.call(VALIDATOR, "schemas", &[], &mut results).await?;
        let Val::List(names) = &results[0] else { bail!("schemas returned {:?}", results[0]) };
        for name in names {
            if let Val::String(s) = name {
                println!("{s}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(schema), Some(file)) = (args.schema, args.file) else { bail!("--schema and FILE are required") };
    let mut bytes = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(drop)
    } else {
        std::fs::read(&file).map(|b| bytes = b)
    };
    if let Err(e) = read {
        eprintln!("twinlattice: cannot read {}: {e}", file.display());
        return Ok(ExitCode::from(2));
    }
    let Ok(document) = String::from_utf8(bytes) else {
        eprintln!("twinlattice: not JSON: {} is not UTF-8 text", file.display());
        return Ok(ExitCode::from(2));
    };
    let mut results = [Val::Bool(false)];
    runtime
        .call(VALIDATOR, "validate", &[Val::String(schema.clone()), Val::String(document)], &mut results)
        .await?;
    match &results[0] {
        Val::Result(Ok(Some(list))) => {
            let Val::List(items) = &**list else { bail!("unexpected result {list:?}") };
            let violations: Vec<serde_json::Value> = items.iter().map(violation_json).collect();
            let valid = violations.is_empty();
            println!("{}", serde_json::json!({ "valid": valid, "violations": violations }));
            Ok(if valid { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Val::Result(Err(Some(err))) => {
            match &**err {
                Val::Variant(case, Some(payload)) if case == "unknown-schema" => {
                    eprintln!("twinlattice: unknown schema {}", val_text(payload));
                }
                Val::Variant(case, Some(payload)) if case == "not-json" => {
                    eprintln!("twinlattice: not JSON: {}", record_field(payload, "message"));
                }
                other => eprintln!("twinlattice: validation failed: {other:?}"),
            }
            Ok(ExitCode::from(2))
        }
        other => bail!("unexpected result {other:?}"),
    }
}

fn val_text(v: &Val) -> String {
    match v {
        Val::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn record_field(v: &Val, name: &str) -> String {
    match v {
        Val::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| val_text(v)).unwrap_or_default(),
        other => format!("{other:?}"),
    }
}

fn violation_json(v: &Val) -> serde_json::Value {
    serde_json::json!({ "pointer": record_field(v, "pointer"), "reason": record_field(v, "reason") })
}
