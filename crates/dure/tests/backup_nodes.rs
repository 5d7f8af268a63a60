//! Backup nodes as configuration: `dure node create|update --backup-of`
//! is checked when saved — not its own backup, no chains or cycles, one
//! backup per node, and no port of the primary's servers taken by one of
//! the backup's own — each refusal naming the reason and changing
//! nothing; `node show` names a node's backup.

mod common;

use common::*;
use dure_api::ClientError;

fn cli_ok(sandbox: &Sandbox, args: &[&str]) -> String {
    let (code, out, err) = cli(sandbox, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

/// Runs a refused command: its exit code and what it said.
fn cli_refused(sandbox: &Sandbox, args: &[&str], code: i32) -> String {
    let (got, out, err) = cli(sandbox, args);
    assert_eq!(got, code, "{args:?}: {out}{err}");
    err
}

async fn backup_of(sandbox: &Sandbox, node: &str) -> Option<String> {
    let view = sandbox.client().get_node(node).await.expect("node");
    view.spec.backup_of
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_node_is_checked_when_saved() {
    let sandbox = sandbox(&[]).await;
    let client = sandbox.client();
    for node in ["a", "b", "c"] {
        cli_ok(
            &sandbox,
            &["node", "create", node, "--address", "127.0.0.1"],
        );
    }
    let web1 = demo_server("web1", "a");
    let port = web1.ports["http"];
    client.create_server(&web1).await.expect("web1 created");
    let own1 = command_server("own1", "b", port, vec!["/bin/sleep".into(), "60".into()]);
    client.create_server(&own1).await.expect("own1 created");

    // b's own server holds a port of a's: b cannot host web1.
    let err = cli_refused(&sandbox, &["node", "update", "b", "--backup-of", "a"], 1);
    assert!(
        err.contains(&format!(
            "node `b` cannot take over server `web1` of node `a`, whose backup it is: port {port} is also used by its own server `own1`"
        )),
        "{err}"
    );
    assert_eq!(backup_of(&sandbox, "b").await, None, "nothing changed");
    cli_ok(&sandbox, &["server", "delete", "own1"]);
    let out = cli_ok(&sandbox, &["node", "update", "b", "--backup-of", "a"]);
    assert!(out.contains("backup of node `a`"), "{out}");
    assert_eq!(backup_of(&sandbox, "b").await.as_deref(), Some("a"));
    let out = cli_ok(&sandbox, &["node", "show", "a"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("backups") && l.trim_end().ends_with('b')),
        "{out}"
    );

    // No chains, no cycles, one backup per node, never itself: invalid
    // definitions (exit 2), whether the CLI or the controller finds it.
    let err = cli_refused(&sandbox, &["node", "update", "c", "--backup-of", "b"], 2);
    assert!(err.contains("neither chain nor form cycles"), "{err}");
    let err = cli_refused(&sandbox, &["node", "update", "a", "--backup-of", "b"], 2);
    assert!(err.contains("neither chain nor form cycles"), "{err}");
    let err = cli_refused(&sandbox, &["node", "update", "c", "--backup-of", "a"], 2);
    assert!(err.contains("node `b` already is"), "{err}");
    let err = cli_refused(&sandbox, &["node", "update", "b", "--backup-of", "b"], 2);
    assert!(err.contains("cannot be its own backup"), "{err}");
    let err = cli_refused(
        &sandbox,
        &[
            "node",
            "create",
            "d",
            "--address",
            "127.0.0.1",
            "--backup-of",
            "b",
        ],
        2,
    );
    assert!(err.contains("neither chain nor form cycles"), "{err}");
    for node in ["a", "c"] {
        assert_eq!(backup_of(&sandbox, node).await, None, "{node} unchanged");
    }

    // Moving the backup: b lets go, c takes over a.
    cli_ok(&sandbox, &["node", "update", "b", "--no-backup-of"]);
    cli_ok(&sandbox, &["node", "update", "c", "--backup-of", "a"]);
    let out = cli_ok(&sandbox, &["node", "update", "c", "--backup-of", "a"]);
    assert!(out.contains("nothing changed"), "{out}");

    // A new server of the primary on a port c's own server holds is refused.
    let own2 = demo_server("own2", "c");
    client.create_server(&own2).await.expect("own2 created");
    let clash = command_server(
        "web2",
        "a",
        own2.ports["http"],
        vec!["/bin/sleep".into(), "60".into()],
    );
    match client.create_server(&clash).await {
        Err(ClientError::Api {
            status, message, ..
        }) => {
            assert_eq!(status, 409, "{message}");
            assert!(
                message.contains("cannot take over server `web2` of node `a`"),
                "{message}"
            );
        }
        other => panic!("a clashing server is refused: {other:?}"),
    }
    assert!(client.get_server("web2").await.is_err(), "nothing changed");
}
