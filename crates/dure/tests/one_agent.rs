//! One agent per node: a second `dure agent` for a node whose agent is
//! live (another data directory, so the data-directory lock does not stop
//! it) is refused by the controller and exits 1, naming the live agent's
//! address; the first keeps its node, its address and its servers. The
//! first agent restarted on its own data directory is the same instance
//! and gets its node back at once.

mod common;

use common::*;
use dure_api::NodeStatus;
use dure_core::{Intent, ServerState};
use dure_testkit::ChildProcess;
use std::time::Duration;

/// How long a refused agent may take to give up.
const GIVE_UP: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_for_a_live_node_exits_1_naming_the_live_agent() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let first_addr = std::fs::read_to_string(sandbox.agent_data("n1").join("agent.addr"))
        .expect("the first agent's address")
        .trim()
        .to_string();
    let node_agent = |nodes: Vec<dure_api::NodeView>| {
        nodes
            .into_iter()
            .find(|n| n.spec.name == "n1")
            .and_then(|n| n.agent_address)
    };
    let before = node_agent(client.list_nodes().await.expect("nodes"));
    assert_eq!(before.as_deref(), Some(first_addr.as_str()));

    let data = sandbox.dir().join("second-agent");
    let data_arg = data.to_string_lossy();
    let url = sandbox.url();
    let ca = sandbox.ca_file();
    let ca = ca.to_string_lossy();
    let log = sandbox.dir().join("second-agent.log");
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
    let mut second = ChildProcess::spawn(
        sandbox.bin(),
        &args,
        &[("DURE_TOKEN", sandbox.token()), sandbox.mark_env()],
        &log,
    )
    .expect("second agent spawns");
    let status = second.wait_exit(GIVE_UP).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|e| panic!("{e}; log:\n{text}"));
    assert_eq!(status.code(), Some(1), "{text}");
    let error_line = text
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{text}"));
    for part in [
        format!("live agent at {first_addr}"),
        "since".to_string(),
        "node `n1`".to_string(),
    ] {
        assert!(error_line.contains(&part), "`{part}` missing: {error_line}");
    }
    assert!(!text.contains("INDEPENDENT"), "{text}");

    // The first agent keeps the node: same address, and it still runs
    // what it is told.
    sandbox
        .wait_node_status("n1", NodeStatus::Online, SETTLE)
        .await
        .expect("n1 online");
    let after = node_agent(client.list_nodes().await.expect("nodes"));
    assert_eq!(after, before, "the node's agent address did not change");
    client
        .create_server(&demo_server("web1", "n1"))
        .await
        .expect("created");
    client
        .server_intent("web1", Intent::Run)
        .await
        .expect("start");
    wait_server_state(&client, "web1", ServerState::Ready).await;
    let after = node_agent(client.list_nodes().await.expect("nodes"));
    assert_eq!(after, before, "the node's agent address did not change");

    // A restart on the same data directory is the same instance: accepted
    // at once, not after the old one's reports went stale.
    let instance = std::fs::read_to_string(sandbox.agent_data("n1").join("agent.instance"))
        .expect("the instance id is kept in the data directory");
    sandbox.stop_agent("n1").await.expect("agent stops");
    sandbox.add_agent("n1").await.expect("agent comes back");
    client
        .server_intent("web1", Intent::Stop)
        .await
        .expect("stop");
    wait_server_state(&client, "web1", ServerState::Stopped).await;
    let text = sandbox.log("agent-n1");
    assert!(!text.contains("refused this agent"), "{text}");
    assert_eq!(
        std::fs::read_to_string(sandbox.agent_data("n1").join("agent.instance")).unwrap(),
        instance
    );
}
