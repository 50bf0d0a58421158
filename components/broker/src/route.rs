//! Routing of messages between AAS: the receiver's registry entry, the
//! routing policy's decision, and delivery through the bridges with retries.

use crate::bindings::twinlattice::registry::shells;
use crate::bindings::twinlattice::registry::types::{Error as RegistryError, PageRequest, ShellFilter};
use crate::bindings::twinlattice::routing::policy::{self, Decision, FrameSummary, ReceiverInfo};
use crate::bindings::twinlattice::transport::outbound;
use crate::bindings::twinlattice::transport::types::{DeliveryError, Endpoint, Protocol};
use crate::bindings::exports::twinlattice::transport::inbound::Reply;
use crate::bindings::wasi::logging::logging::{log, Level};
use crate::frame::{self, Frame};
use crate::queue::{self, QueueError, Queued};
use crate::{clock, error_reply, lease, policy_link};
use serde_json::Value;

/// Attempts per endpoint, and the back-off before the second and third.
const BACKOFF_MS: [u64; 2] = [100, 400];
/// No delivery attempt of one message starts later than this after its
/// routing began, so the sender gets its answer well within the host's call
/// deadline (20 s by default; one HTTP attempt may take 5 s).
const DELIVERY_BUDGET_MS: u64 = 12_000;

/// A budget from now (`broker_core::budget`, read on the monotonic clock).
pub struct Budget(broker_core::budget::Budget);

impl Budget {
    pub fn start() -> Budget {
        Budget(broker_core::budget::Budget::new(clock::monotonic_ns(), DELIVERY_BUDGET_MS))
    }

    /// Whether waiting `ms` more and then trying again still fits.
    fn allows(&self, ms: u64) -> bool {
        self.0.allows(clock::monotonic_ns(), ms)
    }
}

/// Route `message` (the text as received) per `frame`. Returns an error
/// message for the sender when the receiver is unknown or delivery failed.
pub fn route(frame: &Frame, message: &str) -> Option<Reply> {
    match &frame.receiver_id {
        None => {
            broadcast(frame, message);
            None
        }
        Some(receiver) => match deliver_to(frame, receiver, message, &Budget::start()) {
            Ok(_) => None,
            Err(Failure::Unknown) => Some(error_reply(frame, "404", &format!("receiver {receiver:?} is not registered"))),
            Err(Failure::Rejected(why)) => Some(error_reply(frame, "400", &format!("message to {receiver:?} not routed: {why}"))),
            Err(Failure::Undeliverable(why) | Failure::BadAddress(why)) => {
                Some(error_reply(frame, "502", &format!("delivery to {receiver:?} failed: {why}")))
            }
            Err(Failure::Misconfigured(why)) => {
                log(Level::Error, "broker", &why);
                Some(error_reply(frame, "500", &format!("message to {receiver:?} not routed: {why}")))
            }
        },
    }
}

/// How a message was taken care of.
enum Delivered {
    Now,
    /// Kept in the receiver's queue until it is back.
    Queued,
}

enum Failure {
    Unknown,
    Rejected(String),
    Undeliverable(String),
    /// Every endpoint's address is refused (not allowed, or malformed): a
    /// later try cannot succeed, so the message is not queued.
    BadAddress(String),
    /// The broker's own configuration is wrong (the routing-policy link).
    Misconfigured(String),
}

fn protocol_of(href: &str, declared: Option<&str>) -> Option<Protocol> {
    let name = declared.map(str::to_ascii_lowercase).unwrap_or_else(|| href.split(':').next().unwrap_or("").to_ascii_lowercase());
    match name.as_str() {
        "http" | "https" => Some(Protocol::Http),
        "coap" | "coaps" => Some(Protocol::Coap),
        "mqtt" | "mqtts" => Some(Protocol::Mqtt),
        _ => None,
    }
}

/// The `communication` endpoints of a descriptor, in order. An MQTT
/// endpoint always means the receiver's own topic (`mqtt_topic`) on the
/// broker's MQTT broker: the href only says the AAS listens over MQTT.
fn communication_endpoints(descriptor: &Value, mqtt_topic: &str) -> Vec<Endpoint> {
    descriptor
        .get("endpoints")
        .and_then(Value::as_array)
        .map(|eps| {
            eps.iter()
                .filter(|e| e.get("interface").and_then(Value::as_str).is_some_and(|i| i.eq_ignore_ascii_case("communication")))
                .filter_map(|e| {
                    let info = e.get("protocolInformation")?;
                    let href = info.get("href").and_then(Value::as_str)?;
                    let protocol = protocol_of(href, info.get("endpointProtocol").and_then(Value::as_str))?;
                    let address = if protocol == Protocol::Mqtt { mqtt_topic.to_string() } else { href.to_string() };
                    Some(Endpoint { protocol, address })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Deliver to `receiver` now, or queue for it while it is offline.
fn deliver_to(frame: &Frame, receiver: &str, message: &str, budget: &Budget) -> Result<Delivered, Failure> {
    let id = shells::resolve(receiver).map_err(|_| Failure::Unknown)?;
    // An AAS registered under an inbox's name would have its MQTT topic be
    // that inbox: everything sent to it would come straight back.
    if broker_core::loop_guard::is_broker(&id) {
        return Err(Failure::Rejected(format!("{id:?} is the broker's own inbox")));
    }
    let online = lease::is_online(&id);
    // Messages already waiting go first: a new one joins the queue.
    if !online && queue::len(&id) > 0 {
        return enqueue(&id, message);
    }
    match deliver_now(frame, receiver, &id, online, message, budget) {
        Ok(()) => Ok(Delivered::Now),
        Err(Failure::Undeliverable(_)) if !online => enqueue(&id, message),
        Err(e) => Err(e),
    }
}

fn enqueue(id: &str, message: &str) -> Result<Delivered, Failure> {
    match queue::push(id, message) {
        Ok(()) => Ok(Delivered::Queued),
        Err(QueueError::Full(max)) => Err(Failure::Undeliverable(format!("{id:?} is offline and its queue is full ({max} messages)"))),
        Err(QueueError::Storage) => Err(Failure::Undeliverable(format!("{id:?} is offline and its queue cannot be written"))),
    }
}

/// Deliver `id`'s queued messages in order (after a heartbeat or a
/// registration brought it back); expired ones go back to their senders as
/// error messages.
pub fn drain_queue(id: &str) {
    // One budget for the batch: what does not fit waits for the next heartbeat.
    let budget = Budget::start();
    queue::drain(id, |queued| match queued {
        Queued::Deliver(message) => {
            let Some(frame) = serde_json::from_str::<Value>(&message).ok().and_then(|v| Frame::parse(&v).ok()) else {
                return true; // cannot be parsed any more: nothing to deliver
            };
            budget.allows(0) && deliver_now(&frame, id, id, true, &message, &budget).is_ok()
        }
        Queued::Expired(message) => {
            tell_expired(id, &message, &budget);
            true
        }
    });
}

/// The liveness sweep's care of an offline receiver's queue: the messages
/// that expired go back to their senders as E/504 errors, and the queue of
/// an AAS whose descriptor is gone is dropped with it (a registry DELETE
/// does not reach the broker's bucket). Bounded per call (`queue::expire`).
pub fn tend_queue(id: &str, budget: &Budget) {
    if queue::len(id) == 0 {
        return;
    }
    if let Err(RegistryError::NotFound(_)) = shells::resolve(id) {
        let dropped = queue::clear(id);
        crate::lease::remove(id);
        log(Level::Warn, "broker", &format!("{id:?} is no longer registered: {dropped} queued messages for it dropped"));
        return;
    }
    queue::expire(id, |message| tell_expired(id, &message, budget));
}

/// Tell the sender of `message` (queued for `id`) that it expired, unless
/// it is an answer itself (an error or an ack is not answered in turn).
fn tell_expired(id: &str, message: &str, budget: &Budget) {
    let frame = serde_json::from_str::<Value>(message).ok().and_then(|v| Frame::parse(&v).ok());
    if let Some(frame) = frame.filter(|f| broker_core::loop_guard::may_answer_with_error(&f.message_type)) {
        let reply = error_reply(&frame, "504", &format!("message for {id:?} expired while it was offline"));
        notify_sender(&frame, &reply.message, budget);
    }
}

/// Send an answer to the sender of `frame` through routing (the sender is
/// not on the line any more).
fn notify_sender(frame: &Frame, answer: &str, budget: &Budget) {
    let Some(reply) = serde_json::from_str::<Value>(answer).ok().and_then(|v| Frame::parse(&v).ok()) else { return };
    let delivered = shells::resolve(&frame.sender_id)
        .is_ok_and(|id| deliver_now(&reply, &frame.sender_id, &id, true, answer, budget).is_ok());
    if !delivered {
        log(Level::Warn, "broker", &format!("could not tell {:?} that its message expired", frame.sender_id));
    }
}

/// Deliver to the registered AAS `id` (already resolved) through the policy.
fn deliver_now(frame: &Frame, receiver: &str, id: &str, online: bool, message: &str, budget: &Budget) -> Result<(), Failure> {
    let descriptor: Value = shells::get(&id)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or(Failure::Unknown)?;
    let mqtt_topic = frame::topic_for(&id);
    let info = ReceiverInfo {
        endpoints: communication_endpoints(&descriptor, &mqtt_topic),
        mqtt_topic,
        online,
        id: id.to_string(),
    };
    let summary = FrameSummary {
        message_type: frame.message_type.clone(),
        sender: frame.sender_id.clone(),
        receiver: receiver.to_string(),
        reply_to: frame.reply_to.clone(),
    };
    policy_link::select().map_err(|e| Failure::Misconfigured(e.to_string()))?;
    let endpoints = match policy::route(&summary, &info) {
        Decision::Deliver(endpoints) => endpoints,
        Decision::Reject(why) => return Err(Failure::Rejected(why)),
    };
    let mut last = String::from("the routing policy gave no endpoint");
    // Only when every endpoint's address is refused (--delivery-allow) is the
    // failure final: queueing for a later try would never deliver it.
    let mut only_bad_addresses = !endpoints.is_empty();
    for endpoint in &endpoints {
        if !budget.allows(0) {
            last = format!("{last}; no time left to try {}", endpoint.address);
            break;
        }
        match deliver_with_retries(endpoint, message.as_bytes(), budget) {
            Ok(()) => return Ok(()),
            Err(failed) => {
                only_bad_addresses &= failed.bad_address;
                last = failed.why;
            }
        }
    }
    Err(if only_bad_addresses { Failure::BadAddress(last) } else { Failure::Undeliverable(last) })
}

/// Why a delivery to one endpoint failed.
struct Failed {
    why: String,
    /// The address is refused or malformed: no retry can succeed.
    bad_address: bool,
}

fn describe(e: &DeliveryError) -> String {
    match e {
        DeliveryError::Unreachable(s) => format!("unreachable: {s}"),
        DeliveryError::Rejected(s) => format!("rejected: {s}"),
        DeliveryError::BadAddress(s) => format!("bad address: {s}"),
    }
}

fn deliver_with_retries(endpoint: &Endpoint, payload: &[u8], budget: &Budget) -> Result<(), Failed> {
    let mut attempt = 0;
    loop {
        match outbound::deliver(endpoint, payload) {
            Ok(()) => return Ok(()),
            Err(DeliveryError::BadAddress(s)) => {
                return Err(Failed { why: format!("bad address {}: {s}", endpoint.address), bad_address: true })
            }
            Err(e) => {
                let why = format!("{} after {} attempts: {}", endpoint.address, attempt + 1, describe(&e));
                if attempt >= BACKOFF_MS.len() || !budget.allows(BACKOFF_MS[attempt]) {
                    log(Level::Warn, "broker", &format!("delivery failed: {why}"));
                    return Err(Failed { why, bad_address: false });
                }
                clock::sleep_ms(BACKOFF_MS[attempt]);
                attempt += 1;
            }
        }
    }
}

/// Deliver to every registered AAS but the sender; failures are logged.
/// One budget for the whole broadcast: once it is spent, receivers not yet
/// tried are skipped (counted in one warning), so a broadcast among many
/// unreachable AAS ends in bounded time.
fn broadcast(frame: &Frame, message: &str) {
    let budget = Budget::start();
    let mut skipped = 0u64;
    for_each_registered(|id| {
        if id == frame.sender_id {
            return;
        }
        if !budget.allows(0) {
            skipped += 1;
            return;
        }
        if deliver_to(frame, &id, message, &budget).is_err() {
            log(Level::Warn, "broker", &format!("broadcast to {id:?} failed"));
        }
    });
    if skipped > 0 {
        log(Level::Warn, "broker", &format!("broadcast {:?} ran out of time: {skipped} receivers not tried", frame.message_id));
    }
}

/// Call `f` with the id of every registered AAS, in registration order.
/// Pages are bounded in bytes by the registry; only each descriptor's `id`
/// is decoded (the rest is skipped, not built).
pub fn for_each_registered(mut f: impl FnMut(String)) {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: String,
    }
    let mut cursor = None;
    loop {
        let filter = ShellFilter { asset_kind: None, asset_type: None, asset_ids: Vec::new() };
        let Ok(page) = shells::list(&filter, &PageRequest { limit: Some(1_000), cursor: cursor.take() }) else { return };
        for item in &page.items {
            if let Ok(IdOnly { id }) = serde_json::from_str::<IdOnly>(item) {
                f(id);
            }
        }
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return,
        }
    }
}
