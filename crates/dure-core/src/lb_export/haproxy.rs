//! An HAProxy (2.x) `backend` section for a cluster. What maps:
//!
//! * policies: `round_robin` → `balance roundrobin` (HAProxy's is
//!   weighted and smooth too), `random` → `balance random`, `least_conn`
//!   → `balance leastconn`, `ip_hash` → `balance source` with
//!   `hash-type consistent` (consistent hashing of the client address);
//! * active checks: `check inter rise fall` on every server, `option
//!   httpchk GET PATH` expecting a 2xx for `http:/PATH` checks;
//! * passive ejection: `observe layer7 error-limit N on-error mark-down`,
//!   N the consecutive 5xx of the outlier settings; unlike Dure's timed
//!   ejection, the member then comes back after `rise` passing checks;
//! * sticky route cookie: `cookie NAME insert indirect nocache` with each
//!   server's `cookie` its route (its name), which is the cookie Dure sets;
//! * sticky session suffix (Tomcat's `jvmRoute`): one `use-server` rule
//!   per member matching `<id>.<route>` in the session cookie or a
//!   `;jsessionid=` path parameter; HAProxy skips a rule whose server is
//!   down, so the request is balanced as Dure does;
//! * weights: HAProxy's range is 0 to 256, so larger weights are scaled
//!   down keeping their ratios (a non-zero weight stays at least 1);
//! * `backup` members: `backup`. `option redispatch` sends a request
//!   whose server is down elsewhere, also a sticky one.

use super::{ExportCluster, Target};
use crate::balance::{Policy, Sticky};
use crate::lb::ActiveCheck;
use std::fmt::Write;

/// HAProxy's largest server weight.
const MAX_HAPROXY_WEIGHT: u32 = 256;

pub(super) fn write(
    cluster: &ExportCluster,
    targets: &[Target],
    notes: &mut Vec<String>,
) -> String {
    let balance = &cluster.balance;
    let mut out = String::new();
    let _ = writeln!(out, "backend {}", identifier(&cluster.name));
    let algorithm = match balance.policy {
        Policy::RoundRobin => "roundrobin",
        Policy::Random => "random",
        Policy::LeastConn => "leastconn",
        Policy::IpHash => "source",
    };
    let _ = writeln!(out, "    balance {algorithm}");
    if balance.policy == Policy::IpHash {
        out.push_str("    hash-type consistent\n");
    }
    if let ActiveCheck::Http { path } = &balance.check {
        let _ = writeln!(out, "    option httpchk GET {path}");
        out.push_str("    http-check expect rstatus ^2[0-9][0-9]$\n");
    }
    out.push_str("    option redispatch\n");
    match &balance.sticky {
        Some(Sticky::RouteCookie { cookie }) => {
            let _ = writeln!(
                out,
                "    cookie {cookie} insert indirect nocache httponly attr SameSite=Lax"
            );
        }
        Some(Sticky::SessionSuffix { cookie }) => {
            let name = regex_literal(cookie);
            for target in targets {
                let route = regex_literal(&target.server);
                let _ = writeln!(
                    out,
                    "    use-server {server} if {{ req.cook({cookie}) -m reg '^[^.]*\\.{route}$' }} || {{ path -m reg -i ';{name}=[^.;/]*\\.{route}(;|/|$)' }}",
                    server = identifier(&target.server),
                );
            }
        }
        None => {}
    }
    let health = &balance.health;
    let _ = writeln!(
        out,
        "    default-server check inter {} rise {} fall {} observe layer7 error-limit {} on-error mark-down",
        health.interval, health.rise, health.fall, balance.outlier.consecutive_5xx
    );
    let weights = scaled_weights(targets, notes);
    for (target, weight) in targets.iter().zip(weights) {
        let _ = write!(
            out,
            "    server {} {} weight {weight}",
            identifier(&target.server),
            target.host_port()
        );
        if target.backup {
            out.push_str(" backup");
        }
        if matches!(balance.sticky, Some(Sticky::RouteCookie { .. })) {
            let _ = write!(out, " cookie {}", identifier(&target.server));
        }
        out.push('\n');
    }
    out
}

/// Each target's weight within HAProxy's range, with a note when scaled.
fn scaled_weights(targets: &[Target], notes: &mut Vec<String>) -> Vec<u32> {
    let max = targets.iter().map(|t| t.weight).max().unwrap_or(0);
    if max <= MAX_HAPROXY_WEIGHT {
        return targets.iter().map(|t| t.weight).collect();
    }
    notes.push(format!(
        "weights are scaled by {MAX_HAPROXY_WEIGHT}/{max}: HAProxy's largest weight is {MAX_HAPROXY_WEIGHT}"
    ));
    targets
        .iter()
        .map(|t| match t.weight {
            0 => 0,
            w => ((u64::from(w) * u64::from(MAX_HAPROXY_WEIGHT) + u64::from(max) / 2)
                / u64::from(max))
            .max(1) as u32,
        })
        .collect()
}

/// `name` as an HAProxy proxy or server name: letters, digits, `-`, `_`,
/// `.` and `:`; anything else becomes `_`.
pub(super) fn identifier(name: &str) -> String {
    let out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "_".to_string()
    } else {
        out
    }
}

/// `text` as a literal in a PCRE pattern inside single quotes: every
/// character but letters, digits and `_` escaped, a quote left out (names
/// and cookie names never hold one).
fn regex_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars().filter(|c| *c != '\'') {
        if !(c.is_ascii_alphanumeric() || c == '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
