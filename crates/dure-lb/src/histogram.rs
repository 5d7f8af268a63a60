//! A latency histogram on the core's fixed buckets
//! (`dure_core::balance::latency`: 1-2-5 steps from 100 µs to 50 s),
//! lock-free to record, read as Prometheus buckets and as percentiles
//! interpolated within a bucket.

use dure_core::balance::latency;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use dure_core::balance::latency::BOUNDS_MICROS;

#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; latency::BUCKETS],
    sum_micros: AtomicU64,
}

/// What a histogram held when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Counts per bucket (not cumulative), the last one above every bound.
    pub buckets: Vec<u64>,
    pub sum_micros: u64,
}

impl Histogram {
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let index = BOUNDS_MICROS.partition_point(|&bound| bound < micros);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Returns the latency below which a fraction `q` of the samples fall,
    /// or `None` without samples; samples above the last bound count as it.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        latency::quantile(&self.buckets, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_bucket_of_their_sample() {
        let histogram = Histogram::default();
        for _ in 0..90 {
            histogram.record(Duration::from_micros(1_500));
        }
        for _ in 0..10 {
            histogram.record(Duration::from_millis(300));
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 100);
        let p50 = snapshot.quantile(0.5).unwrap();
        assert!(
            p50 > Duration::from_millis(1) && p50 <= Duration::from_millis(2),
            "{p50:?}"
        );
        let p99 = snapshot.quantile(0.99).unwrap();
        assert!(
            p99 > Duration::from_millis(200) && p99 <= Duration::from_millis(500),
            "{p99:?}"
        );
        assert_eq!(Histogram::default().snapshot().quantile(0.5), None);
    }

    #[test]
    fn a_sample_above_every_bound_lands_in_the_last_bucket() {
        let histogram = Histogram::default();
        histogram.record(Duration::from_secs(600));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets.last(), Some(&1));
        assert_eq!(snapshot.quantile(0.99), Some(Duration::from_secs(50)));
    }
}
