//! `bridges-provider`: the I4.0 broker's protocol bridges as a wasmCloud v1
//! capability provider, over this crate's library (the same code the
//! embedded host runs in-process).
//!
//! - serves `twinlattice:transport/outbound` over wRPC: the broker
//!   component's deliveries, one attempt each over HTTP, CoAP or MQTT;
//! - runs the CoAP inbox and the MQTT bridge, and hands what they take in to
//!   the broker component named by the link `bridges -> broker`
//!   (`twinlattice:transport/inbound`), see [`broker_link`].
//!
//! It runs on one thread: the wRPC transport of this wasmCloud line
//! (wrpc-transport-nats 0.29) can drop a reply that arrives before its
//! subscription is registered when its demultiplexer runs on another worker
//! thread, and the provider is an invoker (of the broker) as well as a
//! server. On one thread tasks run in wake order and the race cannot occur.
//!
//! The host starts it with its host data (base64 JSON) on stdin; without
//! that it exits with an error (status 1).

mod broker_link;
mod settings;

mod bindings {
    wit_bindgen_wrpc::generate!({
        world: "provider",
        generate_all,
    });
}

use anyhow::Context as _;
use bindings::exports::twinlattice::transport::outbound;
use bindings::twinlattice::transport::types::{DeliveryError, Endpoint, Protocol};
use broker_link::BrokerLink;
use bytes::Bytes;
use settings::{Mqtt, Settings};
use std::sync::Arc;
use std::time::Duration;
use twinlattice_bridges::address_policy::AddressPolicy;
use twinlattice_bridges::{coap, coap_block1, delivery, embedded_mqtt, inbox, mqtt, mqtt_outbox};
use wasmcloud_provider_sdk::{
    get_connection, load_host_data, run_provider, serve_provider_exports, Context, LinkConfig, LinkDeleteInfo, Provider,
    ProviderInitConfig,
};

const NAME: &str = "bridges-provider";
/// How long start-up waits for the MQTT broker before going on without it
/// (the bridge keeps trying in the background).
const MQTT_CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Serves `outbound`; one clone per invocation.
#[derive(Clone)]
struct Exports {
    mqtt_outbox: Option<mqtt_outbox::Outbox>,
    policy: Arc<AddressPolicy>,
}

impl outbound::Handler<Option<Context>> for Exports {
    async fn deliver(
        &self,
        _cx: Option<Context>,
        to: Endpoint,
        payload: Bytes,
    ) -> anyhow::Result<Result<(), DeliveryError>> {
        let protocol = match to.protocol {
            Protocol::Http => inbox::Protocol::Http,
            Protocol::Coap => inbox::Protocol::Coap,
            Protocol::Mqtt => inbox::Protocol::Mqtt,
        };
        Ok(delivery::deliver(protocol, &to.address, payload.to_vec(), self.mqtt_outbox.as_ref(), &self.policy).await.map_err(|e| match e {
            delivery::DeliveryError::Unreachable(s) => DeliveryError::Unreachable(s),
            delivery::DeliveryError::Rejected(s) => DeliveryError::Rejected(s),
            delivery::DeliveryError::BadAddress(s) => DeliveryError::BadAddress(s),
        }))
    }
}

/// The SDK's side: config check and links. Only a link whose source is this
/// provider and whose interface is `twinlattice:transport/inbound` matters.
#[derive(Clone)]
struct BridgesProvider {
    broker: Arc<BrokerLink>,
}

fn is_inbound_link(config: &LinkConfig<'_>) -> bool {
    let (namespace, package, interfaces) = config.wit_metadata;
    namespace == "twinlattice" && package == "transport" && interfaces.iter().any(|i| i == "inbound")
}

impl Provider for BridgesProvider {
    async fn init(&self, config: impl ProviderInitConfig) -> anyhow::Result<()> {
        Settings::from_config(config.get_config())?;
        tracing::info!(provider = config.get_provider_id(), "bridges provider initialising");
        Ok(())
    }

    async fn receive_link_config_as_source(&self, config: LinkConfig<'_>) -> anyhow::Result<()> {
        if !is_inbound_link(&config) {
            tracing::warn!(target = config.target_id, link = config.link_name, "ignoring a link that is not twinlattice:transport/inbound");
            return Ok(());
        }
        self.broker.link(config.target_id).await?;
        tracing::info!(target = config.target_id, link = config.link_name, "inboxes now hand messages to this broker");
        Ok(())
    }

    async fn delete_link_as_source(&self, info: impl LinkDeleteInfo) -> anyhow::Result<()> {
        if self.broker.unlink(info.get_target_id()) {
            tracing::info!(target = info.get_target_id(), "broker link deleted; inboxes refuse messages until the next one");
        }
        Ok(())
    }
}

/// Connect the MQTT side: the inbox connection runs the bridge, the outbox
/// connection carries answers and deliveries. Returns the outbox client
/// and the embedded broker's ports, if it started one. `id_seed` names
/// this provider when no `mqtt_client_id` is configured.
async fn start_mqtt(settings: &Settings, broker: Arc<BrokerLink>, id_seed: &str) -> anyhow::Result<(Option<mqtt_outbox::Outbox>, Vec<u16>)> {
    let mut own_ports = Vec::new();
    let (host, port) = match &settings.mqtt {
        Mqtt::Off => {
            tracing::info!("no mqtt_host and no mqtt_embedded_address: the MQTT bridge is off");
            return Ok((None, Vec::new()));
        }
        Mqtt::Broker { host, port } => (host.clone(), *port),
        Mqtt::Embedded { address } => {
            let listening = embedded_mqtt::start(&address.ip().to_string(), address.port(), settings.max_body_bytes)?;
            tracing::info!(%listening, "embedded MQTT broker listening");
            own_ports = vec![listening.port()];
            (listening.ip().to_string(), listening.port())
        }
    };
    let inbox_id = settings.mqtt_client_id.clone().unwrap_or_else(|| mqtt::inbox_client_id(id_seed));
    let connections = mqtt::Connections::new(&host, port, settings.max_body_bytes, inbox_id);
    let outbox = connections.outbox();
    if connections.run(broker, settings.mqtt_share_group.clone(), MQTT_CONNECT_WAIT).await {
        tracing::info!(%host, port, "mqtt bridge connected");
    }
    Ok((Some(outbox), own_ports))
}

/// The first of `candidates` that can be bound.
async fn bind_coap(candidates: &[std::net::SocketAddr]) -> anyhow::Result<tokio::net::UdpSocket> {
    let mut last = None;
    for address in candidates {
        match tokio::net::UdpSocket::bind(address).await {
            Ok(socket) => return Ok(socket),
            Err(e) => {
                tracing::info!(%address, error = %e, "CoAP address taken; trying the next");
                last = Some(e);
            }
        }
    }
    Err(anyhow::anyhow!("cannot listen for CoAP on any of {candidates:?}: {last:?}"))
}

async fn run() -> anyhow::Result<()> {
    let host_data = load_host_data().context("cannot read host data from stdin (the wasmCloud host starts this provider and passes it)")?;
    twinlattice_provider_main::init_tracing(host_data.log_level.as_ref());
    let settings = Settings::from_config(&host_data.config).context("invalid provider config")?;
    tracing::info!(coap = ?settings.coap_addresses, mqtt = ?settings.mqtt, "starting");

    // Bind before announcing the provider: no free address fails start-up.
    let coap_socket = bind_coap(&settings.coap_addresses).await?;

    let broker = Arc::new(BrokerLink::new(settings.max_inflight, settings.broker_timeout));
    let shutdown = run_provider(BridgesProvider { broker: broker.clone() }, NAME)
        .await
        .context("provider start-up failed")?;

    let coap_address = coap_socket.local_addr()?;
    let coap_port = coap_address.port();
    tracing::info!(listening = %coap_address, "coap inbox listening");
    tokio::spawn(coap::serve(broker.clone(), coap_socket, coap_block1::Limits::new(settings.max_body_bytes)));
    // Stable across restarts, different for each provider on one MQTT
    // broker: the lattice, this provider's key, the CoAP address only it can
    // hold on this machine, the share group.
    let id_seed = format!(
        "{}/{}/{}/{}",
        host_data.lattice_rpc_prefix,
        host_data.provider_key,
        coap_address,
        settings.mqtt_share_group.as_deref().unwrap_or("")
    );
    let (mqtt_outbox, mqtt_ports) = start_mqtt(&settings, broker, &id_seed).await?;
    // The lattice's HTTP faces belong to the http-server provider, whose
    // ports this provider does not know: keep loopback out of
    // delivery_allow outside tests.
    let policy = Arc::new(AddressPolicy::new(settings.delivery_allow.clone()).with_own_ports(&mqtt_ports, &[coap_port]));

    let connection = get_connection();
    let wrpc = connection
        .get_wrpc_client(connection.provider_key())
        .await
        .context("cannot create the wRPC client")?;
    serve_provider_exports(&wrpc, Exports { mqtt_outbox, policy }, shutdown, bindings::serve)
        .await
        .context("serving the provider's exports failed")?;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> std::process::ExitCode {
    twinlattice_provider_main::main(NAME, twinlattice_provider_main::Runtime::CurrentThread, run())
}
