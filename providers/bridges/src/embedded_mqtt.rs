//! The embedded MQTT broker (rumqttd, MQTT 3.1.1), started when no
//! `LIA_AAS_MQTT_HOST` is configured, so that the one-command run needs no
//! outside broker. It runs on threads of its own.

use anyhow::{Context, Result};
use std::net::SocketAddr;

/// Largest MQTT payload it accepts: I4.0 messages carry whole descriptors.
const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

fn config(listen: SocketAddr) -> Result<rumqttd::Config> {
    // rumqttd's own configuration schema (its rumqttd.toml), as JSON.
    let value = serde_json::json!({
        "id": 0,
        "router": {
            "id": 0,
            "max_connections": 10010,
            "max_outgoing_packet_count": 200,
            "max_segment_size": 104857600,
            "max_segment_count": 10,
        },
        "v4": {
            "1": {
                "name": "twinlattice-v4",
                "listen": listen.to_string(),
                "next_connection_delay_ms": 1,
                "connections": {
                    "connection_timeout_ms": 60000,
                    "max_payload_size": MAX_PAYLOAD_BYTES,
                    "max_inflight_count": 500,
                    "dynamic_filters": true,
                },
            },
        },
    });
    serde_json::from_value(value).context("embedded MQTT broker configuration")
}

/// Start the broker on `host:port` (port 0: a free one); returns the address
/// it listens on.
pub fn start(host: &str, port: u16) -> Result<SocketAddr> {
    let probe = std::net::TcpListener::bind((host, port))
        .with_context(|| format!("cannot listen for MQTT on {host}:{port}"))?;
    let listen = probe.local_addr()?;
    // rumqttd binds the address itself; free it just before.
    drop(probe);
    let mut broker = rumqttd::Broker::new(config(listen)?);
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
