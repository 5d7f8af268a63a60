//! Change tracking for agents' long polls: each node has a desired-state
//! index (the store revision of the last change to its servers or their
//! intents); a poll blocks until that index passes the one the agent has,
//! waiting like a blocking query ([`Signal`]).

use crate::watch::Signal;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub struct DesiredIndex {
    /// Index used for nodes with no recorded change since start: the store
    /// revision at start, so a restarted controller makes every agent resync.
    base: u64,
    per_node: Mutex<HashMap<String, u64>>,
    changed: Signal,
}

impl DesiredIndex {
    pub fn new(base: u64) -> DesiredIndex {
        DesiredIndex {
            base,
            per_node: Mutex::new(HashMap::new()),
            changed: Signal::default(),
        }
    }

    pub fn get(&self, node: &str) -> u64 {
        let map = self.per_node.lock().unwrap_or_else(|p| p.into_inner());
        map.get(node).copied().unwrap_or(self.base).max(1)
    }

    /// Records that `nodes` changed at `revision` and wakes the pollers.
    pub fn bump<'a>(&self, nodes: impl IntoIterator<Item = &'a String>, revision: u64) {
        let mut map = self.per_node.lock().unwrap_or_else(|p| p.into_inner());
        for node in nodes {
            let entry = map.entry(node.clone()).or_insert(self.base);
            *entry = (*entry).max(revision);
        }
        drop(map);
        self.changed.notify();
    }

    /// Waits until the node's index exceeds `index` or `wait` runs out;
    /// returns the node's index then.
    pub async fn wait_past(&self, node: &str, index: u64, wait: Duration) -> u64 {
        self.changed.wait_past(|| self.get(node), index, wait).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_poll_returns_at_once_when_behind_and_wakes_on_change() {
        let index = Arc::new(DesiredIndex::new(5));
        assert_eq!(index.wait_past("n1", 0, Duration::from_secs(5)).await, 5);
        assert_eq!(index.wait_past("n1", 5, Duration::from_millis(20)).await, 5);
        let waker = index.clone();
        let poll =
            tokio::spawn(async move { waker.wait_past("n1", 5, Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        index.bump(&["n2".to_string()], 7);
        index.bump(&["n1".to_string()], 9);
        assert_eq!(poll.await.unwrap(), 9);
        assert_eq!(index.get("n2"), 7);
    }
}
