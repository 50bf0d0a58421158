//! Recent CoAP exchanges, so that a retransmitted request is processed once
//! (RFC 7252 §4.5): a client that has no ACK after ACK_TIMEOUT (2–3 s) sends
//! the same message again, with the same message id. Every copy gets the
//! first copy's answer, and only the first is handed to the broker, so a
//! slow answer never turns into a message routed twice.
//!
//! Keyed by (peer, message id), kept for EXCHANGE_LIFETIME (247 s, the
//! longest a client may retransmit). The table is bounded; past the bound
//! the oldest exchanges are forgotten first, so under a flood of requests a
//! retransmission that comes very late may be processed again.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// RFC 7252 §4.8.2.
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// Exchanges remembered at most (a 16-bit message id space per peer).
pub const CAPACITY: usize = 100_000;

/// An encoded answer datagram.
pub type Answer = Arc<[u8]>;
type Key = (SocketAddr, u16);

/// What to do with a request datagram.
pub enum Seen {
    /// The first copy: process it, then hand its answer to `Pending::finish`.
    New(Pending),
    /// A copy of a request already being processed or answered: send the
    /// answer `AnswerOf::answer` gives, and process nothing.
    Copy(AnswerOf),
}

/// The first copy's promise of an answer to later copies.
pub struct Pending(watch::Sender<Option<Answer>>);

impl Pending {
    /// The answer sent to the first copy; `None` when it got none, and
    /// then no copy gets one either.
    pub fn finish(self, answer: Option<Answer>) {
        if let Some(answer) = answer {
            let _ = self.0.send(Some(answer));
        }
    }
}

/// The answer of the first copy, once there is one.
pub struct AnswerOf(watch::Receiver<Option<Answer>>);

impl AnswerOf {
    /// Waits while the first copy is processed; `None` when it got no answer.
    pub async fn answer(mut self) -> Option<Answer> {
        self.0.wait_for(Option::is_some).await.ok().and_then(|answer| answer.clone())
    }
}

struct Entry {
    at: Instant,
    answer: watch::Receiver<Option<Answer>>,
}

pub struct Exchanges {
    lifetime: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Keys in the order they were first seen, for expiry.
    order: VecDeque<(Instant, Key)>,
}

impl Exchanges {
    pub fn new(lifetime: Duration, capacity: usize) -> Exchanges {
        Exchanges { lifetime, capacity: capacity.max(1), inner: Mutex::new(Inner::default()) }
    }

    /// Record request `message_id` from `peer` at `now`.
    pub fn seen(&self, peer: SocketAddr, message_id: u16, now: Instant) -> Seen {
        // Only maps and queues behind this lock: still valid after a panic.
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.forget_older_than(now.checked_sub(self.lifetime));
        let key = (peer, message_id);
        if let Some(entry) = inner.entries.get(&key) {
            return Seen::Copy(AnswerOf(entry.answer.clone()));
        }
        while inner.entries.len() >= self.capacity {
            let Some((at, oldest)) = inner.order.pop_front() else { break };
            inner.forget(at, oldest);
        }
        let (tx, rx) = watch::channel(None);
        inner.entries.insert(key, Entry { at: now, answer: rx });
        inner.order.push_back((now, key));
        Seen::New(Pending(tx))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.entries.len()).unwrap_or(0)
    }
}

impl Inner {
    fn forget_older_than(&mut self, cutoff: Option<Instant>) {
        let Some(cutoff) = cutoff else { return };
        while let Some(&(at, key)) = self.order.front() {
            if at > cutoff {
                break;
            }
            self.order.pop_front();
            self.forget(at, key);
        }
    }

    /// Drop `key` if its entry is the one recorded at `at` (not a newer
    /// exchange that reused the message id).
    fn forget(&mut self, at: Instant, key: Key) {
        if self.entries.get(&key).is_some_and(|e| e.at == at) {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn answer(bytes: &[u8]) -> Option<Answer> {
        Some(Arc::from(bytes))
    }

    #[tokio::test]
    async fn a_copy_gets_the_first_answer_and_is_not_new() {
        let exchanges = Exchanges::new(EXCHANGE_LIFETIME, CAPACITY);
        let now = Instant::now();
        let Seen::New(first) = exchanges.seen(peer(1), 7, now) else { panic!("the first copy must be new") };
        // A copy while the first is still being processed waits for its answer.
        let Seen::Copy(early) = exchanges.seen(peer(1), 7, now) else { panic!("a copy must not be new") };
        let waiting = tokio::spawn(early.answer());
        first.finish(answer(b"ack"));
        assert_eq!(waiting.await.unwrap().as_deref(), Some(&b"ack"[..]));
        // And a copy after the answer gets it at once.
        let Seen::Copy(late) = exchanges.seen(peer(1), 7, now + Duration::from_secs(10)) else { panic!("a copy must not be new") };
        assert_eq!(late.answer().await.as_deref(), Some(&b"ack"[..]));
    }

    #[tokio::test]
    async fn other_peers_and_message_ids_are_other_exchanges() {
        let exchanges = Exchanges::new(EXCHANGE_LIFETIME, CAPACITY);
        let now = Instant::now();
        assert!(matches!(exchanges.seen(peer(1), 7, now), Seen::New(_)));
        assert!(matches!(exchanges.seen(peer(2), 7, now), Seen::New(_)));
        assert!(matches!(exchanges.seen(peer(1), 8, now), Seen::New(_)));
        assert_eq!(exchanges.len(), 3);
    }

    #[tokio::test]
    async fn a_first_copy_without_an_answer_leaves_copies_without_one() {
        let exchanges = Exchanges::new(EXCHANGE_LIFETIME, CAPACITY);
        let now = Instant::now();
        let Seen::New(first) = exchanges.seen(peer(1), 7, now) else { panic!("new") };
        let Seen::Copy(copy) = exchanges.seen(peer(1), 7, now) else { panic!("copy") };
        first.finish(None);
        assert!(copy.answer().await.is_none());
    }

    #[tokio::test]
    async fn exchanges_expire_after_their_lifetime() {
        let lifetime = Duration::from_secs(5);
        let exchanges = Exchanges::new(lifetime, CAPACITY);
        let start = Instant::now();
        let Seen::New(first) = exchanges.seen(peer(1), 7, start) else { panic!("new") };
        first.finish(answer(b"old"));
        assert!(matches!(exchanges.seen(peer(1), 7, start + lifetime - Duration::from_millis(1)), Seen::Copy(_)));
        // After the lifetime the id may be reused by a new request.
        assert!(matches!(exchanges.seen(peer(1), 7, start + lifetime + Duration::from_millis(1)), Seen::New(_)));
        assert_eq!(exchanges.len(), 1);
    }

    #[tokio::test]
    async fn the_oldest_exchanges_go_first_past_the_capacity() {
        let exchanges = Exchanges::new(EXCHANGE_LIFETIME, 2);
        let now = Instant::now();
        for id in 1..=3 {
            assert!(matches!(exchanges.seen(peer(1), id, now + Duration::from_millis(u64::from(id))), Seen::New(_)));
        }
        assert_eq!(exchanges.len(), 2);
        let later = now + Duration::from_millis(10);
        assert!(matches!(exchanges.seen(peer(1), 3, later), Seen::Copy(_)), "the newest is kept");
        assert!(matches!(exchanges.seen(peer(1), 1, later), Seen::New(_)), "the oldest was forgotten");
    }
}
