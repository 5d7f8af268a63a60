//! Domain backup and restore: the domain pack, one `tar.gz` holding the
//! configuration tree as readable JSON, the store history of the
//! configuration (every revision, with its revision number), the current
//! server intents, metadata, and — only when asked — the admin token.
//!
//! Layout of an archive:
//! - `manifest.json` ([`manifest`]): format, domain, configuration version
//!   and store revision, time, the
//!   packing controller's settings, and the size and sha256 of every other
//!   entry;
//! - `config/<document path>`: the configuration at the packed revision,
//!   such as `config/nodes/n1/node.json`, for people and tools to read;
//! - `history.jsonl` ([`history_file`]): every retained change of keys under
//!   `/config/` and `/config-history/`, plus the current `/intents/` values;
//! - `secrets/admin.token` and `secrets/membership.key` (the domain's
//!   membership key, so a restored controller keeps the key its agents
//!   hold): only with `include_secrets`.
//!
//! Architecture invariant: an archive is verified whole — every checksum,
//! the history against the configuration tree — before anything is written
//! for a restore, and a restore is built in a temporary directory that is
//! renamed into place only when complete.

mod archive;
mod history_file;
pub mod manifest;
mod pack;
pub mod rotation;
mod unpack;
mod verify;

pub use pack::{pack, pack_data_dir, Pack, PackSource};
pub use unpack::{unpack, NodeRename, UnpackReport, UnpackRequest};
pub use verify::{verify, Verified};

/// Store keys of configuration documents: `/config` + document path.
const DOCUMENT_KEYS: &str = "/config/";

/// Store key prefixes a pack carries. Configuration documents and the
/// revision records of the configuration history keep every change;
/// intents only their current value (their past says nothing useful).
pub const FULL_HISTORY_PREFIXES: [&str; 2] = [DOCUMENT_KEYS, "/config-history/"];
pub const CURRENT_ONLY_PREFIXES: [&str; 1] = ["/intents/"];

/// The document path (`/nodes/n1/node.json`) of a configuration key
/// (`/config/nodes/n1/node.json`), or `None` for any other key.
fn document_path(key: &str) -> Option<&str> {
    key.strip_prefix(DOCUMENT_KEYS)
        .map(|_| &key[DOCUMENT_KEYS.len() - 1..])
}

/// The archive entry of a document path: `config/nodes/n1/node.json`.
fn document_entry(path: &str) -> String {
    format!("{CONFIG_DIR}{path}")
}

/// Path of the admin token inside the archive.
pub const TOKEN_ENTRY: &str = "secrets/admin.token";
/// Path of the membership key inside the archive (with the token only).
pub const MEMBERSHIP_KEY_ENTRY: &str = "secrets/membership.key";
/// Paths of the domain CA's certificate and key inside the archive (with
/// secrets, when the controller holds the CA's key).
pub const CA_CERT_ENTRY: &str = "secrets/ca.pem";
pub const CA_KEY_ENTRY: &str = "secrets/ca.key";
/// Directory of the configuration tree inside the archive.
pub const CONFIG_DIR: &str = "config";

/// Why an archive cannot be used. Each message names the entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the archive is damaged or truncated: {0}")]
    Damaged(String),
    #[error("the archive is not a domain pack as written by dure: {0}")]
    Unexpected(String),
    #[error("the archive has no `manifest.json`; it is not a domain pack or it lost its manifest")]
    NoManifest,
    #[error("the archive's `manifest.json` is invalid: {0}")]
    Manifest(String),
    #[error("the archive is missing entry `{0}` that its manifest lists")]
    Missing(String),
    #[error("archive entry `{0}` is not listed in the manifest; the archive was altered")]
    Unlisted(String),
    #[error(
        "archive entry `{entry}` is corrupt: it has {actual} bytes, the manifest says {expected}"
    )]
    Size {
        entry: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "archive entry `{entry}` is corrupt: its sha256 is {actual}, the manifest says {expected}"
    )]
    Checksum {
        entry: String,
        expected: String,
        actual: String,
    },
    #[error("the archive's content is inconsistent: {0}")]
    Invalid(String),
}

/// Saves a pack at `path` without ever replacing an existing file, and
/// without a half-written pack under the real name after a crash (see
/// [`crate::fsutil::write_new`]). `secret` packs (with the admin token) are
/// readable by the owner only.
pub fn save(path: &std::path::Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    let mode = if secret { 0o600 } else { 0o644 };
    crate::fsutil::write_new(path, bytes, mode)
}

/// The name of a pack file: `dure-domain-<domain>-v<version>-<UTC
/// time>.tar.gz`, with the configuration version `dure config history`
/// shows. (Packs made before versions were named `…-rev<store revision>-…`.)
pub fn file_name(domain: &str, version: u64, created_ms: u64) -> String {
    format!(
        "dure-domain-{domain}-v{version}-{}.tar.gz",
        dure_core::timefmt::compact(created_ms)
    )
}

/// The configuration version a packed history ends at: the number of its
/// newest history record (0 when it has none).
fn packed_version(events: &[dure_store::WatchEvent]) -> u64 {
    events
        .iter()
        .filter(|e| e.kind == dure_store::EventKind::Put)
        .filter_map(|e| crate::history::version_of_key(&e.kv.key))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
