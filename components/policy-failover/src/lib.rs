//! The `failover` routing policy: the endpoint `preferred` would pick comes
//! first, then every other transport the receiver registered, in descriptor
//! order, and MQTT (its own topic) last; the broker tries them in order
//! until one accepts the message.

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

struct Component;

impl Guest for Component {
    fn route(frame: FrameSummary, receiver: ReceiverInfo) -> Decision {
        let mqtt = Endpoint { protocol: Protocol::Mqtt, address: receiver.mqtt_topic.clone() };
        let mut order: Vec<Endpoint> = Vec::new();
        if let Some(wanted) = frame.reply_to.as_deref().and_then(protocol_named) {
            match wanted {
                Protocol::Mqtt => order.push(mqtt.clone()),
                p => order.extend(receiver.endpoints.iter().filter(|e| e.protocol == p).cloned()),
            }
        }
        let same = |a: &Endpoint, b: &Endpoint| a.protocol == b.protocol && a.address == b.address;
        for e in receiver.endpoints.iter().chain(std::iter::once(&mqtt)) {
            if !order.iter().any(|o| same(o, e)) {
                order.push(e.clone());
            }
        }
        Decision::Deliver(order)
    }
}

bindings::export!(Component with_types_in bindings);
