//! Member states and sticky sessions through real sockets: draining and
//! down members take no new requests, both sticky modes bind a client to
//! its member and move it when that member cannot take it, and a client
//! that goes away ends its attempt.

mod common;

use common::*;
use dure_lb::{MemberState, Sticky, Table};
use dure_testkit::eventually;
use std::time::Duration;

/// How many requests each loop sends.
const REQUESTS: usize = 20;

async fn get(
    client: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
) -> (String, Option<String>) {
    let mut request = client.get(format!("{url}/"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("an answer");
    assert_eq!(response.status(), 200);
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().expect("a text cookie").to_string());
    (response.text().await.expect("a body"), set_cookie)
}

fn sticky(mut table: Table, mode: Sticky) -> Table {
    table
        .clusters
        .get_mut("web")
        .expect("the web cluster")
        .sticky = Some(mode);
    table
}

#[tokio::test]
async fn draining_and_down_members_take_no_new_requests() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let (balancer, url) = start(
        one_cluster(vec![a.member(), b.member(), c.member()]),
        settings(),
    )
    .await;
    let mut table = one_cluster(vec![a.member(), b.member(), c.member()]);
    table.clusters.get_mut("web").unwrap().members[0].state = MemberState::Draining;
    table.clusters.get_mut("web").unwrap().members[1].state = MemberState::Down;
    balancer
        .replace(table)
        .await
        .expect("the new states are taken");
    let client = client();
    for _ in 0..REQUESTS {
        assert_eq!(get(&client, &url, None).await.0, "c");
    }
    let stats = balancer.stats();
    let states: Vec<(&str, &str)> = stats
        .iter()
        .map(|m| (m.member.as_str(), m.health.state.as_str()))
        .collect();
    assert_eq!(states, vec![("a", "draining"), ("b", "down"), ("c", "up")]);
}

#[tokio::test]
async fn the_route_cookie_binds_a_client_and_moves_it_when_its_member_is_down() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let table = sticky(
        one_cluster(vec![a.member(), b.member()]),
        Sticky::route_cookie(),
    );
    let (balancer, url) = start(table.clone(), settings()).await;
    let client = client();
    let (first, set_cookie) = get(&client, &url, None).await;
    let set_cookie = set_cookie.expect("a first request is bound with a cookie");
    assert!(
        set_cookie.starts_with(&format!("DURE_ROUTE={first};")),
        "{set_cookie}"
    );
    let cookie = format!("DURE_ROUTE={first}");
    for _ in 0..REQUESTS {
        let (member, set_cookie) = get(&client, &url, Some(&cookie)).await;
        assert_eq!(member, first);
        assert_eq!(set_cookie, None, "a bound request is not bound again");
    }
    let mut down = table.clone();
    for member in &mut down.clusters.get_mut("web").unwrap().members {
        if member.name == first {
            member.state = MemberState::Down;
        }
    }
    balancer
        .replace(down)
        .await
        .expect("the new state is taken");
    let (moved, set_cookie) = get(&client, &url, Some(&cookie)).await;
    assert_ne!(moved, first);
    let set_cookie = set_cookie.expect("a moved client is bound anew");
    assert!(
        set_cookie.starts_with(&format!("DURE_ROUTE={moved};")),
        "{set_cookie}"
    );
}

#[tokio::test]
async fn the_session_suffix_routes_by_the_application_cookie() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut table = sticky(
        one_cluster(vec![a.member(), b.member()]),
        Sticky::session_suffix(),
    );
    table.clusters.get_mut("web").unwrap().members[1].route = Some("jvm2".to_string());
    let (_balancer, url) = start(table, settings()).await;
    let client = client();
    for _ in 0..REQUESTS {
        let (member, set_cookie) =
            get(&client, &url, Some("theme=dark; JSESSIONID=8F3A1C.jvm2")).await;
        assert_eq!(member, "b");
        assert_eq!(
            set_cookie, None,
            "the application sets its own session cookie"
        );
    }
    let (member, _) = get(&client, &url, Some("JSESSIONID=8F3A1C.a")).await;
    assert_eq!(member, "a");
    let by_path = client
        .get(format!("{url}/cart;jsessionid=8F3A1C.jvm2"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(
        by_path.text().await.expect("a body"),
        "b",
        "a client without cookies carries its session in the path"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..REQUESTS {
        seen.insert(get(&client, &url, Some("JSESSIONID=malformed")).await.0);
    }
    assert_eq!(
        seen.len(),
        2,
        "a cookie without a route is balanced as none: {seen:?}"
    );
}

#[tokio::test]
async fn a_client_that_goes_away_ends_its_attempt() {
    let (frozen, _) = frozen_addr().await;
    let settings = dure_lb::Settings {
        first_byte_timeout: Duration::from_secs(30),
        ..settings()
    };
    let (balancer, url) = start(one_cluster(vec![member("frozen", frozen)]), settings).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("a client");
    impatient
        .get(format!("{url}/"))
        .send()
        .await
        .expect_err("the frozen member never answers");
    eventually(
        "the abandoned attempt ends",
        Duration::from_secs(10),
        || async {
            let stats = balancer.stats();
            (stats[0].requests == 1 && stats[0].in_flight == 0).then_some(())
        },
    )
    .await
    .expect("in-flight goes back to 0");
    assert_eq!(
        balancer.stats()[0].health.state,
        "up",
        "a client going away says nothing of the member"
    );
}

/// A draining member keeps its sticky clients until the drain timeout,
/// and takes no new ones; after the timeout its clients move.
#[tokio::test]
async fn a_draining_member_keeps_its_sticky_clients_until_the_drain_timeout() {
    for (drain_timeout, stays) in [(Duration::from_secs(60), true), (Duration::ZERO, false)] {
        let (a, b) = (Backend::start("a").await, Backend::start("b").await);
        let table = sticky(
            one_cluster(vec![a.member(), b.member()]),
            Sticky::route_cookie(),
        );
        let (balancer, url) = start(table.clone(), settings()).await;
        let mut draining = table;
        let cluster = draining.clusters.get_mut("web").unwrap();
        cluster.drain_timeout = drain_timeout;
        cluster.members[0].state = MemberState::Draining;
        balancer
            .replace(draining)
            .await
            .expect("the new state is taken");
        let client = client();
        for _ in 0..REQUESTS {
            assert_eq!(
                get(&client, &url, None).await.0,
                "b",
                "a draining member takes no new client"
            );
            let bound = get(&client, &url, Some("DURE_ROUTE=a")).await.0;
            assert_eq!(
                bound == "a",
                stays,
                "drain timeout {drain_timeout:?}: went to `{bound}`"
            );
        }
    }
}
