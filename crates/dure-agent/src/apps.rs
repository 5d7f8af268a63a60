//! Application installs (`dure app deploy`): what the node's desired state
//! says each server must have of its applications, carried out in the
//! server's application directory, and what each server has, for reports.
//!
//! For one context (installed as `<app_dir>/<name>`, `name` by Tomcat's
//! naming: `ROOT`, `shop`, `a#b`) a version is first *staged*: fetched from
//! the controller into `<app_dir>/.dure/tmp/`, its size and SHA-256 checked
//! against the desired state as it streams (a mismatch leaves nothing),
//! then a WAR kept as a file and a directory's tar unpacked, and renamed to
//! `<app_dir>/.dure/staged/<name>@<digest>`. Once *activated* (the
//! controller has stopped the server), what is installed — `<name>` or
//! `<name>.war` — is moved to `<app_dir>/.dure/previous/<name>/` and the
//! staged copy renamed into place; a WAR is installed as `<name>.war` for
//! the server to expand, a directory as `<name>/`. Everything is renamed
//! within the application directory, so no copy is ever seen half written.
//! The previous copy is what a rollback to that version installs again
//! without fetching it. `<data>/servers/<server>/apps/<name>.json` records
//! the installed version (written atomically after the rename).
//!
//! The directory is the server's `app_dir`, else a Tomcat's `webapps`
//! ([`crate::app_server::app_dir`]); a server with neither gets an error
//! naming it. The generated `server.xml` tells Tomcat to ignore `.dure`.

use crate::layout::{write_atomic, Layout};
use dure_api::{AppFailure, AppInstall, AppObserved, Client, DesiredNode};
use dure_core::application::{dir_name, ArtifactKind};
use dure_core::ServerSpec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// Where the agent keeps staged, previous and partial copies, inside the
/// application directory (same file system, so renames are atomic).
pub const WORK_DIR: &str = ".dure";

/// What the node's desired state asks for.
#[derive(Debug, Clone, Default)]
struct Wanted {
    installs: Vec<AppInstall>,
    specs: HashMap<String, ServerSpec>,
}

/// The record of what is installed for one context of one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Installed {
    version: u64,
    digest: String,
    kind: ArtifactKind,
    /// What was installed before, kept under `.dure/previous/<name>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<Box<Installed>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A map replaced entry by entry: a panic elsewhere cannot tear it.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) struct Deployer {
    layout: Layout,
    client: Client,
    wanted: watch::Sender<Wanted>,
    /// By (server, context).
    observed: Mutex<BTreeMap<(String, String), AppObserved>>,
    changed: watch::Sender<u64>,
}

impl Deployer {
    pub(crate) fn new(layout: Layout, client: Client) -> Arc<Deployer> {
        Arc::new(Deployer {
            layout,
            client,
            wanted: watch::channel(Wanted::default()).0,
            observed: Mutex::new(BTreeMap::new()),
            changed: watch::channel(0).0,
        })
    }

    /// Takes the applications of a newly applied desired state.
    pub(crate) fn want(&self, desired: &DesiredNode) {
        let wanted = Wanted {
            installs: desired.apps.clone(),
            specs: desired
                .servers
                .iter()
                .map(|s| (s.spec.name.clone(), s.spec.clone()))
                .collect(),
        };
        self.wanted.send_replace(wanted);
    }

    /// What each server has of the applications asked for.
    pub(crate) fn observed(&self) -> Vec<AppObserved> {
        lock(&self.observed).values().cloned().collect()
    }

    /// Wakes when what a server has changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Carries out each desired state's applications, one after another.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut wanted = self.wanted.subscribe();
        loop {
            let now = wanted.borrow_and_update().clone();
            for install in &now.installs {
                let observed = self
                    .reconcile(install, now.specs.get(&install.server))
                    .await;
                self.set_observed(observed);
            }
            if wanted.changed().await.is_err() {
                return;
            }
        }
    }

    fn set_observed(&self, observed: AppObserved) {
        let key = (observed.server.clone(), observed.context.clone());
        let changed = {
            let mut map = lock(&self.observed);
            let changed = map.get(&key) != Some(&observed);
            map.insert(key, observed);
            changed
        };
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    fn record_path(&self, server: &str, name: &str) -> PathBuf {
        self.layout
            .server_dir(server)
            .join("apps")
            .join(format!("{name}.json"))
    }

    /// Stages and, when asked, installs one version; returns what the
    /// server has of the context afterwards.
    async fn reconcile(&self, install: &AppInstall, spec: Option<&ServerSpec>) -> AppObserved {
        let name = dir_name(&install.context);
        let record_path = self.record_path(&install.server, &name);
        let record = read_record(&record_path);
        let known = record.as_ref().ok().and_then(Option::as_ref);
        let mut observed = AppObserved {
            server: install.server.clone(),
            context: install.context.clone(),
            installed: known.map(|r| r.version),
            installed_digest: known.map(|r| r.digest.clone()),
            staged: None,
            error: None,
        };
        let fail = |mut observed: AppObserved, message: String| {
            tracing::warn!(server = %install.server, context = %install.context, version = install.version, "{message}");
            observed.error = Some(AppFailure {
                version: install.version,
                message,
            });
            observed
        };
        let record = match record {
            Ok(record) => record,
            Err(message) => return fail(observed, message),
        };
        if record
            .as_ref()
            .is_some_and(|r| r.version == install.version)
        {
            return observed;
        }
        let Some(spec) = spec else {
            return fail(
                observed,
                format!("server `{}` is not on this node", install.server),
            );
        };
        let Some(app_dir) = crate::app_server::app_dir(&self.layout, spec) else {
            return fail(
                observed,
                format!(
                    "server `{}` has no application directory: give it one with `dure server update {} --app-dir DIR`",
                    spec.name, spec.name
                ),
            );
        };
        if let Err(message) = self.instance_made(spec).await {
            return fail(observed, message);
        }
        let places = Places::new(&app_dir, &name, install);
        // The same bytes already installed: nothing to fetch or move.
        let same = record.as_ref().filter(|r| r.digest == install.digest);
        if same.is_none() {
            if let Err(message) = self.stage(install, &places, record.as_ref()).await {
                return fail(observed, message);
            }
        }
        observed.staged = Some(install.version);
        if !install.activate {
            return observed;
        }
        let installed = match same {
            Some(same) => Ok(Installed {
                version: install.version,
                ..same.clone()
            }),
            None => {
                let places = places.clone();
                let previous = record.clone();
                let kind = install.kind;
                let (version, digest) = (install.version, install.digest.clone());
                tokio::task::spawn_blocking(move || {
                    places.activate(kind)?;
                    Ok(Installed {
                        version,
                        digest,
                        kind,
                        previous: previous.map(|mut p| {
                            p.previous = None;
                            Box::new(p)
                        }),
                    })
                })
                .await
                .unwrap_or_else(|e| Err(format!("the install task failed: {e}")))
            }
        };
        let installed = match installed {
            Ok(installed) => installed,
            Err(message) => return fail(observed, message),
        };
        if let Err(message) = write_record(&record_path, &installed) {
            return fail(observed, message);
        }
        tracing::info!(server = %install.server, context = %install.context, version = install.version, "application installed");
        observed.installed = Some(installed.version);
        observed.installed_digest = Some(installed.digest);
        observed.staged = None;
        observed
    }

    /// Makes the instance of a templated server whose applications go
    /// into its instance (a Tomcat's `webapps`) when its first start has
    /// not yet: the instance is made into an empty directory only.
    async fn instance_made(&self, spec: &ServerSpec) -> Result<(), String> {
        if spec.app_dir.is_some() || spec.template.is_none() {
            return Ok(());
        }
        let (layout, spec) = (self.layout.clone(), spec.clone());
        tokio::task::spawn_blocking(move || {
            crate::app_server::prepare(&layout, &spec, &std::collections::BTreeMap::new())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("the instance task failed: {e}"))?
    }

    /// Puts the version's copy at its staged place: from the previous copy
    /// when that is the same artifact, else fetched and checked.
    async fn stage(
        &self,
        install: &AppInstall,
        places: &Places,
        record: Option<&Installed>,
    ) -> Result<(), String> {
        if places.staged.exists() {
            return Ok(());
        }
        let places_for_dirs = places.clone();
        tokio::task::spawn_blocking(move || places_for_dirs.prepare())
            .await
            .map_err(|e| format!("the staging task failed: {e}"))??;
        let previous = record
            .and_then(|r| r.previous.as_deref())
            .filter(|p| p.digest == install.digest && p.kind == install.kind);
        if previous.is_some() {
            let from = places
                .previous_dir
                .join(install.kind.installed_name(&places.name));
            if from.exists() {
                return std::fs::rename(&from, &places.staged).map_err(|e| {
                    format!("cannot stage the previous copy {}: {e}", from.display())
                });
            }
        }
        self.fetch(install, &places.part).await?;
        let places = places.clone();
        let kind = install.kind;
        tokio::task::spawn_blocking(move || places.unpack(kind))
            .await
            .map_err(|e| format!("the unpack task failed: {e}"))?
    }

    /// Downloads the artifact to `part`, checking its size and SHA-256 as
    /// it comes; on any failure `part` is gone.
    async fn fetch(&self, install: &AppInstall, part: &Path) -> Result<(), String> {
        let fetched = self.fetch_into(install, part).await;
        if fetched.is_err() {
            let _ = tokio::fs::remove_file(part).await;
        }
        fetched
    }

    async fn fetch_into(&self, install: &AppInstall, part: &Path) -> Result<(), String> {
        let short = install.digest.get(..12).unwrap_or(&install.digest);
        let mut download = self
            .client
            .artifact(&install.digest)
            .await
            .map_err(|e| format!("cannot fetch artifact {short} from the controller: {e}"))?;
        let mut file = tokio::fs::File::create(part)
            .await
            .map_err(|e| format!("cannot create {}: {e}", part.display()))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = download
            .chunk()
            .await
            .map_err(|e| format!("fetching artifact {short} was cut short: {e}"))?
        {
            size += chunk.len() as u64;
            if size > install.size {
                return Err(format!(
                    "artifact {short} from the controller is larger than its {} bytes; nothing installed",
                    install.size
                ));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        }
        let digest = hex::encode(hasher.finalize());
        if digest != install.digest || size != install.size {
            return Err(format!(
                "artifact {short} failed its checksum: the controller sent {size} bytes with SHA-256 {digest}, \
                 expected {} bytes with {}; nothing installed",
                install.size, install.digest
            ));
        }
        file.sync_all()
            .await
            .map_err(|e| format!("cannot sync {}: {e}", part.display()))
    }
}

/// The paths of one version of one context in an application directory.
#[derive(Debug, Clone)]
struct Places {
    app_dir: PathBuf,
    name: String,
    work: PathBuf,
    /// The download, before it is checked.
    part: PathBuf,
    /// A directory's archive being unpacked.
    unpacking: PathBuf,
    staged: PathBuf,
    previous_dir: PathBuf,
}

impl Places {
    fn new(app_dir: &Path, name: &str, install: &AppInstall) -> Places {
        let work = app_dir.join(WORK_DIR);
        let id = format!("{name}@{}", install.digest);
        Places {
            app_dir: app_dir.to_path_buf(),
            name: name.to_string(),
            part: work.join("tmp").join(format!("{id}.part")),
            unpacking: work.join("tmp").join(format!("{id}.d")),
            staged: work.join("staged").join(&id),
            previous_dir: work.join("previous").join(name),
            work,
        }
    }

    /// Creates the work directories and drops other staged copies of the
    /// context (of versions no longer asked for).
    fn prepare(&self) -> Result<(), String> {
        for dir in [self.work.join("tmp"), self.work.join("staged")] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let prefix = format!("{}@", self.name);
        if let Ok(entries) = std::fs::read_dir(self.work.join("staged")) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    remove_any(&entry.path())?;
                }
            }
        }
        Ok(())
    }

    /// Turns a checked download into the staged copy.
    fn unpack(&self, kind: ArtifactKind) -> Result<(), String> {
        let staged = match kind {
            ArtifactKind::War => std::fs::rename(&self.part, &self.staged)
                .map_err(|e| format!("cannot stage {}: {e}", self.staged.display())),
            ArtifactKind::Dir => {
                remove_any(&self.unpacking)?;
                let unpacked = std::fs::File::open(&self.part)
                    .map_err(|e| e.to_string())
                    .and_then(|file| {
                        tar::Archive::new(file)
                            .unpack(&self.unpacking)
                            .map_err(|e| e.to_string())
                    })
                    .map_err(|e| format!("cannot unpack the application's archive: {e}"));
                let _ = std::fs::remove_file(&self.part);
                unpacked.and_then(|()| {
                    std::fs::rename(&self.unpacking, &self.staged)
                        .map_err(|e| format!("cannot stage {}: {e}", self.staged.display()))
                })
            }
        };
        if staged.is_err() {
            let _ = remove_any(&self.unpacking);
            let _ = std::fs::remove_file(&self.part);
        }
        staged
    }

    /// Moves what is installed to the previous copy and the staged copy
    /// into its place.
    fn activate(&self, kind: ArtifactKind) -> Result<(), String> {
        remove_any(&self.previous_dir)?;
        std::fs::create_dir_all(&self.previous_dir)
            .map_err(|e| format!("cannot create {}: {e}", self.previous_dir.display()))?;
        for installed in [
            ArtifactKind::Dir.installed_name(&self.name),
            ArtifactKind::War.installed_name(&self.name),
        ] {
            let path = self.app_dir.join(&installed);
            if std::fs::symlink_metadata(&path).is_ok() {
                std::fs::rename(&path, self.previous_dir.join(&installed))
                    .map_err(|e| format!("cannot move {} aside: {e}", path.display()))?;
            }
        }
        let target = self.app_dir.join(kind.installed_name(&self.name));
        std::fs::rename(&self.staged, &target)
            .map_err(|e| format!("cannot install {}: {e}", target.display()))?;
        std::fs::File::open(&self.app_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| format!("cannot sync {}: {e}", self.app_dir.display()))
    }
}

/// Removes a file or a directory tree; nothing there is fine.
fn remove_any(path: &Path) -> Result<(), String> {
    let removed = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    };
    removed.map_err(|e| format!("cannot remove {}: {e}", path.display()))
}

fn read_record(path: &Path) -> Result<Option<Installed>, String> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("the install record {} is unreadable: {e}", path.display())),
    }
}

fn write_record(path: &Path, installed: &Installed) -> Result<(), String> {
    let bytes = serde_json::to_vec(installed)
        .map_err(|e| format!("cannot encode the install record: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    write_atomic(path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install(digest: &str, kind: ArtifactKind) -> AppInstall {
        AppInstall {
            server: "web1".into(),
            context: "/shop".into(),
            version: 2,
            digest: digest.into(),
            size: 0,
            kind,
            activate: true,
        }
    }

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, path, text.as_bytes())
                .expect("append");
        }
        builder.into_inner().expect("tar")
    }

    #[test]
    fn a_staged_copy_replaces_the_installed_one_keeping_it_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app_dir = dir.path().join("webapps");
        std::fs::create_dir_all(app_dir.join("shop")).expect("old");
        std::fs::write(app_dir.join("shop/index.html"), "v1").expect("old file");
        let places = Places::new(&app_dir, "shop", &install("d2", ArtifactKind::Dir));
        places.prepare().expect("prepare");
        std::fs::write(&places.part, tar_of(&[("index.html", "v2")])).expect("part");
        places.unpack(ArtifactKind::Dir).expect("unpacked");
        assert!(!places.part.exists());
        places.activate(ArtifactKind::Dir).expect("activated");
        assert_eq!(
            std::fs::read_to_string(app_dir.join("shop/index.html")).expect("new"),
            "v2"
        );
        assert_eq!(
            std::fs::read_to_string(places.previous_dir.join("shop/index.html")).expect("kept"),
            "v1"
        );
        assert!(!places.staged.exists());

        // A WAR of the same context replaces the directory (which a server
        // would otherwise keep serving) and keeps it aside.
        let war = Places::new(&app_dir, "shop", &install("d3", ArtifactKind::War));
        war.prepare().expect("prepare");
        std::fs::write(&war.part, b"PK\x03\x04war").expect("part");
        war.unpack(ArtifactKind::War).expect("staged");
        war.activate(ArtifactKind::War).expect("activated");
        assert!(app_dir.join("shop.war").is_file());
        assert!(!app_dir.join("shop").exists());
        assert!(war.previous_dir.join("shop/index.html").is_file());
    }

    #[test]
    fn a_bad_archive_leaves_nothing_staged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let places = Places::new(dir.path(), "ROOT", &install("d4", ArtifactKind::Dir));
        places.prepare().expect("prepare");
        std::fs::write(&places.part, b"not a tar at all").expect("part");
        let refused = places.unpack(ArtifactKind::Dir).expect_err("refused");
        assert!(refused.contains("cannot unpack"), "{refused}");
        assert!(!places.staged.exists() && !places.part.exists() && !places.unpacking.exists());
    }

    #[test]
    fn install_records_read_back_and_a_damaged_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("apps/shop.json");
        assert_eq!(read_record(&path), Ok(None));
        let record = Installed {
            version: 3,
            digest: "ab".into(),
            kind: ArtifactKind::War,
            previous: Some(Box::new(Installed {
                version: 2,
                digest: "cd".into(),
                kind: ArtifactKind::Dir,
                previous: None,
            })),
        };
        write_record(&path, &record).expect("written");
        assert_eq!(read_record(&path), Ok(Some(record)));
        std::fs::write(&path, b"{").expect("damaged");
        assert!(read_record(&path)
            .expect_err("damaged")
            .contains("unreadable"));
    }
}
