//! What a running balancer instance tells the controller: every member's
//! figures (`POST /v1/lbs/{lb}/report`) every [`LB_REPORT_INTERVAL`], and
//! at once when a draining member's last request ends or a member turns
//! draining, so a graceful stop waiting for the member's requests learns
//! of it within a fraction of a second rather than an interval. The
//! instance is named by an id drawn at random for each process.

use dure_api::{
    Client, LatencyPercentiles, LbMemberFigures, LbReport, ResponseCounts, LB_HEALTH_DRAINING,
    LB_REPORT_INTERVAL,
};
use dure_lb::{Balancer, MemberSnapshot};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the figures are looked at for a draining member that went
/// idle: cheap, a read of a few counters per member.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Returns a new random instance id, 64 bits in hex.
pub fn instance_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot draw a random balancer instance id: {e}"))?;
    Ok(format!("{:016x}", u64::from_be_bytes(bytes)))
}

pub struct Reporter {
    pub client: Client,
    pub name: String,
    pub instance_id: String,
    pub admin: Option<SocketAddr>,
    pub balancer: Arc<Balancer>,
}

/// The draining members of a look at the figures, and those of them with
/// requests in flight.
#[derive(Debug, Default, PartialEq, Eq)]
struct Draining {
    all: BTreeSet<(String, String)>,
    busy: BTreeSet<(String, String)>,
}

impl Draining {
    fn of(snapshots: &[MemberSnapshot]) -> Draining {
        let mut draining = Draining::default();
        for s in snapshots
            .iter()
            .filter(|s| s.health.state == LB_HEALTH_DRAINING)
        {
            let key = (s.cluster.clone(), s.member.clone());
            if s.in_flight > 0 {
                draining.busy.insert(key.clone());
            }
            draining.all.insert(key);
        }
        draining
    }

    /// Whether a member turned draining, or went idle while draining,
    /// since `before`: the controller should hear of it now.
    fn news_since(&self, before: &Draining) -> bool {
        self.all.iter().any(|key| {
            !self.busy.contains(key) && (!before.all.contains(key) || before.busy.contains(key))
        })
    }
}

impl Reporter {
    pub async fn run(self) {
        let mut sent: Option<Instant> = None;
        let mut before = Draining::default();
        let mut failing = false;
        loop {
            let snapshots = self.balancer.stats();
            let draining = Draining::of(&snapshots);
            let due = sent.is_none_or(|at| at.elapsed() >= LB_REPORT_INTERVAL);
            if due || draining.news_since(&before) {
                sent = Some(Instant::now());
                match self
                    .client
                    .lb_report(&self.name, &self.report(&snapshots))
                    .await
                {
                    Ok(()) if failing => {
                        tracing::info!(lb = %self.name, "the controller takes this balancer's reports again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(error) if !failing => {
                        tracing::warn!(lb = %self.name, error = %error, "cannot report this balancer's figures to the controller; retrying every second");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
            before = draining;
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    fn report(&self, snapshots: &[MemberSnapshot]) -> LbReport {
        LbReport {
            instance_id: self.instance_id.clone(),
            admin: self.admin.map(|a| a.to_string()),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            members: snapshots.iter().map(figures).collect(),
        }
    }
}

/// A member's figures as the controller takes them.
fn figures(s: &MemberSnapshot) -> LbMemberFigures {
    let r = &s.responses;
    LbMemberFigures {
        cluster: s.cluster.clone(),
        member: s.member.clone(),
        addr: s.addr.clone(),
        requests: s.requests,
        responses: ResponseCounts {
            informational: r.informational,
            success: r.success,
            redirection: r.redirection,
            client_error: r.client_error,
            server_error: r.server_error,
        },
        errors: s.errors,
        retries: s.retries,
        in_flight: s.in_flight,
        latency_ms: LatencyPercentiles {
            p50: s.latency_ms.p50,
            p95: s.latency_ms.p95,
            p99: s.latency_ms.p99,
        },
        latency_buckets: s.histogram.buckets.clone(),
        health: s.health.state.clone(),
        last_check_ms: s
            .health
            .last_check_unix
            .map(|secs| secs.saturating_mul(1000)),
        last_error: s.health.last_error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draining(all: &[&str], busy: &[&str]) -> Draining {
        let key = |m: &&str| ("shop".to_string(), m.to_string());
        Draining {
            all: all.iter().map(key).collect(),
            busy: busy.iter().map(key).collect(),
        }
    }

    #[test]
    fn a_member_turning_draining_or_going_idle_is_news() {
        let none = draining(&[], &[]);
        assert!(!none.news_since(&none));
        assert!(
            draining(&["web1"], &[]).news_since(&none),
            "turned draining, idle"
        );
        assert!(
            !draining(&["web1"], &["web1"]).news_since(&none),
            "busy: not yet"
        );
        let busy = draining(&["web1"], &["web1"]);
        assert!(draining(&["web1"], &[]).news_since(&busy), "went idle");
        let idle = draining(&["web1"], &[]);
        assert!(!idle.news_since(&idle), "still idle: told already");
    }
}
