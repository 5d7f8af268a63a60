//! An agent whose token the controller refuses says so (naming the
//! controller and where the token came from) instead of calling the
//! controller unreachable: with no local copy of its desired state it exits
//! 3 at once; with one it runs INDEPENDENT from it, keeps its servers and
//! logs the refusal once a minute, not on every retry.

mod common;

use common::*;
use dure_api::{AgentMode, AgentStatus, Client};
use dure_core::{Intent, ServerState};
use dure_testkit::{eventually, wait_for_addr_file, ChildProcess};
use std::path::Path;
use std::time::Duration;

/// How long a refused agent may take to give up.
const GIVE_UP: Duration = Duration::from_secs(20);
/// What every refusal line says.
const REFUSED: &str = "refused the agent's token";

/// Starts `dure agent` for `node` on `data` with `token` given as `--token`,
/// logging to `log`.
fn agent_with_token(
    sandbox: &Sandbox,
    node: &str,
    data: &Path,
    token: &str,
    log: &Path,
) -> ChildProcess {
    let data = data.to_string_lossy();
    let url = sandbox.url();
    let ca = sandbox.ca_file();
    let ca = ca.to_string_lossy();
    let args = [
        "agent",
        "--controller",
        &url,
        "--ca",
        &ca,
        "--node",
        node,
        "--data",
        &data,
        "--token",
        token,
    ];
    ChildProcess::spawn(sandbox.bin(), &args, &[sandbox.mark_env()], log).expect("agent spawns")
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_without_a_local_copy_exits_3_saying_so() {
    let sandbox = sandbox(&[]).await;
    let log = sandbox.dir().join("refused.log");
    let data = sandbox.dir().join("fresh-agent");
    let mut agent = agent_with_token(&sandbox, "n1", &data, "not-the-token", &log);
    let status = agent
        .wait_exit(GIVE_UP)
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", read(&log)));
    let text = read(&log);
    assert_eq!(status.code(), Some(3), "{text}");
    for part in [REFUSED, sandbox.url().as_str(), "--token", "no local copy"] {
        assert!(text.contains(part), "`{part}` missing from:\n{text}");
    }
    assert!(!text.contains("cannot be reached"), "{text}");
    assert!(!text.contains("INDEPENDENT"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_with_a_local_copy_runs_independent_and_logs_the_refusal_once() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    let web = demo_server("web1", "n1");
    client.create_server(&web).await.expect("created");
    client
        .server_intent("web1", Intent::Run)
        .await
        .expect("start");
    let ready = wait_server_state(&client, "web1", ServerState::Ready).await;
    let pid = ready.observed.pid.expect("web1 pid");
    eventually("a local copy saved", SETTLE, || async {
        sandbox
            .agent_status("n1")
            .await
            .ok()
            .filter(|s| s.local_copy_index.is_some())
    })
    .await
    .expect("local copy");
    sandbox.stop_agent("n1").await.expect("agent stops");

    let data = sandbox.agent_data("n1");
    let _ = std::fs::remove_file(data.join("agent.addr"));
    let log = sandbox.dir().join("refused.log");
    let mut agent = agent_with_token(&sandbox, "n1", &data, "not-the-token", &log);
    let addr = wait_for_addr_file(&data.join("agent.addr"), GIVE_UP)
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", read(&log)));
    let agent_client = Client::new(&format!("http://{addr}"), "not-the-token");
    let status: AgentStatus = eventually("the agent INDEPENDENT", GIVE_UP, || async {
        agent_client
            .agent_status()
            .await
            .ok()
            .filter(|s| s.mode == AgentMode::Independent)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", read(&log)));
    assert!(!status.controller_reachable);
    let web1 = status
        .servers
        .iter()
        .find(|s| s.name == "web1")
        .expect("web1");
    assert_eq!(
        (web1.state, web1.pid),
        (ServerState::Ready, Some(pid)),
        "kept running"
    );
    assert!(alive(pid));

    // The agent retries registering every 2 s at most; several retries
    // later the refusal is still logged once (and named once more when
    // entering INDEPENDENT mode).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        !agent.has_exited(),
        "runs from its local copy:\n{}",
        read(&log)
    );
    let text = read(&log);
    let refusals = text
        .lines()
        .filter(|line| line.contains(REFUSED) && line.contains("servers keep running, retrying"))
        .count();
    assert_eq!(refusals, 1, "{text}");
    let entering = text
        .lines()
        .filter(|line| line.contains("entering INDEPENDENT mode") && line.contains(REFUSED))
        .count();
    assert_eq!(entering, 1, "{text}");
    assert!(text.contains(&sandbox.url()), "{text}");
    assert!(text.contains("--token"), "{text}");
    assert!(!text.contains("cannot be reached"), "{text}");
    assert_eq!(
        http_get(web.ports["http"], "/").await.map(|r| r.0),
        Some(200)
    );
    agent
        .terminate(Duration::from_secs(10))
        .await
        .expect("agent stops");
}
