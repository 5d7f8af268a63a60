//! Agent bootstrap and node restriction with real processes: a join token
//! works once and not after it expired (the agent says why and exits); a
//! joined agent keeps its key and certificate private in its data
//! directory and restarts without a token; a stolen node certificate
//! reaches only its own node's agent calls; certificates are renewed while
//! the agent runs and it keeps working across the renewal; the agent's
//! own endpoint is HTTPS for the controller's certificate or an operator's
//! token only; and each of these is in the audit log.

mod common;

use common::*;
use dure_api::{AgentHello, AuditEntry, AuditQuery, ClientTls, CreateToken, NodeStatus};
use dure_core::access::Role;
use dure_core::DurationSpec;
use dure_testkit::{ChildProcess, SandboxOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// How long a refused agent may take to exit.
const GIVE_UP: Duration = Duration::from_secs(20);

async fn join_token(sandbox: &Sandbox, node: &str, ttl: Option<DurationSpec>) -> String {
    sandbox
        .client()
        .create_token(&CreateToken {
            role: Role::Viewer,
            ttl,
            description: String::new(),
            node: Some(node.into()),
        })
        .await
        .expect("join token")
        .token
}

/// Runs `dure agent` for `node` on `data` with `token` as its join token
/// until it exits (bounded); returns its log.
async fn refused_agent(sandbox: &Sandbox, node: &str, data: &Path, token: &str) -> String {
    let log = sandbox.dir().join(format!("refused-{node}.log"));
    let (data, ca) = (
        data.to_string_lossy().into_owned(),
        sandbox.ca_file().to_string_lossy().into_owned(),
    );
    let url = sandbox.url();
    let args = [
        "agent",
        "--controller",
        &url,
        "--node",
        node,
        "--data",
        &data,
        "--ca",
        &ca,
    ];
    let mut agent = ChildProcess::spawn(
        sandbox.bin(),
        &args,
        &[("DURE_JOIN_TOKEN", token), sandbox.mark_env()],
        &log,
    )
    .expect("agent spawns");
    let status = agent.wait_exit(GIVE_UP).await;
    if status.is_err() {
        agent.kill().await;
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_ok_and(|s| !s.success()),
        "a refused agent exits with an error; log:\n{text}"
    );
    text
}

async fn audit(sandbox: &Sandbox) -> Vec<AuditEntry> {
    sandbox
        .client()
        .audit(&AuditQuery {
            limit: Some(10_000),
            ..AuditQuery::default()
        })
        .await
        .expect("audit log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_token_works_once_and_not_once_expired() {
    let sandbox = sandbox(&[]).await;
    let token = join_token(&sandbox, "n1", None).await;
    let mut sandbox = sandbox;
    sandbox
        .add_agent_with("n1", None, &["--join-token".into(), token.clone()])
        .await
        .expect("the agent joins");
    let data = sandbox.agent_data("n1");
    for file in ["node.key", "node.crt"] {
        let mode = std::fs::metadata(data.join(file))
            .expect(file)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is private");
    }

    // The same token again, by another agent with a data directory of its
    // own: refused, with a reason that says what to do.
    let other = sandbox.dir().join("other-n1");
    let log = refused_agent(&sandbox, "n1", &other, &token).await;
    assert!(log.contains("was already used at"), "{log}");
    assert!(log.contains("dure token create --join --node n1"), "{log}");
    assert!(!other.join("node.crt").exists(), "nothing was issued");

    // An expired token.
    let expired = join_token(&sandbox, "n2", Some(DurationSpec::from_secs(1))).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = refused_agent(&sandbox, "n2", &sandbox.agent_data("n2"), &expired).await;
    assert!(log.contains("expired at"), "{log}");

    // A join token is no API token.
    let fresh = join_token(&sandbox, "n3", None).await;
    let err = sandbox
        .client_with_token(&fresh)
        .list_nodes()
        .await
        .expect_err("no API token");
    assert_eq!(err.status(), Some(401), "{err}");

    // The agent restarts from its certificate, without a token.
    sandbox.stop_agent("n1").await.expect("stops");
    sandbox
        .add_agent("n1")
        .await
        .expect("restarts without a token");
    // Both runs log to one file: one join.
    let agent_log = sandbox.log("agent-n1");
    assert_eq!(
        agent_log.matches("joined: node certificate stored").count(),
        1,
        "it did not join again:\n{agent_log}"
    );

    // The audit log has the join, the refusals and no secret.
    let lines = audit(&sandbox).await;
    let joins: Vec<&AuditEntry> = lines
        .iter()
        .filter(|l| l.path == dure_api::routes::AGENT_JOIN)
        .collect();
    assert!(
        joins.iter().any(|l| l.status == 200 && !l.denied),
        "{joins:?}"
    );
    assert!(
        joins.iter().filter(|l| l.denied && l.status == 401).count() >= 2,
        "the reused and the expired token: {joins:?}"
    );
    let text = serde_json::to_string(&lines).expect("json");
    for secret in [&token, &expired, &fresh] {
        let secret = secret.split_once('.').expect("form").1;
        assert!(!text.contains(secret), "a join token's secret is audited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_node_certificate_reaches_only_its_own_node() {
    let sandbox = sandbox(&["n1", "n2"]).await;
    // n1's key and certificate, as someone who copied them from its host.
    let stolen = sandbox.node_client("n1").expect("n1's certificate");

    let own = stolen
        .desired("n1", 0, Duration::from_millis(10))
        .await
        .expect("its own desired state");
    assert!(own.servers.is_empty());
    let err = stolen
        .desired("n2", 0, Duration::from_millis(10))
        .await
        .expect_err("n2's desired state");
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("not node `n2`'s"), "{err}");
    let hello = AgentHello {
        node: "n2".into(),
        address: "127.0.0.1".into(),
        agent_port: 1,
        version: "0".into(),
        instance_id: None,
        membership_port: None,
    };
    let err = stolen.register(&hello).await.expect_err("registers as n2");
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(
        err.to_string().contains("registers only its own node"),
        "{err}"
    );
    for refused in [
        stolen.list_nodes().await.map(|_| ()),
        stolen.delete_node("n2").await.map(|_| ()),
        stolen
            .create_server(&demo_server("evil", "n2"))
            .await
            .map(|_| ()),
        stolen.tokens().await.map(|_| ()),
    ] {
        let err = refused.expect_err("no configuration, no reads");
        assert_eq!(err.status(), Some(403), "{err}");
        assert!(
            err.to_string().contains("reaches only its own agent calls"),
            "{err}"
        );
    }
    // n2's state is untouched: its agent is still online and it has no server.
    sandbox
        .wait_node_status("n2", NodeStatus::Online, SETTLE)
        .await
        .expect("n2 online");
    assert!(sandbox
        .client()
        .list_servers()
        .await
        .expect("servers")
        .is_empty());

    let lines = audit(&sandbox).await;
    let denied: Vec<&AuditEntry> = lines
        .iter()
        .filter(|l| l.denied && l.actor.as_deref() == Some("agent:n1"))
        .collect();
    assert!(denied.len() >= 5, "each refusal is audited: {denied:?}");
    assert!(denied.iter().all(|l| l.status == 403 && l.role.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_renewed_while_the_agent_runs() {
    let options = SandboxOptions {
        controller_args: vec!["--node-cert-lifetime".into(), "6s".into()],
        ..SandboxOptions::default()
    };
    let mut sandbox = Sandbox::start_with(BIN, options)
        .await
        .expect("controller starts");
    sandbox.add_agent("n1").await.expect("agent joins");
    let cert = sandbox.agent_data("n1").join("node.crt");
    let first = std::fs::read(&cert).expect("certificate");
    let first_end = not_after(&first);

    // Renewed more than once, and working past the first one's end.
    eventually("two renewals", SETTLE, || async {
        let events = sandbox.client().events(&Default::default()).await.ok()?;
        let renewed = events
            .iter()
            .filter(|e| e.message.contains("renewed a node certificate"))
            .count();
        (renewed >= 2).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", sandbox.log("agent-n1")));
    let now = std::fs::read(&cert).expect("certificate");
    assert_ne!(now, first, "the file holds the new certificate");
    assert!(not_after(&now) > first_end);
    eventually("past the first certificate's end", SETTLE, || async {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_millis();
        (u64::try_from(clock).ok()? > first_end + 2000).then_some(())
    })
    .await
    .expect("time passes");
    // The link and the endpoint use the new certificate.
    sandbox
        .wait_node_status("n1", NodeStatus::Online, SETTLE)
        .await
        .expect("still online");
    let reports_before = sandbox.client().list_nodes().await.expect("nodes")[0].last_seen_ms;
    eventually("a fresh report", SETTLE, || async {
        let nodes = sandbox.client().list_nodes().await.ok()?;
        (nodes[0].last_seen_ms > reports_before).then_some(())
    })
    .await
    .expect("reports go on");
    sandbox
        .agent_status("n1")
        .await
        .expect("the endpoint answers");
    let lines = audit(&sandbox).await;
    assert!(lines
        .iter()
        .any(|l| l.path == dure_api::routes::agent_certificate("n1")
            && l.status == 200
            && l.actor.as_deref() == Some("agent:n1")));
}

fn not_after(pem: &[u8]) -> u64 {
    let der = dure_api::identity::first_cert_der(pem).expect("PEM");
    dure_api::identity::not_after_ms(der.as_ref()).expect("validity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_endpoint_takes_only_the_controller_or_an_operator() {
    let sandbox = sandbox(&["n1", "n2"]).await;
    let addr = sandbox.agent_addr("n1").expect("address");
    let ca = ClientTls::from_ca_file(&sandbox.ca_file()).expect("CA");
    let agent = |tls: &ClientTls, token: &str| {
        dure_api::Client::with_tls(&format!("https://{addr}"), token, Some(&tls.for_node("n1")))
    };
    // The controller's certificate (the sandbox shows one, as the
    // controller does when it reads logs).
    sandbox
        .agent_status("n1")
        .await
        .expect("the controller's certificate");

    // Plain HTTP is told to use HTTPS.
    let plain = reqwest::get(format!("http://{addr}/v1/status"))
        .await
        .expect("an answer");
    assert_eq!(plain.status(), 400);
    assert!(plain.text().await.expect("body").contains("speaks HTTPS"));

    // TLS without a certificate or token.
    let err = agent(&ca, "").agent_status().await.expect_err("nobody");
    assert_eq!(err.status(), Some(401), "{err}");
    // Another node's certificate.
    let n2 = sandbox.node_tls("n2").expect("n2's certificate");
    let err = agent(&n2, "").agent_status().await.expect_err("n2");
    assert_eq!(err.status(), Some(403), "{err}");
    // Tokens the controller vouches for: operators yes, viewers no, the
    // admin token yes, a forged one no.
    let client = sandbox.client();
    let token = |role: Role| {
        let client = client.clone();
        async move {
            client
                .create_token(&CreateToken {
                    role,
                    ttl: None,
                    description: format!("endpoint {role}"),
                    node: None,
                })
                .await
                .expect("token")
                .token
        }
    };
    let operator = token(Role::Operator).await;
    let viewer = token(Role::Viewer).await;
    agent(&ca, &operator)
        .agent_status()
        .await
        .expect("an operator");
    agent(&ca, sandbox.token())
        .agent_status()
        .await
        .expect("admin");
    let err = agent(&ca, &viewer)
        .agent_status()
        .await
        .expect_err("viewer");
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("needs role operator"), "{err}");
    let err = agent(&ca, "not-a-token")
        .agent_status()
        .await
        .expect_err("forged");
    assert_eq!(err.status(), Some(401), "{err}");

    // A client that trusts the CA but expects node n1 refuses n2's endpoint.
    let n2_addr = sandbox.agent_addr("n2").expect("address");
    let err =
        dure_api::Client::with_tls(&format!("https://{n2_addr}"), "", Some(&ca.for_node("n1")))
            .agent_status()
            .await
            .expect_err("n2's endpoint is not n1's");
    assert!(err.status().is_none(), "refused in the handshake: {err}");
}
