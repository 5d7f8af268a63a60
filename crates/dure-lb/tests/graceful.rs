//! A graceful stop of the balancer: its listeners stop accepting, a request
//! in flight is answered whole, an idle keep-alive connection is closed at
//! once, and a request longer than the grace is what is left open, counted.
//! Real sockets on loopback.

mod common;

use common::*;
use std::time::Duration;

const GRACE: Duration = Duration::from_secs(10);

/// Waits until the backend has been asked `n` requests.
async fn until_served(backend: &Backend, n: usize) {
    for _ in 0..200 {
        if backend.served() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the backend was not asked {n} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_answers_requests_in_flight_and_accepts_no_more() {
    let backend = Backend::start("a").await;
    let (balancer, url) = start(one_cluster(vec![backend.member()]), settings()).await;
    let client = client();
    // An idle keep-alive connection: it must not hold the stop up.
    let idle = client.get(&url).send().await.expect("a first request");
    assert_eq!(idle.text().await.expect("body"), "a");

    let slow = {
        let client = client.clone();
        let url = format!("{url}/slow?chunks=10");
        tokio::spawn(async move {
            let response = client.get(url).send().await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        })
    };
    until_served(&backend, 2).await;
    let left_open = balancer.stop_gracefully(GRACE).await;
    assert_eq!(left_open, 0, "every connection closed within the grace");
    let (status, body) = slow
        .await
        .expect("request task")
        .expect("the request in flight is answered whole");
    assert_eq!((status, body.lines().count()), (200, 10), "{body}");

    let addr = url.trim_start_matches("http://");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a stopped balancer accepts no connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_grace_is_counted_as_left_open() {
    let backend = Backend::start("a").await;
    let (balancer, url) = start(one_cluster(vec![backend.member()]), settings()).await;
    let slow = tokio::spawn(client().get(format!("{url}/slow?chunks=40")).send());
    until_served(&backend, 1).await;
    assert_eq!(
        balancer.stop_gracefully(Duration::from_millis(200)).await,
        1,
        "the long request's connection is still open after the grace"
    );
    drop(balancer);
    slow.abort();
}
