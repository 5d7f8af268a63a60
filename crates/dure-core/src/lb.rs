//! Balancer configuration documents: a balancer's definition
//! (`/lbs/<lb>/lb.json`: listeners, each with its routes to clusters) and
//! a cluster's balancing settings (the `balance` section of its document:
//! policy, sticky sessions, active checks, drain timeout, backup members).
//! The settings live on the cluster because several balancers may serve one
//! cluster and must balance it alike. Shape checks that need no other
//! document live here; the rules across documents are in `lb_rules`. How a
//! balancer picks a member is [`crate::balance`]'s business.

use crate::balance::{HealthConfig, OutlierConfig, Policy, Sticky};
use crate::duration::DurationSpec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// A balancer: `/lbs/<lb>/lb.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbSpec {
    pub name: String,
    /// Where it accepts connections, each with its routes.
    pub listeners: Vec<Listener>,
}

/// One address a balancer accepts connections on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `IP:PORT`, such as `0.0.0.0:8080` or `[::]:443`. Kept as written so
    /// a bad address is refused by the domain rules, naming it.
    pub listen: String,
    /// Served over TLS with these files when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Checked in order of specificity by the balancer: the longest path
    /// prefix of a matching host first, routes without a host last.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// The certificate chain and private key of a TLS listener, as PEM files
/// on the balancer's host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: String,
    pub key: String,
}

/// Requests matching `host` (any when unset) and `path` (a path prefix;
/// any when unset) go to `cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub cluster: String,
}

impl Listener {
    /// The listen address, when it is a valid `IP:PORT` with a port other
    /// than 0 (a balancer must be reachable where it is configured).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.listen
            .parse::<SocketAddr>()
            .ok()
            .filter(|a| a.port() != 0)
    }

    /// Whether `other` is the same address, however it is written.
    pub fn same_address(&self, other: &str) -> bool {
        match (self.addr(), other.parse::<SocketAddr>().ok()) {
            (Some(a), Some(b)) => a == b,
            _ => self.listen == other,
        }
    }
}

impl Route {
    /// Whether `other` matches the same requests (hosts compare without
    /// case, as HTTP does).
    pub fn same_match(&self, other: &Route) -> bool {
        let host = |r: &Route| r.host.as_deref().map(str::to_ascii_lowercase);
        host(self) == host(other) && self.path == other.path
    }

    /// `host/path -> cluster`, as tables and messages show a route.
    pub fn describe_match(&self) -> String {
        format!(
            "{}{}",
            self.host.as_deref().unwrap_or("*"),
            self.path.as_deref().unwrap_or("/")
        )
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.describe_match(), self.cluster)
    }
}

/// A cluster's balancing settings: the `balance` section of its document,
/// left out while every setting is at its default (so documents written
/// before balancers existed read and write back unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterBalance {
    #[serde(default, deserialize_with = "policy_by_name")]
    pub policy: Policy,
    /// Sticky sessions; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// The balancer's active check of each member's `http` port.
    #[serde(default)]
    pub check: ActiveCheck,
    /// Interval, rise and fall of the active check.
    #[serde(default)]
    pub health: HealthConfig,
    /// Passive ejection thresholds.
    #[serde(default)]
    pub outlier: OutlierConfig,
    /// How long a draining member still gets requests of its sticky
    /// sessions, and how long a graceful stop waits for its in-flight ones.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: DurationSpec,
    /// Members used only while every other member is unavailable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backup: Vec<String>,
}

fn default_drain_timeout() -> DurationSpec {
    DurationSpec::from_secs(30)
}

impl Default for ClusterBalance {
    fn default() -> Self {
        ClusterBalance {
            policy: Policy::default(),
            sticky: None,
            check: ActiveCheck::default(),
            health: HealthConfig::default(),
            outlier: OutlierConfig::default(),
            drain_timeout: default_drain_timeout(),
            backup: Vec::new(),
        }
    }
}

impl ClusterBalance {
    pub fn is_default(&self) -> bool {
        self == &ClusterBalance::default()
    }
}

/// Reads a policy by name, so an unknown one is refused with the list of
/// names rather than serde's variant list.
fn policy_by_name<'de, D: Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

/// How a balancer checks a member: a TCP connect to its `http` port, or
/// an HTTP GET of a path on it that must answer 2xx.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ActiveCheck {
    #[default]
    Tcp,
    Http {
        path: String,
    },
}

/// An active check text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("balancer check `{0}` is invalid: use tcp or http:/PATH")]
pub struct ActiveCheckError(pub String);

impl FromStr for ActiveCheck {
    type Err = ActiveCheckError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "tcp" {
            return Ok(ActiveCheck::Tcp);
        }
        match text.strip_prefix("http:") {
            Some(path) if path.starts_with('/') && !path.chars().any(char::is_whitespace) => {
                Ok(ActiveCheck::Http {
                    path: path.to_string(),
                })
            }
            _ => Err(ActiveCheckError(text.to_string())),
        }
    }
}

impl fmt::Display for ActiveCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActiveCheck::Tcp => f.write_str("tcp"),
            ActiveCheck::Http { path } => write!(f, "http:{path}"),
        }
    }
}

impl Serialize for ActiveCheck {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ActiveCheck {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Whether `name` can be a cookie name: 1-128 letters, digits, `-`, `_`
/// and `.` (a safe subset of HTTP tokens), so a sticky setting can always
/// be sent and read back.
pub fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Whether `path` can be a route's path prefix: starts with `/`, no
/// whitespace, no query or fragment.
pub fn is_path_prefix(path: &str) -> bool {
    path.starts_with('/')
        && !path
            .chars()
            .any(|c| c.is_whitespace() || c == '?' || c == '#')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClusterSpec;

    #[test]
    fn a_cluster_document_without_balance_reads_and_writes_back_unchanged() {
        let old = "{\n  \"name\": \"c\",\n  \"members\": [\n    \"web1\"\n  ]\n}\n";
        let spec: ClusterSpec = serde_json::from_str(old).unwrap();
        assert!(spec.balance.is_default());
        assert_eq!(
            String::from_utf8(crate::model::canonical_json(&spec)).unwrap(),
            old
        );
    }

    #[test]
    fn balance_settings_round_trip_and_unknown_policies_are_named() {
        let text = r#"{"name":"c","members":["a","b"],"balance":{"policy":"least_conn",
            "sticky":{"mode":"session_suffix"},"check":"http:/health",
            "health":{"interval":"2s","rise":3,"fall":1},"drain_timeout":"1m","backup":["b"]}}"#;
        let spec: ClusterSpec = serde_json::from_str(text).unwrap();
        assert_eq!(spec.balance.policy, Policy::LeastConn);
        assert_eq!(
            spec.balance.sticky.as_ref().unwrap().cookie_name(),
            "JSESSIONID"
        );
        assert_eq!(
            spec.balance.check,
            ActiveCheck::Http {
                path: "/health".into()
            }
        );
        assert_eq!(spec.balance.health.rise, 3);
        assert_eq!(spec.balance.backup, ["b"]);
        let again: ClusterSpec =
            serde_json::from_slice(&crate::model::canonical_json(&spec)).unwrap();
        assert_eq!(again, spec);

        let err = serde_json::from_str::<ClusterSpec>(
            r#"{"name":"c","members":["a"],"balance":{"policy":"fastest"}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("`fastest` is not a balancing policy: use round_robin"),
            "{err}"
        );
    }

    #[test]
    fn active_check_text_forms() {
        for text in ["tcp", "http:/", "http:/health/ok"] {
            assert_eq!(text.parse::<ActiveCheck>().unwrap().to_string(), text);
        }
        for bad in ["", "http:", "http:health", "udp", "http:/a b", "tcp:80"] {
            assert!(bad.parse::<ActiveCheck>().is_err(), "{bad}");
        }
    }

    #[test]
    fn listener_addresses_compare_as_addresses() {
        let listener = |listen: &str| Listener {
            listen: listen.into(),
            tls: None,
            routes: vec![],
        };
        assert!(listener("127.0.0.1:8080").addr().is_some());
        assert!(listener("[::1]:443").addr().is_some());
        for bad in [
            "127.0.0.1",
            "localhost:80",
            "127.0.0.1:0",
            ":80",
            "1.2.3.4:99999",
        ] {
            assert!(listener(bad).addr().is_none(), "{bad}");
        }
        assert!(listener("[::1]:443").same_address("[0:0::1]:443"));
        assert!(!listener("127.0.0.1:80").same_address("127.0.0.1:81"));
    }

    #[test]
    fn cookie_names_and_path_prefixes() {
        assert!(is_cookie_name("DURE_ROUTE"));
        assert!(!is_cookie_name("a b") && !is_cookie_name("a=b") && !is_cookie_name(""));
        assert!(is_path_prefix("/") && is_path_prefix("/api/v1"));
        assert!(!is_path_prefix("api") && !is_path_prefix("/a?b") && !is_path_prefix("/a b"));
    }
}
