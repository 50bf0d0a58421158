//! `twinlattice:transport/outbound` for components: the bridges' delivery
//! (`twinlattice_bridges::delivery`), with the MQTT bridge's client.

use crate::bindings::outbound;
use crate::bindings::transport_types::{DeliveryError, Endpoint, Protocol};
use std::sync::Arc;
use twinlattice_bridges::delivery;
use wasmtime::component::{HasData, Linker};

/// What delivery needs from the host: the MQTT bridge's client, if any.
#[derive(Default)]
pub struct OutboundCtx {
    pub mqtt: Option<rumqttc::AsyncClient>,
}

pub struct OutboundView<'a> {
    pub ctx: &'a Arc<OutboundCtx>,
}

impl outbound::Host for OutboundView<'_> {
    async fn deliver(&mut self, to: Endpoint, payload: Vec<u8>) -> wasmtime::Result<Result<(), DeliveryError>> {
        let ctx = self.ctx.clone();
        let result = match to.protocol {
            Protocol::Http => delivery::deliver_http(&to.address, payload).await,
            Protocol::Coap => delivery::deliver_coap(&to.address, payload).await,
            Protocol::Mqtt => delivery::deliver_mqtt(ctx.mqtt.as_ref(), &to.address, payload).await,
        };
        Ok(result.map_err(|e| {
            tracing::debug!(address = %to.address, error = %e, "delivery attempt failed");
            match e {
                delivery::DeliveryError::Unreachable(s) => DeliveryError::Unreachable(s),
                delivery::DeliveryError::Rejected(s) => DeliveryError::Rejected(s),
                delivery::DeliveryError::BadAddress(s) => DeliveryError::BadAddress(s),
                other => DeliveryError::Unreachable(other.to_string()),
            }
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
