//! The router on a real listener: every kind of malformed request is
//! answered with a JSON error, and names travel as one path segment.

use crate::Controller;
use dure_api::{Client, ErrorBody};
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
