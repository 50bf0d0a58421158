//! A wasmCloud v1 host: `wasmcloud-host` 0.27 configured from the
//! `WASMCLOUD_*` environment variables that `wash up` and
//! `scripts/lattice.sh` set, run until Ctrl-C or SIGTERM.
//!
//! Read (all optional):
//! - `WASMCLOUD_NATS_HOST`/`_PORT` (127.0.0.1:4222): the lattice's NATS,
//!   for both control and RPC traffic;
//! - `WASMCLOUD_LATTICE` (`default`), `WASMCLOUD_JS_DOMAIN`;
//! - `WASMCLOUD_LABEL_<name>=<value>`: host labels (`WASMCLOUD_LABEL_site=a`),
//!   which wadm spreads and placements select on;
//! - `WASMCLOUD_HOST_SEED`: the host's nkey seed (else a fresh key);
//! - `WASMCLOUD_ALLOW_FILE_LOAD` (true): `file://` component and provider
//!   references, the only kind an offline lattice can load;
//! - `WASMCLOUD_EXPERIMENTAL_FEATURES`: comma-separated host feature flags
//!   (`builtin-http-server`, …);
//! - `WASMCLOUD_RPC_TIMEOUT_MS` (2000), `WASMCLOUD_MAX_EXECUTION_TIME_MS`,
//!   `WASMCLOUD_MAX_LINEAR_MEMORY` (bytes per component instance),
//!   `WASMCLOUD_PROV_SHUTDOWN_DELAY_MS`, `WASMCLOUD_HEARTBEAT_INTERVAL_MS`;
//! - `WASMCLOUD_WORKER_THREADS`: a multi-threaded runtime with that many
//!   workers instead of one thread (see `runtime`);
//! - `WASMCLOUD_LOG_LEVEL`/`RUST_LOG` for the log filter.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use wasmcloud_host::wasmbus::{Features, Host, HostConfig};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: FromStr>(name: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    var(name).map(|v| v.trim().parse::<T>().map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}"))).transpose()
}

fn config() -> Result<HostConfig> {
    let nats = format!(
        "nats://{}:{}",
        var("WASMCLOUD_NATS_HOST").unwrap_or_else(|| "127.0.0.1".into()),
        parsed::<u16>("WASMCLOUD_NATS_PORT")?.unwrap_or(4222)
    );
    let nats = url::Url::parse(&nats).with_context(|| format!("bad NATS address {nats}"))?;
    let labels: HashMap<String, String> = std::env::vars()
        .filter_map(|(k, v)| k.strip_prefix("WASMCLOUD_LABEL_").map(|name| (name.to_string(), v)))
        .collect();
    let features: Features = var("WASMCLOUD_EXPERIMENTAL_FEATURES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(Features::from)
        .sum();
    let host_key = var("WASMCLOUD_HOST_SEED")
        .map(|seed| nkeys::KeyPair::from_seed(&seed).context("WASMCLOUD_HOST_SEED is not an nkey seed"))
        .transpose()?
        .map(Arc::new);
    let mut config = HostConfig {
        ctl_nats_url: nats.clone(),
        rpc_nats_url: nats,
        lattice: var("WASMCLOUD_LATTICE").unwrap_or_else(|| "default".into()).into(),
        js_domain: var("WASMCLOUD_JS_DOMAIN"),
        labels,
        host_key,
        allow_file_load: parsed::<bool>("WASMCLOUD_ALLOW_FILE_LOAD")?.unwrap_or(true),
        experimental_features: features,
        ..HostConfig::default()
    };
    if let Some(ms) = parsed::<u64>("WASMCLOUD_RPC_TIMEOUT_MS")? {
        config.rpc_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = parsed::<u64>("WASMCLOUD_MAX_EXECUTION_TIME_MS")? {
        config.max_execution_time = Duration::from_millis(ms);
    }
    if let Some(bytes) = parsed::<u32>("WASMCLOUD_MAX_LINEAR_MEMORY")? {
        config.max_linear_memory = bytes;
    }
    if let Some(ms) = parsed::<u64>("WASMCLOUD_PROV_SHUTDOWN_DELAY_MS")? {
        config.provider_shutdown_delay = Some(Duration::from_millis(ms));
    }
    if let Some(ms) = parsed::<u64>("WASMCLOUD_HEARTBEAT_INTERVAL_MS")? {
        config.heartbeat_interval = Some(Duration::from_millis(ms));
    }
    Ok(config)
}

/// The host's async runtime. By default one thread: wRPC's NATS transport
/// (wrpc-transport-nats 0.29, which wasmcloud-host 0.27 uses) routes every
/// reply through one demultiplexing task that learns an invocation's reply
/// subjects from a command queue and `select!`s at random between that queue
/// and incoming messages; a reply handled before its subscription command is
/// dropped, and the call then waits for its handshake forever. On a
/// multi-threaded runtime that happens when a fast provider answers before
/// the task got its turn (measured here: 1 in a few hundred requests hung,
/// more with more workers). On one thread tasks run in the order they were
/// woken, so the command, queued before the invocation is published, is
/// always handled before the reply. `WASMCLOUD_WORKER_THREADS=N` gives a
/// multi-threaded runtime with N workers instead.
fn runtime() -> Result<tokio::runtime::Runtime> {
    let mut builder = match parsed::<usize>("WASMCLOUD_WORKER_THREADS")? {
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build().context("failed to start the async runtime")
}

fn main() -> Result<()> {
    runtime()?.block_on(run())
}

async fn run() -> Result<()> {
    let filter = var("RUST_LOG").or_else(|| var("WASMCLOUD_LOG_LEVEL")).unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let config = config()?;
    let labels = config.labels.clone();
    let (host, shutdown) = Host::new(config).await.context("failed to start the wasmCloud host")?;
    // One line on stdout, for scripts waiting on the host.
    println!("wasmcloud host ready (labels {labels:?})");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        // Stopped through the control interface (`wash stop host`).
        _ = host.stopped() => {}
    }
    // Graceful: providers and components are stopped and the lattice told.
    shutdown.await.context("the host did not shut down cleanly")
}
