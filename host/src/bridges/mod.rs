//! The protocol bridges of the I4.0 broker, run in-process: each receives
//! messages in its protocol, hands them to the broker component
//! (`twinlattice:transport/inbound`) and answers in its protocol. HTTP's
//! inbox is the gateway component's `POST /i40commu`.

pub mod coap;
pub mod embedded_mqtt;
pub mod inbound;
pub mod mqtt;
