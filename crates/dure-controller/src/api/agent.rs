//! `/v1/agent/...`: the agents' side of the API: registration, the desired
//! state long poll, and reports (which double as heartbeats, and carry the
//! agent's mode, its endpoint and version and, once back from INDEPENDENT
//! mode, its drift). Where an agent can be reached is kept in the runtime,
//! never saved: only the registration of a new node saves configuration.
//! The answer to a registration carries the membership setup (domain key,
//! `/domain.json` settings, every other node's membership endpoint); a
//! report's view of the peers becomes the node's `--from` view and, where
//! it tells a change first, a `node.membership` event.

use super::{AppState, Body, Path, Query};
use crate::app::App;
use crate::clock::now_ms;
use crate::config_repo::Author;
use crate::error::{ApiError, ApiResult};
use crate::operations;
use crate::runtime::{AgentConflict, AgentEndpoint, AgentInfo, MembershipChange, TakeOver};
use axum::extract::State;
use axum::Json;
use dure_api::{
    AgentHello, AgentMode, AgentReport, AgentWelcome, DesiredNode, DesiredQuery, DesiredServer,
    MembershipSetup, PeerAddress,
};
use dure_core::membership::{Change, PeerState};
use dure_core::timefmt::rfc3339_seconds;
use dure_core::{validate_name, DurationSpec, NameKind, NodeSpec, ObservedServer};
use std::time::Duration;

/// The most drift lines of one report recorded as events, each one a
/// durable write: a report cannot keep the event log busy for long.
const MAX_DRIFT_EVENTS: usize = 100;

/// Who an agent's calls are recorded as, in the history and the events.
fn agent_actor(node: &str) -> String {
    format!("agent:{node}")
}

pub async fn register(
    State(app): AppState,
    caller: super::Actor,
    Body(hello): Body<AgentHello>,
) -> ApiResult<Json<AgentWelcome>> {
    validate_name(NameKind::Node, &hello.node).map_err(|e| ApiError::invalid(e.to_string()))?;
    // Node restriction: the node named in the body, as the route's
    // `{node}` elsewhere.
    if !caller.principal.may_act_for(&hello.node) {
        return Err(ApiError::forbidden(format!(
            "`{}` may not register node `{}`: a node's certificate registers only its own node",
            caller.name(),
            hello.node
        )));
    }
    let endpoint = endpoint(&hello.address, hello.agent_port)?;
    let name = hello.node.clone();
    let actor = agent_actor(&name);
    // The node document is configuration: a registration saves it only for
    // a node that does not exist yet (so servers can be placed on it), at
    // once and never staged, with the address its agent gives. Where the
    // agent can be reached and its version are observed state, kept in the
    // runtime: an agent restart saves nothing.
    let existing = app.config.read(|d| d.nodes.get(&name).cloned());
    let (node, created) = match existing {
        Some(node) => (node, false),
        None => {
            let author = Author::new(
                &actor,
                format!(
                    "agent of node `{name}` registered: new node at address {}",
                    hello.address
                ),
            );
            let (registered, _) = app
                .config
                .edit(author, |d| {
                    // Registered meanwhile: nothing to save.
                    if let Some(node) = d.nodes.get(&name) {
                        return Ok((node.clone(), false));
                    }
                    let node = NodeSpec {
                        name: name.clone(),
                        address: hello.address.clone(),
                        agent_port: None,
                        backup_of: None,
                        shared_dirs: Vec::new(),
                    };
                    d.put_node(node.clone())?;
                    Ok((node, true))
                })
                .await?;
            registered
        }
    };
    let agent = AgentInfo {
        endpoint: Some(endpoint.clone()),
        version: Some(hello.version.clone()),
        instance_id: hello.instance_id.clone(),
        membership_port: hello.membership_port,
    };
    let took_over = app
        .runtime
        .registered(&name, agent, now_ms())
        .map_err(refused)?;
    if let Some(took_over) = &took_over {
        record_take_over(&app, &actor, &name, &endpoint, took_over).await;
    }
    let new = if created { ", new node" } else { "" };
    app.events
        .record(
            &actor,
            "node.state",
            &format!("node/{name}"),
            format!(
                "agent of node `{name}` registered (version {}, endpoint {}{new})",
                hello.version,
                endpoint.authority()
            ),
        )
        .await;
    note_other_address(&app, &actor, &node, &endpoint).await;
    Ok(Json(AgentWelcome {
        node,
        heartbeat_interval_ms: u64::try_from(app.runtime.heartbeat().as_millis()).unwrap_or(1000),
        membership: Some(membership_setup(&app, &name)),
    }))
}

/// What the agent of `node` needs for the membership: the domain key, the
/// settings and every other node's membership endpoint known here (nodes
/// whose agents never registered with this controller find the others
/// themselves: they are given this node's endpoint).
fn membership_setup(app: &App, node: &str) -> MembershipSetup {
    let peers = app
        .runtime
        .membership_endpoints(node)
        .into_iter()
        .map(|(node, host, port)| PeerAddress {
            node,
            address: AgentEndpoint {
                address: host,
                port,
            }
            .authority(),
        })
        .collect();
    MembershipSetup {
        keys: app.membership_keys.keys(now_ms()),
        settings: app.config.read(|d| d.settings.membership),
        peers,
    }
}

/// Records each membership change a report told first as an event.
async fn record_membership(app: &App, actor: &str, changes: Vec<MembershipChange>) {
    for change in changes {
        // A node no peer reported before was never seen: INACTIVE, so its
        // first RUNNING is a join (a node that came with `--join`).
        let from = change.from.unwrap_or(PeerState::Inactive);
        let what = match Change::of(from, change.to) {
            Some(c) => format!("{}: {from} -> {}", c.word(), change.to),
            None => format!("is {}", change.to),
        };
        app.events
            .record(
                actor,
                "node.membership",
                &format!("node/{}", change.node),
                format!(
                    "node `{}` {what} since {} (seen by `{}`)",
                    change.node,
                    rfc3339_seconds(change.since_ms),
                    change.seen_by
                ),
            )
            .await;
    }
}

/// The answer to an agent instance that is not the node's live one.
fn refused(conflict: AgentConflict) -> ApiError {
    tracing::warn!(node = %conflict.node, live = %conflict.owner.instance_id, "second agent for a node refused");
    ApiError::conflict(conflict.to_string())
}

/// Records that a new agent instance replaced the node's silent one.
async fn record_take_over(
    app: &App,
    actor: &str,
    node: &str,
    endpoint: &AgentEndpoint,
    took_over: &TakeOver,
) {
    let was = took_over
        .endpoint
        .as_ref()
        .map(|e| format!(" at {}", e.authority()))
        .unwrap_or_default();
    app.events.record(
        actor,
        "node.state",
        &format!("node/{node}"),
        format!(
            "node `{node}` was taken over by a new agent at {}: its agent{was} (since {}) had been silent for {}, so its host counts as replaced",
            endpoint.authority(),
            rfc3339_seconds(took_over.previous.since_ms),
            DurationSpec(Duration::from_secs(took_over.silent_for.as_secs().max(1))),
        ),
    ).await;
}

/// The agent endpoint an agent gives, refused when its address cannot name
/// a host.
fn endpoint(address: &str, port: u16) -> ApiResult<AgentEndpoint> {
    if address.is_empty() || !NodeSpec::address_is_valid(address) {
        return Err(ApiError::invalid(format!(
            "agent address `{address}` is invalid: give a host name or IP address (`--advertise`)"
        )));
    }
    Ok(AgentEndpoint {
        address: address.to_string(),
        port,
    })
}

/// The agent endpoint a report gives, if any: address and port come
/// together (agents that predate them send neither).
fn reported_endpoint(report: &AgentReport) -> ApiResult<Option<AgentEndpoint>> {
    match (&report.address, report.agent_port) {
        (Some(address), Some(port)) => endpoint(address, port).map(Some),
        (None, None) => Ok(None),
        _ => Err(ApiError::invalid(
            "a report gives `address` and `agent_port` together, or neither",
        )),
    }
}

/// Records an event when an agent says its node is at an address other
/// than the configured one. The configuration is left as it is: the
/// controller reaches the agent where it says, and the operator decides
/// whether the node's document changes.
async fn note_other_address(app: &App, actor: &str, node: &NodeSpec, endpoint: &AgentEndpoint) {
    if node.address == endpoint.address {
        return;
    }
    let configured = if node.address.is_empty() {
        "no address is configured".to_string()
    } else {
        format!("the configured address is `{}`", node.address)
    };
    app.events.record(
        actor,
        "node.state",
        &format!("node/{}", node.name),
        format!(
            "agent of node `{}` reports address `{}` but {configured}; the configuration is unchanged (edit the node's document to change it) and the agent is reached at {}",
            node.name,
            endpoint.address,
            endpoint.authority()
        ),
    ).await;
}

pub async fn desired(
    State(app): AppState,
    Path(node): Path<String>,
    Query(query): Query<DesiredQuery>,
) -> ApiResult<Json<DesiredNode>> {
    app.config.read(|d| d.node(&node).map(|_| ()))?;
    let wait = crate::watch::parse_wait(query.wait.as_deref())?;
    let index = app.desired.wait_past(&node, query.index, wait).await;
    let servers = app.config.read(|d| {
        d.servers_on(&node)
            .map(|spec| {
                let intent = app.intents.get(&spec.name);
                DesiredServer {
                    spec: spec.clone(),
                    intent: intent.intent,
                    generation: intent.generation,
                    files: d.template_files(&spec.name).unwrap_or_default(),
                }
            })
            .collect::<Vec<DesiredServer>>()
    });
    let apps = app
        .apps
        .installs_on(servers.iter().map(|s| s.spec.name.as_str()));
    Ok(Json(DesiredNode {
        index,
        servers,
        membership_keys: Some(app.membership_keys.keys(now_ms())),
        apps,
    }))
}

pub async fn report(
    State(app): AppState,
    Path(node): Path<String>,
    Body(mut report): Body<AgentReport>,
) -> ApiResult<Json<serde_json::Value>> {
    let configured = app.config.read(|d| d.node(&node).cloned())?;
    let endpoint = reported_endpoint(&report)?;
    let agent = AgentInfo {
        endpoint: endpoint.clone(),
        version: report.version.clone(),
        instance_id: report.instance_id.clone(),
        membership_port: report.membership_port,
    };
    let actor = agent_actor(&node);
    // Refused before anything is recorded: a second agent must not move
    // the node's states, mode or events.
    let servers = std::mem::take(&mut report.servers);
    let held: Vec<ObservedServer> = servers
        .iter()
        .filter(|s| app.intents.is_held(&s.name))
        .cloned()
        .collect();
    let reported = app
        .runtime
        .report(&node, agent, servers, now_ms())
        .map_err(refused)?;
    app.apps.observe(std::mem::take(&mut report.apps));
    record_mode_and_drift(&app, &actor, &node, &report).await;
    if let Some(peers) = report.peers.take() {
        let changes = app.runtime.set_peers(&node, peers);
        record_membership(&app, &actor, changes).await;
    }
    for observed in &held {
        app.rebuild_intent(&node, observed, &actor).await;
    }
    if let (Some(took_over), Some(endpoint)) = (&reported.took_over, &endpoint) {
        record_take_over(&app, &actor, &node, endpoint, took_over).await;
    }
    // A controller that restarted learns the endpoint here, without a new
    // registration.
    if let (true, Some(endpoint)) = (reported.endpoint_changed, &endpoint) {
        note_other_address(&app, &actor, &configured, endpoint).await;
    }
    if reported.was_unreachable {
        app.events
            .record(
                &actor,
                "node.state",
                &format!("node/{node}"),
                format!("node `{node}` is reachable again"),
            )
            .await;
    }
    for t in reported.transitions {
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
        app.events
            .record(
                &actor,
                "server.state",
                &format!("server/{}", t.after.name),
                format!(
                    "server `{}` {before} -> {}{detail}",
                    t.after.name, t.after.state
                ),
            )
            .await;
        if let Some(done) = operations::carried_out(&app, &node, &t.after.name).await {
            app.events
                .record(
                    &actor,
                    "intent",
                    &format!("server/{}", t.after.name),
                    format!(
                        "server `{}` {}: carried out the {} left standing by operation `{}`",
                        t.after.name,
                        done.state,
                        done.intent.action(),
                        done.operation
                    ),
                )
                .await;
        }
    }
    Ok(Json(serde_json::json!({"ok": true})))
}

/// Keeps the agent's reported mode and records its changes and drift lines
/// as events: on return from INDEPENDENT mode the agent reports once with
/// the mode still independent and the drift, then as managed.
async fn record_mode_and_drift(app: &App, actor: &str, node: &str, report: &AgentReport) {
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
                ).await;
            }
            (Some((_, since)), AgentMode::Managed) => {
                let away = since
                    .map(|since| {
                        let secs = now_ms().saturating_sub(since) / 1000;
                        format!(" after {}", DurationSpec(Duration::from_secs(secs)))
                    })
                    .unwrap_or_default();
                app.events
                    .record(
                        actor,
                        "node.state",
                        &subject,
                        format!("node `{node}` is back under management{away} in INDEPENDENT mode"),
                    )
                    .await;
            }
            (None, _) => {}
        }
    }
    for line in report.drift.iter().take(MAX_DRIFT_EVENTS) {
        app.events
            .record(actor, "node.drift", &subject, line.clone())
            .await;
    }
    let more = report.drift.len().saturating_sub(MAX_DRIFT_EVENTS);
    if more > 0 {
        app.events
            .record(
                actor,
                "node.drift",
                &subject,
                format!("{more} more drift line(s) not recorded; the agent's log has them all"),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{app_in, start_controller as controller};
    use crate::Controller;
    use dure_api::{Client, EventQuery, HistoryQuery, NodeStatus, NodeView};

    fn client(controller: &Controller) -> Client {
        Client::new(&controller.addr().to_string(), controller.token())
    }

    fn hello(address: &str, agent_port: u16) -> AgentHello {
        AgentHello {
            node: "n1".into(),
            address: address.into(),
            agent_port,
            version: "9.9.9".into(),
            instance_id: None,
            membership_port: None,
        }
    }

    fn report_at(address: Option<&str>, agent_port: Option<u16>) -> AgentReport {
        AgentReport {
            servers: Vec::new(),
            mode: Some(AgentMode::Managed),
            independent_since_ms: None,
            drift: Vec::new(),
            address: address.map(str::to_string),
            agent_port,
            version: Some("9.9.9".into()),
            instance_id: None,
            membership_port: None,
            peers: None,
            apps: Vec::new(),
        }
    }

    async fn node_view(client: &Client) -> NodeView {
        let nodes = client.list_nodes().await.expect("nodes");
        nodes.into_iter().find(|n| n.spec.name == "n1").expect("n1")
    }

    async fn revisions(client: &Client) -> Vec<u64> {
        let history = client
            .config_history(&HistoryQuery { limit: Some(1000) })
            .await
            .expect("history");
        history.iter().map(|r| r.revision).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registrations_save_a_new_node_once_and_keep_endpoints_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let controller = controller(dir.path()).await;
        let api = client(&controller);

        // A new node: one revision, with the agent's address and no port.
        let welcome = api
            .register(&hello("127.0.0.1", 7001))
            .await
            .expect("registered");
        assert_eq!(welcome.node.address, "127.0.0.1");
        assert_eq!(welcome.node.agent_port, None);
        let history = api
            .config_history(&HistoryQuery::default())
            .await
            .expect("history");
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(history[0].actor, "agent:n1");
        assert_eq!(history[0].paths, ["/nodes/n1/node.json"]);
        let saved = revisions(&api).await;
        let view = node_view(&api).await;
        assert_eq!(view.agent_address.as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(view.agent_version.as_deref(), Some("9.9.9"));

        // The agent restarts on another port: no revision, the new endpoint.
        api.register(&hello("127.0.0.1", 7002))
            .await
            .expect("again");
        assert_eq!(revisions(&api).await, saved);
        let view = node_view(&api).await;
        assert_eq!(view.spec.address, "127.0.0.1");
        assert_eq!(view.spec.agent_port, None);
        assert_eq!(view.agent_address.as_deref(), Some("127.0.0.1:7002"));

        // Another address: still no revision, the configured address stays,
        // an event says so, and the agent is reached where it says.
        api.register(&hello("::1", 7003)).await.expect("moved");
        assert_eq!(revisions(&api).await, saved);
        let view = node_view(&api).await;
        assert_eq!(view.spec.address, "127.0.0.1");
        assert_eq!(view.agent_address.as_deref(), Some("[::1]:7003"));
        let events = api
            .events(&EventQuery {
                subject: Some("node/n1".into()),
                ..EventQuery::default()
            })
            .await
            .expect("events");
        assert!(
            events
                .iter()
                .any(|e| e.message.contains("reports address `::1`")
                    && e.message.contains("the configured address is `127.0.0.1`")),
            "{events:#?}"
        );

        // A report that gives half an endpoint, or one no host has, is refused.
        let error = api
            .report("n1", &report_at(Some("127.0.0.1"), None))
            .await
            .expect_err("half an endpoint");
        assert_eq!(error.status(), Some(400), "{error}");
        let error = api
            .register(&hello("no such/host", 7004))
            .await
            .expect_err("bad address");
        assert_eq!(error.status(), Some(400), "{error}");
        assert_eq!(revisions(&api).await, saved);
        controller.shutdown().await.expect("shutdown");

        // A restarted controller knows the configuration, not the endpoint,
        // until the agent's next report tells it (no registration needed).
        let controller = self::controller(dir.path()).await;
        let api = client(&controller);
        let view = node_view(&api).await;
        assert_eq!(view.status, NodeStatus::Unregistered);
        assert_eq!(view.agent_address, None);
        // An agent that predates the report fields keeps working.
        api.report("n1", &report_at(None, None))
            .await
            .expect("old report");
        assert_eq!(node_view(&api).await.agent_address, None);
        api.report("n1", &report_at(Some("127.0.0.1"), Some(7005)))
            .await
            .expect("report");
        let view = node_view(&api).await;
        assert_eq!(view.status, NodeStatus::Online);
        assert_eq!(view.agent_address.as_deref(), Some("127.0.0.1:7005"));
        assert_eq!(view.agent_version.as_deref(), Some("9.9.9"));
        assert_eq!(revisions(&api).await, saved);
        controller.shutdown().await.expect("shutdown");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_agent_for_a_live_node_is_refused_and_takes_over_a_silent_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let controller = controller(dir.path()).await;
        let api = client(&controller);
        let first = AgentHello {
            instance_id: Some("first".into()),
            ..hello("127.0.0.1", 7001)
        };
        let second = AgentHello {
            instance_id: Some("second".into()),
            ..hello("127.0.0.2", 7002)
        };
        let report_of = |instance: &str, address: &str, port: u16| AgentReport {
            instance_id: Some(instance.into()),
            mode: Some(AgentMode::Independent),
            independent_since_ms: Some(1),
            ..report_at(Some(address), Some(port))
        };
        api.register(&first).await.expect("the first agent");
        api.report("n1", &report_at(Some("127.0.0.1"), Some(7001)))
            .await
            .expect("an agent without an instance id is accepted as before");

        let error = api.register(&second).await.expect_err("a live agent");
        assert_eq!(error.status(), Some(409), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("node `n1` already has a live agent at 127.0.0.1:7001 (since ")
                && message.contains("wait until it has been silent for 3s to replace it"),
            "{message}"
        );
        let error = api
            .report("n1", &report_of("second", "127.0.0.2", 7002))
            .await
            .expect_err("its reports too");
        assert_eq!(error.status(), Some(409), "{error}");
        // Nothing of the refused agent was taken: endpoint, mode, events.
        let view = node_view(&api).await;
        assert_eq!(view.agent_address.as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(view.mode, AgentMode::Managed);
        // The first agent registering again (a controller restart, say).
        api.register(&first).await.expect("the same instance again");

        // The first agent goes silent past the unreachable timeout (3
        // heartbeats of 1s): the second takes the node over.
        let silent =
            dure_core::state::silent_limit(Duration::from_secs(1)) + Duration::from_millis(500);
        tokio::time::sleep(silent).await;
        api.register(&second)
            .await
            .expect("a silent agent is replaced");
        let view = node_view(&api).await;
        assert_eq!(view.status, NodeStatus::Online);
        assert_eq!(view.agent_address.as_deref(), Some("127.0.0.2:7002"));
        api.report("n1", &report_of("second", "127.0.0.2", 7002))
            .await
            .expect("the new owner reports");
        let error = api
            .report("n1", &report_of("first", "127.0.0.1", 7001))
            .await
            .expect_err("the replaced agent is refused");
        assert_eq!(error.status(), Some(409), "{error}");
        let events = api
            .events(&EventQuery {
                subject: Some("node/n1".into()),
                ..EventQuery::default()
            })
            .await
            .expect("events");
        let took_over = events
            .iter()
            .filter(|e| e.kind == "node.state" && e.message.contains("taken over"))
            .collect::<Vec<_>>();
        assert_eq!(took_over.len(), 1, "{events:#?}");
        assert!(
            took_over[0].message.contains(
                "taken over by a new agent at 127.0.0.2:7002: its agent at 127.0.0.1:7001"
            ),
            "{}",
            took_over[0].message
        );
        controller.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn drift_events_are_bounded_per_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        let report = AgentReport {
            servers: Vec::new(),
            mode: None,
            independent_since_ms: None,
            drift: (0..MAX_DRIFT_EVENTS + 50)
                .map(|i| format!("line {i}"))
                .collect(),
            address: None,
            agent_port: None,
            version: None,
            instance_id: None,
            membership_port: None,
            peers: None,
            apps: Vec::new(),
        };
        record_mode_and_drift(&app, "agent:n1", "n1", &report).await;
        let events = app
            .events
            .list(&EventQuery {
                subject: Some("node/n1".into()),
                ..EventQuery::default()
            })
            .await
            .expect("events");
        assert_eq!(events.len(), MAX_DRIFT_EVENTS + 1);
        let last = &events[MAX_DRIFT_EVENTS].message;
        assert!(last.starts_with("50 more drift line(s)"), "{last}");
    }
}
