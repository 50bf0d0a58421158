//! Pieces of I4.0 messages in the RIC's dialect that both the broker
//! component and the bridges (which answer for a broker that timed out)
//! write: the MQTT topic of an AAS and the StatusResponse submodel.

use serde_json::{json, Value};

/// An MQTT topic for an AAS id: the id with the wildcards `+` and `#` (and
/// NUL, which MQTT forbids) replaced by `_`; `/` keeps making topic levels.
pub fn topic_for(id: &str) -> String {
    id.chars().map(|c| if matches!(c, '+' | '#' | '\0') { '_' } else { c }).collect()
}

fn property(id_short: &str, value: &str) -> Value {
    json!({
        "idShort": id_short,
        "modelType": { "name": "Property" },
        "kind": "Instance",
        "semanticId": { "keys": [] },
        "valueType": { "dataObjectType": { "name": "string" } },
        "value": value,
    })
}

/// The RIC's StatusResponse submodel. The message is given under both
/// `Message` and the RIC's own spelling `Messaage`, so RIC clients and
/// new ones both find it.
pub fn status_response(status: &str, code: &str, message: &str) -> Value {
    json!({
        "idShort": "StatusResponse",
        "identification": { "idType": "IRI", "id": "www.company.com/ids/sm/6535_4121_8002_9238" },
        "modelType": { "name": "Submodel" },
        "kind": "Instance",
        "semanticId": { "keys": [] },
        "submodelElements": [
            property("Status", status),
            property("Code", code),
            property("Message", message),
            property("Messaage", message),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_have_no_wildcards() {
        assert_eq!(topic_for("urn:a+b#c\0/d"), "urn:a_b_c_/d");
    }

    #[test]
    fn a_status_response_carries_status_code_and_message_twice() {
        let sr = status_response("E", "503", "busy");
        let values: Vec<(&str, &str)> = sr["submodelElements"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| Some((p["idShort"].as_str()?, p["value"].as_str()?))).collect())
            .unwrap_or_default();
        assert_eq!(values, [("Status", "E"), ("Code", "503"), ("Message", "busy"), ("Messaage", "busy")]);
    }
}
