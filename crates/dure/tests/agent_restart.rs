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
    // The view can show `ready` a moment before the event log holds the
    // transition: wait for it, or it would count as a change across the
    // agent restart.
    let events_before = eventually("the `ready` event of the restart", SETTLE, || async {
        let events = state_events().await;
        let last_is_ready = events.last().is_some_and(|m| m.contains("-> ready"));
        last_is_ready.then_some(events)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

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

/// A server that exits at once, restarted by policy every `backoff`, at
/// most 3 times in a row.
fn crash_looping(name: &str, backoff: &str) -> dure_core::ServerSpec {
    let argv = vec!["/bin/sh".into(), "-c".into(), "exit 1".into()];
    let mut spec = command_server(name, "n1", dure_testkit::free_port(), argv);
    spec.restart.backoff = backoff.parse().expect("valid backoff");
    spec.restart.max_backoff = spec.restart.backoff;
    spec
}

/// Kills node n1's agent with SIGKILL and starts it again.
async fn restart_agent(sandbox: &mut dure_testkit::Sandbox) {
    sandbox.kill_agent("n1").await.expect("agent killed");
    sandbox.add_agent("n1").await.expect("agent back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_during_a_restart_backoff_keeps_the_count_and_the_budget() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    client
        .create_server(&crash_looping("crashy", "2s"))
        .await
        .expect("created");
    client
        .server_intent("crashy", Intent::Run)
        .await
        .expect("start");
    // Exited once, waiting out the backoff of restart 1: no process.
    eventually("`crashy` waits to restart", SETTLE, || async {
        let view = client.get_server("crashy").await.ok()?;
        (view.observed.state == ServerState::Starting
            && view.observed.pid.is_none()
            && view.observed.restarts >= 1)
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let state_file = sandbox
        .agent_data("n1")
        .join("servers/crashy/restart-state");
    assert!(state_file.exists(), "the pending restart is kept on disk");

    restart_agent(&mut sandbox).await;
    let seen = std::sync::Mutex::new(Vec::new());
    let failed = eventually("`crashy` gives up after its budget", SETTLE, || async {
        let view = client.get_server("crashy").await.ok()?;
        seen.lock()
            .expect("not poisoned")
            .push(view.observed.restarts);
        (view.observed.state == ServerState::Failed).then_some(view)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let seen = seen.into_inner().expect("not poisoned");
    assert!(
        seen.iter().all(|&restarts| restarts >= 1),
        "RESTARTS went back to 0 across the agent restart: {seen:?}"
    );
    assert_eq!(failed.observed.restarts, 3, "{seen:?}");
    assert_eq!(
        failed.observed.last_error.as_deref(),
        Some("exited with code 1; gave up after 3 restarts")
    );
    // The first run and 3 restarts, across both agents: the budget was
    // not renewed by the agent restart.
    let log = std::fs::read_to_string(sandbox.agent_data("n1").join("servers/crashy/server.log"))
        .expect("server log");
    let runs = log
        .lines()
        .filter(|l| l.contains("exited with code 1"))
        .count();
    assert_eq!(runs, 4, "{log}");

    // Failed is kept, too: another agent restart does not start it again.
    restart_agent(&mut sandbox).await;
    tokio::time::sleep(WATCH).await;
    let after = client.get_server("crashy").await.expect("crashy");
    assert_eq!(
        (after.observed.state, after.observed.restarts),
        (ServerState::Failed, 3)
    );
    let (code, out, err) = cli(&sandbox, &["server", "list"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("crashy"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("failed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_restart_is_not_carried_out_once_stop_is_asked() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    client
        .create_server(&crash_looping("halted", "8s"))
        .await
        .expect("created");
    client
        .server_intent("halted", Intent::Run)
        .await
        .expect("start");
    eventually("`halted` waits to restart", SETTLE, || async {
        let view = client.get_server("halted").await.ok()?;
        (view.observed.state == ServerState::Starting && view.observed.restarts == 1).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sandbox.kill_agent("n1").await.expect("agent killed");
    client
        .server_intent("halted", Intent::Stop)
        .await
        .expect("stop asked while the agent is away");
    sandbox.add_agent("n1").await.expect("agent back");
    wait_server_state(&client, "halted", ServerState::Stopped).await;
    // Past the backoff that remained: the record started nothing.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let view = client.get_server("halted").await.expect("halted");
    assert_eq!(view.observed.state, ServerState::Stopped);
    assert_eq!(view.observed.pid, None);
    let state_file = sandbox
        .agent_data("n1")
        .join("servers/halted/restart-state");
    assert!(!state_file.exists(), "nothing is left to resume");
}
