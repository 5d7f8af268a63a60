//! Observed state of running balancers, kept in memory only (like
//! [`crate::runtime`]): what each `dure lb run` instance last reported of
//! its members — requests, responses by class, errors, retries, in-flight
//! requests, latency, health — and when. An instance silent for
//! [`LB_REPORTS_MISSED`] report intervals is forgotten; a restarted
//! controller knows every live instance again after one interval.
//!
//! Every report bumps the view index on [`Topic::LbStats`] only, so the
//! reads of balancer figures block on it while the balancers' tables are
//! not woken by figures.
//!
//! It also keeps which servers are being drained ([`crate::drain`]): a
//! mark the balancers' tables show as the member's `draining`, bumping
//! [`Topic::Lbs`] so every balancer gets it within a blocking read.

use crate::clock::now_ms;
use crate::watch::{Topic, ViewIndex};
use dure_api::{
    LatencyPercentiles, LbInstanceStats, LbMemberFigures, LbReport, LbStats, LB_REPORTS_MISSED,
    LB_REPORT_INTERVAL,
};
use dure_core::balance::latency;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// An instance's last report and when it came.
#[derive(Debug, Clone)]
struct Heard {
    report: LbReport,
    at: Instant,
    at_ms: u64,
}

/// One live instance's last word on one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberReport {
    /// When the report came.
    pub at: Instant,
    pub health: String,
    pub in_flight: u64,
}

pub struct LbRuntime {
    /// By balancer, then instance id.
    instances: Mutex<BTreeMap<String, BTreeMap<String, Heard>>>,
    /// The servers marked draining.
    draining: Mutex<BTreeSet<String>>,
    /// How long an instance may stay silent before it is forgotten.
    silent_limit: Duration,
    /// Bumped on every report and every instance forgotten, so waiters
    /// (a drain) look again.
    changed: watch::Sender<u64>,
    view: Arc<ViewIndex>,
}

impl LbRuntime {
    pub fn new(view: Arc<ViewIndex>) -> LbRuntime {
        LbRuntime {
            instances: Mutex::new(BTreeMap::new()),
            draining: Mutex::new(BTreeSet::new()),
            silent_limit: LB_REPORT_INTERVAL * LB_REPORTS_MISSED,
            changed: watch::channel(0).0,
            view,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, BTreeMap<String, Heard>>> {
        self.instances.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        self.view.bump(&[Topic::LbStats]);
    }

    /// Keeps `report` as instance `report.instance_id` of balancer `lb`
    /// says it now; the caller has checked it.
    pub fn report(&self, lb: &str, report: LbReport) {
        let heard = Heard {
            at: Instant::now(),
            at_ms: now_ms(),
            report,
        };
        self.lock()
            .entry(lb.to_string())
            .or_default()
            .insert(heard.report.instance_id.clone(), heard);
        self.notify();
    }

    /// Forgets the instances silent for too long; returns them, as
    /// (balancer, instance id).
    pub fn sweep(&self) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        {
            let mut all = self.lock();
            for (lb, instances) in all.iter_mut() {
                instances.retain(|id, heard| {
                    let live = heard.at.elapsed() <= self.silent_limit;
                    if !live {
                        gone.push((lb.clone(), id.clone()));
                    }
                    live
                });
            }
            all.retain(|_, instances| !instances.is_empty());
        }
        if !gone.is_empty() {
            self.notify();
        }
        gone
    }

    /// Wakes on every report and every instance forgotten.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// What each live instance, of any balancer, last said of member
    /// `member` of `cluster`; empty when none reports it.
    pub fn member_reports(&self, cluster: &str, member: &str) -> Vec<MemberReport> {
        self.lock()
            .values()
            .flat_map(|instances| instances.values())
            .filter(|heard| heard.at.elapsed() <= self.silent_limit)
            .filter_map(|heard| {
                let figures = heard
                    .report
                    .members
                    .iter()
                    .find(|m| m.cluster == cluster && m.member == member)?;
                Some(MemberReport {
                    at: heard.at,
                    health: figures.health.clone(),
                    in_flight: figures.in_flight,
                })
            })
            .collect()
    }

    fn draining(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.draining.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `server` draining in the balancers' tables.
    pub fn mark_draining(&self, server: &str) {
        if self.draining().insert(server.to_string()) {
            self.view.bump(&[Topic::Lbs]);
        }
    }

    /// Takes `server`'s draining mark away, if it has one.
    pub fn clear_draining(&self, server: &str) {
        if self.draining().remove(server) {
            self.view.bump(&[Topic::Lbs]);
        }
    }

    pub fn is_draining(&self, server: &str) -> bool {
        self.draining().contains(server)
    }

    /// The figures of balancer `lb`'s live instances and their sum; no
    /// instances when none reports.
    pub fn stats(&self, lb: &str) -> LbStats {
        let all = self.lock();
        self.stats_of(lb, all.get(lb))
    }

    /// The figures of every balancer with a live instance, by name.
    pub fn all(&self) -> Vec<LbStats> {
        let all = self.lock();
        all.iter()
            .map(|(lb, instances)| self.stats_of(lb, Some(instances)))
            .filter(|stats| !stats.instances.is_empty())
            .collect()
    }

    fn stats_of(&self, lb: &str, instances: Option<&BTreeMap<String, Heard>>) -> LbStats {
        let live: Vec<&Heard> = instances
            .into_iter()
            .flat_map(|i| i.values())
            .filter(|heard| heard.at.elapsed() <= self.silent_limit)
            .collect();
        LbStats {
            lb: lb.to_string(),
            instances: live
                .iter()
                .map(|heard| LbInstanceStats {
                    instance_id: heard.report.instance_id.clone(),
                    admin: heard.report.admin.clone(),
                    version: heard.report.version.clone(),
                    reported_ms: heard.at_ms,
                    age_ms: u64::try_from(heard.at.elapsed().as_millis()).unwrap_or(u64::MAX),
                    members: heard.report.members.clone(),
                })
                .collect(),
            members: sum(live.iter().map(|heard| &heard.report)),
        }
    }
}

/// Each member's figures summed over `reports`, by cluster and member.
fn sum<'a>(reports: impl Iterator<Item = &'a LbReport>) -> Vec<LbMemberFigures> {
    let mut members: BTreeMap<(String, String), Vec<&LbMemberFigures>> = BTreeMap::new();
    for report in reports {
        for figures in &report.members {
            members
                .entry((figures.cluster.clone(), figures.member.clone()))
                .or_default()
                .push(figures);
        }
    }
    members
        .into_values()
        .map(|parts| sum_member(&parts))
        .collect()
}

/// One member's figures over several instances: counters added, latency
/// percentiles of the added bucket counts, health as each instance says.
fn sum_member(parts: &[&LbMemberFigures]) -> LbMemberFigures {
    let first = parts[0];
    let add = |f: fn(&LbMemberFigures) -> u64| {
        parts
            .iter()
            .map(|p| f(p))
            .fold(0u64, |a, b| a.saturating_add(b))
    };
    let mut buckets = Vec::new();
    for part in parts {
        latency::add(&mut buckets, &part.latency_buckets);
    }
    let latency_ms = if parts.len() == 1 || buckets.is_empty() {
        first.latency_ms
    } else {
        LatencyPercentiles::of_buckets(&buckets)
    };
    let newest_check = parts.iter().max_by_key(|p| p.last_check_ms).copied();
    LbMemberFigures {
        cluster: first.cluster.clone(),
        member: first.member.clone(),
        addr: first.addr.clone(),
        requests: add(|p| p.requests),
        responses: parts
            .iter()
            .fold(Default::default(), |sum, p| p.responses.plus(sum)),
        errors: add(|p| p.errors),
        retries: add(|p| p.retries),
        in_flight: add(|p| p.in_flight),
        latency_ms,
        latency_buckets: buckets,
        health: health_of(parts),
        last_check_ms: newest_check.and_then(|p| p.last_check_ms),
        last_error: newest_check.and_then(|p| p.last_error.clone()),
    }
}

/// The health instances agree on, or how many say what: `up 1, ejected 1`.
fn health_of(parts: &[&LbMemberFigures]) -> String {
    let mut said: BTreeMap<&str, usize> = BTreeMap::new();
    for part in parts {
        *said.entry(part.health.as_str()).or_default() += 1;
    }
    if said.len() == 1 {
        return parts[0].health.clone();
    }
    said.iter()
        .map(|(health, n)| format!("{health} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_api::ResponseCounts;

    fn figures(member: &str, requests: u64, health: &str, slow: bool) -> LbMemberFigures {
        let mut buckets = vec![0; latency::BUCKETS];
        // 1–2 ms, or 200–500 ms.
        buckets[if slow { 11 } else { 4 }] = requests;
        LbMemberFigures {
            cluster: "shop".into(),
            member: member.into(),
            addr: "127.0.0.1:9001".into(),
            requests,
            responses: ResponseCounts {
                success: requests,
                ..ResponseCounts::default()
            },
            errors: 1,
            retries: 0,
            in_flight: 1,
            latency_ms: LatencyPercentiles::of_buckets(&buckets),
            latency_buckets: buckets,
            health: health.into(),
            last_check_ms: None,
            last_error: None,
        }
    }

    fn report(id: &str, members: Vec<LbMemberFigures>) -> LbReport {
        LbReport {
            instance_id: id.into(),
            admin: None,
            version: None,
            members,
        }
    }

    #[test]
    fn instances_add_up_per_member_and_silent_ones_are_forgotten() {
        let lbs = LbRuntime::new(Arc::new(ViewIndex::new(0)));
        let before = lbs.view.get(&[Topic::LbStats]);
        lbs.report("front", report("a", vec![figures("web1", 90, "up", false)]));
        lbs.report(
            "front",
            report(
                "b",
                vec![
                    figures("web1", 10, "ejected", true),
                    figures("web2", 5, "up", false),
                ],
            ),
        );
        assert!(lbs.view.get(&[Topic::LbStats]) > before);
        let stats = lbs.stats("front");
        assert_eq!(stats.instances.len(), 2);
        let web1 = &stats.members[0];
        assert_eq!(
            (web1.member.as_str(), web1.requests, web1.responses.success),
            ("web1", 100, 100)
        );
        assert_eq!((web1.errors, web1.in_flight), (2, 2));
        assert_eq!(web1.health, "ejected 1, up 1");
        let p50 = web1.latency_ms.p50.expect("p50");
        let p99 = web1.latency_ms.p99.expect("p99");
        assert!((1.0..=2.0).contains(&p50), "{p50}");
        assert!((200.0..=500.0).contains(&p99), "{p99}");
        assert_eq!(stats.members[1].health, "up");
        assert_eq!(lbs.all().len(), 1);
        assert!(lbs.stats("other").instances.is_empty());

        // An instance silent past the limit is no longer shown, and a
        // sweep forgets it.
        {
            let mut all = lbs.lock();
            let heard = all
                .get_mut("front")
                .and_then(|i| i.get_mut("a"))
                .expect("a");
            heard.at = heard
                .at
                .checked_sub(lbs.silent_limit + Duration::from_millis(1))
                .expect("the monotonic clock is past the limit");
        }
        let stats = lbs.stats("front");
        assert_eq!(stats.instances.len(), 1);
        assert_eq!(stats.members[0].requests, 10);
        assert_eq!(lbs.sweep(), [("front".to_string(), "a".to_string())]);
        assert!(lbs.sweep().is_empty());
        let web1 = lbs.member_reports("shop", "web1");
        assert_eq!(
            web1.iter()
                .map(|r| (r.health.as_str(), r.in_flight))
                .collect::<Vec<_>>(),
            [("ejected", 1)]
        );
        assert!(lbs.member_reports("shop", "web9").is_empty());
    }

    #[test]
    fn a_draining_mark_moves_the_balancers_tables_once() {
        let lbs = LbRuntime::new(Arc::new(ViewIndex::new(0)));
        let before = lbs.view.get(&[Topic::Lbs]);
        lbs.mark_draining("web1");
        let marked = lbs.view.get(&[Topic::Lbs]);
        assert!(marked > before && lbs.is_draining("web1"));
        lbs.mark_draining("web1");
        assert_eq!(lbs.view.get(&[Topic::Lbs]), marked, "marked already");
        lbs.clear_draining("web1");
        assert!(!lbs.is_draining("web1") && lbs.view.get(&[Topic::Lbs]) > marked);
    }
}
