//! An agent killed and started again reports its servers exactly as before:
//! the restart count the policy spent survives, and a ready server stays
//! ready — no `ready -> running -> ready` flap in the event log.

mod common;

use common::*;
use dure_api::EventQuery;
use dure_core::{Intent, ServerState};
use std::time::Duration;

/// How long the restarted agent is watched for a flap: several heartbeats
/// (1 s each) and many probe intervals (100 ms each).
const WATCH: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_keeps_the_restart_count_and_the_ready_state() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let spec = demo_server("steady", "n1");
    client.create_server(&spec).await.expect("created");
    client
        .server_intent("steady", Intent::Run)
        .await
        .expect("start");
    let first = wait_server_state(&client, "steady", ServerState::Ready).await;
    let first_pid = first.observed.pid.expect("pid");
    // A crash the restart policy answers: RESTARTS becomes 1.
    let pid = i32::try_from(first_pid).expect("pid fits");
    // SAFETY: a plain kill(2) of the server's pid, which is alive and
    // ours: its agent has not reaped it yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let before = eventually("`steady` ready again after one restart", SETTLE, || async {
        client.get_server("steady").await.ok().filter(|v| {
            v.observed.state == ServerState::Ready
                && v.observed.restarts == 1
                && v.observed.pid != Some(first_pid)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let state_events = || async {
        client
            .events(&EventQuery {
                subject: Some("server/steady".into()),
                ..EventQuery::default()
            })
            .await
            .expect("events")
            .into_iter()
            .filter(|e| e.kind == "server.state")
            .map(|e| e.message)
            .collect::<Vec<_>>()
    };
    let events_before = state_events().await;

    sandbox.kill_agent("n1").await.expect("agent killed");
    sandbox.add_agent("n1").await.expect("agent back");
    let bound =
        dure_testkit::wait_for_addr_file(&sandbox.agent_data("n1").join("agent.addr"), SETTLE)
            .await
            .expect("the new agent binds");
    eventually(
        "the controller hears from the new agent",
        SETTLE,
        || async {
            let nodes = client.list_nodes().await.ok()?;
            nodes
                .iter()
                .any(|n| n.spec.name == "n1" && n.agent_address.as_deref() == Some(bound.as_str()))
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(WATCH).await;

    let after = client.get_server("steady").await.expect("steady");
    assert_eq!(after.observed.state, ServerState::Ready);
    assert_eq!(after.observed.pid, before.observed.pid, "adopted");
    assert_eq!(after.observed.restarts, 1, "the restart count survives");
    assert_eq!(after.observed.since_ms, before.observed.since_ms);
    assert_eq!(
        state_events().await,
        events_before,
        "no state change was reported across the agent restart"
    );
    let (code, out, err) = cli(&sandbox, &["server", "list"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("steady"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("ready"), "{out}");
}
