//! `twinlattice account create` and `twinlattice demo seed`: the twins
//! component's `admin` interface, reached through a running host's admin
//! endpoint, in-process on a data directory no host is using, or over wRPC
//! on a wasmCloud lattice (`super::lattice`).

use super::lattice;
use crate::runtime::Runtime;
use crate::HostArgs;
use anyhow::{bail, Context, Result};
use super::admin_client::{self, AdminAccess};
use bytes::Bytes;
use std::path::PathBuf;
use std::process::ExitCode;
use wasmtime::component::Val;

pub const TWINS_ADMIN: &str = "twinlattice:twins/admin@0.1.0";

const DEFAULT_ADMIN: &str = "http://127.0.0.1:9029";

/// Where the admin call goes: one of --admin, --data-dir, --lattice.
#[derive(clap::Args)]
pub struct Target {
    /// A running embedded host's admin endpoint. The target when neither
    /// --data-dir nor --lattice is given; its default is
    /// $TWINLATTICE_ADMIN_URL, else http://127.0.0.1:9029.
    #[arg(long, value_name = "URL", conflicts_with_all = ["data_dir", "lattice"])]
    admin: Option<String>,

    #[command(flatten)]
    access: AdminAccess,

    /// Work on this data directory instead, in-process. No host may be
    /// running on it (the store allows one process at a time).
    #[arg(long, value_name = "DIR", conflicts_with = "lattice")]
    data_dir: Option<PathBuf>,

    /// Call the twins component on a wasmCloud lattice instead, over wRPC
    /// through this NATS server (e.g. nats://127.0.0.1:4222), as `wash call`
    /// does. The call times out after 10 s.
    #[arg(long, value_name = "NATS_URL")]
    lattice: Option<String>,

    /// With --lattice: the lattice's name.
    #[arg(long, env = "WASMCLOUD_LATTICE", default_value = "default")]
    lattice_name: String,

    /// With --lattice: the id of the component exporting
    /// twinlattice:twins/admin (wadm names the `twins` component of the
    /// application `twinlattice` `twinlattice-twins`).
    #[arg(long, value_name = "ID", default_value = "twinlattice-twins", requires = "lattice")]
    component: String,

    #[command(flatten)]
    runtime: HostArgs,
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The account's name.
    #[arg(long)]
    name: Option<String>,

    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct SeedArgs {
    #[command(flatten)]
    target: Target,
}

/// A component value as JSON (records become objects, variants their
/// payload).
pub fn val_json(v: &Val) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Val::String(s) => Value::String(s.clone()),
        Val::Bool(b) => Value::Bool(*b),
        Val::List(items) => Value::Array(items.iter().map(val_json).collect()),
        Val::Record(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), val_json(v))).collect()),
        Val::Option(o) => o.as_deref().map(val_json).unwrap_or(Value::Null),
        Val::Variant(case, payload) => {
            serde_json::json!({ "case": case, "value": payload.as_deref().map(val_json) })
        }
        other => Value::String(format!("{other:?}")),
    }
}

/// Call an `admin` function on a runtime: the success value as JSON, or
/// the admin error's text.
pub async fn call_admin(runtime: &Runtime, func: &str, params: &[Val]) -> Result<Result<serde_json::Value, String>> {
    let mut results = [Val::Bool(false)];
    runtime.call(TWINS_ADMIN, func, params, &mut results).await?;
    match &results[0] {
        Val::Result(Ok(Some(v))) => Ok(Ok(val_json(v))),
        Val::Result(Err(Some(e))) => Ok(Err(match val_json(e) {
            serde_json::Value::Object(o) => o.get("value").and_then(|v| v.as_str()).unwrap_or("failed").to_string(),
            other => other.to_string(),
        })),
        other => bail!("unexpected result {other:?}"),
    }
}

pub async fn create(args: CreateArgs) -> Result<ExitCode> {
    let name = args.name.clone();
    run(
        args.target,
        "create-account",
        "/admin/accounts",
        serde_json::json!({ "name": name }),
        vec![Val::Option(name.clone().map(|n| Box::new(Val::String(n))))],
        lattice::AdminCall::CreateAccount(name),
    )
    .await
}

pub async fn seed(args: SeedArgs) -> Result<ExitCode> {
    run(args.target, "seed-demo", "/admin/demo", serde_json::json!({}), Vec::new(), lattice::AdminCall::SeedDemo).await
}

async fn run(
    target: Target,
    func: &str,
    path: &str,
    body: serde_json::Value,
    params: Vec<Val>,
    lattice_call: lattice::AdminCall,
) -> Result<ExitCode> {
    let answer = if let Some(dir) = &target.data_dir {
        let options = target.runtime.offline_runtime(dir.clone(), true);
        let runtime = Runtime::start(&options).await?;
        call_admin(&runtime, func, &params).await?
    } else if let Some(nats_url) = &target.lattice {
        let at = lattice::Lattice { nats_url, lattice: &target.lattice_name, component: &target.component };
        lattice::call(&at, lattice_call).await?
    } else {
        let admin = target
            .admin
            .or_else(|| std::env::var("TWINLATTICE_ADMIN_URL").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| DEFAULT_ADMIN.to_string());
        post(&admin, &target.access, path, body).await?
    };
    match answer {
        Ok(v) => {
            println!("{v}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("twinlattice: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn post(admin: &str, access: &AdminAccess, path: &str, body: serde_json::Value) -> Result<Result<serde_json::Value, String>> {
    let headers = [("content-type", "application/json")];
    let (status, bytes) = admin_client::send(admin, access, hyper::Method::POST, path, &headers, Bytes::from(body.to_string())).await?;
    let ok = status.is_success();
    let value: serde_json::Value = serde_json::from_slice(&bytes).context("the admin endpoint answered no JSON")?;
    Ok(if ok {
        Ok(value)
    } else {
        Err(value.get("error").and_then(|e| e.as_str()).unwrap_or("failed").to_string())
    })
}
