//! Configuration versions end to end against a real controller and agent:
//! every kind of save (the registration that creates a node, a direct edit,
//! a change set, an apply, a rollback) is the next version 1, 2, 3, …; show,
//! diff and rollback take versions; events and pack names say them; a
//! controller restart keeps every number and the next save continues.

mod common;

use common::*;
use dure_api::{ApplyQuery, Client, EventQuery, HistoryQuery, SaveRequest};
use dure_testkit::SandboxOptions;

const WEB1: &str = "/nodes/n1/servers/web1/server.json";
const WEB2: &str = "/nodes/n1/servers/web2/server.json";

fn sleeper(name: &str) -> dure_core::ServerSpec {
    command_server(
        name,
        "n1",
        free_port(),
        vec!["/bin/sleep".into(), "600".into()],
    )
}

/// `(version, message)` of every saved version, oldest first.
async fn versions(client: &Client) -> Vec<(u64, String)> {
    let mut history: Vec<(u64, String)> = client
        .config_history(&HistoryQuery::default())
        .await
        .expect("history")
        .into_iter()
        .map(|r| (r.version, r.message))
        .collect();
    history.reverse();
    history
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_save_is_the_next_version_and_a_restart_keeps_them() {
    let options = SandboxOptions {
        auto_save: false,
        ..SandboxOptions::default()
    };
    let mut sandbox = Sandbox::start_with(BIN, options)
        .await
        .expect("controller starts");
    // 1: the registration that creates node n1.
    sandbox.add_agent("n1").await.expect("agent starts");
    let client = sandbox.client();
    let saving = client.clone().with_save(Some(true));

    // 2: a direct save.
    saving.create_server(&sleeper("web1")).await.expect("web1");
    // 3: a change set.
    client
        .create_server(&sleeper("web2"))
        .await
        .expect("staged");
    let review = client.changes().await.expect("review");
    assert_eq!((review.base_version, review.saved_version), (2, 2));
    let saved = client
        .save_changes(&SaveRequest::default())
        .await
        .expect("saved");
    assert_eq!(saved.version, 3);
    assert_eq!(saved.message, "saved 1 document(s) as version 3");
    // 4: an apply of the whole tree without web2.
    let mut tree = client.config_documents(None).await.expect("tree");
    assert_eq!(tree.version, 3);
    tree.documents.remove(WEB2);
    let applied = client
        .apply(&tree, &ApplyQuery::default())
        .await
        .expect("applied");
    assert_eq!(applied.version, 4);
    // 5: a rollback to 3.
    let rolled = client.rollback(3).await.expect("rolled back");
    assert_eq!(rolled.version, 5);

    let numbered = versions(&client).await;
    let numbers: Vec<u64> = numbered.iter().map(|(v, _)| *v).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5], "{numbered:?}");
    assert_eq!(numbered[4].1, "rollback to version 3");
    let history = client
        .config_history(&HistoryQuery::default())
        .await
        .expect("history");
    assert!(
        history[0].revision > 5,
        "the store revision is still recorded, and it is not the version: {history:?}"
    );

    // Show, diff and rollback take versions.
    let two = client.config_documents(Some(2)).await.expect("version 2");
    assert_eq!(two.version, 2);
    assert!(two.documents.contains_key(WEB1) && !two.documents.contains_key(WEB2));
    let (code, out, err) = cli(&sandbox, &["config", "show", "--rev", "3", WEB2]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"name\": \"web2\""), "{out}");
    let (code, out, err) = cli(&sandbox, &["config", "diff", "3", "4"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("--- a/nodes/n1/servers/web2/server.json"),
        "{out}"
    );
    let (code, out, err) = cli(&sandbox, &["config", "history"]);
    assert_eq!(code, 0, "{err}");
    let first_column: Vec<&str> = out
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(first_column, ["VERSION", "5", "4", "3", "2", "1"], "{out}");
    let (code, _, err) = cli(&sandbox, &["config", "show", "--rev", "9"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("version 9 does not exist yet: the configuration is at version 5"),
        "{err}"
    );
    let (code, _, err) = cli(&sandbox, &["config", "rollback", "0"]);
    assert_ne!(code, 0);
    assert!(err.contains("versions start at 1"), "{err}");

    // Events say versions.
    let events = client.events(&EventQuery::default()).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("rollback to version 3: saved")),
        "{events:?}"
    );

    // A pack is named by the version.
    let packs = sandbox.dir().join("packs");
    std::fs::create_dir_all(&packs).expect("mkdir");
    let (code, out, err) = cli(
        &sandbox,
        &["domain", "pack", packs.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("at version 5"), "{out}");
    let names: Vec<String> = std::fs::read_dir(&packs)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1);
    assert!(names[0].starts_with("dure-domain-default-v5-"), "{names:?}");

    // A restart keeps every number; the next save is 6.
    sandbox.restart_controller().await.expect("restart");
    let client = sandbox.client();
    assert_eq!(versions(&client).await, numbered);
    let saving = client.clone().with_save(Some(true));
    saving.create_server(&sleeper("web3")).await.expect("web3");
    let after = versions(&client).await;
    assert_eq!(after.last().map(|(v, _)| *v), Some(6), "{after:?}");
}
