//! The order the MQTT inbox acknowledges messages in. The bridge acks a
//! QoS 1 message (PUBACK) only once the broker has taken it, and messages
//! are handled concurrently, so they finish in any order; rumqttd (the
//! embedded broker) takes acks only in the order it sent the messages
//! (`Outgoing::register_ack`: "We don't support out of order acks"; it
//! drops the connection on one). So acks are released in arrival order: a
//! finished message waits for the ones that came before it. mosquitto takes
//! acks in any order, and this order suits it too.
//!
//! Acks belong to one connection: after a reconnection the broker sends
//! the unacked messages again (persistent session), under packet ids that
//! may name other messages now, so the acks still owed for the old
//! connection are dropped, not sent ([`AckOrder::reconnected`]).

use std::collections::VecDeque;

/// A message's place in the order: the connection it came in on and its
/// position there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    connection: u64,
    position: u64,
}

/// Arrival order of the messages not yet acked on the current connection;
/// `T` is what an ack needs (the message's packet id and QoS).
#[derive(Debug)]
pub struct AckOrder<T> {
    connection: u64,
    /// The position of `waiting`'s first entry.
    first: u64,
    /// In arrival order: `None` while the message is handled, `Some` once
    /// it is done and its ack waits for earlier ones.
    waiting: VecDeque<Option<T>>,
}

impl<T> Default for AckOrder<T> {
    fn default() -> Self {
        AckOrder { connection: 0, first: 0, waiting: VecDeque::new() }
    }
}

impl<T> AckOrder<T> {
    /// A message arrived: its ticket.
    pub fn arrived(&mut self) -> Ticket {
        let position = self.first + self.waiting.len() as u64;
        self.waiting.push_back(None);
        Ticket { connection: self.connection, position }
    }

    /// The message of `ticket` was handled and `ack` acks it: the acks to
    /// send now, in order (none while an earlier message is still handled,
    /// none for a message of an earlier connection).
    pub fn done(&mut self, ticket: Ticket, ack: T) -> Vec<T> {
        if ticket.connection != self.connection || ticket.position < self.first {
            return Vec::new();
        }
        let Ok(index) = usize::try_from(ticket.position - self.first) else { return Vec::new() };
        let Some(slot) = self.waiting.get_mut(index) else { return Vec::new() };
        *slot = Some(ack);
        let mut ready = Vec::new();
        while let Some(Some(_)) = self.waiting.front() {
            if let Some(Some(ack)) = self.waiting.pop_front() {
                ready.push(ack);
            }
            self.first += 1;
        }
        ready
    }

    /// The connection was made again: acks owed for the old one are void.
    pub fn reconnected(&mut self) {
        self.connection += 1;
        self.first += self.waiting.len() as u64;
        self.waiting.clear();
    }

    /// The current connection's number (0 before the first).
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// Messages arrived and not yet acked (handled or not).
    pub fn unacked(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_go_out_in_arrival_order() {
        let mut order = AckOrder::default();
        let (a, b, c) = (order.arrived(), order.arrived(), order.arrived());
        assert!(order.done(c, 'c').is_empty(), "c waits for a and b");
        assert!(order.done(b, 'b').is_empty(), "b waits for a");
        assert_eq!(order.done(a, 'a'), vec!['a', 'b', 'c']);
        assert_eq!(order.unacked(), 0);
        let d = order.arrived();
        assert_eq!(order.done(d, 'd'), vec!['d']);
    }

    #[test]
    fn in_order_completion_acks_at_once() {
        let mut order = AckOrder::default();
        let tickets: Vec<_> = (0..5).map(|_| order.arrived()).collect();
        for (i, t) in tickets.into_iter().enumerate() {
            assert_eq!(order.done(t, i), vec![i]);
        }
    }

    #[test]
    fn a_reconnection_voids_the_old_connections_acks() {
        let mut order = AckOrder::default();
        let (a, b) = (order.arrived(), order.arrived());
        assert!(order.done(b, 'b').is_empty());
        order.reconnected();
        assert_eq!((order.unacked(), order.connection()), (0, 1));
        assert!(order.done(a, 'a').is_empty(), "a's packet id may name another message now");
        let c = order.arrived();
        assert_eq!(order.done(c, 'c'), vec!['c']);
    }

    #[test]
    fn a_ticket_is_used_once() {
        let mut order = AckOrder::default();
        let a = order.arrived();
        assert_eq!(order.done(a, 1), vec![1]);
        assert!(order.done(a, 2).is_empty());
    }
}
