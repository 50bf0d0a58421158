//! Who may drive the admin endpoint.
//!
//! The admin endpoint can create accounts, bulk-load twins and swap
//! components, so binding it to 127.0.0.1 is not enough: a broker delivery
//! (SSRF), a web page in a local browser (CSRF, DNS rebinding) or another
//! local user can all reach loopback. Three checks close those paths:
//!
//! - a **token** that `serve` writes at start to `<data-dir>/admin.token`,
//!   readable by the owner only (mode 0600): the CLI reads it and sends it
//!   as `Authorization: Bearer <token>`; other local users cannot read it,
//!   and a delivery or a page cannot know it;
//! - the **`Host`** header must name a loopback address (DNS rebinding
//!   sends the attacker's host name);
//! - no **`Origin`** header at all: browsers send one on cross-origin
//!   requests, and no legitimate admin client is a browser.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The token file's name inside the data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// Why a request to the admin endpoint is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the Host header must name a loopback address")]
    ForeignHost,
    #[error("browser requests (with an Origin header) are not accepted")]
    BrowserOrigin,
    #[error("missing or wrong admin token (Authorization: Bearer <token from {TOKEN_FILE}>)")]
    BadToken,
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::ForeignHost | Refusal::BrowserOrigin => 403,
            Refusal::BadToken => 401,
        }
    }
}

/// The secret the admin endpoint expects, made fresh at every start.
pub struct AdminToken(String);

impl AdminToken {
    /// A new random token, written to `data_dir/admin.token` with mode 0600
    /// (replacing any older one, so a token from before a restart stops
    /// working).
    pub fn create(data_dir: &Path) -> Result<AdminToken> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the admin token: {e}"))?;
        let token = AdminToken(hex::encode(bytes));
        let file = data_dir.join(TOKEN_FILE);
        let tmp = data_dir.join(format!("{TOKEN_FILE}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        out.write_all(token.0.as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))?;
        Ok(token)
    }

    /// Check one request's headers.
    pub fn admit(&self, headers: &hyper::HeaderMap) -> Result<(), Refusal> {
        let host = headers.get(hyper::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !is_loopback_authority(host) {
            return Err(Refusal::ForeignHost);
        }
        if headers.contains_key(hyper::header::ORIGIN) {
            return Err(Refusal::BrowserOrigin);
        }
        let presented = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(presented.trim().as_bytes(), self.0.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::BadToken)
        }
    }
}

/// `127.0.0.1[:port]`, `localhost[:port]`, `[::1][:port]`: the names a
/// client on this machine uses for the admin endpoint.
fn is_loopback_authority(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, port)| if port.chars().all(|c| c.is_ascii_digit()) { name } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Compares without an early exit, so the time taken says nothing about how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where the CLI finds the token of the host it talks to:
/// `--admin-token-file`, else `$TWINLATTICE_DATA_DIR/admin.token`, else
/// `./data/admin.token` (serve's default data directory).
pub fn default_token_file() -> PathBuf {
    std::env::var_os("TWINLATTICE_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("./data")).join(TOKEN_FILE)
}

/// The token in `file`, for the `Authorization` header of a CLI request.
pub fn read_token(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!("cannot read the admin token {} (written by `twinlattice serve` into its data directory; pass --admin-token-file)", file.display())
    })?;
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> hyper::HeaderMap {
        let mut map = hyper::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, hyper::header::HeaderValue::from_str(value).expect("test header"));
        }
        map
    }

    #[test]
    fn loopback_authorities_pass_and_others_do_not() {
        for ok in ["127.0.0.1:9029", "127.0.0.1", "localhost:9029", "LOCALHOST", "[::1]:9029", "[::1]", "127.1.2.3:1"] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for bad in ["", "evil.example", "evil.example:9029", "10.0.0.1:9029", "[::2]:9029", "localhost.evil.example:9029", "0.0.0.0:9029"] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }

    #[test]
    fn a_request_needs_the_token_a_loopback_host_and_no_origin() {
        let token = AdminToken("abc123".into());
        let good = [("host", "127.0.0.1:9029"), ("authorization", "Bearer abc123")];
        assert_eq!(token.admit(&headers(&good)), Ok(()));
        assert_eq!(token.admit(&headers(&[("host", "127.0.0.1:9029")])), Err(Refusal::BadToken));
        assert_eq!(token.admit(&headers(&[("host", "127.0.0.1"), ("authorization", "Bearer abc124")])), Err(Refusal::BadToken));
        assert_eq!(token.admit(&headers(&[("host", "127.0.0.1"), ("authorization", "abc123")])), Err(Refusal::BadToken));
        assert_eq!(token.admit(&headers(&[("host", "evil.example"), ("authorization", "Bearer abc123")])), Err(Refusal::ForeignHost));
        let from_page = [("host", "127.0.0.1:9029"), ("authorization", "Bearer abc123"), ("origin", "http://evil.example")];
        assert_eq!(token.admit(&headers(&from_page)), Err(Refusal::BrowserOrigin));
    }

    #[test]
    fn the_token_file_is_private_and_replaced_at_each_start() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let first = AdminToken::create(dir.path())?;
        let second = AdminToken::create(dir.path())?;
        assert_ne!(first.0, second.0);
        assert_eq!(read_token(&dir.path().join(TOKEN_FILE))?, second.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        Ok(())
    }
}
