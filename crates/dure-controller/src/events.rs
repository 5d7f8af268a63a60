//! The event log: every state change and every mutating call (who, what,
//! when), stored under `/events/<seq>` so it survives restarts. A query
//! reads only the blocks of the log it needs (see [`crate::numbered`]).
//! Housekeeping trims it to the newest events ([`EventLog::trim`]); numbers
//! keep counting up from the newest one.

use crate::numbered::Numbered;
use crate::watch::{Topic, ViewIndex};
use dure_api::{Event, EventQuery};
use dure_store::Store;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where the events are kept: `/events/<seq>`.
pub const PREFIX: &str = "/events/";
const LOG: Numbered = Numbered::new(PREFIX);
/// The most events one query returns.
pub const MAX_PAGE: usize = 1000;

pub struct EventLog {
    store: Arc<dyn Store>,
    /// Number of the next event; held while an event takes its number and
    /// queues its write, never while the write is synced: the store applies
    /// writes in the order they are queued, so numbers follow the writes.
    next_seq: Mutex<u64>,
    /// Number of the newest event written: where readers stop, without
    /// waiting on a write in progress.
    newest: AtomicU64,
    /// Number of the oldest event that may still be kept: where readers
    /// start, so they skip the trimmed part of the log without reading it.
    oldest: AtomicU64,
    /// Bumped on every event, which wakes blocked reads and streams.
    view: Arc<ViewIndex>,
}

impl EventLog {
    pub async fn open(store: Arc<dyn Store>, view: Arc<ViewIndex>) -> anyhow::Result<EventLog> {
        let last = LOG.last(store.as_ref()).await?.map_or(0, |(seq, _)| seq);
        let first = LOG.first(store.as_ref(), last).await?.unwrap_or(last + 1);
        Ok(EventLog {
            store,
            next_seq: Mutex::new(last + 1),
            newest: AtomicU64::new(last),
            oldest: AtomicU64::new(first),
            view,
        })
    }

    /// Appends an event and returns once it is on disk. A failure to log
    /// is reported but never fails the action being logged; its number is
    /// then left unused.
    pub async fn record(&self, actor: &str, kind: &str, subject: &str, message: impl Into<String>) {
        let message = message.into();
        let (seq, written) = {
            let mut next = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
            let event = Event {
                seq: *next,
                time_ms: crate::clock::now_ms(),
                actor: actor.to_string(),
                kind: kind.to_string(),
                subject: subject.to_string(),
                message,
            };
            tracing::info!(seq = event.seq, actor, kind, subject, message = %event.message, "event");
            let bytes = match serde_json::to_vec(&event) {
                Ok(bytes) => bytes,
                Err(error) => {
                    // Never an empty record: this one is not written.
                    tracing::error!(%error, seq = event.seq, "cannot encode event");
                    return;
                }
            };
            *next += 1;
            (event.seq, self.store.put(&LOG.key(event.seq), &bytes))
        };
        // Events queued before this one are on disk by now too, so readers
        // may stop here even if their writers have not been told yet.
        match written.await {
            Ok(_) => {
                self.newest.fetch_max(seq, Ordering::SeqCst);
                self.view.bump(&[Topic::Events]);
            }
            Err(error) => tracing::error!(%error, seq, "cannot record event"),
        }
    }

    /// The number of the newest event written (0 for none).
    pub fn newest(&self) -> u64 {
        self.newest.load(Ordering::SeqCst)
    }

    /// The number of the oldest event that may still be kept: those below
    /// were trimmed.
    pub fn oldest(&self) -> u64 {
        self.oldest.load(Ordering::SeqCst)
    }

    /// Events after `query.after` whose subject starts with
    /// `query.subject`, oldest first: the first `limit` of them, or of the
    /// newest `last` of them.
    pub async fn list(&self, query: &EventQuery) -> dure_store::Result<Vec<Event>> {
        let limit = query.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let start = query
            .after
            .saturating_add(1)
            .max(self.oldest.load(Ordering::SeqCst));
        let range = start..=self.newest.load(Ordering::SeqCst);
        // With `last`, read back from the newest event until enough match.
        let newest_first = query.last.is_some();
        let wanted = query.last.unwrap_or(limit);
        let matches = |event: &Event| {
            query
                .subject
                .as_deref()
                .is_none_or(|s| event.subject.starts_with(s))
        };
        let mut events = LOG
            .read(self.store.as_ref(), range, newest_first)
            .take_matching(wanted, |(seq, kv)| {
                match serde_json::from_slice::<Event>(&kv.value) {
                    Ok(event) => matches(&event).then_some(event),
                    Err(error) => {
                        // Reported, not silently dropped; an event about it
                        // would be one more on every read of the log.
                        tracing::error!(seq, %error, "unreadable event record skipped");
                        None
                    }
                }
            })
            .await?;
        if newest_first {
            events.reverse();
        }
        events.truncate(limit);
        Ok(events)
    }

    /// Deletes every event but the newest `keep` (`0` keeps all), oldest
    /// first, in short batches ([`Numbered::trim`]); returns how many went.
    /// The newest event always stays, so a reopened log goes on counting
    /// from it instead of reusing numbers.
    pub async fn trim(&self, keep: u64) -> dure_store::Result<u64> {
        if keep == 0 {
            return Ok(0);
        }
        // Every number up to this one goes (none when it is 0).
        let last_gone = self.newest.load(Ordering::SeqCst).saturating_sub(keep);
        LOG.trim(
            self.store.as_ref(),
            self.oldest.load(Ordering::SeqCst),
            last_gone,
            |_| false,
            |next| {
                self.oldest.fetch_max(next, Ordering::SeqCst);
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_store::SqliteStore;

    async fn log() -> (tempfile::TempDir, Arc<dyn Store>, EventLog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("s.db")).expect("store"));
        let log = EventLog::open(store.clone(), Arc::new(ViewIndex::new(0)))
            .await
            .expect("log");
        (dir, store, log)
    }

    fn seqs(events: &[Event]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    /// Events recorded at once from many tasks are all kept, numbered
    /// 1, 2, 3, … in the order they were written to the store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_events_are_numbered_in_write_order() {
        let (_dir, store, log) = log().await;
        let log = Arc::new(log);
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    log.record("test", "test", "x", format!("event {i}")).await;
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("recorded");
        }
        let all = log.list(&EventQuery::default()).await.expect("list");
        assert_eq!(seqs(&all), (1..=40).collect::<Vec<u64>>());
        let revisions: Vec<u64> = store
            .list(PREFIX)
            .await
            .expect("list")
            .iter()
            .map(|kv| kv.mod_revision)
            .collect();
        assert!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "a later number is a later write: {revisions:?}"
        );
    }

    #[tokio::test]
    async fn queries_page_filter_and_take_the_newest() {
        let (_dir, store, log) = log().await;
        for i in 1..=1205u64 {
            let subject = if i % 2 == 0 {
                "server/even"
            } else {
                "node/odd"
            };
            log.record("test", "test", subject, format!("event {i}"))
                .await;
        }
        let query = |after, limit, subject: Option<&str>, last| EventQuery {
            after,
            limit,
            subject: subject.map(str::to_string),
            last,
        };
        assert_eq!(
            seqs(
                &log.list(&query(998, Some(3), None, None))
                    .await
                    .expect("list")
            ),
            [999, 1000, 1001]
        );
        assert_eq!(
            log.list(&query(0, None, None, None))
                .await
                .expect("list")
                .len(),
            MAX_PAGE
        );
        assert_eq!(
            seqs(
                &log.list(&query(0, None, Some("server/"), Some(3)))
                    .await
                    .expect("list")
            ),
            [1200, 1202, 1204]
        );
        assert_eq!(
            seqs(
                &log.list(&query(1199, Some(2), Some("node/"), Some(5)))
                    .await
                    .expect("list")
            ),
            [1201, 1203],
            "only after `after`, then the oldest `limit` of the newest `last`"
        );
        assert!(log
            .list(&query(u64::MAX, None, None, None))
            .await
            .expect("list")
            .is_empty());
        assert!(log
            .list(&query(0, Some(0), None, None))
            .await
            .expect("list")
            .is_empty());

        // A reopened log continues the numbering, even past a stray key.
        store.put("/events/zz", b"stray").await.expect("put");
        let reopened = EventLog::open(store.clone(), Arc::new(ViewIndex::new(0)))
            .await
            .expect("reopen");
        reopened.record("test", "test", "x", "after restart").await;
        assert_eq!(
            seqs(
                &reopened
                    .list(&query(0, None, None, Some(1)))
                    .await
                    .expect("list")
            ),
            [1206]
        );
    }
}
