//! The `preferred` routing policy (the RIC's rule, with `replyTo` honoured):
//!
//! 1. `replyTo` names a protocol (`RESTAPI`/`HTTP`, `COAP`, `MQTT`) and the
//!    receiver can be reached over it → that protocol;
//! 2. otherwise the receiver's first `communication` endpoint;
//! 3. otherwise MQTT, on the topic derived from the receiver's id.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/routing",
        world: "routing-policy",
        generate_all,
    });
}

use bindings::exports::twinlattice::routing::policy::{Decision, FrameSummary, Guest, ReceiverInfo};
use bindings::twinlattice::transport::types::{Endpoint, Protocol};

fn protocol_named(name: &str) -> Option<Protocol> {
    match name.to_ascii_uppercase().as_str() {
        "RESTAPI" | "HTTP" | "HTTPS" => Some(Protocol::Http),
        "COAP" => Some(Protocol::Coap),
        "MQTT" => Some(Protocol::Mqtt),
        _ => None,
    }
}

fn mqtt(receiver: &ReceiverInfo) -> Endpoint {
    Endpoint { protocol: Protocol::Mqtt, address: receiver.mqtt_topic.clone() }
}

struct Component;

impl Guest for Component {
    fn route(frame: FrameSummary, receiver: ReceiverInfo) -> Decision {
        if let Some(wanted) = frame.reply_to.as_deref().and_then(protocol_named) {
            if wanted == Protocol::Mqtt {
                return Decision::Deliver(vec![mqtt(&receiver)]);
            }
            if let Some(e) = receiver.endpoints.iter().find(|e| e.protocol == wanted) {
                return Decision::Deliver(vec![e.clone()]);
            }
        }
        match receiver.endpoints.first() {
            Some(e) => Decision::Deliver(vec![e.clone()]),
            None => Decision::Deliver(vec![mqtt(&receiver)]),
        }
    }
}

bindings::export!(Component with_types_in bindings);
