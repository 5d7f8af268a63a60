//! Applications deployed to clusters: the version records
//! (`/app-versions/<cluster>/<version>`, which history and rollback read;
//! housekeeping keeps each cluster's newest `app_versions_kept` and, past
//! them, every one still in use: [`Apps::trim`]), what each server must have staged or installed
//! (`/app-installs/<server>`, the agents' desired state beside their
//! servers', kept in memory and written through), and what agents report
//! having (memory only, like every observed state).
//!
//! A deploy is checked whole before anything is written — context, stored
//! artifact, cluster, members, each member's application directory — and
//! then is one version record and one operation (`OperationKind::Deploy`)
//! that the operation driver carries out member by member.

use crate::app::App;
use crate::artifacts::Artifacts;
use crate::error::{ApiError, ApiResult};
use crate::events::EventLog;
use crate::operations;
use dure_api::{AppInstall, AppMemberView, AppObserved, AppVersionView, AppView, DeployStarted};
use dure_core::application::{check_context, has_app_dir, AppVersion, ArtifactKind};
use dure_core::operation::{OperationKind, OperationOptions};
use dure_store::Store;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

const VERSIONS: &str = "/app-versions/";
const INSTALLS: &str = "/app-installs/";

fn versions_prefix(cluster: &str) -> String {
    format!("{VERSIONS}{cluster}/")
}

fn version_key(cluster: &str, version: u64) -> String {
    // Zero-padded, so the store's key order is the version order.
    format!("{VERSIONS}{cluster}/{version:020}")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps replaced entry by entry: a panic elsewhere cannot tear them.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct Apps {
    store: Arc<dyn Store>,
    /// By server: what it must have, one entry per context.
    installs: Mutex<HashMap<String, Vec<AppInstall>>>,
    /// By server: what its agent last reported having.
    observed: Mutex<HashMap<String, Vec<AppObserved>>>,
    /// Moves whenever a report changes what a server has.
    changed: watch::Sender<u64>,
    /// Held while a version number is chosen and its record written, so
    /// two deploys never take the same number.
    numbering: tokio::sync::Mutex<()>,
}

impl Apps {
    /// Loads what servers must have; a record that cannot be read is
    /// reported (log and event) and left as it is.
    pub async fn open(store: Arc<dyn Store>, events: &EventLog) -> anyhow::Result<Apps> {
        let mut installs = HashMap::new();
        for kv in store.list(INSTALLS).await? {
            let server = kv.key.trim_start_matches(INSTALLS).to_string();
            match serde_json::from_slice::<Vec<AppInstall>>(&kv.value) {
                Ok(list) => {
                    installs.insert(server, list);
                }
                Err(error) => {
                    tracing::error!(server = %server, %error, "unreadable application install record");
                    events
                        .record(
                            "controller",
                            "record",
                            &format!("server/{server}"),
                            format!(
                                "the application install record of server `{server}` is unreadable ({error}); \
                                 its agent gets no application until the next deploy rewrites it"
                            ),
                        )
                        .await;
                }
            }
        }
        Ok(Apps {
            store,
            installs: Mutex::new(installs),
            observed: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            numbering: tokio::sync::Mutex::new(()),
        })
    }

    /// Every version of `cluster`, oldest first.
    pub async fn versions(&self, cluster: &str) -> ApiResult<Vec<AppVersion>> {
        let mut versions = Vec::new();
        for kv in self.store.list(&versions_prefix(cluster)).await? {
            let record = serde_json::from_slice::<AppVersion>(&kv.value).map_err(|e| {
                ApiError::internal(format!(
                    "application version record `{}` is unreadable: {e}",
                    kv.key
                ))
            })?;
            versions.push(record);
        }
        versions.sort_by_key(|v| v.version);
        Ok(versions)
    }

    pub(crate) async fn write_version(&self, record: &AppVersion) -> ApiResult<()> {
        let bytes = serde_json::to_vec(record).map_err(|e| {
            ApiError::internal(format!("cannot encode application version record: {e}"))
        })?;
        self.store
            .put(&version_key(&record.cluster, record.version), &bytes)
            .await?;
        Ok(())
    }

    /// What the servers named must have, for their agent.
    pub fn installs_on<'a>(&self, servers: impl IntoIterator<Item = &'a str>) -> Vec<AppInstall> {
        let installs = lock(&self.installs);
        servers
            .into_iter()
            .filter_map(|server| installs.get(server))
            .flatten()
            .cloned()
            .collect()
    }

    /// Sets what `install.server` must have of `install.context`, written
    /// through to the store, and wakes the agent of `node`.
    pub async fn set_install(&self, app: &App, node: &str, install: AppInstall) -> ApiResult<()> {
        let list = {
            let mut installs = lock(&self.installs);
            let list = installs.entry(install.server.clone()).or_default();
            list.retain(|i| i.context != install.context);
            list.push(install.clone());
            list.sort_by(|a, b| a.context.cmp(&b.context));
            list.clone()
        };
        self.write_installs(app, node, &install.server, &list).await
    }

    /// What `server` must have of `context`, if anything.
    pub fn install_of(&self, server: &str, context: &str) -> Option<AppInstall> {
        lock(&self.installs)
            .get(server)?
            .iter()
            .find(|i| i.context == context)
            .cloned()
    }

    /// Forgets what `server` must have of `context` (a failed first
    /// deploy's staging), written through, and wakes the agent of `node`.
    pub async fn remove_install(
        &self,
        app: &App,
        node: &str,
        server: &str,
        context: &str,
    ) -> ApiResult<()> {
        let list = {
            let mut installs = lock(&self.installs);
            let list = installs.entry(server.to_string()).or_default();
            list.retain(|i| i.context != context);
            list.clone()
        };
        self.write_installs(app, node, server, &list).await
    }

    async fn write_installs(
        &self,
        app: &App,
        node: &str,
        server: &str,
        list: &[AppInstall],
    ) -> ApiResult<()> {
        let bytes = serde_json::to_vec(list).map_err(|e| {
            ApiError::internal(format!("cannot encode application install record: {e}"))
        })?;
        let revision = self
            .store
            .put(&format!("{INSTALLS}{server}"), &bytes)
            .await?;
        app.desired.bump([&node.to_string()], revision);
        Ok(())
    }

    /// Housekeeping: deletes the version records of each cluster but its
    /// newest `kept` (`0` keeps all) — never a context's newest version
    /// nor one whose artifact a member has or must have (installed, staged
    /// or asked for) — and then the stored artifacts that only the deleted
    /// records named (an upload no version names yet is left alone).
    /// Returns how many records and artifacts went.
    pub async fn trim(&self, kept: u64, artifacts: &Artifacts) -> ApiResult<(u64, u64)> {
        if kept == 0 {
            return Ok((0, 0));
        }
        // No deploy takes a number, and so names an artifact, meanwhile.
        let _numbering = self.numbering.lock().await;
        let mut by_cluster: BTreeMap<String, Vec<AppVersion>> = BTreeMap::new();
        for kv in self.store.list(VERSIONS).await? {
            // An unreadable record is left as it is; history reports it.
            if let Ok(record) = serde_json::from_slice::<AppVersion>(&kv.value) {
                by_cluster
                    .entry(record.cluster.clone())
                    .or_default()
                    .push(record);
            }
        }
        let in_use = self.digests_in_use();
        let (mut kept_digests, mut gone_digests) = (BTreeSet::new(), BTreeSet::new());
        let mut versions_deleted = 0;
        for (cluster, mut records) in by_cluster {
            records.sort_by_key(|r| r.version);
            let mut newest: BTreeMap<&str, u64> = BTreeMap::new();
            for record in &records {
                newest.insert(&record.context, record.version);
            }
            let cut = records
                .len()
                .saturating_sub(usize::try_from(kept).unwrap_or(usize::MAX));
            for (index, record) in records.iter().enumerate() {
                let keep = index >= cut
                    || newest.get(record.context.as_str()) == Some(&record.version)
                    || in_use.contains(&record.digest);
                if keep {
                    kept_digests.insert(record.digest.clone());
                    continue;
                }
                self.store
                    .delete(&version_key(&cluster, record.version))
                    .await?;
                versions_deleted += 1;
                gone_digests.insert(record.digest.clone());
            }
        }
        let mut artifacts_deleted = 0;
        for digest in gone_digests.difference(&kept_digests) {
            if artifacts.remove(digest)? {
                artifacts_deleted += 1;
            }
        }
        Ok((versions_deleted, artifacts_deleted))
    }

    /// The digests members have or must have, by their agents' reports and
    /// the install records.
    fn digests_in_use(&self) -> BTreeSet<String> {
        let mut digests: BTreeSet<String> = lock(&self.installs)
            .values()
            .flatten()
            .map(|i| i.digest.clone())
            .collect();
        digests.extend(
            lock(&self.observed)
                .values()
                .flatten()
                .filter_map(|o| o.installed_digest.clone()),
        );
        digests
    }

    /// Takes what an agent reports its servers have.
    pub fn observe(&self, reported: Vec<AppObserved>) {
        let mut by_server: BTreeMap<String, Vec<AppObserved>> = BTreeMap::new();
        for app in reported {
            by_server.entry(app.server.clone()).or_default().push(app);
        }
        let mut changed = false;
        {
            let mut observed = lock(&self.observed);
            for (server, apps) in by_server {
                if observed.get(&server) != Some(&apps) {
                    observed.insert(server, apps);
                    changed = true;
                }
            }
        }
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// What `server`'s agent last reported of `context`.
    pub fn observed(&self, server: &str, context: &str) -> Option<AppObserved> {
        lock(&self.observed)
            .get(server)?
            .iter()
            .find(|a| a.context == context)
            .cloned()
    }

    /// Wakes on every change of what agents report.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// What a deploy or a rollback asks for.
pub struct DeployAsk<'a> {
    pub cluster: &'a str,
    pub context: &'a str,
    pub digest: &'a str,
    pub options: OperationOptions,
    pub actor: &'a str,
    pub rollback_of: Option<u64>,
}

/// Checks a deploy whole, then records the new version and begins the
/// operation installing it. Nothing is written when any check fails.
pub async fn deploy(app: &Arc<App>, ask: DeployAsk<'_>) -> ApiResult<DeployStarted> {
    check_context(ask.context).map_err(|e| ApiError::invalid(e.to_string()))?;
    options_fit(ask.options)?;
    let path = app.artifacts.path(ask.digest).ok_or_else(|| {
        ApiError::invalid(format!(
            "artifact `{}` is not stored in this controller: upload it first (`dure app deploy` does)",
            ask.digest
        ))
    })?;
    let (size, kind) = artifact_facts(&path).await?;
    let cluster = ask.cluster;
    let members = app.config.read(|d| {
        let spec = d.cluster(cluster)?;
        Ok::<_, dure_core::DomainError>(
            spec.members
                .iter()
                .filter_map(|m| d.servers().get(m).cloned())
                .collect::<Vec<_>>(),
        )
    })?;
    if members.is_empty() {
        return Err(ApiError::invalid(format!(
            "cluster `{cluster}` has no members to deploy to: add one with `dure cluster add-member {cluster} SERVER`"
        )));
    }
    if let Some(missing) = members.iter().find(|s| !has_app_dir(s)) {
        return Err(ApiError::invalid(format!(
            "server `{}` of cluster `{cluster}` has no application directory: give it one with \
             `dure server update {} --app-dir DIR`",
            missing.name, missing.name
        )));
    }
    let _numbering = app.apps.numbering.lock().await;
    let version = app
        .apps
        .versions(cluster)
        .await?
        .last()
        .map_or(1, |v| v.version + 1);
    let mut record = AppVersion {
        cluster: cluster.to_string(),
        context: ask.context.to_string(),
        version,
        digest: ask.digest.to_string(),
        size,
        kind,
        created_ms: crate::clock::now_ms(),
        actor: ask.actor.to_string(),
        operation: None,
        rollback_of: ask.rollback_of,
    };
    let operation =
        operations::begin_deploy(app, cluster, ask.options, ask.actor, record.clone()).await?;
    record.operation = Some(operation.id.clone());
    if let Err(error) = app.apps.write_version(&record).await {
        tracing::error!(cluster, version, error = %error.message, "cannot write the application version record");
    }
    let said = match record.rollback_of {
        Some(to) => format!(
            "application `{}` of cluster `{cluster}` rolls back to version {to} as version {version} ({}), operation `{}`",
            record.context,
            short(&record.digest),
            operation.id
        ),
        None => format!(
            "application `{}` of cluster `{cluster}` version {version} ({}, {} bytes) is deployed by operation `{}`",
            record.context,
            short(&record.digest),
            record.size,
            operation.id
        ),
    };
    app.events
        .record(ask.actor, "app", &format!("cluster/{cluster}"), said)
        .await;
    Ok(DeployStarted {
        version: record,
        operation,
    })
}

/// Deploys version `to`'s artifact again, as a new version.
pub async fn rollback(
    app: &Arc<App>,
    cluster: &str,
    to: u64,
    options: OperationOptions,
    actor: &str,
) -> ApiResult<DeployStarted> {
    app.config.read(|d| d.cluster(cluster).map(|_| ()))?;
    let versions = app.apps.versions(cluster).await?;
    let target = versions.iter().find(|v| v.version == to).ok_or_else(|| {
        ApiError::not_found(format!(
            "cluster `{cluster}` has no application version {to}: see `dure app history {cluster}`"
        ))
    })?;
    deploy(
        app,
        DeployAsk {
            cluster,
            context: &target.context,
            digest: &target.digest,
            options,
            actor,
            rollback_of: Some(to),
        },
    )
    .await
}

/// Refuses options a deploy cannot take, before anything is checked
/// further.
fn options_fit(options: OperationOptions) -> ApiResult<()> {
    options
        .check(OperationKind::Deploy)
        .map_err(ApiError::invalid)?;
    if options.parallel || options.continue_on_error {
        return Err(ApiError::invalid(
            "a deploy takes `rolling` and `batch` only",
        ));
    }
    Ok(())
}

/// The size and kind of a stored artifact, read from its file.
async fn artifact_facts(path: &std::path::Path) -> ApiResult<(u64, ArtifactKind)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let unreadable = |e: std::io::Error| {
            ApiError::internal(format!("cannot read artifact {}: {e}", path.display()))
        };
        let mut file = std::fs::File::open(&path).map_err(unreadable)?;
        let size = file.metadata().map_err(unreadable)?.len();
        let mut head = Vec::with_capacity(ArtifactKind::SNIFF_BYTES);
        file.by_ref()
            .take(ArtifactKind::SNIFF_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(unreadable)?;
        let kind = ArtifactKind::sniff(&head).ok_or_else(|| {
            ApiError::internal(format!(
                "stored artifact {} is neither a WAR nor a tar",
                path.display()
            ))
        })?;
        Ok((size, kind))
    })
    .await
    .map_err(|e| ApiError::internal(format!("cannot read an artifact: {e}")))?
}

/// The first 12 digits of a digest, for messages.
pub fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// Every version of `cluster`, newest first, with how its operation went.
pub async fn history(app: &App, cluster: &str) -> ApiResult<Vec<AppVersionView>> {
    app.config.read(|d| d.cluster(cluster).map(|_| ()))?;
    let mut views = Vec::new();
    for record in app.apps.versions(cluster).await?.into_iter().rev() {
        views.push(version_view(app, record).await);
    }
    Ok(views)
}

async fn version_view(app: &App, record: AppVersion) -> AppVersionView {
    let status = match &record.operation {
        Some(id) => app.operations.get(id).await.ok().map(|op| op.status),
        None => None,
    };
    AppVersionView { record, status }
}

/// Each context of `cluster`: its newest version and each member's copy.
pub async fn list(app: &App, cluster: &str) -> ApiResult<Vec<AppView>> {
    let members = app.config.read(|d| {
        d.cluster(cluster).map(|c| {
            c.members
                .iter()
                .filter_map(|m| d.servers().get(m).map(|s| (s.name.clone(), s.node.clone())))
                .collect::<Vec<_>>()
        })
    })?;
    let mut newest: BTreeMap<String, AppVersion> = BTreeMap::new();
    for record in app.apps.versions(cluster).await? {
        newest.insert(record.context.clone(), record);
    }
    let mut views = Vec::new();
    for (context, record) in newest {
        let members = members
            .iter()
            .map(|(server, node)| {
                let observed = app.apps.observed(server, &context);
                AppMemberView {
                    server: server.clone(),
                    node: node.clone(),
                    installed: observed.as_ref().and_then(|o| o.installed),
                    staged: observed.as_ref().and_then(|o| o.staged),
                    error: observed.and_then(|o| o.error),
                }
            })
            .collect();
        views.push(AppView {
            context,
            newest: version_view(app, record).await,
            members,
        });
    }
    Ok(views)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stores a tar artifact whose first bytes are `seed`; its digest.
    async fn stored(app: &App, seed: u8) -> String {
        let mut bytes = vec![0u8; 1024];
        bytes[0] = seed;
        bytes[257..262].copy_from_slice(b"ustar");
        let body = axum::body::Body::from(bytes);
        app.artifacts.store(body).await.expect("stored").digest
    }

    fn record(version: u64, context: &str, digest: &str) -> AppVersion {
        AppVersion {
            cluster: "shop".into(),
            context: context.into(),
            version,
            digest: digest.into(),
            size: 1024,
            kind: ArtifactKind::Dir,
            created_ms: version,
            actor: "admin".into(),
            operation: None,
            rollback_of: None,
        }
    }

    #[tokio::test]
    async fn trimming_keeps_the_newest_every_contexts_current_and_what_members_have() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = crate::testing::app_in(dir.path()).await;
        let mut digests = Vec::new();
        for seed in 1..=5 {
            digests.push(stored(&app, seed).await);
        }
        let [d1, d2, d3, d4, orphan] = &digests[..] else {
            unreachable!("five digests")
        };
        for r in [
            record(1, "/docs", d1), // the newest of /docs
            record(2, "/shop", d2), // web1 still has it
            record(3, "/shop", d3),
            record(4, "/shop", d4),
            record(5, "/shop", d1),
            record(6, "/shop", d4), // the newest
        ] {
            app.apps.write_version(&r).await.expect("written");
        }
        app.apps.observe(vec![AppObserved {
            server: "web1".into(),
            context: "/shop".into(),
            installed: Some(2),
            installed_digest: Some(d2.clone()),
            staged: None,
            error: None,
        }]);
        assert_eq!(
            app.apps.trim(0, &app.artifacts).await.expect("trim"),
            (0, 0)
        );
        assert_eq!(
            app.apps.trim(1, &app.artifacts).await.expect("trim"),
            (3, 1)
        );
        let left: Vec<u64> = app
            .apps
            .versions("shop")
            .await
            .expect("versions")
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(left, [1, 2, 6]);
        // Only d3 was named by deleted versions alone; an upload no
        // version names (a deploy about to use it) stays.
        for (digest, kept) in [
            (d1, true),
            (d2, true),
            (d3, false),
            (d4, true),
            (orphan, true),
        ] {
            assert_eq!(app.artifacts.path(digest).is_some(), kept, "{digest}");
        }
        assert_eq!(
            app.apps.trim(1, &app.artifacts).await.expect("again"),
            (0, 0)
        );
    }

    #[test]
    fn version_keys_sort_as_numbers() {
        assert!(version_key("shop", 9) < version_key("shop", 10));
        assert!(version_key("shop", 10).starts_with(&versions_prefix("shop")));
        assert!(!version_key("shop2", 1).starts_with(&versions_prefix("shop")));
    }
}
