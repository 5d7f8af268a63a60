//! Observed state, kept in memory: what each agent last reported and when.
//! It is rebuilt from the agents' next reports after a controller restart, so
//! it is never written to the store. A node whose reports stop for three
//! heartbeat intervals is unreachable and its servers' state is `unknown`.
//! Each node's agent mode (MANAGED or INDEPENDENT) is kept as last reported.

use dure_api::{AgentMode, NodeStatus};
use dure_core::{ObservedServer, ServerState};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Missed heartbeats after which a node counts as unreachable.
pub const MISSED_HEARTBEATS: u32 = 3;

#[derive(Debug, Default)]
struct NodeRuntime {
    agent_version: Option<String>,
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

    /// Records an agent's registration.
    pub fn registered(&self, node: &str, version: &str, now_ms: u64) {
        let mut nodes = self.lock();
        let entry = nodes.entry(node.to_string()).or_default();
        entry.agent_version = Some(version.to_string());
        entry.last_seen = Some(Instant::now());
        entry.last_seen_ms = Some(now_ms);
        entry.reachable = true;
        drop(nodes);
        self.notify();
    }

    /// Records a report; returns the servers whose state changed and whether
    /// the node was unreachable before this report.
    pub fn report(
        &self,
        node: &str,
        servers: Vec<ObservedServer>,
        now_ms: u64,
    ) -> (Vec<Transition>, bool) {
        let mut nodes = self.lock();
        let entry = nodes.entry(node.to_string()).or_default();
        let was_unreachable = entry.last_seen.is_some() && !entry.reachable;
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
        (transitions, was_unreachable)
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
        let (t, _) = runtime.report("n1", vec![observed("a", ServerState::Starting)], 5);
        assert_eq!(t.len(), 1);
        let (t, _) = runtime.report("n1", vec![observed("a", ServerState::Starting)], 6);
        assert!(t.is_empty());
        assert_eq!(runtime.observed("n1", "a").state, ServerState::Starting);
        assert_eq!(runtime.observed("n1", "b").state, ServerState::Stopped);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(runtime.sweep(), vec!["n1".to_string()]);
        assert!(runtime.sweep().is_empty(), "reported once per outage");
        assert_eq!(runtime.observed("n1", "a").state, ServerState::Unknown);
        assert_eq!(runtime.node_status("n1").0, NodeStatus::Unreachable);
        let (_, was_unreachable) = runtime.report("n1", vec![], 7);
        assert!(was_unreachable);
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
