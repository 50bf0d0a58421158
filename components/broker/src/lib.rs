//! The I4.0 message broker component. Every message that reaches an inbox
//! (HTTP, CoAP, MQTT bridges) comes here through
//! `twinlattice:transport/inbound.receive`:
//!
//! - `register` to the broker: the descriptor in `interactionElements[0]`
//!   is stored in the registry (created or renewed; validated there) and
//!   acknowledged with a `registerack` carrying a StatusResponse;
//! - `HeartBeat`: the sender's lease is renewed and a `HeartBeatAck` sent
//!   (negative for an AAS the registry does not know);
//! - anything else is routed to `frame.receiver` (or broadcast) through the
//!   routing policy and the bridges' `outbound.deliver`, with retries; an
//!   unknown receiver or a delivery that finally fails produces an error
//!   message for the sender.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/broker",
        world: "broker-component",
        generate_all,
    });
}

mod clock;
mod frame;
mod lease;
mod descriptor_liveness;
mod queue;
mod policy_link;
mod route;

use bindings::exports::twinlattice::broker::liveness::{self, AasStatus};
use bindings::exports::twinlattice::transport::inbound::{self, BadInput, Envelope, Reply};
use bindings::twinlattice::registry::shells;
use bindings::twinlattice::registry::types::{Dialect, Error as RegistryError, PutOutcome};
use bindings::wasi::logging::logging::{log, Level};
use bindings::wasi::random::random;
use broker_core::loop_guard::{self, Verdict};
use frame::{answer, status_response, Frame, Me, HEARTBEAT, REGISTRATION};
use serde_json::Value;

fn new_message_id(kind: &str) -> String {
    format!("{kind}_{:016x}", random::get_random_u64())
}

fn reply_to(frame: &Frame, message: Value) -> Reply {
    Reply { message: message.to_string(), reply_topic: frame::topic_for(&frame.sender_id) }
}

/// An error I4.0 message for `frame`'s sender.
pub fn error_reply(frame: &Frame, code: &str, text: &str) -> Reply {
    let message = answer(
        frame,
        Me { id: "VWS_RIC", role: "MessageBroker" },
        "error",
        new_message_id("error"),
        None,
        None,
        vec![status_response("E", code, text)],
    );
    reply_to(frame, message)
}

fn register(frame: &Frame) -> Reply {
    let ack = |status: &str, code: &str, text: &str| {
        let message = answer(
            frame,
            Me { id: "VWS_RIC", role: "RegistryHandler" },
            "registerack",
            new_message_id("registerack"),
            Some(REGISTRATION),
            None,
            vec![status_response(status, code, text)],
        );
        reply_to(frame, message)
    };
    const MALFORMED: &str = "The syntax of the passed Asset Administration Shell descriptor is not valid or malformed request";
    let Some(descriptor) = frame.interaction_elements.first().filter(|d| d.is_object()) else {
        return ack("E", "400", &format!("{MALFORMED}: the register message carries no descriptor"));
    };
    let dialect = if descriptor.get("identification").is_some() { Dialect::Ric } else { Dialect::V3 };
    let Some(id) = frame::party_id(descriptor) else {
        return ack("E", "400", &format!("{MALFORMED}: the descriptor has no id"));
    };
    match shells::put(&id, &descriptor.to_string(), dialect) {
        Ok(outcome) => {
            // The put above wrote the sender's descriptor as sent: what it
            // shows is unknown, so the liveness extension is written again.
            let renewed = lease::renew(&id, false);
            descriptor_liveness::mark(&id, true, renewed.as_ref());
            route::drain_queue(&id);
            if outcome == PutOutcome::Replaced {
                ack("S", "200", "The Asset Administration Shell's descriptor registration is successfully renewed")
            } else {
                ack("S", "200", "The Asset Administration Shell's descriptor registration is successful")
            }
        }
        Err(RegistryError::Invalid(violations)) => {
            let list: Vec<String> = violations.iter().map(|v| format!("{}: {}", if v.pointer.is_empty() { "/" } else { &v.pointer }, v.reason)).collect();
            ack("E", "400", &format!("{MALFORMED}: {}", list.join("; ")))
        }
        Err(RegistryError::Malformed(e)) => ack("E", "400", &format!("{MALFORMED}: {}", e.message)),
        Err(e) => ack("E", "500", &format!("Unexpected Internal Server Error: {e:?}")),
    }
}

fn heartbeat(frame: &Frame) -> Reply {
    let known = shells::resolve(&frame.sender_id).ok();
    let elements = match &known {
        Some(id) => {
            let renewed = lease::renew(id, true);
            descriptor_liveness::mark(id, true, renewed.as_ref());
            route::drain_queue(id);
            Vec::new()
        }
        None => vec![status_response("S", "200", "The AAS is not registered, please provide descriptors")],
    };
    let message = answer(
        frame,
        Me { id: "AASpillarbox", role: "HeartBeatHandler" },
        "HeartBeatAck",
        new_message_id("HeartBeatAck"),
        Some(HEARTBEAT),
        Some("AASHeartBeatHandler"),
        elements,
    );
    reply_to(frame, message)
}

struct Component;

impl inbound::Guest for Component {
    fn receive(envelope: Envelope) -> Result<Option<Reply>, BadInput> {
        let message: Value = serde_json::from_str(&envelope.message).map_err(|e| BadInput {
            reason: format!("the message is not JSON: {e}"),
            reply: None,
        })?;
        let frame = Frame::parse(&message).map_err(|bad| {
            let reason = format!("not an I4.0 message: {}", bad.reason);
            // Not even a broken answer may be answered: no error ping-pong.
            let answerable = bad.frame.get("type").and_then(Value::as_str).is_none_or(loop_guard::may_answer_with_error)
                && !bad.sender.as_ref().and_then(frame::party_id).is_some_and(|id| loop_guard::is_broker(&id));
            BadInput {
                reply: bad.sender.filter(|_| answerable).map(|s| error_reply(&frame::partial_frame(s, &bad.frame), "400", &reason)),
                reason,
            }
        })?;
        let hops = match loop_guard::judge(&message, &frame.sender_id) {
            Verdict::Handle { hops } => hops,
            Verdict::FromMyself => {
                log(Level::Warn, "broker", &format!("dropped a {:?} message whose sender is the broker itself", frame.message_type));
                return Ok(None);
            }
            Verdict::TooManyHops { hops } => {
                log(Level::Warn, "broker", &format!("refused message {:?} from {:?}: it passed the broker {hops} times", frame.message_id, frame.sender_id));
                let reply = error_reply(&frame, "508", &format!("loop detected: the message passed the broker {hops} times"));
                return Ok(Some(reply).filter(|_| loop_guard::may_answer_with_error(&frame.message_type)));
            }
        };
        let for_broker = frame.receiver_id.as_deref().is_some_and(loop_guard::is_broker);
        let reply = match frame.message_type.as_str() {
            "HeartBeat" => Some(heartbeat(&frame)),
            "register" if for_broker => Some(register(&frame)),
            _ if for_broker => Some(error_reply(
                &frame,
                "400",
                &format!("the broker handles register and HeartBeat, not {:?}", frame.message_type),
            )),
            _ => route::route(&frame, &loop_guard::forwarded(message, hops)),
        };
        // Whatever went wrong with an answer (an error, an ack) stays
        // unanswered: its sender would only answer back.
        Ok(reply.filter(|_| loop_guard::may_answer_with_error(&frame.message_type)))
    }
}

impl liveness::Guest for Component {
    fn status() -> Vec<AasStatus> {
        let mut out = Vec::new();
        let now = clock::now_ms();
        route::for_each_registered(|id| {
            let lease = lease::get(&id);
            out.push(AasStatus {
                online: lease.as_ref().is_some_and(|l| l.expires_ms > now),
                last_heartbeat: lease.as_ref().map(|l| clock::rfc3339(l.last_ms)),
                lease_expires: lease.as_ref().map(|l| clock::rfc3339(l.expires_ms)),
                id,
            });
        });
        out
    }

    fn sweep() -> u32 {
        descriptor_liveness::sweep()
    }
}

bindings::export!(Component with_types_in bindings);
