//! Balancer figures at the controller: a running `dure lb run` reports its
//! members' figures every second, `dure lb stats` shows each member's
//! share of requests (which follows the weights), a balancer that stops is
//! forgotten after a few silent intervals, and malformed reports are
//! refused. Real controller, agent, demo apps and balancer on loopback.

mod common;

use common::*;
use dure_api::{Client, LbReport, LbStats};
use dure_testkit::ChildProcess;
use std::time::Duration;

/// Requests of the bounded load.
const LOAD: usize = 200;

/// A cluster `shop` of `web1` (weight 300) and `web2` (weight 100), ready.
async fn weighted_shop(sandbox: &Sandbox) -> Client {
    let client = sandbox.client();
    for (name, weight) in [("web1", 300), ("web2", 100)] {
        let mut spec = demo_server(name, "n1");
        spec.weight = weight;
        client.create_server(&spec).await.expect("server created");
    }
    create_cluster(&client, "shop", &["web1", "web2"]).await;
    start_green(&client, "shop").await;
    client
}

fn run_balancer(sandbox: &Sandbox, name: &str) -> ChildProcess {
    let token_file = sandbox.controller_data().join("admin.token");
    let url = sandbox.url();
    let ca = sandbox.ca_file();
    let args = [
        "lb",
        "run",
        "--name",
        name,
        "--controller",
        &url,
        "--ca",
        ca.to_str().expect("utf-8 path"),
        "--token-file",
        token_file.to_str().expect("utf-8 path"),
        "--admin",
        "127.0.0.1:0",
    ];
    let log = sandbox.dir().join(format!("lb-{name}.log"));
    ChildProcess::spawn(sandbox.bin(), &args, &[sandbox.mark_env()], &log).expect("balancer spawns")
}

fn stats_json(sandbox: &Sandbox, lb: &str) -> LbStats {
    let (code, out, err) = cli(sandbox, &["lb", "stats", lb, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("lb stats JSON")
}

/// Posts `body` as a report of balancer `lb`; returns the status.
async fn post_report(sandbox: &Sandbox, lb: &str, body: &str) -> u16 {
    sandbox
        .http_client()
        .post(format!(
            "{}{}",
            sandbox.url(),
            dure_api::routes::lb_report(lb)
        ))
        .bearer_auth(sandbox.token())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the controller answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balancer_reports_its_members_and_is_forgotten_once_it_stops() {
    let sandbox = sandbox(&["n1"]).await;
    let _client = weighted_shop(&sandbox).await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (code, _, err) = cli(
        &sandbox,
        &[
            "lb", "create", "front", "--listen", &listen, "--route", "shop",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let mut lb = run_balancer(&sandbox, "front");
    eventually("the balancer serves", SETTLE, || async {
        (http_get(port, "/").await?.0 == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let mut failed = 0;
    for _ in 0..LOAD {
        if http_get(port, "/").await.map(|(code, _)| code) != Some(200) {
            failed += 1;
        }
    }
    assert_eq!(failed, 0, "the load runs through the balancer");

    let stats = eventually("the report counts the whole load", SETTLE, || async {
        let stats = stats_json(&sandbox, "front");
        let total: u64 = stats.members.iter().map(|m| m.requests).sum();
        (total >= LOAD as u64).then_some(stats)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.instances.len(), 1, "{stats:?}");
    let instance = &stats.instances[0];
    assert!(instance.admin.is_some(), "{instance:?}");
    assert!(instance.age_ms < 10_000, "{instance:?}");
    let total: u64 = stats.members.iter().map(|m| m.requests).sum();
    let share = |name: &str| {
        let member = stats
            .members
            .iter()
            .find(|m| m.member == name)
            .unwrap_or_else(|| panic!("member {name} in {stats:?}"));
        member.requests as f64 / total as f64
    };
    // Smooth weighted round robin: 3 of every 4 requests to web1.
    assert!((share("web1") - 0.75).abs() < 0.05, "{stats:?}");
    assert!((share("web2") - 0.25).abs() < 0.05, "{stats:?}");
    for member in &stats.members {
        assert_eq!(member.responses.success, member.requests, "{member:?}");
        assert_eq!((member.errors, member.in_flight), (0, 0), "{member:?}");
        assert_eq!(member.health, "up", "{member:?}");
        assert!(member.latency_ms.p50.is_some(), "{member:?}");
    }

    let (code, out, err) = cli(&sandbox, &["lb", "stats"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("balancer `front`: 1 instance ("), "{out}");
    let header = out.lines().nth(1).unwrap_or_default();
    assert!(
        header.starts_with("CLUSTER  MEMBER  SHARE  REQUESTS  2XX")
            && header.contains("P99")
            && header.ends_with("HEALTH"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("shop") && l.contains("web1") && l.contains('%')),
        "{out}"
    );

    // The balancer stops: it is gone once it has been silent for a few
    // report intervals.
    lb.terminate(Duration::from_secs(10))
        .await
        .expect("balancer stops on SIGTERM");
    eventually("the stopped balancer is forgotten", SETTLE, || async {
        stats_json(&sandbox, "front")
            .instances
            .is_empty()
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, out, err) = cli(&sandbox, &["lb", "stats"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no balancer instance reports"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_balancer_reports_are_refused() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    client
        .create_server(&demo_server("web1", "n1"))
        .await
        .expect("server created");
    create_cluster(&client, "shop", &["web1"]).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = cli(
        &sandbox,
        &[
            "lb", "create", "front", "--listen", &listen, "--route", "shop",
        ],
    );
    assert_eq!(code, 0, "{err}");

    let member = r#"{"cluster":"shop","member":"web1","requests":3,"in_flight":0,"health":"up"}"#;
    let good = format!(r#"{{"instance_id":"abc-1","members":[{member}]}}"#);
    for (body, why) in [
        ("{not json", "not JSON"),
        (r#"{"members":[]}"#, "no instance id"),
        (r#"{"instance_id":"","members":[]}"#, "an empty instance id"),
        (r#"{"instance_id":"a/b","members":[]}"#, "a bad instance id"),
        (r#"{"instance_id":"a","members":"x"}"#, "members not a list"),
        (
            r#"{"instance_id":"a","members":[{"cluster":"shop","member":"web1","requests":1,"in_flight":2,"health":"up"}]}"#,
            "more in flight than requests",
        ),
        (
            r#"{"instance_id":"a","members":[{"cluster":"shop","member":"web1","requests":1,"in_flight":0,"health":"up","latency_buckets":[1,2]}]}"#,
            "a wrong bucket count",
        ),
    ] {
        assert_eq!(post_report(&sandbox, "front", body).await, 400, "{why}");
    }
    assert!(
        stats_json(&sandbox, "front").instances.is_empty(),
        "nothing refused is kept"
    );
    assert_eq!(post_report(&sandbox, "ghost", &good).await, 404);
    let (code, _, err) = cli(&sandbox, &["lb", "stats", "ghost"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("balancer `ghost` does not exist"), "{err}");

    assert_eq!(post_report(&sandbox, "front", &good).await, 200);
    let stats = stats_json(&sandbox, "front");
    assert_eq!(stats.instances.len(), 1);
    assert_eq!(stats.instances[0].instance_id, "abc-1");
    assert_eq!(stats.members[0].requests, 3);
    // The wire type takes what the check takes.
    let parsed: LbReport = serde_json::from_str(&good).expect("a good report parses");
    parsed.check().expect("and passes the check");
}
