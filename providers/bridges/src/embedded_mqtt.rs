//! The embedded MQTT broker (rumqttd, MQTT 3.1.1), started when no
//! `LIA_AAS_MQTT_HOST` is configured, so that the one-command run needs no
//! outside broker. It runs on threads of its own.
//!
//! Its limits, because whoever reaches it is unauthenticated:
//!
//! - it listens where the operator says (`--mqtt-bind`, default
//!   127.0.0.1), not wherever the HTTP face does;
//! - a packet may be at most the body limit HTTP has (`--max-body-bytes`)
//!   plus room for the topic; a larger one closes its connection;
//! - at most [`MAX_CONNECTIONS`] connections, each with 5 s to connect;
//! - each subscription filter's log keeps at most 2 segments of 1 MiB
//!   (rumqttd keeps a filter's newest messages in memory; it was 10 of
//!   100 MiB);
//! - `dynamic_filters` off: a publish on a topic no subscription matches
//!   creates no log. (rumqttd 0.20 already drops such a publish either way,
//!   its `DataLog::matches` never returns `None`; off keeps it so should a
//!   later version honour the flag.)
//!
//! Persistent sessions (`clean_session` false, which the bridge's inbox
//! uses) are kept while the broker runs: a client that comes back gets its
//! subscriptions and, from where its unacked messages began, what the
//! filter's log still holds (2 x 1 MiB). They end with the process, which
//! is the bridge's own: the session helps across the bridge's reconnections,
//! an outside broker (`--mqtt-host`) also across restarts of the host.
//!
//! rumqttd 0.20 bounds neither retained messages (one per topic, each up to
//! the packet limit) nor the number of subscription filters, and has no
//! authentication or topic ACLs: expose it only to trusted networks, or use
//! an outside broker (mosquitto with an `acl_file`) through `--mqtt-host`.

use anyhow::{Context, Result};
use std::net::SocketAddr;

/// Connections the embedded broker takes at once.
pub const MAX_CONNECTIONS: usize = 1_000;
/// Room for the topic and headers on top of a message body in one packet.
const PACKET_OVERHEAD_BYTES: usize = 64 * 1024;
/// Per subscription filter: segments of this size, this many of them.
const SEGMENT_BYTES: usize = 1024 * 1024;
const SEGMENTS: usize = 2;

fn config(listen: SocketAddr, max_body_bytes: usize) -> Result<rumqttd::Config> {
    let max_packet_bytes = max_body_bytes.saturating_add(PACKET_OVERHEAD_BYTES);
    // rumqttd's own configuration schema (its rumqttd.toml), as JSON.
    let value = serde_json::json!({
        "id": 0,
        "router": {
            "id": 0,
            "max_connections": MAX_CONNECTIONS,
            "max_outgoing_packet_count": 200,
            "max_segment_size": SEGMENT_BYTES,
            "max_segment_count": SEGMENTS,
        },
        "v4": {
            "1": {
                "name": "twinlattice-v4",
                "listen": listen.to_string(),
                "next_connection_delay_ms": 1,
                "connections": {
                    "connection_timeout_ms": 5000,
                    "max_payload_size": max_packet_bytes,
                    "max_inflight_count": 500,
                    "dynamic_filters": false,
                },
            },
        },
    });
    serde_json::from_value(value).context("embedded MQTT broker configuration")
}

/// Start the broker on `host:port` (port 0: a free one), taking messages of
/// at most `max_body_bytes`; returns the address it listens on.
pub fn start(host: &str, port: u16, max_body_bytes: usize) -> Result<SocketAddr> {
    let probe = std::net::TcpListener::bind((host, port))
        .with_context(|| format!("cannot listen for MQTT on {host}:{port}"))?;
    let listen = probe.local_addr()?;
    // rumqttd binds the address itself; free it just before.
    drop(probe);
    let mut broker = rumqttd::Broker::new(config(listen, max_body_bytes)?);
    std::thread::Builder::new()
        .name("embedded-mqtt".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .context("cannot start the embedded MQTT broker thread")?;
    // Wait until it accepts connections.
    for _ in 0..200 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return Ok(listen);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    anyhow::bail!("the embedded MQTT broker did not start listening on {listen}")
}
