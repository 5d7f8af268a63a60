//! Smooth weighted round robin, nginx's algorithm: at each step every
//! member's current weight grows by its weight, the largest is picked and
//! loses the total. Over `total weight` steps each member is picked exactly
//! its weight times, spread out, and the current weights are back at zero,
//! so the sequence is periodic. The period is computed once per change of
//! the members taking requests; a pick then is one step along it, O(1).

/// The round robin period over a set of members, and where the next pick is.
#[derive(Debug, Clone, Default)]
pub(crate) struct SmoothSchedule {
    /// Member slots in pick order, one period (weights divided by their gcd).
    order: Vec<u32>,
    next: usize,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl SmoothSchedule {
    /// Builds the period over `(slot, weight)` pairs (weights at least 1).
    pub(crate) fn new(members: &[(u32, u32)]) -> SmoothSchedule {
        let divisor = members.iter().fold(0, |g, (_, w)| gcd(g, *w)).max(1);
        let weights: Vec<i64> = members
            .iter()
            .map(|(_, w)| i64::from(w / divisor))
            .collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; members.len()];
        let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            let mut best = 0;
            for (i, weight) in weights.iter().enumerate() {
                current[i] += weight;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            order.push(members[best].0);
        }
        debug_assert!(current.iter().all(|c| *c == 0), "a period ends at zero");
        SmoothSchedule { order, next: 0 }
    }

    /// Returns the next slot, if any member is scheduled.
    pub(crate) fn pick(&mut self) -> Option<u32> {
        self.pick_where(|_| true)
    }

    /// Returns the next slot that `allowed` accepts, skipping the others
    /// (a retry's choice: at most one period is walked).
    pub(crate) fn pick_where(&mut self, allowed: impl Fn(u32) -> bool) -> Option<u32> {
        let len = self.order.len();
        for _ in 0..len {
            let slot = self.order[self.next];
            self.next = (self.next + 1) % len;
            if allowed(slot) {
                return Some(slot);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn follows_nginx_for_5_1_1() {
        // The sequence nginx's documentation of the algorithm gives.
        let mut schedule = SmoothSchedule::new(&[(0, 5), (1, 1), (2, 1)]);
        let picks: Vec<u32> = (0..7).map(|_| schedule.pick().unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn nothing_scheduled_picks_nothing() {
        assert_eq!(SmoothSchedule::new(&[]).pick(), None);
    }

    proptest! {
        /// Any period gives each member exactly its share.
        #[test]
        fn a_period_is_exactly_the_weights(weights in proptest::collection::vec(1u32..40, 1..8)) {
            let members: Vec<(u32, u32)> = (0u32..).zip(weights.iter().copied()).collect();
            let divisor = weights.iter().fold(0, |g, w| gcd(g, *w));
            let total: u32 = weights.iter().map(|w| w / divisor).sum();
            let mut schedule = SmoothSchedule::new(&members);
            let mut counts = vec![0u32; weights.len()];
            for _ in 0..total * 3 {
                counts[schedule.pick().unwrap() as usize] += 1;
            }
            for (count, weight) in counts.iter().zip(&weights) {
                prop_assert_eq!(*count, weight / divisor * 3);
            }
        }

        /// Picks are spread out: in any run of k picks a member of weight w
        /// out of a total W is picked at most one more time than its share
        /// w·k/W rounded up.
        #[test]
        fn picks_are_interleaved(weights in proptest::collection::vec(1u32..20, 1..7)) {
            let members: Vec<(u32, u32)> = (0u32..).zip(weights.iter().copied()).collect();
            let total: u32 = weights.iter().sum();
            let mut schedule = SmoothSchedule::new(&members);
            let picks: Vec<u32> = (0..total * 2).map(|_| schedule.pick().unwrap()).collect();
            for k in 1..=total as usize {
                for window in picks.windows(k) {
                    for (slot, weight) in &members {
                        let count = window.iter().filter(|s| *s == slot).count() as u32;
                        let share = (weight * k as u32).div_ceil(total);
                        prop_assert!(count <= share + 1, "{count} of {slot} in {window:?}");
                    }
                }
            }
        }
    }
}
