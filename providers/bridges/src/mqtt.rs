//! The MQTT inbox: subscribed to `AASpillarbox` and `VWS_RIC` (the RIC's
//! topics) on the broker at `LIA_AAS_MQTT_HOST:LIA_AAS_MQTT_PORT`. Answers
//! (acks, error messages) are published with QoS 1 on the sender's topic:
//! its id with `+`, `#` and NUL replaced by `_`. Input that is not an I4.0
//! message is logged and, when the sender's id can be read, answered with an
//! error message on its topic. The bridge reconnects when the broker goes.
//!
//! At least once (security review M4):
//!
//! - the inbox connection has a stable client id and a persistent session
//!   (`clean_session` false), so the MQTT broker keeps the subscription and
//!   the QoS 1 messages published while the bridge is away (mosquitto up to
//!   its `max_queued_messages`; the embedded rumqttd keeps them in the
//!   filter's log, 2 x 1 MiB, and loses everything with the process it
//!   shares with the bridge);
//! - a message is acknowledged (PUBACK, rumqttc's manual acks) only once the
//!   broker component has taken it and its answer was published, so a
//!   message the host dies handling is sent again (possibly twice: at least
//!   once, not exactly once). A message whose handling failed (a trap, the
//!   call deadline) is acknowledged too, once the sender was told (an I4.0
//!   error message the bridge builds, `busy_reply`): sent again, it would
//!   fail again, for ever. Acks go out in arrival order (`mqtt_acks`);
//! - answers and deliveries wait for the MQTT broker's PUBACK
//!   (`mqtt_outbox`).
//!
//! Unacked messages bound the concurrency: the MQTT broker sends at most
//! its in-flight window of them (mosquitto's `max_inflight_messages`, 20 by
//! default; rumqttd 500) before it waits for acks.

use crate::busy_reply::{self, Busy};
use crate::inbox::{Inbox, InboxError, Outcome, Protocol, Reply};
use crate::mqtt_acks::{AckOrder, Ticket};
use crate::mqtt_outbox::{Driver, Outbox};
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// Topics the broker listens on.
pub const INBOX_TOPICS: [&str; 2] = ["AASpillarbox", "VWS_RIC"];
/// Room for the topic and headers on top of a message body in one packet.
const PACKET_OVERHEAD_BYTES: usize = 64 * 1024;

/// One connection to the MQTT broker. The bridge uses two: the inbox, whose
/// reading pauses when the host is saturated (back-pressure), and the
/// outbox for acks and deliveries, whose event loop never waits on the
/// host — one connection for both would deadlock when workers wait to
/// publish while the loop waits for a worker.
fn client(host: &str, port: u16, id: String, persistent: bool, max_packet_bytes: usize) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, host, port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(max_packet_bytes, max_packet_bytes);
    options.set_clean_session(!persistent);
    options.set_manual_acks(persistent);
    AsyncClient::new(options, 1024)
}

/// A client id no other connection has: this process's, for the outbox
/// (whose session holds nothing worth keeping).
fn unique_id(role: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("twinlattice-{role}-{}-{nanos}", std::process::id())
}

/// The inbox's client id for an installation named by `seed` (the embedded
/// host's data directory, the provider's lattice and key): the same at
/// every start, so the MQTT broker resumes the inbox's session, and
/// different between installations sharing an MQTT broker. 31 characters
/// (FNV-1a of the seed), within what brokers take.
pub fn inbox_client_id(seed: &str) -> String {
    let hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("twinlattice-inbox-{:012x}", hash & 0xffff_ffff_ffff)
}

/// The bridge's two connections to one MQTT broker, made before the inbox
/// they hand messages to exists (the outbox is what delivery needs).
pub struct Connections {
    broker: String,
    inbox: (AsyncClient, EventLoop),
    outbox: Outbox,
    outbox_driver: Driver,
}

impl Connections {
    /// Connections to `host:port` for messages of at most `max_body_bytes`
    /// (the limit HTTP requests have); the inbox connects as
    /// `inbox_client_id` ([`inbox_client_id`]) with a persistent session.
    pub fn new(host: &str, port: u16, max_body_bytes: usize, inbox_client_id: String) -> Connections {
        let max_packet_bytes = max_body_bytes.saturating_add(PACKET_OVERHEAD_BYTES);
        let (outbox_client, outbox_events) = client(host, port, unique_id("outbox"), false, max_packet_bytes);
        let (outbox, outbox_driver) = Outbox::new(outbox_client, outbox_events);
        Connections {
            broker: format!("{host}:{port}"),
            inbox: client(host, port, inbox_client_id, true, max_packet_bytes),
            outbox,
            outbox_driver,
        }
    }

    /// The outbox answers and deliveries are published with.
    pub fn outbox(&self) -> Outbox {
        self.outbox.clone()
    }

    /// Run the bridge in the background, handing inbox messages to `inbox`
    /// (subscribed through `share_group`, if any). Waits up to `wait` for
    /// the first subscription and says whether it came; the bridge keeps
    /// trying either way.
    pub async fn run(self, inbox: Arc<dyn Inbox>, share_group: Option<String>, wait: Duration) -> bool {
        let Connections { broker, inbox: (client, events), outbox, outbox_driver } = self;
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(outbox_driver.run());
        tokio::spawn(run(inbox, client, events, outbox, share_group, tx));
        let connected = matches!(tokio::time::timeout(wait, rx).await, Ok(Ok(())));
        if !connected {
            tracing::warn!(%broker, "MQTT broker not reachable yet; the bridge keeps trying");
        }
        connected
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

/// The inbox connection's acks, released in arrival order.
struct Acks {
    order: Mutex<AckOrder<Publish>>,
    /// To the task that queues acks for the event loop ([`send_acks`]), in
    /// order, each with the connection it belongs to.
    queue: mpsc::UnboundedSender<(u64, Publish)>,
    /// The current connection (`AckOrder`'s count), for that task.
    connection: AtomicU64,
}

impl Acks {
    fn order(&self) -> MutexGuard<'_, AckOrder<Publish>> {
        // No critical section panics half-way: a poisoned lock's data is
        // still consistent.
        self.order.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The message of `ticket` was handled: ack it and whatever waited for
    /// it. Handed on under the lock, so batches never overtake each other.
    fn done(&self, ticket: Ticket, publish: &Publish) {
        // What an ack needs: the packet id and QoS, not the payload.
        let mut ack = Publish::new("", publish.qos, Vec::new());
        ack.pkid = publish.pkid;
        let order = &mut *self.order();
        let connection = order.connection();
        for ack in order.done(ticket, ack) {
            // Fails only when the sending task is gone with the runtime.
            let _ = self.queue.send((connection, ack));
        }
    }

    /// The connection was lost or made again: acks owed are void.
    fn reconnected(&self) {
        let mut order = self.order();
        order.reconnected();
        self.connection.store(order.connection(), Ordering::Release);
    }
}

/// Queue acks for the inbox's event loop, in the order they come. A task
/// of its own, not `try_ack` where a message is done: the event loop reads
/// its request queue (1,024) only between packets, and while it waits for
/// an admission slot the acks that free slots would not fit; lost, their
/// messages would come again. Unbounded here, they are bounded by the MQTT
/// broker's in-flight window.
async fn send_acks(client: AsyncClient, acks: Arc<Acks>, mut queue: mpsc::UnboundedReceiver<(u64, Publish)>) {
    while let Some((connection, ack)) = queue.recv().await {
        // An ack of a lost connection would name a packet id of the new one.
        if connection != acks.connection.load(Ordering::Acquire) {
            continue;
        }
        if let Err(e) = client.ack(&ack).await {
            tracing::warn!(pkid = ack.pkid, error = %e, "mqtt ack not queued");
        }
    }
}

/// Drive the inbox connection: (re)subscribe on every connection, hand each
/// inbox message to the broker, answer through `outbox`, ack when done.
/// `connected` fires after the first subscription.
async fn run(
    inbox: Arc<dyn Inbox>,
    client: AsyncClient,
    mut events: EventLoop,
    outbox: Outbox,
    share_group: Option<String>,
    connected: tokio::sync::oneshot::Sender<()>,
) {
    let mut connected = Some(connected);
    let (queue, acks_to_send) = mpsc::unbounded_channel();
    let acks = Arc::new(Acks { order: Mutex::new(AckOrder::default()), queue, connection: AtomicU64::new(0) });
    tokio::spawn(send_acks(client.clone(), acks.clone(), acks_to_send));
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                acks.reconnected();
                // Also with a resumed session: a broker that lost it (a
                // restart without persistence) has no subscription left.
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
                let ticket = acks.order().arrived();
                if !INBOX_TOPICS.contains(&publish.topic.as_str()) {
                    acks.done(ticket, &publish);
                    continue;
                }
                // Waiting here for a slot pauses reading from the broker, which
                // then holds the messages: back-pressure instead of loss.
                let permit = inbox.admit().await;
                let (inbox, outbox, acks) = (inbox.clone(), outbox.clone(), acks.clone());
                tokio::spawn(async move {
                    permit.run(handle(&*inbox, &outbox, &publish.topic, publish.payload.clone())).await;
                    acks.done(ticket, &publish);
                });
            }
            Ok(_) => {}
            Err(e) => {
                // Acks still owed name packet ids of the lost connection;
                // the broker sends those messages again.
                acks.reconnected();
                tracing::warn!(error = %e, "mqtt connection lost; reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn publish(outbox: &Outbox, reply: Reply) {
    if reply.topic.is_empty() {
        return;
    }
    if let Err(e) = outbox.publish(&reply.topic, reply.message.into_bytes()).await {
        tracing::warn!(topic = %reply.topic, error = %e, "mqtt answer not published");
    }
}

async fn handle(inbox: &dyn Inbox, outbox: &Outbox, topic: &str, payload: Bytes) {
    let Ok(message) = std::str::from_utf8(&payload) else {
        tracing::info!(%topic, "mqtt message is not UTF-8; dropped");
        return;
    };
    match inbox.receive(Protocol::Mqtt, format!("mqtt:{topic}"), message.to_owned()).await {
        Ok(Outcome::Reply(reply)) => publish(outbox, reply).await,
        Ok(Outcome::Accepted) => {}
        Ok(Outcome::BadInput { reason, reply }) => {
            tracing::info!(%topic, %reason, "bad input on the MQTT inbox");
            if let Some(reply) = reply {
                publish(outbox, reply).await;
            }
        }
        Err(e) => {
            // The broker gave no answer: the sender is told in its stead
            // (HTTP answers 503 / 500 here).
            let why = match e {
                InboxError::Deadline | InboxError::Unavailable(_) => Busy::Deadline,
                InboxError::Failed(_) => Busy::Failed,
            };
            match why {
                Busy::Deadline => tracing::warn!(%topic, error = %e, "mqtt message not handled"),
                Busy::Failed => tracing::error!(%topic, error = %e, "broker failed"),
            }
            if let Some(reply) = busy_reply::reply(message, why, busy_reply::new_message_id()) {
                publish(outbox, reply).await;
            }
        }
    }
}
