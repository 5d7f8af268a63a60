//! What changed for a node while its agent ran without the controller,
//! as human-readable lines: computed once, when the controller answers
//! again, and sent with the first report (the controller records each line
//! as a `node.drift` event). Two kinds of drift: what the servers did
//! (started from the local copy, restarted by policy, stopped or failed),
//! and how the controller's current desired state differs from the local
//! copy the agent ran from.

use dure_api::{DesiredNode, DesiredServer};
use dure_core::{Intent, ObservedServer, ServerState};
use std::collections::BTreeMap;

/// Everything the drift is computed from.
pub(crate) struct Away<'a> {
    /// What the controller last heard: the last report it accepted, or what
    /// the agent found running when it started.
    pub(crate) before: &'a [ObservedServer],
    /// The servers as they are now.
    pub(crate) now: &'a [ObservedServer],
    /// The local copy the agent ran from, if it had a usable one.
    pub(crate) local: Option<&'a DesiredNode>,
    /// Why the local copy was refused, if it was.
    pub(crate) local_copy_error: Option<&'a str>,
    /// The controller's desired state now.
    pub(crate) current: &'a DesiredNode,
}

/// The drift lines, servers in name order.
pub(crate) fn drift(away: &Away<'_>) -> Vec<String> {
    let mut lines = Vec::new();
    if away.local.is_none() {
        lines.push(match away.local_copy_error {
            Some(error) => format!("no server was started from the local copy: {error}"),
            None => "there was no local copy: only servers already running were kept".to_string(),
        });
    }
    let before: BTreeMap<&str, &ObservedServer> =
        away.before.iter().map(|s| (s.name.as_str(), s)).collect();
    for now in away.now {
        lines.extend(server_drift(before.get(now.name.as_str()).copied(), now));
    }
    if let Some(local) = away.local {
        lines.extend(desired_drift(local, away.current));
    }
    lines
}

/// What one server did while the controller was away.
fn server_drift(before: Option<&ObservedServer>, now: &ObservedServer) -> Vec<String> {
    let name = &now.name;
    let mut lines = Vec::new();
    let was_alive = before.is_some_and(|b| b.state.is_alive());
    let started = !was_alive && now.state.is_alive();
    if started {
        let pid = now.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        lines.push(format!(
            "server `{name}` was started from the local copy{pid}"
        ));
    }
    let restarts = match before {
        // A start resets the count: then every restart counted is new.
        Some(b) if !started && now.restarts >= b.restarts => now.restarts - b.restarts,
        _ => now.restarts,
    };
    if restarts > 0 {
        let times = if restarts == 1 { "time" } else { "times" };
        lines.push(format!(
            "server `{name}` exited and was restarted {restarts} {times} by its restart policy; now {}",
            now.state
        ));
    }
    let state_before = before.map_or(ServerState::Stopped, |b| b.state);
    // Between live states (an adopted `running` turning `ready`) nothing
    // drifted: the report itself carries the state.
    let both_alive = state_before.is_alive() && now.state.is_alive();
    if !started && restarts == 0 && state_before != now.state && !both_alive {
        let why = now
            .last_error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        lines.push(format!(
            "server `{name}` is now {} (was {state_before}){why}",
            now.state
        ));
    }
    lines
}

/// How the controller's current desired state differs from the local copy.
fn desired_drift(local: &DesiredNode, current: &DesiredNode) -> Vec<String> {
    let (local, current) = (by_name(local), by_name(current));
    let mut names: Vec<&str> = local.keys().chain(current.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    let mut lines = Vec::new();
    for name in names {
        match (local.get(name), current.get(name)) {
            (Some(_), None) => lines.push(format!(
                "server `{name}` is no longer assigned to this node; the local copy had it"
            )),
            (None, Some(_)) => lines.push(format!(
                "server `{name}` was assigned to this node after the local copy was saved"
            )),
            (Some(old), Some(new)) => {
                if old.intent != new.intent {
                    lines.push(format!(
                        "server `{name}`: the controller now wants `{}`; the local copy said `{}`",
                        Intent::as_str(new.intent),
                        Intent::as_str(old.intent)
                    ));
                } else if old.generation != new.generation {
                    lines.push(format!(
                        "server `{name}`: `{}` was asked for again (generation {} -> {})",
                        Intent::as_str(new.intent),
                        old.generation,
                        new.generation
                    ));
                }
                let fields = changed_fields(old, new);
                if !fields.is_empty() {
                    lines.push(format!(
                        "server `{name}`: configuration differs from the local copy ({})",
                        fields.join(", ")
                    ));
                }
            }
            (None, None) => {}
        }
    }
    lines
}

fn by_name(node: &DesiredNode) -> BTreeMap<&str, &DesiredServer> {
    node.servers
        .iter()
        .map(|s| (s.spec.name.as_str(), s))
        .collect()
}

/// Top-level spec fields that differ, in name order.
fn changed_fields(old: &DesiredServer, new: &DesiredServer) -> Vec<String> {
    let as_map = |server: &DesiredServer| match serde_json::to_value(&server.spec) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (as_map(old), as_map(new));
    let mut fields: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    fields.sort_unstable();
    fields.dedup();
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(name: &str, state: ServerState, pid: Option<u32>, restarts: u32) -> ObservedServer {
        ObservedServer {
            state,
            pid,
            restarts,
            ..ObservedServer::stopped(name, 1)
        }
    }

    fn desired(name: &str, intent: Intent, generation: u64, port: u16) -> DesiredServer {
        DesiredServer {
            spec: serde_json::from_value(serde_json::json!({
                "name": name,
                "node": "n1",
                "argv": ["/bin/app"],
                "ports": {"http": port},
            }))
            .unwrap(),
            intent,
            generation,
            files: Default::default(),
        }
    }

    fn node(index: u64, servers: Vec<DesiredServer>) -> DesiredNode {
        DesiredNode {
            index,
            servers,
            membership_keys: None,
            apps: Vec::new(),
        }
    }

    #[test]
    fn reports_starts_restarts_and_failures() {
        let before = [
            observed("a", ServerState::Ready, Some(10), 0),
            observed("c", ServerState::Ready, Some(30), 1),
            observed("d", ServerState::Ready, Some(40), 0),
            observed("f", ServerState::Running, Some(50), 0),
        ];
        let mut failed = observed("d", ServerState::Failed, None, 0);
        failed.last_error = Some("exited with code 1".into());
        let now = [
            observed("a", ServerState::Ready, Some(11), 2),
            observed("b", ServerState::Starting, Some(20), 0),
            observed("c", ServerState::Ready, Some(30), 1),
            failed,
            observed("e", ServerState::Stopped, None, 0),
            observed("f", ServerState::Ready, Some(50), 0),
        ];
        let copy = node(5, vec![]);
        let lines = drift(&Away {
            before: &before,
            now: &now,
            local: Some(&copy),
            local_copy_error: None,
            current: &copy,
        });
        assert_eq!(
            lines,
            [
                "server `a` exited and was restarted 2 times by its restart policy; now ready",
                "server `b` was started from the local copy (pid 20)",
                "server `d` is now failed (was ready): exited with code 1",
            ]
        );
    }

    #[test]
    fn reports_how_the_controller_differs_from_the_local_copy() {
        let local = node(
            5,
            vec![
                desired("gone", Intent::Run, 1, 80),
                desired("same", Intent::Run, 2, 81),
                desired("stopped", Intent::Run, 3, 82),
                desired("moved", Intent::Run, 4, 83),
            ],
        );
        let current = node(
            9,
            vec![
                desired("moved", Intent::Run, 6, 93),
                desired("new", Intent::Stop, 1, 84),
                desired("same", Intent::Run, 2, 81),
                desired("stopped", Intent::Stop, 4, 82),
            ],
        );
        let lines = drift(&Away {
            before: &[],
            now: &[],
            local: Some(&local),
            local_copy_error: None,
            current: &current,
        });
        assert_eq!(
            lines,
            [
                "server `gone` is no longer assigned to this node; the local copy had it",
                "server `moved`: `run` was asked for again (generation 4 -> 6)",
                "server `moved`: configuration differs from the local copy (ports)",
                "server `new` was assigned to this node after the local copy was saved",
                "server `stopped`: the controller now wants `stop`; the local copy said `run`",
            ]
        );
    }

    #[test]
    fn says_why_nothing_was_started() {
        let current = node(1, vec![]);
        let lines = drift(&Away {
            before: &[],
            now: &[],
            local: None,
            local_copy_error: Some("the local copy fails its checksum"),
            current: &current,
        });
        assert_eq!(
            lines,
            ["no server was started from the local copy: the local copy fails its checksum"]
        );
    }
}
