//! `history.jsonl`, the entry that carries store history: one JSON object per
//! change, in revision order, with the revision numbers and versions the
//! store gave it, so a restored store answers history reads like the old one.
//!
//! A value is kept as text when it is UTF-8 (every Dure document is) and
//! as hex otherwise, so the entry stays readable and still loses nothing.

use super::BackupError;
use dure_store::{EventKind, KeyValue, WatchEvent};
use serde::{Deserialize, Serialize};

/// Path of the history inside the archive.
pub const HISTORY: &str = "history.jsonl";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Put,
    Delete,
}

/// One line of the history.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    revision: u64,
    op: Op,
    key: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    create_revision: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_hex: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Writes changes as JSON Lines.
pub fn encode(events: &[WatchEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        let kv = &event.kv;
        let (value, value_hex) = match event.kind {
            EventKind::Delete => (None, None),
            EventKind::Put => match std::str::from_utf8(&kv.value) {
                Ok(text) => (Some(text.to_string()), None),
                Err(_) => (None, Some(hex::encode(&kv.value))),
            },
        };
        let line = Line {
            revision: kv.mod_revision,
            op: match event.kind {
                EventKind::Put => Op::Put,
                EventKind::Delete => Op::Delete,
            },
            key: kv.key.clone(),
            create_revision: kv.create_revision,
            version: kv.version,
            value,
            value_hex,
        };
        out.extend(
            serde_json::to_vec(&line).expect("a line of strings and numbers always serializes"),
        );
        out.push(b'\n');
    }
    out
}

/// Reads changes written by [`encode`]; errors name the line.
pub fn decode(bytes: &[u8]) -> Result<Vec<WatchEvent>, BackupError> {
    let bad = |number: usize, why: String| {
        BackupError::Invalid(format!("entry `{HISTORY}` line {number}: {why}"))
    };
    let text = std::str::from_utf8(bytes).map_err(|e| bad(0, format!("not UTF-8: {e}")))?;
    let mut events = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(raw).map_err(|e| bad(number, e.to_string()))?;
        let value = match (line.op, line.value, line.value_hex) {
            (Op::Delete, None, None) => Vec::new(),
            (Op::Put, Some(text), None) => text.into_bytes(),
            (Op::Put, None, Some(text)) => hex::decode(&text).map_err(|_| {
                bad(
                    number,
                    "`value_hex` is not an even run of hex digits".into(),
                )
            })?,
            (Op::Delete, _, _) => return Err(bad(number, "a delete carries no value".into())),
            (Op::Put, _, _) => {
                return Err(bad(
                    number,
                    "a put carries exactly one of `value` and `value_hex`".into(),
                ))
            }
        };
        events.push(WatchEvent {
            kind: match line.op {
                Op::Put => EventKind::Put,
                Op::Delete => EventKind::Delete,
            },
            kv: KeyValue {
                key: line.key,
                value,
                create_revision: line.create_revision,
                mod_revision: line.revision,
                version: line.version,
                lease: None,
            },
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, key: &str, value: &[u8], revision: u64) -> WatchEvent {
        let (create_revision, version) = match kind {
            EventKind::Put => (1, revision),
            EventKind::Delete => (0, 0),
        };
        WatchEvent {
            kind,
            kv: KeyValue {
                key: key.into(),
                value: value.to_vec(),
                create_revision,
                mod_revision: revision,
                version,
                lease: None,
            },
        }
    }

    #[test]
    fn text_binary_and_deletes_round_trip() {
        let events = vec![
            event(EventKind::Put, "/config/a", b"{\n  \"x\": 1\n}\n", 1),
            event(EventKind::Put, "/config/b", &[0xff, 0x00, 0x10], 2),
            event(EventKind::Delete, "/config/a", b"", 3),
        ];
        let bytes = encode(&events);
        assert_eq!(String::from_utf8_lossy(&bytes).lines().count(), 3);
        assert!(String::from_utf8_lossy(&bytes).contains("\"value_hex\":\"ff0010\""));
        assert_eq!(decode(&bytes).expect("decode"), events);
    }

    #[test]
    fn bad_lines_are_named() {
        let err = decode(b"{\"revision\":1,\"op\":\"put\",\"key\":\"/a\",\"create_revision\":1,\"version\":1,\"value\":\"v\"}\n{\"revision\":2}\n")
            .expect_err("second line is incomplete");
        assert!(err.to_string().contains("line 2"), "{err}");
        let err =
            decode(b"{\"revision\":1,\"op\":\"put\",\"key\":\"/a\"}\n").expect_err("no value");
        assert!(err.to_string().contains("exactly one"), "{err}");
    }
}
