//! The router on a real listener: every kind of malformed request is
//! answered with a JSON error, names travel as one path segment, and the
//! older names of version parameters still work.

use crate::Controller;
use dure_api::{routes, Client, ErrorBody};
use reqwest::Method;

use crate::testing::start_controller as controller;

/// Sends a raw request; returns the status and the error body.
async fn raw(
    controller: &Controller,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Option<ErrorBody>) {
    let mut request = reqwest::Client::new()
        .request(method, format!("http://{}{path}", controller.addr()))
        .bearer_auth(controller.token());
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.expect("answer");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    (status, serde_json::from_slice(&bytes).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_json_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = controller(dir.path()).await;

    let (status, body) = raw(&controller, Method::GET, "/v1/servers/%FF", None).await;
    let error = body.expect("a JSON error").error;
    assert_eq!((status, error.code.as_str()), (400, "invalid"));
    assert!(
        error.message.contains("path is invalid"),
        "{}",
        error.message
    );

    let (status, body) = raw(&controller, Method::PATCH, "/v1/servers", None).await;
    let error = body.expect("a JSON error").error;
    assert_eq!((status, error.code.as_str()), (405, "method_not_allowed"));
    assert!(
        error.message.contains("PATCH is not a method"),
        "{}",
        error.message
    );

    // Optional bodies: none at all, or JSON without a content type.
    let (status, _) = raw(&controller, Method::POST, "/v1/changes/save", None).await;
    assert_eq!(status, 200);
    let (status, body) = raw(
        &controller,
        Method::POST,
        "/v1/clusters/ghost/start",
        Some(r#"{"paralel":true}"#),
    )
    .await;
    let error = body.expect("a JSON error").error;
    assert_eq!(status, 400);
    assert!(
        error.message.contains("unknown field `paralel`"),
        "{}",
        error.message
    );

    controller.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_one_path_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = controller(dir.path()).await;
    let client = Client::new(&controller.addr().to_string(), controller.token());
    // Unencoded, `a?b` would have asked for server `a`, and `a/start` for
    // an action on it.
    for name in ["a?b", "a/start", "a#b"] {
        let err = client.get_server(name).await.expect_err("no such server");
        assert_eq!(err.status(), Some(404), "{name}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("server `{name}` does not exist")),
            "{name}: {err}"
        );
    }
    controller.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_without_a_token_and_nothing_else_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = controller(dir.path()).await;
    let url = |path: &str| format!("http://{}{path}", controller.addr());
    let http = reqwest::Client::new();

    // No token: liveness only, no version or revision.
    let response = http.get(url(routes::HEALTH)).send().await.expect("answer");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"status": "ok"}));

    // The admin token: the details too.
    let client = Client::new(&controller.addr().to_string(), controller.token());
    let health = client.health().await.expect("health");
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));
    assert!(health.revision > 0, "{health:?}");

    // A wrong token is refused, not answered with less.
    let response = http
        .get(url(routes::HEALTH))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 401);

    // Every other route still needs the token.
    for path in ["/v1/servers", "/v1/events", "/v1/nodes/n1"] {
        let response = http.get(url(path)).send().await.expect("answer");
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }
    controller.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_parameter_names_mean_versions_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = controller(dir.path()).await;
    let client = Client::new(&controller.addr().to_string(), controller.token());
    for name in ["n1", "n2"] {
        client
            .put_node(&crate::testing::node(name))
            .await
            .expect("saved");
    }
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", controller.addr());
    let tree: dure_api::DocumentTree = http
        .get(url("/v1/config/documents?rev=1"))
        .bearer_auth(controller.token())
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("a tree");
    assert_eq!(tree.version, 1);
    assert_eq!(
        tree.documents.keys().collect::<Vec<_>>(),
        ["/nodes/n1/node.json"]
    );
    let answer = http
        .post(url("/v1/config/rollback"))
        .bearer_auth(controller.token())
        .header("content-type", "application/json")
        .body(r#"{"revision":1}"#)
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("a body");
    let rolled: dure_api::SaveResult =
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(rolled.version, 3);
    assert_eq!(rolled.message, "saved 1 document(s) as version 3");
    controller.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_domain_larger_than_other_bodies_can_be_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = controller(dir.path()).await;
    let client = Client::new(&controller.addr().to_string(), controller.token());
    // Three megabytes: above the default body limit every other call keeps.
    let node = crate::testing::node("n1");
    let mut server = crate::testing::server("web1", "n1", 9001);
    server.env.insert("BIG".into(), "x".repeat(3 << 20));
    let tree = dure_api::DocumentTree {
        documents: [
            (
                dure_core::model::paths::node("n1"),
                serde_json::to_value(&node).expect("node"),
            ),
            (
                dure_core::model::paths::server("n1", "web1"),
                serde_json::to_value(&server).expect("server"),
            ),
        ]
        .into_iter()
        .collect(),
        ..dure_api::DocumentTree::default()
    };
    let saved = client
        .apply(&tree, &dure_api::ApplyQuery::default())
        .await
        .expect("a large tree is applied");
    assert_eq!(saved.version, 1);
    // Other calls keep the default limit, and the client, still sending,
    // reads the refusal (the rest of the body is read and thrown away)
    // rather than a reset connection, every time.
    server.name = "web2".into();
    for _ in 0..5 {
        let err = client
            .create_server(&server)
            .await
            .expect_err("a large body elsewhere");
        assert_eq!(err.status(), Some(400), "{err}");
        assert!(
            err.to_string()
                .contains("larger than 2097152 bytes, the most this call takes"),
            "{err}"
        );
    }
    controller.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_names_the_changed_documents_and_gives_diffs_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = controller(dir.path()).await;
    let client = Client::new(&controller.addr().to_string(), controller.token());
    let tree = |weight: u32| {
        let mut server = crate::testing::server("web1", "n1", 9001);
        server.weight = weight;
        dure_api::DocumentTree {
            documents: [
                (
                    dure_core::model::paths::node("n1"),
                    serde_json::to_value(crate::testing::node("n1")).expect("node"),
                ),
                (
                    dure_core::model::paths::server("n1", "web1"),
                    serde_json::to_value(&server).expect("server"),
                ),
            ]
            .into_iter()
            .collect(),
            ..dure_api::DocumentTree::default()
        }
    };
    let web1 = dure_core::model::paths::server("n1", "web1");
    let saved = client
        .apply(&tree(100), &dure_api::ApplyQuery::default())
        .await
        .expect("applied");
    assert_eq!(saved.changes.len(), 2, "{saved:?}");
    assert!(
        saved.changes.iter().all(|c| c.diff.is_empty()),
        "no diffs unless asked: {saved:?}"
    );

    let with_diff = dure_api::ApplyQuery {
        diff: true,
        ..dure_api::ApplyQuery::default()
    };
    let dry = client
        .apply(
            &tree(7),
            &dure_api::ApplyQuery {
                dry_run: true,
                ..with_diff.clone()
            },
        )
        .await
        .expect("dry run");
    assert_eq!(dry.changes.len(), 1, "{dry:?}");
    assert_eq!(dry.changes[0].path, web1);
    assert!(dry.changes[0].diff.contains("+  \"weight\": 7"), "{dry:?}");

    let saved = client.apply(&tree(7), &with_diff).await.expect("applied");
    assert_eq!(saved.version, 2);
    assert_eq!(saved.changes.len(), 1, "{saved:?}");
    assert!(
        saved.changes[0].diff.contains("-  \"weight\": 100")
            && saved.changes[0].diff.contains("+  \"weight\": 7"),
        "{saved:?}"
    );
    controller.shutdown().await.expect("shutdown");
}

#[test]
fn audit_targets_name_the_first_parameter_of_the_route() {
    use super::target;
    assert_eq!(
        target(routes::SERVER_ACTION, "/v1/servers/web1/start"),
        "servers/web1"
    );
    assert_eq!(
        target(routes::AGENT_REPORT, "/v1/agent/nodes/n1/report"),
        "nodes/n1"
    );
    assert_eq!(
        target(routes::CLUSTER_MEMBER, "/v1/clusters/shop/members/web2"),
        "clusters/shop"
    );
    assert_eq!(
        target(routes::CONFIG_APPLY, "/v1/config/apply"),
        "config/apply"
    );
    assert_eq!(target(routes::NODES, "/v1/nodes"), "nodes");
}
