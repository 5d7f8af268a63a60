//! End to end: servers and a cluster on a real agent, ordered start, a
//! member killed with SIGKILL, graceful stop and immediate stop.

mod common;

use common::*;
use dure_api::{EventQuery, OperationKind, OperationStatus, StepStatus};
use dure_core::operation::OperationOptions;
use dure_core::{ClusterStatus, ServerState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_start_member_crash_and_stop() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let specs: Vec<_> = ["web1", "web2", "web3"]
        .iter()
        .map(|name| demo_server(name, "n1"))
        .collect();
    for spec in &specs {
        client.create_server(spec).await.expect("server created");
    }
    let view = create_cluster(&client, "shop", &["web1", "web2", "web3"]).await;
    assert_eq!(view.status, ClusterStatus::Red, "defined but not started");

    let op = client
        .cluster_operation("shop", OperationKind::Start, &OperationOptions::default())
        .await
        .expect("start accepted");
    let op = wait_operation(&client, &op.id).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
    assert!(
        op.steps.iter().all(|s| s.status == StepStatus::Done),
        "{op:?}"
    );
    wait_cluster_status(&client, "shop", ClusterStatus::Green).await;
    for spec in &specs {
        let (status, body) = http_get(spec.ports["http"], "/")
            .await
            .expect("member answers");
        assert_eq!(status, 200);
        assert!(body.contains(&spec.name), "{body}");
    }

    // Each member became ready before the next one was started.
    let events = client.events(&EventQuery::default()).await.expect("events");
    // Reports may coalesce `starting` into `ready`, so look for "-> ready".
    let position = |server: &str, needle: &str| {
        let subject = format!("server/{server}");
        events
            .iter()
            .position(|e| e.subject == subject && e.message.contains(needle))
            .unwrap_or_else(|| panic!("no event `{needle}` of `{server}` in {events:#?}"))
    };
    let ready = |server: &str| position(server, "-> ready");
    let asked = |server: &str| position(server, "to start");
    assert!(
        ready("web1") < asked("web2"),
        "web2 started before web1 was ready"
    );
    assert!(
        ready("web2") < asked("web3"),
        "web3 started before web2 was ready"
    );

    // Starting a running cluster is a no-op that says so.
    let again = client
        .cluster_operation("shop", OperationKind::Start, &OperationOptions::default())
        .await
        .expect("second start accepted");
    assert_eq!(again.status, OperationStatus::Succeeded);
    assert!(
        again
            .message
            .as_deref()
            .unwrap_or("")
            .contains("already running"),
        "{again:?}"
    );

    // kill -9 one member: the light turns yellow, the policy restarts it.
    let web2 = client.get_server("web2").await.expect("web2");
    let old_pid = web2.observed.pid.expect("web2 has a pid");
    // SAFETY: plain syscall on the pid of a process this test defined.
    unsafe { libc::kill(old_pid as i32, libc::SIGKILL) };
    wait_cluster_status(&client, "shop", ClusterStatus::Yellow).await;
    let restarted = eventually("web2 is restarted by policy", SETTLE, || async {
        let view = client.get_server("web2").await.ok()?;
        (view.observed.state == ServerState::Ready && view.observed.pid != Some(old_pid))
            .then_some(view)
    })
    .await
    .expect("restart");
    assert_eq!(restarted.observed.restarts, 1);
    wait_cluster_status(&client, "shop", ClusterStatus::Green).await;

    // Graceful stop goes in reverse order and ends red.
    let pids: Vec<u32> = client
        .get_cluster("shop")
        .await
        .expect("cluster")
        .members
        .iter()
        .filter_map(|m| m.observed.pid)
        .collect();
    let op = client
        .cluster_operation("shop", OperationKind::Stop, &OperationOptions::default())
        .await
        .expect("stop accepted");
    let steps: Vec<_> = op.steps.iter().map(|s| s.server.as_str()).collect();
    assert_eq!(steps, ["web3", "web2", "web1"]);
    let op = wait_operation(&client, &op.id).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
    wait_cluster_status(&client, "shop", ClusterStatus::Red).await;
    for pid in pids {
        assert!(!alive(pid), "pid {pid} still alive after stop");
    }
    drop(sandbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_policy_leaves_a_killed_member_failed_and_kill_stops_all_at_once() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    for name in ["a1", "a2"] {
        let mut spec = demo_server(name, "n1");
        spec.restart.mode = dure_core::RestartMode::Never;
        client.create_server(&spec).await.expect("server created");
    }
    create_cluster(&client, "app", &["a1", "a2"]).await;
    let parallel = OperationOptions {
        parallel: true,
        ..OperationOptions::default()
    };
    let op = client
        .cluster_operation("app", OperationKind::Start, &parallel)
        .await
        .expect("start");
    assert_eq!(
        wait_operation(&client, &op.id).await.status,
        OperationStatus::Succeeded
    );

    let a1 = client.get_server("a1").await.expect("a1");
    // SAFETY: plain syscall on the pid of a process this test defined.
    unsafe { libc::kill(a1.observed.pid.expect("pid") as i32, libc::SIGKILL) };
    let failed = wait_server_state(&client, "a1", ServerState::Failed).await;
    assert!(
        failed
            .observed
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("signal 9"),
        "{failed:?}"
    );
    wait_cluster_status(&client, "app", ClusterStatus::Yellow).await;

    let a2_pid = client
        .get_server("a2")
        .await
        .expect("a2")
        .observed
        .pid
        .expect("pid");
    let op = client
        .cluster_operation("app", OperationKind::Kill, &OperationOptions::default())
        .await
        .expect("kill");
    assert_eq!(op.steps.len(), 2);
    let op = wait_operation(&client, &op.id).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
    assert!(!alive(a2_pid));
    wait_cluster_status(&client, "app", ClusterStatus::Red).await;

    // The operation list is newest first and can be narrowed to a cluster.
    let newest = client
        .list_operations(&dure_api::OperationQuery {
            cluster: Some("app".into()),
            limit: Some(1),
        })
        .await
        .expect("operations");
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].id, op.id, "the kill is the newest");
    let none = client
        .list_operations(&dure_api::OperationQuery {
            cluster: Some("elsewhere".into()),
            limit: None,
        })
        .await
        .expect("operations");
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_gets_ready_fails_the_start_and_says_why() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    client
        .create_server(&demo_server("good", "n1"))
        .await
        .expect("good");
    // Listens on nothing: its http probe can never pass.
    let port = dure_testkit::free_port();
    let mut bad =
        command_server("bad", "n1", port, vec!["sleep".into(), "60".into()]).with_ready("tcp:http");
    bad.ready.start_timeout = "1s".parse().expect("duration");
    bad.restart.mode = dure_core::RestartMode::Never;
    client.create_server(&bad).await.expect("bad");
    client
        .create_server(&demo_server("after", "n1"))
        .await
        .expect("after");
    create_cluster(&client, "mixed", &["good", "bad", "after"]).await;

    let op = client
        .cluster_operation("mixed", OperationKind::Start, &OperationOptions::default())
        .await
        .expect("start");
    let op = wait_operation(&client, &op.id).await;
    assert_eq!(op.status, OperationStatus::Failed);
    let message = op.message.clone().unwrap_or_default();
    assert!(message.contains("member `bad` failed"), "{message}");
    assert!(message.contains("not ready"), "{message}");
    let status: Vec<_> = op
        .steps
        .iter()
        .map(|s| (s.server.as_str(), s.status))
        .collect();
    assert_eq!(
        status,
        [
            ("good", StepStatus::Done),
            ("bad", StepStatus::Failed),
            ("after", StepStatus::Skipped)
        ]
    );

    // --continue-on-error goes on past the failing member.
    let op = client
        .cluster_operation(
            "mixed",
            OperationKind::Start,
            &OperationOptions {
                continue_on_error: true,
                ..OperationOptions::default()
            },
        )
        .await
        .expect("start again");
    let op = wait_operation(&client, &op.id).await;
    assert_eq!(op.status, OperationStatus::Failed);
    let after = op
        .steps
        .iter()
        .find(|s| s.server == "after")
        .expect("after step");
    assert_eq!(after.status, StepStatus::Done, "{op:?}");
    wait_server_state(&client, "after", ServerState::Ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_fails_clearly_and_the_agent_keeps_running() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let port = dure_testkit::free_port();
    let ghost = command_server("ghost", "n1", port, vec!["/no/such/command".into()]);
    client.create_server(&ghost).await.expect("created");
    client
        .create_server(&demo_server("fine", "n1"))
        .await
        .expect("created");
    client
        .server_intent("ghost", dure_core::Intent::Run)
        .await
        .expect("start");
    let failed = wait_server_state(&client, "ghost", ServerState::Failed).await;
    let error = failed.observed.last_error.unwrap_or_default();
    assert!(error.contains("cannot start `/no/such/command`"), "{error}");
    assert!(error.contains("No such file or directory"), "{error}");

    // The agent is still there and still does its job.
    client
        .server_intent("fine", dure_core::Intent::Run)
        .await
        .expect("start");
    wait_server_state(&client, "fine", ServerState::Ready).await;
    let nodes = client.list_nodes().await.expect("nodes");
    assert_eq!(nodes[0].status, dure_api::NodeStatus::Online);

    // The event log keeps the newest events on request.
    let last = client
        .events(&EventQuery {
            subject: Some("server/ghost".into()),
            last: Some(1),
            ..EventQuery::default()
        })
        .await
        .expect("events");
    assert_eq!(last.len(), 1);
    assert!(last[0].message.contains("-> failed"), "{last:?}");
}
