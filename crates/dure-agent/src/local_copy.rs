//! The agent's local copy of its node's desired state,
//! `<data>/desired-state.json`: written atomically each time a new desired
//! state is applied, read at start, and what the agent runs from while the
//! controller cannot be reached (INDEPENDENT mode).
//!
//! The file is pretty JSON, `{"format": 1, "sha256": "<hex>", "payload":
//! {...}}`, where the checksum covers the canonical form of `payload`
//! (compact JSON, object keys sorted). A copy that does not parse, has
//! another format, fails its checksum or names another node is refused as
//! a whole and moved aside: nothing from it is ever applied, so a damaged
//! copy can never start half of a node's servers or start them with a
//! damaged spec.

use crate::layout::write_atomic;
use dure_api::DesiredNode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};

/// The format this agent writes and reads.
pub const FORMAT: u32 = 1;

/// What the local copy holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalCopy {
    /// The node this desired state is for.
    pub node: String,
    /// The controller it came from, such as `http://10.0.0.1:7070`.
    pub controller: String,
    /// When it was saved, in ms since the Unix epoch.
    pub saved_ms: u64,
    pub desired: DesiredNode,
}

/// The file around the payload.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: u32,
    sha256: String,
    payload: Value,
}

/// Why a local copy was refused.
#[derive(Debug, thiserror::Error)]
pub enum LocalCopyError {
    #[error("cannot read the local copy: {0}")]
    Read(#[source] io::Error),
    #[error("the local copy is not a valid local copy file (truncated or overwritten?): {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("the local copy has format {found}; this agent reads format {FORMAT}")]
    Format { found: u32 },
    #[error(
        "the local copy fails its checksum (recorded sha256 {recorded}, content hashes to \
         {computed}): it was damaged or edited after it was written"
    )]
    Checksum { recorded: String, computed: String },
    #[error("the local copy passes its checksum but its content is not a desired state: {0}")]
    Content(#[source] serde_json::Error),
    #[error("the local copy is for node `{found}`, not for this agent's node `{expected}`")]
    OtherNode { found: String, expected: String },
}

impl LocalCopyError {
    /// The word put in the name of a refused copy moved aside.
    fn aside_tag(&self) -> &'static str {
        match self {
            LocalCopyError::OtherNode { .. } => "other-node",
            _ => "corrupt",
        }
    }
}

/// Writes `copy` to `path` atomically (see [`write_atomic`]).
pub fn save(path: &Path, copy: &LocalCopy) -> io::Result<()> {
    let payload = serde_json::to_value(copy).map_err(io::Error::other)?;
    let envelope = Envelope {
        format: FORMAT,
        sha256: checksum(&payload),
        payload,
    };
    let mut bytes = serde_json::to_vec_pretty(&envelope).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads and checks the local copy at `path`: `Ok(None)` when there is
/// none, the copy only when every check passes.
pub fn load(path: &Path, node: &str) -> Result<Option<LocalCopy>, LocalCopyError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(LocalCopyError::Read(error)),
    };
    let envelope: Envelope = serde_json::from_slice(&bytes).map_err(LocalCopyError::Malformed)?;
    if envelope.format != FORMAT {
        return Err(LocalCopyError::Format {
            found: envelope.format,
        });
    }
    let computed = checksum(&envelope.payload);
    if computed != envelope.sha256 {
        return Err(LocalCopyError::Checksum {
            recorded: envelope.sha256,
            computed,
        });
    }
    let copy: LocalCopy =
        serde_json::from_value(envelope.payload).map_err(LocalCopyError::Content)?;
    if copy.node != node {
        return Err(LocalCopyError::OtherNode {
            found: copy.node,
            expected: node.to_string(),
        });
    }
    Ok(Some(copy))
}

/// What the agent found at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The usable copy, if any.
    pub copy: Option<LocalCopy>,
    /// Why a copy on disk was refused (already logged); for the status endpoint.
    pub error: Option<String>,
}

/// Loads the local copy at start. A refused copy is logged, moved aside to
/// `<name>.corrupt-<time>` (or `.other-node-<time>`) so it is kept for
/// inspection and never read again, and reported in [`Recovered::error`].
pub fn recover(path: &Path, node: &str, controller: &str) -> Recovered {
    match load(path, node) {
        Ok(None) => {
            tracing::info!(path = %path.display(), "no local copy yet; it is written when the controller first sends the desired state");
            Recovered::default()
        }
        Ok(Some(copy)) => {
            if copy.controller.trim_end_matches('/') != controller.trim_end_matches('/') {
                // Still this node's last known state: a controller restored
                // on another address serves the same domain.
                tracing::info!(saved_from = %copy.controller, controller, "the local copy came from another controller address");
            }
            tracing::info!(
                path = %path.display(),
                index = copy.desired.index,
                servers = copy.desired.servers.len(),
                "loaded the local copy"
            );
            Recovered {
                copy: Some(copy),
                error: None,
            }
        }
        Err(error) => {
            let aside = move_aside(path, error.aside_tag());
            let message = match &aside {
                Ok(to) => format!(
                    "{error}; moved it aside to `{}`, nothing is started from it",
                    to.display()
                ),
                Err(move_error) => format!(
                    "{error}; cannot move it aside ({move_error}), nothing is started from it"
                ),
            };
            tracing::error!(path = %path.display(), "{message}");
            Recovered {
                copy: None,
                error: Some(message),
            }
        }
    }
}

/// Renames a refused copy to `<name>.<tag>-<UTC time>`, never over an
/// earlier one.
fn move_aside(path: &Path, tag: &str) -> io::Result<PathBuf> {
    let stamp = dure_core::timefmt::compact(crate::supervisor::now_ms());
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut target = path.with_file_name(format!("{name}.{tag}-{stamp}"));
    let mut n = 1;
    while target.exists() {
        target = path.with_file_name(format!("{name}.{tag}-{stamp}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &target)?;
    Ok(target)
}

/// SHA-256 of the canonical form of `payload`, as lowercase hex.
fn checksum(payload: &Value) -> String {
    let bytes = serde_json::to_vec(&canonical(payload)).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// `value` with every object's keys inserted in sorted order, so its
/// compact serialization does not depend on how the map keeps its keys.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_api::DesiredServer;
    use dure_core::Intent;

    fn copy(node: &str) -> LocalCopy {
        let spec = serde_json::from_value(serde_json::json!({
            "name": "web1",
            "node": node,
            "argv": ["/bin/sleep", "60"],
            "env": {"Z": "last", "A": "first"},
        }))
        .unwrap();
        LocalCopy {
            node: node.to_string(),
            controller: "http://127.0.0.1:7070".into(),
            saved_ms: 1_700_000_000_000,
            desired: DesiredNode {
                index: 42,
                servers: vec![DesiredServer {
                    spec,
                    intent: Intent::Run,
                    generation: 3,
                    files: Default::default(),
                }],
                membership_keys: None,
                apps: Vec::new(),
            },
        }
    }

    fn saved() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desired-state.json");
        save(&path, &copy("n1")).unwrap();
        (dir, path)
    }

    #[test]
    fn round_trips() {
        let (_dir, path) = saved();
        assert_eq!(load(&path, "n1").unwrap(), Some(copy("n1")));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"sha256\""), "{text}");
    }

    #[test]
    fn a_missing_copy_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("nope.json"), "n1").unwrap().is_none());
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        let (_dir, path) = saved();
        let full = std::fs::read(&path).unwrap();
        for bytes in [
            b"\x00\x17garbage".to_vec(),
            Vec::new(),
            full[..full.len() / 2].to_vec(),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let error = load(&path, "n1").unwrap_err();
            assert!(matches!(error, LocalCopyError::Malformed(_)), "{error}");
        }
    }

    #[test]
    fn a_changed_payload_fails_the_checksum() {
        let (_dir, path) = saved();
        let text = std::fs::read_to_string(&path).unwrap();
        // Still valid JSON of the right shape: only the checksum can tell.
        let flipped = text.replace("\"index\": 42", "\"index\": 43");
        assert_ne!(text, flipped);
        std::fs::write(&path, flipped).unwrap();
        let error = load(&path, "n1").unwrap_err();
        assert!(matches!(error, LocalCopyError::Checksum { .. }), "{error}");
        assert!(error.to_string().contains("fails its checksum"), "{error}");
    }

    #[test]
    fn reformatting_keeps_the_checksum() {
        let (_dir, path) = saved();
        let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
        assert_eq!(load(&path, "n1").unwrap(), Some(copy("n1")));
    }

    #[test]
    fn another_format_is_refused() {
        let (_dir, path) = saved();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"format\": 1", "\"format\": 2")).unwrap();
        let error = load(&path, "n1").unwrap_err();
        assert!(
            matches!(error, LocalCopyError::Format { found: 2 }),
            "{error}"
        );
    }

    #[test]
    fn a_checksummed_payload_of_the_wrong_shape_is_refused() {
        let (_dir, path) = saved();
        let payload = serde_json::json!({"node": "n1", "desired": "nope"});
        let envelope = Envelope {
            format: FORMAT,
            sha256: checksum(&payload),
            payload,
        };
        std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
        let error = load(&path, "n1").unwrap_err();
        assert!(matches!(error, LocalCopyError::Content(_)), "{error}");
    }

    #[test]
    fn a_copy_for_another_node_is_refused() {
        let (_dir, path) = saved();
        let error = load(&path, "n2").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the local copy is for node `n1`, not for this agent's node `n2`"
        );
    }

    #[test]
    fn recover_moves_a_refused_copy_aside_and_keeps_a_good_one() {
        let (dir, path) = saved();
        let good = recover(&path, "n1", "http://127.0.0.1:7070/");
        assert_eq!(good.copy, Some(copy("n1")));
        assert!(good.error.is_none());
        assert!(path.exists());

        let other = recover(&path, "n2", "http://127.0.0.1:7070");
        assert!(other.copy.is_none());
        assert!(other.error.unwrap().contains("other-node"));
        assert!(!path.exists());

        std::fs::write(&path, b"{").unwrap();
        let bad = recover(&path, "n1", "http://127.0.0.1:7070");
        assert!(bad.copy.is_none());
        let error = bad.error.unwrap();
        assert!(error.contains("moved it aside"), "{error}");
        assert!(!path.exists());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names[0].starts_with("desired-state.json.corrupt-"),
            "{names:?}"
        );
        assert!(
            names[1].starts_with("desired-state.json.other-node-"),
            "{names:?}"
        );
    }
}
