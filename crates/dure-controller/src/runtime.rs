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
//!
//! One agent per node: each run of an agent has an instance id, and the
//! first instance heard for a node owns it ([`Owner`]). While the owner is
//! live (fresh reports), a registration or report from another instance is
//! refused ([`AgentConflict`]), so two agents cannot make states flap; once
//! the owner has been silent for the unreachable timeout, another instance
//! takes the node over ([`TakeOver`]: a host replaced). The owner is
//! observed state too: a restarted controller accepts the first instance
//! it hears, and the same instance again (re-registering) is always
//! accepted. An agent that gives no instance id (older) is accepted as
//! before.
//!
//! Membership: each agent reports its view of its peers (kept as it is,
//! for `dure node list --from NODE`) and the port of its membership
//! socket (handed to agents registering later). A node's membership state
//! for the controller is the latest change any peer reported of it (the
//! one with the newest `since`), so agreeing reports change nothing and
//! each join, leave, failure and recovery is one [`MembershipChange`].
//!
//! Every change a read shows (not a heartbeat that changes nothing) bumps
//! the view index ([`crate::watch`]).

use crate::watch::{Topic, ViewIndex, CONFIGURATION, SERVER_STATE};
use dure_api::{AgentMode, NodeStatus, PeerState, PeerView};
use dure_core::state::silent_limit;
use dure_core::timefmt::rfc3339_seconds;
use dure_core::{DurationSpec, ObservedServer, ServerState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

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
    /// This run of the agent; `None` from agents that predate it.
    pub instance_id: Option<String>,
    /// UDP port of its membership socket, at the endpoint's address.
    pub membership_port: Option<u16>,
}

/// The agent instance a node's reports are accepted from, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub instance_id: String,
    /// When this controller first accepted it, in ms since the Unix epoch.
    pub since_ms: u64,
}

/// A registration or report refused because another agent instance is
/// live on the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node `{node}` already has a live agent{at} (since {since}); stop it first, or wait until it has been silent for {limit} to replace it",
    at = endpoint.as_ref().map(|e| format!(" at {}", e.authority())).unwrap_or_default(),
    since = rfc3339_seconds(owner.since_ms),
    limit = DurationSpec(*silent_limit),
)]
pub struct AgentConflict {
    pub node: String,
    /// The live agent's endpoint, as it last said.
    pub endpoint: Option<AgentEndpoint>,
    pub owner: Owner,
    /// How long the live agent must be silent before it can be replaced.
    pub silent_limit: Duration,
}

/// A node taken over by a new agent instance after its owner went silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeOver {
    /// The instance that went silent.
    pub previous: Owner,
    /// Where it was, as it last said.
    pub endpoint: Option<AgentEndpoint>,
    /// How long it had been silent.
    pub silent_for: Duration,
}

#[derive(Debug, Default)]
struct NodeRuntime {
    /// The agent instance whose reports count; `None` until an agent that
    /// gives an instance id is heard.
    owner: Option<Owner>,
    agent_version: Option<String>,
    endpoint: Option<AgentEndpoint>,
    last_seen: Option<Instant>,
    last_seen_ms: Option<u64>,
    /// Whether the node was reachable at the last sweep or report.
    reachable: bool,
    servers: HashMap<String, ObservedServer>,
    mode: AgentMode,
    independent_since_ms: Option<u64>,
    membership_port: Option<u16>,
    /// The node's own view of its peers, as last reported.
    peers: Option<Vec<PeerView>>,
    /// The node's membership state: the newest change a peer reported.
    membership: Option<Membership>,
}

/// A node's membership state for the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Membership {
    state: PeerState,
    since_ms: u64,
}

/// A node's membership state changed, as a peer reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipChange {
    pub node: String,
    /// `None`: the first this controller heard of the node.
    pub from: Option<PeerState>,
    pub to: PeerState,
    pub since_ms: u64,
    /// The peer whose report told it first.
    pub seen_by: String,
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
    /// The report came from a new instance that took the node over.
    pub took_over: Option<TakeOver>,
}

impl NodeRuntime {
    /// Keeps what the agent said about itself; returns whether its
    /// endpoint changed.
    fn learn(&mut self, agent: AgentInfo) -> bool {
        if let Some(version) = agent.version {
            self.agent_version = Some(version);
        }
        if let Some(port) = agent.membership_port {
            self.membership_port = Some(port);
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
    /// Bumped on every change of what reads show.
    view: Arc<ViewIndex>,
}

impl Runtime {
    pub fn new(heartbeat: Duration, view: Arc<ViewIndex>) -> Runtime {
        Runtime {
            nodes: Mutex::new(HashMap::new()),
            heartbeat,
            changed: watch::channel(0).0,
            view,
        }
    }

    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// How long a node may stay silent before it is unreachable.
    pub fn silent_limit(&self) -> Duration {
        silent_limit(self.heartbeat)
    }

    /// Whether the node reported within the last heartbeats it may miss.
    fn fresh(&self, node: &NodeRuntime) -> bool {
        node.last_seen
            .is_some_and(|t| t.elapsed() <= self.silent_limit())
    }

    /// Decides whether `instance` may speak for the node, and makes it the
    /// owner when there is none or the owner went silent. Changes nothing
    /// when it refuses.
    fn claim(
        &self,
        name: &str,
        node: &mut NodeRuntime,
        instance: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<TakeOver>, AgentConflict> {
        let Some(instance) = instance else {
            return Ok(None);
        };
        let new_owner = || Owner {
            instance_id: instance.to_string(),
            since_ms: now_ms,
        };
        match &node.owner {
            Some(owner) if owner.instance_id == instance => Ok(None),
            Some(owner) if self.fresh(node) => Err(AgentConflict {
                node: name.to_string(),
                endpoint: node.endpoint.clone(),
                owner: owner.clone(),
                silent_limit: self.silent_limit(),
            }),
            Some(owner) => {
                let took_over = TakeOver {
                    previous: owner.clone(),
                    endpoint: node.endpoint.clone(),
                    silent_for: node.last_seen.map_or(Duration::ZERO, |t| t.elapsed()),
                };
                node.owner = Some(new_owner());
                Ok(Some(took_over))
            }
            None => {
                node.owner = Some(new_owner());
                Ok(None)
            }
        }
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

    /// Records an agent's registration and what it said about itself, or
    /// refuses it (changing nothing) while another instance is live;
    /// tells when the registration took the node over from a silent one.
    pub fn registered(
        &self,
        node: &str,
        agent: AgentInfo,
        now_ms: u64,
    ) -> Result<Option<TakeOver>, AgentConflict> {
        let mut nodes = self.lock();
        let entry = nodes.entry(node.to_string()).or_default();
        let took_over = self.claim(node, entry, agent.instance_id.as_deref(), now_ms)?;
        entry.learn(agent);
        entry.last_seen = Some(Instant::now());
        entry.last_seen_ms = Some(now_ms);
        entry.reachable = true;
        drop(nodes);
        self.notify();
        // The node's status, agent and (when it was not live) its servers'
        // states all may have changed; registrations are rare.
        self.view.bump(CONFIGURATION);
        Ok(took_over)
    }

    /// Records a report and what the agent said about itself in it, or
    /// refuses it (changing nothing) while another instance is live.
    pub fn report(
        &self,
        node: &str,
        agent: AgentInfo,
        servers: Vec<ObservedServer>,
        now_ms: u64,
    ) -> Result<Reported, AgentConflict> {
        let mut nodes = self.lock();
        let entry = nodes.entry(node.to_string()).or_default();
        let took_over = self.claim(node, entry, agent.instance_id.as_deref(), now_ms)?;
        let was_unreachable = entry.last_seen.is_some() && !entry.reachable;
        let was_live = self.fresh(entry);
        let version_before = entry.agent_version.clone();
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
        let servers_changed = entry.servers != fresh;
        entry.servers = fresh;
        let agent_changed = endpoint_changed || entry.agent_version != version_before;
        drop(nodes);
        self.notify();
        if !was_live {
            // Back (or first heard): its status and every server's state.
            self.view.bump(CONFIGURATION);
        } else {
            let mut topics = Vec::new();
            if servers_changed {
                topics.extend_from_slice(SERVER_STATE);
            }
            if agent_changed {
                topics.push(Topic::Nodes);
            }
            self.view.bump(&topics);
        }
        Ok(Reported {
            transitions,
            was_unreachable,
            endpoint_changed,
            took_over,
        })
    }

    /// The agent instance that owns the node, if one is known.
    #[cfg(test)]
    pub fn owner(&self, node: &str) -> Option<Owner> {
        self.lock().get(node).and_then(|n| n.owner.clone())
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
            self.view.bump(CONFIGURATION);
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
        let after = (entry.mode, entry.independent_since_ms);
        drop(nodes);
        if before != after {
            self.view.bump(&[Topic::Nodes]);
        }
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

    /// Keeps `reporter`'s view of its peers; returns the nodes whose
    /// membership state this changed (a peer's change newer than the last
    /// one known of that node).
    pub fn set_peers(&self, reporter: &str, peers: Vec<PeerView>) -> Vec<MembershipChange> {
        let mut nodes = self.lock();
        let mut changes = Vec::new();
        for peer in &peers {
            if peer.node == reporter {
                continue;
            }
            let entry = nodes.entry(peer.node.clone()).or_default();
            let newer = match &entry.membership {
                None => peer.state != PeerState::Inactive,
                Some(known) => peer.since_ms > known.since_ms && peer.state != known.state,
            };
            if newer {
                changes.push(MembershipChange {
                    node: peer.node.clone(),
                    from: entry.membership.as_ref().map(|m| m.state),
                    to: peer.state,
                    since_ms: peer.since_ms,
                    seen_by: reporter.to_string(),
                });
                entry.membership = Some(Membership {
                    state: peer.state,
                    since_ms: peer.since_ms,
                });
            }
        }
        let entry = nodes.entry(reporter.to_string()).or_default();
        let view_changed = entry.peers.as_ref() != Some(&peers);
        entry.peers = Some(peers);
        drop(nodes);
        if view_changed || !changes.is_empty() {
            self.view.bump(&[Topic::Nodes]);
        }
        changes
    }

    /// `node`'s own view of its peers, as last reported.
    pub fn peers_of(&self, node: &str) -> Option<Vec<PeerView>> {
        self.lock().get(node).and_then(|n| n.peers.clone())
    }

    /// The node's membership state and since when, once a peer reported it.
    pub fn membership_of(&self, node: &str) -> Option<(PeerState, u64)> {
        self.lock()
            .get(node)
            .and_then(|n| n.membership.as_ref())
            .map(|m| (m.state, m.since_ms))
    }

    /// Every node's membership endpoint (`node`, host, port) this
    /// controller heard of, but `except`'s.
    pub fn membership_endpoints(&self, except: &str) -> Vec<(String, String, u16)> {
        let nodes = self.lock();
        let mut endpoints: Vec<_> = nodes
            .iter()
            .filter(|(name, _)| name.as_str() != except)
            .filter_map(|(name, n)| {
                let endpoint = n.endpoint.as_ref()?;
                Some((name.clone(), endpoint.address.clone(), n.membership_port?))
            })
            .collect();
        endpoints.sort();
        endpoints
    }

    /// What is known of a server: its last report, or `unknown` when its
    /// node is not reachable, or `stopped` when the node never mentioned it.
    pub fn observed(&self, node: &str, server: &str) -> ObservedServer {
        let nodes = self.lock();
        match nodes.get(node) {
            None => ObservedServer::as_known(node, server, None, false, 0),
            Some(n) => ObservedServer::as_known(
                node,
                server,
                n.servers.get(server),
                self.fresh(n),
                n.last_seen_ms.unwrap_or(0),
            ),
        }
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
        let runtime = Runtime::new(Duration::from_millis(20), Arc::new(ViewIndex::new(0)));
        assert_eq!(runtime.observed("n1", "a").state, ServerState::Unknown);
        let r = runtime
            .report(
                "n1",
                AgentInfo::default(),
                vec![observed("a", ServerState::Starting)],
                5,
            )
            .expect("accepted");
        assert_eq!(r.transitions.len(), 1);
        let r = runtime
            .report(
                "n1",
                AgentInfo::default(),
                vec![observed("a", ServerState::Starting)],
                6,
            )
            .expect("accepted");
        assert!(r.transitions.is_empty());
        assert_eq!(runtime.observed("n1", "a").state, ServerState::Starting);
        assert_eq!(runtime.observed("n1", "b").state, ServerState::Stopped);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(runtime.sweep(), vec!["n1".to_string()]);
        assert!(runtime.sweep().is_empty(), "reported once per outage");
        assert_eq!(runtime.observed("n1", "a").state, ServerState::Unknown);
        assert_eq!(runtime.node_status("n1").0, NodeStatus::Unreachable);
        let r = runtime
            .report("n1", AgentInfo::default(), vec![], 7)
            .expect("accepted");
        assert!(r.was_unreachable);
    }

    #[test]
    fn only_changes_a_read_shows_move_the_view_index() {
        let view = Arc::new(ViewIndex::new(0));
        let runtime = Runtime::new(Duration::from_millis(50), view.clone());
        let servers = || view.get(&[Topic::Servers]);
        let nodes = || view.get(&[Topic::Nodes]);
        runtime
            .report(
                "n1",
                AgentInfo::default(),
                vec![observed("a", ServerState::Starting)],
                1,
            )
            .expect("accepted");
        let (s, n) = (servers(), nodes());
        // A heartbeat that changes nothing.
        runtime
            .report(
                "n1",
                AgentInfo::default(),
                vec![observed("a", ServerState::Starting)],
                2,
            )
            .expect("accepted");
        assert_eq!((servers(), nodes()), (s, n));
        // Another field than the state (a restart count) is a change.
        let restarted = ObservedServer {
            restarts: 1,
            ..observed("a", ServerState::Starting)
        };
        runtime
            .report("n1", AgentInfo::default(), vec![restarted], 3)
            .expect("accepted");
        assert!(servers() > s);
        assert_eq!(nodes(), n, "the node view did not change");
        let s = servers();
        runtime.set_mode("n1", AgentMode::Independent, Some(9));
        assert!(nodes() > n);
        assert_eq!(servers(), s);
        // Liveness: lost, then back.
        let before = view.current();
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(runtime.sweep(), vec!["n1".to_string()]);
        assert!(servers() > before && nodes() > before);
        let lost = view.current();
        runtime
            .report("n1", AgentInfo::default(), vec![], 4)
            .expect("accepted");
        assert!(servers() > lost && nodes() > lost);
    }

    fn agent(address: &str, port: u16, version: &str) -> AgentInfo {
        AgentInfo {
            endpoint: Some(AgentEndpoint {
                address: address.into(),
                port,
            }),
            version: Some(version.into()),
            instance_id: None,
            membership_port: None,
        }
    }

    #[test]
    fn the_agent_endpoint_is_learned_from_registrations_and_reports() {
        let runtime = Runtime::new(Duration::from_secs(1), Arc::new(ViewIndex::new(0)));
        assert_eq!(runtime.agent_endpoint("n1"), None);
        runtime
            .registered("n1", agent("10.0.0.5", 7001, "1.0.0"), 1)
            .expect("accepted");
        let endpoint = runtime.agent_endpoint("n1").expect("known");
        assert_eq!(endpoint.authority(), "10.0.0.5:7001");
        assert_eq!(
            runtime.node_status("n1"),
            (NodeStatus::Online, Some("1.0.0".into()), Some(1))
        );
        // The same endpoint again is no change; reports keep it.
        runtime
            .registered("n1", agent("10.0.0.5", 7001, "1.0.0"), 2)
            .expect("accepted");
        let r = runtime
            .report("n1", agent("10.0.0.5", 7001, "1.0.0"), vec![], 3)
            .expect("accepted");
        assert!(!r.endpoint_changed);
        // A restarted agent: a new port (and here a new version), learned
        // from its registration.
        runtime
            .registered("n1", agent("10.0.0.5", 7002, "1.1.0"), 4)
            .expect("accepted");
        assert_eq!(runtime.agent_endpoint("n1").expect("known").port, 7002);
        assert_eq!(runtime.node_status("n1").1.as_deref(), Some("1.1.0"));
        // A report from an agent that does not say keeps what is known.
        let r = runtime
            .report("n1", AgentInfo::default(), vec![], 5)
            .expect("accepted");
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
        let runtime = Runtime::new(Duration::from_secs(1), Arc::new(ViewIndex::new(0)));
        assert_eq!(runtime.node_status("n1").0, NodeStatus::Unregistered);
        let r = runtime
            .report("n1", agent("::1", 7003, "1.0.0"), vec![], 1)
            .expect("accepted");
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
        let r = runtime
            .report("n1", agent("::1", 7004, "1.0.0"), vec![], 2)
            .expect("accepted");
        assert!(r.endpoint_changed);
        assert_eq!(runtime.agent_endpoint("n1").expect("moved").port, 7004);
    }

    #[test]
    fn a_stale_node_keeps_its_last_endpoint_but_is_not_online() {
        let runtime = Runtime::new(Duration::from_millis(20), Arc::new(ViewIndex::new(0)));
        runtime
            .registered("n1", agent("10.0.0.5", 7001, "1.0.0"), 1)
            .expect("accepted");
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

    fn instance(address: &str, port: u16, id: &str) -> AgentInfo {
        AgentInfo {
            instance_id: Some(id.into()),
            ..agent(address, port, "1.0.0")
        }
    }

    #[test]
    fn a_live_agent_keeps_its_node_and_a_silent_one_can_be_replaced() {
        let runtime = Runtime::new(Duration::from_millis(20), Arc::new(ViewIndex::new(0)));
        runtime
            .registered("n1", instance("10.0.0.7", 7071, "a"), 1_000)
            .expect("the first instance owns the node");
        let a = runtime.report(
            "n1",
            instance("10.0.0.7", 7071, "a"),
            vec![observed("web", ServerState::Ready)],
            2_000,
        );
        assert!(a.expect("the owner reports").took_over.is_none());

        // Another instance while `a` is live: refused, and nothing changes.
        let refused = runtime
            .registered("n1", instance("10.0.0.8", 7072, "b"), 3_000)
            .expect_err("a live agent keeps its node");
        assert_eq!(refused.owner.instance_id, "a");
        assert_eq!(
            refused.to_string(),
            "node `n1` already has a live agent at 10.0.0.7:7071 (since 1970-01-01T00:00:01Z); \
             stop it first, or wait until it has been silent for 60ms to replace it"
        );
        let refused = runtime
            .report("n1", instance("10.0.0.8", 7072, "b"), vec![], 3_000)
            .expect_err("so do its reports");
        assert_eq!(refused.owner.instance_id, "a");
        assert_eq!(runtime.agent_endpoint("n1").expect("kept").port, 7071);
        assert_eq!(runtime.observed("n1", "web").state, ServerState::Ready);
        assert_eq!(runtime.owner("n1").expect("owner").since_ms, 1_000);

        // The same instance again (after a controller restart, say) and an
        // agent without an instance id are accepted.
        runtime
            .registered("n1", instance("10.0.0.7", 7071, "a"), 4_000)
            .expect("the owner again");
        runtime
            .report("n1", AgentInfo::default(), vec![], 4_000)
            .expect("an older agent");
        assert_eq!(runtime.owner("n1").expect("owner").instance_id, "a");

        // `a` goes silent for the unreachable timeout: `b` takes over.
        std::thread::sleep(Duration::from_millis(100));
        let took = runtime
            .registered("n1", instance("10.0.0.8", 7072, "b"), 5_000)
            .expect("a silent agent is replaced")
            .expect("a take-over");
        assert_eq!(took.previous.instance_id, "a");
        assert_eq!(took.endpoint.expect("endpoint").port, 7071);
        assert!(took.silent_for >= runtime.silent_limit());
        assert_eq!(
            runtime.owner("n1"),
            Some(Owner {
                instance_id: "b".into(),
                since_ms: 5_000
            })
        );
        assert_eq!(runtime.agent_endpoint("n1").expect("moved").port, 7072);
        // Now `a` is the stranger.
        runtime
            .report("n1", instance("10.0.0.7", 7071, "a"), vec![], 6_000)
            .expect_err("the replaced agent is refused");
    }

    #[test]
    fn a_restarted_controller_accepts_the_first_instance_it_hears() {
        let runtime = Runtime::new(Duration::from_secs(1), Arc::new(ViewIndex::new(0)));
        let r = runtime
            .report("n1", instance("10.0.0.7", 7071, "a"), vec![], 1)
            .expect("no owner known yet");
        assert!(r.took_over.is_none());
        assert_eq!(runtime.owner("n1").expect("owner").instance_id, "a");
        runtime
            .registered("n1", instance("10.0.0.8", 7071, "b"), 2)
            .expect_err("the first one heard owns the node");
    }

    #[test]
    fn keeps_the_reported_mode_and_tells_changes() {
        let runtime = Runtime::new(Duration::from_secs(1), Arc::new(ViewIndex::new(0)));
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
