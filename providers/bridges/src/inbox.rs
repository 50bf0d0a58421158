//! What a bridge hands a message to: the broker's inbound side. The
//! embedded host implements it by calling the broker component
//! (`twinlattice:transport/inbound.receive`); a provider binary would call
//! it over the lattice.

use std::future::Future;
use std::pin::Pin;

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

/// The protocol a message came in over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Coap,
    Mqtt,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Coap => "coap",
            Protocol::Mqtt => "mqtt",
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A permit to handle one message; dropping it frees the slot.
pub type Permit = tokio::sync::OwnedSemaphorePermit;

/// The broker as the bridges see it.
pub trait Inbox: Send + Sync + 'static {
    /// Handle one message. `Err` is a failure of the broker itself (a trap),
    /// not bad input.
    fn receive(&self, protocol: Protocol, peer: String, message: String) -> BoxFuture<'_, anyhow::Result<Outcome>>;

    /// Wait for a slot to handle one more message (back-pressure).
    fn admit(&self) -> BoxFuture<'_, Permit>;
}
