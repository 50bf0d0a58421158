//! The I4.0 broker's protocol bridges, as a library: the CoAP inbox
//! (`coap`), the MQTT bridge (`mqtt`), an embeddable MQTT broker
//! (`embedded_mqtt`) and delivery over HTTP, CoAP and MQTT (`delivery`).
//! They hand messages to an [`inbox::Inbox`]: the embedded host runs them
//! in-process with itself as the inbox; the `bridges-provider` binary
//! (feature `provider`, `src/provider/`) is the lattice form, a wasmCloud v1
//! capability provider whose inbox is the broker component over wRPC.

pub mod address_policy;
pub mod busy_reply;
pub mod coap;
pub mod coap_block1;
pub mod coap_exchanges;
pub mod coap_rate;
pub mod coap_separate;
pub mod delivery;
pub mod embedded_mqtt;
pub mod inbox;
pub mod mqtt;
pub mod mqtt_acks;
pub mod mqtt_outbox;
