//! Settings of `twinlattice serve`: flags, environment (with the RIC's
//! variable names where it has them) and an optional `.env`-style file, in
//! that order of precedence.

use std::path::{Path, PathBuf};
use twinlattice_bridges::address_policy::{self, Cidr};

/// Read `NAME=value` lines of `file` into the environment, without
/// overriding variables that are already set. `#` starts a comment.
pub fn load_env_file(file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", file.display()))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            anyhow::bail!("{}:{}: expected NAME=value", file.display(), n + 1);
        };
        let (name, value) = (name.trim(), value.trim().trim_matches('"'));
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
    Ok(())
}

/// The `--config` file named on the command line or in `TWINLATTICE_CONFIG`,
/// found before clap parses so that its values act as environment.
pub fn config_file_from_args() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(v.into());
        }
        if a == "--config" {
            return args.get(i + 1).map(PathBuf::from);
        }
    }
    std::env::var_os("TWINLATTICE_CONFIG").map(PathBuf::from)
}

/// `wasi:config` values from `TWINLATTICE_CONFIG_<KEY>` variables: the key
/// is lower-cased with `_` turned into `-` (`TWINLATTICE_CONFIG_REGISTRY_BUCKET`
/// → `registry-bucket`).
pub fn component_config_from_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("TWINLATTICE_CONFIG_")?;
            Some((key.to_ascii_lowercase().replace('_', "-"), v))
        })
        .collect()
}

/// Where compiled code is cached: `$XDG_CACHE_HOME/twinlattice/compiled` or
/// `~/.cache/twinlattice/compiled`.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("twinlattice/compiled")
}

/// The components directory: `components/` next to the binary.
pub fn default_components_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|p| p.join("components")))
        .unwrap_or_else(|| PathBuf::from("components"))
}

/// The twin API's paths (Trusted Twin's families) go to the twins
/// component's own HTTP face, the AAS registry's (Part 2 and the RIC's) to
/// the registry's, which answers them without the gateway's hop to it;
/// everything else (the broker's inbox) to the gateway. With
/// `--http-entry wasi-http` only the twins and the gateway are HTTP
/// components, as on a lattice, and the gateway serves the registry's paths.
pub const DEFAULT_HTTP_ROUTES: &str = "twins:whoami,account,roles,users,secrets,token,twins,resolve,trace,\
batches,cache,download,log,notifications,usage,stickers;\
registry:shell-descriptors,submodel-descriptors,registry,api,description";

/// Worker threads of `serve`: `requested`, or three per CPU when it is 0.
pub fn worker_threads(requested: usize) -> usize {
    match requested {
        0 => 3 * std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Settings of the broker's bridges: where deliveries may go and where the
/// embedded MQTT broker listens (`#[command(flatten)]` into `serve`'s).
#[derive(clap::Args, Debug, Clone)]
pub struct BridgeArgs {
    /// Networks deliveries may reach although they are loopback, link-local,
    /// unspecified, multicast or broadcast, which are refused otherwise
    /// (other addresses are always allowed): comma-separated CIDRs, e.g.
    /// `127.0.0.0/8,::1`. This host's own HTTP, admin and CoAP ports stay
    /// refused.
    #[arg(long, env = "TWINLATTICE_DELIVERY_ALLOW", value_name = "CIDR,…", default_value = "", value_parser = parse_delivery_allow)]
    pub delivery_allow: DeliveryAllow,

    /// Address the embedded MQTT broker binds to (its port is --mqtt-port);
    /// it has no authentication, so it stays local unless asked.
    #[arg(long, env = "TWINLATTICE_MQTT_BIND", default_value = "127.0.0.1")]
    pub mqtt_bind: String,
}

/// The parsed `--delivery-allow` list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryAllow(pub Vec<Cidr>);

fn parse_delivery_allow(text: &str) -> Result<DeliveryAllow, address_policy::CidrError> {
    address_policy::parse_list(text).map(DeliveryAllow)
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn worker_threads_default_to_three_per_cpu_and_honour_a_request() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(worker_threads(0), 3 * cpus);
        assert_eq!(worker_threads(3), 3);
    }

    #[test]
    fn delivery_allow_parses_a_list_and_names_a_bad_entry() {
        let list = super::parse_delivery_allow("127.0.0.0/8, ::1").expect("valid");
        assert_eq!(list.0.len(), 2);
        assert!(super::parse_delivery_allow("").expect("empty is valid").0.is_empty());
        let e = super::parse_delivery_allow("127.0.0.0/8,localhost").expect_err("not a CIDR");
        assert!(e.to_string().contains("localhost"), "{e}");
    }
}
