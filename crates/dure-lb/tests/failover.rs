//! Failover through real sockets: refused connects and frozen members
//! retried away, requests that were sent not retried, the 502/503 pages,
//! active health checks, and the figures on the admin port.

mod common;

use common::*;
use dure_lb::{ClusterSpec, HealthCheckKind, HealthCheckSpec, MemberSnapshot};
use dure_testkit::eventually;
use http::StatusCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How many requests each load loop sends.
const REQUESTS: usize = 30;

fn member_stats<'a>(stats: &'a [MemberSnapshot], name: &str) -> &'a MemberSnapshot {
    stats
        .iter()
        .find(|m| m.member == name)
        .unwrap_or_else(|| panic!("no figures for member `{name}`"))
}

#[tokio::test]
async fn a_refused_connect_is_retried_on_another_member() {
    let live = Backend::start("live").await;
    let table = one_cluster(vec![member("dead", refused_addr().await), live.member()]);
    let (balancer, url) = start(table, settings()).await;
    let client = client();
    for _ in 0..REQUESTS {
        let response = client
            .get(format!("{url}/"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.expect("a body"), "live");
    }
    let stats = balancer.stats();
    let dead = member_stats(&stats, "dead");
    assert!(dead.errors >= 1 && dead.retries == dead.errors, "{dead:?}");
    assert_eq!(
        member_stats(&stats, "live").responses.success,
        REQUESTS as u64
    );
}

#[tokio::test]
async fn a_member_that_never_answers_is_timed_out_retried_and_ejected() {
    let live = Backend::start("live").await;
    let (frozen, accepted) = frozen_addr().await;
    let table = one_cluster(vec![member("frozen", frozen), live.member()]);
    let (balancer, url) = start(table, settings()).await;
    let client = client();
    for _ in 0..REQUESTS {
        let response = client
            .get(format!("{url}/"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 200);
    }
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the frozen member was never tried"
    );
    assert_eq!(live.served(), REQUESTS);
    let stats = balancer.stats();
    let frozen = member_stats(&stats, "frozen");
    assert_eq!(frozen.health.state, "ejected", "{frozen:?}");
    assert!(frozen.errors >= 1 && frozen.retries >= 1, "{frozen:?}");
}

/// A POST the member read and then dropped may have been processed: it is
/// answered 502, never sent again. GETs on the same pair all succeed.
#[tokio::test]
async fn a_post_that_was_sent_is_not_retried() {
    let live = Backend::start("live").await;
    let (closing, read) = closing_addr().await;
    let table = one_cluster(vec![member("closing", closing), live.member()]);
    let (_balancer, url) = start(table, settings()).await;
    let client = client();
    let mut failed = 0;
    for _ in 0..4 {
        let response = client
            .post(format!("{url}/"))
            .body("order=1")
            .send()
            .await
            .expect("an answer");
        match response.status() {
            StatusCode::OK => {}
            StatusCode::BAD_GATEWAY => failed += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(failed >= 1, "no POST reached the closing member");
    assert_eq!(
        read.load(Ordering::SeqCst),
        failed,
        "each failed POST was read once, by the closing member"
    );
    assert_eq!(
        live.served(),
        4 - failed,
        "no failed POST was sent again to the live member"
    );
    for _ in 0..REQUESTS {
        let response = client
            .get(format!("{url}/"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test]
async fn no_member_is_503_and_every_attempt_failed_is_502() {
    let (_balancer, url) = start(one_cluster(vec![]), settings()).await;
    let response = client()
        .get(format!("{url}/"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 503);
    let page = response.text().await.expect("a body");
    assert!(
        page.contains("no member of cluster `web` is available"),
        "{page}"
    );

    let table = one_cluster(vec![
        member("a", refused_addr().await),
        member("b", refused_addr().await),
    ]);
    let (_balancer, url) = start(table, settings()).await;
    let response = client()
        .get(format!("{url}/"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 502);
    let page = response.text().await.expect("a body");
    assert!(
        page.contains("cluster `web`: 2 attempt(s) failed"),
        "{page}"
    );
}

#[tokio::test]
async fn a_member_failing_its_health_check_leaves_the_rotation() {
    let (sick, well) = (Backend::start("sick").await, Backend::start("well").await);
    *sick.health_status.lock().unwrap() = StatusCode::SERVICE_UNAVAILABLE;
    let mut table = one_cluster(vec![sick.member(), well.member()]);
    let cluster: &mut ClusterSpec = table.clusters.get_mut("web").unwrap();
    cluster.pool.health.interval = dure_core::duration::DurationSpec::from_millis(50);
    cluster.health_check = Some(HealthCheckSpec {
        kind: HealthCheckKind::Http {
            path: "/health".into(),
        },
        timeout: Duration::from_secs(1),
    });
    let (balancer, url) = start(table, settings()).await;
    eventually(
        "the sick member is marked unhealthy",
        Duration::from_secs(10),
        || async {
            let stats = balancer.stats();
            let sick = member_stats(&stats, "sick");
            (sick.health.state == "unhealthy" && sick.health.last_check_unix.is_some())
                .then_some(())
        },
    )
    .await
    .expect("the checks run");
    let client = client();
    for _ in 0..REQUESTS {
        let answer = client
            .get(format!("{url}/"))
            .send()
            .await
            .expect("an answer")
            .text()
            .await
            .expect("a body");
        assert_eq!(answer, "well");
    }
    let stats = balancer.stats();
    assert_eq!(member_stats(&stats, "well").health.state, "up");
    assert!(member_stats(&stats, "sick")
        .health
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("503"));
}

#[tokio::test]
async fn the_admin_port_serves_stats_metrics_and_health() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (balancer, url) = start(one_cluster(vec![a.member(), b.member()]), settings()).await;
    let client = client();
    for _ in 0..10 {
        client
            .get(format!("{url}/"))
            .send()
            .await
            .expect("an answer")
            .text()
            .await
            .expect("a body");
    }
    let admin = format!("http://{}", balancer.admin_addr().expect("an admin port"));
    let health = client
        .get(format!("{admin}/health"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(health.status(), 200);

    let stats: serde_json::Value = client
        .get(format!("{admin}/stats"))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("JSON");
    let members = stats["members"].as_array().expect("a member list");
    assert_eq!(members.len(), 2);
    let total: u64 = members
        .iter()
        .map(|m| m["requests"].as_u64().expect("a count"))
        .sum();
    assert_eq!(total, 10);
    for m in members {
        assert_eq!(m["cluster"], "web");
        assert_eq!(m["responses"]["2xx"], m["requests"]);
        assert_eq!(m["in_flight"], 0);
        assert_eq!(m["health"]["state"], "up");
        assert!(m["latency_ms"]["p99"].as_f64().expect("a p99") > 0.0, "{m}");
    }

    let metrics = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .expect("an answer")
        .text()
        .await
        .expect("text");
    let served_a = a.served();
    for line in [
        format!("dure_lb_requests_total{{cluster=\"web\",member=\"a\"}} {served_a}"),
        format!("dure_lb_responses_total{{cluster=\"web\",member=\"a\",class=\"2xx\"}} {served_a}"),
        format!("dure_lb_response_seconds_bucket{{cluster=\"web\",member=\"a\",le=\"+Inf\"}} {served_a}"),
        format!("dure_lb_response_seconds_count{{cluster=\"web\",member=\"a\"}} {served_a}"),
        "dure_lb_in_flight{cluster=\"web\",member=\"b\"} 0".to_string(),
        "dure_lb_member_up{cluster=\"web\",member=\"b\"} 1".to_string(),
        "# TYPE dure_lb_response_seconds histogram".to_string(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing `{line}` in\n{metrics}");
    }
}
