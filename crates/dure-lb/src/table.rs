//! The routing table the balancer serves: listeners, their routes (Host
//! header and path prefix) to clusters, and each cluster's members. A table
//! is an immutable value; the caller builds a new one and hands it to
//! [`crate::Balancer::replace`], which swaps it in without a restart. It
//! says nothing of how members are chosen or whether they are healthy: that
//! is the cluster state's job (`cluster`).

use crate::tls::TlsFiles;
use dure_core::balance::{PoolConfig, RetryConfig, Sticky};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything the balancer serves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// The listeners, each identified by its address as written here (a
    /// listener on port 0 keeps its ephemeral port across replacements).
    pub listeners: Vec<ListenerSpec>,
    /// The clusters routes point to, by name.
    pub clusters: BTreeMap<String, ClusterSpec>,
}

/// One listening address and the routes requests to it follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub addr: SocketAddr,
    pub routes: Vec<RouteSpec>,
    /// Served over TLS with these files when set, plain HTTP otherwise.
    /// The files are read each time a table is applied.
    pub tls: Option<TlsFiles>,
}

/// Requests whose Host matches `host` (any host when `None`) and whose path
/// starts with `path_prefix` (at a segment boundary) go to `cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub host: Option<String>,
    pub path_prefix: String,
    pub cluster: String,
}

impl RouteSpec {
    /// Returns a route of every request to `cluster`.
    pub fn to_cluster(cluster: &str) -> RouteSpec {
        RouteSpec {
            host: None,
            path_prefix: "/".to_string(),
            cluster: cluster.to_string(),
        }
    }
}

/// A cluster's members, how they are balanced and how they are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub members: Vec<MemberSpec>,
    /// The policy, the rise/fall and interval of active checks and the
    /// passive ejection thresholds, as the core's pool takes them.
    pub pool: PoolConfig,
    /// How many other members a failed attempt may be retried on.
    pub retry: RetryConfig,
    /// How clients are bound to members, if they are.
    pub sticky: Option<Sticky>,
    /// How long a draining member still gets the requests of its sticky
    /// sessions.
    pub drain_timeout: Duration,
    /// What an active check does; `None` checks nothing actively.
    pub health_check: Option<HealthCheckSpec>,
}

/// The drain timeout of a cluster that does not say (the domain's default).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ClusterSpec {
    fn default() -> ClusterSpec {
        ClusterSpec {
            members: Vec::new(),
            pool: PoolConfig::default(),
            retry: RetryConfig::default(),
            sticky: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            health_check: None,
        }
    }
}

/// One member as the controller describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    /// The member's name, unique in its cluster (the server's name).
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    /// Used only while every primary member is down.
    pub backup: bool,
    pub state: MemberState,
    /// The route sticky sessions name it by; its name when `None`.
    pub route: Option<String>,
}

impl MemberSpec {
    /// Returns an active primary member of weight 1.
    pub fn new(name: &str, addr: SocketAddr) -> MemberSpec {
        MemberSpec {
            name: name.to_string(),
            addr,
            weight: 1,
            backup: false,
            state: MemberState::Active,
            route: None,
        }
    }
}

/// What the controller says of a member, before any check of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Running and in rotation.
    Active,
    /// Finishing its requests: no new ones.
    Draining,
    /// Stopped, stopping or failed: nothing is sent to it.
    Down,
}

/// What a cluster's active checks do (their interval, rise and fall are
/// in the pool's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    pub kind: HealthCheckKind,
    /// How long a check may take before it counts as failed.
    pub timeout: Duration,
}

/// What a check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// `GET path` expecting a 2xx answer.
    Http { path: String },
    /// A TCP connect.
    Tcp,
}

impl Table {
    /// Returns the first reason this table cannot be served, if any: a route
    /// to a cluster it does not define, a listener twice, a member twice.
    pub fn check(&self) -> Result<(), crate::LbError> {
        let mut seen = std::collections::BTreeSet::new();
        for listener in &self.listeners {
            if !seen.insert(listener.addr) {
                return Err(crate::LbError::DuplicateListener {
                    addr: listener.addr,
                });
            }
            for route in &listener.routes {
                if !self.clusters.contains_key(&route.cluster) {
                    return Err(crate::LbError::UnknownCluster {
                        listener: listener.addr,
                        cluster: route.cluster.clone(),
                    });
                }
                if !route.path_prefix.starts_with('/') {
                    return Err(crate::LbError::BadPathPrefix {
                        prefix: route.path_prefix.clone(),
                    });
                }
            }
        }
        for (cluster, spec) in &self.clusters {
            let mut names = std::collections::BTreeSet::new();
            for member in &spec.members {
                if !names.insert(&member.name) {
                    return Err(crate::LbError::DuplicateMember {
                        cluster: cluster.clone(),
                        member: member.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Returns the listener at `addr` as written in the table.
    pub fn listener(&self, addr: SocketAddr) -> Option<&ListenerSpec> {
        self.listeners.iter().find(|l| l.addr == addr)
    }
}
