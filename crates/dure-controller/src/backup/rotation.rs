//! Automatic backups at start (`backup_on_boot = N`): the controller writes a
//! domain pack to `<data>/backups/` before it serves, then deletes the
//! oldest automatic packs beyond the newest N. Only files named like packs
//! (`dure-domain-…-v<version>-….tar.gz`, or `…-rev<revision>-…` as packs
//! were named before versions) are ever deleted; anything else an operator
//! puts there stays.

use super::pack::{pack, PackSource};
use crate::events::EventLog;
use crate::settings::ControllerFile;
use anyhow::Context;
use dure_store::Store;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Directory of the automatic packs inside the data directory.
pub const BACKUP_DIR: &str = "backups";

/// What one automatic backup did.
#[derive(Debug)]
pub struct BootBackup {
    pub path: PathBuf,
    /// The configuration version packed.
    pub version: u64,
    /// Older packs deleted to keep the newest N.
    pub deleted: Vec<PathBuf>,
}

/// The automatic backup of a starting controller, when its settings ask
/// for one: `None` when `backup_on_boot` is 0.
pub async fn on_boot(
    store: &Arc<dyn Store>,
    settings: &ControllerFile,
    data_dir: &Path,
) -> Option<anyhow::Result<BootBackup>> {
    let keep = settings.backup_on_boot.filter(|n| *n > 0)?;
    let source = PackSource {
        store: store.as_ref(),
        token: None,
        membership_key: None,
        ca: None,
        controller: settings.clone(),
        now_ms: crate::clock::now_ms(),
    };
    Some(backup_on_boot(&source, data_dir, keep).await)
}

/// Logs the automatic backup in the event log. A failed backup does not
/// stop the controller: managing running servers matters more than a
/// fresh backup, and the event says plainly that there is none.
pub async fn record(events: &EventLog, outcome: Option<anyhow::Result<BootBackup>>) {
    let message = match outcome {
        None => return,
        Some(Ok(backup)) => {
            tracing::info!(path = %backup.path.display(), version = backup.version, deleted = backup.deleted.len(), "automatic backup written");
            format!(
                "automatic backup of version {} written to {}; {} older removed",
                backup.version,
                backup.path.display(),
                backup.deleted.len()
            )
        }
        Some(Err(error)) => {
            tracing::error!(error = %format!("{error:#}"), "automatic backup failed");
            format!("automatic backup failed: {error:#}; fix it and restart, or take one with `dure domain pack`")
        }
    };
    events
        .record("controller", "backup", "controller", message)
        .await;
}

/// Writes a pack of `source` (without secrets) to `<data>/backups/` and
/// keeps the newest `keep` of them.
pub async fn backup_on_boot(
    source: &PackSource<'_>,
    data_dir: &Path,
    keep: u32,
) -> anyhow::Result<BootBackup> {
    let dir = data_dir.join(BACKUP_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create the backup directory {}", dir.display()))?;
    let pack = pack(source, false).await?;
    let path = dir.join(&pack.file_name);
    crate::fsutil::write_atomically(&path, &pack.bytes, 0o600)
        .with_context(|| format!("cannot write the backup {}", path.display()))?;
    let deleted = prune(&dir, keep)?;
    Ok(BootBackup {
        path,
        version: pack.manifest.version,
        deleted,
    })
}

/// Deletes all but the newest `keep` packs in `dir`; newest is the highest
/// version (versions only grow in one data directory), then the later
/// time in the name. Packs named by revision were all made before any
/// named by version, so they count as older.
pub fn prune(dir: &Path, keep: u32) -> anyhow::Result<Vec<PathBuf>> {
    let mut packs: Vec<(PackNumber, String)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            Some((pack_number(&name)?, name))
        })
        .collect();
    packs.sort();
    let surplus = packs.len().saturating_sub(keep as usize);
    let mut deleted = Vec::new();
    for (_, name) in packs.into_iter().take(surplus) {
        let path = dir.join(name);
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot delete the old backup {}", path.display()))?;
        deleted.push(path);
    }
    Ok(deleted)
}

/// The number in a pack file name; the older kind sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PackNumber {
    /// `…-rev<N>-…`: a store revision, in packs made before versions.
    Revision(u64),
    /// `…-v<N>-…`: a configuration version.
    Version(u64),
}

/// The number in a pack file name, or `None` for any other file.
fn pack_number(name: &str) -> Option<PackNumber> {
    let stem = name.strip_prefix("dure-domain-")?.strip_suffix(".tar.gz")?;
    // The time is the last `-` part; the number is the one before it (a
    // domain name may hold `-v` or `-rev` itself).
    let (rest, _time) = stem.rsplit_once('-')?;
    let (_, number) = rest.rsplit_once('-')?;
    if let Some(version) = number.strip_prefix('v') {
        return version.parse().ok().map(PackNumber::Version);
    }
    number
        .strip_prefix("rev")?
        .parse()
        .ok()
        .map(PackNumber::Revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pack_names_count() {
        assert_eq!(
            pack_number("dure-domain-default-v12-20240501T120000Z.tar.gz"),
            Some(PackNumber::Version(12))
        );
        assert_eq!(
            pack_number("dure-domain-my-v-domain-v7-20240501T120000Z.tar.gz"),
            Some(PackNumber::Version(7))
        );
        assert_eq!(
            pack_number("dure-domain-default-rev12-20240501T120000Z.tar.gz"),
            Some(PackNumber::Revision(12))
        );
        assert_eq!(
            pack_number("dure-domain-my-rev-domain-rev7-20240501T120000Z.tar.gz"),
            Some(PackNumber::Revision(7))
        );
        for other in [
            "notes.txt",
            "dure-domain-x-rev1.tar.gz",
            "dure-domain-x-v1.tar.gz",
            "dure-domain-x-vx-20240501T120000Z.tar.gz",
            ".dure-domain-x-rev1-t.tar.gz.tmp",
        ] {
            assert_eq!(pack_number(other), None, "{other}");
        }
    }

    #[test]
    fn prune_keeps_the_newest_and_foreign_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (version, time) in [
            (9, "20240101T000000Z"),
            (10, "20230101T000000Z"),
            (2, "20250101T000000Z"),
        ] {
            let name = format!("dure-domain-d-v{version}-{time}.tar.gz");
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        std::fs::write(dir.path().join("keep-me.txt"), b"x").expect("write");
        let deleted = prune(dir.path(), 2).expect("prune");
        assert_eq!(deleted.len(), 1);
        assert!(deleted[0].ends_with("dure-domain-d-v2-20250101T000000Z.tar.gz"));
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 3);
        assert!(prune(dir.path(), 0).expect("prune all").len() == 2);
        assert!(dir.path().join("keep-me.txt").exists());
    }

    #[test]
    fn packs_named_by_revision_are_older_than_any_named_by_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "dure-domain-d-rev82-20240101T000000Z.tar.gz",
            "dure-domain-d-rev90-20240102T000000Z.tar.gz",
            "dure-domain-d-v3-20240103T000000Z.tar.gz",
            "dure-domain-d-v4-20240104T000000Z.tar.gz",
        ] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        let deleted = prune(dir.path(), 3).expect("prune");
        assert_eq!(deleted.len(), 1);
        assert!(deleted[0].ends_with("dure-domain-d-rev82-20240101T000000Z.tar.gz"));
        let deleted = prune(dir.path(), 2).expect("prune");
        assert_eq!(deleted.len(), 1);
        assert!(deleted[0].ends_with("dure-domain-d-rev90-20240102T000000Z.tar.gz"));
        assert!(dir
            .path()
            .join("dure-domain-d-v3-20240103T000000Z.tar.gz")
            .exists());
    }
}
