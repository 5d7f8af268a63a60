//! Change sets, history and declarative configuration, end to end against a
//! real controller and agent: staging, review, save, discard, conflicts and
//! merges, validation at save, history with rollback, export → diff → apply
//! round trips through the CLI, and change sets that outlive a restart.

mod common;

use common::*;
use dure_api::{
    ChangeKind, ChangeOutcome, Client, ClientError, ConfigChange, HistoryQuery, SaveRequest,
    ServerView,
};
use dure_core::{ClusterSpec, ServerSpec};
use std::time::Duration;

const WEB1: &str = "/nodes/n1/servers/web1/server.json";

/// A server that sleeps, with an `http` port nobody else uses.
fn sleeper(name: &str) -> ServerSpec {
    command_server(
        name,
        "n1",
        free_port(),
        vec!["/bin/sleep".into(), "600".into()],
    )
}

fn cluster(name: &str, members: &[&str]) -> ClusterSpec {
    ClusterSpec::new(name, members.iter().map(|m| m.to_string()).collect())
}

fn saving(client: &Client) -> Client {
    client.clone().with_save(Some(true))
}

async fn history_len(client: &Client) -> usize {
    client
        .config_history(&HistoryQuery::default())
        .await
        .expect("history")
        .len()
}

fn api_error(error: ClientError) -> (u16, String) {
    match error {
        ClientError::Api {
            status, message, ..
        } => (status, message),
        other => panic!("expected an API error, got {other}"),
    }
}

/// Servers the agent of `n1` is told to run.
async fn desired_servers(client: &Client) -> Vec<String> {
    let desired = client
        .desired("n1", 0, Duration::from_millis(10))
        .await
        .expect("desired state");
    desired.servers.into_iter().map(|s| s.spec.name).collect()
}

#[tokio::test]
async fn a_change_set_is_staged_reviewed_saved_and_discarded() {
    let sandbox = staging_sandbox().await;
    let client = sandbox.client();
    let changes_view = client.clone().with_changes_view(true);
    let revisions = history_len(&client).await;

    let created = client
        .change::<ServerView>(ConfigChange::CreateServer(&sleeper("web1")))
        .await
        .expect("staged");
    assert_eq!(created.outcome, ChangeOutcome::Staged);
    assert_eq!(created.value.spec.name, "web1");
    let grouped = client
        .change::<dure_api::ClusterView>(ConfigChange::CreateCluster(&cluster("c", &["web1"])))
        .await
        .expect("a cluster of a staged server is staged");
    assert_eq!(grouped.outcome, ChangeOutcome::Staged);

    // Staged: not in the saved view, in the change set view, not on agents.
    assert!(client.list_servers().await.expect("list").is_empty());
    let (status, _) = api_error(client.get_server("web1").await.expect_err("not saved"));
    assert_eq!(status, 404);
    let staged = changes_view.get_server("web1").await.expect("in the view");
    assert_eq!(staged.cluster.as_deref(), Some("c"));
    assert_eq!(
        changes_view.list_clusters().await.expect("clusters").len(),
        1
    );
    assert!(desired_servers(&client).await.is_empty());
    let (status, message) = api_error(
        client
            .server_intent("web1", dure_core::Intent::Run)
            .await
            .expect_err("a staged server cannot start"),
    );
    assert_eq!(status, 404);
    assert!(message.contains("staged in your change set"), "{message}");
    assert_eq!(
        history_len(&client).await,
        revisions,
        "staging saves nothing"
    );

    // Review: two added files with their diffs.
    let review = client.changes().await.expect("changes");
    let listed: Vec<_> = review
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.kind))
        .collect();
    assert_eq!(
        listed,
        [
            ("/clusters/c/cluster.json", ChangeKind::Added),
            (WEB1, ChangeKind::Added)
        ]
    );
    assert!(
        review.changes[1].diff.contains("+  \"name\": \"web1\","),
        "{}",
        review.changes[1].diff
    );
    assert!(review.conflicts.is_empty());

    // Save: one revision with both documents, recorded with who and what.
    let saved = client
        .save_changes(&SaveRequest::default())
        .await
        .expect("saved");
    assert_eq!(saved.changes.len(), 2);
    let history = client
        .config_history(&HistoryQuery { limit: Some(1) })
        .await
        .expect("history");
    assert_eq!(history_len(&client).await, revisions + 1);
    let top = &history[0];
    assert_eq!(top.revision, saved.revision);
    assert_eq!(top.actor, "admin");
    assert_eq!(top.paths, ["/clusters/c/cluster.json", WEB1]);
    assert!(
        top.message.contains("created server `web1`")
            && top.message.contains("created cluster `c`"),
        "{}",
        top.message
    );
    assert_eq!(
        client
            .get_server("web1")
            .await
            .expect("saved")
            .cluster
            .as_deref(),
        Some("c")
    );
    assert_eq!(desired_servers(&client).await, ["web1"]);
    assert!(client.changes().await.expect("empty").changes.is_empty());
    let nothing = client
        .save_changes(&SaveRequest::default())
        .await
        .expect("an empty save");
    assert!(nothing.changes.is_empty() && nothing.message.contains("nothing to save"));
    assert_eq!(nothing.revision, saved.revision);

    // Stage a change and discard it: nothing changes.
    let mut heavier = client.get_server("web1").await.expect("web1").spec;
    heavier.weight = 7;
    client.replace_server(&heavier).await.expect("staged");
    let staged = client.changes().await.expect("changes");
    assert_eq!(staged.changes[0].kind, ChangeKind::Modified);
    assert!(staged.changes[0].diff.contains("+  \"weight\": 7"));
    let dropped = client.discard_changes().await.expect("discarded");
    assert_eq!(dropped.changes.len(), 1);
    assert_eq!(
        client.get_server("web1").await.expect("web1").spec.weight,
        100
    );
    assert!(client.changes().await.expect("empty").changes.is_empty());
    assert_eq!(history_len(&client).await, revisions + 1);

    // `?save=true` commits at once and says so.
    let direct = saving(&client)
        .change::<ServerView>(ConfigChange::CreateServer(&sleeper("web2")))
        .await
        .expect("saved at once");
    assert_eq!(direct.outcome, ChangeOutcome::Saved);
    assert_eq!(history_len(&client).await, revisions + 2);
}

#[tokio::test]
async fn conflicting_saves_are_refused_unrelated_ones_merge_and_rules_hold() {
    let sandbox = staging_sandbox().await;
    let client = sandbox.client();
    let direct = saving(&client);
    let web1 = sleeper("web1");
    let web2 = sleeper("web2");
    direct.create_server(&web1).await.expect("web1");
    direct.create_server(&web2).await.expect("web2");

    // Staged weight 5 for web1; then someone saves weight 50 for web1.
    client
        .replace_server(&ServerSpec {
            weight: 5,
            ..web1.clone()
        })
        .await
        .expect("staged");
    direct
        .replace_server(&ServerSpec {
            weight: 50,
            ..web1.clone()
        })
        .await
        .expect("saved");
    assert_eq!(client.changes().await.expect("view").conflicts, [WEB1]);
    let (status, message) = api_error(
        client
            .save_changes(&SaveRequest::default())
            .await
            .expect_err("conflict"),
    );
    assert_eq!(status, 409);
    assert!(message.contains(WEB1), "{message}");
    assert_eq!(
        client.get_server("web1").await.expect("web1").spec.weight,
        50
    );
    client.discard_changes().await.expect("discarded");

    // A staged change to web2 merges with a saved change to web1.
    client
        .replace_server(&ServerSpec {
            weight: 7,
            ..web2.clone()
        })
        .await
        .expect("staged");
    direct
        .replace_server(&ServerSpec {
            weight: 60,
            ..web1.clone()
        })
        .await
        .expect("saved");
    let saved = client
        .save_changes(&SaveRequest::default())
        .await
        .expect("merged");
    assert_eq!(saved.changes.len(), 1);
    assert_eq!(
        client.get_server("web1").await.expect("web1").spec.weight,
        60
    );
    assert_eq!(
        client.get_server("web2").await.expect("web2").spec.weight,
        7
    );

    // The whole result is validated at save: a port taken since staging.
    let port = free_port();
    let mut web3 = sleeper("web3");
    web3.ports.insert("http".into(), port);
    client.create_server(&web3).await.expect("staged");
    let mut web4 = sleeper("web4");
    web4.ports.insert("http".into(), port);
    direct.create_server(&web4).await.expect("saved first");
    let (status, message) = api_error(
        client
            .save_changes(&SaveRequest::default())
            .await
            .expect_err("port taken"),
    );
    assert_eq!(status, 409);
    assert!(
        message.contains(&format!("port {port} is already used by")),
        "{message}"
    );
    let (status, _) = api_error(client.get_server("web3").await.expect_err("not saved"));
    assert_eq!(status, 404);
    // Staging checks the rules too: the same edit is refused outright now.
    client.discard_changes().await.expect("discarded");
    let (status, message) = api_error(
        client
            .create_server(&web3)
            .await
            .expect_err("refused when staged"),
    );
    assert_eq!(status, 409);
    assert!(message.contains("is already used by `web4`"), "{message}");
    assert!(client.changes().await.expect("view").changes.is_empty());
}

#[tokio::test]
async fn history_show_diff_and_rollback() {
    let sandbox = staging_sandbox().await;
    let client = saving(&sandbox.client());
    client.create_server(&sleeper("web1")).await.expect("web1");
    let with_web1 = history_len(&client).await;
    let first = client
        .config_history(&HistoryQuery { limit: Some(1) })
        .await
        .expect("history")[0]
        .version;
    client.create_server(&sleeper("web2")).await.expect("web2");
    client.delete_server("web1", false).await.expect("deleted");
    let before_rollback = client.config_documents(None).await.expect("now").version;
    assert_eq!(before_rollback, first + 2, "one version per save");

    let old = client
        .config_documents(Some(first))
        .await
        .expect("old tree");
    assert!(old.documents.contains_key(WEB1));
    assert!(!old
        .documents
        .contains_key("/nodes/n1/servers/web2/server.json"));
    let diff = client
        .config_diff(first, Some(before_rollback))
        .await
        .expect("diff");
    let kinds: Vec<_> = diff.iter().map(|c| (c.path.as_str(), c.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("/nodes/n1/servers/web1/server.json", ChangeKind::Deleted),
            ("/nodes/n1/servers/web2/server.json", ChangeKind::Added)
        ]
    );

    // Versions that cannot be read are named as such.
    let (status, message) = api_error(
        client
            .config_documents(Some(before_rollback + 1000))
            .await
            .expect_err("future"),
    );
    assert_eq!(status, 404);
    assert!(message.contains("does not exist yet"), "{message}");
    let (status, _) = api_error(client.config_documents(Some(0)).await.expect_err("zero"));
    assert_eq!(status, 400);

    // Rollback recreates web1 and removes web2, as a new version.
    let rolled = client.rollback(first).await.expect("rolled back");
    assert_eq!(rolled.version, before_rollback + 1);
    assert_eq!(rolled.changes.len(), 2);
    assert!(client.get_server("web1").await.is_ok());
    assert!(client.get_server("web2").await.is_err());
    let history = client
        .config_history(&HistoryQuery::default())
        .await
        .expect("history");
    assert_eq!(history.len(), with_web1 + 3);
    assert_eq!(history[0].message, format!("rollback to version {first}"));
    assert_eq!(history[0].version, rolled.version);
    assert_eq!(history[0].revision, rolled.revision);

    // A rollback that would delete a running server is refused, naming it.
    let runner = command_server(
        "runner",
        "n1",
        free_port(),
        vec!["/bin/sleep".into(), "600".into()],
    );
    client.create_server(&runner).await.expect("runner");
    client
        .server_intent("runner", dure_core::Intent::Run)
        .await
        .expect("started");
    wait_server_state(&client, "runner", dure_core::ServerState::Ready).await;
    let (status, message) = api_error(client.rollback(first).await.expect_err("refused"));
    assert_eq!(status, 409);
    assert!(message.contains("`runner`"), "{message}");
    assert!(client.get_server("runner").await.is_ok());

    // The CLI shows the same history, a document of a version and a diff.
    let rev = first.to_string();
    let (code, out, err) = cli(&sandbox, &["config", "history"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("rollback to version {first}")) && out.contains("admin"),
        "{out}"
    );
    let (code, out, err) = cli(&sandbox, &["config", "show", "--rev", &rev, WEB1]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"name\": \"web1\""), "{out}");
    assert!(
        out.starts_with("{\n  \"name\": \"web1\",\n  \"node\": \"n1\","),
        "shown as stored, in the document's own field order: {out}"
    );
    let (code, out, err) = cli(&sandbox, &["config", "diff", &rev]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("+++ b/nodes/n1/servers/runner/server.json"),
        "{out}"
    );
    let (code, _, err) = cli(&sandbox, &["config", "show", "--rev", &rev, "/nope.json"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no document `/nope.json`"), "{err}");
}

#[tokio::test]
async fn export_diff_and_apply_round_trip_through_the_cli() {
    let sandbox = staging_sandbox().await;
    let client = saving(&sandbox.client());
    client.create_server(&sleeper("web1")).await.expect("web1");
    client.create_server(&sleeper("web2")).await.expect("web2");
    client
        .create_cluster(&cluster("shop", &["web1", "web2"]))
        .await
        .expect("cluster");
    let revisions = history_len(&client).await;
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("tree");
    let toml_file = work.path().join("domain.toml");
    let json_file = work.path().join("domain.json");
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();

    // Export in every form; each round trips as a no-op.
    let (code, out, err) = cli(&sandbox, &["export"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("[servers.web1]") && out.contains("[clusters.shop]"),
        "{out}"
    );
    // `-o PATH` and a plain path argument are the same.
    for (target, flag) in [(&dir, true), (&toml_file, false), (&json_file, true)] {
        let export: Vec<String> = if flag {
            vec!["export".into(), "-o".into(), s(target)]
        } else {
            vec!["export".into(), s(target)]
        };
        let export: Vec<&str> = export.iter().map(String::as_str).collect();
        let (code, _, err) = cli(&sandbox, &export);
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = cli(&sandbox, &["diff", "-f", &s(target)]);
        assert_eq!(code, 0, "{}: {out}{err}", target.display());
        let (code, out, err) = cli(&sandbox, &["apply", "-f", &s(target)]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("nothing to save"), "{out}");
    }
    assert!(dir.join("nodes/n1/servers/web1/server.json").is_file());
    assert_eq!(
        history_len(&client).await,
        revisions,
        "no-op applies save nothing"
    );

    // A modified file: diff exits 1 and shows it; apply saves exactly that.
    let text = std::fs::read_to_string(&toml_file).expect("toml");
    let start = text.find("[servers.web1]").expect("web1 table");
    let at = start + text[start..].find("weight = 100").expect("weight");
    let modified = format!(
        "{}weight = 3{}",
        &text[..at],
        &text[at + "weight = 100".len()..]
    );
    std::fs::write(&toml_file, modified).expect("write");
    let (code, out, err) = cli(&sandbox, &["diff", "-f", &s(&toml_file)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("-  \"weight\": 100\n") && out.contains("+  \"weight\": 3\n"),
        "{out}"
    );
    let (code, out, err) = cli(&sandbox, &["apply", "-f", &s(&toml_file), "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dry run"), "{out}");
    assert_eq!(history_len(&client).await, revisions);
    let (code, out, err) = cli(&sandbox, &["apply", "-f", &s(&toml_file)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("saved 1 document(s)"), "{out}");
    let history = client
        .config_history(&HistoryQuery { limit: Some(1) })
        .await
        .expect("history");
    assert_eq!(history_len(&client).await, revisions + 1);
    assert_eq!(history[0].paths, [WEB1]);
    assert_eq!(
        client.get_server("web1").await.expect("web1").spec.weight,
        3
    );

    // Deleting a file from the directory deletes the document on apply.
    std::fs::remove_file(dir.join("clusters/shop/cluster.json")).expect("rm");
    let (code, out, _) = cli(&sandbox, &["diff", "-f", &s(&dir)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("+++ /dev/null"), "{out}");

    // Malformed files name the file, the line and the field.
    let bad_toml = work.path().join("bad.toml");
    std::fs::write(
        &bad_toml,
        "[nodes.n1]\naddress = \"127.0.0.1\"\n\n[servers.web1]\nnode = \"n1\"\nargv = [\"x\"]\nweight = \"heavy\"\n",
    )
    .expect("write");
    let (code, _, err) = cli(&sandbox, &["apply", "-f", &s(&bad_toml)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("line 7") && err.contains("servers.web1.weight"),
        "{err}"
    );
    std::fs::write(&bad_toml, "[nodes.n1\naddress = 1\n").expect("write");
    let (code, _, err) = cli(&sandbox, &["diff", "-f", &s(&bad_toml)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml") && err.contains("line 1"), "{err}");
    let doc = dir.join("nodes/n1/servers/web2/server.json");
    let text = std::fs::read_to_string(&doc).expect("doc");
    std::fs::write(&doc, text.replace("\"weight\"", "\"wieght\"")).expect("write");
    let (code, _, err) = cli(&sandbox, &["apply", "-f", &s(&dir)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("web2/server.json")
            && err.contains("unknown field `wieght`")
            && err.contains("line"),
        "{err}"
    );
    let bad_json = work.path().join("bad.json");
    std::fs::write(
        &bad_json,
        "{\"documents\": {\n  \"/clusters/c/cluster.json\": {\"name\": \"c\",\n    \"members\": 3}\n}}\n",
    )
    .expect("write");
    let (code, _, err) = cli(&sandbox, &["apply", "-f", &s(&bad_json)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.json") && err.contains("members") && err.contains("line 3"),
        "{err}"
    );
    assert_eq!(
        history_len(&client).await,
        revisions + 1,
        "bad files change nothing"
    );
}

#[tokio::test]
async fn the_cli_stages_saves_and_explains_an_unreachable_controller() {
    let mut sandbox = staging_sandbox().await;
    let (code, out, err) = cli(
        &sandbox,
        &[
            "server",
            "create",
            "web1",
            "--node",
            "n1",
            "--",
            "/bin/sleep",
            "600",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("staged in your change set: review with `dure changes --diff`, save with `dure changes save`"),
        "{out}"
    );
    let (code, out, err) = cli(
        &sandbox,
        &[
            "server",
            "create",
            "web2",
            "--node",
            "n1",
            "--save",
            "--",
            "/bin/sleep",
            "600",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("server `web2` created on node `n1`; start it"),
        "{out}"
    );
    let (code, out, _) = cli(&sandbox, &["changes"]);
    assert_eq!(code, 0);
    assert!(out.contains("added") && out.contains(WEB1), "{out}");
    let (code, out, _) = cli(&sandbox, &["changes", "--diff"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("+++ b/nodes/n1/servers/web1/server.json"),
        "{out}"
    );
    let (code, out, _) = cli(&sandbox, &["changes", "-o", "json"]);
    assert_eq!(code, 0);
    let view: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(view["changes"][0]["kind"], "added");

    // The change set survives a controller restart.
    sandbox.restart_controller().await.expect("restarted");
    let (code, out, err) = cli(&sandbox, &["changes", "save"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("saved 1 document(s)"), "{out}");
    assert!(sandbox.client().get_server("web1").await.is_ok());
    let (code, out, _) = cli(&sandbox, &["changes", "discard"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to discard"), "{out}");

    // With the controller gone, configuration verbs say what that means.
    sandbox.kill_controller().await.expect("killed");
    let (code, _, err) = cli(&sandbox, &["cluster", "create", "c", "--member", "web1"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("configuration changes are unavailable while the controller at")
            && err.contains("servers keep running"),
        "{err}"
    );
    let (code, _, err) = cli(&sandbox, &["changes", "save"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("configuration changes are unavailable"),
        "{err}"
    );
}
