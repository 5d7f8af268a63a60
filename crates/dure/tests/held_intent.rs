//! An intent record the controller cannot read does not stop a running
//! server: the server is held as it is, its intent is rebuilt from its
//! agent's next report, and the next intent an operator issues is new to
//! the agent. Real controller, agent and server; the record is damaged in
//! the controller's store while it is down.

mod common;

use common::*;
use dure_api::EventQuery;
use dure_core::{Intent, ServerState};
use dure_store::{SqliteStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_intent_holds_the_server_and_is_rebuilt_from_the_report() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    client
        .create_server(&demo_server("web", "n1"))
        .await
        .expect("created");
    client
        .server_intent("web", Intent::Run)
        .await
        .expect("start");
    let pid = wait_server_state(&client, "web", ServerState::Ready)
        .await
        .observed
        .pid;

    sandbox.kill_controller().await.expect("controller killed");
    {
        let store = SqliteStore::open(&sandbox.controller_data().join("store.db"))
            .expect("the controller's store opens");
        store
            .put("/intents/web", b"{damaged")
            .await
            .expect("damaged record written");
    }
    sandbox.restart_controller().await.expect("controller back");
    let client = sandbox.client();

    let events = |kind: &'static str| {
        let client = client.clone();
        async move {
            client
                .events(&EventQuery {
                    subject: Some("server/web".into()),
                    ..EventQuery::default()
                })
                .await
                .expect("events")
                .into_iter()
                .filter(|e| e.kind == kind)
                .map(|e| e.message)
                .collect::<Vec<_>>()
        }
    };
    let rebuilt = eventually("the intent rebuilt from the report", SETTLE, || async {
        events("intent")
            .await
            .into_iter()
            .find(|m| m.contains("rebuilt the unreadable intent"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(rebuilt.contains("(ready): run"), "{rebuilt}");
    assert!(
        events("record")
            .await
            .iter()
            .any(|m| m.contains("is unreadable") && m.contains("held")),
        "the damaged record is reported"
    );

    // The rebuilt intent is pending until the agent's next report takes
    // its generation (within a heartbeat).
    let view = eventually("the agent takes the rebuilt intent", SETTLE, || async {
        let view = client.get_server("web").await.expect("web");
        view.pending.is_none().then_some(view)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(view.intent, Intent::Run);
    assert_eq!(view.observed.state, ServerState::Ready);
    assert_eq!(view.observed.pid, pid, "the same process: never stopped");
    assert!(
        !events("server.state")
            .await
            .iter()
            .any(|m| m.contains("-> stopping")),
        "the server was never asked to stop"
    );

    // The next intent is a new generation to the agent.
    client
        .server_intent("web", Intent::Stop)
        .await
        .expect("stop");
    wait_server_state(&client, "web", ServerState::Stopped).await;
}
