//! The controller's shared state: the parts every request handler and
//! operation driver uses, and the few actions they share.

use crate::access::Tokens;
use crate::apps::Apps;
use crate::artifacts::Artifacts;
use crate::audit::AuditLog;
use crate::changesets::ChangeSets;
use crate::config_repo::ConfigRepo;
use crate::desired::DesiredIndex;
use crate::error::ApiResult;
use crate::events::EventLog;
use crate::intents::{Intents, ServerIntent};
use crate::lb_runtime::LbRuntime;
use crate::operations::Operations;
use crate::runtime::Runtime;
use crate::settings::ControllerFile;
use crate::watch::{Topic, ViewIndex};
use dure_core::{Intent, ObservedServer, ServerSpec, ServerState};
use dure_store::Store;
use std::sync::Arc;
use std::time::Duration;

pub struct App {
    pub store: Arc<dyn Store>,
    pub config: ConfigRepo,
    pub intents: Intents,
    pub runtime: Runtime,
    /// What running balancer instances report: observed, in memory only.
    pub lb_runtime: LbRuntime,
    pub events: EventLog,
    pub desired: DesiredIndex,
    /// What blocking reads wait on: moves with every change a read shows.
    pub watch: Arc<ViewIndex>,
    pub operations: Operations,
    /// The bootstrap admin token (`admin.token`).
    pub token: String,
    /// API tokens with roles, and who a presented token is.
    pub tokens: Tokens,
    /// Mutating and denied calls, as JSON lines in the data directory.
    pub audit: AuditLog,
    /// Each caller's staged configuration changes.
    pub changesets: ChangeSets,
    /// Whether a change that does not say `?save=` is saved at once.
    pub auto_save: bool,
    /// The settings this controller runs with, as packed into domain packs.
    pub settings: ControllerFile,
    /// The domain's membership keys, handed to agents at registration and
    /// with every desired-state answer (`membership_key`; a controller
    /// started on a data directory reads them from there, an in-process one
    /// for tests draws its own).
    pub membership_keys: crate::membership_key::DomainKeys,
    /// Uploaded application artifacts, by SHA-256.
    pub artifacts: Artifacts,
    /// Application versions, what each server must have of them and what
    /// agents report having.
    pub apps: Apps,
    /// The domain CA, when this controller holds its key: it signs node
    /// certificates and travels in domain packs with secrets.
    pub ca: Option<Arc<crate::tls::ca::Ca>>,
    /// How long the node certificates it issues are valid.
    pub node_cert_lifetime: Duration,
    /// How the controller calls agents' endpoints (server logs): the
    /// domain CA with its client certificate; `None` without the CA's key
    /// or over plain HTTP, when it cannot call them.
    pub agent_tls: Option<dure_api::ClientTls>,
}

impl App {
    /// Loads everything the controller keeps in `store`.
    pub async fn open(
        store: Arc<dyn Store>,
        token: String,
        heartbeat: Duration,
        settings: ControllerFile,
        audit: AuditLog,
        artifacts: Artifacts,
    ) -> anyhow::Result<App> {
        let revision = store.current_revision().await?;
        let watch = Arc::new(ViewIndex::new(revision));
        // The event log first: the others report unreadable records in it.
        let events = EventLog::open(store.clone(), watch.clone()).await?;
        let operations = Operations::open(store.clone(), watch.clone(), &events).await?;
        let tokens = Tokens::open(store.clone(), token.clone(), &events).await?;
        let apps = Apps::open(store.clone(), &events).await?;
        Ok(App {
            apps,
            artifacts,
            config: ConfigRepo::open(store.clone()).await?,
            intents: Intents::open(store.clone(), &events).await?,
            runtime: Runtime::new(heartbeat, watch.clone()),
            lb_runtime: LbRuntime::new(watch.clone()),
            events,
            desired: DesiredIndex::new(revision),
            operations,
            watch,
            changesets: ChangeSets::new(store.clone()),
            auto_save: settings.auto_save.unwrap_or(false),
            store,
            token,
            tokens,
            audit,
            settings,
            membership_keys: crate::membership_key::DomainKeys::in_memory()?,
            ca: None,
            node_cert_lifetime: crate::tls::ca::NODE_VALIDITY,
            agent_tls: None,
        })
    }

    /// The server's state when it counts as running (alive, or unknown
    /// while asked to run), which a delete must not ignore.
    pub fn server_busy(&self, spec: &ServerSpec) -> Option<ServerState> {
        let state = self.runtime.observed(&spec.node, &spec.name).state;
        let running = self.intents.get(&spec.name).intent == Intent::Run;
        (state.is_alive() || (state == ServerState::Unknown && running)).then_some(state)
    }

    /// Issues an intent for a server (new generation), wakes its agent and
    /// logs who asked.
    pub async fn set_intent(
        &self,
        server: &str,
        intent: Intent,
        actor: &str,
    ) -> ApiResult<ServerIntent> {
        self.set_intent_for(server, intent, actor, None).await
    }

    /// Rebuilds the held intent of `observed`'s server (see
    /// [`crate::intents::Intents::rebuild`]) from its agent's report, and
    /// says so in the event log.
    pub async fn rebuild_intent(&self, node: &str, observed: &ObservedServer, actor: &str) {
        let server = &observed.name;
        let rebuilt = {
            let turn = self.config.writer().await;
            self.intents.rebuild(&turn, server, observed).await
        };
        match rebuilt {
            Ok(None) => {}
            Ok(Some((rebuilt, revision))) => {
                let said = format!(
                    "rebuilt the unreadable intent of server `{server}` from its agent's report ({}): {} (generation {})",
                    observed.state, rebuilt.intent, rebuilt.generation
                );
                self.intent_written(node, server, revision, actor, said)
                    .await;
            }
            // Still held; the next report tries again.
            Err(error) => {
                tracing::warn!(server = %server, error = %error.message, "cannot rebuild the held intent");
            }
        }
    }

    /// What follows a written intent: the node's agent and the servers'
    /// watchers are woken, and the event log says `said`.
    async fn intent_written(
        &self,
        node: &str,
        server: &str,
        revision: u64,
        actor: &str,
        said: String,
    ) {
        self.desired.bump([&node.to_string()], revision);
        self.watch.bump(&[Topic::Servers]);
        self.events
            .record(actor, "intent", &format!("server/{server}"), said)
            .await;
    }

    /// [`App::set_intent`] on behalf of `operation`, the cluster operation
    /// that issues it (recorded with the intent), if one does.
    pub async fn set_intent_for(
        &self,
        server: &str,
        intent: Intent,
        actor: &str,
        operation: Option<&str>,
    ) -> ApiResult<ServerIntent> {
        let (node, issued, revision) = {
            // In the commit turn: no commit can delete the server between
            // the check that it exists and the write of its intent.
            let turn = self.config.writer().await;
            let node = self
                .config
                .read(|d| d.server(server).map(|s| s.node.clone()))?;
            let (issued, revision) = self.intents.set(&turn, server, intent, operation).await?;
            (node, issued, revision)
        };
        if intent == Intent::Run {
            // Back in the balancers' rotation once ready.
            self.lb_runtime.clear_draining(server);
        }
        let by = operation
            .map(|id| format!(", operation `{id}`"))
            .unwrap_or_default();
        let said = format!(
            "asked server `{server}` to {} (generation {}{by})",
            intent.action(),
            issued.generation
        );
        self.intent_written(&node, server, revision, actor, said)
            .await;
        Ok(issued)
    }
}

#[cfg(test)]
mod tests {
    use crate::config_repo::Author;
    use crate::testing::{app_in, populate};
    use axum::http::StatusCode;
    use dure_core::Intent;
    use std::time::Duration;

    #[tokio::test]
    async fn an_intent_waits_for_a_commit_and_never_outlives_its_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        populate(&app).await;
        let turn = app.config.writer().await;
        let pending = tokio::spawn({
            let app = app.clone();
            async move { app.set_intent("web2", Intent::Run, "admin").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !pending.is_finished(),
            "an intent waits for the commit turn"
        );
        turn.edit(Author::new("admin", "delete web2"), |d| {
            d.delete_server("web2").map(|_| ())
        })
        .await
        .expect("deleted");
        drop(turn);
        let err = pending
            .await
            .expect("joined")
            .expect_err("the server is gone");
        assert_eq!(err.status, StatusCode::NOT_FOUND, "{}", err.message);
        assert!(app.store.get("/intents/web2").await.expect("get").is_none());
    }
}
