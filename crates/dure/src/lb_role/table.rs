//! Turns the controller's balancer table (`GET /v1/lbs/{lb}/table`) into
//! the routing table the data path serves (`dure_lb::Table`): listeners
//! and routes as defined, each member at its node's address and `http`
//! port, its state as the data path takes it; a TLS listener with the
//! paths of its certificate and key files, which the data path reads (and
//! refuses, naming the file) when the table is applied. Pure: host names
//! are resolved by the caller and passed in.

use dure_api::{LbMember, LbTable};
use dure_core::balance::PoolConfig;
use dure_core::{ActiveCheck, ServerState};
use dure_lb::{
    ClusterSpec, HealthCheckKind, HealthCheckSpec, ListenerSpec, MemberSpec, MemberState,
    RetryConfig, RouteSpec, Table, TlsFiles,
};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The longest an active check waits for its answer.
const MAX_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the data path cannot serve, said once per new table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// A listener address that does not parse (the controller refuses
    /// those, so only an older controller could send one).
    BadListener { listen: String },
    /// A member without an `http` port or a reachable address.
    Member {
        cluster: String,
        server: String,
        reason: &'static str,
    },
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::BadListener { listen } => {
                write!(
                    f,
                    "listener `{listen}` is not served: its address is invalid"
                )
            }
            Skipped::Member {
                cluster,
                server,
                reason,
            } => write!(
                f,
                "member `{server}` of cluster `{cluster}` gets no requests: {reason}"
            ),
        }
    }
}

/// The routing table of `table`; `resolved` maps each member address that
/// is a host name to its IP address.
pub fn routing_table(
    table: &LbTable,
    resolved: &BTreeMap<String, IpAddr>,
) -> (Table, Vec<Skipped>) {
    let mut skipped = Vec::new();
    let mut listeners = Vec::new();
    for listener in &table.lb.listeners {
        let Some(addr) = listener.addr() else {
            skipped.push(Skipped::BadListener {
                listen: listener.listen.clone(),
            });
            continue;
        };
        let routes = listener
            .routes
            .iter()
            .map(|r| RouteSpec {
                host: r.host.clone(),
                path_prefix: r.path.clone().unwrap_or_else(|| "/".to_string()),
                cluster: r.cluster.clone(),
            })
            .collect();
        let tls = listener.tls.as_ref().map(|files| TlsFiles {
            cert: files.cert.clone().into(),
            key: files.key.clone().into(),
        });
        listeners.push(ListenerSpec { addr, routes, tls });
    }
    let mut clusters = BTreeMap::new();
    for (name, cluster) in &table.clusters {
        let balance = &cluster.balance;
        let mut members = Vec::new();
        for member in &cluster.members {
            match member_spec(member, resolved) {
                Ok(spec) => members.push(spec),
                Err(reason) => skipped.push(Skipped::Member {
                    cluster: name.clone(),
                    server: member.server.clone(),
                    reason,
                }),
            }
        }
        let kind = match &balance.check {
            ActiveCheck::Tcp => HealthCheckKind::Tcp,
            ActiveCheck::Http { path } => HealthCheckKind::Http { path: path.clone() },
        };
        clusters.insert(
            name.clone(),
            ClusterSpec {
                members,
                pool: PoolConfig {
                    policy: balance.policy,
                    health: balance.health,
                    outlier: balance.outlier,
                },
                retry: RetryConfig::default(),
                sticky: balance.sticky.clone(),
                drain_timeout: balance.drain_timeout.0,
                health_check: Some(HealthCheckSpec {
                    kind,
                    timeout: balance.health.interval.0.min(MAX_CHECK_TIMEOUT),
                }),
            },
        );
    }
    (
        Table {
            listeners,
            clusters,
        },
        skipped,
    )
}

fn member_spec(
    member: &LbMember,
    resolved: &BTreeMap<String, IpAddr>,
) -> Result<MemberSpec, &'static str> {
    let port = member.port.ok_or("its server declares no `http` port")?;
    let ip = match member.address.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) if member.address.is_empty() => {
            return Err("its node has no address and its agent has not reported one")
        }
        Err(_) => *resolved
            .get(&member.address)
            .ok_or("its node's host name does not resolve")?,
    };
    // A server's weight may be 0: it takes no new requests (drains). Any
    // other is within the pool's bound, which is the server's.
    let (weight, drained) = match member.weight {
        0 => (1, true),
        w => (w, false),
    };
    let state = match member.state {
        _ if drained => MemberState::Draining,
        // A graceful stop drains it before its agent is told to stop.
        ServerState::Ready if member.draining => MemberState::Draining,
        ServerState::Ready => MemberState::Active,
        // Being stopped gracefully: its requests finish, no new ones.
        ServerState::Stopping => MemberState::Draining,
        ServerState::Stopped
        | ServerState::Starting
        | ServerState::Running
        | ServerState::Failed
        | ServerState::Unknown => MemberState::Down,
    };
    Ok(MemberSpec {
        name: member.server.clone(),
        addr: SocketAddr::new(ip, port),
        weight,
        backup: member.backup,
        state,
        // The route sticky sessions use is the server's name.
        route: None,
    })
}

/// The member addresses of `table` that are host names, to resolve.
pub fn host_names(table: &LbTable) -> Vec<String> {
    let mut names: Vec<String> = table
        .clusters
        .values()
        .flat_map(|c| &c.members)
        .map(|m| m.address.clone())
        .filter(|a| !a.is_empty() && a.parse::<IpAddr>().is_err())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_api::LbCluster;
    use dure_core::{ClusterBalance, LbSpec, Listener, Route, TlsFiles};

    fn member(server: &str, address: &str, port: Option<u16>, state: ServerState) -> LbMember {
        LbMember {
            server: server.into(),
            node: "n1".into(),
            address: address.into(),
            port,
            weight: 100,
            backup: false,
            state,
            draining: false,
        }
    }

    fn table(members: Vec<LbMember>) -> LbTable {
        LbTable {
            lb: LbSpec {
                name: "front".into(),
                listeners: vec![
                    Listener {
                        listen: "127.0.0.1:8080".into(),
                        tls: None,
                        routes: vec![Route {
                            host: Some("shop.example".into()),
                            path: None,
                            cluster: "shop".into(),
                        }],
                    },
                    Listener {
                        listen: "127.0.0.1:8443".into(),
                        tls: Some(TlsFiles {
                            cert: "/c".into(),
                            key: "/k".into(),
                        }),
                        routes: vec![],
                    },
                ],
            },
            clusters: BTreeMap::from([(
                "shop".to_string(),
                LbCluster {
                    balance: ClusterBalance {
                        check: ActiveCheck::Http {
                            path: "/health".into(),
                        },
                        ..ClusterBalance::default()
                    },
                    members,
                },
            )]),
        }
    }

    #[test]
    fn a_member_the_controller_drains_takes_no_new_requests() {
        let mut drained = member("web1", "127.0.0.1", Some(9001), ServerState::Ready);
        drained.draining = true;
        let mut stopped = member("web2", "127.0.0.2", Some(9002), ServerState::Stopped);
        stopped.draining = true;
        let (routing, _) = routing_table(&table(vec![drained, stopped]), &BTreeMap::new());
        let states: Vec<_> = routing.clusters["shop"]
            .members
            .iter()
            .map(|m| m.state)
            .collect();
        assert_eq!(states, [MemberState::Draining, MemberState::Down]);
    }

    #[test]
    fn members_get_their_address_port_and_state() {
        let mut heavy = member("web3", "app3.example", Some(9003), ServerState::Stopping);
        heavy.weight = 1000;
        heavy.backup = true;
        let mut zero = member("web4", "127.0.0.4", Some(9004), ServerState::Ready);
        zero.weight = 0;
        let source = table(vec![
            member("web1", "127.0.0.1", Some(9001), ServerState::Ready),
            member("web2", "127.0.0.2", Some(9002), ServerState::Failed),
            heavy,
            zero,
            member("web5", "127.0.0.5", None, ServerState::Ready),
            member("web6", "gone.example", Some(9006), ServerState::Ready),
        ]);
        assert_eq!(host_names(&source), ["app3.example", "gone.example"]);
        let resolved = BTreeMap::from([("app3.example".to_string(), "10.0.0.3".parse().unwrap())]);
        let (routing, skipped) = routing_table(&source, &resolved);
        routing.check().expect("a table the data path takes");
        let members: Vec<_> = routing.clusters["shop"]
            .members
            .iter()
            .map(|m| {
                (
                    m.name.as_str(),
                    m.addr.to_string(),
                    m.weight,
                    m.backup,
                    m.state,
                )
            })
            .collect();
        assert_eq!(
            members,
            [
                (
                    "web1",
                    "127.0.0.1:9001".to_string(),
                    100,
                    false,
                    MemberState::Active
                ),
                (
                    "web2",
                    "127.0.0.2:9002".to_string(),
                    100,
                    false,
                    MemberState::Down
                ),
                (
                    "web3",
                    "10.0.0.3:9003".to_string(),
                    1000,
                    true,
                    MemberState::Draining
                ),
                (
                    "web4",
                    "127.0.0.4:9004".to_string(),
                    1,
                    false,
                    MemberState::Draining
                ),
            ]
        );
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped.iter().any(|s| s.to_string().contains("`web5`")));
        assert!(skipped
            .iter()
            .any(|s| s.to_string().contains("does not resolve")));
        assert_eq!(routing.listeners.len(), 2);
        assert_eq!(routing.listeners[0].tls, None);
        assert_eq!(
            routing.listeners[1].tls,
            Some(dure_lb::TlsFiles {
                cert: "/c".into(),
                key: "/k".into()
            }),
            "a TLS listener is served with its files"
        );
        let route = &routing.listeners[0].routes[0];
        assert_eq!(
            (route.host.as_deref(), route.path_prefix.as_str()),
            (Some("shop.example"), "/")
        );
        let check = routing.clusters["shop"].health_check.as_ref().unwrap();
        assert_eq!(
            check.kind,
            HealthCheckKind::Http {
                path: "/health".into()
            }
        );
        assert_eq!(check.timeout, Duration::from_secs(1));
    }
}
