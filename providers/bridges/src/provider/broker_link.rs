//! The lattice form of the bridges' [`Inbox`]: every message goes to the
//! broker component's `twinlattice:transport/inbound.receive` over wRPC, to
//! the component the link `bridges -> broker` names. Until that link
//! arrives (or after it is deleted) messages are refused as unavailable,
//! which the CoAP inbox answers 5.03 and the MQTT inbox with an I4.0 error
//! message (E/503); a call past `broker_timeout_ms` is a deadline, answered
//! the same way.

use crate::bindings::twinlattice::transport::{inbound, types};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;
use twinlattice_bridges::inbox::{BoxFuture, Inbox, InboxError, Outcome, Permit, Protocol, Reply};
use wasmcloud_provider_sdk::provider::WrpcClient;

#[derive(Debug, thiserror::Error)]
pub enum BrokerLinkError {
    #[error("no broker component is linked to the bridges yet (link bridges -> broker, twinlattice:transport/inbound)")]
    NotLinked,
    #[error("the broker component {target} did not answer within {after:?}")]
    Deadline { target: String, after: Duration },
    #[error("calling the broker component {target} failed: {source:#}")]
    Call { target: String, source: anyhow::Error },
}

struct Linked {
    target: String,
    client: Arc<WrpcClient>,
}

pub struct BrokerLink {
    linked: RwLock<Option<Linked>>,
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl BrokerLink {
    pub fn new(max_inflight: usize, timeout: Duration) -> BrokerLink {
        BrokerLink { linked: RwLock::new(None), slots: Arc::new(Semaphore::new(max_inflight)), timeout }
    }

    pub async fn link(&self, target: &str) -> anyhow::Result<()> {
        let connection = wasmcloud_provider_sdk::get_connection();
        let client = connection.get_wrpc_client_custom(target, Some(self.timeout)).await?;
        let mut linked = self.linked.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *linked = Some(Linked { target: target.to_string(), client: Arc::new(client) });
        Ok(())
    }

    /// Forget the link if it still points at `target`.
    pub fn unlink(&self, target: &str) -> bool {
        let mut linked = self.linked.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if linked.as_ref().is_some_and(|l| l.target == target) {
            *linked = None;
            return true;
        }
        false
    }

    fn current(&self) -> Result<(String, Arc<WrpcClient>), BrokerLinkError> {
        let linked = self.linked.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        linked.as_ref().map(|l| (l.target.clone(), l.client.clone())).ok_or(BrokerLinkError::NotLinked)
    }

    async fn receive(&self, protocol: Protocol, peer: String, message: String) -> Result<Outcome, BrokerLinkError> {
        let (target, client) = self.current()?;
        let envelope = inbound::Envelope { protocol: wit_protocol(protocol), peer, message };
        // The client's own timeout bounds only the start of the call: a
        // call whose callee's host stops after taking it would wait for an
        // answer that never comes, holding its inbox slot and its sender.
        let answer = tokio::time::timeout(self.timeout, inbound::receive(&*client, None, &envelope))
            .await
            .map_err(|_| BrokerLinkError::Deadline { target: target.clone(), after: self.timeout })?
            .map_err(|source| BrokerLinkError::Call { target, source })?;
        Ok(match answer {
            Ok(Some(reply)) => Outcome::Reply(from_wit(reply)),
            Ok(None) => Outcome::Accepted,
            Err(bad) => Outcome::BadInput { reason: bad.reason, reply: bad.reply.map(from_wit) },
        })
    }
}

fn wit_protocol(protocol: Protocol) -> types::Protocol {
    match protocol {
        Protocol::Http => types::Protocol::Http,
        Protocol::Coap => types::Protocol::Coap,
        Protocol::Mqtt => types::Protocol::Mqtt,
    }
}

fn from_wit(reply: inbound::Reply) -> Reply {
    Reply { message: reply.message, topic: reply.reply_topic }
}

impl Inbox for BrokerLink {
    fn receive(&self, protocol: Protocol, peer: String, message: String) -> BoxFuture<'_, Result<Outcome, InboxError>> {
        Box::pin(async move {
            BrokerLink::receive(self, protocol, peer, message).await.map_err(|e| match e {
                BrokerLinkError::Deadline { .. } => InboxError::Deadline,
                BrokerLinkError::NotLinked => InboxError::Unavailable(e.to_string()),
                BrokerLinkError::Call { .. } => InboxError::Failed(e.into()),
            })
        })
    }

    fn admit(&self) -> BoxFuture<'_, Permit> {
        let slots = self.slots.clone();
        Box::pin(async move {
            // The semaphore lives as long as the link and is never closed.
            Permit::new(slots.acquire_owned().await.expect("the inflight semaphore is never closed"))
        })
    }
}
