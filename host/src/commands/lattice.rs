//! The lattice target of `twinlattice account create` and `demo seed`: the
//! twins component's `twinlattice:twins/admin@0.1.0` export, invoked over
//! wRPC on NATS as `wash call` invokes a component (subject prefix
//! `{lattice}.{component id}`; wadm names the `twins` component of the
//! application `twinlattice` `twinlattice-twins`).
//!
//! The calls run on the CLI's current-thread runtime (`main` builds one for
//! these commands): wrpc-transport-nats 0.29 routes every reply through one
//! demultiplexing task that may drop a reply arriving before that task has
//! seen the invocation's subscription, which happens on a multi-threaded
//! runtime (see lattice/host/src/main.rs) and leaves the call waiting
//! forever. On one thread the subscription, queued before the invocation is
//! published, is always handled first. A timeout still bounds every call.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::time::Duration;

mod bindings {
    wit_bindgen_wrpc::generate!({
        world: "admin-client",
        path: "wit-lattice",
        // wit-parser 0.220 (under wit-bindgen-wrpc 0.10) fails to resolve
        // wasi:http 0.2.6 (which the twins package depends on) when its
        // @unstable `send-informational` is left out: "found a reference
        // to a type which is excluded". Nothing here uses wasi:http.
        features: ["informational-outbound-responses"],
        // The admin interface lives in another package (twinlattice:twins).
        generate_all,
    });
}

use bindings::twinlattice::twins::admin;

/// How long one invocation may take before the CLI gives up on it. A
/// wasmCloud host's own calls to providers time out at 10 s by default too.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where on which lattice the twins component is.
pub struct Lattice<'a> {
    pub nats_url: &'a str,
    pub lattice: &'a str,
    pub component: &'a str,
}

/// The admin call to make.
pub enum AdminCall {
    CreateAccount(Option<String>),
    SeedDemo,
}

impl AdminCall {
    fn name(&self) -> &'static str {
        match self {
            AdminCall::CreateAccount(_) => "create-account",
            AdminCall::SeedDemo => "seed-demo",
        }
    }

    /// Whether repeating the call after a lost answer is harmless:
    /// `seed-demo` finds what an earlier call seeded; a repeated
    /// `create-account` could make a second account.
    fn idempotent(&self) -> bool {
        matches!(self, AdminCall::SeedDemo)
    }
}

/// Make `call` on the twins component of `at`: the success value as the
/// same JSON the other targets print, or the admin error's text.
pub async fn call(at: &Lattice<'_>, call: AdminCall) -> Result<Result<Value, String>> {
    if tokio::runtime::Handle::current().runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
        bail!("internal error: the lattice client must run on a current-thread runtime");
    }
    let nats = tokio::time::timeout(
        CONNECT_TIMEOUT,
        async_nats::ConnectOptions::new()
            .name("twinlattice-cli")
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(at.nats_url),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out"))
    .and_then(|connected| connected.map_err(anyhow::Error::from))
    .with_context(|| format!("cannot connect to the lattice's NATS server at {} (is the lattice up?)", at.nats_url))?;
    let prefix = format!("{}.{}", at.lattice, at.component);
    let wrpc = wrpc_transport_nats::Client::new(nats, prefix, None)
        .await
        .context("cannot set up the wRPC client on NATS")?;

    let attempts = if call.idempotent() { 2 } else { 1 };
    for attempt in 1..=attempts {
        match tokio::time::timeout(CALL_TIMEOUT, invoke(&wrpc, &call)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => return Err(explain(e, at, &call)),
            Err(_) if attempt < attempts => {
                tracing::warn!(func = call.name(), "no answer within {} s; trying once more", CALL_TIMEOUT.as_secs());
            }
            Err(_) => {
                let unknown = if call.idempotent() { "" } else { " (it may or may not have run)" };
                bail!(
                    "{} on component `{}` of lattice `{}` got no answer within {} s{unknown}",
                    call.name(),
                    at.component,
                    at.lattice,
                    CALL_TIMEOUT.as_secs()
                );
            }
        }
    }
    bail!("{}: no attempt made", call.name())
}

async fn invoke(wrpc: &wrpc_transport_nats::Client, call: &AdminCall) -> Result<Result<Value, String>> {
    Ok(match call {
        AdminCall::CreateAccount(name) => {
            admin::create_account(wrpc, None, name.as_deref()).await?.map(|c| {
                object([
                    ("account", Value::String(c.account)),
                    ("user", Value::String(c.user)),
                    ("role", Value::String(c.role)),
                    ("secret", Value::String(c.secret)),
                ])
            })
        }
        AdminCall::SeedDemo => admin::seed_demo(wrpc, None).await?.map(|d| {
            object([
                ("account", Value::String(d.account)),
                ("twin", Value::String(d.twin)),
                ("identity", Value::String(d.identity)),
                ("meters", Value::Array(d.meters.into_iter().map(Value::String).collect())),
            ])
        }),
    }
    .map_err(|e| match e {
        admin::AdminError::Invalid(text) | admin::AdminError::Storage(text) => text,
    }))
}

/// A JSON object with the record's fields in WIT order, as the other
/// targets print it (`account::val_json`).
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())
}

/// A failed invocation in the operator's terms: nobody subscribed to the
/// component's subjects is the usual mistake (not deployed, another
/// lattice, another component id).
fn explain(e: anyhow::Error, at: &Lattice<'_>, call: &AdminCall) -> anyhow::Error {
    let nobody = e
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::NotConnected);
    if nobody {
        anyhow::anyhow!(
            "no component `{}` answers on lattice `{}` at {} (is the application deployed? \
             see `wash app status twinlattice`; --lattice-name and --component name it)",
            at.component,
            at.lattice,
            at.nats_url
        )
    } else {
        // A trap in the component (e.g. a store call before the state
        // provider is up) reaches the caller only as missing results; the
        // host's log has the component's side.
        e.context(format!(
            "{} on component `{}` of lattice `{}` failed (the wasmCloud host's log tells why)",
            call.name(),
            at.component,
            at.lattice
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_keep_wit_field_order_like_val_json() {
        use wasmtime::component::Val;
        let val = Val::Record(vec![
            ("account".into(), Val::String("a".into())),
            ("user".into(), Val::String("u".into())),
            ("role".into(), Val::String("r".into())),
            ("secret".into(), Val::String("s".into())),
        ]);
        let ours = object([
            ("account", Value::String("a".into())),
            ("user", Value::String("u".into())),
            ("role", Value::String("r".into())),
            ("secret", Value::String("s".into())),
        ]);
        assert_eq!(ours.to_string(), crate::commands::account::val_json(&val).to_string());
    }

    #[test]
    fn only_seeding_is_repeated() {
        assert!(AdminCall::SeedDemo.idempotent());
        assert!(!AdminCall::CreateAccount(None).idempotent());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unreachable_nats_server_is_a_clear_error() {
        // Port 9 (discard) on loopback: no NATS server listens there.
        let at = Lattice { nats_url: "nats://127.0.0.1:9", lattice: "default", component: "twinlattice-twins" };
        let e = call(&at, AdminCall::SeedDemo).await.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(e.contains("cannot connect to the lattice's NATS server at nats://127.0.0.1:9"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_multi_threaded_runtime_is_refused() {
        let at = Lattice { nats_url: "nats://127.0.0.1:9", lattice: "default", component: "twinlattice-twins" };
        let e = call(&at, AdminCall::CreateAccount(None)).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("current-thread runtime"), "{e}");
    }
}
