//! `manifest.json`, the first entry of a domain pack: what the archive is,
//! where and when it was made, and the size and sha256 of every other entry,
//! so a reader can tell a complete, unaltered archive from anything else.

use crate::settings::ControllerFile;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Path of the manifest inside the archive.
pub const MANIFEST: &str = "manifest.json";
/// What `format` says in every domain pack.
pub const FORMAT: &str = "dure-domain-pack";
/// Bumped when a reader of an older version could misread the archive.
pub const FORMAT_VERSION: u32 = 1;

/// The manifest of a domain pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Name of the domain.
    pub domain: String,
    /// Version of the `dure` that wrote the archive.
    pub dure_version: String,
    /// The configuration version the archive holds (as `dure config
    /// history` numbers it). Packs made before versions have none (0); their
    /// version is read from their history.
    #[serde(default)]
    pub version: u64,
    /// Store revision the archive was read at; an unpacked store starts here.
    pub revision: u64,
    /// Reads before this revision were compacted away in the source store.
    pub compacted: u64,
    /// When the archive was made, RFC 3339 in UTC.
    pub created: String,
    /// The same instant in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The packing controller's settings (without its data directory);
    /// unpack writes them to the new `controller.toml`.
    pub controller: ControllerFile,
    /// What the archive holds, for people and for `dure domain verify`.
    pub contents: Contents,
    /// Whether `secrets/` entries (the admin token) are included.
    pub secrets: bool,
    /// Every entry but the manifest: path → size and sha256.
    pub entries: BTreeMap<String, EntryDigest>,
}

/// A summary of what a pack holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contents {
    pub nodes: Vec<String>,
    pub servers: usize,
    pub clusters: usize,
    /// Changes in the history entry (configuration history and intents).
    pub history_changes: usize,
    /// Store key prefixes whose every retained change is included.
    pub full_history: Vec<String>,
    /// Store key prefixes whose current values only are included.
    pub current_only: Vec<String>,
}

/// Size and checksum of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryDigest {
    pub size: u64,
    /// Lower-case hex sha256 of the entry's bytes.
    pub sha256: String,
}

impl EntryDigest {
    pub fn of(bytes: &[u8]) -> EntryDigest {
        EntryDigest {
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(EntryDigest::of(b"abc").size, 3);
    }
}
