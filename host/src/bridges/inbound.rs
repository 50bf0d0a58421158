//! Calling the broker component's `twinlattice:transport/inbound.receive`
//! from a native bridge.

use crate::runtime::Runtime;
use anyhow::{bail, Result};
use wasmtime::component::Val;

pub const INBOUND: &str = "twinlattice:transport/inbound@0.1.0";

/// An answer for the sender: an I4.0 message and the sender's MQTT topic.
pub struct Reply {
    pub message: String,
    pub topic: String,
}

/// What the broker made of a message.
pub enum Outcome {
    /// An ack or error message for the sender.
    Reply(Reply),
    /// Accepted and routed; nothing to answer.
    Accepted,
    /// Not an I4.0 message: the reason, and an error message for the sender
    /// when its id could be read.
    BadInput { reason: String, reply: Option<Reply> },
}

fn field<'a>(record: &'a Val, name: &str) -> Option<&'a Val> {
    match record {
        Val::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        _ => None,
    }
}

fn text(v: Option<&Val>) -> String {
    match v {
        Some(Val::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn reply(v: &Val) -> Reply {
    Reply { message: text(field(v, "message")), topic: text(field(v, "reply-topic")) }
}

pub async fn receive(runtime: &Runtime, protocol: &str, peer: String, message: String) -> Result<Outcome> {
    let envelope = Val::Record(vec![
        ("protocol".into(), Val::Enum(protocol.into())),
        ("peer".into(), Val::String(peer)),
        ("message".into(), Val::String(message)),
    ]);
    let mut results = [Val::Bool(false)];
    runtime.call(INBOUND, "receive", &[envelope], &mut results).await?;
    Ok(match &results[0] {
        Val::Result(Ok(Some(answer))) => match &**answer {
            Val::Option(Some(r)) => Outcome::Reply(reply(r)),
            Val::Option(None) => Outcome::Accepted,
            other => bail!("receive answered {other:?}"),
        },
        Val::Result(Err(Some(bad))) => Outcome::BadInput {
            reason: text(field(bad, "reason")),
            reply: match field(bad, "reply") {
                Some(Val::Option(Some(r))) => Some(reply(r)),
                _ => None,
            },
        },
        other => bail!("receive answered {other:?}"),
    })
}
