//! Across hosts: a controller in the test's network namespace and two
//! agents, each in a network namespace of its own joined to it by a veth
//! link. Cutting one link makes that node unreachable for the controller
//! (its member `unknown`, the cluster yellow) and INDEPENDENT for its agent,
//! which keeps its server running and restarts it by policy; healing the
//! link brings the node back under management with the drift reported.
//! Needs root for the namespaces; elsewhere it says why and skips.

mod common;

use common::*;
use dure_api::{
    AgentMode, AgentStatus, Client, Event, EventQuery, LogQuery, NodeStatus, NodeView,
    OperationKind, OperationStatus,
};
use dure_core::operation::OperationOptions;
use dure_core::{ClusterStatus, ObservedServer, ServerSpec, ServerState};
use dure_testkit::netns::{self, Namespace, NetError, TestNet};
use dure_testkit::{kill_group, SandboxOptions};
use std::future::Future;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How long a link change may take to show: three 1 s heartbeats to be
/// lost; the agent's retry backoff and TCP retransmission to be back.
const LINK_CHANGE: Duration = Duration::from_secs(30);

/// A demo app on `node` listening on every address of its namespace: the
/// agent probes it on the namespace's loopback, the test on its link.
fn ns_demo_server(name: &str, node: &str) -> ServerSpec {
    demo_server_with(name, node, &["--bind", "0.0.0.0"])
}

/// Polls `probe` for up to [`LINK_CHANGE`]; panics saying what was awaited.
async fn until<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually(what, LINK_CHANGE, probe)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The agent's own status, asked from inside its namespace: this works
/// while the namespace's link is cut.
async fn status_inside(sandbox: &Sandbox, node: &str, ns: &Namespace) -> Option<AgentStatus> {
    let agent = sandbox.agent_client(node).ok()?;
    ns.run(move || async move { agent.agent_status().await })
        .await
        .ok()?
        .ok()
}

fn server<'a>(status: &'a AgentStatus, name: &str) -> Option<&'a ObservedServer> {
    status.servers.iter().find(|s| s.name == name)
}

async fn node(client: &Client, name: &str) -> Option<NodeView> {
    let nodes = client.list_nodes().await.ok()?;
    nodes.into_iter().find(|n| n.spec.name == name)
}

/// Events about node `name`, oldest first.
async fn node_events(client: &Client, name: &str) -> Vec<Event> {
    client
        .events(&EventQuery {
            subject: Some(format!("node/{name}")),
            ..EventQuery::default()
        })
        .await
        .unwrap_or_default()
}

/// Waits until node `name` has an event of `kind` containing `text`.
async fn wait_event(client: &Client, name: &str, kind: &str, text: &str) -> Event {
    until(
        &format!("a `{kind}` event of `{name}` saying `{text}`"),
        || async {
            node_events(client, name)
                .await
                .into_iter()
                .find(|e| e.kind == kind && e.message.contains(text))
        },
    )
    .await
}

/// `GET /` of a demo app on `addr`, from the test's namespace.
async fn demo_answer(addr: Ipv4Addr, port: u16) -> Option<String> {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}:{port}/"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    response.text().await.ok()
}

async fn server_log(client: &Client, name: &str) -> Result<String, String> {
    client
        .server_logs(name, &LogQuery::default())
        .await
        .map(|chunk| chunk.data)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_makes_the_node_independent_and_healing_it_reports_the_drift() {
    // Declared before the sandbox, so it is dropped after every process
    // running in its namespaces has been killed.
    let net = match TestNet::new(2) {
        Ok(net) => net,
        Err(NetError::Unavailable(reason)) => {
            eprintln!("skipping: {reason}");
            return;
        }
        Err(error) => panic!("{error}"),
    };
    let (ns1, ns2) = (&net.namespaces()[0], &net.namespaces()[1]);
    let options = SandboxOptions {
        listen: net.hub_addr().into(),
        ..SandboxOptions::default()
    };
    let mut sandbox = Sandbox::start_with(BIN, options)
        .await
        .expect("controller starts on the hub address");
    assert!(
        sandbox
            .url()
            .starts_with(&format!("https://{}:", net.hub_addr())),
        "{}",
        sandbox.url()
    );
    for (name, ns) in [("n1", ns1), ("n2", ns2)] {
        sandbox
            .add_agent_in(name, ns)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let client = sandbox.client();
    for (name, ns) in [("n1", ns1), ("n2", ns2)] {
        let view = node(&client, name).await.expect("node listed");
        // The registration created the node with the address its agent
        // gives; where the agent's endpoint listens is observed state,
        // never saved: exactly the address it bound in its namespace.
        assert_eq!(view.spec.address, ns.addr().to_string(), "{view:?}");
        assert_eq!(view.spec.agent_port, None, "{view:?}");
        let bound = std::fs::read_to_string(sandbox.agent_data(name).join("agent.addr"))
            .expect("agent.addr");
        assert!(
            bound.trim().starts_with(&format!("{}:", ns.addr())),
            "{bound}"
        );
        assert_eq!(
            view.agent_address.as_deref(),
            Some(bound.trim()),
            "{view:?}"
        );
    }

    // 1. A cluster across both nodes, started as one unit: green.
    let web1 = ns_demo_server("web1", "n1");
    let web2 = ns_demo_server("web2", "n2");
    client.create_server(&web1).await.expect("web1 created");
    client.create_server(&web2).await.expect("web2 created");
    create_cluster(&client, "web", &["web1", "web2"]).await;
    let op = client
        .cluster_operation("web", OperationKind::Start, &OperationOptions::default())
        .await
        .expect("start accepted");
    let op = wait_operation(&client, &op.id).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
    wait_cluster_status(&client, "web", ClusterStatus::Green).await;
    for (spec, ns) in [(&web1, ns1), (&web2, ns2)] {
        let port = spec.ports["http"];
        assert_eq!(
            demo_answer(ns.addr(), port).await.as_deref(),
            Some(format!("{}\n", spec.name).as_str()),
            "`{}` answers on its namespace's address",
            spec.name
        );
        // The controller reads the log from the agent at its advertised
        // address, the only one it listens on.
        let log = server_log(&client, &spec.name).await.expect("log read");
        assert!(
            log.contains(&format!("{} listening on http://0.0.0.0:{port}", spec.name)),
            "{log}"
        );
    }
    let first = wait_server_state(&client, "web1", ServerState::Ready).await;
    let pid = first.observed.pid.expect("web1 has a pid");

    // 2. Cut n1's link.
    let cut = Instant::now();
    net.cut(ns1).expect("link cut");
    until("node `n1` unreachable", || async {
        node(&client, "n1")
            .await
            .filter(|n| n.status == NodeStatus::Unreachable)
    })
    .await;
    let unreachable_after = cut.elapsed();
    let yellow = wait_cluster_status(&client, "web", ClusterStatus::Yellow).await;
    let member = |name: &str| {
        yellow
            .members
            .iter()
            .find(|m| m.server == name)
            .map(|m| m.observed.state)
    };
    assert_eq!(member("web1"), Some(ServerState::Unknown), "{yellow:?}");
    assert_eq!(member("web2"), Some(ServerState::Ready), "{yellow:?}");
    wait_event(&client, "n1", "node.state", "node `n1` is unreachable").await;
    let away = until("n1's agent INDEPENDENT", || async {
        status_inside(&sandbox, "n1", ns1)
            .await
            .filter(|s| s.mode == AgentMode::Independent)
    })
    .await;
    let independent_after = cut.elapsed();
    assert!(!away.controller_reachable, "{away:?}");
    assert!(away.independent_since_ms.is_some(), "{away:?}");
    assert_eq!(server(&away, "web1").and_then(|s| s.pid), Some(pid));
    assert!(alive(pid), "web1 keeps running");
    let port1 = web1.ports["http"];
    let inside = ns1
        .run(move || async move { http_get(port1, "/").await })
        .await
        .expect("ran inside n1");
    assert_eq!(inside.map(|r| r.0), Some(200), "web1 keeps serving");
    assert_eq!(
        node(&client, "n2").await.map(|n| n.status),
        Some(NodeStatus::Online)
    );
    let refused = server_log(&client, "web1").await.expect_err("n1 is away");
    assert!(refused.contains("node `n1` is unreachable"), "{refused}");

    // 3. A crash while cut off: the agent restarts the server by policy.
    kill_group(i32::try_from(pid).expect("pid fits"));
    let crashed = Instant::now();
    let restarted = until("web1 restarted by policy inside n1", || async {
        status_inside(&sandbox, "n1", ns1).await.filter(|s| {
            server(s, "web1").is_some_and(|w| {
                w.restarts == 1 && w.state == ServerState::Ready && w.pid != Some(pid)
            })
        })
    })
    .await;
    let restarted_after = crashed.elapsed();
    assert_eq!(restarted.mode, AgentMode::Independent);
    let new_pid = server(&restarted, "web1")
        .and_then(|s| s.pid)
        .expect("new pid");
    assert!(alive(new_pid), "the restarted web1 runs");
    until("the killed web1 gone", || async {
        (!alive(pid)).then_some(())
    })
    .await;

    // 4. Heal the link: managed again, the drift reported, green.
    let healed = Instant::now();
    net.heal(ns1).expect("link healed");
    until("node `n1` online and managed", || async {
        node(&client, "n1")
            .await
            .filter(|n| n.status == NodeStatus::Online && n.mode == AgentMode::Managed)
    })
    .await;
    let managed_after = healed.elapsed();
    wait_event(&client, "n1", "node.state", "is in INDEPENDENT mode since").await;
    wait_event(
        &client,
        "n1",
        "node.drift",
        "server `web1` exited and was restarted 1 time by its restart policy",
    )
    .await;
    wait_event(&client, "n1", "node.state", "is back under management").await;
    let green = wait_cluster_status(&client, "web", ClusterStatus::Green).await;
    let green_after = healed.elapsed();
    let web1_now = green.members.iter().find(|m| m.server == "web1");
    assert_eq!(web1_now.and_then(|m| m.observed.pid), Some(new_pid));
    let back = status_inside(&sandbox, "n1", ns1).await.expect("status");
    assert_eq!(back.mode, AgentMode::Managed, "{back:?}");
    assert!(back.controller_reachable, "{back:?}");
    let log = until("web1's log through the healed link", || async {
        server_log(&client, "web1").await.ok()
    })
    .await;
    assert!(log.contains(&format!("(pid {new_pid})")), "{log}");
    assert!(
        !node_events(&client, "n2")
            .await
            .iter()
            .any(|e| e.message.contains("INDEPENDENT") || e.message.contains("unreachable")),
        "n2 was never cut off: {:#?}",
        node_events(&client, "n2").await
    );
    eprintln!(
        "partition timings: n1 unreachable {unreachable_after:?} and INDEPENDENT \
         {independent_after:?} after the cut; web1 restarted {restarted_after:?} after \
         the kill; n1 managed {managed_after:?} and the cluster green {green_after:?} \
         after the heal"
    );

    // 5. Dropping the sandbox and the net leaves nothing behind.
    let probe = sandbox.mark_probe();
    let started = probe.processes();
    // The controller, two agents and two servers at least.
    assert!(started.len() >= 5, "{started:?}");
    assert!(started.contains(&new_pid), "{started:?}");
    let id = net.id().to_string();
    drop(sandbox);
    drop(net);
    assert_eq!(probe.processes(), Vec::<u32>::new(), "no process is left");
    assert_eq!(
        netns::leftovers(&id).expect("ip lists"),
        Vec::<String>::new(),
        "no namespace or link is left"
    );
}
