//! Separate responses (RFC 7252 §5.2.2). A confirmable request whose answer
//! is not ready within [`SEPARATE_AFTER`] gets an empty ACK at once, and
//! its answer later in a confirmable message of its own, retransmitted
//! until the client acknowledges it (§4.2).
//!
//! Why: a client without an ACK after ACK_TIMEOUT (2–3 s) retransmits, and
//! most clients send nothing else to the same server meanwhile (NSTART = 1,
//! §4.7). One slow answer (a slow receiver; a broker call caught by a site
//! loss) would otherwise hold up every later request of that client until
//! it gives up, about 93 s later.

use coap_lite::{MessageClass, MessageType, Packet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// Answers ready sooner are piggy-backed on the ACK; below ACK_TIMEOUT
/// (2 s), so a client has its ACK before it would retransmit.
pub const SEPARATE_AFTER: Duration = Duration::from_millis(1_000);
/// RFC 7252 §4.8: ACK_TIMEOUT, ACK_RANDOM_FACTOR, MAX_RETRANSMIT.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const ACK_RANDOM_FACTOR: f64 = 1.5;
const MAX_RETRANSMIT: u32 = 4;

/// Header type bits of a confirmable message.
const CON: u8 = 0;
const ACK: u8 = 2;
const RST: u8 = 3;

/// Whether a request datagram (see `coap::request_message_id`) is confirmable.
pub fn is_confirmable(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| (b >> 4) & 0x3 == CON)
}

/// The empty ACK of message `message_id`: four header bytes, no token.
pub fn empty_ack(message_id: u16) -> [u8; 4] {
    let [hi, lo] = message_id.to_be_bytes();
    [0x40 | (ACK << 4), 0, hi, lo]
}

/// How the client took a separate response.
#[derive(Debug, PartialEq, Eq)]
enum Confirmation {
    Ack,
    Reset,
}

/// The separate responses awaiting their client's ACK, by (peer, message
/// id), and the message ids they are sent with.
pub struct Confirmations {
    next_id: AtomicU16,
    waiting: Mutex<HashMap<(SocketAddr, u16), oneshot::Sender<Confirmation>>>,
}

impl Default for Confirmations {
    fn default() -> Self {
        Confirmations::new()
    }
}

impl Confirmations {
    pub fn new() -> Confirmations {
        // §4.4: the initial message id should be randomised; the clock's
        // low bits are random enough to not repeat a previous run's ids.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        Confirmations { next_id: AtomicU16::new((nanos >> 4) as u16), waiting: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(SocketAddr, u16), oneshot::Sender<Confirmation>>> {
        // Only a map behind this lock: still valid after a panic.
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Take `datagram` from `peer` if it is an empty ACK or Reset of a
    /// separate response sent here (true), so the sender stops
    /// retransmitting; anything else is left for the inbox (false).
    pub fn confirm(&self, peer: SocketAddr, datagram: &[u8]) -> bool {
        let &[first, code, hi, lo] = datagram else { return false };
        let kind = (first >> 4) & 0x3;
        if first >> 6 != 1 || code != 0 || !(kind == ACK || kind == RST) {
            return false;
        }
        let Some(waiter) = self.lock().remove(&(peer, u16::from_be_bytes([hi, lo]))) else { return false };
        let _ = waiter.send(if kind == ACK { Confirmation::Ack } else { Confirmation::Reset });
        true
    }

    fn expect(&self, peer: SocketAddr) -> (u16, oneshot::Receiver<Confirmation>) {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.lock();
        // Skip ids still awaiting an ACK from this peer (a wrap-around).
        let id = loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if !waiting.contains_key(&(peer, id)) {
                break id;
            }
        };
        waiting.insert((peer, id), tx);
        (id, rx)
    }

    fn forget(&self, peer: SocketAddr, id: u16) {
        self.lock().remove(&(peer, id));
    }

    /// Send `response` (the piggy-backed form of the answer) to `peer` as a
    /// separate, confirmable response, retransmitted with exponential
    /// back-off until acknowledged, reset, or MAX_RETRANSMIT times.
    pub async fn send(&self, socket: &UdpSocket, peer: SocketAddr, mut response: Packet) {
        debug_assert!(matches!(response.header.code, MessageClass::Response(_)));
        let (id, mut confirmed) = self.expect(peer);
        response.header.set_type(MessageType::Confirmable);
        response.header.message_id = id;
        let bytes = match response.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                self.forget(peer, id);
                tracing::error!(%peer, error = ?e, "coap separate response does not encode");
                return;
            }
        };
        let mut wait = first_timeout(id);
        for transmission in 0..=MAX_RETRANSMIT {
            if let Err(e) = socket.send_to(&bytes, peer).await {
                tracing::warn!(%peer, error = %e, "coap send failed");
            }
            match tokio::time::timeout(wait, &mut confirmed).await {
                Ok(Ok(Confirmation::Ack)) => return,
                Ok(Ok(Confirmation::Reset)) => {
                    tracing::info!(%peer, message_id = id, "the client reset a separate CoAP response");
                    return;
                }
                // The sender is only dropped by `forget`, which runs below.
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::debug!(%peer, message_id = id, transmission, "separate CoAP response not acknowledged yet");
                    wait *= 2;
                }
            }
        }
        self.forget(peer, id);
        tracing::warn!(%peer, message_id = id, "separate CoAP response never acknowledged; given up");
    }
}

/// ACK_TIMEOUT times a random factor in [1, ACK_RANDOM_FACTOR) (§4.2), the
/// randomness taken from the message id and the clock.
fn first_timeout(id: u16) -> Duration {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let spread = f64::from((nanos ^ u32::from(id).wrapping_mul(2_654_435_761)) % 1_000) / 1_000.0;
    ACK_TIMEOUT.mul_f64(1.0 + (ACK_RANDOM_FACTOR - 1.0) * spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn an_empty_ack_is_a_bare_header_with_the_message_id() {
        let ack = empty_ack(0xbeef);
        let packet = Packet::from_bytes(&ack).expect("decodes");
        assert_eq!(packet.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(packet.header.code, MessageClass::Empty);
        assert_eq!(packet.header.message_id, 0xbeef);
        assert!(packet.get_token().is_empty());
    }

    #[test]
    fn confirmable_is_read_from_the_type_bits() {
        assert!(is_confirmable(&[0x40, 0x02, 0, 1]));
        assert!(!is_confirmable(&[0x50, 0x02, 0, 1]), "NON");
        assert!(!is_confirmable(&[]));
    }

    #[tokio::test]
    async fn an_ack_or_reset_wakes_the_sender_of_that_peer_and_id_only() {
        let confirmations = Confirmations::new();
        let (id, rx) = confirmations.expect(peer(1));
        let [hi, lo] = id.to_be_bytes();
        assert!(!confirmations.confirm(peer(2), &[0x60, 0, hi, lo]), "another peer's ACK");
        assert!(!confirmations.confirm(peer(1), &[0x60, 0, hi, lo.wrapping_add(1)]), "another id");
        assert!(!confirmations.confirm(peer(1), &[0x60, 0x44, hi, lo]), "a piggy-backed response is not empty");
        assert!(!confirmations.confirm(peer(1), &[0x40, 0, hi, lo]), "an empty CON is a ping");
        assert!(confirmations.confirm(peer(1), &[0x60, 0, hi, lo]));
        assert_eq!(rx.await.ok(), Some(Confirmation::Ack));
        assert!(!confirmations.confirm(peer(1), &[0x60, 0, hi, lo]), "an ACK is taken once");

        let (id, rx) = confirmations.expect(peer(1));
        let [hi, lo] = id.to_be_bytes();
        assert!(confirmations.confirm(peer(1), &[0x70, 0, hi, lo]));
        assert_eq!(rx.await.ok(), Some(Confirmation::Reset));
    }

    #[test]
    fn ids_awaiting_an_ack_are_not_handed_out_again() {
        let confirmations = Confirmations::new();
        confirmations.next_id.store(u16::MAX, Ordering::Relaxed);
        let (first, _rx) = confirmations.expect(peer(1));
        assert_eq!(first, u16::MAX);
        // Around the whole id space: the next id for this peer skips `first`.
        confirmations.next_id.store(u16::MAX, Ordering::Relaxed);
        let (second, _rx2) = confirmations.expect(peer(1));
        assert_eq!(second, 0);
    }

    #[test]
    fn the_first_timeout_lies_in_the_rfc_window() {
        for id in 0..200 {
            let t = first_timeout(id);
            assert!(t >= ACK_TIMEOUT && t < ACK_TIMEOUT.mul_f64(ACK_RANDOM_FACTOR), "{t:?}");
        }
    }
}
