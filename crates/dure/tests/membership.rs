//! Membership among agents on loopback: three agents see each other
//! RUNNING; a graceful stop is INACTIVE, kill -9 FAILED and a restart
//! RUNNING again on every peer, in `dure node list` (also `--from`) and as
//! events; datagrams not authenticated by the domain key are refused and
//! counted. Across hosts (link cuts, the detection bound) see
//! `membership_netns.rs`.

mod common;

use common::membership::{membership_address, peer_states, wait_peer_state};
use common::*;
use dure_api::{EventQuery, PeerState};
use std::time::{Duration, Instant};

/// Generous: loopback with the default settings takes about 2 s at most.
const CHANGE: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_run_a_stop_is_inactive_a_kill_is_failed_and_a_restart_runs_again() {
    let mut sandbox = sandbox(&["n1", "n2", "n3"]).await;
    let client = sandbox.client();
    let start = Instant::now();
    for peer in ["n1", "n2", "n3"] {
        let others: Vec<&str> = ["n1", "n2", "n3"]
            .into_iter()
            .filter(|o| *o != peer)
            .collect();
        wait_peer_state(&sandbox, &others, peer, PeerState::Running, start, CHANGE).await;
    }
    // The controller shows each node's state and each node's own view.
    eventually("every node RUNNING in the node list", CHANGE, || async {
        let nodes = client.list_nodes().await.ok()?;
        nodes
            .iter()
            .all(|n| n.membership == Some(PeerState::Running))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, out, err) = cli(&sandbox, &["node", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().next().unwrap_or("").contains("MEMBERSHIP"),
        "{out}"
    );
    assert_eq!(out.matches("RUNNING").count(), 3, "{out}");
    let (code, out, err) = cli(&sandbox, &["node", "list", "--from", "n1"]);
    assert_eq!(code, 0, "{err}");
    let n2 = membership_address(&sandbox, "n2").await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("n2") && l.contains("RUNNING") && l.contains(&n2)),
        "{out}"
    );
    assert!(
        !out.lines().any(|l| l.starts_with("n1 ")),
        "n1 is not its own peer: {out}"
    );
    let (code, _, err) = cli(&sandbox, &["node", "list", "--from", "nope"]);
    assert_ne!(code, 0, "an unknown node is refused");
    assert!(err.contains("nope"), "{err}");

    // A graceful stop: INACTIVE, not FAILED.
    let stopped = Instant::now();
    sandbox.stop_agent("n3").await.expect("n3 stops");
    wait_peer_state(
        &sandbox,
        &["n1", "n2"],
        "n3",
        PeerState::Inactive,
        stopped,
        CHANGE,
    )
    .await;

    // kill -9: FAILED.
    let killed = Instant::now();
    sandbox.kill_agent("n2").await.expect("n2 killed");
    let took = wait_peer_state(&sandbox, &["n1"], "n2", PeerState::Failed, killed, CHANGE).await;
    eprintln!("n2 FAILED on n1 {took:?} after kill -9");
    assert_eq!(
        peer_states(&sandbox, "n1")
            .await
            .and_then(|v| v.get("n3").copied()),
        Some(PeerState::Inactive),
        "a failure elsewhere leaves a stopped peer INACTIVE"
    );

    // Both come back: RUNNING again.
    let back = Instant::now();
    sandbox.add_agent("n2").await.expect("n2 restarts");
    sandbox.add_agent("n3").await.expect("n3 restarts");
    wait_peer_state(
        &sandbox,
        &["n1", "n3"],
        "n2",
        PeerState::Running,
        back,
        CHANGE,
    )
    .await;
    wait_peer_state(
        &sandbox,
        &["n1", "n2"],
        "n3",
        PeerState::Running,
        back,
        CHANGE,
    )
    .await;

    // Each change is one controller event.
    let events = eventually("membership events of n2 and n3", CHANGE, || async {
        let events: Vec<_> = client
            .events(&EventQuery {
                limit: Some(1000),
                ..EventQuery::default()
            })
            .await
            .ok()?
            .into_iter()
            .filter(|e| e.kind == "node.membership")
            .collect();
        let said = |node: &str, word: &str| {
            events
                .iter()
                .any(|e| e.subject == format!("node/{node}") && e.message.contains(word))
        };
        (said("n3", "left: RUNNING -> INACTIVE")
            && said("n2", "failed: RUNNING -> FAILED")
            && said("n2", "recovered: FAILED -> RUNNING")
            && said("n3", "joined: INACTIVE -> RUNNING"))
        .then_some(events)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let failures = events
        .iter()
        .filter(|e| e.subject == "node/n2" && e.message.contains("failed:"))
        .count();
    assert_eq!(
        failures, 1,
        "one event per change, not one per observer: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_without_the_domain_key_are_refused_and_counted() {
    let sandbox = sandbox(&["n1", "n2"]).await;
    let start = Instant::now();
    wait_peer_state(&sandbox, &["n1"], "n2", PeerState::Running, start, CHANGE).await;
    let target = membership_address(&sandbox, "n1").await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    // Garbage, a well-formed frame under another key, and a truncated one.
    let forged = {
        let mut frame = b"DMB1\x02".to_vec();
        frame.extend_from_slice(b"n2 leaves");
        frame.extend_from_slice(&[0u8; 16]);
        frame
    };
    for datagram in [&b"hello"[..], &forged[..], &forged[..10]] {
        socket.send_to(datagram, &target).expect("sent");
    }
    eventually("three refused datagrams counted", CHANGE, || async {
        let status = sandbox.agent_status("n1").await.ok()?;
        (status.membership_refused >= 3).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Nothing of them reached the detector: n2 is still RUNNING.
    assert_eq!(
        peer_states(&sandbox, "n1")
            .await
            .and_then(|v| v.get("n2").copied()),
        Some(PeerState::Running)
    );
    let key = std::fs::metadata(sandbox.agent_data("n1").join("membership.json"))
        .expect("the agent keeps its membership setup");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600, "it holds the key");
}
