//! Delivery over HTTP, CoAP and MQTT: one attempt per call (the broker
//! component owns retries).
//!
//! - HTTP: POST with `content-type: application/json`; any 2xx succeeds.
//! - CoAP: confirmable POST with Content-Format 50, retransmitted once;
//!   any 2.xx succeeds.
//! - MQTT: publish with QoS 1; done once the MQTT broker acknowledged it.
//!
//! HTTP and CoAP addresses go through the [`AddressPolicy`] first: the host
//! name is resolved once, every address it resolves to is checked, and the
//! delivery connects to a checked address (never resolving again, so DNS
//! rebinding cannot swap in another). A refused address is a
//! `BadAddress` (retrying cannot help), which the broker answers its
//! sender with an I4.0 error message for.

use crate::address_policy::{AddressPolicy, Transport};
use crate::coap_separate::empty_ack;
use crate::inbox::Protocol;
use crate::mqtt_outbox::Outbox;
use bytes::Bytes;
use coap_lite::{CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// Why one delivery attempt failed (mirrors `twinlattice:transport/types.delivery-error`).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The peer could not be reached; trying again later may help.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer answered with a failure status.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The address is not valid for the protocol; retrying cannot help.
    #[error("bad address: {0}")]
    BadAddress(String),
}

/// How long one HTTP delivery may take, connect included.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// CoAP: wait this long for the ACK, then retransmit once (RFC 7252's
/// ACK_TIMEOUT, shortened: the broker retries with back-off on top).
const COAP_ACK_TIMEOUT: Duration = Duration::from_millis(1_000);
/// CoAP: after an empty ACK, wait this long for the separate response
/// (RFC 7252 §5.2.2), as long as an HTTP delivery may take, without
/// sending the request again: the receiver has it.
const COAP_SEPARATE_RESPONSE_TIMEOUT: Duration = HTTP_TIMEOUT;
/// How much of a receiver's HTTP answer is read: only its status matters,
/// and a receiver must not be able to fill memory with its body.
pub const MAX_RESPONSE_BODY_BYTES: usize = 64 * 1024;

/// One attempt over `protocol` to `address` in its own terms (an
/// `http://` or `coap://` URL, an MQTT topic); MQTT publishes through
/// `mqtt`, the bridge's outbox.
/// `policy` decides which HTTP and CoAP addresses may be reached.
pub async fn deliver(
    protocol: Protocol,
    address: &str,
    payload: Vec<u8>,
    mqtt: Option<&Outbox>,
    policy: &AddressPolicy,
) -> Result<(), DeliveryError> {
    let result = match protocol {
        Protocol::Http => deliver_http(address, payload, policy).await,
        Protocol::Coap => deliver_coap(address, payload, policy).await,
        Protocol::Mqtt => deliver_mqtt(mqtt, address, payload).await,
    };
    if let Err(e) = &result {
        tracing::debug!(%address, error = %e, "delivery attempt failed");
    }
    result
}

/// Whether `ip` is one of this host's addresses: it can bind a socket to
/// it (only asked for one of the host's own ports, so rarely).
fn is_own_address(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Resolve `host` once and check every address it resolves to: one refused
/// address refuses the delivery (a name that also points at the admin
/// endpoint is not a receiver). Returns the checked addresses, to connect to.
pub async fn resolve_checked(
    href: &str,
    host: &str,
    port: u16,
    transport: Transport,
    policy: &AddressPolicy,
) -> Result<Vec<SocketAddr>, DeliveryError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| DeliveryError::Unreachable(format!("{href}: cannot resolve {host}: {e}")))?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(DeliveryError::Unreachable(format!("{href}: {host} resolves to no address")));
    }
    for address in &addresses {
        if let Err(refusal) = policy.check(*address, transport, is_own_address) {
            tracing::warn!(%href, %address, reason = %refusal, "delivery refused by the address policy");
            return Err(DeliveryError::BadAddress(format!("{href}: {refusal}")));
        }
    }
    Ok(addresses)
}

pub async fn deliver_http(href: &str, payload: Vec<u8>, policy: &AddressPolicy) -> Result<(), DeliveryError> {
    let uri: hyper::Uri = href.parse().map_err(|e| DeliveryError::BadAddress(format!("{href}: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(DeliveryError::BadAddress(format!("{href}: only http:// is supported")));
    }
    let host = uri.host().ok_or_else(|| DeliveryError::BadAddress(format!("{href}: no host")))?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let deadline = tokio::time::Instant::now() + HTTP_TIMEOUT;
    let attempt = async {
        let addresses = resolve_checked(href, &host, port, Transport::Tcp, policy).await?;
        let stream = tokio::net::TcpStream::connect(&addresses[..])
            .await
            .map_err(|e| DeliveryError::Unreachable(format!("{href}: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            // Bounds what hyper buffers of the answer's head and body.
            .max_buf_size(MAX_RESPONSE_BODY_BYTES)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| DeliveryError::Unreachable(format!("{href}: {e}")))?;
        tokio::spawn(conn);
        let request = hyper::Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header("host", uri.authority().map_or(host.as_str(), |a| a.as_str()))
            .header("content-type", "application/json")
            .header("user-agent", "twinlattice-broker")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| DeliveryError::BadAddress(format!("{href}: {e}")))?;
        let response = sender.send_request(request).await.map_err(|e| DeliveryError::Unreachable(format!("{href}: {e}")))?;
        Ok(response)
    };
    let response = tokio::time::timeout_at(deadline, attempt)
        .await
        .unwrap_or_else(|_| Err(DeliveryError::Unreachable(format!("{href}: timed out"))))?;
    let status = response.status();
    // Read a bounded part of the body, within the attempt's time, so a
    // well-behaved receiver finishes its answer; the rest (a receiver
    // streaming without end) is dropped with the connection.
    let _ = tokio::time::timeout_at(deadline, Limited::new(response.into_body(), MAX_RESPONSE_BODY_BYTES).collect()).await;
    if status.is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Rejected(format!("{href} answered HTTP {status}")))
    }
}

static COAP_MESSAGE_ID: AtomicU16 = AtomicU16::new(1);

/// `coap://host[:port]/path` → (host, port, path segments).
fn parse_coap(href: &str) -> Result<(String, u16, Vec<String>), DeliveryError> {
    let bad = |why: &str| DeliveryError::BadAddress(format!("{href}: {why}"));
    let rest = href.strip_prefix("coap://").ok_or_else(|| bad("only coap:// is supported"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, p.parse().map_err(|_| bad("bad port"))?),
        _ => (authority, 5683),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let segments = path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    Ok((host.trim_matches(|c| c == '[' || c == ']').to_string(), port, segments))
}

pub async fn deliver_coap(href: &str, payload: Vec<u8>, policy: &AddressPolicy) -> Result<(), DeliveryError> {
    let (host, port, segments) = parse_coap(href)?;
    let addresses = tokio::time::timeout(HTTP_TIMEOUT, resolve_checked(href, &host, port, Transport::Udp, policy))
        .await
        .unwrap_or_else(|_| Err(DeliveryError::Unreachable(format!("{href}: name resolution timed out"))))?;
    // UDP has no connection to try: the first checked address it is.
    let peer = addresses[0];
    let socket = tokio::net::UdpSocket::bind(if peer.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" })
        .await
        .map_err(|e| DeliveryError::Unreachable(format!("{href}: {e}")))?;
    socket.connect(peer).await.map_err(|e| DeliveryError::Unreachable(format!("{href}: {e}")))?;
    let mut packet = Packet::new();
    packet.header.set_version(1);
    packet.header.set_type(MessageType::Confirmable);
    packet.header.code = MessageClass::Request(RequestType::Post);
    let message_id = COAP_MESSAGE_ID.fetch_add(1, Ordering::Relaxed);
    packet.header.message_id = message_id;
    let token = message_id.to_be_bytes().to_vec();
    packet.set_token(token.clone());
    for segment in segments {
        packet.add_option(CoapOption::UriPath, segment.into_bytes());
    }
    packet.set_content_format(ContentFormat::ApplicationJSON);
    packet.payload = payload;
    let bytes = packet.to_bytes().map_err(|e| DeliveryError::BadAddress(format!("{href}: {e:?}")))?;
    let mut buf = vec![0u8; 65_536];
    let mut acked = false;
    for _ in 0..2 {
        socket.send(&bytes).await.map_err(|e| DeliveryError::Unreachable(format!("{href}: {e}")))?;
        let mut deadline = tokio::time::Instant::now() + COAP_ACK_TIMEOUT;
        loop {
            let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(DeliveryError::Unreachable(format!("{href}: {e}"))),
                Ok(Ok(n)) => n,
            };
            let Ok(answer) = Packet::from_bytes(&buf[..n]) else { continue };
            let ours = answer.header.message_id == message_id || answer.get_token() == token.as_slice();
            if !ours {
                continue;
            }
            match (answer.header.code, answer.header.get_type()) {
                (MessageClass::Empty, MessageType::Reset) => {
                    return Err(DeliveryError::Rejected(format!("{href} reset the message")));
                }
                // An empty ACK: the receiver has the message and answers
                // separately; no retransmission from here on.
                (MessageClass::Empty, MessageType::Acknowledgement) if !acked => {
                    acked = true;
                    deadline = tokio::time::Instant::now() + COAP_SEPARATE_RESPONSE_TIMEOUT;
                }
                (MessageClass::Response(status), kind) => {
                    if kind == MessageType::Confirmable {
                        let _ = socket.send(&empty_ack(answer.header.message_id)).await;
                    }
                    let code = u8::from(MessageClass::Response(status));
                    return if code >> 5 == 2 {
                        Ok(())
                    } else {
                        Err(DeliveryError::Rejected(format!("{href} answered CoAP {}.{:02}", code >> 5, code & 0x1f)))
                    };
                }
                _ => {}
            }
        }
        if acked {
            return Err(DeliveryError::Unreachable(format!(
                "{href}: acknowledged, but no separate response within {COAP_SEPARATE_RESPONSE_TIMEOUT:?}"
            )));
        }
    }
    Err(DeliveryError::Unreachable(format!("{href}: no CoAP answer")))
}

/// Publish with QoS 1 through the bridge's outbox; done once the MQTT
/// broker acknowledged it (PUBACK), so "delivered" means the MQTT broker
/// has it, not that it waits in this process (`mqtt_outbox`).
pub async fn deliver_mqtt(outbox: Option<&Outbox>, topic: &str, payload: Vec<u8>) -> Result<(), DeliveryError> {
    let outbox = outbox.ok_or_else(|| DeliveryError::Unreachable("no MQTT broker is configured".into()))?;
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return Err(DeliveryError::BadAddress(format!("{topic:?} is not an MQTT topic name")));
    }
    outbox.publish(topic, payload).await.map_err(|e| DeliveryError::Unreachable(format!("MQTT publish to {topic}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address_policy::{parse_list, Refusal};

    /// The test receivers listen on 127.0.0.1.
    fn loopback() -> AddressPolicy {
        AddressPolicy::new(parse_list("127.0.0.0/8").expect("valid"))
    }

    #[tokio::test]
    async fn refused_addresses_are_never_contacted() {
        // A listener that counts connections: none may arrive.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let accepted = tokio::spawn(async move { tokio::time::timeout(Duration::from_millis(300), listener.accept()).await.is_ok() });
        let default = AddressPolicy::default();
        for href in [
            format!("http://127.0.0.1:{port}/admin/accounts"),
            format!("http://localhost:{port}/i40commu"),
            format!("http://[::ffff:127.0.0.1]:{port}/x"),
            format!("http://0.0.0.0:{port}/x"),
        ] {
            let outcome = deliver_http(&href, b"{}".to_vec(), &default).await;
            assert!(matches!(&outcome, Err(DeliveryError::BadAddress(why)) if why.contains("loopback") || why.contains("unspecified")), "{href}: {outcome:?}");
        }
        let own = loopback().with_own_ports(&[port], &[]);
        let outcome = deliver_http(&format!("http://127.0.0.1:{port}/i40commu"), b"{}".to_vec(), &own).await;
        assert!(matches!(&outcome, Err(DeliveryError::BadAddress(why)) if why.contains("own")), "{outcome:?}");
        assert!(!accepted.await.expect("listener"), "a refused delivery connected");
        let outcome = deliver_coap("coap://127.0.0.1:5999/i40commu", b"{}".to_vec(), &default).await;
        assert!(matches!(outcome, Err(DeliveryError::BadAddress(_))), "{outcome:?}");
        let udp_own = loopback().with_own_ports(&[], &[5999]);
        let outcome = deliver_coap("coap://127.0.0.1:5999/i40commu", b"{}".to_vec(), &udp_own).await;
        assert!(matches!(outcome, Err(DeliveryError::BadAddress(_))), "{outcome:?}");
        let refusal = default.check(SocketAddr::from(([127, 0, 0, 1], 1)), Transport::Tcp, is_own_address);
        assert!(matches!(refusal, Err(Refusal::Reserved { .. })));
    }

    #[tokio::test]
    async fn an_endless_http_answer_is_read_only_in_part() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let href = format!("http://{}/i40commu", listener.local_addr().expect("address"));
        let sent = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000000000\r\n\r\n").await;
            let block = vec![b'x'; 1 << 20];
            let mut sent = 0usize;
            while stream.write_all(&block).await.is_ok() {
                sent += block.len();
                if sent > 1 << 30 {
                    break;
                }
            }
            sent
        });
        let started = std::time::Instant::now();
        deliver_http(&href, b"{}".to_vec(), &loopback()).await.expect("a 200 is a delivery");
        assert!(started.elapsed() < Duration::from_secs(3), "it waited for the endless body: {:?}", started.elapsed());
        let sent = sent.await.expect("server");
        assert!(sent < 64 << 20, "read {sent} bytes of the answer");
    }

    /// A CoAP receiver on a real socket that answers the first datagram it
    /// gets with what `answer` makes of it, and returns every datagram it
    /// got until `quiet` passes without one.
    async fn receiver(
        answer: impl Fn(&Packet) -> Vec<(Duration, Packet)> + Send + 'static,
        quiet: Duration,
    ) -> (String, tokio::task::JoinHandle<Vec<Packet>>) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let href = format!("coap://{}/i40commu", socket.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65_536];
            while let Ok(Ok((n, peer))) = tokio::time::timeout(quiet, socket.recv_from(&mut buf)).await {
                let packet = Packet::from_bytes(&buf[..n]).expect("CoAP");
                if got.is_empty() {
                    for (after, reply) in answer(&packet) {
                        tokio::time::sleep(after).await;
                        socket.send_to(&reply.to_bytes().expect("encodes"), peer).await.expect("send");
                    }
                }
                got.push(packet);
            }
            got
        });
        (href, task)
    }

    fn reply(to: &Packet, kind: MessageType, code: MessageClass, message_id: u16, token: bool) -> Packet {
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.set_type(kind);
        p.header.code = code;
        p.header.message_id = message_id;
        if token {
            p.set_token(to.get_token().to_vec());
        }
        p
    }

    #[tokio::test]
    async fn coap_delivery_waits_for_a_separate_response_without_retransmitting() {
        // Empty ACK at once, the 2.04 as a CON message 1.5 s later: past the
        // 1 s after which an unacknowledged request would be sent again.
        let (href, task) = receiver(
            |req| {
                vec![
                    (Duration::ZERO, reply(req, MessageType::Acknowledgement, MessageClass::Empty, req.header.message_id, false)),
                    (
                        Duration::from_millis(1_500),
                        reply(req, MessageType::Confirmable, MessageClass::Response(coap_lite::ResponseType::Changed), 4242, true),
                    ),
                ]
            },
            Duration::from_millis(500),
        )
        .await;
        deliver_coap(&href, b"{}".to_vec(), &loopback()).await.expect("delivered");
        let got = task.await.expect("receiver");
        assert_eq!(got.len(), 2, "the request once, then the ACK of the separate response: {got:?}");
        assert_eq!(got[0].header.code, MessageClass::Request(RequestType::Post));
        assert_eq!((got[1].header.get_type(), got[1].header.code, got[1].header.message_id), (MessageType::Acknowledgement, MessageClass::Empty, 4242));
    }

    #[tokio::test]
    async fn coap_delivery_reset_by_the_receiver_is_rejected() {
        let (href, task) =
            receiver(|req| vec![(Duration::ZERO, reply(req, MessageType::Reset, MessageClass::Empty, req.header.message_id, false))], Duration::from_millis(300))
                .await;
        let outcome = deliver_coap(&href, b"{}".to_vec(), &loopback()).await;
        assert!(matches!(outcome, Err(DeliveryError::Rejected(_))), "{outcome:?}");
        assert_eq!(task.await.expect("receiver").len(), 1, "not sent again after a reset");
    }

    #[test]
    fn coap_addresses_parse() {
        let (host, port, path) = parse_coap("coap://127.0.0.1:5999/i40commu").expect("valid");
        assert_eq!((host.as_str(), port, path), ("127.0.0.1", 5999, vec!["i40commu".to_string()]));
        let (host, port, _) = parse_coap("coap://example.com/a/b").expect("valid");
        assert_eq!((host.as_str(), port), ("example.com", 5683));
        assert!(matches!(parse_coap("http://x/"), Err(DeliveryError::BadAddress(_))));
        assert!(matches!(parse_coap("coap://:5/"), Err(DeliveryError::BadAddress(_))));
    }
}
