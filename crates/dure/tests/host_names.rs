//! Host names where addresses are given: a controller listening on
//! `localhost:0`, a verb reaching it at `https://localhost:PORT`, an agent
//! whose `--controller`, `--listen` and `--advertise` name `localhost`, and
//! a listen name that does not resolve refused before anything starts.

mod common;

use common::*;
use dure_api::{Client, NodeStatus};
use dure_testkit::ChildProcess;
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_verbs_accept_host_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("controller");
    let data_text = data.to_str().expect("utf-8");
    let (_controller, addr) = start_controller_process(
        dir.path(),
        &data,
        &[
            "--data",
            data_text,
            "--listen",
            "localhost:0",
            "--auto-save",
        ],
        &[],
    )
    .await;
    let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
    assert!(addr.ip().is_loopback(), "{addr}");
    let url = format!("https://localhost:{}", addr.port());
    // The certificate names `localhost`, so the CA verifies it there too.
    let ca = data.join(dure_api::CA_FILE);
    dure_testkit::register_ca(&url, &ca);
    let token_file = data.join("admin.token");
    let token = std::fs::read_to_string(&token_file).expect("admin token");

    let (code, out, err) = cli_at(&url, token.trim(), &["node", "list"]);
    assert_eq!(code, 0, "{out}{err}");

    let agent_data = dir.path().join("agent");
    let log = dir.path().join("agent.log");
    let token_path = token_file.to_str().expect("utf-8");
    let agent_dir = agent_data.to_str().expect("utf-8");
    let _agent = ChildProcess::spawn(
        Path::new(BIN),
        &[
            "agent",
            "--node",
            "h1",
            "--controller",
            &url,
            "--ca",
            ca.to_str().expect("utf-8"),
            "--token-file",
            token_path,
            "--data",
            agent_dir,
            "--listen",
            "localhost:0",
            "--advertise",
            "localhost",
        ],
        &[],
        &log,
    )
    .expect("agent starts");
    let tls = dure_api::ClientTls::from_ca_file(&ca).expect("the controller's CA");
    let client = Client::with_tls(&url, token.trim(), Some(&tls));
    let node = eventually(
        "the agent reaches `localhost` and registers",
        SETTLE,
        || async {
            client
                .get_node("h1")
                .await
                .ok()
                .filter(|n| n.status == NodeStatus::Online)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    assert_eq!(node.spec.address, "localhost");
}

#[test]
fn a_listen_name_that_does_not_resolve_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    for args in [
        vec!["controller", "--listen", "nowhere.invalid:7070"],
        vec!["up", "--listen", "nowhere.invalid:7070"],
        vec![
            "agent",
            "--node",
            "n1",
            "--token",
            "t",
            "--listen",
            "nowhere.invalid:0",
        ],
    ] {
        let output = std::process::Command::new(BIN)
            .args(&args)
            .arg("--data")
            .arg(&data)
            .output()
            .expect("run dure");
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("host name `nowhere.invalid`") && err.contains("does not resolve"),
            "{args:?}: {err}"
        );
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
}
