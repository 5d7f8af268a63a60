//! The latency buckets balancers count in (1-2-5 steps from 100 µs to
//! 50 s, and one above) and the percentiles read from them, interpolated
//! within a bucket. One scale everywhere, so the controller can add up the
//! counts of several balancer instances and read percentiles of the sum.

use std::time::Duration;

/// Upper bounds of the buckets, in microseconds; a last bucket holds the rest.
pub const BOUNDS_MICROS: [u64; 18] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000, 50_000_000,
];

/// How many counts a histogram on this scale has: one per bound and one above.
pub const BUCKETS: usize = BOUNDS_MICROS.len() + 1;

/// Returns the latency below which a fraction `q` of the samples counted in
/// `buckets` (not cumulative, on [`BOUNDS_MICROS`]) fall, or `None` without
/// samples; samples above the last bound count as it.
pub fn quantile(buckets: &[u64], q: f64) -> Option<Duration> {
    let count: u64 = buckets.iter().sum();
    if count == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * count as f64).max(1.0);
    let mut below = 0u64;
    for (index, &n) in buckets.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let low = if index == 0 {
                0
            } else {
                BOUNDS_MICROS.get(index - 1).copied().unwrap_or(0)
            };
            let Some(&high) = BOUNDS_MICROS.get(index) else {
                return Some(Duration::from_micros(low));
            };
            let within = (rank - below as f64) / n as f64;
            return Some(Duration::from_micros(
                low + ((high - low) as f64 * within) as u64,
            ));
        }
        below += n;
    }
    None
}

/// Adds the counts of `other` to `sum`, bucket by bucket.
pub fn add(sum: &mut Vec<u64>, other: &[u64]) {
    if sum.len() < other.len() {
        sum.resize(other.len(), 0);
    }
    for (total, n) in sum.iter_mut().zip(other) {
        *total = total.saturating_add(*n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_sum_see_every_part() {
        let mut fast = vec![0; BUCKETS];
        fast[4] = 90; // 1–2 ms
        let mut slow = vec![0; BUCKETS];
        slow[11] = 10; // 200–500 ms
        assert!(quantile(&slow, 0.5).unwrap() > Duration::from_millis(200));
        let mut sum = Vec::new();
        add(&mut sum, &fast);
        add(&mut sum, &slow);
        let p50 = quantile(&sum, 0.5).unwrap();
        assert!(p50 > Duration::from_millis(1) && p50 <= Duration::from_millis(2));
        let p99 = quantile(&sum, 0.99).unwrap();
        assert!(p99 > Duration::from_millis(200) && p99 <= Duration::from_millis(500));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[0; BUCKETS], 0.5), None);
    }
}
