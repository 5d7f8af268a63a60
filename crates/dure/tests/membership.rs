//! Membership among agents on loopback: three agents see each other
//! RUNNING; a graceful stop is INACTIVE, kill -9 FAILED and a restart
//! RUNNING again on every peer, in `dure node list` (also `--from`) and as
//! events; datagrams not authenticated by the domain key are refused and
//! counted; a rotated domain key reaches every agent with no datagram
//! refused and no false failure. Across hosts (link cuts, the detection
//! bound) see
//! `membership_netns.rs`.

mod common;

use common::membership::{membership_address, peer_states, wait_peer_state};
use common::*;
use dure_api::{EventQuery, PeerState};
use std::collections::BTreeMap;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_reaches_every_agent_without_a_refused_datagram_or_a_false_failure() {
    let sandbox = sandbox(&["n1", "n2", "n3"]).await;
    let nodes = ["n1", "n2", "n3"];
    let start = Instant::now();
    for peer in nodes {
        let others: Vec<&str> = nodes.into_iter().filter(|o| *o != peer).collect();
        wait_peer_state(&sandbox, &others, peer, PeerState::Running, start, CHANGE).await;
    }
    let key_file = sandbox.controller_data().join("membership.key");
    let old = std::fs::read_to_string(&key_file).expect("the controller's key");
    let kept_key = |node: &str| -> serde_json::Value {
        let path = sandbox.agent_data(node).join("membership.json");
        let setup: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("kept setup")).expect("JSON");
        serde_json::json!({"key": setup["key"], "accept": setup.get("accept")})
    };
    for node in nodes {
        assert_eq!(
            kept_key(node)["key"],
            old.trim(),
            "{node} holds the domain key"
        );
    }

    let (code, out, err) = cli(&sandbox, &["domain", "rotate-key", "--grace", "2s"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("membership key rotated"), "{out}");
    let new = std::fs::read_to_string(&key_file).expect("the new key");
    assert_ne!(new.trim(), old.trim(), "a new key");
    // A second rotation during the rollout is refused, changing nothing.
    let (code, _, err) = cli(&sandbox, &["domain", "rotate-key"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("under way"), "{err}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), new);
    let (code, _, err) = cli(&sandbox, &["domain", "rotate-key", "--grace", "soon"]);
    assert_eq!(code, 2, "a bad grace is a usage error: {err}");

    // Through both steps and beyond: every peer RUNNING on every node, not
    // one datagram refused, and each agent holding the keys of each step
    // in turn (what it keeps is what it uses).
    let (old, new) = (old.trim().to_string(), new.trim().to_string());
    let keys = |key: &str, accept: Option<&str>| serde_json::json!({"key": key, "accept": accept.map(|a| vec![a])});
    let before = keys(&old, None);
    let steps = [
        keys(&old, Some(&new)),
        keys(&new, Some(&old)),
        keys(&new, None),
    ];
    let mut held: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    let watch = Duration::from_secs(6);
    let rotated = Instant::now();
    while rotated.elapsed() < watch {
        for node in nodes {
            let status = sandbox.agent_status(node).await.expect("agent status");
            assert_eq!(
                status.membership_refused,
                0,
                "{node} refused datagrams {:?} into the rotation",
                rotated.elapsed()
            );
            assert!(
                status.peers.len() == 2
                    && status.peers.iter().all(|p| p.state == PeerState::Running),
                "{node} sees {:?} {:?} into the rotation",
                status.peers,
                rotated.elapsed()
            );
            let seen = held.entry(node).or_default();
            let now = kept_key(node);
            if seen.last() != Some(&now) {
                seen.push(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (node, seen) in &held {
        let seen: Vec<_> = seen.iter().skip_while(|k| **k == before).collect();
        assert_eq!(
            seen,
            steps.iter().collect::<Vec<_>>(),
            "{node} went through each step"
        );
    }
    let events = sandbox
        .client()
        .events(&EventQuery {
            subject: Some("domain".into()),
            ..EventQuery::default()
        })
        .await
        .expect("events");
    let said: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "domain.key")
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(said.len(), 3, "{said:#?}");
    assert!(
        said.iter().all(|s| !s.contains(&new) && !s.contains(&old)),
        "no key in events"
    );
    let failures = sandbox
        .client()
        .events(&EventQuery {
            limit: Some(1000),
            ..EventQuery::default()
        })
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == "node.membership" && e.message.contains("FAILED"))
        .count();
    assert_eq!(failures, 0, "no false FAILED during the rotation");
}
