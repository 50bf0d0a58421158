//! The MQTT bridge's outbox connection: answers and deliveries, published
//! with QoS 1, each reported done only once the MQTT broker acknowledged it
//! (PUBACK). A delivery that "succeeded" means the MQTT broker has the
//! message, so an HTTP sender's 202 for an MQTT receiver says as much as
//! one for an HTTP receiver (security review M4).
//!
//! rumqttc's client only queues a request for its event loop, and the loop
//! gives a publish its packet id (`Outgoing::Publish(pkid)`) later, in the
//! order the requests were queued. So each publish queues its request and
//! a waiter together, under one lock; the loop hands the waiters packet ids
//! in that order ([`Waiters`]) and completes them on `Incoming::PubAck`.
//! One lock, one oneshot and one map entry per publish: the cost is the
//! broker's round trip, nothing on top.
//!
//! When the connection is lost, rumqttc keeps the unacked publishes and
//! those still queued for a replay, which a clean session then drops; this
//! loop takes them itself and reports their waiters as lost (the broker
//! component retries or answers its sender), so that the waiters left are
//! exactly the requests still queued.

use rumqttc::{AsyncClient, ClientError, Event, EventLoop, Outgoing, Packet, QoS, Request};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a publish waits for the broker's PUBACK: as long as one HTTP
/// delivery may take (a local MQTT broker answers within milliseconds).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a publish is not known to have reached the MQTT broker.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// It could not be queued (the queue is full, or the topic invalid).
    #[error("the MQTT outbox did not take the message: {0}")]
    Queue(#[from] ClientError),
    /// The connection went before the broker acknowledged it.
    #[error("the MQTT connection was lost before the broker acknowledged the message")]
    Lost,
    /// No PUBACK within [`ACK_TIMEOUT`].
    #[error("the MQTT broker did not acknowledge the message within {0:?}")]
    Timeout(Duration),
}

/// Publishes waiting for their PUBACK, matched to packet ids in the order
/// their requests were queued. `T` is the waiter (a oneshot sender;
/// dropping it reports the publish lost).
#[derive(Debug)]
pub struct Waiters<T> {
    /// Queued for the event loop, no packet id yet, in queue order.
    queued: VecDeque<T>,
    /// Sent, by packet id.
    inflight: HashMap<u16, T>,
    /// A publish whose packet id was still in flight (the broker acked out
    /// of order): rumqttc holds it back and sends it after that id's ack.
    collided: Option<(u16, T)>,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters { queued: VecDeque::new(), inflight: HashMap::new(), collided: None }
    }
}

impl<T> Waiters<T> {
    /// A publish was queued (under the same lock as its request).
    pub fn queued(&mut self, waiter: T) {
        self.queued.push_back(waiter);
    }

    /// `Outgoing::Publish(pkid)`: the next queued publish was sent, or the
    /// collided one after the ack that freed its id (rumqttc reports that
    /// ack first). Returns a waiter the id displaced (none unless the
    /// broker misbehaves), to be reported lost.
    pub fn sent(&mut self, pkid: u16) -> Option<T> {
        let waiter = match self.collided.take() {
            Some((id, waiter)) if id == pkid => waiter,
            other => {
                self.collided = other;
                self.queued.pop_front()?
            }
        };
        self.inflight.insert(pkid, waiter)
    }

    /// `Outgoing::AwaitAck(pkid)`: the next queued publish collided.
    pub fn collided(&mut self, pkid: u16) -> Option<T> {
        let waiter = self.queued.pop_front()?;
        self.collided.replace((pkid, waiter)).map(|(_, w)| w)
    }

    /// `Incoming::PubAck(pkid)`: the waiter it completes.
    pub fn acked(&mut self, pkid: u16) -> Option<T> {
        self.inflight.remove(&pkid)
    }

    /// Whether a publish with `pkid` was sent on this connection.
    pub fn is_inflight(&self, pkid: u16) -> bool {
        self.inflight.contains_key(&pkid)
    }

    /// The connection was lost, and with it every sent publish and the
    /// first `unsent` queued ones (those rumqttc had taken from its queue):
    /// their waiters, to be reported lost.
    pub fn lost(&mut self, unsent: usize) -> Vec<T> {
        let mut gone: Vec<T> = self.inflight.drain().map(|(_, w)| w).collect();
        gone.extend(self.collided.take().map(|(_, w)| w));
        gone.extend(self.queued.drain(..unsent.min(self.queued.len())));
        gone
    }
}

type Waiter = oneshot::Sender<()>;

fn lock(waiters: &Mutex<Waiters<Waiter>>) -> MutexGuard<'_, Waiters<Waiter>> {
    // The critical sections cannot panic half-way; a poisoned lock's data
    // is still consistent.
    waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The outbox: publishes that wait for their PUBACK. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters<Waiter>>>,
}

impl Outbox {
    /// The outbox over `client`, and the loop that drives its connection
    /// ([`Driver::run`]).
    pub fn new(client: AsyncClient, events: EventLoop) -> (Outbox, Driver) {
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        (Outbox { client, waiters: waiters.clone() }, Driver { events, waiters })
    }

    /// Publish `payload` on `topic` with QoS 1 and wait for the broker's
    /// PUBACK (at most [`ACK_TIMEOUT`]).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), PublishError> {
        let (done, acked) = oneshot::channel();
        {
            // Queue the request and its waiter together: the event loop
            // hands out packet ids in queue order. `try_publish` does not
            // wait (the queue holds 1,024 requests; admission keeps far
            // fewer in flight).
            let mut waiters = lock(&self.waiters);
            self.client.try_publish(topic, QoS::AtLeastOnce, false, payload)?;
            waiters.queued(done);
        }
        match tokio::time::timeout(ACK_TIMEOUT, acked).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(PublishError::Lost),
            Err(_) => Err(PublishError::Timeout(ACK_TIMEOUT)),
        }
    }
}

/// The outbox connection's event loop, to be driven for ever ([`Driver::run`]).
pub struct Driver {
    events: EventLoop,
    waiters: Arc<Mutex<Waiters<Waiter>>>,
}

impl Driver {
    /// Drive the connection: match packet ids to waiters, complete them on
    /// PUBACK, report them lost with the connection; reconnect.
    pub async fn run(mut self) {
        loop {
            match self.events.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => drop(lock(&self.waiters).sent(pkid)),
                Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => drop(lock(&self.waiters).collided(pkid)),
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(waiter) = lock(&self.waiters).acked(ack.pkid) {
                        // The publisher may have stopped waiting (timeout).
                        let _ = waiter.send(());
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.lost();
                    tracing::warn!(error = %e, "mqtt outbox connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// After a connection error: what rumqttc kept for a replay is dropped
    /// here (a clean session drops it on reconnection anyway) and its
    /// publishers are told; events of the old connection are void.
    fn lost(&mut self) {
        let pending = std::mem::take(&mut self.events.pending);
        self.events.state.events.clear();
        // A held-back collided publish would wait for an ack the new
        // session never sends, stopping the outbox.
        self.events.state.collision = None;
        let mut waiters = lock(&self.waiters);
        // Taken from the queue but never reported sent: packet id 0, or one
        // whose `Outgoing::Publish` was not seen (the write failed).
        let unsent = pending.iter().filter(|r| matches!(r, Request::Publish(p) if !waiters.is_inflight(p.pkid))).count();
        let gone = waiters.lost(unsent);
        drop(waiters);
        if !gone.is_empty() {
            tracing::info!(publishes = gone.len(), "mqtt publishes lost with the connection");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_go_to_publishes_in_queue_order() {
        let mut w = Waiters::default();
        for name in ["a", "b", "c"] {
            w.queued(name);
        }
        assert_eq!(w.sent(1), None);
        assert_eq!(w.sent(2), None);
        assert_eq!(w.acked(2), Some("b"));
        assert_eq!(w.sent(3), None);
        assert_eq!(w.acked(1), Some("a"));
        assert_eq!(w.acked(3), Some("c"));
        assert_eq!(w.acked(3), None, "an ack completes once");
    }

    #[test]
    fn a_collided_publish_is_matched_when_rumqttc_sends_it() {
        let mut w = Waiters::default();
        w.queued("a");
        w.queued("b");
        w.queued("c");
        w.sent(1);
        // b gets id 1 again while a's is unacked: held back.
        assert_eq!(w.collided(1), None);
        // rumqttc: the ack of 1 first, then b is sent under 1.
        assert_eq!(w.acked(1), Some("a"));
        assert_eq!(w.sent(1), None);
        assert_eq!(w.sent(2), None);
        assert_eq!(w.acked(1), Some("b"));
        assert_eq!(w.acked(2), Some("c"));
    }

    #[test]
    fn a_lost_connection_takes_sent_and_unsent_publishes_only() {
        let mut w = Waiters::default();
        for name in ["a", "b", "c", "d"] {
            w.queued(name);
        }
        w.sent(1);
        // b was taken from rumqttc's queue, c and d are still in it.
        let mut gone = w.lost(1);
        gone.sort();
        assert_eq!(gone, vec!["a", "b"]);
        assert!(!w.is_inflight(1));
        // After reconnection c and d are sent first, in order.
        w.sent(1);
        w.sent(2);
        assert_eq!(w.acked(1), Some("c"));
        assert_eq!(w.acked(2), Some("d"));
    }

    #[test]
    fn a_lost_connection_takes_the_collided_publish() {
        let mut w = Waiters::default();
        w.queued("a");
        w.queued("b");
        w.sent(1);
        w.collided(1);
        let mut gone = w.lost(0);
        gone.sort();
        assert_eq!(gone, vec!["a", "b"]);
    }

    #[test]
    fn more_unsent_than_queued_is_bounded() {
        let mut w = Waiters::default();
        w.queued("a");
        assert_eq!(w.lost(5), vec!["a"]);
    }
}
