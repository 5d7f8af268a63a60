//! End to end: blocking queries on a real controller and agent. A read
//! blocked on the view index returns when a server's observed state
//! changes (also when nobody asked for it: its process is killed), when the
//! configuration changes and when a node stops reporting; a quiet domain
//! (heartbeats only) lets the wait run out with the same index.

mod common;

use common::*;
use dure_api::{Client, ClientError, NodeStatus, Watched};
use dure_core::{Intent, ServerState};
use std::future::Future;
use std::time::Duration;

/// Long enough that a read returning within [`PROMPT`] did not run out.
const LONG_WAIT: Duration = Duration::from_secs(120);
/// The bound for a read that must return because something changed.
const PROMPT: Duration = Duration::from_secs(60);

/// Awaits a blocked read that must return because something changed.
async fn promptly<T>(read: impl Future<Output = Result<Watched<T>, ClientError>>) -> Watched<T> {
    tokio::time::timeout(PROMPT, read)
        .await
        .expect("the read returned before its wait ran out")
        .expect("read")
}

/// Follows `name` with blocking reads from `index` until its state is
/// `state`; every read must return because of a change. Returns the last.
async fn follow_until(
    client: &Client,
    name: &str,
    mut index: u64,
    state: ServerState,
) -> Watched<dure_api::ServerView> {
    for _ in 0..50 {
        let read = promptly(client.watch_server(name, index, LONG_WAIT)).await;
        assert!(read.index > index, "woken by a change, not the wait");
        index = read.index;
        if read.value.observed.state == state {
            return read;
        }
    }
    panic!("server `{name}` did not become {state} within 50 changes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_reads_follow_a_real_agent() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    client
        .create_server(&demo_server("web1", "n1"))
        .await
        .expect("created");
    sandbox
        .wait_node_status("n1", NodeStatus::Online, SETTLE)
        .await
        .expect("online");

    // Start: every step (intent, starting, ready) wakes the follower.
    let first = client
        .watch_server("web1", 0, LONG_WAIT)
        .await
        .expect("read");
    client
        .server_intent("web1", Intent::Run)
        .await
        .expect("start");
    let ready = follow_until(&client, "web1", first.index, ServerState::Ready).await;

    // Heartbeats alone do not move the index: the wait runs out with it.
    let quiet = client
        .watch_server("web1", ready.index, Duration::from_millis(2500))
        .await
        .expect("read");
    assert_eq!(quiet.index, ready.index, "{:?}", quiet.value.observed);

    // Nobody asks: the process dies, and the agent's report wakes the read.
    let pid = ready.value.observed.pid.expect("pid");
    let read = tokio::spawn({
        let client = client.clone();
        async move { client.watch_server("web1", ready.index, LONG_WAIT).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!read.is_finished(), "blocked until the process dies");
    // SAFETY: kill(2) on the pid of a process this test started (through
    // its agent); it cannot be reused while its agent has not reaped it.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let woken = promptly(async { read.await.expect("joined") }).await;
    assert!(woken.index > ready.index);
    assert!(
        woken.value.observed.pid != Some(pid) || woken.value.observed.state != ServerState::Ready,
        "{:?}",
        woken.value.observed
    );

    // A configuration change wakes a read of the clusters.
    let clusters = client.watch_clusters(0, LONG_WAIT).await.expect("read");
    let read = tokio::spawn({
        let client = client.clone();
        async move { client.watch_clusters(clusters.index, LONG_WAIT).await }
    });
    create_cluster(&client, "shop", &["web1"]).await;
    let woken = promptly(async { read.await.expect("joined") }).await;
    assert_eq!(woken.value.len(), 1);

    // A node that stops reporting wakes a read of the nodes.
    let nodes = client.watch_nodes(0, LONG_WAIT).await.expect("read");
    sandbox.kill_agent("n1").await.expect("agent killed");
    let mut index = nodes.index;
    let mut unreachable = false;
    for _ in 0..10 {
        let read = promptly(client.watch_nodes(index, LONG_WAIT)).await;
        assert!(read.index > index);
        index = read.index;
        if read
            .value
            .iter()
            .any(|n| n.status == NodeStatus::Unreachable)
        {
            unreachable = true;
            break;
        }
    }
    assert!(unreachable, "node n1 became unreachable");
    // Its server's state is unknown now, in the same index.
    let server = client
        .watch_server("web1", 0, LONG_WAIT)
        .await
        .expect("read");
    assert_eq!(server.value.observed.state, ServerState::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_follows_a_real_agent_and_resumes() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    client
        .create_server(&demo_server("web1", "n1"))
        .await
        .expect("created");
    let mut stream = client
        .event_stream(None, Some("server/web1"))
        .await
        .expect("stream");
    client
        .server_intent("web1", Intent::Run)
        .await
        .expect("start");
    // The intent, then the agent's reports up to ready, live.
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e: &dure_api::Event| e.kind == "server.state" && e.message.contains("-> ready"))
    {
        match tokio::time::timeout(PROMPT, stream.next()).await {
            Ok(Ok(Some(dure_api::StreamMessage::Event(event)))) => seen.push(event),
            other => panic!("no ready event in {seen:#?}: {other:?}"),
        }
    }
    // The agent's first report of the new server may come in after the
    // stream opened; what the intent caused comes after the intent.
    let caused: Vec<&dure_api::Event> = seen
        .iter()
        .filter(|e| !e.message.contains(" new -> "))
        .collect();
    assert_eq!(caused[0].kind, "intent", "{seen:#?}");
    let resume_at = stream.last_id().expect("an id");
    drop(stream);

    // Missed while away: the stop and its states, each exactly once.
    client
        .server_intent("web1", Intent::Stop)
        .await
        .expect("stop");
    wait_server_state(&client, "web1", ServerState::Stopped).await;
    let missed = client
        .events(&dure_api::EventQuery {
            after: resume_at,
            subject: Some("server/web1".into()),
            ..Default::default()
        })
        .await
        .expect("events");
    assert!(!missed.is_empty());
    let mut stream = client
        .event_stream(Some(resume_at), Some("server/web1"))
        .await
        .expect("resumed");
    for expected in &missed {
        match tokio::time::timeout(PROMPT, stream.next()).await {
            Ok(Ok(Some(dure_api::StreamMessage::Event(event)))) => assert_eq!(&event, expected),
            other => panic!("expected {expected:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_prints_the_stream_live() {
    use std::io::BufRead;
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let mut child = std::process::Command::new(BIN)
        .args(["events", "-f", "--subject", "server/"])
        .envs(sandbox.cli_env())
        .env_remove("DURE_HOME")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dure events -f runs");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Each new event is printed as it comes; the stream is live, so the
    // follower is already connected when the second server is created.
    let mut seen = Vec::new();
    for name in ["web1", "web2"] {
        client
            .create_server(&demo_server(name, "n1"))
            .await
            .expect("created");
        let wanted = format!("server/{name}: created server `{name}`");
        while !seen.iter().any(|l: &String| l.contains(&wanted)) {
            match received.recv_timeout(PROMPT) {
                Ok(line) => seen.push(line),
                Err(e) => panic!("no `{wanted}` in {seen:#?}: {e}"),
            }
        }
    }
    assert!(
        seen.iter().all(|l| l.contains(" server/")),
        "only the subject asked for: {seen:#?}"
    );
    // Killed by its own pid; the sandbox ends anything else it started.
    child.kill().expect("kill");
    child.wait().expect("reaped");
}
