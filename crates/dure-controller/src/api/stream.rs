//! `GET /v1/events/stream`: the event log as Server-Sent Events. Every
//! state change the controller sees is an event (server states, node
//! liveness and mode, intents, operations beginning and ending, saves), so
//! following the log follows the domain.
//!
//! Each message is one event: its `id:` is the event's number and its data
//! the event as JSON. A client that reconnects with `Last-Event-ID` gets
//! exactly the events after that one — the missed ones from the stored log,
//! then the live ones. A subscriber pulls from the log one page at a time,
//! and only when the connection can take more: a slow reader holds at most
//! one page, never a growing queue. One whose position was trimmed from
//! the log meanwhile gets a `lagged` message ([`StreamLag`]) and must read
//! the state again. Comments keep idle connections open; a client that
//! goes away drops its subscriber, which then waits on nothing.

use super::{AppState, Query};
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::watch::Topic;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use dure_api::{Event, EventQuery, EventStreamQuery, StreamLag, STREAM_FAILED, STREAM_LAGGED};
use futures_util::stream::{self, Stream};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// The most events a subscriber reads from the log at once.
const PAGE: usize = 100;
/// How often an idle stream sends a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long one wait for a new event lasts before the subscriber looks
/// again (it would find nothing new; the bound only keeps waits finite).
const IDLE_WAIT: Duration = Duration::from_secs(300);

pub async fn stream(
    State(app): AppState,
    headers: HeaderMap,
    Query(query): Query<EventStreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let after = match last_event_id(&headers)? {
        Some(id) => id,
        None => query.after.unwrap_or_else(|| app.events.newest()),
    };
    let subscriber = Subscriber::new(app, after, query.subject);
    let messages = stream::unfold(Some(subscriber), |subscriber| async move {
        let mut subscriber = subscriber?;
        let message = subscriber.next().await;
        // A failure is the stream's last message.
        let next = (!matches!(message, Message::Failed(_))).then_some(subscriber);
        Some((Ok(message.into_sse()), next))
    });
    Ok(Sse::new(messages).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")))
}

/// The `Last-Event-ID` header, if sent.
fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    text.parse::<u64>().map(Some).map_err(|_| {
        ApiError::invalid(format!(
            "`Last-Event-ID` `{text}` is invalid: send the id of the last message received (an event number)"
        ))
    })
}

/// One message of the stream.
#[derive(Debug, PartialEq)]
enum Message {
    Event(Event),
    Lagged(StreamLag),
    /// The log cannot be read; the stream ends.
    Failed(String),
}

impl Message {
    fn into_sse(self) -> SseEvent {
        let (message, data) = match self {
            // Events go under the default type (`message`), so a browser's
            // `EventSource.onmessage` gets them all; the kind is in the data.
            Message::Event(event) => (
                SseEvent::default().id(event.seq.to_string()),
                serde_json::to_string(&event),
            ),
            Message::Lagged(lag) => (
                SseEvent::default()
                    .event(STREAM_LAGGED)
                    .id(lag.oldest.saturating_sub(1).to_string()),
                serde_json::to_string(&lag),
            ),
            Message::Failed(reason) => (
                SseEvent::default().event(STREAM_FAILED),
                serde_json::to_string(&serde_json::json!({ "message": reason })),
            ),
        };
        match data {
            Ok(data) => message.data(data),
            Err(error) => message.comment(format!("message cannot be written: {error}")),
        }
    }
}

/// One client's place in the event log.
struct Subscriber {
    app: Arc<App>,
    /// The newest event number sent or passed over.
    after: u64,
    subject: Option<String>,
    /// The rest of the page last read; at most [`PAGE`] events.
    page: VecDeque<Event>,
}

impl Subscriber {
    fn new(app: Arc<App>, after: u64, subject: Option<String>) -> Subscriber {
        Subscriber {
            app,
            after,
            subject,
            page: VecDeque::new(),
        }
    }

    /// The next message: the next event of the log, waiting for one when
    /// there is none yet.
    async fn next(&mut self) -> Message {
        loop {
            if let Some(event) = self.page.pop_front() {
                self.after = event.seq;
                return Message::Event(event);
            }
            let oldest = self.app.events.oldest();
            if self.after.saturating_add(1) < oldest {
                let lag = StreamLag {
                    after: self.after,
                    oldest,
                };
                self.after = oldest - 1;
                return Message::Lagged(lag);
            }
            // Read before the log, so an event written meanwhile moves the
            // index past it and the wait below returns at once.
            let index = self.app.watch.get(&[Topic::Events]);
            let newest = self.app.events.newest();
            let query = EventQuery {
                after: self.after,
                limit: Some(PAGE),
                subject: self.subject.clone(),
                last: None,
            };
            match self.app.events.list(&query).await {
                Ok(events) if events.is_empty() => {
                    // None of those up to `newest` matched the subject.
                    self.after = self.after.max(newest);
                    self.app
                        .watch
                        .wait_past(&[Topic::Events], index, IDLE_WAIT)
                        .await;
                }
                Ok(events) => self.page.extend(events),
                Err(error) => {
                    return Message::Failed(format!("the event log cannot be read: {error}"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::app_in;

    async fn record(app: &App, count: usize, subject: &str) {
        for i in 0..count {
            app.events
                .record("test", "test", subject, format!("event {i}"))
                .await;
        }
    }

    async fn seq_of(subscriber: &mut Subscriber) -> u64 {
        match tokio::time::timeout(Duration::from_secs(20), subscriber.next()).await {
            Ok(Message::Event(event)) => event.seq,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_holds_one_page_at_most() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        let start = app.events.newest();
        let mut subscriber = Subscriber::new(app.clone(), start, None);
        // Far more than a page is written while the subscriber reads nothing.
        record(&app, PAGE * 5 + 7, "node/n1").await;
        assert!(subscriber.page.is_empty(), "nothing is read before asked");
        let mut expected = start;
        while expected < app.events.newest() {
            expected += 1;
            assert_eq!(seq_of(&mut subscriber).await, expected);
            assert!(subscriber.page.len() < PAGE, "{}", subscriber.page.len());
        }
        // Then it waits for the next one, and gets it live.
        let waiting = tokio::spawn(async move { seq_of(&mut subscriber).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        record(&app, 1, "node/n1").await;
        assert_eq!(waiting.await.expect("joined"), expected + 1);
    }

    #[tokio::test]
    async fn a_subject_filter_skips_others_and_a_trimmed_position_is_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        let start = app.events.newest();
        record(&app, 3, "node/n1").await;
        record(&app, 1, "server/web1").await;
        let mut subscriber = Subscriber::new(app.clone(), start, Some("server/".into()));
        assert_eq!(seq_of(&mut subscriber).await, start + 4);

        let mut behind = Subscriber::new(app.clone(), start, None);
        record(&app, 50, "node/n1").await;
        app.events.trim(10).await.expect("trimmed");
        let oldest = app.events.oldest();
        assert_eq!(
            behind.next().await,
            Message::Lagged(StreamLag {
                after: start,
                oldest
            })
        );
        assert_eq!(
            seq_of(&mut behind).await,
            oldest,
            "goes on from the oldest kept"
        );
    }

    #[test]
    fn last_event_id_is_checked() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers), Ok(None));
        headers.insert("last-event-id", "42".parse().expect("header"));
        assert_eq!(last_event_id(&headers), Ok(Some(42)));
        headers.insert("last-event-id", "op-1".parse().expect("header"));
        let error = last_event_id(&headers).expect_err("invalid");
        assert_eq!(error.code, "invalid");
        assert!(
            error.message.contains("`Last-Event-ID` `op-1` is invalid"),
            "{}",
            error.message
        );
    }
}
