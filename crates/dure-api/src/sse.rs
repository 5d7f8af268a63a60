//! The client's side of `GET /v1/events/stream`: reads Server-Sent Events
//! off a response as they come and turns them into [`StreamMessage`]s.

use crate::client::ClientError;
use crate::types::{Event, StreamLag, STREAM_FAILED, STREAM_LAGGED};
use std::time::Duration;

/// The longest the stream may stay silent: the controller sends a comment
/// every 15 seconds, so silence this long means the connection is dead.
const SILENCE: Duration = Duration::from_secs(60);

/// One message of the event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamMessage {
    /// The next event of the log.
    Event(Event),
    /// Events were trimmed before they could be sent: read the state again.
    Lagged(StreamLag),
}

/// One server-sent event as it came: its id, type and data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Raw {
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
}

/// Splits a byte stream into server-sent events: lines end with LF (a CR
/// before it is dropped), a blank line ends an event, `:` starts a comment.
#[derive(Debug, Default)]
struct Parser {
    /// Bytes of a line not ended yet (a chunk may end mid-line, even mid
    /// character, so lines are decoded only when whole).
    line: Vec<u8>,
    current: Raw,
}

impl Parser {
    fn push(&mut self, bytes: &[u8]) -> Vec<Raw> {
        let mut done = Vec::new();
        for &byte in bytes {
            if byte != b'\n' {
                self.line.push(byte);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                let raw = std::mem::take(&mut self.current);
                if raw != Raw::default() {
                    done.push(raw);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_string();
            match field {
                "id" => self.current.id = Some(value),
                "event" => self.current.event = Some(value),
                "data" => self.current.data.push(value),
                _ => {}
            }
        }
        done
    }
}

/// A live event stream; see [`crate::Client::event_stream`].
pub struct EventStream {
    url: String,
    response: reqwest::Response,
    parser: Parser,
    ready: std::collections::VecDeque<Raw>,
    /// The id of the last message received: send it as `Last-Event-ID` to
    /// resume after it.
    last_id: Option<u64>,
}

impl EventStream {
    pub(crate) fn new(url: String, response: reqwest::Response) -> EventStream {
        EventStream {
            url,
            response,
            parser: Parser::default(),
            ready: Default::default(),
            last_id: None,
        }
    }

    /// The id of the last message received, to resume after it.
    pub fn last_id(&self) -> Option<u64> {
        self.last_id
    }

    /// The next message; `None` when the controller ended the stream.
    pub async fn next(&mut self) -> Result<Option<StreamMessage>, ClientError> {
        loop {
            if let Some(raw) = self.ready.pop_front() {
                if let Some(id) = raw.id.as_deref().and_then(|id| id.parse().ok()) {
                    self.last_id = Some(id);
                }
                return self.decode(raw).map(Some);
            }
            let chunk = tokio::time::timeout(SILENCE, self.response.chunk())
                .await
                .map_err(|_| self.unreachable(format!("no message for {}s", SILENCE.as_secs())))?
                .map_err(|e| self.unreachable(e.to_string()))?;
            let Some(chunk) = chunk else {
                return Ok(None);
            };
            self.ready.extend(self.parser.push(&chunk));
        }
    }

    fn unreachable(&self, reason: String) -> ClientError {
        ClientError::Unreachable {
            url: self.url.clone(),
            reason,
        }
    }

    fn decode(&self, raw: Raw) -> Result<StreamMessage, ClientError> {
        let data = raw.data.join("\n");
        let bad = |e: serde_json::Error| ClientError::Decode {
            url: self.url.clone(),
            reason: format!("a stream message is not what was expected: {e}"),
        };
        match raw.event.as_deref() {
            None | Some("message") => serde_json::from_str(&data)
                .map(StreamMessage::Event)
                .map_err(bad),
            Some(STREAM_LAGGED) => serde_json::from_str(&data)
                .map(StreamMessage::Lagged)
                .map_err(bad),
            Some(STREAM_FAILED) => {
                let message = serde_json::from_str::<serde_json::Value>(&data)
                    .ok()
                    .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                    .unwrap_or(data);
                Err(ClientError::Api {
                    status: 500,
                    code: "internal".into(),
                    message,
                })
            }
            Some(other) => Err(ClientError::Decode {
                url: self.url.clone(),
                reason: format!("unknown stream message type `{other}`"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_across_any_chunks() {
        let text =
            ": keep-alive\n\nid: 7\ndata: {\"a\":\r\ndata: 1}\n\nevent: lagged\nid: 9\ndata: é\n\n";
        let whole = Parser::default().push(text.as_bytes());
        assert_eq!(
            whole,
            vec![
                Raw {
                    id: Some("7".into()),
                    event: None,
                    data: vec!["{\"a\":".into(), "1}".into()],
                },
                Raw {
                    id: Some("9".into()),
                    event: Some("lagged".into()),
                    data: vec!["é".into()],
                },
            ]
        );
        // Byte by byte (through the middle of `é`) gives the same.
        let mut parser = Parser::default();
        let mut split = Vec::new();
        for byte in text.as_bytes() {
            split.extend(parser.push(&[*byte]));
        }
        assert_eq!(split, whole);
    }
}
