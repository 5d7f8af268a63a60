//! Consistent hashing for `ip_hash`: a Maglev lookup table (Eisenbud et
//! al., NSDI 2016) with weights as Envoy weighs it. Each member fills the
//! table's entries in the order of its own permutation, taking turns in
//! proportion to its weight, so each member owns about its share of the
//! entries and adding or removing one of n members moves about 1/n of them.
//! A key's member is one hash and one index, O(1).
//!
//! The table depends only on the members' names and weights, never on the
//! order they were added in, so two balancers with the same members send a
//! client to the same member.

/// Entries in every table: a prime (each member's permutation then visits
/// every entry), fixed (a size that changed with the number of members
/// would move every key), and a hundred entries per member up to about
/// 160 members, which keeps shares within about one percent of the weights.
pub(crate) const TABLE_SIZE: u64 = 16_411;

const EMPTY: u32 = u32::MAX;

/// Hashes bytes to 64 bits: FNV-1a, then the splitmix64 finalizer so that
/// close keys (addresses one apart) land far apart.
pub(crate) fn hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for byte in bytes {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The lookup table over one set of members.
#[derive(Debug, Clone, Default)]
pub(crate) struct MaglevTable {
    /// The slot owning each entry; empty when there are no members.
    entries: Vec<u32>,
}

/// One member while the table is built.
struct Filler {
    slot: u32,
    weight: u64,
    offset: u64,
    skip: u64,
    next: u64,
    target: u64,
}

impl Filler {
    fn entry(&self) -> usize {
        ((self.offset + self.skip * self.next) % TABLE_SIZE) as usize
    }
}

impl MaglevTable {
    /// Builds the table over `(slot, weight, name)` triples (weights at
    /// least 1); their order does not matter.
    pub(crate) fn new(members: &[(u32, u32, &str)]) -> MaglevTable {
        if members.is_empty() {
            return MaglevTable::default();
        }
        let mut members = members.to_vec();
        members.sort_by(|a, b| a.2.cmp(b.2));
        let max_weight = members.iter().map(|m| u64::from(m.1)).max().unwrap_or(1);
        let mut fillers: Vec<Filler> = members
            .iter()
            .map(|(slot, weight, name)| Filler {
                slot: *slot,
                weight: u64::from(*weight),
                offset: hash(name.as_bytes(), 1) % TABLE_SIZE,
                skip: hash(name.as_bytes(), 2) % (TABLE_SIZE - 1) + 1,
                next: 0,
                target: 0,
            })
            .collect();
        let mut entries = vec![EMPTY; TABLE_SIZE as usize];
        let mut filled = 0;
        // Round `round`: a member takes an entry when its weight has earned
        // one, so the heaviest takes one every round and a member of half
        // its weight every other round.
        for round in 0u64.. {
            for filler in &mut fillers {
                if round * filler.weight < filler.target {
                    continue;
                }
                filler.target += max_weight;
                let mut entry = filler.entry();
                while entries[entry] != EMPTY {
                    filler.next += 1;
                    entry = filler.entry();
                }
                entries[entry] = filler.slot;
                filler.next += 1;
                filled += 1;
                if filled == entries.len() {
                    return MaglevTable { entries };
                }
            }
        }
        unreachable!("every round fills at least one entry")
    }

    /// Returns the slot owning `key`'s entry.
    pub(crate) fn pick(&self, key: &[u8]) -> Option<u32> {
        self.pick_where(key, |_| true)
    }

    /// Returns the first slot that `allowed` accepts from `key`'s entry on
    /// (a retry's choice).
    pub(crate) fn pick_where(&self, key: &[u8], allowed: impl Fn(u32) -> bool) -> Option<u32> {
        let len = self.entries.len();
        if len == 0 {
            return None;
        }
        let start = (hash(key, 0) % len as u64) as usize;
        (0..len)
            .map(|i| self.entries[(start + i) % len])
            .find(|slot| allowed(*slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_size_is_prime() {
        assert!((2u64..)
            .take_while(|d| d * d <= TABLE_SIZE)
            .all(|d| !TABLE_SIZE.is_multiple_of(d)));
    }

    #[test]
    fn shares_follow_the_weights() {
        let table = MaglevTable::new(&[(0, 1, "a"), (1, 2, "b"), (2, 5, "c")]);
        let mut counts = [0usize; 3];
        for slot in &table.entries {
            counts[*slot as usize] += 1;
        }
        let size = TABLE_SIZE as f64;
        for (count, share) in counts.iter().zip([1.0 / 8.0, 2.0 / 8.0, 5.0 / 8.0]) {
            let got = *count as f64 / size;
            assert!((got - share).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn the_order_of_members_does_not_matter() {
        let one = MaglevTable::new(&[(0, 1, "a"), (1, 3, "b"), (2, 1, "c")]);
        let two = MaglevTable::new(&[(2, 1, "c"), (0, 1, "a"), (1, 3, "b")]);
        assert_eq!(one.entries, two.entries);
    }

    #[test]
    fn no_members_pick_nothing() {
        assert_eq!(MaglevTable::new(&[]).pick(b"10.0.0.1"), None);
    }
}
