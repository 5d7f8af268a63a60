//! Two balancers of one definition share nothing but the configuration:
//! each runs on a host of its own (a network namespace, with its own
//! loopback, so both listen on the same `127.0.0.1:PORT` as two hosts
//! would), follows the controller by itself and serves alone when the other
//! dies, and both keep serving with the controller gone. The members run on
//! a node in the test's own namespace, reached at the hub address.
//! Needs root for the namespaces; elsewhere it says why and skips.

mod common;

use common::*;
use dure_core::{NodeSpec, ServerState};
use dure_testkit::netns::{Namespace, NetError, TestNet};
use dure_testkit::{ChildProcess, SandboxOptions};
use std::collections::BTreeSet;
use std::time::Duration;

/// A bound on the requests one check sends.
const REQUESTS: usize = 20;
/// How long a balancer in a namespace may take to start and follow a change.
const FOLLOW: Duration = Duration::from_secs(30);

/// The members that answer `/` on `port` of `ns`'s loopback, and how many
/// of [`REQUESTS`] requests failed, asked from inside `ns`.
async fn answering_in(ns: &Namespace, port: u16) -> (BTreeSet<String>, usize) {
    ns.run(move || async move { answering(port, REQUESTS).await })
        .await
        .expect("a request from inside the namespace")
}

async fn wait_serving(ns: &Namespace, port: u16, want: &BTreeSet<String>, what: &str) {
    eventually(what, FOLLOW, || async {
        let (names, failed) = answering_in(ns, port).await;
        (&names == want && failed == 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_balancers_of_one_definition_serve_alone_and_without_the_controller() {
    let net = match TestNet::new(2) {
        Ok(net) => net,
        Err(NetError::Unavailable(reason)) => {
            eprintln!("skipping: {reason}");
            return;
        }
        Err(error) => panic!("{error}"),
    };
    let hub = net.hub_addr();
    let options = SandboxOptions {
        listen: hub.into(),
        ..SandboxOptions::default()
    };
    let mut sandbox = Sandbox::start_with(BIN, options)
        .await
        .expect("controller starts on the hub address");
    let client = sandbox.client();
    // The members' node is reached at the hub address from the balancers' hosts.
    client
        .create_node(
            &serde_json::from_value::<NodeSpec>(
                serde_json::json!({"name": "n1", "address": hub.to_string()}),
            )
            .expect("valid node"),
        )
        .await
        .expect("node created");
    sandbox.add_agent("n1").await.expect("agent starts");
    for name in ["web1", "web2"] {
        client
            .create_server(&demo_server_with(name, "n1", &["--bind", "0.0.0.0"]))
            .await
            .expect("server created");
    }
    create_cluster(&client, "shop", &["web1", "web2"]).await;
    start_green(&client, "shop").await;
    let port = create_lb_for(&sandbox, "front", "shop");

    let run = lb_run_args(&sandbox, "front");
    let [a, b] = net.namespaces() else {
        panic!("two namespaces asked for");
    };
    let mut balancers: Vec<ChildProcess> = [a, b]
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let (program, args) = ns.command(sandbox.bin(), &run);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let log = sandbox.dir().join(format!("lb-{i}.log"));
            ChildProcess::spawn(&program, &args, &[sandbox.mark_env()], &log)
                .expect("balancer spawns")
        })
        .collect();

    let both = BTreeSet::from(["web1".to_string(), "web2".to_string()]);
    wait_serving(a, port, &both, "balancer A serves both members").await;
    wait_serving(b, port, &both, "balancer B serves both members").await;

    // One dies: the other has nothing to share with it and serves alone.
    balancers[0].kill().await;
    assert_eq!(answering_in(b, port).await, (both.clone(), 0));

    // Each follows the controller by itself: B alone hears web1 stop.
    client
        .server_intent("web1", dure_core::Intent::Stop)
        .await
        .expect("stop web1");
    wait_server_state(&client, "web1", ServerState::Stopped).await;
    let only_web2 = BTreeSet::from(["web2".to_string()]);
    wait_serving(b, port, &only_web2, "balancer B sends everything to web2").await;

    // A started again, with the controller gone it still serves the table
    // it read, as B does.
    let (program, args) = a.command(sandbox.bin(), &run);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    balancers[0] = ChildProcess::spawn(
        &program,
        &args,
        &[sandbox.mark_env()],
        &sandbox.dir().join("lb-0-again.log"),
    )
    .expect("balancer spawns again");
    wait_serving(
        a,
        port,
        &only_web2,
        "balancer A, back, sends everything to web2",
    )
    .await;
    sandbox.kill_controller().await.expect("controller killed");
    for ns in [a, b] {
        assert_eq!(
            answering_in(ns, port).await,
            (only_web2.clone(), 0),
            "served without the controller"
        );
    }
    for mut balancer in balancers {
        assert!(!balancer.has_exited(), "the balancer keeps running");
        balancer
            .terminate(Duration::from_secs(10))
            .await
            .expect("balancer stops on SIGTERM");
    }
}
