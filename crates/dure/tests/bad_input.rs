//! Every bad request is answered with the right status, a JSON error with a
//! specific message, and changes nothing.

mod common;

use common::*;
use dure_api::OperationKind;
use dure_core::operation::OperationOptions;
use reqwest::Method;
use serde_json::{json, Value};

/// Sends a raw request and returns (status, error code, error message).
async fn raw(
    url: &str,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut request = dure_testkit::http_client_for(url).request(method, format!("{url}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("controller answers");
    let status = response.status().as_u16();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    let code = value["error"]["code"].as_str().unwrap_or("").to_string();
    let message = value["error"]["message"].as_str().unwrap_or("").to_string();
    (status, code, message)
}

fn server_json(name: &str, node: &str, port: u16) -> String {
    json!({"name": name, "node": node, "argv": ["sleep", "60"], "ports": {"http": port}})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_specific_errors_and_change_nothing() {
    let sandbox = sandbox(&["n1"]).await;
    let url = sandbox.url();
    let token = Some(sandbox.token());
    let client = sandbox.client();
    let call = |method: Method, path: &'static str, body: Option<String>| {
        let url = url.clone();
        async move { raw(&url, token, method, path, body.as_deref()).await }
    };

    // Authentication.
    let (status, code, message) = raw(&url, None, Method::GET, "/v1/servers", None).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert!(message.contains("missing bearer token"), "{message}");
    let (status, _, _) = raw(&url, None, Method::GET, "/v1/health", None).await;
    assert_eq!(status, 200, "the health check needs no token");
    let (status, _, message) = raw(&url, Some("wrong"), Method::GET, "/v1/servers", None).await;
    assert_eq!(status, 401);
    assert!(message.contains("not valid"), "{message}");

    // A valid server to conflict with.
    let (status, _, _) = call(
        Method::POST,
        "/v1/servers",
        Some(server_json("web1", "n1", 19080)),
    )
    .await;
    assert_eq!(status, 201);

    let cases: Vec<(Option<String>, u16, &str, &str)> = vec![
        (
            Some(server_json("bad name", "n1", 1)),
            400,
            "invalid",
            "server name `bad name` is invalid: names are 1-63 characters",
        ),
        (
            Some(server_json("-x", "n1", 1)),
            400,
            "invalid",
            "starting with a letter or digit",
        ),
        (
            Some(server_json("web1", "n1", 19999)),
            409,
            "conflict",
            "server `web1` already exists",
        ),
        (
            Some(server_json("web2", "n1", 19080)),
            409,
            "conflict",
            "server `web2` port 19080 is already used by `web1` on node `n1`",
        ),
        (
            Some(server_json("web3", "nowhere", 1)),
            400,
            "invalid",
            "node `nowhere`, which does not exist",
        ),
        (
            Some("{not json".into()),
            400,
            "invalid",
            "request body is invalid",
        ),
        (
            Some(json!({"name": "x", "node": "n1", "argv": ["a"], "colour": 1}).to_string()),
            400,
            "invalid",
            "unknown field `colour`",
        ),
        (
            Some(json!({"name": "x", "node": "n1", "argv": []}).to_string()),
            400,
            "invalid",
            "has no command",
        ),
        (
            Some(
                json!({"name": "x", "node": "n1", "argv": ["a"], "ports": {"http": 70000}})
                    .to_string(),
            ),
            400,
            "invalid",
            "request body is invalid",
        ),
        (
            Some(
                json!({"name": "x", "node": "n1", "argv": ["a"], "ready": {"check": "tcp:admin"}})
                    .to_string(),
            ),
            400,
            "invalid",
            "define port `admin` or check another",
        ),
        (
            Some(
                json!({"name": "x", "node": "n1", "argv": ["a"], "stop": {"timeout": "soon"}})
                    .to_string(),
            ),
            400,
            "invalid",
            "duration `soon` is invalid",
        ),
        (
            Some(
                json!({"name": "x", "node": "n1", "argv": ["a"], "ready": {"check": "ftp:/"}})
                    .to_string(),
            ),
            400,
            "invalid",
            "readiness check `ftp:/` is invalid",
        ),
        (
            Some(json!({"name": "x", "node": "n1", "argv": ["a"], "weight": 5000}).to_string()),
            400,
            "invalid",
            "weight 5000 is too large",
        ),
    ];
    for (body, want_status, want_code, want_message) in cases {
        let (status, code, message) = call(Method::POST, "/v1/servers", body.clone()).await;
        assert_eq!(
            (status, code.as_str()),
            (want_status, want_code),
            "{body:?}: {message}"
        );
        assert!(
            message.contains(want_message),
            "{body:?}: `{message}` lacks `{want_message}`"
        );
    }
    let servers = client.list_servers().await.expect("list");
    assert_eq!(
        servers.len(),
        1,
        "refused requests created nothing: {servers:?}"
    );
    assert_eq!(servers[0].spec.ports["http"], 19080);

    // Clusters.
    let (status, _, message) = call(
        Method::POST,
        "/v1/clusters",
        Some(json!({"name": "c", "members": []}).to_string()),
    )
    .await;
    assert_eq!(status, 400);
    assert!(message.contains("at least one"), "{message}");
    let (status, _, message) = call(
        Method::POST,
        "/v1/clusters",
        Some(json!({"name": "c", "members": ["ghost"]}).to_string()),
    )
    .await;
    assert_eq!(status, 400);
    assert!(message.contains("`ghost` is not a server"), "{message}");
    let (status, _, _) = call(
        Method::POST,
        "/v1/clusters",
        Some(json!({"name": "c", "members": ["web1"]}).to_string()),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _, message) = call(
        Method::POST,
        "/v1/clusters",
        Some(json!({"name": "d", "members": ["web1"]}).to_string()),
    )
    .await;
    assert_eq!(status, 409);
    assert!(
        message.contains("already a member of cluster `c`"),
        "{message}"
    );
    let (status, _, message) = call(Method::DELETE, "/v1/clusters/c/members/web1", None).await;
    assert_eq!(status, 400);
    assert!(message.contains("at least one"), "{message}");
    let (status, _, message) = call(Method::DELETE, "/v1/servers/web1", None).await;
    assert_eq!(status, 409);
    assert!(message.contains("member of cluster `c`"), "{message}");
    let (status, _, message) = call(Method::POST, "/v1/clusters/c/explode", None).await;
    assert_eq!(status, 404);
    assert!(
        message.contains("use start, stop, kill or restart"),
        "{message}"
    );
    let (status, _, message) = call(
        Method::POST,
        "/v1/clusters/c/start",
        Some(json!({"paralel": true}).to_string()),
    )
    .await;
    assert_eq!(status, 400);
    assert!(message.contains("unknown field `paralel`"), "{message}");
    let (status, _, message) = call(Method::POST, "/v1/clusters/nope/start", None).await;
    assert_eq!(status, 404);
    assert!(
        message.contains("cluster `nope` does not exist"),
        "{message}"
    );

    // Not found.
    for (path, needle) in [
        ("/v1/servers/ghost", "server `ghost` does not exist"),
        ("/v1/clusters/ghost", "cluster `ghost` does not exist"),
        ("/v1/operations/op-999", "operation `op-999` does not exist"),
        ("/v1/nowhere", "no such endpoint"),
    ] {
        let (status, code, message) = call(Method::GET, path, None).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}");
        assert!(message.contains(needle), "{path}: {message}");
    }

    // Agent endpoints.
    let (status, _, message) =
        call(Method::GET, "/v1/agent/nodes/n1/desired?wait=forever", None).await;
    assert_eq!(status, 400);
    assert!(message.contains("duration `forever`"), "{message}");
    let (status, _, message) = call(Method::GET, "/v1/agent/nodes/ghost/desired", None).await;
    assert_eq!(status, 404);
    assert!(message.contains("node `ghost` does not exist"), "{message}");
    let (status, _, _) = call(
        Method::POST,
        "/v1/agent/register",
        Some(
            json!({"node": "../etc", "address": "x", "agent_port": 1, "version": "1"}).to_string(),
        ),
    )
    .await;
    assert_eq!(status, 400);

    // A running server cannot be deleted unless stopping it is asked for.
    client.delete_cluster("c").await.expect("cluster deleted");
    let op_server = demo_server("live", "n1");
    client
        .create_server(&op_server)
        .await
        .expect("live created");
    client
        .server_intent("live", dure_core::Intent::Run)
        .await
        .expect("start");
    wait_server_state(&client, "live", dure_core::ServerState::Ready).await;
    // Nor moved to another node: its process would be left unmanaged.
    let n2: dure_core::NodeSpec =
        serde_json::from_value(json!({"name": "n2", "address": "127.0.0.1"})).expect("node spec");
    client.put_node(&n2).await.expect("node n2 saved");
    let mut moved = op_server.clone();
    moved.node = "n2".into();
    let err = client
        .replace_server(&moved)
        .await
        .expect_err("move refused");
    assert_eq!(err.status(), Some(409));
    assert!(err.to_string().contains("move to node `n2`"), "{err}");
    let still = client.get_server("live").await.expect("live");
    assert_eq!(still.spec.node, "n1", "a refused move changes nothing");
    let err = client
        .delete_server("live", false)
        .await
        .expect_err("refused");
    assert_eq!(err.status(), Some(409));
    assert!(err.to_string().contains("stop it first"), "{err}");
    assert!(client.get_server("live").await.is_ok(), "still defined");
    let pid = client
        .get_server("live")
        .await
        .expect("live")
        .observed
        .pid
        .expect("pid");
    client
        .delete_server("live", true)
        .await
        .expect("delete with stop");
    assert!(!alive(pid), "server process is gone");
    let err = client.get_server("live").await.expect_err("deleted");
    assert_eq!(err.status(), Some(404));

    // A second start while one runs is refused; a kill supersedes it.
    let mut slow = demo_server("slow", "n1");
    slow.argv = vec!["sleep".into(), "60".into()];
    slow.ready.check = "tcp:http".parse().expect("check");
    slow.ready.start_timeout = "30s".parse().expect("duration");
    client.create_server(&slow).await.expect("slow");
    create_cluster(&client, "slowc", &["slow"]).await;
    let first = client
        .cluster_operation("slowc", OperationKind::Start, &OperationOptions::default())
        .await
        .expect("first start");
    let err = client
        .cluster_operation("slowc", OperationKind::Start, &OperationOptions::default())
        .await
        .expect_err("second start refused");
    assert_eq!(err.status(), Some(409));
    assert!(err.to_string().contains(&first.id), "{err}");
    let kill = client
        .cluster_operation("slowc", OperationKind::Kill, &OperationOptions::default())
        .await
        .expect("kill accepted");
    let first = wait_operation(&client, &first.id).await;
    assert!(
        first.message.as_deref().unwrap_or("").contains("killed"),
        "{first:?}"
    );
    let kill = wait_operation(&client, &kill.id).await;
    assert_eq!(
        kill.status,
        dure_api::OperationStatus::Succeeded,
        "{kill:?}"
    );
}
