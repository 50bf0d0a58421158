//! I4.0 frames (VDI/VDE 2193, in the RIC's dialect) as the broker reads and
//! writes them, and the StatusResponse submodel of its acks.

use serde_json::{json, Value};

pub const REGISTRATION: &str = "www.admin-shell.io/interaction/registration";
pub const HEARTBEAT: &str = "www.admin-shell.io/interaction/heartbeat";

/// The parts of an incoming message the broker uses.
pub struct Frame {
    pub message_type: String,
    pub message_id: String,
    /// The sender object as sent (copied into answers' `receiver`).
    pub sender: Value,
    pub sender_id: String,
    pub receiver_id: Option<String>,
    pub conversation_id: Value,
    pub reply_to: Option<String>,
    pub semantic_protocol: Value,
    pub interaction_elements: Vec<Value>,
}

/// The id in a sender/receiver object: `identification.id` (V2), an
/// `identification` string, or `id`.
pub fn party_id(party: &Value) -> Option<String> {
    let id = match party.get("identification") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(obj) => obj.get("id").and_then(Value::as_str),
        None => party.get("id").and_then(Value::as_str),
    }?;
    (!id.is_empty()).then(|| id.to_string())
}

/// Why a message is not an I4.0 frame; carries the sender id when it could
/// be read, so the sender can be told.
pub struct NotAFrame {
    pub reason: String,
    pub sender: Option<Value>,
    /// The frame as far as it goes, for `messageId` and `conversationId`.
    pub frame: Value,
}

impl Frame {
    pub fn parse(message: &Value) -> Result<Frame, NotAFrame> {
        let partial = message.get("frame").cloned().unwrap_or(Value::Null);
        let fail = |reason: &str, sender: Option<&Value>| NotAFrame {
            reason: reason.to_string(),
            sender: sender.cloned(),
            frame: partial.clone(),
        };
        let Some(frame) = message.get("frame").filter(|f| f.is_object()) else {
            return Err(fail("the message has no \"frame\" object", None));
        };
        let sender = frame.get("sender").filter(|s| party_id(s).is_some());
        let Some(sender) = sender else {
            return Err(fail("frame.sender has no identification id", None));
        };
        let Some(message_type) = frame.get("type").and_then(Value::as_str).filter(|t| !t.is_empty()) else {
            return Err(fail("frame.type is missing", Some(sender)));
        };
        let interaction_elements = match message.get("interactionElements") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return Err(fail("interactionElements is not an array", Some(sender))),
        };
        let receiver_id = match frame.get("receiver") {
            None | Some(Value::Null) => None,
            Some(r) => match party_id(r) {
                Some(id) => Some(id),
                None => return Err(fail("frame.receiver has no identification id", Some(sender))),
            },
        };
        Ok(Frame {
            message_type: message_type.to_string(),
            message_id: frame.get("messageId").map(id_text).unwrap_or_default(),
            sender_id: party_id(sender).unwrap_or_default(),
            sender: sender.clone(),
            receiver_id,
            conversation_id: frame.get("conversationId").cloned().unwrap_or(json!("")),
            reply_to: frame.get("replyTo").and_then(Value::as_str).map(str::to_owned),
            semantic_protocol: frame.get("semanticProtocol").cloned().unwrap_or(Value::Null),
            interaction_elements,
        })
    }
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub use broker_core::i40::{status_response, topic_for};

fn semantic_protocol(value: &str) -> Value {
    json!({ "keys": [{ "type": "GlobalReference", "local": "local", "value": value, "idType": "IRI" }] })
}

/// Who the broker says it is in a frame.
pub struct Me {
    pub id: &'static str,
    pub role: &'static str,
}

/// An answer from the broker to `to`'s sender.
pub fn answer(
    to: &Frame,
    me: Me,
    message_type: &str,
    message_id: String,
    protocol: Option<&str>,
    receiver_role: Option<&str>,
    elements: Vec<Value>,
) -> Value {
    let mut receiver = to.sender.clone();
    if let (Some(role), Some(obj)) = (receiver_role, receiver.as_object_mut()) {
        obj.insert("role".into(), json!({ "name": role }));
    }
    let semantic = match protocol {
        Some(p) => semantic_protocol(p),
        None => to.semantic_protocol.clone(),
    };
    json!({
        "frame": {
            "semanticProtocol": semantic,
            "type": message_type,
            "messageId": message_id,
            "sender": { "identification": { "id": me.id, "idType": "idShort" }, "role": { "name": me.role } },
            "receiver": receiver,
            "conversationId": to.conversation_id,
            "inReplyTo": to.message_id,
            "replyBy": 0,
        },
        "interactionElements": elements,
    })
}

/// What can be answered to a message whose frame could not be read fully:
/// its sender, messageId and conversationId where present.
pub fn partial_frame(sender: Value, frame: &Value) -> Frame {
    Frame {
        message_type: String::new(),
        message_id: frame.get("messageId").map(id_text).unwrap_or_default(),
        sender_id: party_id(&sender).unwrap_or_default(),
        sender,
        receiver_id: None,
        conversation_id: frame.get("conversationId").cloned().unwrap_or(json!("")),
        reply_to: None,
        semantic_protocol: frame.get("semanticProtocol").cloned().unwrap_or(Value::Null),
        interaction_elements: Vec::new(),
    }
}
