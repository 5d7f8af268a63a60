//! The event log: every state change and every mutating call (who, what,
//! when), stored under `/events/<seq>` so it survives restarts.

use dure_api::{Event, EventQuery};
use dure_store::Store;
use std::sync::{Arc, Mutex};

const PREFIX: &str = "/events/";
/// The most events one query returns.
pub const MAX_PAGE: usize = 1000;

pub struct EventLog {
    store: Arc<dyn Store>,
    next_seq: Mutex<u64>,
}

fn key(seq: u64) -> String {
    format!("{PREFIX}{seq:020}")
}

impl EventLog {
    pub fn open(store: Arc<dyn Store>) -> anyhow::Result<EventLog> {
        let last = store
            .list(PREFIX)?
            .last()
            .and_then(|kv| kv.key[PREFIX.len()..].parse::<u64>().ok())
            .unwrap_or(0);
        Ok(EventLog {
            store,
            next_seq: Mutex::new(last + 1),
        })
    }

    /// Appends an event. A failure to log is reported but never fails the
    /// action being logged.
    pub fn record(&self, actor: &str, kind: &str, subject: &str, message: impl Into<String>) {
        let mut next = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        let event = Event {
            seq: *next,
            time_ms: crate::clock::now_ms(),
            actor: actor.to_string(),
            kind: kind.to_string(),
            subject: subject.to_string(),
            message: message.into(),
        };
        tracing::info!(seq = event.seq, actor, kind, subject, message = %event.message, "event");
        let bytes = serde_json::to_vec(&event).unwrap_or_default();
        match self.store.put(&key(event.seq), &bytes) {
            Ok(_) => *next += 1,
            Err(error) => tracing::error!(%error, "cannot record event"),
        }
    }

    /// Events after `query.after`, oldest first.
    pub fn list(&self, query: &EventQuery) -> dure_store::Result<Vec<Event>> {
        let limit = query.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let mut events: Vec<Event> = self
            .store
            .list(PREFIX)?
            .into_iter()
            .filter_map(|kv| serde_json::from_slice::<Event>(&kv.value).ok())
            .filter(|e| e.seq > query.after)
            .filter(|e| {
                query
                    .subject
                    .as_deref()
                    .is_none_or(|s| e.subject.starts_with(s))
            })
            .collect();
        if let Some(last) = query.last {
            events.drain(..events.len().saturating_sub(last));
        }
        events.truncate(limit);
        Ok(events)
    }
}
