//! Restarts and outages: an agent restart re-finds its running servers and
//! moves its endpoint without a configuration revision, a controller
//! restart keeps every piece of configuration and learns the agents'
//! endpoints again from their reports, and a lost agent turns its servers
//! unknown (gray), not stopped.

mod common;

use common::*;
use dure_api::{Client, HistoryQuery, NodeStatus, OperationKind, OperationStatus};
use dure_core::operation::OperationOptions;
use dure_core::{ClusterStatus, Intent, ServerState};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restart_refinds_running_servers() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let spec = demo_server("keep", "n1");
    client.create_server(&spec).await.expect("created");
    client
        .server_intent("keep", Intent::Run)
        .await
        .expect("start");
    let before = wait_server_state(&client, "keep", ServerState::Ready).await;
    let pid = before.observed.pid.expect("pid");

    sandbox.stop_agent("n1").await.expect("agent stops");
    assert!(alive(pid), "server outlives its agent");
    assert_eq!(
        http_get(spec.ports["http"], "/").await.map(|r| r.0),
        Some(200)
    );
    sandbox.add_agent("n1").await.expect("agent comes back");
    let after = wait_server_state(&client, "keep", ServerState::Ready).await;
    assert_eq!(
        after.observed.pid,
        Some(pid),
        "the same process was adopted, not restarted"
    );

    // The adopted process can still be stopped.
    client
        .server_intent("keep", Intent::Stop)
        .await
        .expect("stop");
    wait_server_state(&client, "keep", ServerState::Stopped).await;
    assert!(!alive(pid));
}

/// Every saved revision of the configuration, newest first.
async fn revisions(client: &Client) -> Vec<(u64, String, String)> {
    client
        .config_history(&HistoryQuery { limit: Some(1000) })
        .await
        .expect("history")
        .into_iter()
        .map(|r| (r.revision, r.actor, r.message))
        .collect()
}

/// Waits until the controller reaches node `node`'s agent where it bound
/// now, as its address file says (right after a restart the node may still
/// look online from the previous agent's last report, before the new one
/// has even bound).
async fn wait_agent_endpoint(sandbox: &Sandbox, node: &str) -> String {
    let bound =
        dure_testkit::wait_for_addr_file(&sandbox.agent_data(node).join("agent.addr"), SETTLE)
            .await
            .expect("the agent binds its endpoint");
    let client = sandbox.client();
    eventually(
        &format!("the controller knows node `{node}`'s agent at {bound}"),
        SETTLE,
        || async {
            let nodes = client.list_nodes().await.ok()?;
            nodes
                .iter()
                .any(|n| n.spec.name == node && n.agent_address.as_deref() == Some(bound.as_str()))
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    bound
}

/// `dure server logs NAME`: its exit code and whether the demo app's
/// first line is in it.
fn server_logs_show_start(sandbox: &Sandbox, name: &str) -> (i32, bool, String) {
    let (code, out, err) = cli(sandbox, &["server", "logs", name]);
    let found = out.contains(&format!("{name} listening on http://"));
    (code, found, format!("stdout: {out}\nstderr: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_endpoints_are_observed_state_not_configuration() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let spec = demo_server("chatty", "n1");
    client.create_server(&spec).await.expect("created");
    client
        .server_intent("chatty", Intent::Run)
        .await
        .expect("start");
    wait_server_state(&client, "chatty", ServerState::Ready).await;
    wait_agent_endpoint(&sandbox, "n1").await;
    let (code, found, output) = server_logs_show_start(&sandbox, "chatty");
    assert!(code == 0 && found, "{output}");
    let history = revisions(&client).await;
    assert!(
        history.iter().any(|(_, actor, _)| actor == "agent:n1"),
        "the first registration created the node: {history:?}"
    );

    // Each agent restart listens on a new ephemeral port: the controller
    // reaches it there, and the configuration does not move.
    for restart in 1..=2 {
        sandbox.stop_agent("n1").await.expect("agent stops");
        sandbox.add_agent("n1").await.expect("agent comes back");
        let endpoint = wait_agent_endpoint(&sandbox, "n1").await;
        let (code, found, output) = server_logs_show_start(&sandbox, "chatty");
        assert!(
            code == 0 && found,
            "after agent restart {restart}: {output}"
        );
        assert_eq!(
            revisions(&client).await,
            history,
            "agent restart {restart} saved no configuration revision"
        );
        let (code, out, err) = cli(&sandbox, &["node", "list"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("AGENT") && out.contains(&endpoint), "{out}");
    }
    let tree = client.config_documents(None).await.expect("documents");
    assert_eq!(
        tree.documents["/nodes/n1/node.json"],
        serde_json::json!({"name": "n1", "address": "127.0.0.1"}),
        "the node document holds configuration only"
    );

    // A restarted controller knows no endpoint until the agent's next
    // report (or registration) tells it; then the logs proxy works again.
    sandbox.restart_controller().await.expect("controller back");
    let client = sandbox.client();
    eventually(
        "`dure server logs` works through the restarted controller",
        SETTLE,
        || async {
            let (code, found, _) = server_logs_show_start(&sandbox, "chatty");
            (code == 0 && found).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    wait_agent_endpoint(&sandbox, "n1").await;
    assert_eq!(
        revisions(&client).await,
        history,
        "the controller restart saved no configuration revision"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_restart_keeps_config_and_servers_keep_serving() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let specs: Vec<_> = ["k1", "k2"].iter().map(|n| demo_server(n, "n1")).collect();
    for spec in &specs {
        client.create_server(spec).await.expect("created");
    }
    create_cluster(&client, "kc", &["k2", "k1"]).await;
    let op = client
        .cluster_operation("kc", OperationKind::Start, &OperationOptions::default())
        .await
        .expect("start");
    assert_eq!(
        wait_operation(&client, &op.id).await.status,
        OperationStatus::Succeeded
    );
    let servers_before = client.list_servers().await.expect("servers");
    let token = sandbox.token().to_string();

    sandbox.kill_controller().await.expect("controller killed");
    for spec in &specs {
        assert_eq!(
            http_get(spec.ports["http"], "/").await.map(|r| r.0),
            Some(200),
            "serving without controller"
        );
    }
    sandbox.restart_controller().await.expect("controller back");
    assert_eq!(sandbox.token(), token, "the admin token is kept");
    let client = sandbox.client();
    let servers_after = client.list_servers().await.expect("servers");
    let specs_before: Vec<_> = servers_before
        .iter()
        .map(|s| (&s.spec, s.intent, s.generation))
        .collect();
    let specs_after: Vec<_> = servers_after
        .iter()
        .map(|s| (&s.spec, s.intent, s.generation))
        .collect();
    assert_eq!(specs_before, specs_after);
    let cluster = wait_cluster_status(&client, "kc", ClusterStatus::Green).await;
    assert_eq!(cluster.spec.members, ["k2", "k1"]);
    let op = client
        .get_operation(&op.id)
        .await
        .expect("operation history kept");
    assert_eq!(op.status, OperationStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_agent_makes_its_servers_unknown_not_stopped() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let spec = demo_server("lone", "n1");
    client.create_server(&spec).await.expect("created");
    create_cluster(&client, "lc", &["lone"]).await;
    let op = client
        .cluster_operation("lc", OperationKind::Start, &OperationOptions::default())
        .await
        .expect("start");
    assert_eq!(
        wait_operation(&client, &op.id).await.status,
        OperationStatus::Succeeded
    );
    let pid = client
        .get_server("lone")
        .await
        .expect("lone")
        .observed
        .pid
        .expect("pid");

    sandbox.kill_agent("n1").await.expect("agent killed");
    sandbox
        .wait_node_status("n1", NodeStatus::Unreachable, Duration::from_secs(20))
        .await
        .expect("node unreachable");
    let view = wait_cluster_status(&client, "lc", ClusterStatus::Gray).await;
    assert_eq!(view.members[0].observed.state, ServerState::Unknown);
    assert!(alive(pid), "the server keeps running");
    assert_eq!(
        http_get(spec.ports["http"], "/").await.map(|r| r.0),
        Some(200)
    );

    sandbox.add_agent("n1").await.expect("agent back");
    wait_cluster_status(&client, "lc", ClusterStatus::Green).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_honours_the_timeout_then_kills_the_group() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let port = dure_testkit::free_port();
    let mut stubborn = command_server(
        "stubborn",
        "n1",
        port,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "trap '' TERM; sleep 300 & wait; while true; do sleep 1; done".into(),
        ],
    );
    stubborn.stop.timeout = "1s".parse().expect("duration");
    client.create_server(&stubborn).await.expect("created");
    client
        .server_intent("stubborn", Intent::Run)
        .await
        .expect("start");
    let running = wait_server_state(&client, "stubborn", ServerState::Ready).await;
    let pid = running.observed.pid.expect("pid");

    client
        .server_intent("stubborn", Intent::Stop)
        .await
        .expect("stop");
    let stopped = wait_server_state(&client, "stubborn", ServerState::Stopped).await;
    // It went through `stopping` with its process still there: the event log
    // keeps every reported change, so this needs no race with the timeout.
    let events = client
        .events(&dure_api::EventQuery {
            subject: Some("server/stubborn".into()),
            ..dure_api::EventQuery::default()
        })
        .await
        .expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("-> stopping") && e.message.contains(&format!("pid {pid}"))),
        "{events:#?}"
    );
    let note = stopped.observed.last_error.unwrap_or_default();
    assert!(note.contains("killed after stop timeout"), "{note}");
    assert!(!alive(pid));
    // No member of its process group survives (the SIGKILL is delivered
    // asynchronously, so allow it a moment).
    eventually("the whole process group is gone", SETTLE, || async {
        // SAFETY: signal 0 only checks for existence.
        (unsafe { libc::killpg(pid as i32, 0) } != 0).then_some(())
    })
    .await
    .expect("group gone");
}
