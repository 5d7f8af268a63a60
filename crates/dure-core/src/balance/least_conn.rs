//! Least connections: the member with the fewest in-flight requests
//! relative to its weight, ties going to the one picked longest ago (so
//! equal loads take turns). An indexed binary heap keeps the order: a pick
//! reads the top, and a change of one member's load or turn moves it in
//! O(log n).

use std::cmp::Ordering;

/// One member's load, as the heap orders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    pub(crate) slot: u32,
    pub(crate) weight: u32,
    pub(crate) in_flight: u32,
    /// The pool's pick sequence number when it was last picked.
    pub(crate) last_pick: u64,
}

impl Load {
    /// Orders by in-flight / weight (cross-multiplied: exact), then turn.
    pub(crate) fn cmp_key(&self, other: &Load) -> Ordering {
        let mine = u64::from(self.in_flight) * u64::from(other.weight);
        let theirs = u64::from(other.in_flight) * u64::from(self.weight);
        mine.cmp(&theirs)
            .then(self.last_pick.cmp(&other.last_pick))
            .then(self.slot.cmp(&other.slot))
    }
}

/// Members by load, least loaded on top.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeastConnHeap {
    heap: Vec<Load>,
    /// Heap position of each slot; `NONE` when the slot is not in the heap.
    position: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl LeastConnHeap {
    /// Builds the heap over `loads`.
    pub(crate) fn new(loads: Vec<Load>) -> LeastConnHeap {
        let slots = loads.iter().map(|l| l.slot as usize + 1).max().unwrap_or(0);
        let mut heap = LeastConnHeap {
            heap: loads,
            position: vec![NONE; slots],
        };
        heap.heap.sort_by(Load::cmp_key);
        for (i, load) in heap.heap.iter().enumerate() {
            heap.position[load.slot as usize] = i as u32;
        }
        heap
    }

    /// Returns the least loaded slot.
    pub(crate) fn pick(&self) -> Option<u32> {
        self.heap.first().map(|load| load.slot)
    }

    /// Returns the least loaded slot among those `allowed` accepts (a
    /// retry's choice, O(n)).
    pub(crate) fn pick_where(&self, allowed: impl Fn(u32) -> bool) -> Option<u32> {
        self.heap
            .iter()
            .filter(|load| allowed(load.slot))
            .min_by(|a, b| a.cmp_key(b))
            .map(|load| load.slot)
    }

    /// Sets a slot's load and turn; a slot not in the heap is ignored.
    pub(crate) fn set(&mut self, slot: u32, in_flight: u32, last_pick: u64) {
        let Some(&at) = self.position.get(slot as usize) else {
            return;
        };
        if at == NONE {
            return;
        }
        let at = at as usize;
        self.heap[at].in_flight = in_flight;
        self.heap[at].last_pick = last_pick;
        let at = self.sift_up(at);
        self.sift_down(at);
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.position[self.heap[a].slot as usize] = a as u32;
        self.position[self.heap[b].slot as usize] = b as u32;
    }

    fn sift_up(&mut self, mut at: usize) -> usize {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.heap[at].cmp_key(&self.heap[parent]) != Ordering::Less {
                break;
            }
            self.swap(at, parent);
            at = parent;
        }
        at
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let mut least = at;
            for child in [2 * at + 1, 2 * at + 2] {
                if child < self.heap.len()
                    && self.heap[child].cmp_key(&self.heap[least]) == Ordering::Less
                {
                    least = child;
                }
            }
            if least == at {
                return;
            }
            self.swap(at, least);
            at = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn load(slot: u32, weight: u32) -> Load {
        Load {
            slot,
            weight,
            in_flight: 0,
            last_pick: 0,
        }
    }

    proptest! {
        /// After any sequence of load changes the top is the minimum a full
        /// scan finds.
        #[test]
        fn the_top_is_always_the_least_loaded(
            weights in proptest::collection::vec(1u32..10, 1..10),
            changes in proptest::collection::vec((0usize..10, 0u32..20, 0u64..100), 0..60),
        ) {
            let loads: Vec<Load> = (0u32..).zip(&weights).map(|(s, w)| load(s * 2, *w)).collect();
            let mut model = loads.clone();
            let mut heap = LeastConnHeap::new(loads);
            for (index, in_flight, last_pick) in changes {
                let index = index % model.len();
                model[index].in_flight = in_flight;
                model[index].last_pick = last_pick;
                heap.set(model[index].slot, in_flight, last_pick);
                let least = model.iter().min_by(|a, b| a.cmp_key(b)).unwrap().slot;
                prop_assert_eq!(heap.pick(), Some(least));
                prop_assert_eq!(heap.pick_where(|_| true), Some(least));
            }
        }
    }

    #[test]
    fn a_slot_not_in_the_heap_is_ignored() {
        let mut heap = LeastConnHeap::new(vec![load(0, 1), load(2, 1)]);
        heap.set(1, 5, 5);
        heap.set(9, 5, 5);
        assert_eq!(heap.pick(), Some(0));
        assert_eq!(LeastConnHeap::default().pick(), None);
    }
}
