//! An nginx (open-source, 1.x) `upstream` block for a cluster. What maps:
//!
//! * policies: `round_robin` → nginx's default (the same smooth weighted
//!   round robin), `random` → `random` (weighted), `least_conn` →
//!   `least_conn`, `ip_hash` → `hash $remote_addr consistent` (ketama
//!   consistent hashing of the client address; nginx's `ip_hash` hashes
//!   only the first three octets of an IPv4 address and remaps most
//!   clients when a member comes or goes);
//! * passive ejection: `max_fails` (the outlier settings' consecutive
//!   connect failures) and `fail_timeout` (its base ejection time); nginx
//!   counts failures within `fail_timeout` rather than in a row, and only
//!   those `proxy_next_upstream` names (errors and timeouts by default);
//! * weights: `weight`; a weight of 0 (no new requests) is `down`, since
//!   nginx refuses `weight=0`;
//! * `backup` members: `backup`, which nginx refuses with `hash` and
//!   `random`: there they are left out, said in a note;
//! * pooled upstream connections: `keepalive`.
//!
//! Open-source nginx has neither active checks nor sticky cookies: both
//! are said in notes.

use super::{ExportCluster, Target};
use crate::balance::Policy;
use std::fmt::Write;

/// Idle keep-alive connections nginx keeps per worker, as Dure pools its
/// upstream connections.
const KEEPALIVE: u32 = 32;

pub(super) fn write(
    cluster: &ExportCluster,
    targets: &[Target],
    notes: &mut Vec<String>,
) -> String {
    let balance = &cluster.balance;
    let name = identifier(&cluster.name);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# use with `proxy_pass http://{name};`, `proxy_http_version 1.1;` and `proxy_set_header Connection \"\";` so upstream connections stay alive"
    );
    let _ = writeln!(out, "upstream {name} {{");
    let method = match balance.policy {
        Policy::RoundRobin => None,
        Policy::Random => Some("random"),
        Policy::LeastConn => Some("least_conn"),
        Policy::IpHash => Some("hash $remote_addr consistent"),
    };
    if let Some(method) = method {
        let _ = writeln!(out, "    {method};");
    }
    let backups_allowed = matches!(balance.policy, Policy::RoundRobin | Policy::LeastConn);
    let outlier = &balance.outlier;
    for target in targets {
        let server = super::comment_safe(&target.server);
        if target.backup && !backups_allowed {
            notes.push(format!(
                "backup member `{server}` is left out: nginx allows no backup servers with policy {}",
                balance.policy
            ));
            continue;
        }
        let _ = write!(out, "    server {}", target.host_port());
        if target.weight == 0 {
            out.push_str(" down");
        } else {
            let _ = write!(out, " weight={}", target.weight);
        }
        let _ = write!(
            out,
            " max_fails={} fail_timeout={}",
            outlier.consecutive_connect_failures, outlier.base_ejection_time
        );
        if target.backup {
            out.push_str(" backup");
        }
        let _ = writeln!(out, ";  # {server}");
    }
    let _ = writeln!(out, "    keepalive {KEEPALIVE};");
    out.push_str("}\n");
    notes.push(format!(
        "active check `{}` is not exported: open-source nginx checks members only passively (max_fails, fail_timeout)",
        balance.check
    ));
    notes.push(
        "5xx answers count toward max_fails only with `proxy_next_upstream error timeout http_500 http_502 http_503 http_504`"
            .to_string(),
    );
    if let Some(sticky) = &balance.sticky {
        notes.push(format!(
            "sticky sessions on cookie {} are not exported: open-source nginx has no sticky directive",
            sticky.cookie_name()
        ));
    }
    out
}

/// `name` as an nginx word: as it is when it holds only letters, digits,
/// `-`, `_` and `.`, else double-quoted with `"` and `\` escaped.
pub(super) fn identifier(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return name.to_string();
    }
    let mut out = String::from("\"");
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('_'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
