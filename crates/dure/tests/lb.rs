//! Balancers end to end: `dure lb` and `dure cluster balance` define them
//! through the configuration change path (refusals exit 2 naming what is
//! wrong, `--stage` stages, export carries them), and `dure lb run` serves
//! a cluster's ready members, follows a member stopping, and keeps serving
//! its last table with the controller gone. Real controller, agent, demo
//! apps and balancer processes on loopback.

mod common;

use common::*;
use dure_api::Client;
use dure_core::ServerState;
use std::collections::BTreeSet;
use std::time::Duration;

/// A bound on the requests a check sends.
const REQUESTS: usize = 20;

async fn shop(sandbox: &Sandbox) -> Client {
    let client = sandbox.client();
    for name in ["web1", "web2"] {
        client
            .create_server(&demo_server(name, "n1"))
            .await
            .expect("server created");
    }
    create_cluster(&client, "shop", &["web1", "web2"]).await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_verbs_define_balancers_under_the_configuration_rules() {
    let sandbox = sandbox(&["n1"]).await;
    let _client = shop(&sandbox).await;
    let listen = format!("127.0.0.1:{}", free_port());

    let (code, _, err) = cli(
        &sandbox,
        &["lb", "create", "front", "--listen", "nowhere:80"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("listen address `nowhere:80` is invalid"),
        "{err}"
    );
    let (code, _, err) = cli(
        &sandbox,
        &[
            "lb", "create", "front", "--listen", &listen, "--route", "ghost",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cluster `ghost`, which does not exist"),
        "{err}"
    );
    let (code, _, err) = cli(
        &sandbox,
        &[
            "lb",
            "create",
            "front",
            "--listen",
            &listen,
            "--route",
            "a.example=",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("names no cluster"), "{err}");

    let (code, out, err) = cli(
        &sandbox,
        &[
            "lb", "create", "front", "--listen", &listen, "--route", "shop",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("balancer `front` created"), "{out}");
    let (code, out, err) = cli(
        &sandbox,
        &[
            "lb",
            "route",
            "add",
            "front",
            "--cluster",
            "shop",
            "--path",
            "/api",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("route */api -> shop added to balancer `front`"),
        "{out}"
    );
    let (code, _, err) = cli(&sandbox, &["lb", "route", "add", "front", "--path", "/x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--cluster"), "{err}");

    let (code, out, _) = cli(&sandbox, &["lb", "show", "front", "-o", "json"]);
    assert_eq!(code, 0);
    let shown: dure_core::LbSpec = serde_json::from_str(&out).expect("json");
    assert_eq!(shown.listeners[0].routes.len(), 2);
    let (code, out, _) = cli(&sandbox, &["lb", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("NAME"), "{out}");
    assert!(out.contains(&listen), "{out}");

    // A routed cluster stays until its routes go.
    let (code, _, err) = cli(&sandbox, &["cluster", "delete", "shop"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("routed to by balancer `front`"), "{err}");

    let (code, _, err) = cli(
        &sandbox,
        &["cluster", "balance", "shop", "--policy", "fastest"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`fastest` is not a balancing policy"), "{err}");
    let (code, _, err) = cli(
        &sandbox,
        &["cluster", "balance", "shop", "--backup", "web9"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("backup `web9` is not a member"), "{err}");
    let (code, out, err) = cli(
        &sandbox,
        &[
            "cluster",
            "balance",
            "shop",
            "--policy",
            "least_conn",
            "--sticky",
            "session",
            "--check",
            "http:/health",
            "--backup",
            "web2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("policy least_conn, sticky on cookie JSESSIONID"),
        "{out}"
    );
    let (code, out, err) = cli(&sandbox, &["cluster", "show", "shop"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "balancing: policy least_conn, sticky on cookie JSESSIONID, check http:/health"
        ) && out.contains("backup web2"),
        "{out}"
    );
    assert!(
        out.contains(&format!("balancers: front on {listen}")),
        "{out}"
    );

    // Staged: in the change set until saved.
    let (code, out, err) = cli(
        &sandbox,
        &[
            "lb", "route", "remove", "front", "--path", "/api", "--stage",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("in your change set"), "{out}");
    let (_, out, _) = cli(&sandbox, &["changes"]);
    assert!(out.contains("/lbs/front/lb.json"), "{out}");
    let (code, _, err) = cli(&sandbox, &["changes", "discard"]);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = cli(&sandbox, &["export"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[[lbs.front.listeners]]"), "{out}");
    assert!(out.contains("policy = \"least_conn\""), "{out}");

    let (code, _, err) = cli(&sandbox, &["lb", "delete", "front"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&sandbox, &["lb", "show", "front"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("balancer `front` does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balancer_follows_its_cluster_and_outlives_the_controller() {
    let mut sandbox = sandbox(&["n1"]).await;
    let client = shop(&sandbox).await;
    start_green(&client, "shop").await;
    let port = create_lb_for(&sandbox, "front", "shop");

    // More workers than cores: each connection is served whole by one of
    // them, and every one of them serves.
    let log = sandbox.dir().join("lb.log");
    let mut args = lb_run_args(&sandbox, "front");
    args.extend(["--workers", "3"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut lb =
        dure_testkit::ChildProcess::spawn(sandbox.bin(), &args, &[sandbox.mark_env()], &log)
            .expect("balancer spawns");

    let both = BTreeSet::from(["web1".to_string(), "web2".to_string()]);
    eventually("the balancer serves both members", SETTLE, || async {
        let (names, failed) = answering(port, REQUESTS).await;
        (names == both && failed == 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}; balancer log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });

    // A member stopped through the controller leaves the rotation.
    client
        .server_intent("web1", dure_core::Intent::Stop)
        .await
        .expect("stop web1");
    wait_server_state(&client, "web1", ServerState::Stopped).await;
    let only_web2 = BTreeSet::from(["web2".to_string()]);
    eventually("the balancer sends everything to web2", SETTLE, || async {
        let (names, failed) = answering(port, REQUESTS).await;
        (names == only_web2 && failed == 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // Without the controller, the last table is served.
    sandbox.kill_controller().await.expect("controller killed");
    let (names, failed) = answering(port, REQUESTS).await;
    assert_eq!(
        (names, failed),
        (only_web2, 0),
        "served without the controller"
    );
    assert!(!lb.has_exited(), "the balancer keeps running");
    lb.terminate(Duration::from_secs(10))
        .await
        .expect("balancer stops on SIGTERM");
}
