//! Delivery over HTTP, CoAP and MQTT: one attempt per call (the broker
//! component owns retries).
//!
//! - HTTP: POST with `content-type: application/json`; any 2xx succeeds.
//! - CoAP: confirmable POST with Content-Format 50, retransmitted once;
//!   any 2.xx succeeds.
//! - MQTT: publish with QoS 1.

use crate::coap_separate::empty_ack;
use crate::inbox::Protocol;
use bytes::Bytes;
use coap_lite::{CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
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

/// One attempt over `protocol` to `address` in its own terms (an
/// `http://` or `coap://` URL, an MQTT topic); MQTT publishes through
/// `mqtt`, the bridge's outbox connection.
pub async fn deliver(
    protocol: Protocol,
    address: &str,
    payload: Vec<u8>,
    mqtt: Option<&rumqttc::AsyncClient>,
) -> Result<(), DeliveryError> {
    let result = match protocol {
        Protocol::Http => deliver_http(address, payload).await,
        Protocol::Coap => deliver_coap(address, payload).await,
        Protocol::Mqtt => deliver_mqtt(mqtt, address, payload).await,
    };
    if let Err(e) = &result {
        tracing::debug!(%address, error = %e, "delivery attempt failed");
    }
    result
}

pub async fn deliver_http(href: &str, payload: Vec<u8>) -> Result<(), DeliveryError> {
    let uri: hyper::Uri = href.parse().map_err(|e| DeliveryError::BadAddress(format!("{href}: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(DeliveryError::BadAddress(format!("{href}: only http:// is supported")));
    }
    let host = uri.host().ok_or_else(|| DeliveryError::BadAddress(format!("{href}: no host")))?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| DeliveryError::Unreachable(format!("{href}: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
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
        let status = response.status();
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Rejected(format!("{href} answered HTTP {status}")))
        }
    };
    tokio::time::timeout(HTTP_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(DeliveryError::Unreachable(format!("{href}: timed out"))))
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

pub async fn deliver_coap(href: &str, payload: Vec<u8>) -> Result<(), DeliveryError> {
    let (host, port, segments) = parse_coap(href)?;
    let socket = tokio::net::UdpSocket::bind(if host.contains(':') { "[::]:0" } else { "0.0.0.0:0" })
        .await
        .map_err(|e| DeliveryError::Unreachable(format!("{href}: {e}")))?;
    socket.connect((host.as_str(), port)).await.map_err(|e| DeliveryError::Unreachable(format!("{href}: {e}")))?;
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

pub async fn deliver_mqtt(client: Option<&rumqttc::AsyncClient>, topic: &str, payload: Vec<u8>) -> Result<(), DeliveryError> {
    let client = client.ok_or_else(|| DeliveryError::Unreachable("no MQTT broker is configured".into()))?;
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return Err(DeliveryError::BadAddress(format!("{topic:?} is not an MQTT topic name")));
    }
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
        .await
        .map_err(|e| DeliveryError::Unreachable(format!("MQTT publish to {topic}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        deliver_coap(&href, b"{}".to_vec()).await.expect("delivered");
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
        let outcome = deliver_coap(&href, b"{}".to_vec()).await;
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
