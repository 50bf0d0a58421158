//! `twinlattice:transport/outbound` for components: the bridges' delivery
//! (`twinlattice_bridges::delivery`), with the MQTT bridge's client.

use crate::bindings::outbound;
use crate::bindings::transport_types::{DeliveryError, Endpoint, Protocol};
use std::sync::Arc;
use twinlattice_bridges::{delivery, inbox as bridges};
use wasmtime::component::{HasData, Linker};

/// What delivery needs from the host: the MQTT bridge's outbox, if any, and
/// which addresses deliveries may reach.
#[derive(Default)]
pub struct OutboundCtx {
    pub mqtt: Option<twinlattice_bridges::mqtt_outbox::Outbox>,
    pub policy: twinlattice_bridges::address_policy::AddressPolicy,
}

pub struct OutboundView<'a> {
    pub ctx: &'a Arc<OutboundCtx>,
}

impl outbound::Host for OutboundView<'_> {
    async fn deliver(&mut self, to: Endpoint, payload: Vec<u8>) -> wasmtime::Result<Result<(), DeliveryError>> {
        let ctx = self.ctx.clone();
        let protocol = match to.protocol {
            Protocol::Http => bridges::Protocol::Http,
            Protocol::Coap => bridges::Protocol::Coap,
            Protocol::Mqtt => bridges::Protocol::Mqtt,
        };
        // A receiver may take seconds to answer: the call waits outside its
        // admission slot meanwhile (security review H5).
        let delivered = crate::runtime::admission::away(delivery::deliver(protocol, &to.address, payload, ctx.mqtt.as_ref(), &ctx.policy)).await;
        Ok(delivered.map_err(|e| match e {
            delivery::DeliveryError::Unreachable(s) => DeliveryError::Unreachable(s),
            delivery::DeliveryError::Rejected(s) => DeliveryError::Rejected(s),
            delivery::DeliveryError::BadAddress(s) => DeliveryError::BadAddress(s),
        }))
    }
}

struct HasOutbound;

impl HasData for HasOutbound {
    type Data<'a> = OutboundView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, f: fn(&mut T) -> OutboundView<'_>) -> wasmtime::Result<()> {
    outbound::add_to_linker::<_, HasOutbound>(linker, f)
}
