//! Blocking queries on a real listener: a read blocked on an index returns
//! when an agent's report changes a server's state or the configuration
//! changes, runs out with the same index otherwise, and bad `index` or
//! `wait` values are refused. Agents are played by the client.

use crate::testing::{node, server, start_controller};
use crate::Controller;
use dure_api::{AgentHello, AgentMode, AgentReport, Client, ClientError, ErrorBody, Watched};
use dure_core::{ClusterSpec, ObservedServer, ServerState};
use std::future::Future;
use std::time::Duration;

/// Long enough that a read returning within [`PROMPT`] cannot have run out.
pub(super) const LONG_WAIT: Duration = Duration::from_secs(60);
/// The bound for a read that must return because something changed.
const PROMPT: Duration = Duration::from_secs(30);

pub(super) fn client(controller: &Controller) -> Client {
    Client::new(&controller.addr().to_string(), controller.token())
}

pub(super) fn hello() -> AgentHello {
    AgentHello {
        node: "n1".into(),
        address: "127.0.0.1".into(),
        agent_port: 7001,
        version: "9.9.9".into(),
        instance_id: None,
        membership_port: None,
    }
}

pub(super) fn report(servers: Vec<ObservedServer>) -> AgentReport {
    AgentReport {
        servers,
        mode: Some(AgentMode::Managed),
        independent_since_ms: None,
        drift: Vec::new(),
        address: Some("127.0.0.1".into()),
        agent_port: Some(7001),
        version: Some("9.9.9".into()),
        instance_id: None,
        membership_port: None,
        peers: None,
        apps: Vec::new(),
    }
}

pub(super) fn observed(name: &str, state: ServerState) -> ObservedServer {
    ObservedServer {
        state,
        ..ObservedServer::stopped(name, 1)
    }
}

/// Starts a blocked read, checks it is still blocked after a moment, runs
/// `change` and returns what the read answered: it must return before
/// [`PROMPT`], far before its wait runs out.
pub(super) async fn blocked_until<T, R, C>(read: R, change: C) -> Watched<T>
where
    T: Send + 'static,
    R: Future<Output = Result<Watched<T>, ClientError>> + Send + 'static,
    C: Future<Output = ()>,
{
    let read = tokio::spawn(read);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!read.is_finished(), "the read blocks until a change");
    change.await;
    tokio::time::timeout(PROMPT, read)
        .await
        .expect("the read returned before its wait ran out")
        .expect("joined")
        .expect("read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_reads_wake_on_reported_state_and_on_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = start_controller(dir.path()).await;
    let api = client(&controller);
    api.register(&hello()).await.expect("registered");
    api.create_server(&server("web1", "n1", 9001))
        .await
        .expect("created");
    api.report("n1", &report(vec![observed("web1", ServerState::Stopped)]))
        .await
        .expect("report");

    // A report that changes a server's state wakes a read of that server.
    let first = api.watch_server("web1", 0, LONG_WAIT).await.expect("read");
    assert!(first.index > 0);
    let read = {
        let api = api.clone();
        async move { api.watch_server("web1", first.index, LONG_WAIT).await }
    };
    let woken = blocked_until(read, async {
        api.report("n1", &report(vec![observed("web1", ServerState::Running)]))
            .await
            .expect("report");
    })
    .await;
    assert!(woken.index > first.index);
    assert_eq!(woken.value.observed.state, ServerState::Running);

    // The same for a cluster's members.
    api.create_cluster(&ClusterSpec::new("shop", vec!["web1".into()]))
        .await
        .expect("cluster");
    let clusters = api.watch_clusters(0, LONG_WAIT).await.expect("read");
    let read = {
        let api = api.clone();
        async move { api.watch_cluster("shop", clusters.index, LONG_WAIT).await }
    };
    let woken = blocked_until(read, async {
        api.report("n1", &report(vec![observed("web1", ServerState::Ready)]))
            .await
            .expect("report");
    })
    .await;
    assert_eq!(woken.value.members[0].observed.state, ServerState::Ready);

    // A saved configuration wakes a read of the nodes.
    let nodes = api.watch_nodes(0, LONG_WAIT).await.expect("read");
    let read = {
        let api = api.clone();
        async move { api.watch_nodes(nodes.index, LONG_WAIT).await }
    };
    let woken = blocked_until(read, async {
        api.put_node(&node("n2")).await.expect("node saved");
    })
    .await;
    assert!(woken.index > nodes.index);
    assert!(woken.value.iter().any(|n| n.spec.name == "n2"));

    // A report that changes nothing (a heartbeat) does not move the index,
    // and a read whose wait runs out answers the same index.
    let servers = api.watch_servers(0, LONG_WAIT).await.expect("read");
    api.report("n1", &report(vec![observed("web1", ServerState::Ready)]))
        .await
        .expect("heartbeat");
    let same = api
        .watch_servers(servers.index, Duration::from_millis(300))
        .await
        .expect("read");
    assert_eq!(same.index, servers.index);
    // An operation's progress moves the operations' index, not the servers'.
    let ops = api
        .watch_operations(&Default::default(), 0, LONG_WAIT)
        .await
        .expect("read");
    let op = api
        .cluster_operation("shop", dure_api::OperationKind::Stop, &Default::default())
        .await
        .expect("stop accepted");
    let progressed = api
        .watch_operation(&op.id, ops.index, LONG_WAIT)
        .await
        .expect("read");
    assert!(progressed.index > ops.index);
    controller.shutdown().await.expect("shutdown");
}

/// Sends a raw read; returns the status, the `X-Dure-Index` and the error body.
pub(super) async fn raw(
    controller: &Controller,
    path: &str,
) -> (u16, Option<String>, Option<ErrorBody>) {
    let response = reqwest::Client::new()
        .get(format!("http://{}{path}", controller.addr()))
        .bearer_auth(controller.token())
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    let index = response
        .headers()
        .get(dure_api::INDEX_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = response.bytes().await.expect("body");
    (status, index, serde_json::from_slice(&bytes).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_carries_the_index_and_bad_values_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = start_controller(dir.path()).await;
    for path in [
        "/v1/nodes",
        "/v1/servers",
        "/v1/clusters",
        "/v1/operations",
        "/v1/events",
        "/v1/lbs",
    ] {
        let (status, index, _) = raw(&controller, path).await;
        assert_eq!(status, 200, "{path}");
        let index = index.unwrap_or_else(|| panic!("{path} has no index"));
        assert!(index.parse::<u64>().is_ok_and(|i| i > 0), "{path}: {index}");
    }
    for (query, needle) in [
        ("index=abc", "`index` `abc` is invalid"),
        ("index=-3&wait=1s", "`index` `-3` is invalid"),
        ("index=1&wait=soon", "`wait` is invalid"),
        ("index=1&wait=", "`wait` is invalid"),
        ("wait=5s", "`wait` needs `index`"),
    ] {
        for path in ["/v1/servers", "/v1/events", "/v1/operations/op-1"] {
            let (status, _, body) = raw(&controller, &format!("{path}?{query}")).await;
            let error = body.expect("a JSON error").error;
            assert_eq!(
                (status, error.code.as_str()),
                (400, "invalid"),
                "{path}?{query}"
            );
            assert!(
                error.message.contains(needle),
                "{path}?{query}: {}",
                error.message
            );
        }
    }
    // An index from before a restart (above the current one) is answered
    // at once with the current, lower index.
    let (_, index, _) = raw(&controller, "/v1/servers").await;
    let current: u64 = index.expect("index").parse().expect("number");
    let ahead = current + 1000;
    let answer = tokio::time::timeout(
        PROMPT,
        raw(&controller, &format!("/v1/servers?index={ahead}&wait=60s")),
    )
    .await
    .expect("answered at once");
    assert_eq!(answer.0, 200);
    assert_eq!(answer.1, Some(current.to_string()));
    controller.shutdown().await.expect("shutdown");
}
