//! Restarts and outages: an agent restart re-finds its running servers, a
//! controller restart keeps every piece of configuration, and a lost agent
//! turns its servers unknown (gray), not stopped.

mod common;

use common::*;
use dure_api::{NodeStatus, OperationKind, OperationStatus};
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
