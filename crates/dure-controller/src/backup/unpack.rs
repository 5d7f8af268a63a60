//! Restoring a domain pack into a controller data directory, for a
//! controller on a new machine: verify the whole archive, plan the node
//! rename on the packed configuration, then build the data directory in a
//! temporary sibling directory (store with the imported history, the
//! rename as one more revision, `controller.toml` with the new address,
//! the admin token when packed) and rename it into place.
//!
//! A refused archive or rename writes nothing; a failure while building
//! removes the temporary directory and leaves the target as it was.

use super::verify::{verify, Verified};
use crate::backup::{CA_CERT_ENTRY, CA_KEY_ENTRY};
use crate::config_repo::{Author, ConfigRepo};
use crate::settings::{ControllerFile, CONFIG_FILE, DEFAULT_LISTEN};
use crate::tls::ca::Ca;
use anyhow::Context;
use dure_store::{SqliteStore, Store};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// Who the rename revision is recorded as.
const ACTOR: &str = "unpack";

/// `--node NEW` (the domain's only node) or `--node OLD=NEW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRename {
    pub from: Option<String>,
    pub to: String,
}

impl FromStr for NodeRename {
    type Err = String;
    fn from_str(text: &str) -> Result<NodeRename, String> {
        let (from, to) = match text.split_once('=') {
            Some((from, to)) => (Some(from.to_string()), to.to_string()),
            None => (None, text.to_string()),
        };
        if to.is_empty() || from.as_deref() == Some("") {
            return Err(format!(
                "node rename `{text}` is invalid: write NEW (when the domain has one node) or OLD=NEW"
            ));
        }
        Ok(NodeRename { from, to })
    }
}

/// What to restore, and where.
pub struct UnpackRequest {
    /// The archive's bytes.
    pub archive: Vec<u8>,
    /// The controller data directory to create.
    pub data_dir: PathBuf,
    /// New listen address; default: the packed controller's.
    pub listen_ip: Option<IpAddr>,
    /// New API port; default: the packed controller's.
    pub port: Option<u16>,
    pub rename: Option<NodeRename>,
    /// Replace a data directory that is not empty (it is kept aside).
    pub force: bool,
}

/// What a restore did.
#[derive(Debug)]
pub struct UnpackReport {
    pub data_dir: PathBuf,
    pub config_file: PathBuf,
    pub listen: SocketAddr,
    /// The configuration version the archive holds, kept by the restore.
    pub packed_version: u64,
    /// The revision the archive was packed at, kept by the restore.
    pub packed_revision: u64,
    /// The configuration version after the restore (one more with a rename).
    pub version: u64,
    /// The store's revision after the restore (one more with a rename).
    pub revision: u64,
    /// `(from, to)` when a node was renamed.
    pub renamed: Option<(String, String)>,
    pub token_restored: bool,
    /// Where the replaced data directory was moved (with `force`).
    pub replaced: Option<PathBuf>,
    pub nodes: Vec<String>,
    pub servers: usize,
    pub clusters: usize,
}

/// Restores a domain pack; see the module docs.
pub async fn unpack(request: UnpackRequest) -> anyhow::Result<UnpackReport> {
    let verified = verify(&request.archive)?;
    let renamed = match &request.rename {
        Some(rename) => Some(plan_rename(&verified, rename)?),
        None => None,
    };
    let target = Target::check(&request.data_dir, request.force)?;
    let listen = new_listen(&verified, request.listen_ip, request.port);

    let staging = Staging::create(&request.data_dir)?;
    let (version, revision) = build_store(staging.path(), &verified, renamed.as_ref()).await?;
    let settings = ControllerFile {
        listen: Some(listen),
        data: None,
        ..verified.manifest.controller.clone()
    };
    let config_path = staging.path().join(CONFIG_FILE);
    settings.write(
        &config_path,
        &format!(
            "Written by `dure domain unpack` from a pack of domain `{}` at version {} ({}).",
            verified.manifest.domain, verified.version, verified.manifest.created
        ),
    )?;
    if let Some(token) = &verified.token {
        let path = staging.path().join(crate::token::TOKEN_FILE);
        crate::fsutil::write_atomically(&path, format!("{token}\n").as_bytes(), 0o600)
            .with_context(|| format!("cannot write the admin token {}", path.display()))?;
    }
    if let Some(key) = &verified.membership_key {
        let path = staging.path().join(crate::membership_key::KEY_FILE);
        crate::fsutil::write_atomically(&path, format!("{key}\n").as_bytes(), 0o600)
            .with_context(|| format!("cannot write the membership key {}", path.display()))?;
    }
    if let Some(ca) = &verified.ca {
        // The same CA as before, so agents keep trusting the controller.
        Ca::from_pem(ca, CA_CERT_ENTRY, CA_KEY_ENTRY)?.write(staging.path())?;
    }
    let replaced = staging.commit(&request.data_dir, target)?;

    let mut nodes = verified.manifest.contents.nodes.clone();
    if let Some((from, to)) = &renamed {
        nodes.retain(|n| n != from);
        nodes.push(to.clone());
        nodes.sort();
    }
    Ok(UnpackReport {
        config_file: request.data_dir.join(CONFIG_FILE),
        data_dir: request.data_dir,
        listen,
        packed_version: verified.version,
        packed_revision: verified.manifest.revision,
        version,
        revision,
        renamed,
        token_restored: verified.token.is_some(),
        replaced,
        nodes,
        servers: verified.manifest.contents.servers,
        clusters: verified.manifest.contents.clusters,
    })
}

/// Checks the rename on the packed configuration; returns `(from, to)`.
fn plan_rename(verified: &Verified, rename: &NodeRename) -> anyhow::Result<(String, String)> {
    let mut domain = verified.domain.clone();
    let from =
        match &rename.from {
            Some(from) => from.clone(),
            None => {
                let names: Vec<&String> = domain.nodes.keys().collect();
                match names.as_slice() {
                    [only] => (*only).clone(),
                    [] => anyhow::bail!("cannot rename a node: the packed domain has no node"),
                    many => anyhow::bail!(
                    "the packed domain has nodes {}; say which one to rename with --node OLD={}",
                    many.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                    rename.to
                ),
                }
            }
        };
    domain
        .rename_node(&from, &rename.to)
        .map_err(|e| anyhow::anyhow!("cannot rename node `{from}` to `{}`: {e}", rename.to))?;
    Ok((from, rename.to.clone()))
}

/// The packed listen address with the new IP and port put in.
fn new_listen(verified: &Verified, ip: Option<IpAddr>, port: Option<u16>) -> SocketAddr {
    let packed = verified
        .manifest
        .controller
        .listen
        .unwrap_or(DEFAULT_LISTEN);
    SocketAddr::new(ip.unwrap_or(packed.ip()), port.unwrap_or(packed.port()))
}

/// Imports the history into a new store in `dir`, renames the node as one
/// more version, and closes the store; returns the final version and
/// revision.
async fn build_store(
    dir: &Path,
    verified: &Verified,
    renamed: Option<&(String, String)>,
) -> anyhow::Result<(u64, u64)> {
    let path = dir.join(crate::STORE_FILE);
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open_async(&path)
            .await
            .with_context(|| format!("cannot create the store {}", path.display()))?,
    );
    store
        .import(verified.history.clone())
        .await
        .context("cannot load the packed history into the new store")?;
    let mut version = verified.version;
    if let Some((from, to)) = renamed {
        let repo = ConfigRepo::open(store.clone()).await?;
        let author = Author::new(ACTOR, format!("unpack: renamed node {from} to {to}"));
        let ((), committed) = repo
            .edit(author, |domain| domain.rename_node(from, to))
            .await
            .map_err(|e| anyhow::anyhow!("cannot rename node `{from}` to `{to}`: {}", e.message))?;
        version = committed.version;
    }
    let revision = store.current_revision().await?;
    Ok((version, revision))
}

/// What is at the target path before the restore.
enum Target {
    Absent,
    Empty,
    /// Not empty; moved aside on commit (only with `force`).
    Occupied,
}

impl Target {
    fn check(dir: &Path, force: bool) -> anyhow::Result<Target> {
        let mut listing = match std::fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Target::Absent),
            Err(e) if dir.exists() && !dir.is_dir() => {
                anyhow::bail!("{} exists and is not a directory ({e})", dir.display())
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        if listing.next().is_none() {
            return Ok(Target::Empty);
        }
        anyhow::ensure!(
            force,
            "data directory {} is not empty; unpack into a new or empty directory, or pass --force to replace it (the old one is kept beside it)",
            dir.display()
        );
        Ok(Target::Occupied)
    }
}

/// The data directory being built, next to the target so the final rename
/// stays on one file system. Removed on drop unless committed.
struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    fn create(target: &Path) -> anyhow::Result<Staging> {
        let (parent, name) = split(target)?;
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let path = parent.join(format!(".{name}.unpacking-{}", std::process::id()));
        if path.exists() {
            // Left by an earlier unpack of this process id that was killed.
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot clear {}", path.display()))?;
        }
        // 0700: the directory will hold the admin token.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Staging {
            path,
            committed: false,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the built directory into place; returns where a replaced
    /// directory went.
    fn commit(mut self, target: &Path, state: Target) -> anyhow::Result<Option<PathBuf>> {
        crate::fsutil::sync_dir(&self.path)?;
        let (parent, name) = split(target)?;
        let replaced = match state {
            Target::Occupied => {
                let aside = parent.join(format!("{name}.replaced-{}", crate::clock::now_ms()));
                std::fs::rename(target, &aside).with_context(|| {
                    format!(
                        "cannot move {} aside to {}",
                        target.display(),
                        aside.display()
                    )
                })?;
                Some(aside)
            }
            // rename(2) replaces an empty directory.
            Target::Absent | Target::Empty => None,
        };
        std::fs::rename(&self.path, target).with_context(|| {
            format!(
                "cannot move {} to {}",
                self.path.display(),
                target.display()
            )
        })?;
        self.committed = true;
        crate::fsutil::sync_dir(&parent)?;
        Ok(replaced)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: what is left is a hidden temporary directory.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The parent directory and final name of `target`.
fn split(target: &Path) -> anyhow::Result<(PathBuf, String)> {
    let absolute = std::path::absolute(target)
        .with_context(|| format!("cannot resolve {}", target.display()))?;
    let name = absolute
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow::anyhow!("{} does not name a directory", target.display()))?
        .to_string();
    let parent = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
    Ok((parent, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_rename_values() {
        assert_eq!(
            "b".parse::<NodeRename>(),
            Ok(NodeRename {
                from: None,
                to: "b".into()
            })
        );
        assert_eq!(
            "a=b".parse::<NodeRename>(),
            Ok(NodeRename {
                from: Some("a".into()),
                to: "b".into()
            })
        );
        for bad in ["", "a=", "=b"] {
            assert!(bad.parse::<NodeRename>().is_err(), "{bad}");
        }
    }
}
