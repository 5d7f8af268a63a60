//! Making a domain pack from a store: read the configuration history, the
//! tree and the intents at one revision, checksum every entry, write the
//! manifest and build the archive. Used by the API (`GET /v1/domain/pack`),
//! by the automatic backups at start and, offline, on a data directory.

use super::archive::{self, Entry};
use super::manifest::{Contents, EntryDigest, Manifest, FORMAT, FORMAT_VERSION, MANIFEST};
use super::{
    document_entry, document_path, file_name, history_file, packed_version, CA_CERT_ENTRY,
    CA_KEY_ENTRY, CURRENT_ONLY_PREFIXES, DOCUMENT_KEYS, FULL_HISTORY_PREFIXES,
    MEMBERSHIP_KEY_ENTRY, TOKEN_ENTRY,
};
use crate::settings::ControllerFile;
use crate::tls::ca::CaPem;
use anyhow::Context;
use dure_core::model::paths::{self, DocumentPath};
use dure_store::{EventKind, KeyValue, SqliteStore, Store, WatchEvent};
use std::collections::BTreeMap;
use std::path::Path;

/// The domain name used until the configuration names its domain.
pub const DEFAULT_DOMAIN: &str = "default";

/// What a pack is made from.
pub struct PackSource<'a> {
    pub store: &'a dyn Store,
    /// The admin token; packed only when secrets are asked for.
    pub token: Option<&'a str>,
    /// The membership key; packed only with the token, so a restored
    /// controller keeps the key its agents hold.
    pub membership_key: Option<String>,
    /// The domain CA with its key; packed only with secrets.
    pub ca: Option<&'a CaPem>,
    /// The packing controller's settings; `data` is left out of the pack.
    pub controller: ControllerFile,
    /// The time to stamp the pack with, in milliseconds since the epoch.
    pub now_ms: u64,
}

/// A finished pack.
pub struct Pack {
    /// The default file name (see [`super::file_name`]).
    pub file_name: String,
    pub bytes: Vec<u8>,
    pub manifest: Manifest,
}

/// Packs the domain held in `source.store`.
pub async fn pack(source: &PackSource<'_>, include_secrets: bool) -> anyhow::Result<Pack> {
    let store = source.store;
    // One export covers both full-history prefixes at one revision; the
    // intents are then read at that same revision from history.
    let exported = store
        .export("/config")
        .await
        .context("cannot read the configuration history")?;
    let revision = exported.revision;
    let mut events: Vec<WatchEvent> = exported
        .events
        .into_iter()
        .filter(|e| {
            FULL_HISTORY_PREFIXES
                .iter()
                .any(|p| e.kv.key.starts_with(p))
        })
        .collect();
    for prefix in CURRENT_ONLY_PREFIXES {
        let current = store
            .list_at(prefix, revision)
            .await
            .with_context(|| format!("cannot read `{prefix}` at revision {revision}"))?;
        events.extend(current.into_iter().map(|kv| WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue { lease: None, ..kv },
        }));
    }
    // Stable: changes of one revision keep their order.
    events.sort_by_key(|e| e.kv.mod_revision);

    let tree: BTreeMap<String, Vec<u8>> = store
        .list_at(DOCUMENT_KEYS, revision)
        .await
        .with_context(|| format!("cannot read the configuration at revision {revision}"))?
        .into_iter()
        .filter_map(|kv| Some((document_path(&kv.key)?.to_string(), kv.value)))
        .collect();

    let mut entries = vec![Entry {
        path: history_file::HISTORY.to_string(),
        bytes: history_file::encode(&events),
        mode: 0o644,
    }];
    entries.extend(tree.iter().map(|(path, bytes)| Entry {
        path: document_entry(path),
        bytes: bytes.clone(),
        mode: 0o644,
    }));
    if include_secrets {
        let token = source.token.filter(|t| !t.is_empty()).ok_or_else(|| {
            anyhow::anyhow!("cannot include secrets: the admin token is not available")
        })?;
        entries.push(Entry {
            path: TOKEN_ENTRY.to_string(),
            bytes: format!("{token}\n").into_bytes(),
            mode: 0o600,
        });
        if let Some(key) = &source.membership_key {
            entries.push(Entry {
                path: MEMBERSHIP_KEY_ENTRY.to_string(),
                bytes: format!("{key}\n").into_bytes(),
                mode: 0o600,
            });
        }
        if let Some(ca) = source.ca {
            entries.push(Entry {
                path: CA_CERT_ENTRY.to_string(),
                bytes: ca.cert.clone().into_bytes(),
                mode: 0o644,
            });
            entries.push(Entry {
                path: CA_KEY_ENTRY.to_string(),
                bytes: ca.key.clone().into_bytes(),
                mode: 0o600,
            });
        }
    }

    let domain = DEFAULT_DOMAIN.to_string();
    let version = packed_version(&events);
    let manifest = Manifest {
        format: FORMAT.to_string(),
        format_version: FORMAT_VERSION,
        domain: domain.clone(),
        dure_version: env!("CARGO_PKG_VERSION").to_string(),
        version,
        revision,
        compacted: exported.compacted,
        created: dure_core::timefmt::rfc3339_millis(source.now_ms),
        created_ms: source.now_ms,
        controller: ControllerFile {
            data: None,
            ..source.controller.clone()
        },
        contents: contents(&tree, &events),
        secrets: include_secrets,
        entries: entries
            .iter()
            .map(|e| (e.path.clone(), EntryDigest::of(&e.bytes)))
            .collect(),
    };
    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).context("cannot write the manifest")?;
    entries.insert(
        0,
        Entry {
            path: MANIFEST.to_string(),
            bytes: manifest_bytes,
            mode: 0o644,
        },
    );
    // Compressing is blocking work: keep it off the async workers.
    let mtime = source.now_ms / 1000;
    let bytes = tokio::task::spawn_blocking(move || archive::build(&entries, mtime))
        .await
        .context("building the archive stopped")?
        .context("cannot build the archive")?;
    Ok(Pack {
        file_name: file_name(&domain, version, source.now_ms),
        bytes,
        manifest,
    })
}

/// Packs the store of a controller data directory without going through
/// its API. The store is opened read-only, which works next to a running
/// controller: SQLite's WAL lets a reader see a consistent revision while
/// the controller keeps writing.
pub async fn pack_data_dir(
    data: &Path,
    include_secrets: bool,
    now_ms: u64,
) -> anyhow::Result<Pack> {
    let store_path = data.join(crate::STORE_FILE);
    anyhow::ensure!(
        store_path.exists(),
        "{} holds no controller store ({} is missing); pass the data directory of a controller",
        data.display(),
        crate::STORE_FILE
    );
    let store = SqliteStore::open_read_only(&store_path)
        .with_context(|| format!("cannot open the store {}", store_path.display()))?;
    let token = if include_secrets {
        let path = data.join(crate::token::TOKEN_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the admin token {}", path.display()))?;
        Some(text.trim().to_string())
    } else {
        None
    };
    let membership_key = if include_secrets {
        let path = data.join(crate::membership_key::KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text.trim().to_string()),
            // A data directory from before membership keys.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the membership key {}", path.display()))
            }
        }
    } else {
        None
    };
    // The built-in CA, when this data directory holds its key.
    let ca = match (
        std::fs::read_to_string(data.join(crate::tls::ca::CA_CERT_FILE)),
        std::fs::read_to_string(data.join(crate::tls::ca::CA_KEY_FILE)),
    ) {
        (Ok(cert), Ok(key)) if include_secrets => Some(CaPem { cert, key }),
        _ => None,
    };
    let mut controller = ControllerFile::load_from_data_dir(data)?.unwrap_or_default();
    if controller.listen.is_none() {
        // The address the controller last bound, when no file says more.
        controller.listen = std::fs::read_to_string(data.join(crate::ADDR_FILE))
            .ok()
            .and_then(|text| text.trim().parse().ok());
    }
    pack(
        &PackSource {
            store: &store,
            token: token.as_deref(),
            membership_key,
            ca: ca.as_ref(),
            controller,
            now_ms,
        },
        include_secrets,
    )
    .await
}

/// Counts what the tree and history hold.
fn contents(tree: &BTreeMap<String, Vec<u8>>, events: &[WatchEvent]) -> Contents {
    let mut contents = Contents {
        history_changes: events.len(),
        full_history: FULL_HISTORY_PREFIXES
            .iter()
            .map(|p| p.to_string())
            .collect(),
        current_only: CURRENT_ONLY_PREFIXES
            .iter()
            .map(|p| p.to_string())
            .collect(),
        ..Contents::default()
    };
    for path in tree.keys() {
        match paths::parse(path) {
            Some(DocumentPath::Node { node }) => contents.nodes.push(node.to_string()),
            Some(DocumentPath::Server { .. }) => contents.servers += 1,
            Some(DocumentPath::Cluster { .. }) => contents.clusters += 1,
            // The manifest counts what a restore is checked against; a
            // balancer names no host, so a restore has nothing to check.
            Some(DocumentPath::Lb { .. } | DocumentPath::Domain) | None => {}
        }
    }
    contents
}
