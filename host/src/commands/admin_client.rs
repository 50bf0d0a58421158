//! The CLI's side of the admin endpoint: one request, with the token that
//! `serve` wrote to its data directory (see `admin_auth`).

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;

/// Which admin endpoint, and the token file of the host behind it.
#[derive(clap::Args, Clone)]
pub struct AdminAccess {
    /// The token file of the host behind --admin (`serve` writes
    /// `admin.token` into its data directory, readable by its owner only).
    /// Default: $TWINLATTICE_DATA_DIR/admin.token, else ./data/admin.token.
    #[arg(long, env = "TWINLATTICE_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
}

impl AdminAccess {
    fn token(&self) -> Result<String> {
        let file = self.admin_token_file.clone().unwrap_or_else(crate::admin_auth::default_token_file);
        crate::admin_auth::read_token(&file)
    }
}

/// Send `method path` with `body` to the admin endpoint at `admin` (a URL);
/// the answer's status and body.
pub async fn send(
    admin: &str,
    access: &AdminAccess,
    method: hyper::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(hyper::StatusCode, Bytes)> {
    let uri: hyper::Uri = format!("{}{path}", admin.trim_end_matches('/')).parse().context("bad --admin URL")?;
    let authority = uri.authority().context("--admin needs host:port")?.clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .with_context(|| format!("cannot reach the admin endpoint {admin} (is a host running? or use --data-dir)"))?;
    // Read after connecting, so "no host there" is what a missing host says.
    let token = access.token()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(uri.path())
        .header("host", authority.as_str())
        .header("authorization", format!("Bearer {token}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender.send_request(request.body(Full::new(body))?).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}
