//! The whole agent with a controller that never answers: INDEPENDENT mode
//! from the local copy, and damaged local copies refused whole.

use crate::support::*;
use dure_agent::process::ProcessId;
use dure_agent::{Agent, AgentConfig};
use dure_api::{AgentMode, AgentStatus, Client};
use dure_core::{DurationSpec, Intent, RestartMode, ServerState};
use std::time::Duration;

/// Nothing listens on port 1 of loopback.
const NO_CONTROLLER: &str = "http://127.0.0.1:1";

async fn start_agent(sandbox: &Sandbox, node: &str) -> (Agent, Client) {
    let config = AgentConfig::new(node, NO_CONTROLLER, "t", sandbox.dir.path());
    let agent = Agent::start(config).await.expect("agent starts");
    let client = Client::new(&agent.addr().to_string(), "t");
    (agent, client)
}

fn server<'a>(status: &'a AgentStatus, name: &str) -> Option<&'a dure_core::ObservedServer> {
    status.servers.iter().find(|s| s.name == name)
}

#[tokio::test]
async fn runs_the_local_copy_when_the_controller_cannot_be_reached() {
    let sandbox = Sandbox::new();
    let mut runner = sandbox.spec("runner", &["/bin/sleep", "60"]);
    runner.restart.mode = RestartMode::OnFailure;
    runner.restart.backoff = DurationSpec::from_millis(100);
    let idle = sandbox.spec("idle", &["/bin/sleep", "60"]);
    save_local_copy(
        &sandbox.layout,
        9,
        vec![
            desired(&runner, Intent::Run, 2),
            desired(&idle, Intent::Stop, 5),
        ],
    );

    let (agent, client) = start_agent(&sandbox, "n1").await;
    let first = client.agent_status().await.expect("status");
    assert_eq!(
        first.mode,
        AgentMode::Managed,
        "a grace before going independent"
    );
    assert_eq!(first.local_copy_index, Some(9));
    assert!(first.servers.is_empty(), "nothing started yet: {first:?}");

    let status = wait_status(&client, "independent with `runner` ready", |s| {
        s.mode == AgentMode::Independent
            && server(s, "runner").is_some_and(|r| r.state == ServerState::Ready)
    })
    .await;
    assert!(status.independent_since_ms.is_some());
    assert!(status.local_copy_error.is_none());
    let ran = server(&status, "runner").unwrap();
    assert_eq!(ran.generation, 2);
    let idle_now = server(&status, "idle").expect("supervised");
    assert_eq!((idle_now.state, idle_now.pid), (ServerState::Stopped, None));

    // Restart policy still applies while independent.
    let pid = ran.pid.expect("pid");
    let id = ProcessId::of(pid).unwrap().expect("running");
    assert!(id.signal_group(libc::SIGKILL).unwrap());
    let again = wait_status(&client, "`runner` restarted", |s| {
        server(s, "runner").is_some_and(|r| {
            r.restarts == 1 && r.state == ServerState::Ready && r.pid.is_some_and(|p| p != pid)
        })
    })
    .await;
    assert_eq!(again.mode, AgentMode::Independent);
    agent.shutdown().await.expect("shutdown");
}

/// One way a local copy gets damaged.
struct Damage {
    what: &'static str,
    apply: fn(&[u8]) -> Vec<u8>,
    /// What the refusal must say.
    says: &'static str,
}

const DAMAGES: [Damage; 3] = [
    Damage {
        what: "a changed byte in the payload",
        apply: |bytes| {
            let text = String::from_utf8_lossy(bytes).replace("/bin/sleep", "/bin/sleeq");
            text.into_bytes()
        },
        says: "fails its checksum",
    },
    Damage {
        what: "a truncated file",
        apply: |bytes| bytes[..bytes.len() * 2 / 3].to_vec(),
        says: "not a valid local copy file",
    },
    Damage {
        what: "garbage",
        apply: |_| b"\x7fELF\x02\x01 not json at all".to_vec(),
        says: "not a valid local copy file",
    },
];

#[tokio::test]
async fn a_damaged_local_copy_is_refused_whole_and_moved_aside() {
    for Damage {
        what: damage,
        apply,
        says,
    } in DAMAGES
    {
        let sandbox = Sandbox::new();
        let spec = sandbox.spec("web1", &["/bin/sleep", "60"]);
        save_local_copy(&sandbox.layout, 3, vec![desired(&spec, Intent::Run, 1)]);
        let path = sandbox.layout.local_copy();
        let bytes = std::fs::read(&path).unwrap();
        let damaged = apply(&bytes);
        assert_ne!(bytes, damaged, "{damage}");
        std::fs::write(&path, damaged).unwrap();

        let (agent, client) = start_agent(&sandbox, "n1").await;
        let status =
            wait_status(&client, "independent", |s| s.mode == AgentMode::Independent).await;
        let error = status.local_copy_error.clone().unwrap_or_default();
        assert!(error.contains(says), "{damage}: {error}");
        assert!(error.contains("moved it aside"), "{damage}: {error}");
        assert_eq!(status.local_copy_index, None, "{damage}");
        // Give a wrongly started server time to show up.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let status = client.agent_status().await.unwrap();
        assert!(status.servers.is_empty(), "{damage}: {status:?}");
        assert!(sandbox.marked_processes().is_empty(), "{damage}");
        assert!(!path.exists(), "{damage}: still in place");
        let aside: Vec<String> = std::fs::read_dir(sandbox.dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("desired-state.json.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{damage}: {aside:?}");
        agent.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn a_local_copy_of_another_node_is_refused() {
    let sandbox = Sandbox::new();
    let spec = sandbox.spec("web1", &["/bin/sleep", "60"]);
    save_local_copy(&sandbox.layout, 3, vec![desired(&spec, Intent::Run, 1)]);
    let (agent, client) = start_agent(&sandbox, "n2").await;
    let status = client.agent_status().await.expect("status");
    let error = status.local_copy_error.unwrap_or_default();
    assert!(
        error.contains("the local copy is for node `n1`, not for this agent's node `n2`"),
        "{error}"
    );
    let status = wait_status(&client, "independent", |s| s.mode == AgentMode::Independent).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        client.agent_status().await.unwrap().servers.is_empty(),
        "{status:?}"
    );
    assert!(sandbox.marked_processes().is_empty());
    agent.shutdown().await.expect("shutdown");
}
