//! The whole agent without a controller: its endpoint, auth, adoption at
//! start, and shutdown leaving servers running.

use crate::support::*;
use dure_agent::process::{Liveness, ProcessId};
use dure_agent::supervisor::Supervisor;
use dure_agent::{Agent, AgentConfig};
use dure_api::{Client, ClientError, LogQuery};
use dure_core::{Intent, ServerState};

#[tokio::test]
async fn serves_status_and_logs_without_a_controller_and_leaves_servers_running() {
    let sandbox = Sandbox::new();
    // A server left running by an earlier agent.
    let spec = sandbox.spec(
        "web1",
        &["/bin/sh", "-c", "echo hello from web1; exec sleep 60"],
    );
    let earlier = Supervisor::start(&sandbox.layout, "web1");
    earlier.set_desired(desired(&spec, Intent::Run, 3));
    let pid = wait_for(&earlier, LONG, "ready", |o| o.state == ServerState::Ready)
        .await
        .pid
        .unwrap();
    drop(earlier);
    save_local_copy(&sandbox.layout, 7, vec![desired(&spec, Intent::Run, 3)]);

    let config = AgentConfig::new("n1", "http://127.0.0.1:1", "s3cret", sandbox.dir.path());
    let agent = Agent::start(config)
        .await
        .expect("agent starts without a controller");
    let addr = agent.addr();
    let written = std::fs::read_to_string(sandbox.dir.path().join("agent.addr")).unwrap();
    assert_eq!(written.trim(), addr.to_string());

    let client = Client::new(&addr.to_string(), "s3cret");
    let status = client.agent_status().await.expect("status");
    assert_eq!(status.node, "n1");
    assert!(!status.controller_reachable);
    assert_eq!(status.local_copy_index, Some(7));
    assert_eq!(status.servers.len(), 1, "{status:?}");
    assert_eq!(status.servers[0].name, "web1");
    assert_eq!(status.servers[0].pid, Some(pid));
    assert!(status.servers[0].state.is_alive(), "{status:?}");
    // Adopted, then probed by its spec in the local copy without any controller.
    let status = wait_status(&client, "`web1` ready", |s| {
        s.servers[0].state == ServerState::Ready
    })
    .await;
    assert_eq!(status.servers[0].pid, Some(pid));

    eventually(LONG, "the greeting in the log", || {
        std::fs::read_to_string(sandbox.layout.log_path("web1"))
            .is_ok_and(|log| log.contains("hello from web1"))
    })
    .await;
    let chunk = client
        .agent_logs("web1", &LogQuery::default())
        .await
        .expect("logs");
    assert!(chunk.data.contains("hello from web1"), "{chunk:?}");
    assert_eq!(chunk.next_offset, chunk.size);
    let past_end = client
        .agent_logs(
            "web1",
            &LogQuery {
                offset: Some(chunk.size + 1000),
                ..LogQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(past_end.offset, 0);

    match client.agent_logs("nope", &LogQuery::default()).await {
        Err(ClientError::Api {
            status: 404, code, ..
        }) => assert_eq!(code, "not_found"),
        other => panic!("expected 404, got {other:?}"),
    }
    match client.agent_logs("..", &LogQuery::default()).await {
        Err(ClientError::Api { status: 404, .. }) => {}
        other => panic!("expected 404, got {other:?}"),
    }

    for token in ["wrong", ""] {
        match Client::new(&addr.to_string(), token).agent_status().await {
            Err(ClientError::Auth {
                status: 401,
                message,
            }) => {
                assert!(message.contains("bearer token"), "{message}")
            }
            other => panic!("expected 401, got {other:?}"),
        }
    }

    agent.shutdown().await.expect("shutdown");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the endpoint is closed"
    );
    let id = ProcessId::of(pid).unwrap().expect("server still running");
    assert_eq!(id.liveness(), Liveness::Alive);
}

#[tokio::test]
async fn dropping_the_agent_leaves_servers_running() {
    let sandbox = Sandbox::new();
    let spec = sandbox.spec("web2", &["/bin/sleep", "60"]);
    let earlier = Supervisor::start(&sandbox.layout, "web2");
    earlier.set_desired(desired(&spec, Intent::Run, 1));
    let pid = wait_for(&earlier, LONG, "ready", |o| o.state == ServerState::Ready)
        .await
        .pid
        .unwrap();
    drop(earlier);

    let config = AgentConfig::new("n1", "http://127.0.0.1:1", "t", sandbox.dir.path());
    let agent = Agent::start(config).await.unwrap();
    drop(agent);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let id = ProcessId::of(pid).unwrap().expect("server still running");
    assert_eq!(id.liveness(), Liveness::Alive);
}

#[tokio::test]
async fn a_second_agent_on_the_same_data_directory_is_refused() {
    let sandbox = Sandbox::new();
    let config = AgentConfig::new("n1", "http://127.0.0.1:1", "t", sandbox.dir.path());
    let first = Agent::start(config.clone()).await.expect("first agent");
    let error = match Agent::start(config.clone()).await {
        Ok(_) => panic!("two agents run on one data directory"),
        Err(error) => format!("{error:#}"),
    };
    assert_eq!(
        error,
        format!(
            "data directory `{}` is in use by another agent (pid {}); stop that agent or use another data directory",
            sandbox.dir.path().display(),
            std::process::id()
        )
    );
    first.shutdown().await.expect("shutdown");
    let again = Agent::start(config)
        .await
        .expect("free once the first stopped");
    again.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_requests_get_specific_json_errors() {
    let sandbox = Sandbox::new();
    let config = AgentConfig::new("n1", "http://127.0.0.1:1", "t", sandbox.dir.path());
    let agent = Agent::start(config).await.expect("agent starts");
    let http = reqwest::Client::new();
    let base = format!("http://{}", agent.addr());
    let cases = [
        (
            reqwest::Method::POST,
            "/v1/status",
            405,
            "method_not_allowed",
            "POST is not allowed on /v1/status",
        ),
        (
            reqwest::Method::GET,
            "/v1/logs/%FF",
            400,
            "invalid",
            "invalid server name in the path",
        ),
        (
            reqwest::Method::GET,
            "/v1/logs/web1?offset=-1",
            400,
            "invalid",
            "invalid log query",
        ),
        (
            reqwest::Method::GET,
            "/v1/nowhere",
            404,
            "not_found",
            "no such endpoint on the agent: GET /v1/nowhere",
        ),
    ];
    for (method, path, status, code, says) in cases {
        let response = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth("t")
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let body: dure_api::ErrorBody = response.json().await.expect("a json error body");
        assert_eq!(body.error.code, code, "{method} {path}");
        assert!(
            body.error.message.starts_with(says),
            "{method} {path}: {}",
            body.error.message
        );
    }
    agent.shutdown().await.expect("shutdown");
}
