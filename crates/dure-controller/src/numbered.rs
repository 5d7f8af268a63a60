//! Records numbered 1, 2, 3, … under one store prefix: the event log
//! (`/events/<seq>`), the operation records (`/operations/<seq>`) and the
//! configuration history (`/config-history/<seq>`).
//!
//! The number is zero-padded to 20 digits, so key order is number order.
//! Records are read a block at a time: the keys of [`BLOCK`] consecutive
//! numbers share a prefix (every digit but the last three), so a block is
//! one prefix read, and a page of the newest records never reads the whole
//! log.
//!
//! Numbers are never reused: the next number is one past the highest in
//! use, and a log trimmed from its old end (the event log, see
//! [`crate::housekeeping`]) always keeps its newest record.

use dure_store::{KeyValue, Result, Revision, Store, Txn, TxnOp};
use std::ops::RangeInclusive;

/// How many consecutive numbers one block read covers.
const BLOCK: u64 = 1000;
/// Digits of a number in a key.
const DIGITS: usize = 20;
/// The most numbers one trimming transaction covers, so a long backlog
/// goes in many short writes rather than one that holds up every other.
const TRIM_BATCH: u64 = 1000;

/// A numbered log under one store prefix.
pub struct Numbered {
    prefix: &'static str,
}

impl Numbered {
    /// `prefix` ends with `/`, such as `/events/`.
    pub const fn new(prefix: &'static str) -> Numbered {
        Numbered { prefix }
    }

    /// The key of record `seq`.
    pub fn key(&self, seq: u64) -> String {
        format!("{}{seq:0width$}", self.prefix, width = DIGITS)
    }

    /// The number of a record key, or `None` for any other key under the
    /// prefix.
    pub fn seq_of(&self, key: &str) -> Option<u64> {
        let digits = key.strip_prefix(self.prefix)?;
        if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// The highest record number in use and the revision that wrote it.
    /// Reads every key of the log, so it is for opening the log only. Keys
    /// that are not record keys are ignored: a stray one must not make the
    /// count start again at 1 and overwrite records.
    pub async fn last(&self, store: &dyn Store) -> Result<Option<(u64, Revision)>> {
        Ok(self.index(store).await?.last().copied())
    }

    /// Every record number in use with the revision that wrote it, in
    /// number order. Reads every key of the log, so it is for opening the
    /// log only; keys that are not record keys are ignored (see
    /// [`Numbered::last`]).
    pub async fn index(&self, store: &dyn Store) -> Result<Vec<(u64, Revision)>> {
        let mut numbers: Vec<(u64, Revision)> = store
            .list(self.prefix)
            .await?
            .iter()
            .filter_map(|kv| Some((self.seq_of(&kv.key)?, kv.mod_revision)))
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// The lowest record number in use up to `upto`. Reads a block at a
    /// time from the start, so it is for opening the log only: a log trimmed
    /// from its old end begins with empty blocks, each one short read.
    pub async fn first(&self, store: &dyn Store, upto: u64) -> Result<Option<u64>> {
        let oldest = self.read(store, 1..=upto, false).next().await.transpose()?;
        Ok(oldest.map(|(seq, _)| seq))
    }

    /// The records numbered within `range`, oldest first (or newest first),
    /// read one block at a time as the reader is consumed.
    pub fn read<'a>(
        &'a self,
        store: &'a dyn Store,
        range: RangeInclusive<u64>,
        newest_first: bool,
    ) -> Reader<'a> {
        let (first, last) = (range.start() / BLOCK, range.end() / BLOCK);
        let blocks: Box<dyn Iterator<Item = u64> + Send> = match (range.is_empty(), newest_first) {
            (true, _) => Box::new(std::iter::empty()),
            (false, true) => Box::new((first..=last).rev()),
            (false, false) => Box::new(first..=last),
        };
        Reader {
            log: self,
            store,
            range,
            newest_first,
            blocks,
            block: Vec::new().into_iter(),
        }
    }

    /// Deletes the records numbered `from..=last_gone`, but those `kept`
    /// says to keep, oldest first, at most [`TRIM_BATCH`] numbers in one
    /// revision; after each batch, `advanced` is told the first number not
    /// looked at yet, so readers can skip what is gone. Returns how many
    /// records went.
    pub async fn trim(
        &self,
        store: &dyn Store,
        from: u64,
        last_gone: u64,
        kept: impl Fn(u64) -> bool,
        mut advanced: impl FnMut(u64),
    ) -> Result<u64> {
        let mut deleted = 0;
        let mut from = from;
        while from <= last_gone {
            let to = last_gone.min(from.saturating_add(TRIM_BATCH - 1));
            let ops = self
                .read(store, from..=to, false)
                .take_matching(usize::MAX, |(seq, _)| {
                    (!kept(seq)).then(|| TxnOp::Delete { key: self.key(seq) })
                })
                .await?;
            if !ops.is_empty() {
                deleted += ops.len() as u64;
                store
                    .txn(Txn {
                        success: ops,
                        ..Txn::default()
                    })
                    .await?;
            }
            from = to + 1;
            advanced(from);
        }
        Ok(deleted)
    }
}

/// Reads records a block at a time, as [`Reader::next`] asks for them.
pub struct Reader<'a> {
    log: &'a Numbered,
    store: &'a dyn Store,
    range: RangeInclusive<u64>,
    newest_first: bool,
    /// The blocks not read yet, in reading order.
    blocks: Box<dyn Iterator<Item = u64> + Send>,
    /// The records of the last block read that were not handed out yet.
    block: std::vec::IntoIter<(u64, KeyValue)>,
}

impl Reader<'_> {
    /// The next record, reading the next block when this one is used up.
    pub async fn next(&mut self) -> Option<Result<(u64, KeyValue)>> {
        loop {
            if let Some(record) = self.block.next() {
                return Some(Ok(record));
            }
            let block = self.blocks.next()?;
            let prefix = format!("{}{:0width$}", self.log.prefix, block, width = DIGITS - 3);
            let kvs = match self.store.list(&prefix).await {
                Ok(kvs) => kvs,
                Err(error) => return Some(Err(error)),
            };
            let mut records: Vec<_> = kvs
                .into_iter()
                .filter_map(|kv| Some((self.log.seq_of(&kv.key)?, kv)))
                .filter(|(seq, _)| self.range.contains(seq))
                .collect();
            if self.newest_first {
                records.reverse();
            }
            self.block = records.into_iter();
        }
    }

    /// The first `limit` records that `keep` turns into a value, reading
    /// no more blocks than that takes.
    pub async fn take_matching<T>(
        mut self,
        limit: usize,
        mut keep: impl FnMut((u64, KeyValue)) -> Option<T>,
    ) -> Result<Vec<T>> {
        let mut kept = Vec::new();
        while kept.len() < limit {
            let Some(record) = self.next().await else {
                break;
            };
            kept.extend(keep(record?));
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_store::SqliteStore;

    const LOG: Numbered = Numbered::new("/log/");

    async fn store_with(count: u64) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("store");
        for seq in 1..=count {
            store
                .put(&LOG.key(seq), seq.to_string().as_bytes())
                .await
                .expect("put");
        }
        (dir, store)
    }

    async fn numbers(
        store: &dyn Store,
        range: RangeInclusive<u64>,
        newest_first: bool,
    ) -> Vec<u64> {
        LOG.read(store, range, newest_first)
            .take_matching(usize::MAX, |(seq, _)| Some(seq))
            .await
            .expect("read")
    }

    #[tokio::test]
    async fn ranges_across_blocks_in_both_orders() {
        let (_dir, store) = store_with(2005).await;
        assert_eq!(LOG.key(7), "/log/00000000000000000007");
        assert_eq!(
            numbers(&store, 998..=1002, false).await,
            [998, 999, 1000, 1001, 1002]
        );
        assert_eq!(
            numbers(&store, 1999..=2010, true).await,
            [2005, 2004, 2003, 2002, 2001, 2000, 1999]
        );
        let none_yet = 0;
        assert_eq!(
            numbers(&store, 1..=none_yet, false).await,
            Vec::<u64>::new()
        );
        assert_eq!(numbers(&store, 3000..=4000, false).await, Vec::<u64>::new());
        // Lazy: taking the newest few reads only the last block.
        let newest = LOG
            .read(&store, 1..=2005, true)
            .take_matching(2, |(seq, _)| Some(seq))
            .await
            .expect("read");
        assert_eq!(newest, [2005, 2004]);
    }

    #[tokio::test]
    async fn stray_keys_neither_count_nor_read() {
        let (_dir, store) = store_with(3).await;
        store.put("/log/zz", b"stray").await.expect("put");
        store
            .put("/log/0000000000000000000123", b"too long")
            .await
            .expect("put");
        assert_eq!(
            LOG.last(&store).await.expect("last").map(|(seq, _)| seq),
            Some(3)
        );
        assert_eq!(numbers(&store, 1..=5000, false).await, [1, 2, 3]);
        let (_dir, empty) = store_with(0).await;
        assert_eq!(LOG.last(&empty).await.expect("last"), None);
    }

    #[tokio::test]
    async fn first_skips_a_trimmed_start() {
        let (_dir, store) = store_with(2005).await;
        assert_eq!(LOG.first(&store, 2005).await.expect("first"), Some(1));
        for seq in 1..=1500 {
            store.delete(&LOG.key(seq)).await.expect("delete");
        }
        assert_eq!(LOG.first(&store, 2005).await.expect("first"), Some(1501));
        assert_eq!(LOG.first(&store, 1400).await.expect("first"), None);
        assert_eq!(
            LOG.last(&store).await.expect("last").map(|(seq, _)| seq),
            Some(2005)
        );
    }
}
