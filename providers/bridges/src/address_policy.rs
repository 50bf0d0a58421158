//! Which addresses the broker's deliveries may reach.
//!
//! Receivers' endpoints come from descriptors anyone may register, so an
//! unchecked delivery is a request forgery (SSRF) into the host itself (its
//! admin endpoint on 127.0.0.1) or its network. The rules, in order:
//!
//! 1. never this host's own ports (its HTTP face and admin endpoint over
//!    TCP, its CoAP inbox over UDP) on a loopback, unspecified or own
//!    address, whatever the allow-list says: a delivery there is a routing
//!    loop or a forged admin request;
//! 2. an address inside an operator's allowed CIDR (`--delivery-allow`,
//!    `delivery_allow` on a lattice) is allowed;
//! 3. loopback, link-local, unspecified, multicast, broadcast and
//!    IPv4-compatible IPv6 addresses are refused;
//! 4. everything else is allowed (plant networks deliver to private ranges).
//!
//! IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are judged as the IPv4
//! address they stand for. The caller resolves a host name once, checks
//! every address it got here and connects to a checked address (no second
//! resolution, so DNS rebinding cannot slip another address in).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is
/// a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The part before `/` is not an IP address.
    #[error("{text:?} is not an IP address or CIDR")]
    Address { text: String },
    /// The prefix length is not a number within the address's bits.
    #[error("{text:?}: the prefix length must be 0-{max}")]
    Prefix { text: String, max: u8 },
    /// Bits are set past the prefix (`10.0.0.1/8`): probably a typo.
    #[error("{text:?} has host bits set; did you mean {network}?")]
    HostBits { text: String, network: Cidr },
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn mask(prefix: u8, width: u8) -> u128 {
    let all = if width == 32 { u128::from(u32::MAX) } else { u128::MAX };
    if prefix == 0 {
        0
    } else {
        all & !((1u128 << (width - prefix)) - 1)
    }
}

impl Cidr {
    /// Whether `ip` lies in this network; an IPv4-mapped IPv6 address is
    /// also tried as its IPv4 address, and an IPv4 one as its mapped form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, width) = bits(self.network);
        let m = mask(self.prefix, width);
        [ip, ip.to_canonical(), mapped(ip)]
            .into_iter()
            .any(|candidate| matches!(bits(candidate), (b, w) if w == width && b & m == net))
    }
}

/// `ip` as an IPv4-mapped IPv6 address when it is IPv4.
fn mapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .map_err(|_| CidrError::Address { text: text.to_string() })?;
        let (value, width) = bits(network);
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or(CidrError::Prefix { text: text.to_string(), max: width })?,
        };
        let masked = value & mask(prefix, width);
        if masked != value {
            let network = Cidr { network: from_bits(masked, width), prefix };
            return Err(CidrError::HostBits { text: text.to_string(), network });
        }
        Ok(Cidr { network, prefix })
    }
}

fn from_bits(value: u128, width: u8) -> IpAddr {
    if width == 32 {
        // The value came from a u32 and was only masked.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(0)))
    } else {
        IpAddr::V6(Ipv6Addr::from(value))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A comma-separated list of CIDRs (`--delivery-allow`); empty entries are
/// skipped, so an empty text is an empty list.
pub fn parse_list(text: &str) -> Result<Vec<Cidr>, CidrError> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect()
}

/// The ranges deliveries may not reach unless allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    Loopback,
    LinkLocal,
    Unspecified,
    Multicast,
    Broadcast,
    /// `::a.b.c.d`, deprecated (RFC 4291 §2.5.5.1); no peer uses one.
    Ipv4Compatible,
}

impl fmt::Display for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reserved::Loopback => "a loopback address",
            Reserved::LinkLocal => "a link-local address",
            Reserved::Unspecified => "an unspecified address",
            Reserved::Multicast => "a multicast address",
            Reserved::Broadcast => "the broadcast address",
            Reserved::Ipv4Compatible => "an IPv4-compatible IPv6 address",
        })
    }
}

/// The reserved range `ip` is in, if any (mapped IPv6 judged as IPv4).
pub fn reserved(ip: IpAddr) -> Option<Reserved> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some(Reserved::Loopback)
            } else if v4.is_link_local() {
                Some(Reserved::LinkLocal)
            // 0.0.0.0/8 is "this network": Linux connects 0.0.0.0 to itself.
            } else if v4.octets()[0] == 0 {
                Some(Reserved::Unspecified)
            } else if v4.is_multicast() {
                Some(Reserved::Multicast)
            } else if v4.is_broadcast() {
                Some(Reserved::Broadcast)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some(Reserved::Loopback)
            } else if v6.is_unspecified() {
                Some(Reserved::Unspecified)
            } else if v6.is_unicast_link_local() {
                Some(Reserved::LinkLocal)
            } else if v6.is_multicast() {
                Some(Reserved::Multicast)
            } else if v6.segments()[..6] == [0; 6] {
                Some(Reserved::Ipv4Compatible)
            } else {
                None
            }
        }
    }
}

/// How a delivery reaches its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP.
    Tcp,
    /// CoAP.
    Udp,
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// In a reserved range and not allowed.
    #[error("{ip} is {range}; deliveries may not reach it unless it is allowed (--delivery-allow)")]
    Reserved { ip: IpAddr, range: Reserved },
    /// One of this host's own ports on one of its addresses.
    #[error("{address} is this host's own {transport:?} port {port}; deliveries never go there", port = address.port())]
    OwnPort { address: SocketAddr, transport: Transport },
}

/// The delivery address policy: the operator's allow-list and this host's
/// own ports.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow: Vec<Cidr>,
    own_tcp_ports: Vec<u16>,
    own_udp_ports: Vec<u16>,
}

impl AddressPolicy {
    /// The default ranges refused, except those inside `allow`.
    pub fn new(allow: Vec<Cidr>) -> AddressPolicy {
        AddressPolicy { allow, ..AddressPolicy::default() }
    }

    /// Also refuse these ports of this host (on a loopback, unspecified or
    /// own address), even where allowed. Port 0 (not bound) is ignored.
    pub fn with_own_ports(mut self, tcp: &[u16], udp: &[u16]) -> AddressPolicy {
        self.own_tcp_ports.extend(tcp.iter().filter(|p| **p != 0));
        self.own_udp_ports.extend(udp.iter().filter(|p| **p != 0));
        self
    }

    /// The allowed networks.
    pub fn allowed(&self) -> &[Cidr] {
        &self.allow
    }

    /// Whether a delivery over `transport` may go to `address`.
    /// `is_own_address` says whether an IP belongs to this host; it is
    /// asked only when the port is one of the host's own.
    pub fn check(&self, address: SocketAddr, transport: Transport, is_own_address: impl Fn(IpAddr) -> bool) -> Result<(), Refusal> {
        let ip = address.ip().to_canonical();
        let own_ports = match transport {
            Transport::Tcp => &self.own_tcp_ports,
            Transport::Udp => &self.own_udp_ports,
        };
        // Loopback and unspecified (0.0.0.0/8, ::) addresses reach this host
        // whatever it is bound to.
        let this_host = || matches!(reserved(ip), Some(Reserved::Loopback | Reserved::Unspecified)) || is_own_address(ip);
        if own_ports.contains(&address.port()) && this_host() {
            return Err(Refusal::OwnPort { address, transport });
        }
        if self.allow.iter().any(|cidr| cidr.contains(ip)) {
            return Ok(());
        }
        match reserved(ip) {
            Some(range) => Err(Refusal::Reserved { ip, range }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn at(text: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip(text), port)
    }

    fn never_own(_: IpAddr) -> bool {
        false
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let net: Cidr = "127.0.0.0/8".parse().expect("valid");
        assert!(net.contains(ip("127.0.0.1")));
        assert!(net.contains(ip("127.255.1.2")));
        assert!(net.contains(ip("::ffff:127.0.0.1")), "mapped IPv6 is its IPv4 address");
        assert!(!net.contains(ip("128.0.0.1")));
        assert!(!net.contains(ip("::1")));
        let one: Cidr = "10.1.2.3".parse().expect("a bare address");
        assert_eq!(one.to_string(), "10.1.2.3/32");
        assert!(one.contains(ip("10.1.2.3")) && !one.contains(ip("10.1.2.4")));
        let v6: Cidr = "fd00::/8".parse().expect("valid");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("valid");
        assert!(all.contains(ip("8.8.8.8")) && all.contains(ip("::ffff:1.2.3.4")));
        let mapped: Cidr = "::ffff:127.0.0.0/104".parse().expect("valid");
        assert!(mapped.contains(ip("127.0.0.1")), "an IPv4 address is in its mapped range");
        assert_eq!("[::1]/128".parse::<Cidr>().map(|c| c.to_string()), Ok("::1/128".to_string()));
    }

    #[test]
    fn bad_cidrs_are_named() {
        assert!(matches!("localhost".parse::<Cidr>(), Err(CidrError::Address { .. })));
        assert!(matches!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::Prefix { max: 32, .. })));
        assert!(matches!("::/129".parse::<Cidr>(), Err(CidrError::Prefix { max: 128, .. })));
        assert!(matches!("10.0.0.0/x".parse::<Cidr>(), Err(CidrError::Prefix { .. })));
        let e = "10.0.0.1/8".parse::<Cidr>().expect_err("host bits");
        assert!(e.to_string().contains("10.0.0.0/8"), "{e}");
    }

    #[test]
    fn lists_parse() {
        assert_eq!(parse_list(""), Ok(vec![]));
        assert_eq!(parse_list(" , ").map(|l| l.len()), Ok(0));
        let list = parse_list("127.0.0.0/8, ::1").expect("valid");
        assert_eq!(list.iter().map(ToString::to_string).collect::<Vec<_>>(), ["127.0.0.0/8", "::1/128"]);
        assert!(parse_list("127.0.0.0/8,nope").is_err());
    }

    #[test]
    fn reserved_ranges() {
        for (text, range) in [
            ("127.0.0.1", Reserved::Loopback),
            ("127.1.2.3", Reserved::Loopback),
            ("::1", Reserved::Loopback),
            ("::ffff:127.0.0.1", Reserved::Loopback),
            ("169.254.169.254", Reserved::LinkLocal),
            ("::ffff:169.254.169.254", Reserved::LinkLocal),
            ("fe80::1", Reserved::LinkLocal),
            ("0.0.0.0", Reserved::Unspecified),
            ("0.1.2.3", Reserved::Unspecified),
            ("::", Reserved::Unspecified),
            ("224.0.0.1", Reserved::Multicast),
            ("239.255.255.250", Reserved::Multicast),
            ("ff02::1", Reserved::Multicast),
            ("255.255.255.255", Reserved::Broadcast),
            ("::127.0.0.1", Reserved::Ipv4Compatible),
        ] {
            assert_eq!(reserved(ip(text)), Some(range), "{text}");
        }
        for text in ["10.0.0.1", "192.168.1.1", "172.16.0.1", "8.8.8.8", "fd00::1", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert_eq!(reserved(ip(text)), None, "{text}");
        }
    }

    #[test]
    fn the_default_refuses_reserved_ranges_and_allows_the_rest() {
        let policy = AddressPolicy::default();
        for text in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254", "0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "fe80::1"] {
            let outcome = policy.check(at(text, 80), Transport::Tcp, never_own);
            assert!(matches!(outcome, Err(Refusal::Reserved { .. })), "{text}: {outcome:?}");
        }
        for text in ["10.0.0.1", "192.168.0.10", "93.184.216.34", "2001:db8::1"] {
            assert_eq!(policy.check(at(text, 80), Transport::Tcp, never_own), Ok(()), "{text}");
        }
    }

    #[test]
    fn allowed_networks_win_over_reserved_ranges() {
        let policy = AddressPolicy::new(parse_list("127.0.0.0/8").expect("valid"));
        assert_eq!(policy.check(at("127.0.0.1", 8080), Transport::Tcp, never_own), Ok(()));
        assert_eq!(policy.check(at("::ffff:127.0.0.1", 8080), Transport::Udp, never_own), Ok(()));
        assert!(policy.check(at("::1", 8080), Transport::Tcp, never_own).is_err(), "only what is listed");
        assert!(policy.check(at("169.254.169.254", 80), Transport::Tcp, never_own).is_err());
        assert_eq!(policy.check(at("10.0.0.1", 80), Transport::Tcp, never_own), Ok(()), "the rest stays allowed");
    }

    #[test]
    fn own_ports_are_refused_even_when_allowed() {
        let policy = AddressPolicy::new(parse_list("127.0.0.0/8,::1,10.0.0.0/8").expect("valid")).with_own_ports(&[9021, 9029], &[5683]);
        for address in [at("127.0.0.1", 9029), at("127.0.0.2", 9021), at("::ffff:127.0.0.1", 9029), at("::1", 9021), at("0.0.0.0", 9029)] {
            let outcome = policy.check(address, Transport::Tcp, never_own);
            assert!(matches!(outcome, Err(Refusal::OwnPort { .. })), "{address}: {outcome:?}");
        }
        assert!(matches!(policy.check(at("127.0.0.1", 5683), Transport::Udp, never_own), Err(Refusal::OwnPort { .. })));
        // The same port numbers over the other transport, or elsewhere, are someone else's.
        assert_eq!(policy.check(at("127.0.0.1", 5683), Transport::Tcp, never_own), Ok(()));
        assert_eq!(policy.check(at("127.0.0.1", 9021), Transport::Udp, never_own), Ok(()));
        assert_eq!(policy.check(at("10.0.0.9", 9021), Transport::Tcp, never_own), Ok(()));
        // ...unless that address is this host's.
        let own = |ip: IpAddr| ip == "10.0.0.9".parse::<IpAddr>().expect("valid");
        assert!(matches!(policy.check(at("10.0.0.9", 9021), Transport::Tcp, own), Err(Refusal::OwnPort { .. })));
        // Port 0 means "not bound" and protects nothing.
        let none = AddressPolicy::new(parse_list("127.0.0.0/8").expect("valid")).with_own_ports(&[0], &[0]);
        assert_eq!(none.check(at("127.0.0.1", 0), Transport::Tcp, never_own), Ok(()));
    }
}
