//! Balancers on a real listener: definitions and routes go through the
//! configuration change path (saved with history, or staged and then
//! invisible to balancers), refusals name what is wrong, and the table a
//! balancer watches carries each member's address, port, weight and state
//! and wakes on a report, a route and a node change.

use super::blocking_tests::{blocked_until, client, hello, observed, raw, report, LONG_WAIT};
use crate::testing::{node, server, start_controller};
use dure_api::{ClientError, HistoryQuery, RouteChange};
use dure_core::balance::Policy;
use dure_core::{ClusterBalance, ClusterSpec, LbSpec, Listener, Route, ServerState};

fn front(listen: &str, routes: Vec<Route>) -> LbSpec {
    LbSpec {
        name: "front".into(),
        listeners: vec![Listener {
            listen: listen.into(),
            tls: None,
            routes,
        }],
    }
}

fn to(cluster: &str) -> Route {
    Route {
        host: None,
        path: None,
        cluster: cluster.into(),
    }
}

fn api_error(err: ClientError) -> (u16, String) {
    match err {
        ClientError::Api {
            status, message, ..
        } => (status, message),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancers_are_configuration_with_rules_history_and_change_sets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = start_controller(dir.path()).await;
    let api = client(&controller);
    api.put_node(&node("n1")).await.expect("node");
    api.create_server(&server("web1", "n1", 9001))
        .await
        .expect("server");
    api.create_cluster(&ClusterSpec::new("shop", vec!["web1".into()]))
        .await
        .expect("cluster");

    let err = api
        .create_lb(&front("127.0.0.1:8080", vec![to("ghost")]))
        .await
        .unwrap_err();
    let (status, message) = api_error(err);
    assert_eq!(status, 400);
    assert!(
        message.contains("cluster `ghost`, which does not exist"),
        "{message}"
    );
    let (status, message) = api_error(
        api.create_lb(&front("127.0.0.1:99999", vec![]))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 400);
    assert!(
        message.contains("`127.0.0.1:99999` is invalid"),
        "{message}"
    );
    assert!(
        api.list_lbs().await.expect("list").is_empty(),
        "refusals change nothing"
    );

    api.create_lb(&front("127.0.0.1:8080", vec![to("shop")]))
        .await
        .expect("created");
    let history = api
        .config_history(&HistoryQuery::default())
        .await
        .expect("history");
    assert!(
        history
            .iter()
            .any(|h| h.paths == ["/lbs/front/lb.json"] && h.message.contains("`front`")),
        "{history:?}"
    );
    let (status, message) = api_error(api.delete_cluster("shop").await.unwrap_err());
    assert_eq!(status, 409);
    assert!(
        message.contains("routed to by balancer `front`"),
        "{message}"
    );

    let added = api
        .add_route(
            "front",
            &RouteChange {
                path: Some("/api".into()),
                cluster: Some("shop".into()),
                ..RouteChange::default()
            },
        )
        .await
        .expect("route added");
    assert_eq!(added.listeners[0].routes.len(), 2);
    let (status, _) = api_error(
        api.add_route(
            "front",
            &RouteChange {
                path: Some("/api".into()),
                cluster: Some("shop".into()),
                ..RouteChange::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(status, 409, "a duplicate route");

    // Staged: in the caller's change set, not in what balancers run on.
    let staging = api.clone().with_save(Some(false));
    let mut staged = api.get_lb("front").await.expect("show");
    staged.listeners[0].routes.clear();
    staging.replace_lb(&staged).await.expect("staged");
    let table = api.lb_table("front").await.expect("table");
    assert_eq!(
        table.lb.listeners[0].routes.len(),
        2,
        "staged is not served"
    );
    let changes = api.changes().await.expect("changes");
    assert_eq!(changes.changes[0].path, "/lbs/front/lb.json");
    api.discard_changes().await.expect("discarded");

    api.remove_route("front", &RouteChange::default())
        .await
        .expect("route removed");
    api.remove_route(
        "front",
        &RouteChange {
            path: Some("/api".into()),
            ..RouteChange::default()
        },
    )
    .await
    .expect("route removed");
    api.delete_cluster("shop").await.expect("no longer routed");
    api.delete_lb("front").await.expect("deleted");
    let (status, _) = api_error(api.get_lb("front").await.unwrap_err());
    assert_eq!(status, 404);
    controller.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_shows_members_and_wakes_on_state_routes_and_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = start_controller(dir.path()).await;
    let api = client(&controller);
    api.register(&hello()).await.expect("registered");
    let mut web1 = server("web1", "n1", 9001);
    web1.weight = 7;
    api.create_server(&web1).await.expect("server");
    api.create_server(&server("web2", "n1", 9002))
        .await
        .expect("server");
    api.create_cluster(&ClusterSpec::new(
        "shop",
        vec!["web1".into(), "web2".into()],
    ))
    .await
    .expect("cluster");
    let balance = ClusterBalance {
        policy: Policy::LeastConn,
        backup: vec!["web2".into()],
        ..ClusterBalance::default()
    };
    api.set_balance("shop", &balance).await.expect("balance");
    api.create_lb(&front("127.0.0.1:8080", vec![to("shop")]))
        .await
        .expect("created");
    api.report("n1", &report(vec![observed("web1", ServerState::Ready)]))
        .await
        .expect("report");

    let first = api
        .watch_lb_table("front", 0, LONG_WAIT)
        .await
        .expect("table");
    let shop = &first.value.clusters["shop"];
    assert_eq!(shop.balance, balance);
    let members: Vec<_> = shop
        .members
        .iter()
        .map(|m| {
            (
                m.server.as_str(),
                m.address.as_str(),
                m.port,
                m.weight,
                m.backup,
                m.state,
            )
        })
        .collect();
    assert_eq!(
        members,
        [
            (
                "web1",
                "127.0.0.1",
                Some(9001),
                7,
                false,
                ServerState::Ready
            ),
            (
                "web2",
                "127.0.0.1",
                Some(9002),
                100,
                true,
                ServerState::Stopped
            ),
        ]
    );

    // A member's reported state wakes the table.
    let read = {
        let api = api.clone();
        async move { api.watch_lb_table("front", first.index, LONG_WAIT).await }
    };
    let woken = blocked_until(read, async {
        api.report("n1", &report(vec![observed("web1", ServerState::Stopping)]))
            .await
            .expect("report");
    })
    .await;
    assert_eq!(
        woken.value.clusters["shop"].members[0].state,
        ServerState::Stopping
    );

    // A node's new address wakes it.
    let read = {
        let api = api.clone();
        let index = woken.index;
        async move { api.watch_lb_table("front", index, LONG_WAIT).await }
    };
    let moved = blocked_until(read, async {
        let mut n1 = node("n1");
        n1.address = "127.0.0.2".into();
        api.put_node(&n1).await.expect("node moved");
    })
    .await;
    assert_eq!(moved.value.clusters["shop"].members[0].address, "127.0.0.2");

    // So does a route.
    let read = {
        let api = api.clone();
        let index = moved.index;
        async move { api.watch_lb_table("front", index, LONG_WAIT).await }
    };
    let routed = blocked_until(read, async {
        api.add_route(
            "front",
            &RouteChange {
                host: Some("shop.example.com".into()),
                cluster: Some("shop".into()),
                ..RouteChange::default()
            },
        )
        .await
        .expect("route");
    })
    .await;
    assert_eq!(routed.value.lb.listeners[0].routes.len(), 2);

    let (status, _, body) = raw(&controller, "/v1/lbs/ghost/table").await;
    assert_eq!(status, 404);
    assert!(body
        .expect("error")
        .error
        .message
        .contains("balancer `ghost`"));
    controller.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_back_from_an_out_of_date_read_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = start_controller(dir.path()).await;
    let api = client(&controller);
    api.put_node(&node("n1")).await.expect("node");
    let read = server("web1", "n1", 9001);
    api.create_server(&read).await.expect("server");
    api.create_cluster(&ClusterSpec::new("shop", vec!["web1".into()]))
        .await
        .expect("cluster");
    let server_read = dure_core::document_digest(&read);
    let balance_read = dure_core::document_digest(&ClusterBalance::default());

    // Another change comes first, to each document.
    let mut first = read.clone();
    first.weight = 5;
    api.replace_server(&first).await.expect("first change");
    let policy = ClusterBalance {
        policy: Policy::LeastConn,
        ..ClusterBalance::default()
    };
    api.set_balance("shop", &policy)
        .await
        .expect("first change");

    // The write-backs made from the reads before them are refused (409).
    let mut second = read.clone();
    second.weight = 9;
    let stale = api.clone().with_expect(Some(server_read.clone()));
    let (status, message) = api_error(stale.replace_server(&second).await.unwrap_err());
    assert_eq!(status, 409);
    assert!(
        message.contains("server `web1` changed since it was read"),
        "{message}"
    );
    let stale = api.clone().with_expect(Some(balance_read));
    let (status, message) = api_error(
        stale
            .set_balance("shop", &ClusterBalance::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 409);
    assert!(
        message.contains("the balancing of cluster `shop` changed since it was read"),
        "{message}"
    );
    let views = api.get_server("web1").await.expect("web1");
    assert_eq!(views.spec.weight, 5, "the refused change changed nothing");
    let shop = api.get_cluster("shop").await.expect("shop");
    assert_eq!(shop.spec.balance.policy, Policy::LeastConn);

    // From an up-to-date read it goes through.
    let fresh = api
        .clone()
        .with_expect(Some(dure_core::document_digest(&first)));
    fresh.replace_server(&second).await.expect("up to date");
    assert_eq!(api.get_server("web1").await.expect("web1").spec.weight, 9);
}
