//! Shared helpers of the end-to-end tests: a sandbox with agents, server
//! definitions running the built-in demo app, and bounded waits on state.
#![allow(dead_code)]

use dure_api::{Client, ClusterView, Operation, OperationKind, OperationStatus, ServerView};
use dure_core::{ClusterStatus, ReadyCheck, ServerSpec, ServerState};
use dure_testkit::SandboxOptions;
pub use dure_testkit::{eventually, free_port, Sandbox};
use std::time::Duration;

pub mod load;
pub mod membership;
pub mod tomcat;

pub const BIN: &str = env!("CARGO_BIN_EXE_dure");

/// Generous bound for anything that should settle within a second or two.
pub const SETTLE: Duration = Duration::from_secs(30);

/// A sandbox with a controller and one agent per node name.
pub async fn sandbox(nodes: &[&str]) -> Sandbox {
    let mut sandbox = Sandbox::start(BIN).await.expect("controller starts");
    for node in nodes {
        sandbox.add_agent(node).await.expect("agent starts");
    }
    sandbox
}

/// A sandbox whose controller stages changes unless told to save, as a
/// plain `dure controller` does, with an agent on node `n1`.
pub async fn staging_sandbox() -> Sandbox {
    let options = SandboxOptions {
        auto_save: false,
        ..SandboxOptions::default()
    };
    let mut sandbox = Sandbox::start_with(BIN, options)
        .await
        .expect("controller starts");
    sandbox.add_agent("n1").await.expect("agent starts");
    sandbox
}

/// A server running `dure demo-app` on a free port, ready on `/health`.
pub fn demo_server(name: &str, node: &str) -> ServerSpec {
    demo_server_with(name, node, &[])
}

/// A demo-app server with extra demo-app arguments (such as `--bind`).
pub fn demo_server_with(name: &str, node: &str, extra: &[&str]) -> ServerSpec {
    let port = free_port();
    let mut argv = vec![
        BIN.to_string(),
        "demo-app".into(),
        "--name".into(),
        name.into(),
        "--port".into(),
        port.to_string(),
    ];
    argv.extend(extra.iter().map(|a| a.to_string()));
    command_server(name, node, port, argv).with_ready("http:/health")
}

/// A server running an arbitrary command with an `http` port.
pub fn command_server(name: &str, node: &str, port: u16, argv: Vec<String>) -> ServerSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "node": node,
        "argv": argv,
        "ports": {"http": port},
        "ready": {"check": "none", "interval": "100ms", "start_timeout": "20s"},
        "stop": {"timeout": "5s"},
        "restart": {"mode": "on-failure", "max_restarts": 3, "backoff": "100ms"}
    }))
    .expect("valid server spec")
}

pub trait SpecExt {
    fn with_ready(self, check: &str) -> Self;
}

impl SpecExt for ServerSpec {
    fn with_ready(mut self, check: &str) -> Self {
        self.ready.check = check.parse::<ReadyCheck>().expect("valid check");
        self
    }
}

/// Creates a cluster of the given members.
pub async fn create_cluster(client: &Client, name: &str, members: &[&str]) -> ClusterView {
    let spec = serde_json::from_value(serde_json::json!({"name": name, "members": members}))
        .expect("valid cluster spec");
    client.create_cluster(&spec).await.expect("cluster created")
}

pub async fn wait_server_state(client: &Client, name: &str, state: ServerState) -> ServerView {
    eventually(
        &format!("server `{name}` becomes {state}"),
        SETTLE,
        || async {
            client
                .get_server(name)
                .await
                .ok()
                .filter(|v| v.observed.state == state)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn wait_cluster_status(
    client: &Client,
    name: &str,
    status: ClusterStatus,
) -> ClusterView {
    eventually(
        &format!("cluster `{name}` turns {status}"),
        SETTLE,
        || async {
            client
                .get_cluster(name)
                .await
                .ok()
                .filter(|v| v.status == status)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until an operation ends.
pub async fn wait_operation(client: &Client, id: &str) -> Operation {
    eventually(
        &format!("operation `{id}` ends"),
        Duration::from_secs(90),
        || async {
            client
                .get_operation(id)
                .await
                .ok()
                .filter(|op| op.status != OperationStatus::Running)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The status and body of `GET path` on a local port, or `None` if
/// nothing answers.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Whether a process exists.
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })
            .unwrap_or(true)
}

/// `dure ARGS` with no `DURE_` variable from the caller but `env`, in
/// `cwd` when given (where `./.dure` is looked for).
pub fn dure_isolated(
    cwd: Option<&std::path::Path>,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = std::process::Command::new(BIN);
    for var in [
        "DURE_ADDR",
        "DURE_TOKEN",
        "DURE_TOKEN_FILE",
        "DURE_DATA",
        "DURE_HOME",
        "DURE_CA",
    ] {
        command.env_remove(var);
    }
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run dure")
}

/// Runs the `dure` CLI against the sandbox; returns (exit code, stdout, stderr).
pub fn cli(sandbox: &Sandbox, args: &[&str]) -> (i32, String, String) {
    cli_at(&sandbox.url(), sandbox.token(), args)
}

/// Runs the `dure` CLI against the controller at `url`, trusting its CA
/// when it was started by this test.
pub fn cli_at(url: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(BIN)
        .args(args)
        .env("DURE_ADDR", url)
        .env("DURE_TOKEN", token)
        .envs(dure_testkit::ca_for(url).map(|ca| ("DURE_CA", ca)))
        .env_remove("DURE_HOME")
        .output()
        .expect("cli runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An API client of the controller at `url`, trusting its CA when it was
/// started by this test.
pub fn client_at(url: &str, token: &str) -> Client {
    let tls = dure_testkit::ca_for(url)
        .map(|ca| dure_api::ClientTls::from_ca_file(&ca).expect("the controller's CA"));
    Client::with_tls(url, token, tls.as_ref())
}

/// Starts `dure controller` with `args` and `env` in `dir`, waits for its
/// address file, and returns the process and the address it bound; its
/// CA is known to [`cli_at`] as `https://ADDR`'s.
pub async fn start_controller_process(
    dir: &std::path::Path,
    data: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (dure_testkit::ChildProcess, String) {
    let _ = std::fs::remove_file(data.join("controller.addr"));
    let log = dir.join("controller.log");
    let mut all = vec!["controller"];
    all.extend_from_slice(args);
    let child = dure_testkit::ChildProcess::spawn(std::path::Path::new(BIN), &all, env, &log)
        .expect("spawn controller");
    let addr = dure_testkit::wait_for_addr_file(&data.join("controller.addr"), SETTLE)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "controller did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    dure_testkit::register_ca(&format!("https://{addr}"), &data.join(dure_api::CA_FILE));
    (child, addr)
}

/// Three consecutive free loopback ports, for the demo's `--demo-port`.
pub fn three_free_ports() -> u16 {
    dure_testkit::free_ports_in_a_row(3)
}

/// The arguments of `dure lb run` serving balancer `name` from the
/// sandbox's controller with its admin token file.
pub fn lb_run_args(sandbox: &Sandbox, name: &str) -> Vec<String> {
    let token_file = sandbox.controller_data().join("admin.token");
    let ca = sandbox.ca_file();
    [
        "lb",
        "run",
        "--name",
        name,
        "--controller",
        &sandbox.url(),
        "--token-file",
        token_file.to_str().expect("utf-8 path"),
        "--ca",
        ca.to_str().expect("utf-8 path"),
    ]
    .map(str::to_string)
    .to_vec()
}

/// Starts `dure lb run` for balancer `name` on this host, its output in
/// `<sandbox>/<log>`; it ends with the sandbox's mark.
pub fn spawn_lb(sandbox: &Sandbox, name: &str, log: &str) -> dure_testkit::ChildProcess {
    let args = lb_run_args(sandbox, name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    dure_testkit::ChildProcess::spawn(
        sandbox.bin(),
        &args,
        &[sandbox.mark_env()],
        &sandbox.dir().join(log),
    )
    .expect("balancer spawns")
}

/// Starts cluster `name` and waits until every member is ready (green).
pub async fn start_green(client: &Client, name: &str) {
    let op = client
        .cluster_operation(name, OperationKind::Start, &Default::default())
        .await
        .expect("start accepted");
    wait_operation(client, &op.id).await;
    wait_cluster_status(client, name, ClusterStatus::Green).await;
}

/// Defines balancer `lb` with every request on a free loopback port going
/// to `cluster`, through the CLI; returns the port.
pub fn create_lb_for(sandbox: &Sandbox, lb: &str, cluster: &str) -> u16 {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (code, _, err) = cli(
        sandbox,
        &["lb", "create", lb, "--listen", &listen, "--route", cluster],
    );
    assert_eq!(code, 0, "{err}");
    port
}

/// The demo apps that answer `/` on `port` of 127.0.0.1 over `requests`
/// requests, and how many of them failed.
pub async fn answering(port: u16, requests: usize) -> (std::collections::BTreeSet<String>, usize) {
    let mut names = std::collections::BTreeSet::new();
    let mut failed = 0;
    for _ in 0..requests {
        match http_get(port, "/").await {
            Some((200, body)) => {
                names.insert(body.trim().to_string());
            }
            _ => failed += 1,
        }
    }
    (names, failed)
}
