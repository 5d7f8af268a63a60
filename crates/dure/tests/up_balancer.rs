//! `dure up --demo` puts the demo cluster behind a balancer it runs in
//! its own process, at `--lb-listen`, and says where; with that address
//! taken it exits 1 saying so and how to move it, leaving no demo server
//! running.

mod common;

use common::*;
use dure_testkit::{ChildProcess, ProcessMark};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// Starts `dure up --demo` with its data in `dir`, the demo from
/// `demo_port` and the balancer at `lb_port`.
fn up(dir: &Path, demo_port: u16, lb_port: u16, mark: &ProcessMark) -> ChildProcess {
    let data = dir.join("data");
    let demo_port = demo_port.to_string();
    let lb_listen = format!("127.0.0.1:{lb_port}");
    ChildProcess::spawn(
        Path::new(BIN),
        &[
            "up",
            "--data",
            data.to_str().expect("utf-8 path"),
            "--demo",
            "--demo-port",
            &demo_port,
            "--lb-listen",
            &lb_listen,
            "--listen",
            "127.0.0.1:0",
            "--stop-on-exit",
        ],
        &[mark.env()],
        &dir.join("up.log"),
    )
    .expect("dure up spawns")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dure_up_demo_serves_the_cluster_behind_its_balancer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mark = ProcessMark::new();
    let lb_port = free_port();
    let mut up = up(dir.path(), three_free_ports(), lb_port, &mark);
    let log = dir.path().join("up.log");
    let said = format!("curl http://127.0.0.1:{lb_port}/");
    eventually(
        "dure up says where the balancer is",
        Duration::from_secs(90),
        || async {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|text| text.contains(&said))
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let all: BTreeSet<String> = (1..=3).map(|i| format!("demo-{i}")).collect();
    eventually(
        "every demo member answers through the balancer",
        SETTLE,
        || async {
            let mut names = BTreeSet::new();
            for _ in 0..30 {
                let (code, body) = http_get(lb_port, "/").await?;
                (code == 200).then_some(())?;
                names.insert(body.trim().to_string());
            }
            (names == all).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    up.terminate(Duration::from_secs(30))
        .await
        .expect("dure up stops on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dure_up_demo_with_the_balancer_address_taken_exits_1_saying_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mark = ProcessMark::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let lb_port = taken.local_addr().expect("addr").port();
    let demo_port = three_free_ports();
    let mut up = up(dir.path(), demo_port, lb_port, &mark);
    let code = up
        .wait_exit(Duration::from_secs(90))
        .await
        .expect("dure up ends by itself")
        .code();
    let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "cannot put the demo cluster behind 127.0.0.1:{lb_port}"
        )),
        "{log}"
    );
    assert!(log.contains("--lb-listen"), "says how to move it: {log}");
    assert!(!log.contains("is running behind"), "{log}");
    eventually("the demo servers are stopped again", SETTLE, || async {
        http_get(demo_port, "/").await.is_none().then_some(())
    })
    .await
    .expect("demo-1 stopped");
    drop(taken);
}

/// The value `dure up` printed after `label` (`  api:    URL`).
fn banner_value(log: &str, label: &str) -> Option<String> {
    log.lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .map(|rest| rest.trim().to_string())
}

/// The balancer of a listen address, routing everything to `cluster`.
fn lb_on(name: &str, port: u16, cluster: &str) -> dure_core::LbSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "listeners": [{"listen": format!("127.0.0.1:{port}"), "routes": [{"cluster": cluster}]}],
    }))
    .expect("valid balancer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_dure_up_serves_balancer_local_once_it_is_defined() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mark = ProcessMark::new();
    let data = dir.path().join("data");
    let log_path = dir.path().join("up.log");
    let mut up = ChildProcess::spawn(
        Path::new(BIN),
        &[
            "up",
            "--data",
            data.to_str().expect("utf-8 path"),
            "--listen",
            "127.0.0.1:0",
            "--stop-on-exit",
        ],
        &[mark.env()],
        &log_path,
    )
    .expect("dure up spawns");
    let (url, token_path) = eventually(
        "dure up prints its banner",
        Duration::from_secs(90),
        || async {
            let log = std::fs::read_to_string(&log_path).ok()?;
            Some((banner_value(&log, "api:")?, banner_value(&log, "token:")?))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let token = std::fs::read_to_string(&token_path).expect("token file");
    let tls = dure_api::ClientTls::from_ca_file(&data.join(dure_api::CA_FILE)).expect("up's CA");
    let client = dure_api::Client::with_tls(&url, token.trim(), Some(&tls));
    eventually("node `local` is online", SETTLE, || async {
        client
            .list_nodes()
            .await
            .ok()?
            .iter()
            .any(|n| n.spec.name == "local" && n.status == dure_api::NodeStatus::Online)
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    client
        .create_server(&demo_server("web1", "local"))
        .await
        .expect("server created");
    create_cluster(&client, "web", &["web1"]).await;
    client
        .server_intent("web1", dure_core::Intent::Run)
        .await
        .expect("start");
    wait_server_state(&client, "web1", dure_core::ServerState::Ready).await;

    // Defined on a port someone holds: said in the log, and `dure up` goes on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    client
        .create_lb(&lb_on("local", taken_port, "web"))
        .await
        .expect("balancer defined");
    eventually("the taken port is reported", SETTLE, || async {
        std::fs::read_to_string(&log_path)
            .ok()
            .filter(|log| log.contains("cannot serve the balancer"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!up.has_exited(), "dure up keeps running");

    // Moved to a free port: served from this process at once.
    let lb_port = free_port();
    client
        .replace_lb(&lb_on("local", lb_port, "web"))
        .await
        .expect("balancer moved");
    eventually("web1 answers through balancer `local`", SETTLE, || async {
        let (code, body) = http_get(lb_port, "/").await?;
        (code == 200 && body.trim() == "web1").then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        )
    });
    drop(taken);
    up.terminate(Duration::from_secs(30))
        .await
        .expect("dure up stops on SIGTERM");
}
