//! `twinlattice serve`: the embedded host with every component, the HTTP
//! face, and the broker's CoAP and MQTT bridges.

use twinlattice_bridges as bridges;
use crate::capabilities::outbound::OutboundCtx;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::{http_server, settings, ServeArgs};
use anyhow::{Context, Result};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long start-up waits for the MQTT broker before going on without it
/// (the bridge keeps trying in the background).
const MQTT_CONNECT_WAIT: Duration = Duration::from_secs(5);

fn say(line: String) -> Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let heartbeat_ttl_secs = args.heartbeat_ttl_secs.unwrap_or(3 * args.heartbeat_interval_secs).max(1);
    let mut config = vec![
        ("max-body-bytes".to_string(), args.max_body_bytes.to_string()),
        ("heartbeat-ttl-secs".to_string(), heartbeat_ttl_secs.to_string()),
    ];
    config.extend(settings::component_config_from_env());

    // The MQTT broker: the configured one, else an embedded one, else none.
    let mut own_tcp_ports = Vec::new();
    let broker_addr: Option<(String, u16)> = match (&args.mqtt_host, args.embedded_mqtt) {
        (Some(host), _) => Some((host.clone(), args.mqtt_port)),
        (None, true) => {
            let addr = bridges::embedded_mqtt::start(&args.bridges.mqtt_bind, args.mqtt_port, args.max_body_bytes)?;
            say(format!("twinlattice mqtt broker (embedded) listening on mqtt://{addr}"))?;
            own_tcp_ports.push(addr.port());
            Some((addr.ip().to_string(), addr.port()))
        }
        (None, false) => None,
    };
    // The inbox's MQTT session is resumed at the next start (messages sent
    // meanwhile wait in the MQTT broker): its client id is named after the
    // data directory, which one host at a time uses.
    let data_dir = std::fs::canonicalize(&args.data_dir).or_else(|_| std::path::absolute(&args.data_dir)).unwrap_or_else(|_| args.data_dir.clone());
    let inbox_id = bridges::mqtt::inbox_client_id(&data_dir.to_string_lossy());
    let mqtt = broker_addr.as_ref().map(|(host, port)| bridges::mqtt::Connections::new(host, *port, args.max_body_bytes, inbox_id));

    // Bound before the runtime starts: deliveries must know this host's own
    // ports, which none may go to (bridges::address_policy).
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    let coap = tokio::net::UdpSocket::bind((args.coap_host.as_str(), args.coap_port))
        .await
        .with_context(|| format!("cannot listen for CoAP on {}:{}", args.coap_host, args.coap_port))?;
    let admin = tokio::net::TcpListener::bind(("127.0.0.1", args.admin_port))
        .await
        .with_context(|| format!("cannot listen for admin requests on 127.0.0.1:{}", args.admin_port))?;
    own_tcp_ports.extend([addr.port(), admin.local_addr()?.port()]);
    let policy = bridges::address_policy::AddressPolicy::new(args.bridges.delivery_allow.0.clone())
        .with_own_ports(&own_tcp_ports, &[coap.local_addr()?.port()]);
    let outbound = Arc::new(OutboundCtx { mqtt: mqtt.as_ref().map(bridges::mqtt::Connections::outbox), policy });
    let options = RuntimeOptions {
        components_dir: args.runtime.components_dir.clone(),
        data_dir: args.data_dir.clone(),
        cache_dir: args.runtime.cache_dir.clone(),
        fsync: args.fsync,
        outbound,
        config,
        extra_components: vec![crate::runtime::policy_file(&args.runtime.components_dir, &args.runtime.policy)],
        http_routes: args.http_routes.clone(),
        http_entry: args.http_entry,
        call_deadline: Duration::from_millis(args.call_deadline_ms.max(1)),
    };
    let runtime = Arc::new(Runtime::start(&options).await?);

    say(format!("twinlattice http listening on http://{addr}"))?;

    say(format!("twinlattice coap listening on coap://{}", coap.local_addr()?))?;
    let mut coap_limits = bridges::coap_block1::Limits::new(args.max_body_bytes);
    let per_second = args.coap_rate_per_ip.max(1);
    coap_limits.rate = bridges::coap_rate::RateLimits { per_second, burst: per_second.saturating_mul(2) };
    tokio::spawn(bridges::coap::serve(runtime.clone(), coap, coap_limits));

    let token = Arc::new(crate::admin_auth::AdminToken::create(&args.data_dir)?);
    say(format!("twinlattice admin listening on http://{}", admin.local_addr()?))?;
    tokio::spawn(crate::admin::serve(runtime.clone(), admin, token));

    match mqtt {
        Some(connections) => {
            let broker = broker_addr.as_ref().map(|(h, p)| format!("{h}:{p}")).unwrap_or_default();
            if connections.run(runtime.clone(), None, MQTT_CONNECT_WAIT).await {
                say(format!("twinlattice mqtt bridge connected to {broker}"))?
            } else {
                say(format!("twinlattice mqtt bridge connecting to {broker}"))?
            }
        }
        None => {
            tracing::info!("no MQTT broker configured (LIA_AAS_MQTT_HOST) and the embedded one is off; the MQTT bridge is off");
            say("twinlattice mqtt bridge disabled".into())?
        }
    }

    say(format!(
        "twinlattice ready in {} ms (components: {}; data: {})",
        started.elapsed().as_millis(),
        runtime.components().join(", "),
        args.data_dir.display()
    ))?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "ready");
    if runtime.serves(LIVENESS) {
        tokio::spawn(sweep_liveness(runtime.clone(), sweep_interval(heartbeat_ttl_secs)));
    }
    let limits = http_server::HttpLimits {
        max_body_bytes: args.max_body_bytes,
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms.max(1)),
        body_read_timeout: Duration::from_millis(args.body_read_timeout_ms.max(1)),
        max_connections_per_ip: args.max_connections_per_ip.max(1),
    };
    let server = tokio::spawn(http_server::serve(runtime, listener, limits));
    tokio::select! {
        result = server => { result??; }
        _ = shutdown_signal() => { tracing::info!("shutting down"); }
    }
    Ok(ExitCode::SUCCESS)
}

const LIVENESS: &str = "twinlattice:broker/liveness@0.1.0";

/// Half the heartbeat TTL, between 1 and 10 seconds: an AAS shows offline in
/// its descriptor at most that long after its lease ran out.
fn sweep_interval(ttl_secs: u64) -> Duration {
    Duration::from_millis((ttl_secs * 500).clamp(1_000, 10_000))
}

/// The broker's liveness sweep, periodically (a timer provider's job on a
/// lattice).
async fn sweep_liveness(runtime: Arc<Runtime>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let _permit = runtime.admit().await;
        let mut results = [wasmtime::component::Val::U32(0)];
        match runtime.call(LIVENESS, "sweep", &[], &mut results).await {
            Ok(()) => {
                if let wasmtime::component::Val::U32(n) = results[0] {
                    if n > 0 {
                        tracing::info!(changed = n, "liveness written to descriptors");
                    }
                }
            }
            Err(e) => tracing::warn!(error = ?e, "liveness sweep failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
