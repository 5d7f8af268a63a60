//! Configuration for existing web tiers, written from a cluster's
//! balancing settings and members: an HAProxy backend (`haproxy`), an
//! nginx upstream (`nginx`) or a WebSphere-style `plugin-cfg.xml`
//! (`plugin_cfg`). Each format says in the text it writes, and in
//! [`Exported::notes`], what of Dure's settings it cannot express, so a
//! difference in behaviour is never silent. Pure: the caller gathers the
//! members (with their addresses) and the routes, and writes the text.

mod haproxy;
mod nginx;
mod plugin_cfg;

/// XML attribute escaping, shared with the server templates' files.
pub(crate) use plugin_cfg::escape as xml_escape;

use crate::lb::ClusterBalance;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// What `dure cluster export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// An HAProxy `backend` section.
    Haproxy,
    /// An nginx `upstream` block.
    Nginx,
    /// A WebSphere-style web server plugin file.
    PluginCfg,
}

/// Each format with its name, once.
const FORMAT_NAMES: [(ExportFormat, &str); 3] = [
    (ExportFormat::Haproxy, "haproxy"),
    (ExportFormat::Nginx, "nginx"),
    (ExportFormat::PluginCfg, "plugin-cfg"),
];

impl ExportFormat {
    /// Returns the name flags use, such as `plugin-cfg`.
    pub fn as_str(self) -> &'static str {
        FORMAT_NAMES
            .iter()
            .find(|(format, _)| *format == self)
            .map(|(_, name)| *name)
            .expect("every format has a name")
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no export format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an export format: use haproxy, nginx or plugin-cfg")]
pub struct UnknownFormat(pub String);

impl FromStr for ExportFormat {
    type Err = UnknownFormat;
    fn from_str(word: &str) -> Result<ExportFormat, UnknownFormat> {
        FORMAT_NAMES
            .iter()
            .find(|(_, name)| *name == word)
            .map(|(format, _)| *format)
            .ok_or_else(|| UnknownFormat(word.to_string()))
    }
}

/// A cluster as an export needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportCluster {
    pub name: String,
    pub balance: ClusterBalance,
    /// In the cluster's member order.
    pub members: Vec<ExportMember>,
    /// The balancer routes that send the cluster requests.
    pub routes: Vec<ExportRoute>,
}

/// One member: where it is reached and its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportMember {
    /// The server's name, also its sticky route.
    pub server: String,
    /// Its node's address (an IP or a host name); empty when unknown.
    pub address: String,
    /// Its server's `http` port.
    pub port: Option<u16>,
    /// 0 takes no new requests.
    pub weight: u32,
    pub backup: bool,
}

/// A route to the cluster: requests for `host` (any when unset) under
/// path prefix `path` (`/` when unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRoute {
    pub host: Option<String>,
    pub path: Option<String>,
}

/// The text of an export and what in it differs from Dure's balancing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub text: String,
    /// One line per setting the format cannot express or member left out;
    /// also written as comments in `text`.
    pub notes: Vec<String>,
}

/// Why a cluster cannot be exported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("cluster `{cluster}` has no members: add one with `dure cluster add-member {cluster} SERVER`")]
    NoMembers { cluster: String },
    #[error("cluster `{cluster}` has no member a balancer can reach: {reasons}")]
    NoReachableMember { cluster: String, reasons: String },
}

/// Returns `cluster` written in `format`.
pub fn export(cluster: &ExportCluster, format: ExportFormat) -> Result<Exported, ExportError> {
    if cluster.members.is_empty() {
        return Err(ExportError::NoMembers {
            cluster: cluster.name.clone(),
        });
    }
    let mut notes = Vec::new();
    let mut targets = Vec::new();
    for member in &cluster.members {
        match Target::of(member) {
            Ok(target) => targets.push(target),
            Err(reason) => notes.push(format!("member `{}` is left out: {reason}", member.server)),
        }
    }
    if targets.is_empty() {
        return Err(ExportError::NoReachableMember {
            cluster: cluster.name.clone(),
            reasons: notes.join("; "),
        });
    }
    let body = match format {
        ExportFormat::Haproxy => haproxy::write(cluster, &targets, &mut notes),
        ExportFormat::Nginx => nginx::write(cluster, &targets, &mut notes),
        ExportFormat::PluginCfg => plugin_cfg::write(cluster, &targets, &mut notes),
    };
    let mut text = String::new();
    let comments = std::iter::once(heading(cluster, format)).chain(notes.iter().cloned());
    if format == ExportFormat::PluginCfg {
        text.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        for line in comments {
            text.push_str(&format!("<!-- {} -->\n", comment_safe(&line)));
        }
    } else {
        for line in comments {
            text.push_str(&format!("# {}\n", comment_safe(&line)));
        }
    }
    text.push_str(&body);
    Ok(Exported { text, notes })
}

/// A member that can be written: an address and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    server: String,
    /// As given: an IP address without brackets, or a host name.
    host: String,
    /// Whether `host` is an IPv6 address, bracketed in `host:port` forms.
    ipv6: bool,
    port: u16,
    weight: u32,
    backup: bool,
}

impl Target {
    fn of(member: &ExportMember) -> Result<Target, &'static str> {
        let port = member.port.ok_or("its server declares no `http` port")?;
        if member.address.is_empty() {
            return Err("its node has no address and its agent has not reported one");
        }
        if !member
            .address
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b))
        {
            return Err("its node's address is not an IP address or a host name");
        }
        Ok(Target {
            server: member.server.clone(),
            host: member.address.clone(),
            ipv6: matches!(member.address.parse(), Ok(IpAddr::V6(_))),
            port,
            weight: member.weight,
            backup: member.backup,
        })
    }

    /// `host:port`, `[v6]:port` for an IPv6 address.
    fn host_port(&self) -> String {
        if self.ipv6 {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The first line of every export, as a comment's text.
fn heading(cluster: &ExportCluster, format: ExportFormat) -> String {
    format!(
        "cluster {} ({} members, policy {}) written by `dure cluster export` as {format}",
        comment_safe(&cluster.name),
        cluster.members.len(),
        cluster.balance.policy
    )
}

/// `text` with anything but printable ASCII replaced by `_`, so a name
/// cannot end a comment line; `--` is broken up so it cannot end an XML
/// comment either.
fn comment_safe(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-_");
    }
    out
}

#[cfg(test)]
mod tests;
