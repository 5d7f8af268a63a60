//! API tokens with roles through the real binary: `dure token create`
//! prints a secret once, a viewer reads but changes nothing, an operator
//! starts servers but changes no configuration, events and history name
//! the token's id and description, and revoked or expired tokens are
//! refused with a 401 that says so; `dure token whoami` names a token's
//! role. No secret reaches a log or an event.

mod common;

use common::*;
use dure_api::{ClientError, EventQuery, HistoryQuery, TokenInfo};
use dure_core::{Intent, NodeSpec};
use std::time::Duration;

/// Creates a token with the CLI; returns the printed token.
fn create(sandbox: &Sandbox, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = cli(sandbox, &all);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("only time its secret is shown"), "{stderr}");
    stdout.trim().to_string()
}

fn id_of(token: &str) -> &str {
    token.split_once('.').expect("<id>.<secret>").0
}

fn status(error: &ClientError) -> Option<u16> {
    error.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_allow_what_they_say_and_refusals_say_why() {
    let sandbox = sandbox(&[]).await;
    let url = sandbox.url();
    let viewer = create(
        &sandbox,
        &["--role", "viewer", "--description", "dashboards"],
    );
    let operator = create(
        &sandbox,
        &["--role", "operator", "--description", "night shift"],
    );
    let deployer = create(
        &sandbox,
        &["--role", "admin", "--description", "deploy job"],
    );

    // An admin token of its own makes configuration, named in history.
    let admin = sandbox.client_with_token(&deployer);
    let node = NodeSpec {
        name: "n1".into(),
        address: "127.0.0.1".into(),
        agent_port: None,
        backup_of: None,
        shared_dirs: Vec::new(),
    };
    admin.create_node(&node).await.expect("admin creates");
    admin
        .create_server(&demo_server("web1", "n1"))
        .await
        .expect("admin creates");
    let history = admin
        .config_history(&HistoryQuery::default())
        .await
        .expect("history");
    let named = format!("{} (deploy job)", id_of(&deployer));
    assert!(
        history.iter().any(|r| r.actor == named),
        "history names the token: {history:?}"
    );

    // Each token can ask who it is; the bootstrap token is `admin`.
    let (code, me, stderr) = cli_at(&url, &viewer, &["token", "whoami"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        me.trim(),
        format!("token `{}`, role viewer: dashboards", id_of(&viewer))
    );
    let (code, me, stderr) = cli(&sandbox, &["token", "whoami", "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let me: dure_api::Whoami = serde_json::from_str(&me).expect("json");
    assert_eq!((me.id.as_str(), me.role.as_str()), ("admin", "admin"));
    let (code, _, stderr) = cli_at(&url, "tok-000000000000.nope", &["token", "whoami"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("401") || stderr.contains("not valid"),
        "{stderr}"
    );

    // A viewer reads; a change is refused 403 naming the role it needs.
    let as_viewer = sandbox.client_with_token(&viewer);
    as_viewer.list_servers().await.expect("viewer reads");
    let err = as_viewer
        .server_intent("web1", Intent::Run)
        .await
        .expect_err("viewer cannot start");
    assert_eq!(status(&err), Some(403), "{err}");
    assert!(err.to_string().contains("needs role operator"), "{err}");
    let (code, _, stderr) = cli_at(&url, &viewer, &["node", "delete", "n1"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("has role viewer"), "{stderr}");
    assert!(stderr.contains("needs role admin"), "{stderr}");

    // An operator starts a server, named in the event, but cannot edit.
    let as_operator = sandbox.client_with_token(&operator);
    as_operator
        .server_intent("web1", Intent::Stop)
        .await
        .expect("operator stops");
    let err = as_operator
        .delete_server("web1", false)
        .await
        .expect_err("operator cannot delete");
    assert_eq!(status(&err), Some(403), "{err}");
    let err = as_operator.tokens().await.expect_err("only admins list");
    assert_eq!(status(&err), Some(403), "{err}");
    let events = admin
        .events(&EventQuery {
            subject: Some("server/web1".into()),
            ..EventQuery::default()
        })
        .await
        .expect("events");
    let named = format!("{} (night shift)", id_of(&operator));
    assert!(
        events
            .iter()
            .any(|e| e.actor == named && e.kind == "intent"),
        "the intent's event names the token: {events:?}"
    );

    // Listed without secrets; nothing anywhere holds one.
    let (code, listing, stderr) = cli(&sandbox, &["token", "list", "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let tokens: Vec<TokenInfo> = serde_json::from_str(&listing).expect("json");
    assert_eq!(tokens.len(), 3);
    let all_events = admin
        .events(&EventQuery {
            last: Some(1000),
            ..EventQuery::default()
        })
        .await
        .expect("events");
    let events_text = serde_json::to_string(&all_events).expect("json");
    let log = sandbox.log("controller");
    for token in [&viewer, &operator, &deployer] {
        let secret = token.split_once('.').expect("form").1;
        for (place, text) in [
            ("token list", &listing),
            ("events", &events_text),
            ("log", &log),
        ] {
            assert!(!text.contains(secret), "a secret is in the {place}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_tokens_are_refused_saying_so() {
    let sandbox = sandbox(&[]).await;
    let revoked = create(&sandbox, &["--role", "viewer"]);
    let expiring = create(&sandbox, &["--role", "operator", "--ttl", "1s"]);
    sandbox
        .client_with_token(&revoked)
        .list_nodes()
        .await
        .expect("valid at first");

    let (code, stdout, stderr) = cli(&sandbox, &["token", "revoke", id_of(&revoked)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("revoked token"), "{stdout}");
    let err = sandbox
        .client_with_token(&revoked)
        .list_nodes()
        .await
        .expect_err("revoked");
    assert_eq!(status(&err), Some(401), "{err}");
    assert!(err.to_string().contains("was revoked at"), "{err}");
    let (code, _, stderr) = cli(&sandbox, &["token", "revoke", id_of(&revoked)]);
    assert_eq!(code, 1, "twice: {stderr}");
    assert!(stderr.contains("already revoked"), "{stderr}");
    let (code, _, stderr) = cli(&sandbox, &["token", "revoke", "tok-000000000000"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");

    let refusal = eventually("the 1s token expires", Duration::from_secs(20), || {
        let client = sandbox.client_with_token(&expiring);
        async move {
            match client.list_nodes().await {
                Err(err) if status(&err) == Some(401) => Some(err.to_string()),
                _ => None,
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(refusal.contains("expired at"), "{refusal}");

    let (code, listing, _) = cli(&sandbox, &["token", "list"]);
    assert_eq!(code, 0);
    assert!(
        listing.contains("revoked") && listing.contains("expired"),
        "{listing}"
    );

    // Bad input is refused before anything is created.
    for bad in [
        vec!["token", "create", "--role", "root"],
        vec!["token", "create", "--role", "viewer", "--ttl", "soon"],
    ] {
        let (code, _, stderr) = cli(&sandbox, &bad);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
    }
    let (code, _, stderr) = cli(
        &sandbox,
        &["token", "create", "--role", "viewer", "--ttl", "0s"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("greater than 0"), "{stderr}");
    let (_, listing, _) = cli(&sandbox, &["token", "list", "-o", "json"]);
    let tokens: Vec<TokenInfo> = serde_json::from_str(&listing).expect("json");
    assert_eq!(tokens.len(), 2, "nothing was created by bad input");
}
