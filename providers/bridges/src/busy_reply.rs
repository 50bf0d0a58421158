//! The I4.0 error message a bridge sends for the broker when the broker
//! gave no answer itself: its call ran past its deadline or failed (a
//! trap), so whatever it would have said is lost. Over HTTP and CoAP the
//! protocol's status says it (503 / 5.03, 500 / 5.00); an MQTT sender has
//! only its topic, so it gets this message there instead of nothing.
//!
//! It has the shape of the broker component's own error messages
//! (`components/broker/src/frame.rs`, `error_reply`): type `error`, sender
//! `VWS_RIC` in the role `MessageBroker`, receiver the original sender as
//! sent, its `conversationId` and `semanticProtocol`, `inReplyTo` its
//! `messageId`, and a StatusResponse `E`/code. Pure: the caller gives the
//! new message's id.

use crate::inbox::Reply;
use broker_core::i40::{status_response, topic_for};
use broker_core::loop_guard;
use serde_json::{json, Value};

/// Why the bridge answers in the broker's place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// The call ran past its deadline, or there is no broker yet: E/503.
    Deadline,
    /// The broker failed (a trap): E/500.
    Failed,
}

impl Busy {
    fn code(self) -> &'static str {
        match self {
            Busy::Deadline => "503",
            Busy::Failed => "500",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Busy::Deadline => "the broker ran past its deadline (busy); try again later",
            Busy::Failed => "the broker failed handling the message",
        }
    }
}

/// A new error message id, `error_<16 hex digits>`: random enough for an
/// id (std's per-process random hash keys) and never repeated in a process
/// (a counter is hashed in).
pub fn new_message_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("error_{:016x}", hasher.finish())
}

/// The id in a sender object: `identification.id` (V2), an `identification`
/// string, or `id` (as the broker reads it, `frame::party_id`).
fn party_id(party: &Value) -> Option<&str> {
    let id = match party.get("identification") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(obj) => obj.get("id").and_then(Value::as_str),
        None => party.get("id").and_then(Value::as_str),
    }?;
    (!id.is_empty()).then_some(id)
}

/// The error message for the sender of `message` (the text as received),
/// on the sender's topic; `None` when there is nobody to tell or telling
/// would start a loop: not JSON, no frame, no sender id, a sender that is
/// the broker itself, or a message that is itself an answer (`error`,
/// acks: never answered with an error, as the broker does).
pub fn reply(message: &str, why: Busy, message_id: String) -> Option<Reply> {
    let doc: Value = serde_json::from_str(message).ok()?;
    let frame = doc.get("frame").filter(|f| f.is_object())?;
    let sender = frame.get("sender")?;
    let sender_id = party_id(sender)?;
    if loop_guard::is_broker(sender_id) {
        return None;
    }
    let message_type = frame.get("type").and_then(Value::as_str).unwrap_or("");
    if !loop_guard::may_answer_with_error(message_type) {
        return None;
    }
    let in_reply_to = match frame.get("messageId") {
        Some(Value::String(s)) => Value::String(s.clone()),
        None | Some(Value::Null) => Value::String(String::new()),
        Some(other) => Value::String(other.to_string()),
    };
    let answer = json!({
        "frame": {
            "semanticProtocol": frame.get("semanticProtocol").cloned().unwrap_or(Value::Null),
            "type": "error",
            "messageId": message_id,
            "sender": { "identification": { "id": "VWS_RIC", "idType": "idShort" }, "role": { "name": "MessageBroker" } },
            "receiver": sender,
            "conversationId": frame.get("conversationId").cloned().unwrap_or_else(|| json!("")),
            "inReplyTo": in_reply_to,
            "replyBy": 0,
        },
        "interactionElements": [status_response("E", why.code(), why.text())],
    });
    Some(Reply { message: answer.to_string(), topic: topic_for(sender_id) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(sender: Value, message_type: &str) -> String {
        json!({
            "frame": {
                "semanticProtocol": { "keys": [{ "type": "GlobalReference", "value": "www.admin-shell.io/interaction/registration" }] },
                "type": message_type,
                "messageId": "m-1",
                "sender": sender,
                "receiver": { "identification": { "id": "AASpillarbox" } },
                "conversationId": "c-1",
            },
            "interactionElements": [],
        })
        .to_string()
    }

    fn status(doc: &Value) -> (String, String, String) {
        let elements = doc["interactionElements"][0]["submodelElements"].as_array().unwrap();
        let get = |name: &str| elements.iter().find(|e| e["idShort"] == name).unwrap()["value"].as_str().unwrap().to_string();
        (get("Status"), get("Code"), get("Message"))
    }

    #[test]
    fn a_deadline_is_an_error_message_from_the_broker_to_the_sender() {
        let sender = json!({ "identification": { "id": "urn:a+b#c", "idType": "IRI" }, "role": { "name": "Sender" } });
        let reply = reply(&message(sender.clone(), "register"), Busy::Deadline, "error_1".into()).unwrap();
        assert_eq!(reply.topic, "urn:a_b_c");
        let doc: Value = serde_json::from_str(&reply.message).unwrap();
        let frame = &doc["frame"];
        assert_eq!(frame["type"], "error");
        assert_eq!(frame["messageId"], "error_1");
        assert_eq!(frame["sender"]["identification"]["id"], "VWS_RIC");
        assert_eq!(frame["sender"]["role"]["name"], "MessageBroker");
        assert_eq!(frame["receiver"], sender);
        assert_eq!(frame["conversationId"], "c-1");
        assert_eq!(frame["inReplyTo"], "m-1");
        assert_eq!(frame["semanticProtocol"]["keys"][0]["value"], "www.admin-shell.io/interaction/registration");
        let (s, code, text) = status(&doc);
        assert_eq!((s.as_str(), code.as_str()), ("E", "503"));
        assert!(text.contains("deadline"), "{text}");
    }

    #[test]
    fn a_failure_is_e_500() {
        let reply = reply(&message(json!({ "id": "urn:x" }), "ping"), Busy::Failed, new_message_id()).unwrap();
        let doc: Value = serde_json::from_str(&reply.message).unwrap();
        assert_eq!(status(&doc).1, "500");
        assert_eq!(reply.topic, "urn:x");
        assert!(doc["frame"]["messageId"].as_str().unwrap().starts_with("error_"));
    }

    #[test]
    fn nobody_or_the_broker_itself_is_not_answered() {
        assert!(reply("not json", Busy::Deadline, "e".into()).is_none());
        assert!(reply("{}", Busy::Deadline, "e".into()).is_none());
        assert!(reply(&message(json!({ "role": {} }), "ping"), Busy::Deadline, "e".into()).is_none());
        for broker in ["VWS_RIC", "AASpillarbox"] {
            let sender = json!({ "identification": { "id": broker } });
            assert!(reply(&message(sender, "ping"), Busy::Deadline, "e".into()).is_none(), "{broker}");
        }
    }

    #[test]
    fn answers_are_never_answered() {
        for t in ["error", "Error", "registerack", "HeartBeatAck"] {
            let sender = json!({ "identification": { "id": "urn:x" } });
            assert!(reply(&message(sender, t), Busy::Deadline, "e".into()).is_none(), "{t}");
        }
    }

    #[test]
    fn message_ids_differ() {
        assert_ne!(new_message_id(), new_message_id());
    }
}
