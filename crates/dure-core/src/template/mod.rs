//! Server templates: a server document that names a template (`tomcat` or
//! `liberty`) has its configuration files written by Dure. This module owns
//! the template settings of a server, the cluster settings those files
//! depend on (session replication, transaction peer recovery), their rules,
//! and the generation itself as a pure function — a server's spec, its
//! cluster and its members' node addresses in, file paths and contents out
//! ([`tomcat`], [`liberty`]). The agent only writes what comes out of here
//! and the controller shows it; neither decides anything about the files.

pub mod liberty;
pub mod tomcat;

use crate::domain::Domain;
use crate::domain_error::DomainError;
use crate::model::{ClusterSpec, ServerSpec};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Where Debian's `tomcat10` keeps Tomcat (CATALINA_HOME) when a server's
/// template names no other place.
pub const DEFAULT_CATALINA_HOME: &str = "/usr/share/tomcat10";
/// Where Open Liberty is looked for when a server's template names no other
/// place (the layout of its container images).
pub const DEFAULT_WLP_HOME: &str = "/opt/ol/wlp";

/// The application server a template describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateKind {
    Tomcat,
    Liberty,
}

impl TemplateKind {
    /// The ports a server of this kind must define.
    fn required_ports(self) -> &'static [&'static str] {
        &["http"]
    }
}

impl fmt::Display for TemplateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TemplateKind::Tomcat => "tomcat",
            TemplateKind::Liberty => "liberty",
        })
    }
}

impl FromStr for TemplateKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "tomcat" => Ok(TemplateKind::Tomcat),
            "liberty" => Ok(TemplateKind::Liberty),
            _ => Err(format!(
                "template `{text}` is unknown: use tomcat or liberty"
            )),
        }
    }
}

/// The `template` section of a server document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTemplate {
    pub kind: TemplateKind,
    /// The JVM's maximum heap (`-Xmx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap: Option<HeapSize>,
    /// The Java installation to run with; found on the node when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub java_home: Option<String>,
    /// Tomcat only: the installation (CATALINA_HOME), [`DEFAULT_CATALINA_HOME`] when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalina_home: Option<String>,
    /// Liberty only: the installation (`wlp`), [`DEFAULT_WLP_HOME`] when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wlp_home: Option<String>,
}

impl ServerTemplate {
    /// A template of `kind` with every setting at its default.
    pub fn new(kind: TemplateKind) -> ServerTemplate {
        ServerTemplate {
            kind,
            heap: None,
            java_home: None,
            catalina_home: None,
            wlp_home: None,
        }
    }

    /// The Tomcat installation the server runs from.
    pub fn catalina_home(&self) -> &str {
        self.catalina_home
            .as_deref()
            .unwrap_or(DEFAULT_CATALINA_HOME)
    }

    /// The Liberty installation the server runs from.
    pub fn wlp_home(&self) -> &str {
        self.wlp_home.as_deref().unwrap_or(DEFAULT_WLP_HOME)
    }
}

/// A JVM heap size as `-Xmx` takes it: a number and a unit, `k`, `m` or
/// `g` (such as `512m`), written in lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapSize {
    amount: u32,
    unit: char,
}

impl HeapSize {
    /// The JVM option that sets it.
    pub fn java_option(&self) -> String {
        format!("-Xmx{self}")
    }
}

/// A heap size text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("heap size `{0}` is invalid: give a number and a unit k, m or g, such as 512m or 2g")]
pub struct HeapSizeError(pub String);

impl FromStr for HeapSize {
    type Err = HeapSizeError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || HeapSizeError(text.to_string());
        let unit = text
            .chars()
            .last()
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| matches!(c, 'k' | 'm' | 'g'))
            .ok_or_else(err)?;
        let digits = &text[..text.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let amount: u32 = digits.parse().map_err(|_| err())?;
        if amount == 0 {
            return Err(err());
        }
        Ok(HeapSize { amount, unit })
    }
}

impl fmt::Display for HeapSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit)
    }
}

impl Serialize for HeapSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HeapSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// How a Tomcat cluster's members share their sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionReplication {
    /// Each member keeps its own sessions.
    #[default]
    None,
    /// Every member holds every session (`DeltaManager`, all to all).
    Delta,
    /// Each session has one backup copy on another member (`BackupManager`).
    Backup,
}

impl SessionReplication {
    pub fn is_default(&self) -> bool {
        *self == SessionReplication::None
    }
}

impl fmt::Display for SessionReplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionReplication::None => "none",
            SessionReplication::Delta => "delta",
            SessionReplication::Backup => "backup",
        })
    }
}

impl FromStr for SessionReplication {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(SessionReplication::None),
            "delta" => Ok(SessionReplication::Delta),
            "backup" => Ok(SessionReplication::Backup),
            _ => Err(format!(
                "session replication `{text}` is invalid: use none, delta or backup"
            )),
        }
    }
}

/// A Liberty cluster's transaction peer recovery: each member's
/// transaction log in a directory every member can reach, so a member
/// recovers the transactions of a peer that died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionPeerRecovery {
    pub enabled: bool,
    /// The shared directory the members' logs go under, as
    /// `<log_dir>/<host>/<server>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<String>,
}

/// The files Dure writes for one server: contents by path relative to the
/// server's instance directory (CATALINA_BASE, or Liberty's user directory).
pub type GeneratedFiles = BTreeMap<String, String>;

/// Another member of the server's cluster, as the files name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub server: String,
    /// Its node's address.
    pub host: String,
    /// Its `replication` port, if it defines one.
    pub replication_port: Option<u16>,
}

/// What a server's files depend on besides its own document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    pub cluster: Option<ClusterContext>,
}

/// The server's cluster, as its files need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterContext {
    pub name: String,
    pub session_replication: SessionReplication,
    pub transaction_peer_recovery: Option<TransactionPeerRecovery>,
    /// The address of the server's own node.
    pub host: String,
    /// The other members, in member order.
    pub peers: Vec<Peer>,
}

/// The files of `spec`, or `None` when it names no template.
pub fn generate(spec: &ServerSpec, context: &Context) -> Option<GeneratedFiles> {
    let template = spec.template.as_ref()?;
    Some(match template.kind {
        TemplateKind::Tomcat => tomcat::files(spec, template, context),
        TemplateKind::Liberty => liberty::files(spec, template, context),
    })
}

/// The spec the agent runs for a templated server whose instance directory
/// is `instance_dir`: the template's command and environment, the instance
/// as working directory, and a TCP check of the `http` port when the
/// document gives no readiness check. Any other spec is returned as it is.
pub fn launch_spec(spec: &ServerSpec, instance_dir: &str) -> ServerSpec {
    let Some(template) = &spec.template else {
        return spec.clone();
    };
    let mut launch = spec.clone();
    match template.kind {
        TemplateKind::Tomcat => tomcat::launch(&mut launch, template, instance_dir),
        TemplateKind::Liberty => liberty::launch(&mut launch, template, instance_dir),
    }
    if launch.dir.is_none() {
        launch.dir = Some(instance_dir.to_string());
    }
    if launch.ready.check == crate::model::ReadyCheck::None {
        launch.ready.check = crate::model::ReadyCheck::Tcp {
            port: "http".into(),
        };
    }
    launch
}

/// A comment at the top of every generated file, saying who owns it.
pub(crate) fn ownership_note(server: &str) -> String {
    format!(
        "Written by Dure for server `{server}`: changes made here are replaced at the next start; change the server or its cluster instead"
    )
}

impl Domain {
    /// The files Dure writes for `server` in this configuration, or `None`
    /// when it names no template (or does not exist).
    pub fn template_files(&self, server: &str) -> Option<GeneratedFiles> {
        let spec = self.servers().get(server)?;
        spec.template.as_ref()?;
        generate(spec, &self.template_context(spec))
    }

    /// What the files of `spec` depend on in this configuration.
    pub fn template_context(&self, spec: &ServerSpec) -> Context {
        // A node with no address is named by its name (the rules refuse
        // replication across such nodes, where the name would not do).
        let address = |node: &str| match self.nodes.get(node) {
            Some(n) if !n.address.is_empty() => n.address.clone(),
            _ => node.to_string(),
        };
        let cluster = self.cluster_of(&spec.name).map(|cluster| ClusterContext {
            name: cluster.name.clone(),
            session_replication: cluster.session_replication,
            transaction_peer_recovery: cluster.transaction_peer_recovery.clone(),
            host: address(&spec.node),
            peers: cluster
                .members
                .iter()
                .filter(|m| **m != spec.name)
                .filter_map(|m| self.servers().get(m))
                .map(|peer| Peer {
                    server: peer.name.clone(),
                    host: address(&peer.node),
                    replication_port: peer.ports.get(tomcat::REPLICATION_PORT).copied(),
                })
                .collect(),
        });
        Context { cluster }
    }
}

/// Checks a server's template settings against its own document.
pub(crate) fn check_server(server: &ServerSpec) -> Result<(), DomainError> {
    let Some(template) = &server.template else {
        return Ok(());
    };
    let invalid = |setting: &'static str, reason: String| DomainError::TemplateSettingInvalid {
        server: server.name.clone(),
        template: template.kind.to_string(),
        setting,
        reason,
    };
    if !server.argv.is_empty() {
        return Err(DomainError::TemplateWithCommand {
            server: server.name.clone(),
            template: template.kind.to_string(),
        });
    }
    for port in template.kind.required_ports() {
        if !server.ports.contains_key(*port) {
            return Err(DomainError::TemplatePortMissing {
                server: server.name.clone(),
                template: template.kind.to_string(),
                port,
            });
        }
    }
    for (setting, value) in [
        ("java_home", &template.java_home),
        ("catalina_home", &template.catalina_home),
        ("wlp_home", &template.wlp_home),
    ] {
        if let Some(path) = value.as_deref().filter(|p| !is_plain_absolute(p)) {
            return Err(invalid(
                setting,
                format!("`{path}` must be an absolute path without quotes or `$`"),
            ));
        }
    }
    match template.kind {
        TemplateKind::Tomcat if template.wlp_home.is_some() => Err(invalid(
            "wlp_home",
            "applies to liberty servers only".into(),
        )),
        TemplateKind::Liberty if template.catalina_home.is_some() => Err(invalid(
            "catalina_home",
            "applies to tomcat servers only".into(),
        )),
        _ => Ok(()),
    }
}

/// Whether `path` is absolute and can be written into a shell file and an
/// XML attribute as it is.
fn is_plain_absolute(path: &str) -> bool {
    path.starts_with('/')
        && !path
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\'' | '$' | '`' | '\\'))
}

/// Checks a cluster's template settings against its members and their
/// nodes.
pub(crate) fn check_cluster(domain: &Domain, cluster: &ClusterSpec) -> Result<(), DomainError> {
    let members = || {
        cluster
            .members
            .iter()
            .filter_map(|m| domain.servers().get(m))
    };
    if !cluster.session_replication.is_default() {
        for member in members() {
            let is_tomcat = member
                .template
                .as_ref()
                .is_some_and(|t| t.kind == TemplateKind::Tomcat);
            if !is_tomcat {
                return Err(DomainError::ReplicationNeedsTomcat {
                    cluster: cluster.name.clone(),
                    server: member.name.clone(),
                });
            }
            if !member.ports.contains_key(tomcat::REPLICATION_PORT) {
                return Err(DomainError::ReplicationNeedsPort {
                    cluster: cluster.name.clone(),
                    server: member.name.clone(),
                });
            }
            let address = domain
                .nodes
                .get(&member.node)
                .map(|n| n.address.as_str())
                .unwrap_or_default();
            if address.is_empty() {
                return Err(DomainError::ReplicationNeedsAddress {
                    cluster: cluster.name.clone(),
                    server: member.name.clone(),
                    node: member.node.clone(),
                });
            }
        }
    }
    if let Some(recovery) = cluster
        .transaction_peer_recovery
        .as_ref()
        .filter(|r| r.enabled)
    {
        let refuse = |reason: String| DomainError::PeerRecoveryInvalid {
            cluster: cluster.name.clone(),
            reason,
        };
        let Some(log_dir) = recovery.log_dir.as_deref() else {
            return Err(refuse(
                "it needs a log directory every member can reach: give log_dir".into(),
            ));
        };
        if !is_plain_absolute(log_dir) {
            return Err(refuse(format!(
                "log directory `{log_dir}` must be an absolute path without quotes or `$`"
            )));
        }
        for member in members() {
            let is_liberty = member
                .template
                .as_ref()
                .is_some_and(|t| t.kind == TemplateKind::Liberty);
            if !is_liberty {
                return Err(refuse(format!(
                    "member `{}` is not a liberty server; transaction peer recovery is for liberty clusters",
                    member.name
                )));
            }
            let shared = domain
                .nodes
                .get(&member.node)
                .is_some_and(|node| node.shares(log_dir));
            if !shared {
                return Err(refuse(format!(
                    "log directory `{log_dir}` is not on a filesystem node `{}` (of member `{}`) declares shared: add it, or a directory above it, to the node's shared_dirs",
                    member.node, member.name
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
