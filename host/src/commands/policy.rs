//! `twinlattice policy set`: swap the routing policy of a running host
//! through its admin endpoint.

use crate::runtime::policy_file;
use super::admin_client::{self, AdminAccess};
use anyhow::{Context, Result};
use bytes::Bytes;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct SetArgs {
    /// `preferred`, `failover`, or a path to a .wasm exporting
    /// twinlattice:routing/policy.
    policy: String,

    /// The host's admin endpoint.
    #[arg(long, env = "TWINLATTICE_ADMIN_URL", default_value = "http://127.0.0.1:9029")]
    admin: String,

    #[command(flatten)]
    access: AdminAccess,

    /// Where named policies are found (`policies/` inside it).
    #[arg(long, env = "TWINLATTICE_COMPONENTS_DIR", value_name = "DIR", default_value_os_t = crate::settings::default_components_dir())]
    components_dir: PathBuf,
}

pub async fn set(args: SetArgs) -> Result<ExitCode> {
    let file = policy_file(&args.components_dir, &args.policy);
    let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("policy").to_string();
    let headers = [("x-component-name", name.as_str()), ("content-type", "application/wasm")];
    let (status, body) = admin_client::send(&args.admin, &args.access, hyper::Method::PUT, "/admin/policy", &headers, Bytes::from(wasm)).await?;
    let ok = status.is_success();
    println!("{}", String::from_utf8_lossy(&body));
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
