//! Blocking queries: the view index and the one way to wait for an index
//! to move.
//!
//! The view index is one in-memory counter for the whole controller. Every
//! change a read can show bumps it — a saved configuration, an intent, an
//! operation's progress, an event (all in the store), and a change of
//! observed state (a server's reported state, a node's liveness, mode or
//! agent; only in memory) — and records the new value on each [`Topic`] the
//! change touches. A read of a topic answers with that topic's index (the
//! `X-Dure-Index` header); `?index=N&wait=30s` blocks until the topic's
//! index passes `N` or the wait runs out, so a blocked read of the servers
//! is not woken by an operation's progress. Heartbeats that change nothing
//! (a new `last_seen_ms` only) do not move it.
//!
//! The counter starts at the store revision at start plus one and only
//! counts up, under one lock, so within a run an index never goes
//! backwards. After a controller restart it starts again from the store
//! revision and may be lower than what a client holds: an `index` above
//! the current one is answered at once, and the client, seeing an index
//! lower than the one it sent, starts over from `index=0` (as with Consul
//! and Nomad).

use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use dure_api::INDEX_HEADER;
use dure_core::DurationSpec;
use serde::Deserialize;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The longest a blocking query (or an agent's long poll) may block.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// How long a blocking query blocks when it gives `index` but no `wait`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// A wait gets up to this fraction of itself added at random, so clients
/// that started together do not all come back at once.
const JITTER_FRACTION: u32 = 16;

/// Wakes waiters when an index moves; [`Signal::wait_past`] is the one loop
/// that waits for an index, used by blocking queries and agents' long polls.
pub struct Signal(watch::Sender<u64>);

impl Default for Signal {
    fn default() -> Signal {
        Signal(watch::channel(0).0)
    }
}

impl Signal {
    /// Wakes every waiter, which then re-reads its index.
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits until `current()` exceeds `index` or `wait` runs out; returns
    /// `current()` then.
    pub async fn wait_past(&self, current: impl Fn() -> u64, index: u64, wait: Duration) -> u64 {
        // Subscribed before the first look, so a change between the look
        // and the wait still wakes us.
        let mut changes = self.0.subscribe();
        let deadline = Instant::now() + wait;
        loop {
            let now = current();
            if now > index {
                return now;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return current(),
            }
        }
    }
}

/// What a read shows; a change records the view index on each topic it
/// touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Nodes = 0,
    Servers = 1,
    Clusters = 2,
    Operations = 3,
    Events = 4,
    Lbs = 5,
    /// Balancer instances' figures: moves with every report, so it is
    /// apart from [`Topic::Lbs`], which wakes every balancer's table.
    LbStats = 6,
}

const TOPICS: usize = 7;

/// What a saved configuration touches: every read of the domain.
pub const CONFIGURATION: &[Topic] = &[Topic::Nodes, Topic::Servers, Topic::Clusters, Topic::Lbs];
/// What a balancer's table shows: its definition, its clusters, their
/// servers' states and the nodes' addresses.
pub const LB_TABLE: &[Topic] = &[Topic::Lbs, Topic::Clusters, Topic::Servers, Topic::Nodes];
/// What a server's observed state shows in: servers and cluster members.
pub const SERVER_STATE: &[Topic] = &[Topic::Servers, Topic::Clusters];

#[derive(Debug)]
struct Indexes {
    counter: u64,
    topics: [u64; TOPICS],
}

pub struct ViewIndex {
    indexes: Mutex<Indexes>,
    signal: Signal,
}

impl ViewIndex {
    /// `store_revision` is the store's revision at start.
    pub fn new(store_revision: u64) -> ViewIndex {
        let start = store_revision.saturating_add(1);
        ViewIndex {
            indexes: Mutex::new(Indexes {
                counter: start,
                topics: [start; TOPICS],
            }),
            signal: Signal::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Indexes> {
        self.indexes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a change of `topics` (after it is visible to reads) and
    /// wakes the blocked reads.
    pub fn bump(&self, topics: &[Topic]) {
        if topics.is_empty() {
            return;
        }
        {
            let mut indexes = self.lock();
            indexes.counter += 1;
            let counter = indexes.counter;
            for topic in topics {
                indexes.topics[*topic as usize] = counter;
            }
        }
        self.signal.notify();
    }

    /// The index of the newest change of any of `topics`.
    pub fn get(&self, topics: &[Topic]) -> u64 {
        let indexes = self.lock();
        topics
            .iter()
            .map(|t| indexes.topics[*t as usize])
            .max()
            .unwrap_or(indexes.counter)
    }

    /// The newest index of all.
    pub fn current(&self) -> u64 {
        self.lock().counter
    }

    /// Waits as `blocking` asks for a change of `topics`; returns the index
    /// the answer is read at. Call it before reading what is answered: an
    /// answer may then be newer than its index (the client asks again and
    /// gets the same), never older.
    pub async fn wait(&self, topics: &[Topic], blocking: Blocking) -> u64 {
        let Some((index, wait)) = blocking.wait else {
            return self.get(topics);
        };
        // An index from a run before a restart: answer at once, so the
        // client sees a lower index and starts over.
        if index > self.current() {
            return self.get(topics);
        }
        self.wait_past(topics, index, wait).await
    }

    /// Waits until the index of `topics` passes `index` or `wait` runs
    /// out; returns it then.
    pub async fn wait_past(&self, topics: &[Topic], index: u64, wait: Duration) -> u64 {
        self.signal
            .wait_past(|| self.get(topics), index, wait)
            .await
    }

    /// How many reads and streams wait now.
    #[cfg(test)]
    pub fn waiters(&self) -> usize {
        self.signal.0.receiver_count()
    }
}

/// The blocking part of a read's query: `index` (the `X-Dure-Index` of an
/// earlier answer) and `wait` (how long to block, such as `30s`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Blocking {
    /// The index to wait past and for how long (jitter included); `None`
    /// answers at once.
    wait: Option<(u64, Duration)>,
}

/// `index` and `wait` as given, checked by [`Blocking::parse`].
#[derive(Debug, Default, Deserialize)]
struct BlockingQuery {
    index: Option<String>,
    wait: Option<String>,
}

impl Blocking {
    /// Checks `index` and `wait`: `wait` without `index` is refused, `wait`
    /// is capped at [`MAX_WAIT`] and gets its jitter.
    fn parse(index: Option<&str>, wait: Option<&str>) -> Result<Blocking, ApiError> {
        let wait = wait
            .map(|text| {
                text.parse::<DurationSpec>().map(|d| d.0).map_err(|e| {
                    ApiError::invalid(format!(
                        "`wait` is invalid: {e}; give how long to block, such as 30s (at most 5m)"
                    ))
                })
            })
            .transpose()?;
        let Some(index) = index else {
            return match wait {
                Some(_) => Err(ApiError::invalid(
                    "`wait` needs `index`: give the X-Dure-Index of an earlier answer to wait for a change past it",
                )),
                None => Ok(Blocking::default()),
            };
        };
        let index = index.parse::<u64>().map_err(|_| {
            ApiError::invalid(format!(
                "`index` `{index}` is invalid: give the X-Dure-Index of an earlier answer (a whole number), or 0"
            ))
        })?;
        let wait = with_jitter(wait.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT));
        Ok(Blocking {
            wait: Some((index, wait)),
        })
    }
}

/// Parses a long poll's `wait` (the agent's desired state): the default
/// when absent, capped at [`MAX_WAIT`].
pub fn parse_wait(wait: Option<&str>) -> Result<Duration, ApiError> {
    match wait {
        None => Ok(DEFAULT_WAIT),
        Some(text) => Ok(text
            .parse::<DurationSpec>()
            .map_err(|e| ApiError::invalid(e.to_string()))?
            .0
            .min(MAX_WAIT)),
    }
}

/// `wait` plus a random part of up to a sixteenth of it.
fn with_jitter(wait: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    // Without randomness the wait is simply exact.
    if getrandom::getrandom(&mut bytes).is_err() {
        return wait;
    }
    let fraction = f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX);
    wait + (wait / JITTER_FRACTION).mul_f64(fraction)
}

impl<S: Send + Sync> FromRequestParts<S> for Blocking {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let crate::api::Query(query) =
            crate::api::Query::<BlockingQuery>::from_request_parts(parts, state).await?;
        Blocking::parse(query.index.as_deref(), query.wait.as_deref())
    }
}

/// An answer and the view index it was read at, sent as `X-Dure-Index`.
pub struct Indexed<T>(pub u64, pub T);

impl<T: IntoResponse> IntoResponse for Indexed<T> {
    fn into_response(self) -> Response {
        let mut response = self.1.into_response();
        response
            .headers_mut()
            .insert(INDEX_HEADER, HeaderValue::from(self.0));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn blocking(index: u64, wait: Duration) -> Blocking {
        Blocking {
            wait: Some((index, wait)),
        }
    }

    #[tokio::test]
    async fn a_blocked_read_wakes_only_for_its_topics() {
        let index = Arc::new(ViewIndex::new(41));
        let start = index.get(&[Topic::Servers]);
        assert_eq!(start, 42, "starts past the store revision");
        let waiter = index.clone();
        let read = tokio::spawn(async move {
            waiter
                .wait(&[Topic::Servers], blocking(start, Duration::from_secs(30)))
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        index.bump(&[Topic::Operations]);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!read.is_finished(), "an operation does not wake servers");
        index.bump(SERVER_STATE);
        let woken = read.await.expect("joined");
        assert_eq!(woken, 44);
        assert_eq!(index.get(&[Topic::Operations]), 43);
        assert_eq!(index.get(&[Topic::Nodes]), 42, "untouched");
    }

    #[tokio::test]
    async fn a_wait_runs_out_with_the_same_index_and_a_foreign_index_answers_at_once() {
        let index = ViewIndex::new(0);
        let now = index.get(&[Topic::Nodes]);
        let read = index.wait(&[Topic::Nodes], blocking(now, Duration::from_millis(30)));
        assert_eq!(read.await, now);
        // Past the current index: from another run; answered at once even
        // with a long wait.
        let read = index.wait(
            &[Topic::Nodes],
            blocking(now + 100, Duration::from_secs(30)),
        );
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(20), read).await,
            Ok(now)
        );
        // Behind: answered at once with the newer index.
        index.bump(&[Topic::Nodes]);
        let read = index.wait(&[Topic::Nodes], blocking(now, Duration::from_secs(30)));
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(20), read).await,
            Ok(now + 1)
        );
    }

    #[test]
    fn the_index_never_goes_backwards() {
        let index = ViewIndex::new(7);
        let mut last = index.current();
        for round in 0..100 {
            let topics: &[Topic] = match round % 3 {
                0 => CONFIGURATION,
                1 => &[Topic::Events],
                _ => &[],
            };
            index.bump(topics);
            let now = index.current();
            assert!(now >= last);
            assert!(index.get(&[Topic::Events]) <= now);
            last = now;
        }
    }

    #[test]
    fn index_and_wait_are_checked() {
        assert_eq!(Blocking::parse(None, None), Ok(Blocking::default()));
        let parsed = Blocking::parse(Some("12"), Some("2s")).expect("valid");
        let (index, wait) = parsed.wait.expect("blocks");
        assert_eq!(index, 12);
        assert!(wait >= Duration::from_secs(2) && wait <= Duration::from_millis(2125));
        let (_, wait) = Blocking::parse(Some("0"), Some("1h"))
            .expect("capped")
            .wait
            .expect("blocks");
        assert!(wait >= MAX_WAIT && wait <= MAX_WAIT + MAX_WAIT / JITTER_FRACTION);
        let (_, wait) = Blocking::parse(Some("3"), None)
            .expect("default")
            .wait
            .expect("blocks");
        assert!(wait >= DEFAULT_WAIT);

        let err = Blocking::parse(Some("x1"), None).expect_err("bad index");
        assert_eq!(err.code, "invalid");
        assert!(
            err.message.contains("`index` `x1` is invalid"),
            "{}",
            err.message
        );
        let err = Blocking::parse(Some("-1"), None).expect_err("negative index");
        assert!(err.message.contains("`index` `-1`"), "{}", err.message);
        let err = Blocking::parse(Some("1"), Some("soon")).expect_err("bad wait");
        assert!(
            err.message.starts_with("`wait` is invalid"),
            "{}",
            err.message
        );
        let err = Blocking::parse(None, Some("5s")).expect_err("wait alone");
        assert!(
            err.message.contains("`wait` needs `index`"),
            "{}",
            err.message
        );
    }
}
