//! The audit log through the real binary: mutating calls and refused calls
//! are lines in `<data>/audit/audit.jsonl` naming the actor, its role, the
//! caller's address and the answer's request id; plain reads are not;
//! `dure audit` filters them by refusal, actor and time; and no line holds
//! a token.

mod common;

use common::*;
use dure_api::{routes, AuditEntry};
use std::collections::HashMap;

/// Sends `method path` with `token` (if any); returns the status and the
/// request id the answer carries.
async fn call(
    sandbox: &Sandbox,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut request = sandbox
        .http_client()
        .request(method, format!("{}{path}", sandbox.url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("answer");
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("every answer has a request id")
        .to_string();
    (response.status().as_u16(), id)
}

fn audit_json(sandbox: &Sandbox, args: &[&str]) -> Vec<AuditEntry> {
    let mut all = vec!["audit", "-o", "json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = cli(sandbox, &all);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).expect("json lines")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_and_denied_calls_are_audited_without_secrets() {
    use reqwest::Method;
    let sandbox = sandbox(&[]).await;
    let (code, viewer, stderr) = cli(
        &sandbox,
        &[
            "token",
            "create",
            "--role",
            "viewer",
            "--description",
            "wall screen",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let viewer = viewer.trim().to_string();
    let viewer_id = viewer.split_once('.').expect("form").0.to_string();
    let node = r#"{"name":"n1","address":"127.0.0.1"}"#;

    let (status, created) = call(
        &sandbox,
        Method::POST,
        routes::NODES,
        Some(sandbox.token()),
        node,
    )
    .await;
    assert_eq!(status, 201);
    let (status, read) = call(&sandbox, Method::GET, routes::NODES, Some(&viewer), "").await;
    assert_eq!(status, 200);
    let (status, forbidden) = call(
        &sandbox,
        Method::DELETE,
        &routes::node("n1"),
        Some(&viewer),
        "",
    )
    .await;
    assert_eq!(status, 403);
    let (status, anonymous) = call(&sandbox, Method::POST, routes::NODES, None, node).await;
    assert_eq!(status, 401);
    let (status, bad) = call(
        &sandbox,
        Method::GET,
        routes::SERVERS,
        Some("not-a-token-at-all-but-long-enough"),
        "",
    )
    .await;
    assert_eq!(status, 401);

    let lines = audit_json(&sandbox, &[]);
    let by_id: HashMap<&str, &AuditEntry> =
        lines.iter().map(|l| (l.request_id.as_str(), l)).collect();
    let line = by_id
        .get(created.as_str())
        .expect("the creation is audited");
    assert_eq!(
        (
            line.actor.as_deref(),
            line.method.as_str(),
            line.path.as_str(),
            line.status,
            line.denied
        ),
        (Some("admin"), "POST", "/v1/nodes", 201, false)
    );
    assert!(
        line.source
            .as_deref()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{line:?}"
    );
    assert!(
        !by_id.contains_key(read.as_str()),
        "a plain read is not audited"
    );
    let line = by_id.get(forbidden.as_str()).expect("a 403 is audited");
    assert_eq!(line.actor_id.as_deref(), Some(viewer_id.as_str()));
    assert_eq!(
        line.actor.as_deref(),
        Some(format!("{viewer_id} (wall screen)").as_str())
    );
    assert_eq!(
        (line.status, line.denied, line.target.as_str()),
        (403, true, "nodes/n1")
    );
    assert!(
        line.error
            .as_deref()
            .is_some_and(|e| e.contains("needs role admin")),
        "{line:?}"
    );
    for id in [&anonymous, &bad] {
        let line = by_id.get(id.as_str()).expect("a 401 is audited");
        assert_eq!(
            (line.status, line.denied, line.actor.as_deref()),
            (401, true, None)
        );
    }

    // Filters: refusals, one actor, a time window; the table too.
    let denied = audit_json(&sandbox, &["--denied"]);
    assert!(
        denied.iter().all(|l| l.denied) && denied.len() == 3,
        "{denied:?}"
    );
    let mine = audit_json(&sandbox, &["--actor", &viewer_id]);
    assert_eq!(
        mine.iter()
            .map(|l| l.request_id.as_str())
            .collect::<Vec<_>>(),
        [forbidden.as_str()]
    );
    assert!(audit_json(&sandbox, &["--since", "1h"]).len() >= 4);
    let (code, table, _) = cli(&sandbox, &["audit", "--denied"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("REQUEST") && table.contains(&forbidden),
        "{table}"
    );
    let (code, _, stderr) = cli(&sandbox, &["audit", "--since", "soon"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = cli_at(&sandbox.url(), &viewer, &["audit"]);
    assert_ne!(code, 0, "a viewer cannot read the audit log");

    // No line anywhere in the log holds a token.
    let dir = sandbox.controller_data().join("audit");
    let mut text = String::new();
    for file in std::fs::read_dir(&dir).expect("audit directory") {
        text.push_str(&std::fs::read_to_string(file.expect("entry").path()).expect("read"));
    }
    assert!(text.lines().count() >= 5, "{text}");
    let secret = viewer.split_once('.').expect("form").1;
    for (what, secret) in [("viewer", secret), ("admin", sandbox.token())] {
        assert!(
            !text.contains(secret),
            "the {what} token is in the audit log"
        );
    }
}
