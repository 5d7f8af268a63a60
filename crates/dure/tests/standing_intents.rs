//! An intent a failed operation left standing is visible: the operation's
//! message lists it, the server's view shows it pending with the operation
//! that issued it, and when the agent carries it out later an event names
//! that operation. Real controller, agents and servers.

mod common;

use common::*;
use dure_api::{EventQuery, NodeStatus, OperationKind, OperationStatus};
use dure_core::operation::OperationOptions;
use dure_core::{Intent, ServerState};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_left_standing_is_shown_and_its_later_completion_recorded() {
    let mut sandbox = sandbox(&["n1", "n2"]).await;
    let client = sandbox.client();
    for (name, node) in [("web1", "n1"), ("web2", "n2")] {
        let mut spec = demo_server(name, node);
        // The operation gives up on a member after its stop timeout and a
        // fixed slack: keep the wait short.
        spec.stop.timeout = "1s".parse().expect("duration");
        client.create_server(&spec).await.expect("server created");
    }
    create_cluster(&client, "shop", &["web1", "web2"]).await;
    let parallel = OperationOptions {
        parallel: true,
        ..OperationOptions::default()
    };
    let op = client
        .cluster_operation("shop", OperationKind::Start, &parallel)
        .await
        .expect("start");
    let started = wait_operation(&client, &op.id).await;
    assert_eq!(started.status, OperationStatus::Succeeded, "{started:?}");
    let pid = client
        .get_server("web2")
        .await
        .expect("web2")
        .observed
        .pid
        .expect("web2 runs");

    // The agent of n2 dies; its server keeps running.
    sandbox.kill_agent("n2").await.expect("kill -9 the agent");
    sandbox
        .wait_node_status("n2", NodeStatus::Unreachable, SETTLE)
        .await
        .expect("n2 unreachable");

    // The stop goes in reverse order: web2 first, which cannot finish.
    let op = client
        .cluster_operation("shop", OperationKind::Stop, &OperationOptions::default())
        .await
        .expect("stop accepted");
    let failed = wait_operation(&client, &op.id).await;
    assert_eq!(failed.status, OperationStatus::Failed, "{failed:?}");
    let message = failed.message.clone().unwrap_or_default();
    assert!(
        message.contains("left standing: stop on `web2` (node `n2` unreachable)"),
        "{message}"
    );
    assert_eq!(failed.left_standing.len(), 1, "{failed:?}");
    assert!(alive(pid), "web2 keeps running while its agent is away");

    // The server's view shows the pending stop and who issued it.
    let view = client.get_server("web2").await.expect("web2");
    let pending = view.pending.expect("a pending intent");
    assert_eq!(pending.intent, Intent::Stop);
    assert_eq!(pending.operation.as_deref(), Some(op.id.as_str()));
    let (code, out, err) = cli(&sandbox, &["server", "show", "web2"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("issued by operation `{}`", op.id)),
        "{out}"
    );
    // A server that got no intent from the operation has none pending.
    let web1 = client.get_server("web1").await.expect("web1");
    assert_eq!(web1.pending, None, "{web1:?}");

    // The agent comes back and carries the stop out, with an event that
    // names the operation.
    sandbox.add_agent("n2").await.expect("agent back");
    wait_server_state(&client, "web2", ServerState::Stopped).await;
    let wanted = format!(
        "server `web2` stopped: carried out the stop left standing by operation `{}`",
        op.id
    );
    let events = eventually("the carried-out stop is recorded", SETTLE, || async {
        let events = client
            .events(&EventQuery {
                subject: Some("server/web2".into()),
                ..EventQuery::default()
            })
            .await
            .ok()?;
        events.iter().any(|e| e.message == wanted).then_some(events)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        events.iter().filter(|e| e.message == wanted).count(),
        1,
        "{events:#?}"
    );
    assert!(!alive(pid), "web2 stopped");
    let view = client.get_server("web2").await.expect("web2");
    assert_eq!(view.pending, None, "{view:?}");
    let settled = client.get_operation(&op.id).await.expect("operation");
    assert!(settled.left_standing.is_empty(), "{settled:?}");
    // Within a heartbeat or two nothing more is recorded for it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = client
        .events(&EventQuery {
            subject: Some("server/web2".into()),
            ..EventQuery::default()
        })
        .await
        .expect("events");
    assert_eq!(
        events.iter().filter(|e| e.message == wanted).count(),
        1,
        "{events:#?}"
    );
    drop(sandbox);
}
