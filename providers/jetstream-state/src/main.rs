//! `jetstream-state-provider`: the wasmCloud v1 capability provider over
//! the library core. It serves `wrpc:keyvalue/{store,atomics,batch}` (what
//! the host forwards a component's `wasi:keyvalue` imports to) and
//! `twinlattice:coordination/locks` over wRPC on the lattice.
//!
//! The host starts it with its host data (base64 JSON) on stdin; without
//! that it exits with an error (status 1).

use anyhow::Context as _;
use bytes::Bytes;
use jetstream_state::{KvError, LockError, Settings, State};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wasmcloud_provider_sdk::{
    get_connection, load_host_data, run_provider, serve_provider_exports, Context, HealthCheckRequest,
    HealthCheckResponse, Provider, ProviderInitConfig,
};

mod bindings {
    wit_bindgen_wrpc::generate!({
        world: "provider",
        generate_all,
    });
}

use bindings::exports::twinlattice::coordination::locks;
use bindings::exports::wrpc::keyvalue::{atomics, batch, store};

const NAME: &str = "jetstream-state-provider";

/// The one place library errors become WIT errors.
fn kv_error(op: &str, e: KvError) -> store::Error {
    match e {
        KvError::InvalidBucket { .. } | KvError::NoSuchStore { .. } => {
            tracing::warn!(op, error = %e, "keyvalue: no such store");
            store::Error::NoSuchStore
        }
        KvError::ReservedBucket { .. } => {
            tracing::warn!(op, error = %e, "keyvalue: access denied");
            store::Error::AccessDenied
        }
        e => {
            tracing::warn!(op, error = %e, "keyvalue operation failed");
            store::Error::Other(e.to_string())
        }
    }
}

fn lock_error(e: LockError) -> locks::LockError {
    tracing::warn!(error = %e, "lock acquire failed");
    locks::LockError::Unavailable(e.to_string())
}

/// Serves the exports; one clone per invocation.
#[derive(Clone)]
struct Exports {
    state: State,
}

type Cx = Option<Context>;

impl store::Handler<Cx> for Exports {
    async fn get(&self, _cx: Cx, bucket: String, key: String) -> anyhow::Result<Result<Option<Bytes>, store::Error>> {
        Ok(self.state.kv.get(&bucket, &key).await.map_err(|e| kv_error("get", e)))
    }

    async fn set(&self, _cx: Cx, bucket: String, key: String, value: Bytes) -> anyhow::Result<Result<(), store::Error>> {
        Ok(self.state.kv.set(&bucket, &key, value).await.map_err(|e| kv_error("set", e)))
    }

    async fn delete(&self, _cx: Cx, bucket: String, key: String) -> anyhow::Result<Result<(), store::Error>> {
        Ok(self.state.kv.delete(&bucket, &key).await.map_err(|e| kv_error("delete", e)))
    }

    async fn exists(&self, _cx: Cx, bucket: String, key: String) -> anyhow::Result<Result<bool, store::Error>> {
        Ok(self.state.kv.exists(&bucket, &key).await.map_err(|e| kv_error("exists", e)))
    }

    async fn list_keys(
        &self,
        _cx: Cx,
        bucket: String,
        cursor: Option<u64>,
    ) -> anyhow::Result<Result<store::KeyResponse, store::Error>> {
        Ok(self
            .state
            .kv
            .list_keys(&bucket, cursor)
            .await
            .map(|page| store::KeyResponse { keys: page.keys, cursor: page.cursor })
            .map_err(|e| kv_error("list-keys", e)))
    }
}

impl atomics::Handler<Cx> for Exports {
    async fn increment(&self, _cx: Cx, bucket: String, key: String, delta: u64) -> anyhow::Result<Result<u64, store::Error>> {
        Ok(self.state.kv.increment(&bucket, &key, delta).await.map_err(|e| kv_error("increment", e)))
    }
}

impl batch::Handler<Cx> for Exports {
    async fn get_many(
        &self,
        _cx: Cx,
        bucket: String,
        keys: Vec<String>,
    ) -> anyhow::Result<Result<Vec<Option<(String, Bytes)>>, store::Error>> {
        Ok(self.state.kv.get_many(&bucket, keys).await.map_err(|e| kv_error("get-many", e)))
    }

    async fn set_many(
        &self,
        _cx: Cx,
        bucket: String,
        items: Vec<(String, Bytes)>,
    ) -> anyhow::Result<Result<(), store::Error>> {
        Ok(self.state.kv.set_many(&bucket, items).await.map_err(|e| kv_error("set-many", e)))
    }

    async fn delete_many(&self, _cx: Cx, bucket: String, keys: Vec<String>) -> anyhow::Result<Result<(), store::Error>> {
        Ok(self.state.kv.delete_many(&bucket, keys).await.map_err(|e| kv_error("delete-many", e)))
    }
}

impl locks::Handler<Cx> for Exports {
    async fn acquire(&self, _cx: Cx, name: String, lease_ms: u32) -> anyhow::Result<Result<u64, locks::LockError>> {
        let lease = Duration::from_millis(u64::from(lease_ms));
        Ok(self.state.locks.acquire(&name, lease).await.map_err(lock_error))
    }

    async fn release(&self, _cx: Cx, name: String, token: u64) -> anyhow::Result<()> {
        // The interface has no error for release: an unreachable store
        // leaves the lock to its lease.
        if let Err(e) = self.state.locks.release(&name, token).await {
            tracing::warn!(lock = %name, error = %e, "lock release failed; the lease will free it");
        }
        Ok(())
    }
}

/// The SDK's side: init, health, shutdown. The exports are served apart
/// (`serve_provider_exports`); this only watches the state connection.
#[derive(Clone, Default)]
struct JetstreamStateProvider {
    client: Arc<OnceLock<async_nats::Client>>,
}

impl Provider for JetstreamStateProvider {
    async fn init(&self, config: impl ProviderInitConfig) -> anyhow::Result<()> {
        // Refuse a bad config before the host counts the provider as up.
        Settings::from_config(config.get_config())?;
        tracing::info!(provider = config.get_provider_id(), "jetstream-state provider initialising");
        Ok(())
    }

    async fn health_request(&self, _req: &HealthCheckRequest) -> anyhow::Result<HealthCheckResponse> {
        let state = self.client.get().map(|c| c.connection_state());
        let healthy = matches!(state, None | Some(async_nats::connection::State::Connected));
        Ok(HealthCheckResponse {
            healthy,
            message: (!healthy).then(|| format!("state NATS connection is {state:?}")),
        })
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        if let Some(client) = self.client.get() {
            if let Err(e) = client.flush().await {
                tracing::warn!(error = %e, "flushing the state connection at shutdown failed");
            }
        }
        Ok(())
    }
}

async fn connect_state(settings: &Settings) -> anyhow::Result<Option<async_nats::Client>> {
    let Some(url) = &settings.nats_url else { return Ok(None) };
    let options = match &settings.nats_creds_file {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .with_context(|| format!("cannot read NATS credentials {path}"))?,
        None => async_nats::ConnectOptions::new(),
    };
    let client = wasmcloud_provider_sdk::with_connection_event_logging(options)
        .name(NAME)
        .connect(url.as_str())
        .await
        .with_context(|| format!("cannot connect to the state NATS at {url}"))?;
    Ok(Some(client))
}

async fn run() -> anyhow::Result<()> {
    let host_data = load_host_data().context("cannot read host data from stdin (the wasmCloud host starts this provider and passes it)")?;
    twinlattice_provider_main::init_tracing(host_data.log_level.as_ref());
    let settings = Settings::from_config(&host_data.config).context("invalid provider config")?;
    tracing::info!(
        bucket_prefix = %settings.bucket_prefix,
        locks_bucket = %settings.locks_bucket,
        replicas = settings.replicas,
        nats_url = settings.nats_url.as_deref().unwrap_or("(lattice connection)"),
        "starting"
    );

    let provider = JetstreamStateProvider::default();
    let shutdown = run_provider(provider.clone(), NAME).await.context("provider start-up failed")?;
    let connection = get_connection();
    let client = match connect_state(&settings).await? {
        Some(client) => client,
        None => (*connection.nats).clone(),
    };
    let _ = provider.client.set(client.clone());
    let state = State::new(client, &settings);

    let wrpc = connection
        .get_wrpc_client(connection.provider_key())
        .await
        .context("cannot create the wRPC client")?;
    serve_provider_exports(&wrpc, Exports { state }, shutdown, bindings::serve)
        .await
        .context("serving the provider's exports failed")?;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> std::process::ExitCode {
    twinlattice_provider_main::main(NAME, twinlattice_provider_main::Runtime::MultiThread, run())
}
