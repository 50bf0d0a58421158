//! Which linked routing policy the broker's `twinlattice:routing/policy`
//! calls go to.
//!
//! On a wasmCloud lattice the broker has one link per policy, each named
//! after its policy (`preferred`, `failover`, …), and the config key
//! `routing-policy` names the one in use. Swapping the policy changes that
//! value (a new manifest version, `scripts/lattice.sh policy NAME`); no link
//! changes. Re-pointing the link itself is not an option there: the host
//! refuses a link whose target differs from the existing one, so wadm must
//! delete the old link before putting the new one, and messages routed in
//! that gap fail.
//!
//! Without the key the `default` link is used: the embedded host, which
//! swaps the policy component behind that import itself
//! (`twinlattice policy set`).

use crate::bindings::wasi::config::store as config;
use crate::bindings::wasmcloud::bus::lattice::{set_link_name, CallTargetInterface};

pub const CONFIG_KEY: &str = "routing-policy";

#[derive(Debug, thiserror::Error)]
pub enum PolicyLinkError {
    #[error("the config key `{CONFIG_KEY}` cannot be read: {0}")]
    Config(String),
    #[error("routing policy {name:?} (config `{CONFIG_KEY}`) cannot be selected: {reason}")]
    NoSuchLink { name: String, reason: String },
}

/// Point this instance's policy calls at the link the config names.
pub fn select() -> Result<(), PolicyLinkError> {
    let name = match config::get(CONFIG_KEY) {
        Ok(Some(name)) if !name.trim().is_empty() => name.trim().to_string(),
        Ok(_) => return Ok(()),
        Err(e) => return Err(PolicyLinkError::Config(format!("{e:?}"))),
    };
    let policy = CallTargetInterface::new("twinlattice", "routing", "policy");
    set_link_name(&name, vec![policy]).map_err(|reason| PolicyLinkError::NoSuchLink { name, reason })
}
