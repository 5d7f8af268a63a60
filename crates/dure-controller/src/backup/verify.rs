//! Checking a domain pack before anything is restored from it: the archive
//! reads to its end, the manifest is one this build understands, every
//! entry is listed with the right size and sha256 and nothing else is
//! there, the history is in order and only touches what a pack carries,
//! replaying it gives exactly the configuration tree in the archive, and
//! that tree reads as a configuration a controller can start with.

use super::manifest::{sha256_hex, Manifest, FORMAT, FORMAT_VERSION, MANIFEST};
use super::{
    archive, document_entry, document_path, history_file, packed_version, BackupError,
    CA_CERT_ENTRY, CA_KEY_ENTRY, CONFIG_DIR, CURRENT_ONLY_PREFIXES, FULL_HISTORY_PREFIXES,
    MEMBERSHIP_KEY_ENTRY, TOKEN_ENTRY,
};
use crate::tls::ca::{Ca, CaPem};
use dure_core::Domain;
use dure_store::{EventKind, History};
use std::collections::BTreeMap;

/// A domain pack that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    /// The configuration version the pack holds, read from its history
    /// (also for packs made before manifests named it).
    pub version: u64,
    /// The store history to import, at the manifest's revision.
    pub history: History,
    /// The configuration at the packed revision.
    pub domain: Domain,
    /// The admin token, when the pack includes secrets.
    pub token: Option<String>,
    /// The membership key, when the pack includes secrets (packs made
    /// before membership keys have none).
    pub membership_key: Option<String>,
    /// The domain CA with its key, when the pack includes it.
    pub ca: Option<CaPem>,
}

/// Reads and checks a whole archive.
pub fn verify(bytes: &[u8]) -> Result<Verified, BackupError> {
    let mut entries = archive::read(bytes)?;
    let manifest_bytes = entries.remove(MANIFEST).ok_or(BackupError::NoManifest)?;
    let manifest = read_manifest(&manifest_bytes)?;
    check_entries(&manifest, &entries)?;

    let history_bytes = entries
        .remove(history_file::HISTORY)
        .ok_or_else(|| BackupError::Missing(history_file::HISTORY.to_string()))?;
    let history = History {
        revision: manifest.revision,
        compacted: manifest.compacted,
        events: history_file::decode(&history_bytes)?,
    };
    check_history(&history)?;
    let version = packed_version(&history.events);
    if manifest.version != 0 && manifest.version != version {
        return Err(BackupError::Invalid(format!(
            "the manifest says version {}, but the history ends at version {version}",
            manifest.version
        )));
    }

    let token = match entries.remove(TOKEN_ENTRY) {
        Some(bytes) => Some(read_token(&bytes)?),
        None => None,
    };
    if manifest.secrets != token.is_some() {
        return Err(BackupError::Invalid(format!(
            "the manifest says secrets are {}, but `{TOKEN_ENTRY}` is {}",
            if manifest.secrets {
                "included"
            } else {
                "left out"
            },
            if token.is_some() { "there" } else { "not" }
        )));
    }

    let membership_key = match entries.remove(MEMBERSHIP_KEY_ENTRY) {
        Some(_) if !manifest.secrets => {
            return Err(BackupError::Invalid(format!(
                "`{MEMBERSHIP_KEY_ENTRY}` is there, but the manifest says secrets are left out"
            )))
        }
        Some(bytes) => Some(
            std::str::from_utf8(&bytes)
                .ok()
                .filter(|text| crate::membership_key::is_key(text))
                .map(|text| text.trim().to_string())
                .ok_or_else(|| {
                    BackupError::Invalid(format!(
                        "`{MEMBERSHIP_KEY_ENTRY}` does not hold a membership key"
                    ))
                })?,
        ),
        None => None,
    };
    let ca = read_ca(&mut entries, manifest.secrets)?;

    let config_dir = format!("{CONFIG_DIR}/");
    let mut documents = BTreeMap::new();
    for (path, bytes) in entries {
        let Some(document) = path.strip_prefix(&config_dir) else {
            return Err(BackupError::Unexpected(format!(
                "entry `{path}` is not part of any domain pack"
            )));
        };
        documents.insert(format!("/{document}"), bytes);
    }
    check_tree_matches_history(&documents, &history)?;
    // A restored controller reads this tree at start; one it cannot read
    // would leave a data directory no controller starts on.
    let domain = Domain::from_documents(documents.iter().map(|(p, b)| (p.as_str(), b.as_slice())))
        .map_err(|e| {
            BackupError::Invalid(format!("the packed configuration cannot be read: {e}"))
        })?;
    Ok(Verified {
        manifest,
        version,
        history,
        domain,
        token,
        membership_key,
        ca,
    })
}

/// The CA's certificate and key: both or neither, only with secrets, and
/// usable as a CA.
fn read_ca(
    entries: &mut BTreeMap<String, Vec<u8>>,
    secrets: bool,
) -> Result<Option<CaPem>, BackupError> {
    let text = |bytes: Vec<u8>, entry: &str| {
        String::from_utf8(bytes)
            .map_err(|_| BackupError::Invalid(format!("`{entry}` is not PEM text")))
    };
    match (entries.remove(CA_CERT_ENTRY), entries.remove(CA_KEY_ENTRY)) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) if secrets => {
            let pem = CaPem {
                cert: text(cert, CA_CERT_ENTRY)?,
                key: text(key, CA_KEY_ENTRY)?,
            };
            Ca::from_pem(&pem, CA_CERT_ENTRY, CA_KEY_ENTRY)
                .map_err(|e| BackupError::Invalid(format!("{e:#}")))?;
            Ok(Some(pem))
        }
        (Some(_), Some(_)) => Err(BackupError::Invalid(format!(
            "the manifest says secrets are left out, but `{CA_KEY_ENTRY}` is there"
        ))),
        _ => Err(BackupError::Invalid(format!(
            "`{CA_CERT_ENTRY}` and `{CA_KEY_ENTRY}` go together, but only one is there"
        ))),
    }
}

fn read_manifest(bytes: &[u8]) -> Result<Manifest, BackupError> {
    let bad = |why: String| BackupError::Manifest(why);
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let format = value.get("format").and_then(|f| f.as_str());
    if format != Some(FORMAT) {
        return Err(bad(format!(
            "its format is {}, not `{FORMAT}`",
            format.map_or("missing".to_string(), |f| format!("`{f}`"))
        )));
    }
    let version = value.get("format_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(bad(format!(
            "format version {} is not {FORMAT_VERSION}, the one this dure reads; unpack it with the dure version that wrote it ({})",
            version.map_or("missing".to_string(), |v| v.to_string()),
            value
                .get("dure_version")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown")
        )));
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

/// Every listed entry is there with its size and checksum; nothing else is.
fn check_entries(
    manifest: &Manifest,
    entries: &BTreeMap<String, Vec<u8>>,
) -> Result<(), BackupError> {
    for (path, digest) in &manifest.entries {
        let Some(bytes) = entries.get(path) else {
            return Err(BackupError::Missing(path.clone()));
        };
        let size = bytes.len() as u64;
        if size != digest.size {
            return Err(BackupError::Size {
                entry: path.clone(),
                expected: digest.size,
                actual: size,
            });
        }
        let actual = sha256_hex(bytes);
        if actual != digest.sha256 {
            return Err(BackupError::Checksum {
                entry: path.clone(),
                expected: digest.sha256.clone(),
                actual,
            });
        }
    }
    if let Some(extra) = entries.keys().find(|p| !manifest.entries.contains_key(*p)) {
        return Err(BackupError::Unlisted(extra.clone()));
    }
    Ok(())
}

/// The same rules the store applies on import, checked before a store is
/// even created, plus: only keys a pack carries.
fn check_history(history: &History) -> Result<(), BackupError> {
    let bad = |why: String| {
        Err(BackupError::Invalid(format!(
            "`{}`: {why}",
            history_file::HISTORY
        )))
    };
    if history.compacted > history.revision {
        return bad(format!(
            "the manifest's compaction point {} is after its revision {}",
            history.compacted, history.revision
        ));
    }
    let mut previous = 0;
    for event in &history.events {
        let key = &event.kv.key;
        let revision = event.kv.mod_revision;
        let carried = FULL_HISTORY_PREFIXES
            .iter()
            .chain(CURRENT_ONLY_PREFIXES.iter())
            .any(|p| key.starts_with(p));
        if !carried {
            return bad(format!("key `{key}` is not one a domain pack carries"));
        }
        if revision == 0 || revision > history.revision || revision < previous {
            return bad(format!(
                "the change of `{key}` at revision {revision} is out of order or beyond the packed revision {}",
                history.revision
            ));
        }
        previous = revision;
    }
    Ok(())
}

/// Replays the configuration history and compares it with the tree.
fn check_tree_matches_history(
    documents: &BTreeMap<String, Vec<u8>>,
    history: &History,
) -> Result<(), BackupError> {
    let mut replayed: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for event in &history.events {
        let Some(path) = document_path(&event.kv.key) else {
            continue;
        };
        match event.kind {
            EventKind::Put => {
                replayed.insert(path, &event.kv.value);
            }
            EventKind::Delete => {
                replayed.remove(path);
            }
        }
    }
    for (path, bytes) in documents {
        if replayed.get(path.as_str()).copied() != Some(bytes.as_slice()) {
            return Err(BackupError::Invalid(format!(
                "entry `{}` does not match the configuration history at revision {}",
                document_entry(path),
                history.revision
            )));
        }
    }
    if let Some(path) = replayed.keys().find(|p| !documents.contains_key(**p)) {
        return Err(BackupError::Invalid(format!(
            "the configuration history has `{path}` at revision {} but entry `{}` is missing",
            history.revision,
            document_entry(path)
        )));
    }
    Ok(())
}

fn read_token(bytes: &[u8]) -> Result<String, BackupError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(crate::token::parse)
        .map(str::to_string)
        .ok_or_else(|| {
            BackupError::Invalid(format!("`{TOKEN_ENTRY}` does not hold an admin token"))
        })
}
