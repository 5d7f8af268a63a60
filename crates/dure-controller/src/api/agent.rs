//! `/v1/agent/...`: the agents' side of the API: registration, the desired
//! state long poll, and reports (which double as heartbeats, and carry the
//! agent's mode and, once back from INDEPENDENT mode, its drift).

use super::{AppState, Body, Path, Query};
use crate::app::App;
use crate::clock::now_ms;
use crate::config_repo::Author;
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::Json;
use dure_api::{
    AgentHello, AgentMode, AgentReport, AgentWelcome, DesiredNode, DesiredQuery, DesiredServer,
};
use dure_core::timefmt::rfc3339_seconds;
use dure_core::{validate_name, DurationSpec, NameKind, NodeSpec};
use std::time::Duration;

/// The longest a long poll may block.
const MAX_WAIT: Duration = Duration::from_secs(300);
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The most drift lines of one report recorded as events, each one a
/// durable write: a report cannot keep the event log busy for long.
const MAX_DRIFT_EVENTS: usize = 100;

/// Who an agent's calls are recorded as, in the history and the events.
fn agent_actor(node: &str) -> String {
    format!("agent:{node}")
}

pub async fn register(
    State(app): AppState,
    Body(hello): Body<AgentHello>,
) -> ApiResult<Json<AgentWelcome>> {
    validate_name(NameKind::Node, &hello.node).map_err(|e| ApiError::invalid(e.to_string()))?;
    let name = hello.node.clone();
    let actor = agent_actor(&name);
    // Registration is not an operator's edit: it is saved at once, never
    // staged, so a node's address is current as soon as its agent is up.
    let author = Author::new(
        &actor,
        format!(
            "agent of node `{name}` registered at {}:{}",
            hello.address, hello.agent_port
        ),
    );
    let (node, _) = app
        .config
        .edit(author, |d| {
            let mut node = d.nodes.get(&name).cloned().unwrap_or(NodeSpec {
                name: name.clone(),
                address: String::new(),
                agent_port: None,
                backup_of: None,
            });
            node.address = hello.address.clone();
            node.agent_port = Some(hello.agent_port);
            d.put_node(node.clone())?;
            Ok(node)
        })
        .await?;
    app.runtime.registered(&name, &hello.version, now_ms());
    app.events.record(
        &actor,
        "node.state",
        &format!("node/{name}"),
        format!(
            "agent of node `{name}` registered (version {}, {}:{})",
            hello.version, hello.address, hello.agent_port
        ),
    );
    Ok(Json(AgentWelcome {
        node,
        heartbeat_interval_ms: u64::try_from(app.runtime.heartbeat().as_millis()).unwrap_or(1000),
    }))
}

pub async fn desired(
    State(app): AppState,
    Path(node): Path<String>,
    Query(query): Query<DesiredQuery>,
) -> ApiResult<Json<DesiredNode>> {
    app.config.read(|d| d.node(&node).map(|_| ()))?;
    let wait = match &query.wait {
        None => DEFAULT_WAIT,
        Some(text) => text
            .parse::<DurationSpec>()
            .map_err(|e| ApiError::invalid(e.to_string()))?
            .0
            .min(MAX_WAIT),
    };
    let index = app.desired.wait_past(&node, query.index, wait).await;
    let servers = app.config.read(|d| {
        d.servers_on(&node)
            .map(|spec| {
                let intent = app.intents.get(&spec.name);
                DesiredServer {
                    spec: spec.clone(),
                    intent: intent.intent,
                    generation: intent.generation,
                }
            })
            .collect()
    });
    Ok(Json(DesiredNode { index, servers }))
}

pub async fn report(
    State(app): AppState,
    Path(node): Path<String>,
    Body(report): Body<AgentReport>,
) -> ApiResult<Json<serde_json::Value>> {
    app.config.read(|d| d.node(&node).map(|_| ()))?;
    let actor = agent_actor(&node);
    record_mode_and_drift(&app, &actor, &node, &report);
    let (transitions, was_unreachable) = app.runtime.report(&node, report.servers, now_ms());
    if was_unreachable {
        app.events.record(
            &actor,
            "node.state",
            &format!("node/{node}"),
            format!("node `{node}` is reachable again"),
        );
    }
    for t in transitions {
        let before = t.before.map_or("new".to_string(), |s| s.to_string());
        let detail = [
            t.after.pid.map(|p| format!("pid {p}")),
            t.after.exit_code.map(|c| format!("exit code {c}")),
            t.after.last_error.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        };
        app.events.record(
            &actor,
            "server.state",
            &format!("server/{}", t.after.name),
            format!(
                "server `{}` {before} -> {}{detail}",
                t.after.name, t.after.state
            ),
        );
    }
    Ok(Json(serde_json::json!({"ok": true})))
}

/// Keeps the agent's reported mode and records its changes and drift lines
/// as events: on return from INDEPENDENT mode the agent reports once with
/// the mode still independent and the drift, then as managed.
fn record_mode_and_drift(app: &App, actor: &str, node: &str, report: &AgentReport) {
    let subject = format!("node/{node}");
    if let Some(mode) = report.mode {
        let changed = app
            .runtime
            .set_mode(node, mode, report.independent_since_ms);
        match (changed, mode) {
            (Some(_), AgentMode::Independent) => {
                let since = report
                    .independent_since_ms
                    .map_or_else(|| "an unknown time".to_string(), rfc3339_seconds);
                app.events.record(
                    actor,
                    "node.state",
                    &subject,
                    format!(
                        "node `{node}` is in INDEPENDENT mode since {since}: its agent ran from its local copy while the controller was away"
                    ),
                );
            }
            (Some((_, since)), AgentMode::Managed) => {
                let away = since
                    .map(|since| {
                        let secs = now_ms().saturating_sub(since) / 1000;
                        format!(" after {}", DurationSpec(Duration::from_secs(secs)))
                    })
                    .unwrap_or_default();
                app.events.record(
                    actor,
                    "node.state",
                    &subject,
                    format!("node `{node}` is back under management{away} in INDEPENDENT mode"),
                );
            }
            (None, _) => {}
        }
    }
    for line in report.drift.iter().take(MAX_DRIFT_EVENTS) {
        app.events
            .record(actor, "node.drift", &subject, line.clone());
    }
    let more = report.drift.len().saturating_sub(MAX_DRIFT_EVENTS);
    if more > 0 {
        app.events.record(
            actor,
            "node.drift",
            &subject,
            format!("{more} more drift line(s) not recorded; the agent's log has them all"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::app_in;
    use dure_api::EventQuery;

    #[test]
    fn drift_events_are_bounded_per_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path());
        let report = AgentReport {
            servers: Vec::new(),
            mode: None,
            independent_since_ms: None,
            drift: (0..MAX_DRIFT_EVENTS + 50)
                .map(|i| format!("line {i}"))
                .collect(),
        };
        record_mode_and_drift(&app, "agent:n1", "n1", &report);
        let events = app
            .events
            .list(&EventQuery {
                subject: Some("node/n1".into()),
                ..EventQuery::default()
            })
            .expect("events");
        assert_eq!(events.len(), MAX_DRIFT_EVENTS + 1);
        let last = &events[MAX_DRIFT_EVENTS].message;
        assert!(last.starts_with("50 more drift line(s)"), "{last}");
    }
}
