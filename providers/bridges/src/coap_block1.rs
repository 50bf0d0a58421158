//! Bounded reassembly of Block1 requests (RFC 7959 §2.5): a large request
//! body arrives as numbered blocks, each acknowledged with 2.31 Continue,
//! and is handed on whole after the last one.
//!
//! Every block comes from the network unauthenticated (and UDP sources can
//! be spoofed), so what one transfer and all of them may hold is bounded:
//!
//! - a body at most `max_body_bytes` (the limit HTTP requests have; the
//!   client's Size1 announcement is checked up front): 4.13;
//! - at most `max_transfers` at once, `max_transfers_per_peer` per source
//!   IP: 5.03 for the next one;
//! - a transfer dies `idle` after its last block, or `lifetime` after its
//!   first, whichever comes first;
//! - blocks in order only (a retransmitted earlier block is acknowledged
//!   again); a gap or a continuation without a start is 4.08 and ends the
//!   transfer;
//! - a block longer than its SZX, or a block before the last that is
//!   shorter, or SZX 7 (reserved) is 4.00.
//!
//! Memory is thus bounded by about `2 × max_body_bytes × max_transfers`
//! (a Vec's growth). A flood of spoofed starts can still fill the slots and
//! make genuine large requests wait (5.03); small ones are never affected.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A Block1/Block2 option value: block number, more flag, size exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub num: u32,
    pub more: bool,
    pub szx: u8,
}

impl Block {
    /// The option's value (0-3 bytes, RFC 7959 §2.2).
    pub fn parse(value: &[u8]) -> Option<Block> {
        if value.len() > 3 {
            return None;
        }
        let n = value.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b));
        Some(Block { num: n >> 4, more: n & 0x8 != 0, szx: (n & 0x7) as u8 })
    }

    /// The option's value, in as few bytes as the number needs.
    pub fn encode(self) -> Vec<u8> {
        let n = (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx & 0x7);
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take(3).take_while(|b| **b == 0).count();
        // The value 0 is encoded as no bytes at all.
        if n == 0 {
            Vec::new()
        } else {
            bytes[skip..].to_vec()
        }
    }

    /// The block size in bytes (16 to 1024; SZX 7 is reserved).
    pub fn size(self) -> usize {
        16 << self.szx.min(6)
    }
}

/// The bounds of reassembly.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_transfers: usize,
    pub max_transfers_per_peer: usize,
    pub idle: Duration,
    pub lifetime: Duration,
    /// Datagrams per source address (checked before any parsing).
    pub rate: crate::coap_rate::RateLimits,
}

impl Limits {
    /// The defaults for bodies of at most `max_body_bytes`: 32 transfers,
    /// 8 per source IP, 30 s idle, 2 minutes in all (1 MiB in 1 KiB blocks
    /// takes 1,024 round trips: 2 minutes allow about 100 ms per trip).
    pub fn new(max_body_bytes: usize) -> Limits {
        Limits {
            max_body_bytes,
            max_transfers: 32,
            max_transfers_per_peer: 8,
            idle: Duration::from_secs(30),
            lifetime: Duration::from_secs(120),
            rate: crate::coap_rate::RateLimits::default(),
        }
    }
}

/// What one block did.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More to come: answer 2.31 Continue with this Block1 option.
    Continue(Block),
    /// The last block: the whole body; answer with this Block1 option.
    Complete { body: Vec<u8>, block: Block },
}

/// Why a block was refused (the transfer, if any, is over).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Block1Error {
    /// The body is (or is announced to be) larger than allowed: 4.13 with Size1.
    #[error("the request body exceeds {max} bytes")]
    TooLarge { max: usize },
    /// No slot for one more transfer: 5.03.
    #[error("too many block-wise transfers at once ({scope})")]
    TooManyTransfers { scope: &'static str },
    /// A block out of order, or a continuation without a start: 4.08.
    #[error("block {num} does not continue a transfer")]
    Incomplete { num: u32 },
    /// A malformed block: 4.00.
    #[error("bad block: {why}")]
    BadBlock { why: &'static str },
}

struct Transfer {
    body: Vec<u8>,
    started: Instant,
    last: Instant,
}

/// The transfers under way, by peer (one at a time per peer and resource;
/// the CoAP inbox has one resource).
pub struct Reassembler {
    limits: Limits,
    transfers: HashMap<SocketAddr, Transfer>,
}

impl Reassembler {
    pub fn new(limits: Limits) -> Reassembler {
        Reassembler { limits, transfers: HashMap::new() }
    }

    /// Transfers under way (after expiring old ones at `now`).
    pub fn len(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.transfers.len()
    }

    /// Whether no transfer is under way.
    pub fn is_empty(&mut self, now: Instant) -> bool {
        self.len(now) == 0
    }

    fn expire(&mut self, now: Instant) {
        let Limits { idle, lifetime, .. } = self.limits;
        self.transfers.retain(|_, t| now.duration_since(t.last) < idle && now.duration_since(t.started) < lifetime);
    }

    fn peers_of(&self, ip: IpAddr) -> usize {
        self.transfers.keys().filter(|peer| peer.ip() == ip).count()
    }

    /// Take one block from `peer`, with the request's Size1 option if it
    /// had one. Call only for a request the inbox would take (method and
    /// path checked), so nothing is buffered for anything else.
    pub fn block(&mut self, peer: SocketAddr, block: Block, size1: Option<u64>, payload: &[u8], now: Instant) -> Result<Progress, Block1Error> {
        self.expire(now);
        let outcome = self.take(peer, block, size1, payload, now);
        if outcome.is_err() {
            self.transfers.remove(&peer);
        }
        outcome
    }

    fn take(&mut self, peer: SocketAddr, block: Block, size1: Option<u64>, payload: &[u8], now: Instant) -> Result<Progress, Block1Error> {
        let max = self.limits.max_body_bytes;
        if block.szx == 7 {
            return Err(Block1Error::BadBlock { why: "SZX 7 is reserved" });
        }
        let size = block.size();
        if payload.len() > size {
            return Err(Block1Error::BadBlock { why: "a block longer than its SZX" });
        }
        if block.more && payload.len() != size {
            return Err(Block1Error::BadBlock { why: "a block before the last one shorter than its SZX" });
        }
        if size1.is_some_and(|announced| announced > max as u64) {
            return Err(Block1Error::TooLarge { max });
        }
        // Checked arithmetic: num has 20 bits, size 11, so u64 never overflows.
        let offset = u64::from(block.num) * size as u64;
        if offset + payload.len() as u64 > max as u64 {
            return Err(Block1Error::TooLarge { max });
        }
        if block.num == 0 {
            if !block.more {
                self.transfers.remove(&peer);
                return Ok(Progress::Complete { body: payload.to_vec(), block });
            }
            // A new start replaces the peer's transfer (the client began again).
            if self.transfers.remove(&peer).is_none() {
                if self.transfers.len() >= self.limits.max_transfers {
                    return Err(Block1Error::TooManyTransfers { scope: "in all" });
                }
                if self.peers_of(peer.ip()) >= self.limits.max_transfers_per_peer {
                    return Err(Block1Error::TooManyTransfers { scope: "from this peer" });
                }
            }
            self.transfers.insert(peer, Transfer { body: payload.to_vec(), started: now, last: now });
            return Ok(Progress::Continue(block));
        }
        let Some(transfer) = self.transfers.get_mut(&peer) else {
            return Err(Block1Error::Incomplete { num: block.num });
        };
        let have = transfer.body.len() as u64;
        if offset < have && offset + payload.len() as u64 <= have {
            // An earlier block again (its acknowledgement was lost).
            transfer.last = now;
            return Ok(Progress::Continue(Block { more: true, ..block }));
        }
        if offset != have {
            return Err(Block1Error::Incomplete { num: block.num });
        }
        transfer.body.extend_from_slice(payload);
        transfer.last = now;
        if block.more {
            return Ok(Progress::Continue(block));
        }
        let body = self.transfers.remove(&peer).map(|t| t.body).unwrap_or_default();
        Ok(Progress::Complete { body, block })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], port))
    }

    fn b(num: u32, more: bool) -> Block {
        Block { num, more, szx: 0 } // 16-byte blocks
    }

    fn limits() -> Limits {
        Limits {
            max_body_bytes: 64,
            max_transfers: 3,
            max_transfers_per_peer: 2,
            idle: Duration::from_secs(10),
            lifetime: Duration::from_secs(30),
            rate: Default::default(),
        }
    }

    #[test]
    fn options_round_trip() {
        for block in [
            Block { num: 0, more: false, szx: 0 },
            Block { num: 0, more: true, szx: 6 },
            Block { num: 15, more: true, szx: 6 },
            Block { num: 16, more: false, szx: 2 },
            Block { num: 4095, more: true, szx: 6 },
            Block { num: (1 << 20) - 1, more: true, szx: 6 },
        ] {
            assert_eq!(Block::parse(&block.encode()), Some(block), "{block:?}");
        }
        assert_eq!(Block { num: 0, more: false, szx: 0 }.encode(), Vec::<u8>::new());
        assert_eq!(Block { num: 1, more: true, szx: 6 }.encode(), vec![0x1e]);
        assert_eq!(Block::parse(&[0, 0, 0, 1]), None);
        assert_eq!(Block { num: 0, more: false, szx: 6 }.size(), 1024);
    }

    #[test]
    fn blocks_in_order_make_the_body() {
        let mut r = Reassembler::new(limits());
        let now = Instant::now();
        assert_eq!(r.block(peer(1, 1), b(0, true), None, &[b'a'; 16], now), Ok(Progress::Continue(b(0, true))));
        // A retransmitted block 0 (with a new message id) is acknowledged again, not appended.
        assert_eq!(r.block(peer(1, 1), b(1, true), None, &[b'b'; 16], now), Ok(Progress::Continue(b(1, true))));
        assert_eq!(r.block(peer(1, 1), b(1, true), None, &[b'b'; 16], now), Ok(Progress::Continue(b(1, true))));
        let Ok(Progress::Complete { body, block }) = r.block(peer(1, 1), b(2, false), None, b"cc", now) else { panic!("complete") };
        assert_eq!(body, [&[b'a'; 16][..], &[b'b'; 16][..], b"cc"].concat());
        assert_eq!(block, b(2, false));
        assert!(r.is_empty(now), "a finished transfer is forgotten");
        // A single block is a whole body and keeps no state.
        assert!(matches!(r.block(peer(1, 1), b(0, false), None, b"x", now), Ok(Progress::Complete { .. })));
        assert!(r.is_empty(now));
    }

    #[test]
    fn the_body_is_bounded() {
        let mut r = Reassembler::new(limits());
        let now = Instant::now();
        for num in 0..4 {
            assert!(matches!(r.block(peer(1, 1), b(num, true), None, &[0; 16], now), Ok(Progress::Continue(_))), "{num}");
        }
        assert_eq!(r.block(peer(1, 1), b(4, true), None, &[0; 16], now), Err(Block1Error::TooLarge { max: 64 }));
        assert!(r.is_empty(now), "an over-limit transfer is dropped");
        // A Size1 announcement over the limit is refused before anything is kept.
        assert_eq!(r.block(peer(1, 1), b(0, true), Some(65), &[0; 16], now), Err(Block1Error::TooLarge { max: 64 }));
        // So is a jump past the limit.
        assert_eq!(r.block(peer(1, 1), b(4095, true), None, &[0; 16], now), Err(Block1Error::TooLarge { max: 64 }));
        assert!(r.is_empty(now));
    }

    #[test]
    fn blocks_must_fit_their_szx() {
        let mut r = Reassembler::new(Limits { max_body_bytes: 1 << 20, ..limits() });
        let now = Instant::now();
        assert!(matches!(r.block(peer(1, 1), b(0, true), None, &[0; 60_000], now), Err(Block1Error::BadBlock { .. })));
        assert!(matches!(r.block(peer(1, 1), b(0, false), None, &[0; 17], now), Err(Block1Error::BadBlock { .. })));
        assert!(matches!(r.block(peer(1, 1), b(0, true), None, &[0; 15], now), Err(Block1Error::BadBlock { .. })));
        assert!(matches!(r.block(peer(1, 1), Block { num: 0, more: true, szx: 7 }, None, &[0; 16], now), Err(Block1Error::BadBlock { .. })));
        assert!(r.is_empty(now));
    }

    #[test]
    fn out_of_order_blocks_end_the_transfer() {
        let mut r = Reassembler::new(Limits { max_body_bytes: 1 << 20, ..limits() });
        let now = Instant::now();
        assert_eq!(r.block(peer(1, 1), b(3, true), None, &[0; 16], now), Err(Block1Error::Incomplete { num: 3 }));
        assert!(r.is_empty(now), "no state for a continuation without a start");
        r.block(peer(1, 1), b(0, true), None, &[0; 16], now).expect("start");
        assert_eq!(r.block(peer(1, 1), b(15, true), None, &[0; 16], now), Err(Block1Error::Incomplete { num: 15 }));
        assert!(r.is_empty(now), "a gap ends the transfer");
    }

    #[test]
    fn transfers_are_bounded_in_all_and_per_peer() {
        let mut r = Reassembler::new(limits());
        let now = Instant::now();
        let start = |r: &mut Reassembler, p| r.block(p, b(0, true), None, &[0; 16], now);
        assert!(start(&mut r, peer(1, 1)).is_ok());
        assert!(start(&mut r, peer(1, 2)).is_ok());
        assert_eq!(start(&mut r, peer(1, 3)), Err(Block1Error::TooManyTransfers { scope: "from this peer" }));
        // A restart by a peer that has a transfer takes no new slot.
        assert!(start(&mut r, peer(1, 2)).is_ok());
        assert!(start(&mut r, peer(2, 1)).is_ok());
        assert_eq!(start(&mut r, peer(3, 1)), Err(Block1Error::TooManyTransfers { scope: "in all" }));
        assert_eq!(r.len(now), 3);
    }

    #[test]
    fn transfers_expire_when_idle_and_when_old() {
        let mut r = Reassembler::new(Limits { max_body_bytes: 1 << 20, ..limits() });
        let t0 = Instant::now();
        r.block(peer(1, 1), b(0, true), None, &[0; 16], t0).expect("start");
        r.block(peer(2, 1), b(0, true), None, &[0; 16], t0).expect("start");
        let t1 = t0 + Duration::from_secs(9);
        r.block(peer(1, 1), b(1, true), None, &[0; 16], t1).expect("continues");
        let t2 = t0 + Duration::from_secs(11);
        assert_eq!(r.len(t2), 1, "peer 2 was idle for 11 s");
        // Kept busy, a transfer still ends at its lifetime.
        let mut t = t2;
        let mut num = 2;
        while t < t0 + Duration::from_secs(29) {
            t += Duration::from_secs(5);
            if r.block(peer(1, 1), b(num, true), None, &[0; 16], t).is_err() {
                break;
            }
            num += 1;
        }
        assert!(r.is_empty(t0 + Duration::from_secs(30)));
    }
}
