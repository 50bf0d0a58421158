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

/// A slot to handle one message, from [`Inbox::admit`]. The handling runs
/// inside it ([`Permit::run`]); the slot is freed when that ends, or when
/// the permit is dropped unused.
pub struct Permit(Box<dyn Slot>);

/// What holds a slot; the host decides what running work in it means (the
/// embedded host lets the work's waits on the network or a timer step out
/// of the slot, so slow receivers hold no capacity).
pub trait Slot: Send + 'static {
    fn run<'a>(self: Box<Self>, work: BoxFuture<'a, ()>) -> BoxFuture<'a, ()>;
}

/// A plain semaphore permit: held while the work runs.
impl Slot for tokio::sync::OwnedSemaphorePermit {
    fn run<'a>(self: Box<Self>, work: BoxFuture<'a, ()>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            work.await;
            drop(self);
        })
    }
}

impl Permit {
    pub fn new(slot: impl Slot) -> Permit {
        Permit(Box::new(slot))
    }

    /// Run `work` in this slot; the slot is freed when it ends.
    pub async fn run<'a>(self, work: impl Future<Output = ()> + Send + 'a) {
        self.0.run(Box::pin(work)).await
    }
}

/// Why the broker gave no outcome for a message: a failure of the broker
/// itself, not of the input. Each inbox answers these in its protocol's
/// terms (HTTP 503/500, CoAP 5.03/5.00, over MQTT an I4.0 error message
/// the bridge builds itself, `busy_reply`).
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The call ran past its deadline (the host's `--call-deadline-ms`, the
    /// provider's `broker_timeout_ms`): the broker is busy, the sender may
    /// try again later.
    #[error("the broker ran past its deadline")]
    Deadline,
    /// There is no broker to take the message (the provider before its
    /// link): trying again later may help.
    #[error("no broker: {0}")]
    Unavailable(String),
    /// The broker failed (a trap, a call that failed).
    #[error("the broker failed: {0:#}")]
    Failed(anyhow::Error),
}

/// The broker as the bridges see it.
pub trait Inbox: Send + Sync + 'static {
    /// Handle one message. `Err` is a failure of the broker itself (a trap,
    /// its deadline), not bad input.
    fn receive(&self, protocol: Protocol, peer: String, message: String) -> BoxFuture<'_, Result<Outcome, InboxError>>;

    /// Wait for a slot to handle one more message (back-pressure).
    fn admit(&self) -> BoxFuture<'_, Permit>;
}
