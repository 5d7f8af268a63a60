//! A replaced host: when a node's agent has been silent for the unreachable
//! timeout, an agent of another instance (another data directory) takes the
//! node over, with a `node.state` event saying so; the silent agent, back
//! again, is then the stranger and exits 1. Real controller and agents.

mod common;

use common::*;
use dure_api::{EventQuery, NodeStatus};
use dure_testkit::ChildProcess;
use std::path::Path;
use std::time::Duration;

/// How long a refused agent may take to give up.
const GIVE_UP: Duration = Duration::from_secs(20);

/// Spawns `dure agent` for node `n1` on `data`, logging to `log`.
fn spawn_agent(sandbox: &Sandbox, data: &Path, log: &Path) -> ChildProcess {
    let data_arg = data.to_string_lossy();
    let url = sandbox.url();
    let ca = sandbox.ca_file();
    let ca = ca.to_string_lossy();
    let args = [
        "agent",
        "--controller",
        &url,
        "--ca",
        &ca,
        "--node",
        "n1",
        "--data",
        &data_arg,
    ];
    ChildProcess::spawn(
        sandbox.bin(),
        &args,
        &[("DURE_TOKEN", sandbox.token()), sandbox.mark_env()],
        log,
    )
    .expect("agent spawns")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_agent_is_replaced_by_a_new_one_and_then_refused() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    sandbox.kill_agent("n1").await.expect("kill -9 the agent");
    sandbox
        .wait_node_status("n1", NodeStatus::Unreachable, SETTLE)
        .await
        .expect("n1 unreachable");

    // The new host's agent: another data directory, another instance.
    let data = sandbox.dir().join("replacement");
    let _replacement = spawn_agent(&sandbox, &data, &sandbox.dir().join("replacement.log"));
    let address = eventually("the replacement writes its address", SETTLE, || async {
        let text = std::fs::read_to_string(data.join("agent.addr")).ok()?;
        Some(text.trim().to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eventually("the replacement owns n1", SETTLE, || async {
        let nodes = client.list_nodes().await.ok()?;
        nodes
            .iter()
            .any(|n| {
                n.spec.name == "n1"
                    && n.status == NodeStatus::Online
                    && n.agent_address.as_deref() == Some(address.as_str())
            })
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // The view shows the new owner a moment before the event log holds
    // the take-over: wait for the event, then check there is one.
    let node_events = || async {
        client
            .events(&EventQuery {
                subject: Some("node/n1".into()),
                ..EventQuery::default()
            })
            .await
            .expect("events")
    };
    let is_take_over = |e: &&dure_api::Event| {
        e.kind == "node.state" && e.message.contains("was taken over by a new agent")
    };
    eventually("the take-over event", SETTLE, || async {
        node_events()
            .await
            .iter()
            .any(|e| is_take_over(&e))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let events = node_events().await;
    let took_over: Vec<_> = events.iter().filter(is_take_over).collect();
    assert_eq!(took_over.len(), 1, "{events:#?}");
    assert!(
        took_over[0].message.contains(&format!("at {address}")),
        "{}",
        took_over[0].message
    );

    // The old agent comes back on its own data directory: the node has a
    // live agent of another instance now, so it is refused and exits 1.
    let log = sandbox.dir().join("old-agent.log");
    let mut old = spawn_agent(&sandbox, &sandbox.agent_data("n1"), &log);
    let status = old.wait_exit(GIVE_UP).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|e| panic!("{e}; log:\n{text}"));
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("live agent at {address}")), "{text}");
    let nodes = client.list_nodes().await.expect("nodes");
    let n1 = nodes.iter().find(|n| n.spec.name == "n1").expect("n1");
    assert_eq!(n1.agent_address.as_deref(), Some(address.as_str()));
    drop(sandbox);
}
