//! The configuration documents: nodes, servers and clusters, with their
//! defaults and canonical JSON form (balancers are in [`crate::lb`]). Shape checks that need no other
//! document live here; rules across documents live in [`crate::domain`].

use crate::duration::DurationSpec;
use crate::lb::ClusterBalance;
use crate::template::{ServerTemplate, SessionReplication, TransactionPeerRecovery};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A host with one agent: `/nodes/<node>/node.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    /// Host name or IP address other parts use to reach this node, as
    /// configured. Where its agent's endpoint can be reached is observed
    /// state, not configuration: the controller learns it from the agent's
    /// registration and reports and keeps it in memory.
    #[serde(default)]
    pub address: String,
    /// Deprecated and ignored: documents saved by older versions carry the
    /// agent endpoint's port of the time here. It is still read, so such
    /// documents (in the history, in exports, in domain packs) stay valid,
    /// but nothing writes it any more and nothing uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_port: Option<u16>,
    /// The node whose servers this node takes over when that node dies:
    /// another node of the domain, never the node itself (checked with the
    /// other rules across documents, in [`crate::domain`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_of: Option<String>,
    /// Directories on shared filesystems this node reaches (absolute
    /// paths), such as a transaction log directory every member of a
    /// cluster must reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_dirs: Vec<String>,
}

impl NodeSpec {
    /// Whether `address` names a host: an IP address (v4, or v6 without
    /// brackets) or a DNS name (labels of 1-63 letters, digits and `-`, not
    /// starting or ending with `-`, 253 characters at most, a trailing `.`
    /// allowed). Empty passes: a node may have no address configured.
    pub fn address_is_valid(address: &str) -> bool {
        address.is_empty() || address.parse::<std::net::IpAddr>().is_ok() || is_dns_name(address)
    }

    /// Whether `dir` is one of the node's shared directories or inside one.
    pub fn shares(&self, dir: &str) -> bool {
        let dir = dir.trim_end_matches('/');
        self.shared_dirs.iter().any(|shared| {
            let shared = shared.trim_end_matches('/');
            dir == shared
                || dir
                    .strip_prefix(shared)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

/// Whether `name` is a DNS host name (see [`NodeSpec::address_is_valid`]).
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            (1..=63).contains(&bytes.len())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes.first() != Some(&b'-')
                && bytes.last() != Some(&b'-')
        })
}

/// One supervised process: `/nodes/<node>/servers/<server>/server.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub name: String,
    pub node: String,
    /// Program and arguments, run directly (never through a shell unless
    /// `argv[0]` is one). Empty for a server with a template, whose
    /// template decides the command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; the agent's server directory when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Named ports (`http`, `https`, `admin`, …), unique on the node.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    #[serde(default)]
    pub ready: Readiness,
    #[serde(default)]
    pub stop: StopPolicy,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Relative share of load-balanced traffic.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The application server this is, whose configuration files Dure
    /// writes (see [`crate::template`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ServerTemplate>,
    /// Directory on the node where this server's applications are
    /// installed (`dure app deploy` puts each one in a subdirectory named
    /// after its context); absolute. Unset, a Tomcat server's applications
    /// are in its instance's `webapps`. Left out while unset, so documents
    /// written before it read and write back byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_dir: Option<PathBuf>,
}

/// The largest weight accepted; keeps weighted selection arithmetic small.
pub const MAX_WEIGHT: u32 = 1000;

fn default_weight() -> u32 {
    100
}

impl ServerSpec {
    /// A server running `argv` on `node`, every other field at its default
    /// (the same defaults a document that omits them gets).
    pub fn new(name: &str, node: &str, argv: Vec<String>) -> ServerSpec {
        ServerSpec {
            name: name.to_string(),
            node: node.to_string(),
            argv,
            env: BTreeMap::new(),
            dir: None,
            ports: BTreeMap::new(),
            ready: Readiness::default(),
            stop: StopPolicy::default(),
            restart: RestartPolicy::default(),
            weight: default_weight(),
            template: None,
            app_dir: None,
        }
    }
}

/// How the agent decides that a started server is ready for traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    /// `http:/path`, `http:PORT:/path`, `tcp:PORT` or `none`.
    #[serde(default)]
    pub check: ReadyCheck,
    /// Time between probes.
    #[serde(default = "default_probe_interval")]
    pub interval: DurationSpec,
    /// Time one probe may take.
    #[serde(default = "default_probe_timeout")]
    pub timeout: DurationSpec,
    /// Time from spawn to ready after which the start counts as failed.
    #[serde(default = "default_start_timeout")]
    pub start_timeout: DurationSpec,
}

fn default_probe_interval() -> DurationSpec {
    DurationSpec::from_millis(500)
}
fn default_probe_timeout() -> DurationSpec {
    DurationSpec::from_secs(1)
}
fn default_start_timeout() -> DurationSpec {
    DurationSpec::from_secs(60)
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            check: ReadyCheck::None,
            interval: default_probe_interval(),
            timeout: default_probe_timeout(),
            start_timeout: default_start_timeout(),
        }
    }
}

/// One readiness check, written in its short text form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ReadyCheck {
    /// HTTP GET of `path` on the named port; any 2xx answer means ready.
    Http { port: String, path: String },
    /// A TCP connect to the named port succeeds.
    Tcp { port: String },
    /// Ready as soon as the process runs.
    #[default]
    None,
}

impl ReadyCheck {
    /// The named port the check connects to, if any.
    pub fn port_name(&self) -> Option<&str> {
        match self {
            ReadyCheck::Http { port, .. } | ReadyCheck::Tcp { port } => Some(port),
            ReadyCheck::None => None,
        }
    }
}

/// A readiness check text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("readiness check `{0}` is invalid: use http:/PATH, http:PORT:/PATH, tcp:PORT or none")]
pub struct ReadyCheckError(pub String);

impl FromStr for ReadyCheck {
    type Err = ReadyCheckError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ReadyCheckError(text.to_string());
        if text == "none" {
            return Ok(ReadyCheck::None);
        }
        if let Some(port) = text.strip_prefix("tcp:") {
            if port.is_empty() || port.contains(':') {
                return Err(err());
            }
            return Ok(ReadyCheck::Tcp {
                port: port.to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("http:") {
            // A leading `/` means the default port, even when the path itself
            // holds `:/` (`http:/a:/b` is path `/a:/b` on `http`).
            let (port, path) = match rest.split_once(":/") {
                Some((port, path)) if !rest.starts_with('/') => {
                    (port.to_string(), format!("/{path}"))
                }
                _ => ("http".to_string(), rest.to_string()),
            };
            if !path.starts_with('/') || port.is_empty() || path.chars().any(char::is_whitespace) {
                return Err(err());
            }
            return Ok(ReadyCheck::Http { port, path });
        }
        Err(err())
    }
}

impl fmt::Display for ReadyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyCheck::Http { port, path } if port == "http" => write!(f, "http:{path}"),
            ReadyCheck::Http { port, path } => write!(f, "http:{port}:{path}"),
            ReadyCheck::Tcp { port } => write!(f, "tcp:{port}"),
            ReadyCheck::None => f.write_str("none"),
        }
    }
}

impl Serialize for ReadyCheck {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ReadyCheck {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// How a server is stopped gracefully.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopPolicy {
    /// Signal sent to the process group when there is no stop command.
    #[serde(default)]
    pub signal: StopSignal,
    /// A command run to ask the server to stop (for example a shutdown script).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Time after which the whole process group is killed.
    #[serde(default = "default_stop_timeout")]
    pub timeout: DurationSpec,
}

fn default_stop_timeout() -> DurationSpec {
    DurationSpec::from_secs(30)
}

impl Default for StopPolicy {
    fn default() -> Self {
        StopPolicy {
            signal: StopSignal::default(),
            command: None,
            timeout: default_stop_timeout(),
        }
    }
}

/// Signals a graceful stop may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StopSignal {
    #[default]
    Term,
    Int,
    Quit,
    Hup,
    Usr1,
    Usr2,
}

impl StopSignal {
    /// The Linux signal number.
    pub fn number(self) -> i32 {
        match self {
            StopSignal::Hup => 1,
            StopSignal::Int => 2,
            StopSignal::Quit => 3,
            StopSignal::Usr1 => 10,
            StopSignal::Usr2 => 12,
            StopSignal::Term => 15,
        }
    }
}

/// When a server that exits on its own is started again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    #[serde(default)]
    pub mode: RestartMode,
    /// Restarts allowed in a row before the server is left failed.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// Wait before the first restart; doubles each time up to `max_backoff`.
    #[serde(default = "default_backoff")]
    pub backoff: DurationSpec,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: DurationSpec,
}

fn default_max_restarts() -> u32 {
    5
}
fn default_backoff() -> DurationSpec {
    DurationSpec::from_millis(500)
}
fn default_max_backoff() -> DurationSpec {
    DurationSpec::from_secs(30)
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::default(),
            max_restarts: default_max_restarts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    Never,
    #[default]
    OnFailure,
}

impl fmt::Display for RestartMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartMode::Never => "never",
            RestartMode::OnFailure => "on-failure",
        })
    }
}

impl FromStr for RestartMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "never" => Ok(RestartMode::Never),
            "on-failure" => Ok(RestartMode::OnFailure),
            _ => Err(format!(
                "restart policy `{text}` is invalid: use never or on-failure"
            )),
        }
    }
}

/// An ordered group of servers running one application:
/// `/clusters/<cluster>/cluster.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub name: String,
    /// Members in start order; stop goes in reverse.
    pub members: Vec<String>,
    /// How balancers spread requests over the members.
    #[serde(default, skip_serializing_if = "ClusterBalance::is_default")]
    pub balance: ClusterBalance,
    /// How Tomcat members share sessions (see [`crate::template`]).
    #[serde(default, skip_serializing_if = "SessionReplication::is_default")]
    pub session_replication: SessionReplication,
    /// Liberty members' transaction peer recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_peer_recovery: Option<TransactionPeerRecovery>,
}

impl ClusterSpec {
    /// A cluster of `members` with default balancing settings.
    pub fn new(name: &str, members: Vec<String>) -> ClusterSpec {
        ClusterSpec {
            name: name.to_string(),
            members,
            balance: ClusterBalance::default(),
            session_replication: SessionReplication::default(),
            transaction_peer_recovery: None,
        }
    }
}

/// Paths of documents in the configuration tree.
pub mod paths {
    /// The domain-wide settings document.
    pub const DOMAIN: &str = "/domain.json";

    pub fn node(node: &str) -> String {
        format!("/nodes/{node}/node.json")
    }
    pub fn server(node: &str, server: &str) -> String {
        format!("/nodes/{node}/servers/{server}/server.json")
    }
    pub fn cluster(cluster: &str) -> String {
        format!("/clusters/{cluster}/cluster.json")
    }
    pub fn lb(lb: &str) -> String {
        format!("/lbs/{lb}/lb.json")
    }

    /// What a document path names.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DocumentPath<'a> {
        Domain,
        Node { node: &'a str },
        Server { node: &'a str, server: &'a str },
        Cluster { cluster: &'a str },
        Lb { lb: &'a str },
    }

    /// Reads a document path; `None` when it names no known document.
    pub fn parse(path: &str) -> Option<DocumentPath<'_>> {
        let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        match parts.as_slice() {
            ["domain.json"] => Some(DocumentPath::Domain),
            ["nodes", node, "node.json"] => Some(DocumentPath::Node { node }),
            ["nodes", node, "servers", server, "server.json"] => {
                Some(DocumentPath::Server { node, server })
            }
            ["clusters", cluster, "cluster.json"] => Some(DocumentPath::Cluster { cluster }),
            ["lbs", lb, "lb.json"] => Some(DocumentPath::Lb { lb }),
            _ => None,
        }
    }
}

/// Writes a document in canonical form: pretty JSON with sorted maps and a
/// trailing newline, so equal documents are equal bytes.
pub fn canonical_json<T: Serialize>(doc: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(doc)
        .expect("documents are plain structs with string-keyed maps, which always serialize");
    bytes.push(b'\n');
    bytes
}

/// The SHA-256 (hex) of a document's canonical form: what a caller that
/// reads, changes and writes back a document sends as `expect`, so a change
/// that came in between is refused instead of overwritten.
pub fn document_digest<T: Serialize>(doc: &T) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(canonical_json(doc)))
}

/// Refuses an edit of `what` made from a read that is out of date: when
/// `expect` is given and is not the digest of `current`.
pub fn check_expected<T: Serialize>(
    what: impl FnOnce() -> String,
    current: &T,
    expect: Option<&str>,
) -> Result<(), crate::DomainError> {
    match expect {
        Some(expect) if document_digest(current) != expect => {
            Err(crate::DomainError::ChangedSinceRead { what: what() })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_out_of_date_is_refused() {
        let read = ServerSpec::new("web1", "n1", vec!["/bin/true".into()]);
        let digest = document_digest(&read);
        assert_eq!(digest.len(), 64);
        assert_eq!(
            check_expected(|| "server `web1`".into(), &read, None),
            Ok(())
        );
        assert_eq!(
            check_expected(|| "server `web1`".into(), &read, Some(&digest)),
            Ok(())
        );
        let mut moved = read.clone();
        moved.weight = 7;
        let refused = check_expected(|| "server `web1`".into(), &moved, Some(&digest)).unwrap_err();
        assert_eq!(refused.class(), crate::domain_error::ErrorClass::Conflict);
        assert_eq!(
            refused.to_string(),
            "server `web1` changed since it was read (another change came first): read it again and retry"
        );
    }

    #[test]
    fn a_server_without_an_application_directory_writes_back_byte_for_byte() {
        let old = r#"{"name":"web1","node":"n1","argv":["/bin/app"],"env":{},"ports":{"http":9080},"ready":{"check":"tcp:http","interval":"1s","timeout":"1s","start_timeout":"1m"},"stop":{"signal":"TERM","timeout":"30s"},"restart":{"mode":"on-failure","max_restarts":5,"backoff":"1s","max_backoff":"1m"},"weight":100}"#;
        let spec: ServerSpec = serde_json::from_str(old).expect("old document");
        assert_eq!(spec.app_dir, None);
        assert_eq!(serde_json::to_string(&spec).expect("encode"), old);
        let with: ServerSpec = serde_json::from_str(
            &old.replace(r#""weight":100}"#, r#""weight":100,"app_dir":"/srv/apps"}"#),
        )
        .expect("with app_dir");
        assert_eq!(
            with.app_dir.as_deref(),
            Some(std::path::Path::new("/srv/apps"))
        );
    }

    #[test]
    fn node_addresses_are_ip_addresses_or_dns_names() {
        for good in [
            "",
            "10.0.0.5",
            "::1",
            "fe80::1",
            "localhost",
            "db1.example.com",
            "db1.example.com.",
            "a-b.c9",
            &format!("{}.com", "x".repeat(63)),
        ] {
            assert!(NodeSpec::address_is_valid(good), "{good:?}");
        }
        for bad in [
            "db 1",
            "db/1",
            "-db",
            "db-",
            "a..b",
            ".",
            "db_1.example.com",
            "[::1]",
            "10.0.0.5:80",
            "héte",
            &format!("{}.com", "x".repeat(64)),
            &"a.".repeat(128),
        ] {
            assert!(!NodeSpec::address_is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn ready_check_text_forms() {
        assert_eq!(
            "http:/health".parse::<ReadyCheck>().unwrap(),
            ReadyCheck::Http {
                port: "http".into(),
                path: "/health".into()
            }
        );
        assert_eq!(
            "http:admin:/status/ok".parse::<ReadyCheck>().unwrap(),
            ReadyCheck::Http {
                port: "admin".into(),
                path: "/status/ok".into()
            }
        );
        assert_eq!(
            "tcp:http".parse::<ReadyCheck>().unwrap(),
            ReadyCheck::Tcp {
                port: "http".into()
            }
        );
        assert_eq!("none".parse::<ReadyCheck>().unwrap(), ReadyCheck::None);
        assert_eq!(
            "http:/a:/b".parse::<ReadyCheck>().unwrap(),
            ReadyCheck::Http {
                port: "http".into(),
                path: "/a:/b".into()
            },
            "a path holding `:/` stays on the default port"
        );
        for text in [
            "http:/health",
            "http:admin:/x",
            "http:/a:/b",
            "http:admin:/a:/b",
            "tcp:http",
            "none",
        ] {
            assert_eq!(text.parse::<ReadyCheck>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "http:",
            "http:health",
            "tcp:",
            "udp:53",
            "http:/a b",
            "tcp:a:b",
        ] {
            assert!(bad.parse::<ReadyCheck>().is_err(), "{bad}");
        }
    }

    #[test]
    fn server_document_defaults_and_unknown_fields() {
        let spec: ServerSpec =
            serde_json::from_str(r#"{"name":"a","node":"n","argv":["x"]}"#).unwrap();
        assert_eq!(spec.weight, 100);
        assert_eq!(spec.stop.timeout.as_millis(), 30_000);
        assert_eq!(spec.restart.mode, RestartMode::OnFailure);
        let err = serde_json::from_str::<ServerSpec>(
            r#"{"name":"a","node":"n","argv":["x"],"colour":"red"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn a_new_server_has_the_document_defaults() {
        let parsed: ServerSpec =
            serde_json::from_str(r#"{"name":"a","node":"n","argv":["x"]}"#).unwrap();
        assert_eq!(ServerSpec::new("a", "n", vec!["x".into()]), parsed);
    }

    #[test]
    fn restart_modes_read_back_what_they_write() {
        for mode in [RestartMode::Never, RestartMode::OnFailure] {
            assert_eq!(mode.to_string().parse::<RestartMode>(), Ok(mode));
            let wire = serde_json::to_value(mode).unwrap();
            assert_eq!(wire, serde_json::Value::String(mode.to_string()));
        }
    }

    #[test]
    fn canonical_json_is_stable() {
        let spec: ServerSpec =
            serde_json::from_str(r#"{"name":"a","node":"n","argv":["x"],"env":{"B":"2","A":"1"}}"#)
                .unwrap();
        let bytes = canonical_json(&spec);
        let again: ServerSpec = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(canonical_json(&again), bytes);
        assert!(bytes.ends_with(b"}\n"));
    }
}
