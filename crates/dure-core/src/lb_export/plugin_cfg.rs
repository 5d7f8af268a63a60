//! A WebSphere-style web server plugin file (`plugin-cfg.xml`) for a
//! cluster. What maps:
//!
//! * members: a `ServerCluster` of `Server` elements, each with its name,
//!   `CloneID` its sticky route (its name), `LoadBalanceWeight` and an
//!   HTTP `Transport`; `PrimaryServers` and `BackupServers` list them;
//! * policies: `round_robin` → `Round Robin`, `random` → `Random`; the
//!   plugin has no other, so `least_conn` and `ip_hash` are written as
//!   `Round Robin`, said in a note;
//! * passive ejection: `RetryInterval`, the seconds of the base ejection
//!   time (the plugin marks a member down when a request to it fails and
//!   tries it again after that long);
//! * sticky session suffix: `AffinityCookie` and `AffinityURLIdentifier`
//!   on each `Uri`; the plugin reads the clone id after a `:` as WebSphere
//!   writes session ids, not Tomcat's `.<route>` suffix, said in a note;
//! * routes: the balancer routes to the cluster, grouped by host into a
//!   `VirtualHostGroup` (`default_host`, `*:*`, for routes of any host) with
//!   a `UriGroup` of their path prefixes (`/api` and `/api/*`) and a
//!   `Route`; with no route, every URI of every host.

use super::{ExportCluster, Target};
use crate::balance::{Policy, Sticky};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// The virtual host group of routes for any host, as WebSphere names it.
const ANY_HOST_GROUP: &str = "default_host";

pub(super) fn write(
    cluster: &ExportCluster,
    targets: &[Target],
    notes: &mut Vec<String>,
) -> String {
    let balance = &cluster.balance;
    let name = escape(&cluster.name);
    let load_balance = match balance.policy {
        Policy::Random => "Random",
        Policy::RoundRobin => "Round Robin",
        other => {
            notes.push(format!(
                "policy {other} has no plugin-cfg equivalent: the plugin balances Round Robin"
            ));
            "Round Robin"
        }
    };
    let affinity = match &balance.sticky {
        Some(Sticky::SessionSuffix { cookie }) => {
            notes.push(format!(
                "the plugin reads the clone id after `:` in cookie {cookie} (`<id>:<CloneID>`, as WebSphere writes it), not a `.<route>` suffix as Tomcat's jvmRoute writes it"
            ));
            Some(cookie.as_str())
        }
        Some(Sticky::RouteCookie { cookie }) => {
            notes.push(format!(
                "sticky route cookie {cookie} is not exported: the plugin keeps affinity only through the application's session cookie"
            ));
            None
        }
        None => None,
    };
    notes.push(
        "active checks are not exported: the plugin marks a member down when a request to it fails and retries it after RetryInterval"
            .to_string(),
    );
    let retry_secs = balance.outlier.base_ejection_time.0.as_secs().max(1);

    let mut out = String::new();
    out.push_str("<Config RefreshInterval=\"60\">\n");
    let groups = host_groups(cluster, notes);
    for host in groups.keys() {
        let (group, pattern) = match host {
            Some(host) => (escape(host), format!("{}:*", escape(host))),
            None => (ANY_HOST_GROUP.to_string(), "*:*".to_string()),
        };
        let _ = writeln!(out, "  <VirtualHostGroup Name=\"{group}\">");
        let _ = writeln!(out, "    <VirtualHost Name=\"{pattern}\"/>");
        out.push_str("  </VirtualHostGroup>\n");
    }
    let _ = writeln!(
        out,
        "  <ServerCluster Name=\"{name}\" LoadBalance=\"{load_balance}\" RetryInterval=\"{retry_secs}\" IgnoreAffinityRequests=\"false\" RemoveSpecialHeaders=\"true\" CloneSeparatorChange=\"false\" PostBufferSize=\"0\" PostSizeLimit=\"-1\">"
    );
    for target in targets {
        let server = escape(&target.server);
        let _ = writeln!(
            out,
            "    <Server Name=\"{server}\" CloneID=\"{server}\" LoadBalanceWeight=\"{}\" ConnectTimeout=\"5\" ExtendedHandshake=\"false\" MaxConnections=\"-1\" WaitForContinue=\"false\">",
            target.weight
        );
        let _ = writeln!(
            out,
            "      <Transport Hostname=\"{}\" Port=\"{}\" Protocol=\"http\"/>",
            escape(&target.host),
            target.port
        );
        out.push_str("    </Server>\n");
    }
    for (element, backup) in [("PrimaryServers", false), ("BackupServers", true)] {
        let listed: Vec<&Target> = targets.iter().filter(|t| t.backup == backup).collect();
        if listed.is_empty() {
            continue;
        }
        let _ = writeln!(out, "    <{element}>");
        for target in listed {
            let _ = writeln!(out, "      <Server Name=\"{}\"/>", escape(&target.server));
        }
        let _ = writeln!(out, "    </{element}>");
    }
    out.push_str("  </ServerCluster>\n");
    for (host, uris) in &groups {
        let group = host.as_deref().map_or(ANY_HOST_GROUP.to_string(), escape);
        let uri_group = format!("{group}_{name}_URIs");
        let _ = writeln!(out, "  <UriGroup Name=\"{uri_group}\">");
        for uri in uris {
            let _ = write!(out, "    <Uri Name=\"{}\"", escape(uri));
            if let Some(cookie) = affinity {
                let _ = write!(
                    out,
                    " AffinityCookie=\"{}\" AffinityURLIdentifier=\"{}\"",
                    escape(cookie),
                    escape(&cookie.to_ascii_lowercase())
                );
            }
            out.push_str("/>\n");
        }
        out.push_str("  </UriGroup>\n");
        let _ = writeln!(
            out,
            "  <Route ServerCluster=\"{name}\" UriGroup=\"{uri_group}\" VirtualHostGroup=\"{group}\"/>"
        );
    }
    out.push_str("</Config>\n");
    out
}

/// The URIs the cluster serves, by host (`None`: any host), from its
/// routes; every URI of every host when no route names it.
fn host_groups(
    cluster: &ExportCluster,
    notes: &mut Vec<String>,
) -> BTreeMap<Option<String>, BTreeSet<String>> {
    let mut groups: BTreeMap<Option<String>, BTreeSet<String>> = BTreeMap::new();
    for route in &cluster.routes {
        let host = route.host.as_deref().map(str::to_ascii_lowercase);
        let uris = groups.entry(host).or_default();
        match route.path.as_deref().map(|p| p.trim_end_matches('/')) {
            None | Some("") => {
                uris.insert("/*".to_string());
            }
            Some(prefix) => {
                uris.insert(prefix.to_string());
                uris.insert(format!("{prefix}/*"));
            }
        }
    }
    if groups.is_empty() {
        notes.push(format!(
            "no balancer routes to cluster `{}`: every URI of every host is routed to it",
            cluster.name
        ));
        groups.insert(None, BTreeSet::from(["/*".to_string()]));
    }
    groups
}

/// `text` escaped for an XML attribute value in double quotes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            // XML 1.0 allows no other control character, even as a reference.
            c if c.is_control() => out.push('_'),
            c => out.push(c),
        }
    }
    out
}
