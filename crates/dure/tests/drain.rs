//! Draining, graceful stops and rolling restarts behind a real balancer:
//! under a bounded load of slow GETs and POSTs through `dure lb run` in
//! front of a three-member demo cluster, `cluster restart --rolling` and a
//! graceful `cluster stop` fail no request (each member is drained before
//! its agent stops it: requests in flight finish, no new ones reach it —
//! the members here are killed 100 ms after their stop signal, as an
//! application that does not finish its requests would be, so a POST in
//! flight at a stop without a drain fails),
//! and a rolling restart whose member cannot start (its port taken) stops
//! there, naming it, with the members after it left running untouched.

mod common;

use common::load::{Load, Sent};
use common::*;
use dure_api::{Client, Operation, OperationKind, OperationQuery, OperationStatus, StepStatus};
use dure_core::{DurationSpec, ServerState};
use dure_testkit::{ChildProcess, ProcessMark};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const MEMBERS: [&str; 3] = ["web1", "web2", "web3"];
/// Concurrent load clients, and how long each request takes at the member.
const CLIENTS: usize = 6;
const SLOW: &str = "/slow?ms=300";

/// Three demo members in cluster `shop`, ready, behind balancer `front`
/// run by `dure lb run`; returns the client, the balancer's port and the
/// balancer.
async fn served_shop(sandbox: &Sandbox) -> (Client, u16, ChildProcess) {
    let client = sandbox.client();
    for name in MEMBERS {
        let mut spec = demo_server(name, "n1");
        // Requests in flight at the stop signal do not outlive it.
        spec.stop.timeout = DurationSpec::from_millis(100);
        client.create_server(&spec).await.expect("server created");
    }
    create_cluster(&client, "shop", &MEMBERS).await;
    // Checks often, so a restarted member is back in rotation quickly.
    let (code, _, err) = cli(
        sandbox,
        &[
            "cluster",
            "balance",
            "shop",
            "--check",
            "http:/health",
            "--interval",
            "250ms",
            "--rise",
            "1",
            "--fall",
            "1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    start_green(&client, "shop").await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (code, _, err) = cli(
        sandbox,
        &[
            "lb", "create", "front", "--listen", &listen, "--route", "shop",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let args = lb_run_args(sandbox, "front");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = sandbox.dir().join("lb.log");
    let lb = ChildProcess::spawn(sandbox.bin(), &args, &[sandbox.mark_env()], &log)
        .expect("balancer spawns");
    eventually("the balancer serves every member", SETTLE, || async {
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..12 {
            names.insert(http_get(port, "/").await?.1.trim().to_string());
        }
        (names.len() == MEMBERS.len()).then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}; balancer log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    // Every balancer instance reports every member: drains wait on it.
    eventually("the balancer reports every member", SETTLE, || async {
        let stats = client.lb_stats("front").await.ok()?;
        (stats.members.len() == MEMBERS.len()).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (client, port, lb)
}

async fn pids(client: &Client) -> BTreeMap<String, Option<u32>> {
    let mut pids = BTreeMap::new();
    for name in MEMBERS {
        let view = client.get_server(name).await.expect("server");
        pids.insert(name.to_string(), view.observed.pid);
    }
    pids
}

async fn newest_operation(client: &Client) -> Operation {
    let query = OperationQuery {
        cluster: Some("shop".into()),
        limit: Some(1),
    };
    client.list_operations(&query).await.expect("operations")[0].clone()
}

fn step_says(op: &Operation, server: &str, what: &str) -> bool {
    op.steps
        .iter()
        .any(|s| s.server == server && s.message.as_deref().is_some_and(|m| m.contains(what)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_and_a_graceful_stop_under_load_fail_no_request() {
    let sandbox = sandbox(&["n1"]).await;
    let (client, port, mut lb) = served_shop(&sandbox).await;
    let before = pids(&client).await;

    let load = Load::start(port, SLOW, CLIENTS, true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (url, token) = (sandbox.url(), sandbox.token().to_string());
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        cli_at(&url, &token, &["cluster", "restart", "shop", "--rolling"])
    })
    .await
    .expect("cli joined");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = load.finish().await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("cluster `shop` restarted"), "{out}");
    let failed: Vec<&Sent> = sent.iter().filter(|s| s.status != Some(200)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        sent.len()
    );
    assert!(sent.len() >= 30, "the load ran: {} requests", sent.len());
    assert!(sent.iter().any(|s| s.method == "POST"), "POSTs too");
    let op = newest_operation(&client).await;
    assert_eq!(
        (op.kind, op.status),
        (OperationKind::Restart, OperationStatus::Succeeded),
        "{op:?}"
    );
    let after = pids(&client).await;
    for name in MEMBERS {
        assert_ne!(before[name], after[name], "`{name}` was restarted");
        assert!(step_says(&op, name, "drained in"), "{op:?}");
        assert!(step_says(&op, name, "back in rotation"), "{op:?}");
    }

    // A server stop of a member drains it too, and says so in the event log.
    let load = Load::start(port, SLOW, CLIENTS, true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (url, token) = (sandbox.url(), sandbox.token().to_string());
    let (code, out, err) =
        tokio::task::spawn_blocking(move || cli_at(&url, &token, &["server", "stop", "web3"]))
            .await
            .expect("cli joined");
    let sent = load.finish().await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let failed: Vec<&Sent> = sent.iter().filter(|s| s.status != Some(200)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        sent.len()
    );
    let events = client
        .events(&dure_api::EventQuery {
            subject: Some("server/web3".into()),
            ..Default::default()
        })
        .await
        .expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.kind == "drain" && e.message.contains("server `web3` drained in")),
        "{events:#?}"
    );
    let (code, _, err) = cli(&sandbox, &["server", "start", "web3"]);
    assert_eq!(code, 0, "{err}");
    eventually(
        "web3 is back in the balancer's rotation",
        SETTLE,
        || async {
            let stats = client.lb_stats("front").await.ok()?;
            stats
                .members
                .iter()
                .any(|m| m.member == "web3" && m.health == "up")
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // A graceful stop: every request that reached the balancer before the
    // last member began draining is answered; after that nothing is left
    // to answer, which is said with a 503, never a broken request.
    let load = Load::start(port, SLOW, CLIENTS, true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let op = client
        .cluster_operation("shop", OperationKind::Stop, &Default::default())
        .await
        .expect("stop accepted");
    let op = wait_operation(&client, &op.id).await;
    let sent = load.finish().await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
    for name in MEMBERS {
        assert!(step_says(&op, name, "drained in"), "{op:?}");
    }
    let last = op
        .steps
        .iter()
        .find(|s| s.server == "web1")
        .and_then(|s| s.started_ms)
        .expect("web1, stopped last, has a start time");
    // A request needs a moment from the client to the balancer.
    let reached = |s: &Sent| s.started_ms + 100 < last;
    let failed: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.status != Some(200) && (reached(s) || s.status != Some(503)))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        sent.len()
    );
    assert!(
        sent.iter().filter(|s| reached(s)).count() >= 10,
        "the load ran during the stop: {sent:?}"
    );
    for name in MEMBERS {
        wait_server_state(&client, name, ServerState::Stopped).await;
    }
    lb.terminate(Duration::from_secs(10))
        .await
        .expect("balancer stops on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_stops_at_a_member_that_cannot_start() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    for name in MEMBERS {
        client
            .create_server(&demo_server(name, "n1"))
            .await
            .expect("server created");
    }
    create_cluster(&client, "shop", &MEMBERS).await;
    start_green(&client, "shop").await;
    let before = pids(&client).await;

    // web2's next start needs a port another process holds.
    let taken = free_port();
    let mark = ProcessMark::new();
    let taken_text = taken.to_string();
    let _holder = ChildProcess::spawn(
        Path::new(BIN),
        &["demo-app", "--name", "holder", "--port", &taken_text],
        &[mark.env()],
        &sandbox.dir().join("holder.log"),
    )
    .expect("holder spawned");
    eventually("the holder answers", SETTLE, || async {
        http_get(taken, "/health").await.filter(|(c, _)| *c == 200)
    })
    .await
    .expect("holder up");
    let mut web2 = client.get_server("web2").await.expect("web2").spec;
    let old_port = web2.ports["http"].to_string();
    web2.ports.insert("http".into(), taken);
    for arg in web2.argv.iter_mut().filter(|a| **a == old_port) {
        *arg = taken_text.clone();
    }
    client.replace_server(&web2).await.expect("web2 updated");

    let (code, out, err) = cli(&sandbox, &["cluster", "restart", "shop", "--rolling"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    let said = format!("{out}{err}");
    assert!(said.contains("member `web2` failed"), "{said}");
    assert!(said.contains(&format!("port {taken}")), "{said}");
    let op = newest_operation(&client).await;
    assert_eq!(op.status, OperationStatus::Failed, "{op:?}");
    let step = |name: &str| {
        op.steps
            .iter()
            .find(|s| s.server == name)
            .expect("a step per member")
            .clone()
    };
    assert_eq!(step("web1").status, StepStatus::Done, "{op:?}");
    assert_eq!(step("web3").status, StepStatus::Skipped, "{op:?}");
    assert!(
        step("web3")
            .message
            .unwrap_or_default()
            .contains("not restarted"),
        "{op:?}"
    );
    let after = pids(&client).await;
    assert_ne!(before["web1"], after["web1"], "web1 was restarted");
    assert_eq!(before["web3"], after["web3"], "web3 was left running");
    let web3 = client.get_server("web3").await.expect("web3");
    assert_eq!(web3.observed.state, ServerState::Ready);

    // Options that do not fit are refused before anything happens.
    let (code, _, err) = cli(&sandbox, &["cluster", "restart", "shop", "--batch", "2"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli(
        &sandbox,
        &["cluster", "restart", "shop", "--rolling", "--batch", "0"],
    );
    assert_eq!(code, 2, "{err}");
}
