//! The configuration verbs `node create|show|delete` and `server update`
//! through the real binary against a real controller and agent, with the
//! change-set rules every configuration verb follows, and the exit codes of
//! refused input (2) across verbs.

mod common;

use common::*;

/// Runs the CLI and asserts its exit code; returns stdout and stderr.
fn expect(sandbox: &Sandbox, code: i32, args: &[&str]) -> (String, String) {
    let (got, out, err) = cli(sandbox, args);
    assert_eq!(got, code, "{args:?}\nstdout: {out}\nstderr: {err}");
    (out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_created_shown_and_deleted() {
    let sandbox = staging_sandbox().await;
    let client = sandbox.client();

    let (out, _) = expect(
        &sandbox,
        0,
        &[
            "node",
            "create",
            "n2",
            "--address",
            "localhost",
            "--backup-of",
            "n1",
            "--save",
        ],
    );
    assert!(
        out.contains("node `n2` created at address localhost"),
        "{out}"
    );
    let node = client.get_node("n2").await.expect("n2 saved");
    assert_eq!(node.spec.address, "localhost");
    assert_eq!(node.spec.backup_of.as_deref(), Some("n1"));

    let (out, _) = expect(&sandbox, 0, &["node", "show", "n2"]);
    assert!(out.contains("backup of:  n1\n"), "{out}");
    assert!(out.contains("status:     unregistered\n"), "{out}");
    let (out, _) = expect(&sandbox, 0, &["node", "show", "n1"]);
    assert!(out.contains("backups:    n2\n"), "{out}");
    assert!(out.contains("status:     online\n"), "{out}");

    // Refused: exists (conflict, 1); unknown primary and bad address
    // (invalid input, 2); a node with a live agent or with a backup (1).
    let (_, err) = expect(
        &sandbox,
        1,
        &["node", "create", "n2", "--address", "h", "--save"],
    );
    assert!(err.contains("node `n2` already exists"), "{err}");
    let (_, err) = expect(
        &sandbox,
        2,
        &[
            "node",
            "create",
            "n3",
            "--address",
            "h",
            "--backup-of",
            "ghost",
        ],
    );
    assert!(
        err.contains("node `n3` is a backup of node `ghost`, which does not exist"),
        "{err}"
    );
    let (_, err) = expect(&sandbox, 2, &["node", "create", "n3", "--address", "a b"]);
    assert!(err.contains("address `a b` is invalid"), "{err}");
    let (_, err) = expect(&sandbox, 1, &["node", "delete", "n1", "--save"]);
    assert!(err.contains("has a live agent"), "{err}");
    let (_, err) = expect(&sandbox, 1, &["node", "show", "ghost"]);
    assert!(err.contains("node `ghost` does not exist"), "{err}");

    // Staged by default on this controller, saved with `changes save`.
    let (out, _) = expect(&sandbox, 0, &["node", "delete", "n2"]);
    assert!(
        out.contains("node `n2` deleted in your change set (not saved)"),
        "{out}"
    );
    client.get_node("n2").await.expect("still saved");
    expect(&sandbox, 0, &["changes", "save"]);
    let (_, err) = expect(&sandbox, 1, &["node", "show", "n2"]);
    assert!(err.contains("node `n2` does not exist"), "{err}");
    let nodes = client.list_nodes().await.expect("nodes");
    assert_eq!(nodes.len(), 1, "{nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_update_changes_only_what_is_given() {
    let sandbox = staging_sandbox().await;
    let client = sandbox.client();
    let port = free_port().to_string();
    let http = format!("http={port}");
    expect(
        &sandbox,
        0,
        &[
            "server",
            "create",
            "web1",
            "--node",
            "n1",
            "--port",
            &http,
            "--env",
            "A=1",
            "--env",
            "B=2",
            "--ready",
            "tcp:http",
            "--save",
            "--",
            "/bin/sleep",
            "600",
        ],
    );
    let before = client.get_server("web1").await.expect("web1").spec;

    let (out, _) = expect(
        &sandbox,
        0,
        &[
            "server",
            "update",
            "web1",
            "--env",
            "C=3",
            "--unset-env",
            "A",
            "--weight",
            "5",
            "--stop-timeout",
            "7s",
            "--save",
        ],
    );
    assert!(out.contains("server `web1` updated"), "{out}");
    let after = client.get_server("web1").await.expect("web1").spec;
    let mut expected = before.clone();
    expected.env.remove("A");
    expected.env.insert("C".into(), "3".into());
    expected.weight = 5;
    expected.stop.timeout = "7s".parse().expect("duration");
    assert_eq!(after, expected);

    // Staged: the saved definition stays until `changes save`, and a second
    // update builds on the staged one.
    let (out, _) = expect(&sandbox, 0, &["server", "update", "web1", "--weight", "9"]);
    assert!(
        out.contains("server `web1` updated in your change set (not saved)"),
        "{out}"
    );
    expect(
        &sandbox,
        0,
        &["server", "update", "web1", "--", "/bin/sleep", "700"],
    );
    assert_eq!(
        client.get_server("web1").await.expect("web1").spec,
        expected
    );
    expect(&sandbox, 0, &["changes", "save"]);
    let saved = client.get_server("web1").await.expect("web1").spec;
    assert_eq!(saved.weight, 9);
    assert_eq!(saved.argv, ["/bin/sleep", "700"]);
    assert_eq!(saved.env, expected.env);

    // Refused updates change nothing.
    let (_, err) = expect(
        &sandbox,
        2,
        &[
            "server",
            "update",
            "web1",
            "--remove-port",
            "http",
            "--save",
        ],
    );
    assert!(err.contains("add --port http=PORT"), "{err}");
    let (_, err) = expect(&sandbox, 2, &["server", "update", "web1"]);
    assert!(err.contains("nothing to change"), "{err}");
    let (_, err) = expect(
        &sandbox,
        2,
        &["server", "update", "web1", "--node", "ghost", "--save"],
    );
    assert!(err.contains("node `ghost`, which does not exist"), "{err}");
    let (_, err) = expect(&sandbox, 1, &["server", "update", "ghost", "--weight", "1"]);
    assert!(err.contains("server `ghost` does not exist"), "{err}");
    let (out, _) = expect(&sandbox, 0, &["server", "update", "web1", "--weight", "9"]);
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(client.get_server("web1").await.expect("web1").spec, saved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_exits_2_on_every_verb() {
    let sandbox = sandbox(&["n1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_name = dir.path().join("bad.json");
    let tree = serde_json::json!({
        "revision": 0,
        "documents": {
            "/nodes/n1/node.json": {"name": "n1", "address": "127.0.0.1"},
            "/nodes/n1/servers/bad name/server.json":
                {"name": "bad name", "node": "n1", "argv": ["/bin/true"]}
        }
    });
    std::fs::write(&bad_name, tree.to_string()).expect("write");
    let bad_name = bad_name.to_str().expect("utf-8");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["apply", "-f", bad_name],
            "server name `bad name` is invalid",
        ),
        (
            vec!["diff", "-f", bad_name],
            "server name `bad name` is invalid",
        ),
        (
            vec![
                "server",
                "create",
                "w",
                "--node",
                "nowhere",
                "--",
                "/bin/true",
            ],
            "node `nowhere`, which does not exist",
        ),
        (
            vec!["cluster", "create", "c", "--member", "ghost"],
            "`ghost` is not a server",
        ),
        (
            vec![
                "node",
                "create",
                "n2",
                "--address",
                "h",
                "--backup-of",
                "ghost",
            ],
            "which does not exist",
        ),
        (vec!["config", "show", "--rev", "0"], "0 does not exist"),
        (
            vec!["node", "list", "-o", "yaml"],
            "output format `yaml` is invalid",
        ),
        (vec!["server", "show"], "required"),
    ];
    for (args, needle) in cases {
        let (_, err) = expect(&sandbox, 2, &args);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let servers = sandbox.client().list_servers().await.expect("servers");
    assert!(servers.is_empty(), "refused input created {servers:?}");
}
