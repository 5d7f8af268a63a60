//! A declared port that another process holds: the agent spawns nothing,
//! the server ends `failed` naming the port and its holder, the start
//! operation fails naming the member, and nothing reports ready — not even
//! when the holder answers the server's readiness check. `dure up --demo`
//! says so too, instead of saying the demo runs.

mod common;

use common::*;
use dure_api::{EventQuery, OperationKind, OperationStatus};
use dure_core::operation::OperationOptions;
use dure_core::ServerState;
use dure_testkit::{ChildProcess, ProcessMark};
use std::path::Path;
use std::time::Duration;

/// Starts `dure demo-app` on `port` as a process of its own and waits until
/// it answers: a holder that passes the demo servers' readiness check.
async fn squatter(dir: &Path, port: u16, mark: &ProcessMark) -> ChildProcess {
    let port_text = port.to_string();
    let holder = ChildProcess::spawn(
        Path::new(BIN),
        &["demo-app", "--name", "squatter", "--port", &port_text],
        &[mark.env()],
        &dir.join(format!("squatter-{port}.log")),
    )
    .expect("squatter spawned");
    eventually("the squatter answers", SETTLE, || async {
        http_get(port, "/health")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await
    .expect("squatter up");
    holder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_fails_the_start_naming_the_member_and_the_port() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let first = demo_server("first", "n1");
    let squatted = demo_server("squatted", "n1");
    let port = squatted.ports["http"];
    client.create_server(&first).await.expect("first");
    client.create_server(&squatted).await.expect("squatted");
    create_cluster(&client, "held", &["first", "squatted"]).await;
    let mark = ProcessMark::new();
    let holder = squatter(sandbox.dir(), port, &mark).await;
    let taken = format!(
        "port {port} (http) is already in use by pid {} (dure)",
        holder.pid()
    );

    let (code, out, err) = cli(&sandbox, &["cluster", "start", "held"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    let said = format!("{out}{err}");
    assert!(
        said.contains(&format!("member `squatted` failed: {taken}")),
        "stdout: {out}\nstderr: {err}"
    );

    let view = client.get_server("squatted").await.expect("squatted");
    assert_eq!(view.observed.state, ServerState::Failed);
    assert_eq!(view.observed.last_error.as_deref(), Some(taken.as_str()));
    assert_eq!((view.observed.pid, view.observed.exit_code), (None, None));
    let events = client
        .events(&EventQuery {
            subject: Some("server/squatted".into()),
            ..EventQuery::default()
        })
        .await
        .expect("events");
    assert!(
        events
            .iter()
            .all(|e| !e.message.contains("-> ready") && !e.message.contains("-> starting")),
        "nothing was spawned or reported ready: {events:#?}"
    );
    assert!(
        events.iter().any(|e| e.message.contains(&taken)),
        "{events:#?}"
    );
    wait_server_state(&client, "first", ServerState::Ready).await;

    // Freed, the port is used at the next start.
    drop(holder);
    let op = client
        .cluster_operation("held", OperationKind::Start, &OperationOptions::default())
        .await
        .expect("start again");
    assert_eq!(
        wait_operation(&client, &op.id).await.status,
        OperationStatus::Succeeded
    );
    let view = wait_server_state(&client, "squatted", ServerState::Ready).await;
    assert_eq!(view.observed.last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dure_up_demo_with_a_taken_port_says_which_member_failed_and_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mark = ProcessMark::new();
    let base = three_free_ports();
    let holder = squatter(dir.path(), base + 1, &mark).await;
    let data = dir.path().join("data");
    let base_text = base.to_string();
    let data_text = data.to_string_lossy().into_owned();
    let (var, value) = mark.env();
    let up = tokio::process::Command::new(BIN)
        .args([
            "up",
            "--data",
            &data_text,
            "--demo",
            "--demo-port",
            &base_text,
            "--listen",
            "127.0.0.1:0",
        ])
        .env(var, value)
        .env_remove("DURE_HOME")
        .env_remove("DURE_ADDR")
        .env_remove("DURE_TOKEN")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), up)
        .await
        .expect("`dure up --demo` ends by itself when the demo cannot start")
        .expect("dure up runs");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {out}\nstderr: {err}"
    );
    assert!(
        !out.contains("is running"),
        "never says the demo runs: {out}"
    );
    let taken = format!(
        "member `demo-2` failed: port {} (http) is already in use by pid {} (dure)",
        base + 1,
        holder.pid()
    );
    assert!(err.contains(&taken), "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("--demo-port"),
        "says how to get around it: {err}"
    );
    // What the failed demo started is stopped again: demo-1's port is free.
    eventually("demo-1 is stopped", SETTLE, || async {
        http_get(base, "/").await.is_none().then_some(())
    })
    .await
    .expect("demo-1 stopped");
    assert_eq!(
        http_get(base + 1, "/health").await.map(|(code, _)| code),
        Some(200),
        "the holder is left alone"
    );
}
