//! `twinlattice policy set`: swap the routing policy of a running host
//! through its admin endpoint.

use crate::runtime::policy_file;
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
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

    /// Where named policies are found (`policies/` inside it).
    #[arg(long, env = "TWINLATTICE_COMPONENTS_DIR", value_name = "DIR", default_value_os_t = crate::settings::default_components_dir())]
    components_dir: PathBuf,
}

pub async fn set(args: SetArgs) -> Result<ExitCode> {
    let file = policy_file(&args.components_dir, &args.policy);
    let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("policy").to_string();
    let uri: hyper::Uri = format!("{}/admin/policy", args.admin.trim_end_matches('/')).parse().context("bad --admin URL")?;
    let authority = uri.authority().context("--admin needs host:port")?.clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .with_context(|| format!("cannot reach the admin endpoint {}", args.admin))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::put(uri.path())
        .header("host", authority.as_str())
        .header("x-component-name", &name)
        .header("content-type", "application/wasm")
        .body(Full::new(Bytes::from(wasm)))?;
    let response = sender.send_request(request).await?;
    let ok = response.status().is_success();
    let body = response.into_body().collect().await?.to_bytes();
    println!("{}", String::from_utf8_lossy(&body));
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
