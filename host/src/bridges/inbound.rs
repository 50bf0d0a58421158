//! The embedded host as the bridges' `Inbox`: each message goes to the
//! broker component's `twinlattice:transport/inbound.receive`.

use crate::runtime::Runtime;
use anyhow::{bail, Result};
use twinlattice_bridges::inbox::{BoxFuture, Inbox, InboxError, Outcome, Permit, Protocol, Reply};
use wasmtime::component::Val;

pub const INBOUND: &str = "twinlattice:transport/inbound@0.1.0";

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

async fn receive(runtime: &Runtime, protocol: Protocol, peer: String, message: String) -> Result<Outcome> {
    let envelope = Val::Record(vec![
        ("protocol".into(), Val::Enum(protocol.name().into())),
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

impl Inbox for Runtime {
    fn receive(&self, protocol: Protocol, peer: String, message: String) -> BoxFuture<'_, Result<Outcome, InboxError>> {
        Box::pin(async move {
            receive(self, protocol, peer, message).await.map_err(|e| {
                // A call past its deadline traps like any other; the
                // bridges answer it as "busy" (HTTP's 503), not as a failure.
                if crate::runtime::engine::is_deadline(&e) {
                    InboxError::Deadline
                } else {
                    InboxError::Failed(e)
                }
            })
        })
    }

    fn admit(&self) -> BoxFuture<'_, Permit> {
        // A ticket: the broker's waits (deliveries, back-offs) step out of
        // the slot, as on the HTTP face.
        Box::pin(async move { Permit::new(self.enter().await) })
    }
}
