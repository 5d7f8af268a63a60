//! The domain's membership keys. The key is 32 random bytes (hex) created
//! with the domain, at the controller's first start, kept in
//! `<data>/membership.key` with mode 0600 and handed to every agent in the
//! answer to its registration and with every answer to its desired-state
//! poll; agents authenticate every membership datagram with it.
//!
//! `dure domain rotate-key` replaces it without a false failure during
//! the rollout: the new key goes to `membership.key`, the old one and the
//! rotation's time and grace to `membership.rotation.json` (0600), and
//! what agents are handed moves in three steps ([`keys_at`]): for one
//! grace the old key seals and the new one is also accepted (every agent
//! learns it before anyone uses it), for the next the new key seals and
//! the old one is accepted (agents that switch a little later are still
//! understood), then the new key alone. A datagram under neither is
//! refused and counted by the agent. A crash between the two writes leaves
//! a rotation whose old key is the current one, which is ignored: the
//! rotation did not happen.

use anyhow::Context;
use dure_api::MembershipKeys;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub const KEY_FILE: &str = "membership.key";
pub const ROTATION_FILE: &str = "membership.rotation.json";
/// Each step of a rollout when the caller gives no grace: many times what
/// a woken agent needs to hear of it (milliseconds), few enough that an
/// old key does not linger.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Bounds of a grace: under a second, an agent between two polls could
/// miss a step; over an hour, the old key stays good too long.
pub const MIN_GRACE: Duration = Duration::from_secs(1);
pub const MAX_GRACE: Duration = Duration::from_secs(3600);

/// A rotation under way: the key it replaced, and when and how slowly.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub previous: String,
    pub rotated_ms: u64,
    pub grace_ms: u64,
}

impl Rotation {
    /// From here on the new key seals.
    pub fn seal_new_ms(&self) -> u64 {
        self.rotated_ms.saturating_add(self.grace_ms)
    }

    /// From here on the old key opens nothing.
    pub fn done_ms(&self) -> u64 {
        self.rotated_ms
            .saturating_add(self.grace_ms.saturating_mul(2))
    }
}

/// What agents are handed at `now_ms`, for the newest key and the
/// rotation under way, if any (see the module docs).
pub fn keys_at(newest: &str, rotation: Option<&Rotation>, now_ms: u64) -> MembershipKeys {
    match rotation {
        Some(r) if now_ms < r.seal_new_ms() => MembershipKeys {
            key: r.previous.clone(),
            accept: vec![newest.to_string()],
        },
        Some(r) if now_ms < r.done_ms() => MembershipKeys {
            key: newest.to_string(),
            accept: vec![r.previous.clone()],
        },
        _ => MembershipKeys::single(newest.to_string()),
    }
}

/// Why a rotation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotateError {
    #[error("a membership key rotation is under way until {until}: rotate again after it")]
    UnderWay { until: String },
    #[error("grace {grace} is out of range: give {min} to {max}")]
    Grace {
        grace: String,
        min: String,
        max: String,
    },
    #[error("cannot rotate the membership key: {0}")]
    Failed(String),
}

struct KeyState {
    newest: String,
    rotation: Option<Rotation>,
}

/// The domain's keys, shared by the API's handlers.
pub struct DomainKeys {
    /// Where they are kept; `None` for an in-process controller of tests.
    dir: Option<PathBuf>,
    state: Mutex<KeyState>,
}

impl DomainKeys {
    /// Loads the keys of a data directory, creating the key on first start.
    pub fn open(data_dir: &Path) -> anyhow::Result<DomainKeys> {
        let newest = load_or_create(data_dir)?;
        let path = data_dir.join(ROTATION_FILE);
        let rotation = match std::fs::read(&path) {
            Ok(bytes) => {
                let rotation: Rotation = serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "{} is not valid: delete it (agents then take the new key at once, which may refuse a few datagrams)",
                        path.display()
                    )
                })?;
                (rotation.previous != newest).then_some(rotation)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(DomainKeys {
            dir: Some(data_dir.to_path_buf()),
            state: Mutex::new(KeyState { newest, rotation }),
        })
    }

    /// Keys of their own, kept nowhere.
    pub fn in_memory() -> anyhow::Result<DomainKeys> {
        Ok(DomainKeys {
            dir: None,
            state: Mutex::new(KeyState {
                newest: generate()?,
                rotation: None,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, KeyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest key: what a restored controller must start with.
    pub fn newest(&self) -> String {
        self.state().newest.clone()
    }

    /// What agents are handed now.
    pub fn keys(&self, now_ms: u64) -> MembershipKeys {
        let state = self.state();
        keys_at(&state.newest, state.rotation.as_ref(), now_ms)
    }

    /// The times still ahead at which [`DomainKeys::keys`] changes.
    pub fn steps_after(&self, now_ms: u64) -> Vec<u64> {
        let state = self.state();
        state
            .rotation
            .iter()
            .flat_map(|r| [r.seal_new_ms(), r.done_ms()])
            .filter(|at| *at > now_ms)
            .collect()
    }

    /// Starts a rotation at `now_ms`: a new key, the current one accepted
    /// for two graces. Refused while another is under way.
    pub fn rotate(&self, grace: Duration, now_ms: u64) -> Result<Rotation, RotateError> {
        if !(MIN_GRACE..=MAX_GRACE).contains(&grace) {
            let spec = |d| dure_core::DurationSpec(d).to_string();
            return Err(RotateError::Grace {
                grace: spec(grace),
                min: spec(MIN_GRACE),
                max: spec(MAX_GRACE),
            });
        }
        let mut state = self.state();
        if let Some(r) = state.rotation.as_ref().filter(|r| now_ms < r.done_ms()) {
            return Err(RotateError::UnderWay {
                until: dure_core::timefmt::rfc3339_seconds(r.done_ms()),
            });
        }
        let failed = |e: anyhow::Error| RotateError::Failed(format!("{e:#}"));
        let newest = generate().map_err(failed)?;
        let rotation = Rotation {
            previous: state.newest.clone(),
            rotated_ms: now_ms,
            grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
        };
        if let Some(dir) = &self.dir {
            // The rotation first: a crash before the key is written leaves
            // one whose old key is still the current one, ignored at start.
            let write = |name: &str, bytes: &[u8]| {
                let path = dir.join(name);
                crate::fsutil::write_atomically(&path, bytes, 0o600)
                    .with_context(|| format!("cannot write {}", path.display()))
            };
            let record = serde_json::to_vec_pretty(&rotation)
                .context("the rotation does not serialize")
                .map_err(failed)?;
            write(ROTATION_FILE, &record).map_err(failed)?;
            write(KEY_FILE, format!("{newest}\n").as_bytes()).map_err(failed)?;
        }
        state.newest = newest;
        state.rotation = Some(rotation.clone());
        Ok(rotation)
    }
}

/// Loads the key, creating it on first start.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => return parse(&text, &path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let key = generate()?;
    match crate::fsutil::write_new(&path, format!("{key}\n").as_bytes(), 0o600) {
        Ok(()) => Ok(key),
        // Another controller starting on this directory wrote one first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            parse(&text, &path)
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// A new key: 32 random bytes as hex.
pub fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the membership key: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Whether `text` is a key as written in [`KEY_FILE`].
pub fn is_key(text: &str) -> bool {
    let key = text.trim();
    key.len() >= 64 && key.len().is_multiple_of(2) && key.bytes().all(|b| b.is_ascii_hexdigit())
}

fn parse(text: &str, path: &Path) -> anyhow::Result<String> {
    anyhow::ensure!(
        is_key(text),
        "membership key in {} is not valid: it must be at least 32 bytes as hex; restore it from another controller's data directory or delete it to create a new one (agents take the new one at their next registration)",
        path.display()
    );
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = load_or_create(dir.path()).expect("created");
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create(dir.path()).expect("read"), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_key_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(KEY_FILE), "short\n").expect("write");
        let error = load_or_create(dir.path()).expect_err("refused");
        assert!(error.to_string().contains("is not valid"), "{error}");
    }

    #[test]
    fn a_rotation_learns_then_seals_then_forgets_the_old_key() {
        let rotation = Rotation {
            previous: "old".into(),
            rotated_ms: 1_000,
            grace_ms: 100,
        };
        let at = |now| keys_at("new", Some(&rotation), now);
        assert_eq!(
            (at(1_000).key.as_str(), at(1_000).accept),
            ("old", vec!["new".to_string()])
        );
        assert_eq!(
            (at(1_099).key.as_str(), at(1_099).accept),
            ("old", vec!["new".to_string()])
        );
        assert_eq!(
            (at(1_100).key.as_str(), at(1_100).accept),
            ("new", vec!["old".to_string()])
        );
        assert_eq!(at(1_200), MembershipKeys::single("new".into()));
        assert_eq!(
            keys_at("new", None, 0),
            MembershipKeys::single("new".into())
        );
        // Whatever the moment, every two agents at most one step apart
        // open each other's datagrams.
        let opens = |receiver: &MembershipKeys, sender: &MembershipKeys| {
            receiver.key == sender.key || receiver.accept.contains(&sender.key)
        };
        let steps = [at(1_000), at(1_150), at(1_300)];
        let before = keys_at("old", None, 0);
        for (a, b) in [
            (&before, &steps[0]),
            (&steps[0], &steps[1]),
            (&steps[1], &steps[2]),
        ] {
            assert!(opens(a, b) && opens(b, a));
        }
    }

    #[test]
    fn a_rotation_is_kept_refused_while_under_way_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = DomainKeys::open(dir.path()).expect("opened");
        let old = keys.newest();
        let grace = Duration::from_secs(2);
        let rotation = keys.rotate(grace, 10_000).expect("rotated");
        assert_eq!(rotation.previous, old);
        let new = keys.newest();
        assert_ne!(new, old);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(KEY_FILE))
                .unwrap()
                .trim(),
            new
        );
        assert_eq!(keys.keys(10_500).key, old);
        assert_eq!(keys.steps_after(10_500), vec![12_000, 14_000]);
        assert!(matches!(
            keys.rotate(grace, 13_999),
            Err(RotateError::UnderWay { .. })
        ));
        assert!(matches!(
            keys.rotate(Duration::from_millis(10), 20_000),
            Err(RotateError::Grace { .. })
        ));
        let reopened = DomainKeys::open(dir.path()).expect("reopened");
        assert_eq!(reopened.keys(12_500), keys.keys(12_500));
        assert_eq!(reopened.keys(12_500).accept, vec![old]);
        assert_eq!(reopened.keys(14_000), MembershipKeys::single(new.clone()));
        // The next rotation starts from the newest key.
        let next = reopened.rotate(grace, 14_000).expect("rotated again");
        assert_eq!(next.previous, new);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(ROTATION_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "it holds the old key");
    }

    #[test]
    fn a_rotation_record_whose_old_key_is_current_did_not_happen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let current = load_or_create(dir.path()).expect("created");
        let record = Rotation {
            previous: current.clone(),
            rotated_ms: 0,
            grace_ms: u64::MAX / 4,
        };
        std::fs::write(
            dir.path().join(ROTATION_FILE),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        let keys = DomainKeys::open(dir.path()).expect("opened");
        assert_eq!(keys.keys(1), MembershipKeys::single(current));
        assert!(keys.steps_after(0).is_empty());
    }
}
