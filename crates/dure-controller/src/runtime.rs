//! Observed state, kept in memory: what each agent last reported and when.
//! It is rebuilt from the agents' next reports after a controller restart, so
//! it is never written to the store. A node whose reports stop for three
//! heartbeat intervals is unreachable and its servers' state is `unknown`.
//! Each node's agent mode (MANAGED or INDEPENDENT) is kept as last reported,
//! and so is where its agent can be reached ([`AgentEndpoint`]: address and
//! port of the agent's own endpoint) and its version: the agent says so in
//! its registration and in every report. That is observed state too, not
//! configuration: an agent restart moves its port without a configuration
//! revision, and a restarted controller learns it from the next report.

use dure_api::{AgentMode, NodeStatus};
use dure_core::{ObservedServer, ServerState};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Missed heartbeats after which a node counts as unreachable.
pub const MISSED_HEARTBEATS: u32 = 3;

/// Where a node's agent serves its own endpoint (logs, status), as the
/// agent said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEndpoint {
    /// Host name or IP address.
    pub address: String,
    pub port: u16,
}

impl AgentEndpoint {
    /// `host:port`; an IPv6 address goes in brackets.
    pub fn authority(&self) -> String {
        match self.address.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{}]:{}", self.address, self.port),
            Err(_) => format!("{}:{}", self.address, self.port),
        }
    }
}

/// What an agent says about itself in a registration or a report; what it
/// leaves out (an agent older than the report fields) stays as last known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentInfo {
    pub endpoint: Option<AgentEndpoint>,
    pub version: Option<String>,
}

#[derive(Debug, Default)]
struct NodeRuntime {
    agent_version: Option<String>,
    endpoint: Option<AgentEndpoint>,
    last_seen: Option<Instant>,
    last_seen_ms: Option<u64>,
    /// Whether the node was reachable at the last sweep or report.
    reachable: bool,
    servers: HashMap<String, ObservedServer>,
    mode: AgentMode,
    independent_since_ms: Option<u64>,
}

/// A server whose reported state changed.
#[derive(Debug, Clone)]
pub struct Transition {
    pub before: Option<ServerState>,
    pub after: ObservedServer,
}

/// What a report changed.
#[derive(Debug, Clone, Default)]
pub struct Reported {
    /// The servers whose state changed.
    pub transitions: Vec<Transition>,
    /// The node was unreachable before this report.
    pub was_unreachable: bool,
    /// The report told an agent endpoint other than the one known (or the
    /// first one, as after a controller restart).
    pub endpoint_changed: bool,
}

impl NodeRuntime {
    /// Keeps what the agent said about itself; returns whether its
    /// endpoint changed.
    fn learn(&mut self, agent: AgentInfo) -> bool {
        if let Some(version) = agent.version {
            self.agent_version = Some(version);
        }
        match agent.endpoint {
            Some(endpoint) if self.endpoint.as_ref() != Some(&endpoint) => {
                self.endpoint = Some(endpoint);
                true
            }
            _ => false,
        }
    }
}

pub struct Runtime {
    nodes: Mutex<HashMap<String, NodeRuntime>>,
    heartbeat: Duration,
    /// Bumped on every report, so waiters (operations) re-check.
    changed: watch::Sender<u64>,
}

impl Runtime {
    pub fn new(heartbeat: Duration) -> Runtime {
        Runtime {
            nodes: Mutex::new(HashMap::new()),
            heartbeat,
            changed: watch::channel(0).0,
        }
    }

    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// Whether the node reported within the last heartbeats it may miss.
    fn fresh(&self, node: &NodeRuntime) -> bool {
        let stale_after = self.heartbeat * MISSED_HEARTBEATS;
        node.last_seen.is_some_and(|t| t.elapsed() <= stale_after)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, NodeRuntime>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Records an agent's registration and what it said about itself;
    /// returns whether its endpoint changed.
    pub fn registered(&self, node: &str, agent: AgentInfo, now_ms: u64) -> bool {
        let mut nodes = self.lock();
        let entry = nodes.entry(node.to_string()).or_default();
        let endpoint_changed = entry.learn(agent);
        entry.last_seen = Some(Instant::now());
        entry.last_seen_ms = Some(now_ms);
        entry.reachable = true;
        drop(nodes);
        self.notify();
        endpoint_changed
    }

    /// Records a report and what the agent said about itself in it.
    pub fn report(
        &self,
        node: &str,
        agent: AgentInfo,
        servers: Vec<ObservedServer>,
        now_ms: u64,
    ) -> Reported {
        let mut nodes = self.lock();
        let entry = nodes.entry(node.to_string()).or_default();
        let was_unreachable = entry.last_seen.is_some() && !entry.reachable;
        let endpoint_changed = entry.learn(agent);
        entry.last_seen = Some(Instant::now());
        entry.last_seen_ms = Some(now_ms);
        entry.reachable = true;
        let mut transitions = Vec::new();
        let mut fresh = HashMap::with_capacity(servers.len());
        for server in servers {
            let before = entry.servers.get(&server.name).map(|s| s.state);
            if before != Some(server.state) {
                transitions.push(Transition {
                    before,
                    after: server.clone(),
                });
            }
            fresh.insert(server.name.clone(), server);
        }
        entry.servers = fresh;
        drop(nodes);
        self.notify();
        Reported {
            transitions,
            was_unreachable,
            endpoint_changed,
        }
    }

    /// Marks nodes whose heartbeats stopped; returns those that just became
    /// unreachable.
    pub fn sweep(&self) -> Vec<String> {
        let mut lost = Vec::new();
        let mut nodes = self.lock();
        for (name, node) in nodes.iter_mut() {
            if node.reachable && !self.fresh(node) {
                node.reachable = false;
                lost.push(name.clone());
            }
        }
        drop(nodes);
        if !lost.is_empty() {
            self.notify();
        }
        lost
    }

    /// Records the mode a node's agent reported; when it changed, returns
    /// the mode before and since when that was independent.
    pub fn set_mode(
        &self,
        node: &str,
        mode: AgentMode,
        independent_since_ms: Option<u64>,
    ) -> Option<(AgentMode, Option<u64>)> {
        let mut nodes = self.lock();
        let entry = nodes.entry(node.to_string()).or_default();
        let before = (entry.mode, entry.independent_since_ms);
        entry.mode = mode;
        entry.independent_since_ms = match mode {
            AgentMode::Independent => independent_since_ms,
            AgentMode::Managed => None,
        };
        (before.0 != mode).then_some(before)
    }

    /// The mode the node's agent last reported and, when independent, since when.
    pub fn node_mode(&self, node: &str) -> (AgentMode, Option<u64>) {
        self.lock()
            .get(node)
            .map_or((AgentMode::Managed, None), |n| {
                (n.mode, n.independent_since_ms)
            })
    }

    /// The node's status, agent version and last contact time.
    pub fn node_status(&self, node: &str) -> (NodeStatus, Option<String>, Option<u64>) {
        let nodes = self.lock();
        match nodes.get(node) {
            None => (NodeStatus::Unregistered, None, None),
            Some(n) => {
                let status = if self.fresh(n) {
                    NodeStatus::Online
                } else {
                    NodeStatus::Unreachable
                };
                (status, n.agent_version.clone(), n.last_seen_ms)
            }
        }
    }

    /// Where the node's agent last said its endpoint is, whether or not it
    /// is reachable now; `None` until this controller heard it.
    pub fn agent_endpoint(&self, node: &str) -> Option<AgentEndpoint> {
        self.lock().get(node).and_then(|n| n.endpoint.clone())
    }

    /// What is known of a server: its last report, or `unknown` when its
    /// node is not reachable, or `stopped` when the node never mentioned it.
    pub fn observed(&self, node: &str, server: &str) -> ObservedServer {
        let nodes = self.lock();
        let Some(n) = nodes.get(node) else {
            return unknown(server, 0);
        };
        let since = n.last_seen_ms.unwrap_or(0);
        match (self.fresh(n), n.servers.get(server)) {
            (true, Some(observed)) => observed.clone(),
            (true, None) => ObservedServer::stopped(server, since),
            (false, Some(observed)) => ObservedServer {
                state: ServerState::Unknown,
                last_error: Some(format!(
                    "node `{node}` is unreachable; last reported {}",
                    observed.state
                )),
                ..observed.clone()
            },
            (false, None) => unknown(server, since),
        }
    }
}

fn unknown(server: &str, since_ms: u64) -> ObservedServer {
    ObservedServer {
        state: ServerState::Unknown,
        ..ObservedServer::stopped(server, since_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(name: &str, state: ServerState) -> ObservedServer {
        ObservedServer {
            state,
            ..ObservedServer::stopped(name, 1)
        }
    }

    #[test]
    fn reports_give_transitions_and_staleness_gives_unknown() {
        let runtime = Runtime::new(Duration::from_millis(20));
        assert_eq!(runtime.observed("n1", "a").state, ServerState::Unknown);
        let r = runtime.report(
            "n1",
            AgentInfo::default(),
            vec![observed("a", ServerState::Starting)],
            5,
        );
        assert_eq!(r.transitions.len(), 1);
        let r = runtime.report(
            "n1",
            AgentInfo::default(),
            vec![observed("a", ServerState::Starting)],
            6,
        );
        assert!(r.transitions.is_empty());
        assert_eq!(runtime.observed("n1", "a").state, ServerState::Starting);
        assert_eq!(runtime.observed("n1", "b").state, ServerState::Stopped);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(runtime.sweep(), vec!["n1".to_string()]);
        assert!(runtime.sweep().is_empty(), "reported once per outage");
        assert_eq!(runtime.observed("n1", "a").state, ServerState::Unknown);
        assert_eq!(runtime.node_status("n1").0, NodeStatus::Unreachable);
        let r = runtime.report("n1", AgentInfo::default(), vec![], 7);
        assert!(r.was_unreachable);
    }

    fn agent(address: &str, port: u16, version: &str) -> AgentInfo {
        AgentInfo {
            endpoint: Some(AgentEndpoint {
                address: address.into(),
                port,
            }),
            version: Some(version.into()),
        }
    }

    #[test]
    fn the_agent_endpoint_is_learned_from_registrations_and_reports() {
        let runtime = Runtime::new(Duration::from_secs(1));
        assert_eq!(runtime.agent_endpoint("n1"), None);
        assert!(runtime.registered("n1", agent("10.0.0.5", 7001, "1.0.0"), 1));
        let endpoint = runtime.agent_endpoint("n1").expect("known");
        assert_eq!(endpoint.authority(), "10.0.0.5:7001");
        assert_eq!(
            runtime.node_status("n1"),
            (NodeStatus::Online, Some("1.0.0".into()), Some(1))
        );
        // The same endpoint again is no change; reports keep it.
        assert!(!runtime.registered("n1", agent("10.0.0.5", 7001, "1.0.0"), 2));
        let r = runtime.report("n1", agent("10.0.0.5", 7001, "1.0.0"), vec![], 3);
        assert!(!r.endpoint_changed);
        // A restarted agent: a new port (and here a new version), learned
        // from its registration.
        assert!(runtime.registered("n1", agent("10.0.0.5", 7002, "1.1.0"), 4));
        assert_eq!(runtime.agent_endpoint("n1").expect("known").port, 7002);
        assert_eq!(runtime.node_status("n1").1.as_deref(), Some("1.1.0"));
        // A report from an agent that does not say keeps what is known.
        let r = runtime.report("n1", AgentInfo::default(), vec![], 5);
        assert!(!r.endpoint_changed);
        assert_eq!(runtime.agent_endpoint("n1").expect("kept").port, 7002);
        assert_eq!(runtime.node_status("n1").1.as_deref(), Some("1.1.0"));
        // Other nodes are not mixed up.
        assert_eq!(runtime.agent_endpoint("n2"), None);
    }

    #[test]
    fn a_restarted_controller_learns_the_endpoint_from_the_next_report() {
        // A new runtime is what a controller restart leaves: nothing known
        // until the agent is heard, with no registration needed.
        let runtime = Runtime::new(Duration::from_secs(1));
        assert_eq!(runtime.node_status("n1").0, NodeStatus::Unregistered);
        let r = runtime.report("n1", agent("::1", 7003, "1.0.0"), vec![], 1);
        assert!(r.endpoint_changed, "the first endpoint heard is a change");
        assert!(!r.was_unreachable);
        let endpoint = runtime.agent_endpoint("n1").expect("learned");
        assert_eq!(endpoint.authority(), "[::1]:7003");
        assert_eq!(
            runtime.node_status("n1"),
            (NodeStatus::Online, Some("1.0.0".into()), Some(1))
        );
        // An agent that moved without registering (only reports): the
        // report moves the endpoint.
        let r = runtime.report("n1", agent("::1", 7004, "1.0.0"), vec![], 2);
        assert!(r.endpoint_changed);
        assert_eq!(runtime.agent_endpoint("n1").expect("moved").port, 7004);
    }

    #[test]
    fn a_stale_node_keeps_its_last_endpoint_but_is_not_online() {
        let runtime = Runtime::new(Duration::from_millis(20));
        runtime.registered("n1", agent("10.0.0.5", 7001, "1.0.0"), 1);
        std::thread::sleep(Duration::from_millis(100));
        runtime.sweep();
        assert_eq!(runtime.node_status("n1").0, NodeStatus::Unreachable);
        assert_eq!(
            runtime
                .agent_endpoint("n1")
                .map(|e| e.authority())
                .as_deref(),
            Some("10.0.0.5:7001")
        );
    }

    #[test]
    fn endpoint_authorities_bracket_ipv6_addresses() {
        let authority = |address: &str, port| {
            AgentEndpoint {
                address: address.into(),
                port,
            }
            .authority()
        };
        assert_eq!(authority("10.0.0.5", 7071), "10.0.0.5:7071");
        assert_eq!(authority("web-a.example", 7071), "web-a.example:7071");
        assert_eq!(authority("::1", 7071), "[::1]:7071");
        assert_eq!(authority("fe80::1", 1), "[fe80::1]:1");
    }

    #[test]
    fn keeps_the_reported_mode_and_tells_changes() {
        let runtime = Runtime::new(Duration::from_secs(1));
        assert_eq!(runtime.node_mode("n1"), (AgentMode::Managed, None));
        assert_eq!(runtime.set_mode("n1", AgentMode::Managed, None), None);
        assert_eq!(
            runtime.set_mode("n1", AgentMode::Independent, Some(5)),
            Some((AgentMode::Managed, None))
        );
        assert_eq!(
            runtime.set_mode("n1", AgentMode::Independent, Some(5)),
            None
        );
        assert_eq!(runtime.node_mode("n1"), (AgentMode::Independent, Some(5)));
        assert_eq!(
            runtime.set_mode("n1", AgentMode::Managed, Some(9)),
            Some((AgentMode::Independent, Some(5)))
        );
        assert_eq!(runtime.node_mode("n1"), (AgentMode::Managed, None));
    }
}
