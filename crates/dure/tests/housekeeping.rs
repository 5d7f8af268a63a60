//! Housekeeping end to end: a controller started with a small
//! `--event-retention` and a short `DURE_HOUSEKEEPING_INTERVAL` trims its
//! event log to the newest events, and the configuration history stays
//! whole: `dure config history` and `dure config show --rev` still work.
//! With a small `--operation-retention` it keeps only the newest operation
//! records.

mod common;

use common::*;
use dure_api::{
    AgentHello, AgentReport, EventQuery, OperationKind, OperationQuery, OperationStatus,
};
use dure_core::operation::OperationOptions;
use dure_core::{ClusterSpec, NodeSpec, ObservedServer};
use dure_testkit::ChildProcess;
use std::path::Path;
use std::time::Duration;

const RETENTION: usize = 20;
const OPERATION_RETENTION: usize = 3;

fn node(name: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        address: "127.0.0.1".into(),
        agent_port: None,
        backup_of: None,
        shared_dirs: Vec::new(),
    }
}

async fn start_controller(dir: &Path) -> (ChildProcess, String, String) {
    let data = dir.join("data");
    let data_arg = data.to_str().expect("utf-8");
    let retention = RETENTION.to_string();
    let operation_retention = OPERATION_RETENTION.to_string();
    let args = [
        "--data",
        data_arg,
        "--listen",
        "127.0.0.1:0",
        "--auto-save",
        "--event-retention",
        &retention,
        "--operation-retention",
        &operation_retention,
    ];
    let env = [("DURE_HOUSEKEEPING_INTERVAL", "200ms")];
    let (child, addr) = start_controller_process(dir, &data, &args, &env).await;
    let token = std::fs::read_to_string(data.join("admin.token")).expect("token");
    (child, format!("https://{addr}"), token.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_events_are_trimmed_and_configuration_history_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, url, token) = start_controller(dir.path()).await;
    let client = client_at(&url, &token);

    client.put_node(&node("n1")).await.expect("n1 saved");
    let old = client
        .config_documents(None)
        .await
        .expect("documents")
        .version;
    for i in 2..=(RETENTION + 10) {
        client
            .put_node(&node(&format!("n{i}")))
            .await
            .expect("node saved");
    }
    let newest = client
        .events(&EventQuery {
            last: Some(1),
            ..EventQuery::default()
        })
        .await
        .expect("events")[0]
        .seq;
    assert!(newest > RETENTION as u64, "more events than kept: {newest}");

    let kept = eventually("the event log is trimmed", SETTLE, || async {
        let all = client.events(&EventQuery::default()).await.ok()?;
        (all.len() <= RETENTION).then_some(all)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let seqs: Vec<u64> = kept.iter().map(|e| e.seq).collect();
    let last = seqs.last().copied().unwrap_or(0);
    assert!(last >= newest, "the newest events stay: {seqs:?}");
    assert_eq!(
        seqs,
        (last + 1 - RETENTION as u64..=last).collect::<Vec<u64>>(),
        "exactly the newest {RETENTION} are kept"
    );

    let (code, out, err) = cli_at(&url, &token, &["events", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let shown: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    assert!(shown.len() <= RETENTION, "{}", shown.len());

    let (code, out, err) = cli_at(
        &url,
        &token,
        &["config", "history", "-n", "1000", "-o", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let history: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(
        history.len(),
        RETENTION + 10,
        "every save is in the history"
    );
    let rev = old.to_string();
    let (code, out, err) = cli_at(&url, &token, &["config", "show", "--rev", &rev]);
    assert_eq!(code, 0, "an old version is still readable: {err}");
    assert!(out.contains("n1") && !out.contains("n2"), "{out}");

    child
        .terminate(Duration::from_secs(10))
        .await
        .expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_operations_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, url, token) = start_controller(dir.path()).await;
    let client = client_at(&url, &token);
    client.put_node(&node("n1")).await.expect("n1 saved");
    let server = command_server(
        "web1",
        "n1",
        free_port(),
        vec!["/bin/sleep".into(), "60".into()],
    );
    client.create_server(&server).await.expect("web1 saved");
    let cluster = ClusterSpec::new("shop", vec!["web1".into()]);
    client.create_cluster(&cluster).await.expect("shop saved");
    // The node's agent, played by the test, says web1 is stopped: every
    // stop of the cluster is done at once.
    client
        .register(&AgentHello {
            node: "n1".into(),
            address: "127.0.0.1".into(),
            agent_port: free_port(),
            version: "test".into(),
            instance_id: None,
            membership_port: None,
        })
        .await
        .expect("registered");
    let report = AgentReport {
        servers: vec![ObservedServer::stopped("web1", 1)],
        mode: None,
        independent_since_ms: None,
        drift: Vec::new(),
        address: None,
        agent_port: None,
        version: None,
        instance_id: None,
        membership_port: None,
        peers: None,
        apps: Vec::new(),
    };
    let mut newest = String::new();
    for _ in 0..OPERATION_RETENTION + 5 {
        client.report("n1", &report).await.expect("reported");
        let op = client
            .cluster_operation("shop", OperationKind::Stop, &OperationOptions::default())
            .await
            .expect("stop");
        assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
        newest = op.id;
    }
    let kept = eventually("the operations are trimmed", SETTLE, || async {
        let all = client
            .list_operations(&OperationQuery::default())
            .await
            .ok()?;
        (all.len() == OPERATION_RETENTION).then_some(all)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kept[0].id, newest, "the newest stay, newest first");
    let (code, _, err) = cli_at(&url, &token, &["operation", "show", "op-1"]);
    assert_ne!(code, 0, "op-1 is gone");
    assert!(err.contains("operation `op-1` does not exist"), "{err}");
    child
        .terminate(Duration::from_secs(10))
        .await
        .expect("stops");
}

#[test]
fn a_zero_housekeeping_interval_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(BIN)
        .args(["controller", "--housekeeping-interval", "0s"])
        .env_remove("DURE_HOME")
        .current_dir(dir.path())
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("housekeeping interval"), "{err}");
    let output = std::process::Command::new(BIN)
        .args(["controller", "--event-retention", "lots"])
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2), "not a number");
}
