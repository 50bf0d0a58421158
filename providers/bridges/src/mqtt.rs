//! The MQTT inbox: subscribed to `AASpillarbox` and `VWS_RIC` (the RIC's
//! topics) on the broker at `LIA_AAS_MQTT_HOST:LIA_AAS_MQTT_PORT`. Answers
//! (acks, error messages) are published with QoS 1 on the sender's topic:
//! its id with `+`, `#` and NUL replaced by `_`. Input that is not an I4.0
//! message is logged and, when the sender's id can be read, answered with an
//! error message on its topic. The bridge reconnects when the broker goes.

use crate::inbox::{Inbox, Outcome, Protocol, Reply};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::time::Duration;

/// Topics the broker listens on.
pub const INBOX_TOPICS: [&str; 2] = ["AASpillarbox", "VWS_RIC"];
/// Room for the topic and headers on top of a message body in one packet.
const PACKET_OVERHEAD_BYTES: usize = 64 * 1024;

/// One connection to the MQTT broker. The bridge uses two: the inbox, whose
/// reading pauses when the host is saturated (back-pressure), and the
/// outbox for acks and deliveries, whose event loop never waits on the
/// host — one connection for both would deadlock when workers wait to
/// publish while the loop waits for a worker.
fn client(host: &str, port: u16, role: &str, max_packet_bytes: usize) -> (AsyncClient, EventLoop) {
    let id = format!("twinlattice-{role}-{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0));
    let mut options = MqttOptions::new(id, host, port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(max_packet_bytes, max_packet_bytes);
    options.set_clean_session(true);
    AsyncClient::new(options, 1024)
}

/// The bridge's two connections to one MQTT broker, made before the inbox
/// they hand messages to exists (the outbox client is what delivery needs).
pub struct Connections {
    broker: String,
    inbox: (AsyncClient, EventLoop),
    outbox: (AsyncClient, EventLoop),
}

impl Connections {
    /// Connections to `host:port` for messages of at most `max_body_bytes`
    /// (the limit HTTP requests have).
    pub fn new(host: &str, port: u16, max_body_bytes: usize) -> Connections {
        let max_packet_bytes = max_body_bytes.saturating_add(PACKET_OVERHEAD_BYTES);
        Connections {
            broker: format!("{host}:{port}"),
            inbox: client(host, port, "inbox", max_packet_bytes),
            outbox: client(host, port, "outbox", max_packet_bytes),
        }
    }

    /// The client answers and deliveries are published with.
    pub fn outbox(&self) -> AsyncClient {
        self.outbox.0.clone()
    }

    /// Run the bridge in the background, handing inbox messages to `inbox`
    /// (subscribed through `share_group`, if any). Waits up to `wait` for
    /// the first subscription and says whether it came; the bridge keeps
    /// trying either way.
    pub async fn run(self, inbox: Arc<dyn Inbox>, share_group: Option<String>, wait: Duration) -> bool {
        let Connections { broker, inbox: (client, events), outbox: (outbox, outbox_events) } = self;
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(run_outbox(outbox_events));
        tokio::spawn(run(inbox, client, events, outbox, share_group, tx));
        let connected = matches!(tokio::time::timeout(wait, rx).await, Ok(Ok(())));
        if !connected {
            tracing::warn!(%broker, "MQTT broker not reachable yet; the bridge keeps trying");
        }
        connected
    }
}

/// Drive the outbox connection's event loop for ever.
async fn run_outbox(mut events: EventLoop) {
    loop {
        if let Err(e) = events.poll().await {
            tracing::warn!(error = %e, "mqtt outbox connection lost; reconnecting");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The filter the inbox subscribes `topic` with: the topic itself, or with a
/// share group `$share/<group>/<topic>`, so that several bridges on one MQTT
/// broker (one per site) each take a part of the inbox messages instead of
/// every one of them (the messages arrive under the plain topic).
pub fn inbox_filter(topic: &str, share_group: Option<&str>) -> String {
    match share_group {
        Some(group) => format!("$share/{group}/{topic}"),
        None => topic.to_string(),
    }
}

/// Drive the inbox connection: (re)subscribe on every connection, hand each
/// inbox message to the broker, answer through `outbox`. `connected` fires
/// after the first subscription.
async fn run(
    inbox: Arc<dyn Inbox>,
    client: AsyncClient,
    mut events: EventLoop,
    outbox: AsyncClient,
    share_group: Option<String>,
    connected: tokio::sync::oneshot::Sender<()>,
) {
    let mut connected = Some(connected);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                for topic in INBOX_TOPICS {
                    let topic = inbox_filter(topic, share_group.as_deref());
                    if let Err(e) = client.subscribe(&topic, QoS::AtLeastOnce).await {
                        tracing::warn!(%topic, error = %e, "mqtt subscribe failed");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(tx) = connected.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if !INBOX_TOPICS.contains(&publish.topic.as_str()) {
                    continue;
                }
                // Waiting here for a slot pauses reading from the broker, which
                // then holds the messages: back-pressure instead of loss.
                let permit = inbox.admit().await;
                let (inbox, outbox) = (inbox.clone(), outbox.clone());
                tokio::spawn(async move {
                    handle(&*inbox, &outbox, publish.topic, publish.payload.to_vec()).await;
                    drop(permit);
                });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "mqtt connection lost; reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn publish(client: &AsyncClient, reply: Reply) {
    if reply.topic.is_empty() {
        return;
    }
    if let Err(e) = client.publish(reply.topic.clone(), QoS::AtLeastOnce, false, reply.message.into_bytes()).await {
        tracing::warn!(topic = %reply.topic, error = %e, "mqtt publish failed");
    }
}

async fn handle(inbox: &dyn Inbox, client: &AsyncClient, topic: String, payload: Vec<u8>) {
    let message = match String::from_utf8(payload) {
        Ok(m) => m,
        Err(_) => {
            tracing::info!(%topic, "mqtt message is not UTF-8; dropped");
            return;
        }
    };
    match inbox.receive(Protocol::Mqtt, format!("mqtt:{topic}"), message).await {
        Ok(Outcome::Reply(reply)) => publish(client, reply).await,
        Ok(Outcome::Accepted) => {}
        Ok(Outcome::BadInput { reason, reply }) => {
            tracing::info!(%topic, %reason, "bad input on the MQTT inbox");
            if let Some(reply) = reply {
                publish(client, reply).await;
            }
        }
        Err(e) => tracing::error!(%topic, error = ?e, "broker failed"),
    }
}
