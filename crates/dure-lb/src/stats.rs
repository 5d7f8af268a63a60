//! Per-member figures: requests, responses by class, errors, retries,
//! in-flight requests, the latency to response headers, and what the
//! health checks last said. Counters are atomics bumped on the request
//! path; a snapshot is what `/stats` and `/metrics` print.

use crate::histogram::{Histogram, HistogramSnapshot};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

#[derive(Debug, Default)]
pub struct MemberStats {
    requests: AtomicU64,
    /// Responses by class, 1xx at index 0 to 5xx at index 4.
    responses: [AtomicU64; 5],
    errors: AtomicU64,
    retries: AtomicU64,
    in_flight: AtomicU64,
    latency: Histogram,
    health: Mutex<HealthRecord>,
}

/// What the active checks last found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HealthRecord {
    /// `up`, `down`, `draining`, `ejected` or `unhealthy`.
    pub state: String,
    /// When the last check ended, in seconds since the Unix epoch.
    pub last_check_unix: Option<u64>,
    /// Why the last check failed, if it did.
    pub last_error: Option<String>,
}

/// A member's figures when they were read.
#[derive(Debug, Clone, Serialize)]
pub struct MemberSnapshot {
    pub cluster: String,
    pub member: String,
    pub addr: String,
    pub requests: u64,
    pub responses: ResponseClasses,
    pub errors: u64,
    pub retries: u64,
    pub in_flight: u64,
    pub latency_ms: Percentiles,
    pub health: HealthRecord,
    #[serde(skip)]
    pub histogram: HistogramSnapshot,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseClasses {
    #[serde(rename = "1xx")]
    pub informational: u64,
    #[serde(rename = "2xx")]
    pub success: u64,
    #[serde(rename = "3xx")]
    pub redirection: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    #[serde(rename = "5xx")]
    pub server_error: u64,
}

impl ResponseClasses {
    /// The classes with their label, for the Prometheus text.
    pub fn labelled(&self) -> [(&'static str, u64); 5] {
        [
            ("1xx", self.informational),
            ("2xx", self.success),
            ("3xx", self.redirection),
            ("4xx", self.client_error),
            ("5xx", self.server_error),
        ]
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl MemberStats {
    /// Counts a request sent to the member; it is in flight until
    /// [`MemberStats::finish`].
    pub fn start(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn finish(&self) {
        let previous = self.in_flight.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(previous > 0, "a request finished that never started");
    }

    /// Counts response headers of `status` that took `latency`.
    pub fn response(&self, status: u16, latency: Duration) {
        if let Some(class) = (status / 100).checked_sub(1).filter(|c| *c < 5) {
            self.responses[usize::from(class)].fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record(latency);
    }

    /// Counts a failed attempt (connect, reset, timeout).
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed attempt that was retried on another member.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Records when an active check ended and why it failed, if it did.
    pub fn checked(&self, at: SystemTime, error: Option<String>) {
        let mut health = self
            .health
            .lock()
            .expect("the health record is never poisoned: nothing panics under it");
        health.last_check_unix = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
        health.last_error = error;
    }

    /// Returns the figures, with `state` as the pool says it.
    pub fn snapshot(&self, cluster: &str, member: &str, addr: &str, state: &str) -> MemberSnapshot {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let histogram = self.latency.snapshot();
        let ms = |q| histogram.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
        MemberSnapshot {
            cluster: cluster.to_string(),
            member: member.to_string(),
            addr: addr.to_string(),
            requests: count(&self.requests),
            responses: ResponseClasses {
                informational: count(&self.responses[0]),
                success: count(&self.responses[1]),
                redirection: count(&self.responses[2]),
                client_error: count(&self.responses[3]),
                server_error: count(&self.responses[4]),
            },
            errors: count(&self.errors),
            retries: count(&self.retries),
            in_flight: count(&self.in_flight),
            latency_ms: Percentiles {
                p50: ms(0.5),
                p95: ms(0.95),
                p99: ms(0.99),
            },
            health: HealthRecord {
                state: state.to_string(),
                ..self
                    .health
                    .lock()
                    .expect("the health record is never poisoned: nothing panics under it")
                    .clone()
            },
            histogram,
        }
    }
}
