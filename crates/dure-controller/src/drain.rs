//! Draining before a graceful stop. A ready member of a cluster that some
//! balancer routes to is first marked draining ([`crate::lb_runtime`]
//! keeps the mark, in memory; the balancers' tables show it, so they take
//! the member out of rotation within one blocking read), and the stop
//! waits until every live balancer instance that reports the member has
//! said, in a report that came after the mark, that it treats the member
//! as draining (or down) with no request in flight — or until the
//! cluster's drain timeout. With no instance reporting the member it does
//! not wait. The mark stays until the server is asked to run again, so the
//! member is never back in rotation between its drain and its stop. A kill
//! never drains.

use crate::app::App;
use dure_api::{LB_HEALTH_DOWN, LB_HEALTH_DRAINING};
use dure_core::{Domain, ServerState};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often a wait looks again when nothing reported meanwhile (an
/// instance may go silent and be forgotten).
const LOOK_EVERY: Duration = Duration::from_millis(100);
/// The longest a restarted member is awaited back in every balancer's
/// rotation before the rollout goes on without it.
pub const ROTATION_WAIT: Duration = Duration::from_secs(30);

/// A member to drain: its cluster and that cluster's drain timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub server: String,
    pub cluster: String,
    pub timeout: Duration,
}

/// How a drain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drain {
    /// No running balancer reports the member: nothing to wait for.
    Unreported,
    /// Every balancer reporting the member had no request in flight.
    Drained { took: Duration },
    /// The drain timeout ran out with requests still in flight.
    TimedOut { after: Duration, in_flight: u64 },
    /// The operation was cancelled (a kill of the cluster) meanwhile.
    Cancelled,
}

impl Drain {
    /// What the operation's step, or the event of a server stop, says.
    pub fn note(&self) -> String {
        match self {
            Drain::Unreported => "not drained: no running balancer reports it".into(),
            Drain::Drained { took } => format!("drained in {:.1}s", took.as_secs_f64()),
            Drain::TimedOut { after, in_flight } => format!(
                "drain timed out after {} with {in_flight} request(s) in flight",
                dure_core::DurationSpec(*after)
            ),
            Drain::Cancelled => "drain cancelled".into(),
        }
    }
}

/// The member `server` as a drain target: when it is ready and its
/// cluster is routed to by some balancer.
pub fn target(app: &App, server: &str) -> Option<Target> {
    let (node, cluster, timeout) = app.config.read(|d| routed(d, server))?;
    (app.runtime.observed(&node, server).state == ServerState::Ready).then(|| Target {
        server: server.to_string(),
        cluster,
        timeout,
    })
}

/// The node, cluster and drain timeout of `server` when a balancer routes
/// to its cluster.
fn routed(domain: &Domain, server: &str) -> Option<(String, String, Duration)> {
    let node = domain.servers().get(server)?.node.clone();
    let cluster = domain
        .clusters
        .values()
        .find(|c| c.members.iter().any(|m| m == server))?;
    let routed = domain
        .lbs
        .values()
        .flat_map(|lb| &lb.listeners)
        .flat_map(|l| &l.routes)
        .any(|r| r.cluster == cluster.name);
    routed.then(|| (node, cluster.name.clone(), cluster.balance.drain_timeout.0))
}

/// Marks every target draining and waits for each as the module says;
/// returns each one's outcome, in order.
pub async fn drain(
    app: &App,
    targets: &[Target],
    cancelled: &mut watch::Receiver<bool>,
) -> Vec<Drain> {
    let started = Instant::now();
    let mut changes = app.lb_runtime.subscribe();
    for target in targets {
        app.lb_runtime.mark_draining(&target.server);
    }
    let mut outcomes: Vec<Option<Drain>> = vec![None; targets.len()];
    let mut reported = vec![false; targets.len()];
    loop {
        for (i, target) in targets.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            let reports = app
                .lb_runtime
                .member_reports(&target.cluster, &target.server);
            if reports.is_empty() {
                // Every instance that reported it went away: none sends
                // it requests.
                outcomes[i] = Some(if reported[i] {
                    Drain::Drained {
                        took: started.elapsed(),
                    }
                } else {
                    Drain::Unreported
                });
                continue;
            }
            reported[i] = true;
            let idle = reports.iter().all(|r| {
                r.at > started
                    && (r.health == LB_HEALTH_DRAINING || r.health == LB_HEALTH_DOWN)
                    && r.in_flight == 0
            });
            if idle {
                outcomes[i] = Some(Drain::Drained {
                    took: started.elapsed(),
                });
            } else if started.elapsed() >= target.timeout {
                outcomes[i] = Some(Drain::TimedOut {
                    after: target.timeout,
                    in_flight: reports.iter().map(|r| r.in_flight).sum(),
                });
            }
        }
        if outcomes.iter().all(Option::is_some) {
            break;
        }
        if *cancelled.borrow() {
            for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
                *outcome = Some(Drain::Cancelled);
            }
            break;
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = cancelled.changed() => {}
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every outcome is set before the loop ends"))
        .collect()
}

/// Waits until every live balancer instance that reports `server` of
/// `cluster` shows it `up` in a report that came after `since`; returns
/// `None` when no instance reports it, else whether it got back within
/// [`ROTATION_WAIT`].
pub async fn back_in_rotation(
    app: &App,
    cluster: &str,
    server: &str,
    since: Instant,
    cancelled: &mut watch::Receiver<bool>,
) -> Option<bool> {
    let mut changes = app.lb_runtime.subscribe();
    let deadline = since + ROTATION_WAIT;
    loop {
        let reports = app.lb_runtime.member_reports(cluster, server);
        if reports.is_empty() {
            return None;
        }
        if reports
            .iter()
            .all(|r| r.at > since && r.health == dure_api::LB_HEALTH_UP)
        {
            return Some(true);
        }
        if Instant::now() >= deadline || *cancelled.borrow() {
            return Some(false);
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = cancelled.changed() => {}
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{app_in, populate};
    use dure_api::{LbMemberFigures, LbReport};

    fn report(in_flight: u64, health: &str) -> LbReport {
        LbReport {
            instance_id: "a".into(),
            admin: None,
            version: None,
            members: vec![LbMemberFigures {
                cluster: "shop".into(),
                member: "web1".into(),
                addr: String::new(),
                requests: 5,
                responses: Default::default(),
                errors: 0,
                retries: 0,
                in_flight,
                latency_ms: Default::default(),
                latency_buckets: Vec::new(),
                health: health.into(),
                last_check_ms: None,
                last_error: None,
            }],
        }
    }

    #[tokio::test]
    async fn a_drain_waits_for_an_idle_report_after_its_mark_or_its_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        populate(&app).await;
        let target = Target {
            server: "web1".into(),
            cluster: "shop".into(),
            timeout: Duration::from_millis(300),
        };
        let (_never, mut cancelled) = watch::channel(false);
        let targets = std::slice::from_ref(&target);
        assert_eq!(
            drain(&app, targets, &mut cancelled).await,
            [Drain::Unreported],
            "no balancer reports it: no wait"
        );
        assert!(app.lb_runtime.is_draining("web1"));

        // Idle, but said before the mark: not taken; then a request stays
        // in flight until the timeout.
        app.lb_runtime.report("front", report(0, "up"));
        let busy = {
            let app = app.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                app.lb_runtime.report("front", report(2, "draining"));
            }
        };
        let (outcome, ()) = tokio::join!(drain(&app, targets, &mut cancelled), busy);
        assert_eq!(
            outcome,
            [Drain::TimedOut {
                after: target.timeout,
                in_flight: 2
            }]
        );
        assert!(outcome[0].note().contains("with 2 request(s) in flight"));

        let idle = {
            let app = app.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                app.lb_runtime.report("front", report(0, "draining"));
            }
        };
        let (outcome, ()) = tokio::join!(drain(&app, targets, &mut cancelled), idle);
        assert!(
            matches!(outcome[..], [Drain::Drained { .. }]),
            "{outcome:?}"
        );

        // Asked to run again: back in the balancers' tables.
        app.set_intent("web1", dure_core::Intent::Run, "admin")
            .await
            .expect("run");
        assert!(!app.lb_runtime.is_draining("web1"));
    }
}
