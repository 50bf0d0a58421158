//! The validator component: JSON Schema validation with the `jsonschema`
//! crate against the schemas compiled in from `schemas/`.
//!
//! A schema is compiled the first time it is used on an instance and kept for
//! the instance's life; the host keeps validator instances warm, so a call
//! pays only for validation.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/validation",
        world: "validator-component",
        generate_all,
    });
}

mod table {
    include!(concat!(env!("OUT_DIR"), "/schemas.rs"));
}

use bindings::exports::twinlattice::validation::validator::{Error, Guest, SyntaxError, Violation};
use bindings::wasi::logging::logging::{log, Level};
use std::sync::OnceLock;

/// One compiled validator per schema in `table::SCHEMAS`, filled on first use.
static COMPILED: [OnceLock<Result<jsonschema::Validator, String>>; table::SCHEMAS.len()] =
    [const { OnceLock::new() }; table::SCHEMAS.len()];

fn compiled(index: usize) -> &'static Result<jsonschema::Validator, String> {
    COMPILED[index].get_or_init(|| {
        let (name, text) = table::SCHEMAS[index];
        let schema: serde_json::Value = match serde_json::from_str(text) {
            Ok(schema) => schema,
            Err(e) => return Err(format!("schema {name} is not JSON: {e}")),
        };
        jsonschema::validator_for(&schema).map_err(|e| format!("schema {name} does not compile: {e}"))
    })
}

struct Component;

impl Guest for Component {
    fn schemas() -> Vec<String> {
        table::SCHEMAS.iter().map(|(name, _)| name.to_string()).collect()
    }

    fn validate(schema: String, document: String) -> Result<Vec<Violation>, Error> {
        let index = table::SCHEMAS
            .binary_search_by(|(name, _)| name.cmp(&schema.as_str()))
            .map_err(|_| Error::UnknownSchema(schema.clone()))?;
        let instance: serde_json::Value = serde_json::from_str(&document).map_err(|e| {
            Error::NotJson(SyntaxError {
                line: e.line() as u32,
                column: e.column() as u32,
                message: e.to_string(),
            })
        })?;
        let validator = match compiled(index) {
            Ok(v) => v,
            Err(reason) => {
                // A schema that does not compile is a build defect, not bad
                // input: report it loudly and as a violation of the root.
                log(Level::Error, "validator", reason);
                return Ok(vec![Violation { pointer: String::new(), reason: reason.clone() }]);
            }
        };
        Ok(validator
            .iter_errors(&instance)
            .map(|e| Violation { pointer: e.instance_path.to_string(), reason: e.to_string() })
            .collect())
    }
}

bindings::export!(Component with_types_in bindings);
