//! Weighted random choice from a random number the caller passes: the
//! members' weights laid end to end, the number scaled onto that line, and
//! the member under it found by binary search, O(log n).

/// Cumulative weights over a set of members.
#[derive(Debug, Clone, Default)]
pub(crate) struct WeightedRandom {
    slots: Vec<u32>,
    /// `ends[i]` is the sum of the weights of members `0..=i`.
    ends: Vec<u64>,
}

/// Scales a uniform 64-bit number onto `0..total` (the high half of the
/// product: no modulo bias worth the name, no division).
pub(crate) fn scale(random: u64, total: u64) -> u64 {
    ((u128::from(random) * u128::from(total)) >> 64) as u64
}

impl WeightedRandom {
    /// Lays out `(slot, weight)` pairs.
    pub(crate) fn new(members: &[(u32, u32)]) -> WeightedRandom {
        let mut total = 0u64;
        let ends = members
            .iter()
            .map(|(_, w)| {
                total += u64::from(*w);
                total
            })
            .collect();
        WeightedRandom {
            slots: members.iter().map(|(slot, _)| *slot).collect(),
            ends,
        }
    }

    /// Returns the slot under `random`, if any member is laid out.
    pub(crate) fn pick(&self, random: u64) -> Option<u32> {
        let total = *self.ends.last()?;
        let point = scale(random, total);
        let index = self.ends.partition_point(|end| *end <= point);
        self.slots.get(index).copied()
    }

    /// Returns a weighted random slot among those `allowed` accepts (a
    /// retry's choice, O(n)).
    pub(crate) fn pick_where(&self, random: u64, allowed: impl Fn(u32) -> bool) -> Option<u32> {
        let mut previous = 0;
        let weights: u64 = self
            .slots
            .iter()
            .zip(&self.ends)
            .map(|(slot, end)| {
                let weight = end - previous;
                previous = *end;
                if allowed(*slot) {
                    weight
                } else {
                    0
                }
            })
            .sum();
        if weights == 0 {
            return None;
        }
        let mut point = scale(random, weights);
        let mut previous = 0;
        for (slot, end) in self.slots.iter().zip(&self.ends) {
            let weight = end - previous;
            previous = *end;
            if !allowed(*slot) {
                continue;
            }
            if point < weight {
                return Some(*slot);
            }
            point -= weight;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_line_maps_every_number_onto_a_member() {
        let random = WeightedRandom::new(&[(7, 1), (8, 3)]);
        assert_eq!(random.pick(0), Some(7));
        assert_eq!(random.pick(u64::MAX / 4 - 1), Some(7));
        assert_eq!(random.pick(u64::MAX / 4 + 1), Some(8));
        assert_eq!(random.pick(u64::MAX), Some(8));
        assert_eq!(WeightedRandom::new(&[]).pick(5), None);
    }

    #[test]
    fn a_retry_skips_members_not_allowed() {
        let random = WeightedRandom::new(&[(7, 1), (8, 3), (9, 1)]);
        for r in [0, u64::MAX / 2, u64::MAX] {
            let slot = random.pick_where(r, |s| s != 8).unwrap();
            assert_ne!(slot, 8);
        }
        assert_eq!(random.pick_where(3, |_| false), None);
    }

    proptest! {
        /// Points spread evenly over the numbers land on each member in
        /// proportion to its weight, within one point.
        #[test]
        fn even_points_follow_the_weights(weights in proptest::collection::vec(1u32..50, 1..8)) {
            let members: Vec<(u32, u32)> = (0u32..).zip(weights.iter().copied()).collect();
            let random = WeightedRandom::new(&members);
            let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
            let points = total * 100;
            let mut counts = vec![0u64; weights.len()];
            for k in 0..points {
                let r = ((u128::from(k) << 64) / u128::from(points)) as u64;
                counts[random.pick(r).unwrap() as usize] += 1;
            }
            for (count, weight) in counts.iter().zip(&weights) {
                prop_assert!(count.abs_diff(u64::from(*weight) * 100) <= 1);
            }
        }
    }
}
