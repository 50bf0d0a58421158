//! The provider's configuration (wadm: the `bridges` capability's config).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `coap_address` | `127.0.0.1:5683` | where the CoAP inbox listens (UDP); a comma-separated list: the first free one (several hosts on one machine) |
//! | `mqtt_host` | unset | the MQTT broker to bridge; unset: see `mqtt_embedded_address` |
//! | `mqtt_port` | `1883` | its port |
//! | `mqtt_embedded_address` | unset | with no `mqtt_host`: start an embedded MQTT broker here; both unset: the MQTT bridge is off |
//! | `mqtt_share_group` | unset | subscribe the inbox topics as `$share/<group>/…`, so that the bridges of several sites on one MQTT broker each take a part of the messages, not all of them |
//! | `mqtt_client_id` | derived | the MQTT inbox's client id, whose persistent session keeps messages while the provider is away; by default derived from the lattice, the provider's key, the CoAP address it bound and the share group: the same at every start, different for each provider on one MQTT broker |
//! | `max_inflight` | `64` | messages handed to the broker at once (back-pressure beyond) |
//! | `broker_timeout_ms` | `30000` | how long one call to the broker component may take (its deliveries retry inside it) |
//! | `delivery_allow` | empty | comma-separated CIDRs deliveries may reach although loopback, link-local, unspecified, multicast or broadcast (refused otherwise; this provider's own CoAP and MQTT ports stay refused) |
//! | `max_body_bytes` | `1048576` | largest message the CoAP inbox reassembles (4.13 beyond) and the MQTT side carries |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use twinlattice_bridges::address_policy::{self, Cidr};

#[derive(Debug, thiserror::Error)]
#[error("config `{key}` = {value:?}: {reason}")]
pub struct ConfigError {
    key: &'static str,
    value: String,
    reason: &'static str,
}

/// Where the MQTT side of the bridges connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mqtt {
    Off,
    Broker { host: String, port: u16 },
    Embedded { address: SocketAddr },
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Candidates, in order; the inbox takes the first it can bind.
    pub coap_addresses: Vec<SocketAddr>,
    pub mqtt: Mqtt,
    pub mqtt_share_group: Option<String>,
    /// The inbox's client id, when configured (else derived at start).
    pub mqtt_client_id: Option<String>,
    pub max_inflight: usize,
    pub broker_timeout: Duration,
    /// Networks deliveries may reach despite the default refusals.
    pub delivery_allow: Vec<Cidr>,
    pub max_body_bytes: usize,
}

fn non_empty(config: &HashMap<String, String>, key: &str) -> Option<String> {
    config.get(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn address(config: &HashMap<String, String>, key: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
    non_empty(config, key)
        .map(|v| v.parse().map_err(|_| ConfigError { key, value: v, reason: "expected IP:PORT" }))
        .transpose()
}

fn number<T: std::str::FromStr + PartialOrd + Copy>(
    config: &HashMap<String, String>,
    key: &'static str,
    default: T,
    min: T,
    reason: &'static str,
) -> Result<T, ConfigError> {
    match non_empty(config, key) {
        None => Ok(default),
        Some(v) => match v.parse::<T>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(ConfigError { key, value: v, reason }),
        },
    }
}

impl Settings {
    pub fn from_config(config: &HashMap<String, String>) -> Result<Settings, ConfigError> {
        let coap_addresses = match non_empty(config, "coap_address") {
            None => vec![SocketAddr::from(([127, 0, 0, 1], 5683))],
            Some(list) => list
                .split(',')
                .map(|a| a.trim().parse().map_err(|_| ConfigError { key: "coap_address", value: list.clone(), reason: "expected IP:PORT[,IP:PORT…]" }))
                .collect::<Result<_, _>>()?,
        };
        let mqtt_share_group = non_empty(config, "mqtt_share_group");
        if let Some(group) = &mqtt_share_group {
            if group.contains(['/', '+', '#']) {
                return Err(ConfigError { key: "mqtt_share_group", value: group.clone(), reason: "no '/', '+' or '#' allowed" });
            }
        }
        let mqtt_port = number(config, "mqtt_port", 1883u16, 1, "expected a port 1-65535")?;
        let mqtt = match (non_empty(config, "mqtt_host"), address(config, "mqtt_embedded_address")?) {
            (Some(host), _) => Mqtt::Broker { host, port: mqtt_port },
            (None, Some(address)) => Mqtt::Embedded { address },
            (None, None) => Mqtt::Off,
        };
        let max_inflight = number(config, "max_inflight", 64usize, 1, "expected a count >= 1")?;
        let broker_timeout_ms = number(config, "broker_timeout_ms", 30_000u64, 1, "expected milliseconds > 0")?;
        let delivery_allow = match non_empty(config, "delivery_allow") {
            None => Vec::new(),
            Some(list) => address_policy::parse_list(&list)
                .map_err(|_| ConfigError { key: "delivery_allow", value: list, reason: "expected CIDR[,CIDR…], e.g. 127.0.0.0/8" })?,
        };
        let max_body_bytes = number(config, "max_body_bytes", 1024 * 1024usize, 1, "expected a size in bytes >= 1")?;
        Ok(Settings {
            coap_addresses,
            mqtt,
            mqtt_share_group,
            mqtt_client_id: non_empty(config, "mqtt_client_id"),
            max_inflight,
            broker_timeout: Duration::from_millis(broker_timeout_ms),
            delivery_allow,
            max_body_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults() {
        let s = Settings::from_config(&HashMap::new()).expect("defaults are valid");
        assert_eq!(s.coap_addresses, vec![SocketAddr::from(([127, 0, 0, 1], 5683))]);
        assert_eq!(s.mqtt, Mqtt::Off);
        assert_eq!(s.mqtt_share_group, None);
        assert_eq!(s.max_inflight, 64);
        assert_eq!(s.broker_timeout, Duration::from_secs(30));
        assert!(s.delivery_allow.is_empty(), "nothing reserved is allowed by default");
        assert_eq!(s.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn delivery_allow_is_a_cidr_list() {
        let s = Settings::from_config(&config(&[("delivery_allow", "127.0.0.0/8, ::1")])).expect("valid");
        assert_eq!(s.delivery_allow.iter().map(ToString::to_string).collect::<Vec<_>>(), ["127.0.0.0/8", "::1/128"]);
    }

    #[test]
    fn outside_broker_wins_over_embedded() {
        let s = Settings::from_config(&config(&[
            ("mqtt_host", "broker.local"),
            ("mqtt_port", "1884"),
            ("mqtt_embedded_address", "127.0.0.1:1883"),
        ]))
        .expect("valid");
        assert_eq!(s.mqtt, Mqtt::Broker { host: "broker.local".into(), port: 1884 });
        let s = Settings::from_config(&config(&[("mqtt_embedded_address", "127.0.0.1:1890")])).expect("valid");
        assert_eq!(s.mqtt, Mqtt::Embedded { address: SocketAddr::from(([127, 0, 0, 1], 1890)) });
    }

    #[test]
    fn several_sites_on_one_machine() {
        let s = Settings::from_config(&config(&[
            ("coap_address", "127.0.0.1:9323, 127.0.0.1:9333"),
            ("mqtt_share_group", "twinlattice"),
        ]))
        .expect("valid");
        assert_eq!(s.coap_addresses, vec![SocketAddr::from(([127, 0, 0, 1], 9323)), SocketAddr::from(([127, 0, 0, 1], 9333))]);
        assert_eq!(s.mqtt_share_group.as_deref(), Some("twinlattice"));
    }

    #[test]
    fn bad_values_are_named() {
        for (key, value) in [
            ("coap_address", "localhost"),
            ("coap_address", "127.0.0.1:5683,"),
            ("mqtt_share_group", "a/b"),
            ("mqtt_port", "0"),
            ("mqtt_port", "70000"),
            ("max_inflight", "0"),
            ("broker_timeout_ms", "soon"),
            ("mqtt_embedded_address", "1883"),
            ("delivery_allow", "127.0.0.0/8,localhost"),
            ("max_body_bytes", "0"),
        ] {
            let e = Settings::from_config(&config(&[(key, value)])).expect_err(key);
            assert!(e.to_string().contains(key), "{e}");
        }
    }
}
