//! Members that die or freeze while the balancer is under a bounded load:
//! no GET fails, in-flight ones included.

mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Clients sending at once, and requests each sends.
const WORKERS: usize = 4;
const PER_WORKER: usize = 50;

/// Runs the load against `url`, calling `fault` once a quarter of the
/// requests have been answered, and returns the statuses that were not 200.
async fn load_with_fault(url: &str, fault: impl FnOnce() + Send + 'static) -> Vec<String> {
    let answered = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let fault = Arc::new(std::sync::Mutex::new(Some(fault)));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (url, answered, failures, fault) = (
            url.to_string(),
            answered.clone(),
            failures.clone(),
            fault.clone(),
        );
        workers.push(tokio::spawn(async move {
            let client = client();
            for _ in 0..PER_WORKER {
                match client.get(format!("{url}/")).send().await {
                    Ok(response) if response.status() == 200 => match response.text().await {
                        Ok(_) => {}
                        Err(e) => failures.lock().unwrap().push(format!("body: {e}")),
                    },
                    Ok(response) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", response.status())),
                    Err(e) => failures.lock().unwrap().push(format!("request: {e}")),
                }
                if answered.fetch_add(1, Ordering::SeqCst) + 1 == WORKERS * PER_WORKER / 4 {
                    if let Some(fault) = fault.lock().unwrap().take() {
                        fault();
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("a worker ends");
    }
    let failures = failures.lock().unwrap().clone();
    failures
}

#[tokio::test]
async fn a_member_killed_under_load_costs_no_get() {
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
    let kill = b.killer();
    let failures = load_with_fault(&url, move || kill.kill()).await;
    assert!(failures.is_empty(), "failed GETs: {failures:?}");
    let stats = balancer.stats();
    let total: u64 = stats.iter().map(|m| m.responses.success).sum();
    assert_eq!(total, (WORKERS * PER_WORKER) as u64);
    assert!(
        b.served() < WORKERS * PER_WORKER / 2,
        "the killed member kept serving"
    );
}

#[tokio::test]
async fn a_member_frozen_under_load_costs_no_get_and_is_ejected() {
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
    let freeze = b.freezer();
    let failures = load_with_fault(&url, move || freeze.freeze()).await;
    assert!(failures.is_empty(), "failed GETs: {failures:?}");
    let stats = balancer.stats();
    let frozen = stats
        .iter()
        .find(|m| m.member == "b")
        .expect("figures for b");
    assert_eq!(frozen.health.state, "ejected", "{frozen:?}");
}
