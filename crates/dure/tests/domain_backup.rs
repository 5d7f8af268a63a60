//! Domain backup and restore end to end: pack a running domain, unpack it
//! into another data directory with a new port (and once with a node
//! renamed), start the controller there, point the agents at it, and find
//! the configuration, its history and revisions, and the running servers
//! all there. Also the controller config file and automatic backups.

mod common;

use common::*;
use dure_api::{AgentMode, HistoryQuery, NodeStatus, RevisionInfo};
use dure_core::{Intent, ServerState};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A domain with node `n1`, two running demo servers in a cluster, and a
/// few more saved revisions. Returns the sandbox and the servers' pids.
async fn running_domain() -> (Sandbox, Vec<(String, u32)>) {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client().with_save(Some(true));
    let mut specs = Vec::new();
    for name in ["web1", "web2"] {
        let spec = demo_server(name, "n1");
        client.create_server(&spec).await.expect("server created");
        specs.push(spec);
    }
    create_cluster(&client, "shop", &["web1", "web2"]).await;
    let mut edited = specs[1].clone();
    edited.env.insert("EDITION".into(), "2".into());
    client.replace_server(&edited).await.expect("server edited");
    let mut pids = Vec::new();
    for name in ["web1", "web2"] {
        client
            .server_intent(name, Intent::Run)
            .await
            .expect("start");
        let view = wait_server_state(&client, name, ServerState::Ready).await;
        pids.push((name.to_string(), view.observed.pid.expect("pid")));
    }
    (sandbox, pids)
}

async fn history(sandbox: &Sandbox) -> Vec<RevisionInfo> {
    sandbox
        .client()
        .config_history(&HistoryQuery { limit: Some(1000) })
        .await
        .expect("history")
}

fn unpack_args<'a>(archive: &'a str, data: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["domain", "unpack", archive, "--data", data];
    args.extend_from_slice(extra);
    args
}

/// Packs through the CLI and returns the archive's path.
fn pack(sandbox: &Sandbox, extra: &[&str]) -> PathBuf {
    let dir = sandbox.dir().join("packs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut args = vec!["domain", "pack", dir.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let (code, out, err) = cli(sandbox, &args);
    assert_eq!(code, 0, "pack failed: {out}{err}");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("list packs")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one archive with the default name: {files:?}"
    );
    let name = files[0].file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert!(
        name.starts_with("dure-domain-default-v") && name.ends_with(".tar.gz"),
        "{name}"
    );
    files[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpacked_on_a_new_port_agents_reconnect_and_servers_are_adopted() {
    let (mut sandbox, pids) = running_domain().await;
    let history_before = history(&sandbox).await;
    let tree_before = sandbox.client().config_documents(None).await.expect("tree");
    let old_revision = history_before[1].version;
    let old_tree = sandbox
        .client()
        .config_documents(Some(old_revision))
        .await
        .expect("old tree");
    let archive = pack(&sandbox, &["--include-secrets"]);
    let old_url = sandbox.url();

    // The controller's machine is lost; a new one gets the pack.
    sandbox.kill_controller().await.expect("controller killed");
    let port = free_port();
    let data = sandbox.dir().join("new-controller");
    let (code, out, err) = cli(
        &sandbox,
        &unpack_args(
            archive.to_str().expect("utf-8"),
            data.to_str().expect("utf-8"),
            &["--port", &port.to_string()],
        ),
    );
    assert_eq!(code, 0, "unpack failed: {out}{err}");
    assert!(
        out.contains("dure controller --data"),
        "says how to start: {out}"
    );
    assert!(out.contains("restored the admin token"), "{out}");
    sandbox
        .move_controller(&data)
        .await
        .expect("controller starts on the unpacked data");
    assert_eq!(sandbox.url(), format!("https://127.0.0.1:{port}"));
    assert_ne!(sandbox.url(), old_url);

    let client = sandbox.client();
    assert_eq!(
        client.config_documents(None).await.expect("tree").documents,
        tree_before.documents,
        "the configuration is all there"
    );
    assert_eq!(
        history(&sandbox).await,
        history_before,
        "same history, same revisions"
    );
    assert_eq!(
        client
            .config_documents(Some(old_revision))
            .await
            .expect("old revision readable")
            .documents,
        old_tree.documents,
        "past revisions read the same"
    );

    // Agents started again with the new address find their servers.
    sandbox.stop_agent("n1").await.expect("agent stops");
    sandbox
        .add_agent("n1")
        .await
        .expect("agent reconnects to the new controller");
    for (name, pid) in &pids {
        let view = wait_server_state(&client, name, ServerState::Ready).await;
        assert_eq!(
            view.observed.pid,
            Some(*pid),
            "`{name}` was adopted, not restarted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpack_renames_the_node_as_one_recorded_revision() {
    let (mut sandbox, pids) = running_domain().await;
    let history_before = history(&sandbox).await;
    let archive = pack(&sandbox, &[]);
    let old_token = sandbox.token().to_string();
    sandbox.kill_controller().await.expect("controller killed");

    let data = sandbox.dir().join("renamed-controller");
    let port = free_port().to_string();
    let (code, out, err) = cli(
        &sandbox,
        &unpack_args(
            archive.to_str().expect("utf-8"),
            data.to_str().expect("utf-8"),
            &["--listen", "127.0.0.1", "--port", &port, "--node", "n2"],
        ),
    );
    assert_eq!(code, 0, "unpack failed: {out}{err}");
    assert!(out.contains("renamed node `n1` to `n2`"), "{out}");
    assert!(
        out.contains("generates a new one"),
        "no token in the pack: {out}"
    );
    sandbox
        .move_controller(&data)
        .await
        .expect("controller starts");
    assert_ne!(
        sandbox.token(),
        old_token,
        "a new admin token was generated"
    );

    let history_after = history(&sandbox).await;
    assert_eq!(
        &history_after[1..],
        &history_before[..],
        "the packed history is kept under the rename"
    );
    let rename = &history_after[0];
    assert_eq!(rename.message, "unpack: renamed node n1 to n2");
    assert_eq!(rename.actor, "unpack");
    assert!(rename.revision > history_before[0].revision);
    let documents = sandbox
        .client()
        .config_documents(None)
        .await
        .expect("tree")
        .documents;
    assert!(
        documents.contains_key("/nodes/n2/node.json"),
        "{:?}",
        documents.keys()
    );
    assert!(documents.contains_key("/nodes/n2/servers/web1/server.json"));
    assert!(!documents.keys().any(|p| p.starts_with("/nodes/n1/")));

    // The host's agent now runs as `n2` on the same agent data directory.
    sandbox.stop_agent("n1").await.expect("agent stops");
    std::fs::rename(sandbox.agent_data("n1"), sandbox.agent_data("n2")).expect("move agent data");
    // Its certificate names `n1`: the renamed node joins again (the
    // sandbox gives it a join token for `n2`).
    for file in ["node.key", "node.crt"] {
        std::fs::remove_file(sandbox.agent_data("n2").join(file)).expect("remove n1's identity");
    }
    sandbox
        .add_agent("n2")
        .await
        .expect("agent `n2` comes online");
    let client = sandbox.client();
    for (name, pid) in &pids {
        let view = wait_server_state(&client, name, ServerState::Ready).await;
        assert_eq!(view.spec.node, "n2");
        assert_eq!(
            view.observed.pid,
            Some(*pid),
            "`{name}` was adopted, not restarted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_at_the_same_address_brings_independent_agents_back() {
    let (mut sandbox, pids) = running_domain().await;
    let archive = pack(&sandbox, &["--include-secrets"]);
    let url = sandbox.url();
    let port = url.rsplit(':').next().expect("port").to_string();
    sandbox.kill_controller().await.expect("controller killed");
    eventually("agent `n1` runs independent", SETTLE, || async {
        let status = sandbox.agent_status("n1").await.ok()?;
        (status.mode == AgentMode::Independent).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let data = sandbox.dir().join("restored");
    let (code, out, err) = cli(
        &sandbox,
        &unpack_args(
            archive.to_str().expect("utf-8"),
            data.to_str().expect("utf-8"),
            &["--port", &port],
        ),
    );
    assert_eq!(code, 0, "unpack failed: {out}{err}");
    sandbox
        .move_controller(&data)
        .await
        .expect("controller starts");
    assert_eq!(sandbox.url(), url, "same address as before");

    // The agent was never restarted: it finds the controller by itself.
    sandbox
        .wait_node_status("n1", NodeStatus::Online, SETTLE)
        .await
        .expect("agent back online");
    eventually("agent `n1` is managed again", SETTLE, || async {
        let status = sandbox.agent_status("n1").await.ok()?;
        (status.mode == AgentMode::Managed).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let client = sandbox.client();
    for (name, pid) in &pids {
        let view = wait_server_state(&client, name, ServerState::Ready).await;
        assert_eq!(
            view.observed.pid,
            Some(*pid),
            "`{name}` kept running throughout"
        );
    }
}

fn backups(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("backups"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_layers_under_env_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    std::fs::write(
        data.join("controller.toml"),
        format!("listen = \"127.0.0.1:{file_port}\"\nbackup_on_boot = 1\nheartbeat = \"1s\"\n"),
    )
    .expect("write config");
    let data_arg = data.to_str().expect("utf-8");

    // <data>/controller.toml is read by default; the env var beats it.
    let env_listen = format!("127.0.0.1:{env_port}");
    let (mut child, addr) = start_controller_process(
        dir.path(),
        &data,
        &["--data", data_arg],
        &[("DURE_LISTEN", &env_listen)],
    )
    .await;
    assert_eq!(addr, env_listen, "env beats the file");
    assert_eq!(backups(&data).len(), 1, "the file's backup_on_boot applies");
    child
        .terminate(Duration::from_secs(10))
        .await
        .expect("stops");

    // A flag beats the env var.
    let flag_listen = format!("127.0.0.1:{flag_port}");
    let (mut child, addr) = start_controller_process(
        dir.path(),
        &data,
        &[
            "--data",
            data_arg,
            "--listen",
            &flag_listen,
            "--backup-on-boot",
            "0",
        ],
        &[("DURE_LISTEN", &env_listen)],
    )
    .await;
    assert_eq!(addr, flag_listen, "the flag beats env and file");
    assert_eq!(backups(&data).len(), 1, "--backup-on-boot 0 wrote none");
    child
        .terminate(Duration::from_secs(10))
        .await
        .expect("stops");
}

#[test]
fn config_file_errors_name_the_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    let cases = [
        (
            "listen = \"127.0.0.1:0\"\nbackup_on_bot = 3\n",
            "line 2, field `backup_on_bot`",
            "unknown field",
        ),
        (
            "\nbackup_on_boot = \"three\"\n",
            "line 2, field `backup_on_boot`",
            "invalid type",
        ),
        (
            "heartbeat = \"soon\"\n",
            "line 1, field `heartbeat`",
            "soon",
        ),
    ];
    for (text, location, problem) in cases {
        std::fs::write(&file, text).expect("write");
        let output = std::process::Command::new(BIN)
            .args(["controller", "--config", file.to_str().expect("utf-8")])
            .env_remove("DURE_HOME")
            .current_dir(dir.path())
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "a bad file is invalid input: {err}"
        );
        assert!(
            err.contains(&format!("config file {}", file.display())),
            "{err}"
        );
        assert!(err.contains(location), "{text:?}: {err}");
        assert!(err.contains(problem), "{text:?}: {err}");
    }
    assert!(
        !dir.path().join(".dure").exists(),
        "nothing was started or created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_on_boot_keeps_the_newest_n_and_each_verifies() {
    const KEEP: usize = 2;
    let mut sandbox = sandbox(&[]).await;
    let data = sandbox.controller_data();
    std::fs::write(
        data.join("controller.toml"),
        format!("backup_on_boot = {KEEP}\n"),
    )
    .expect("write config");
    for i in 0..KEEP + 2 {
        // A save between boots: each pack holds another version, so each
        // has its own name (one boot at the same version within the same
        // second replaces that pack with an equal one).
        let node: dure_core::NodeSpec = serde_json::from_value(
            serde_json::json!({"name": format!("n{i}"), "address": "127.0.0.1"}),
        )
        .expect("node");
        sandbox
            .client()
            .with_save(Some(true))
            .put_node(&node)
            .await
            .expect("saved");
        sandbox.restart_controller().await.expect("restart");
    }
    let kept = backups(&data);
    assert_eq!(kept.len(), KEEP, "{kept:?}");
    let names: Vec<String> = kept
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.contains(&format!("-v{}-", KEEP + 2))),
        "the newest version is kept: {names:?}"
    );
    let mut revisions = Vec::new();
    for file in &kept {
        let (code, out, err) = cli(
            &sandbox,
            &[
                "domain",
                "verify",
                file.to_str().expect("utf-8"),
                "-o",
                "json",
            ],
        );
        assert_eq!(code, 0, "{}: {err}", file.display());
        let manifest: serde_json::Value = serde_json::from_str(&out).expect("manifest json");
        assert_eq!(manifest["secrets"], false, "automatic packs hold no token");
        revisions.push(manifest["revision"].as_u64().expect("revision"));
    }
    let events = sandbox
        .client()
        .events(&dure_api::EventQuery {
            subject: Some("controller".into()),
            ..Default::default()
        })
        .await
        .expect("events");
    let backups_logged = events.iter().filter(|e| e.kind == "backup").count();
    assert_eq!(backups_logged, KEEP + 2, "every start logged its backup");
    let current = sandbox.client().health().await.expect("health").revision;
    assert!(
        revisions.iter().all(|r| *r < current),
        "{revisions:?} < {current}"
    );
}
