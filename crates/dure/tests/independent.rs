//! The controller away: agents enter INDEPENDENT mode and run their servers
//! from the local copy (also when they start while the controller is
//! down), restarts by policy go on, a damaged local copy starts nothing,
//! and when the controller is back the agents report the drift, resync and
//! are managed again.

mod common;

use common::*;
use dure_api::{AgentMode, AgentStatus, Event, EventQuery, OperationKind, OperationStatus};
use dure_core::operation::OperationOptions;
use dure_core::{Intent, ObservedServer, ServerState};
use dure_testkit::kill_group;
use std::time::Duration;

/// How long an agent may take to notice the controller is gone (three
/// 1 s heartbeats plus retries) or back (its retry backoff), with margin.
const MODE_CHANGE: Duration = Duration::from_secs(20);

/// Waits until the agent of `node` reports a status matching `pred`.
async fn wait_agent(
    sandbox: &Sandbox,
    node: &str,
    what: &str,
    pred: impl Fn(&AgentStatus) -> bool,
) -> AgentStatus {
    eventually(what, MODE_CHANGE, || async {
        sandbox.agent_status(node).await.ok().filter(|s| pred(s))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", sandbox.log(&format!("agent-{node}"))))
}

fn server<'a>(status: &'a AgentStatus, name: &str) -> Option<&'a ObservedServer> {
    status.servers.iter().find(|s| s.name == name)
}

fn is_ready(status: &AgentStatus, name: &str) -> bool {
    server(status, name).is_some_and(|s| s.state == ServerState::Ready)
}

/// Events about node `node`, oldest first.
async fn node_events(sandbox: &Sandbox, node: &str) -> Vec<Event> {
    sandbox
        .client()
        .events(&EventQuery {
            subject: Some(format!("node/{node}")),
            ..EventQuery::default()
        })
        .await
        .expect("events")
}

/// Waits until the node's events include one of `kind` containing `text`.
async fn wait_event(sandbox: &Sandbox, node: &str, kind: &str, text: &str) -> Event {
    let found = eventually(
        &format!("a `{kind}` event saying `{text}`"),
        SETTLE,
        || async {
            node_events(sandbox, node)
                .await
                .into_iter()
                .find(|e| e.kind == kind && e.message.contains(text))
        },
    )
    .await;
    match found {
        Ok(event) => event,
        Err(error) => panic!("{error}; events: {:#?}", node_events(sandbox, node).await),
    }
}

/// Waits until the controller lists `node` in `mode`, and checks the CLI says so.
async fn wait_node_mode(sandbox: &Sandbox, node: &str, mode: AgentMode) {
    let client = sandbox.client();
    eventually(&format!("node `{node}` listed {mode}"), SETTLE, || async {
        let nodes = client.list_nodes().await.ok()?;
        nodes
            .iter()
            .any(|n| n.spec.name == node && n.mode == mode)
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, out, err) = cli(sandbox, &["node", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().next().unwrap_or("").contains("MODE"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with(node))
        .unwrap_or_else(|| panic!("no row for `{node}`: {out}"));
    assert!(row.contains(&mode.to_string()), "{out}");
}

/// The agent has saved the controller's current desired state as its local copy.
async fn wait_local_copy(sandbox: &Sandbox, node: &str) {
    wait_agent(sandbox, node, "a local copy saved", |s| {
        s.local_copy_index.is_some() && s.local_copy_error.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_away_servers_keep_serving_restart_by_policy_and_drift_is_reported() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let web = demo_server("web1", "n1");
    let idle = demo_server("idle1", "n1");
    client.create_server(&web).await.expect("created");
    client.create_server(&idle).await.expect("created");
    client
        .server_intent("web1", Intent::Run)
        .await
        .expect("start");
    wait_server_state(&client, "web1", ServerState::Ready).await;
    wait_agent(&sandbox, "n1", "web1 ready, local copy saved", |s| {
        is_ready(s, "web1") && s.local_copy_index.is_some()
    })
    .await;
    wait_node_mode(&sandbox, "n1", AgentMode::Managed).await;

    sandbox.kill_controller().await.expect("controller killed");
    let away = wait_agent(&sandbox, "n1", "INDEPENDENT mode", |s| {
        s.mode == AgentMode::Independent
    })
    .await;
    assert!(away.independent_since_ms.is_some(), "{away:?}");
    assert!(!away.controller_reachable);
    let pid = server(&away, "web1").and_then(|s| s.pid).expect("web1 pid");
    assert_eq!(
        http_get(web.ports["http"], "/").await.map(|r| r.0),
        Some(200),
        "serving without the controller"
    );
    assert_eq!(
        server(&away, "idle1").map(|s| (s.state, s.pid)),
        Some((ServerState::Stopped, None)),
        "a server meant to be stopped is not started"
    );

    // Client verbs say plainly that the controller is away.
    let (code, _, err) = cli(&sandbox, &["server", "list"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot reach the controller"), "{err}");

    // A crash while away is restarted by the server's restart policy.
    kill_group(i32::try_from(pid).expect("pid fits"));
    let restarted = wait_agent(&sandbox, "n1", "web1 restarted by policy", |s| {
        server(s, "web1")
            .is_some_and(|w| w.restarts == 1 && w.state == ServerState::Ready && w.pid != Some(pid))
    })
    .await;
    assert_eq!(restarted.mode, AgentMode::Independent);
    assert_eq!(
        http_get(web.ports["http"], "/").await.map(|r| r.0),
        Some(200)
    );

    sandbox.restart_controller().await.expect("controller back");
    wait_agent(&sandbox, "n1", "MANAGED again", |s| {
        s.mode == AgentMode::Managed && s.controller_reachable
    })
    .await;
    wait_event(&sandbox, "n1", "node.state", "is in INDEPENDENT mode since").await;
    wait_event(
        &sandbox,
        "n1",
        "node.drift",
        "server `web1` exited and was restarted 1 time by its restart policy",
    )
    .await;
    wait_event(&sandbox, "n1", "node.state", "is back under management").await;
    wait_node_mode(&sandbox, "n1", AgentMode::Managed).await;

    // Requests are applied normally again.
    let client = sandbox.client();
    client
        .server_intent("web1", Intent::Stop)
        .await
        .expect("stop");
    wait_server_state(&client, "web1", ServerState::Stopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_with_the_controller_down_runs_its_local_copy() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let specs: Vec<_> = ["a1", "a2", "a3"]
        .iter()
        .map(|n| demo_server(n, "n1"))
        .collect();
    for spec in &specs {
        client.create_server(spec).await.expect("created");
    }
    create_cluster(&client, "ac", &["a1", "a2"]).await;
    let op = client
        .cluster_operation("ac", OperationKind::Start, &OperationOptions::default())
        .await
        .expect("start");
    assert_eq!(
        wait_operation(&client, &op.id).await.status,
        OperationStatus::Succeeded
    );
    let before = wait_agent(&sandbox, "n1", "a1 and a2 ready", |s| {
        is_ready(s, "a1") && is_ready(s, "a2")
    })
    .await;
    wait_local_copy(&sandbox, "n1").await;
    let kept = server(&before, "a1").and_then(|s| s.pid).expect("a1 pid");
    let crashed = server(&before, "a2").and_then(|s| s.pid).expect("a2 pid");

    sandbox.stop_agent("n1").await.expect("agent stops");
    sandbox.kill_controller().await.expect("controller killed");
    kill_group(i32::try_from(crashed).expect("pid fits"));
    eventually("a2 gone", SETTLE, || async {
        (!alive(crashed)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    sandbox.start_agent("n1").await.expect("agent starts alone");
    let alone = wait_agent(&sandbox, "n1", "independent with a1 and a2 ready", |s| {
        s.mode == AgentMode::Independent && is_ready(s, "a1") && is_ready(s, "a2")
    })
    .await;
    assert_eq!(
        server(&alone, "a1").and_then(|s| s.pid),
        Some(kept),
        "a running server is adopted, not started again"
    );
    assert_ne!(server(&alone, "a2").and_then(|s| s.pid), Some(crashed));
    assert_eq!(
        server(&alone, "a3").map(|s| (s.state, s.pid)),
        Some((ServerState::Stopped, None)),
        "a server meant to be stopped stays stopped"
    );
    for spec in &specs[..2] {
        assert_eq!(
            http_get(spec.ports["http"], "/").await.map(|r| r.0),
            Some(200)
        );
    }
    assert_eq!(http_get(specs[2].ports["http"], "/").await, None);

    sandbox.restart_controller().await.expect("controller back");
    wait_agent(&sandbox, "n1", "MANAGED again", |s| {
        s.mode == AgentMode::Managed
    })
    .await;
    wait_event(
        &sandbox,
        "n1",
        "node.drift",
        "server `a2` was started from the local copy",
    )
    .await;
    wait_node_mode(&sandbox, "n1", AgentMode::Managed).await;
    let drift: Vec<_> = node_events(&sandbox, "n1")
        .await
        .into_iter()
        .filter(|e| e.kind == "node.drift")
        .map(|e| e.message)
        .collect();
    assert!(
        !drift
            .iter()
            .any(|m| m.contains("`a1`") || m.contains("`a3`")),
        "only what changed is drift: {drift:#?}"
    );
    let client = sandbox.client();
    wait_server_state(&client, "a2", ServerState::Ready).await;
    wait_server_state(&client, "a3", ServerState::Stopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_local_copy_starts_nothing_and_the_agent_resyncs_on_return() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let web = demo_server("web1", "n1");
    client.create_server(&web).await.expect("created");
    client
        .server_intent("web1", Intent::Run)
        .await
        .expect("start");
    let ready = wait_server_state(&client, "web1", ServerState::Ready).await;
    wait_local_copy(&sandbox, "n1").await;
    let pid = ready.observed.pid.expect("pid");

    // With the server down, an intact copy would start it again.
    sandbox.stop_agent("n1").await.expect("agent stops");
    sandbox.kill_controller().await.expect("controller killed");
    kill_group(i32::try_from(pid).expect("pid fits"));
    let path = sandbox.agent_data("n1").join("desired-state.json");
    let text = std::fs::read_to_string(&path).expect("local copy");
    // Still well-formed JSON: only the checksum can tell.
    let damaged = text.replacen("demo-app", "demo-apq", 1);
    assert_ne!(text, damaged);
    std::fs::write(&path, damaged).expect("damaged");

    sandbox.start_agent("n1").await.expect("agent starts alone");
    let alone = wait_agent(&sandbox, "n1", "independent", |s| {
        s.mode == AgentMode::Independent
    })
    .await;
    let error = alone.local_copy_error.clone().unwrap_or_default();
    assert!(error.contains("fails its checksum"), "{alone:?}");
    assert!(error.contains("moved it aside"), "{alone:?}");
    assert_eq!(alone.local_copy_index, None);
    // Give a wrongly started server time to show up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = sandbox.agent_status("n1").await.expect("status");
    assert!(status.servers.is_empty(), "{status:?}");
    assert_eq!(http_get(web.ports["http"], "/").await, None);
    assert!(!path.exists(), "the damaged copy is moved aside");
    let aside = std::fs::read_dir(sandbox.agent_data("n1"))
        .expect("data dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("desired-state.json.corrupt-"))
        .count();
    assert_eq!(aside, 1);
    assert!(
        sandbox.log("agent-n1").contains("fails its checksum"),
        "the agent log says why"
    );

    sandbox.restart_controller().await.expect("controller back");
    let back = wait_agent(&sandbox, "n1", "managed with web1 ready", |s| {
        s.mode == AgentMode::Managed && is_ready(s, "web1")
    })
    .await;
    assert!(back.local_copy_index.is_some(), "{back:?}");
    assert_eq!(back.local_copy_error, None);
    assert!(path.exists(), "a fresh local copy is written");
    wait_event(
        &sandbox,
        "n1",
        "node.drift",
        "no server was started from the local copy",
    )
    .await;
    assert_eq!(
        http_get(web.ports["http"], "/").await.map(|r| r.0),
        Some(200)
    );
}
