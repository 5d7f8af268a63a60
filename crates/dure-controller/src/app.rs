//! The controller's shared state: the parts every request handler and
//! operation driver uses, and the few actions they share.

use crate::changesets::ChangeSets;
use crate::config_repo::ConfigRepo;
use crate::desired::DesiredIndex;
use crate::error::ApiResult;
use crate::events::EventLog;
use crate::intents::{Intents, ServerIntent};
use crate::operations::Operations;
use crate::runtime::Runtime;
use dure_core::{Intent, ServerSpec, ServerState};
use dure_store::Store;
use std::sync::Arc;

pub struct App {
    pub store: Arc<dyn Store>,
    pub config: ConfigRepo,
    pub intents: Intents,
    pub runtime: Runtime,
    pub events: EventLog,
    pub desired: DesiredIndex,
    pub operations: Operations,
    pub token: String,
    /// Each caller's staged configuration changes.
    pub changesets: ChangeSets,
    /// Whether a change that does not say `?save=` is saved at once.
    pub auto_save: bool,
    /// The settings this controller runs with, as packed into domain packs.
    pub settings: crate::settings::ControllerFile,
}

impl App {
    /// The server's state when it counts as running (alive, or unknown
    /// while asked to run), which a delete must not ignore.
    pub fn server_busy(&self, spec: &ServerSpec) -> Option<ServerState> {
        let state = self.runtime.observed(&spec.node, &spec.name).state;
        let running = self.intents.get(&spec.name).intent == Intent::Run;
        (state.is_alive() || (state == ServerState::Unknown && running)).then_some(state)
    }

    /// Issues an intent for a server (new generation), wakes its agent and
    /// logs who asked.
    pub fn set_intent(&self, server: &str, intent: Intent, actor: &str) -> ApiResult<ServerIntent> {
        let spec = self.config.read(|d| d.server(server).cloned())?;
        let (issued, revision) = self.intents.set(server, intent)?;
        self.desired.bump([&spec.node], revision);
        let verb = match intent {
            Intent::Run => "start",
            Intent::Stop => "stop",
            Intent::Kill => "kill",
        };
        self.events.record(
            actor,
            "intent",
            &format!("server/{server}"),
            format!(
                "asked server `{server}` to {verb} (generation {})",
                issued.generation
            ),
        );
        Ok(issued)
    }
}
