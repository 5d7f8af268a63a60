//! The link to the controller: register, long-poll the node's desired
//! state into the supervisors, and report every server's observed state on
//! each change and at least once per heartbeat interval. Every report also
//! says where the agent's own endpoint is (as the registration does), so a
//! controller that restarted can reach it again without a new registration,
//! and this node's membership view; a change of the view is reported at
//! once. The registration's answer hands the membership its setup (domain
//! key, settings, peers).
//!
//! The controller being away changes nothing for the servers: they keep
//! running as last told, and the agent keeps retrying with a capped
//! backoff, warning once per outage. When the controller has not answered
//! for [`MISSED_HEARTBEATS`] heartbeat intervals (at start: before the
//! first registration) the agent enters INDEPENDENT mode and runs its
//! servers from the local copy; a controller that accepts connections but
//! never answers counts as away too, because each report gets no longer
//! than that to be answered. When the controller answers again the agent
//! reports the drift, applies the current desired state and is MANAGED
//! again (see [`crate::node_state`]).
//!
//! Two answers end the link for good ([`LinkError`]): the controller
//! refusing this agent because another instance of the node's agent is live
//! (409; two agents of one node would fight over its servers), and the
//! controller refusing the token while there is no desired state to run
//! from. A refused token with a desired state to run from makes the agent
//! INDEPENDENT at once; the refusal is logged once a minute meanwhile. The
//! agent touches no server on either: it only stops talking.

use crate::membership::Membership;
use crate::node_state::NodeState;
use dure_api::{AgentHello, AgentReport, Client, ClientError};
use dure_core::state::MISSED_HEARTBEATS;
use dure_core::DurationSpec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long one desired-state long poll blocks at the controller.
const POLL_WAIT: Duration = Duration::from_secs(30);
/// How long the desired-state fetch on return may block; any index passes
/// 0, so it answers at once.
const RESYNC_WAIT: Duration = Duration::from_secs(1);
/// Used when the welcome gives no heartbeat interval, and before the first one.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// The shortest heartbeat the agent keeps, whatever the controller says:
/// reports must not become a busy loop.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// How often a refused token is logged again while the agent retries.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Why the agent cannot go on: answers of the controller after which
/// retrying would never help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Another instance of the node's agent is live (409).
    #[error(
        "controller {controller} refused this agent of node `{node}`: {message}; \
         stop that agent first, or give this one another --node"
    )]
    AnotherAgent {
        controller: String,
        node: String,
        /// The controller's message: where the live agent is, since when.
        message: String,
    },
    /// The token was refused and there is no desired state to run from.
    #[error(
        "controller {controller} refused the agent's token ({message}): {token_source}; \
         there is no local copy of node `{node}`'s desired state to run from meanwhile"
    )]
    TokenRefused {
        controller: String,
        node: String,
        token_source: String,
        message: String,
    },
}

/// Whether the controller answers, with one log line per outage (a refused
/// token: one a minute).
#[derive(Debug)]
pub(crate) struct Link {
    node: String,
    controller: String,
    /// What the operator can do about refused credentials ("give the
    /// agent the controller's admin token with --token", "join again …").
    token_source: String,
    reachable: AtomicBool,
    /// The kind of problem last logged and when; `None` while the link is fine.
    problem: Mutex<Option<(Problem, Instant)>>,
    /// When the controller last answered; `None` before it ever has.
    last_answer: Mutex<Option<Instant>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Unreachable,
    /// The controller's certificate is not trusted (or it does not speak
    /// TLS): like a refused token, it does not end by itself.
    Untrusted,
    Unauthorized,
    UnknownNode,
    Refused,
}

impl Problem {
    fn of(error: &ClientError) -> Problem {
        match error {
            ClientError::Unreachable { .. } => Problem::Unreachable,
            ClientError::Untrusted { .. } => Problem::Untrusted,
            ClientError::Auth { .. } => Problem::Unauthorized,
            e if e.status() == Some(404) => Problem::UnknownNode,
            _ => Problem::Refused,
        }
    }

    /// How long until the same problem is logged again; `None`: once per
    /// outage. A refused token is not an outage that ends by itself, so
    /// it is repeated for whoever reads the log later.
    fn repeat_after(self) -> Option<Duration> {
        matches!(self, Problem::Unauthorized | Problem::Untrusted).then_some(REFUSAL_LOG_INTERVAL)
    }
}

impl Link {
    pub(crate) fn new(node: &str, controller: &str, token_source: &str) -> Link {
        Link {
            node: node.to_string(),
            controller: controller.to_string(),
            token_source: token_source.to_string(),
            reachable: AtomicBool::new(false),
            problem: Mutex::new(None),
            last_answer: Mutex::new(None),
        }
    }

    pub(crate) fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn up(&self) {
        self.reachable.store(true, Ordering::Relaxed);
        *self.last_answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let mut problem = self.problem.lock().unwrap_or_else(|p| p.into_inner());
        if problem.take().is_some() {
            tracing::info!("controller reachable again");
        }
    }

    /// How long the controller has not answered; zero before it ever has
    /// (until the first registration the grace of
    /// [`ControllerSync::connect`] applies instead).
    fn silent_for(&self) -> Duration {
        self.last_answer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map_or(Duration::ZERO, |at| at.elapsed())
    }

    /// Why the agent is INDEPENDENT when the controller refused its token.
    fn token_refused(&self) -> String {
        format!(
            "controller {} refused the agent's token; {}",
            self.controller, self.token_source
        )
    }

    /// The end of the link for `error`, when retrying cannot help;
    /// `has_desired`: whether there is a desired state to run from.
    fn fatal(&self, error: &ClientError, has_desired: bool) -> Option<LinkError> {
        match error {
            ClientError::Api {
                status: 409,
                message,
                ..
            } => Some(LinkError::AnotherAgent {
                controller: self.controller.clone(),
                node: self.node.clone(),
                message: message.clone(),
            }),
            ClientError::Auth { .. } if !has_desired => Some(LinkError::TokenRefused {
                controller: self.controller.clone(),
                node: self.node.clone(),
                token_source: self.token_source.clone(),
                message: error.to_string(),
            }),
            _ => None,
        }
    }

    fn down(&self, error: &ClientError) {
        self.reachable.store(false, Ordering::Relaxed);
        let kind = Problem::of(error);
        let mut problem = self.problem.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((logged, at)) = *problem {
            let again = kind
                .repeat_after()
                .is_some_and(|after| at.elapsed() >= after);
            if logged == kind && !again {
                return;
            }
        }
        *problem = Some((kind, Instant::now()));
        let node = self.node.as_str();
        match kind {
            Problem::Unreachable => {
                tracing::warn!(%error, "controller unreachable; servers keep running, retrying")
            }
            Problem::Unauthorized => tracing::error!(
                node,
                %error,
                "{}; servers keep running, retrying",
                self.token_refused()
            ),
            Problem::Untrusted => tracing::error!(
                node,
                %error,
                "cannot trust the controller; servers keep running, retrying (give the domain's CA with --ca FILE or DURE_CA)"
            ),
            Problem::UnknownNode => tracing::error!(
                node,
                %error,
                "controller does not know this node; registering again"
            ),
            Problem::Refused => tracing::warn!(%error, "controller refused a request, retrying"),
        }
    }
}

/// Exponential retry delay, capped.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(FIRST_RETRY)
    }
    fn reset(&mut self) {
        self.0 = FIRST_RETRY;
    }
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(MAX_RETRY);
    }
}

/// What the sync task needs.
pub(crate) struct ControllerSync {
    pub(crate) client: Client,
    pub(crate) hello: AgentHello,
    pub(crate) state: Arc<NodeState>,
    pub(crate) link: Arc<Link>,
    pub(crate) membership: Arc<Membership>,
}

/// Why a loop handed control back.
enum Interrupted {
    /// The controller does not know the node: register again.
    Reregister,
    /// The controller has not answered for too long: run independently.
    Lost,
    /// The controller refused the token: run independently at once.
    TokenRefused,
    /// Retrying cannot help.
    Fatal(LinkError),
}

impl ControllerSync {
    /// Runs until aborted or until the controller gives an answer that
    /// ends the link (logged here, returned for the agent's owner).
    pub(crate) async fn run(self) -> LinkError {
        let error = self.run_until_fatal().await;
        tracing::error!(node = self.node(), "{error}");
        error
    }

    async fn run_until_fatal(&self) -> LinkError {
        let mut backoff = Backoff::new();
        let mut heartbeat = DEFAULT_HEARTBEAT;
        loop {
            heartbeat = match self.connect(heartbeat * MISSED_HEARTBEATS).await {
                Ok(heartbeat) => heartbeat,
                Err(fatal) => return fatal,
            };
            let mut index = None;
            if self.state.is_independent() {
                match self.resync().await {
                    Ok(current) => index = Some(current),
                    Err(error) => {
                        if let Some(fatal) = self.link.fatal(&error, true) {
                            return fatal;
                        }
                        self.link.down(&error);
                        backoff.wait().await;
                        continue;
                    }
                }
            }
            let interrupted = tokio::select! {
                r = self.poll_desired(index, heartbeat) => r,
                r = self.report(heartbeat) => r,
            };
            match interrupted {
                Interrupted::Lost => {
                    let why = format!(
                        "the controller cannot be reached: no answer for {}",
                        DurationSpec(Duration::from_secs(self.link.silent_for().as_secs()))
                    );
                    self.state.enter_independent(&why);
                }
                // The registration that follows ends the link when there is
                // nothing to run from.
                Interrupted::TokenRefused => {}
                // Do not spin if the controller keeps accepting the
                // registration and then not knowing the node.
                Interrupted::Reregister => backoff.wait().await,
                Interrupted::Fatal(fatal) => return fatal,
            }
        }
    }

    /// Registers until it works; returns the heartbeat interval to use. When
    /// that takes longer than `grace`, the agent enters INDEPENDENT mode
    /// meanwhile (a registration that hangs counts too).
    async fn connect(&self, grace: Duration) -> Result<Duration, LinkError> {
        if self.state.is_independent() {
            return self.register().await;
        }
        let give_up = async {
            tokio::time::sleep(grace).await;
            let why = format!(
                "the controller cannot be reached: cannot register for {}",
                DurationSpec(grace)
            );
            self.state.enter_independent(&why);
            std::future::pending::<Result<Duration, LinkError>>().await
        };
        tokio::select! {
            registered = self.register() => registered,
            never = give_up => never,
        }
    }

    /// Back from INDEPENDENT mode: fetches the current desired state,
    /// reports what drifted, applies it and leaves INDEPENDENT mode.
    /// Returns the index applied; on an error the agent stays independent.
    async fn resync(&self) -> Result<u64, ClientError> {
        let current = self.client.desired(self.node(), 0, RESYNC_WAIT).await?;
        let drift = self.state.drift(&current);
        for line in &drift {
            tracing::info!(drift = %line, "drift while independent");
        }
        let lines = drift.len();
        let report = self.report_of(drift);
        self.client.report(self.node(), &report).await?;
        self.link.up();
        self.state.heard(report.servers);
        let index = current.index;
        self.state.apply(current);
        self.state.leave_independent(index, lines);
        Ok(index)
    }

    /// Handles a failed request; `Lost` once the controller has not
    /// answered for `lost_after`.
    fn failed(&self, error: &ClientError, lost_after: Duration) -> Option<Interrupted> {
        // Reports and polls come after a desired state was applied, so a
        // refused token here is never fatal by itself.
        if let Some(fatal) = self.link.fatal(error, true) {
            return Some(Interrupted::Fatal(fatal));
        }
        self.link.down(error);
        match error {
            ClientError::Auth { .. } => return Some(Interrupted::TokenRefused),
            e if e.status() == Some(404) => return Some(Interrupted::Reregister),
            _ => {}
        }
        (self.link.silent_for() >= lost_after).then_some(Interrupted::Lost)
    }

    fn node(&self) -> &str {
        &self.hello.node
    }

    /// The node's report, with where the agent's endpoint is and its
    /// version as in the registration: a controller that restarted learns
    /// them from it without the agent registering again.
    fn report_of(&self, drift: Vec<String>) -> AgentReport {
        AgentReport {
            peers: Some(self.membership.peers()),
            ..with_endpoint(self.state.report(drift), &self.hello)
        }
    }

    /// Registers until it works; returns the heartbeat interval to use, or
    /// why retrying cannot help. A refused token with a desired state to
    /// run from makes the agent INDEPENDENT at once.
    async fn register(&self) -> Result<Duration, LinkError> {
        let mut backoff = Backoff::new();
        loop {
            match self.client.register(&self.hello).await {
                Ok(welcome) => {
                    self.link.up();
                    if let Some(setup) = welcome.membership {
                        self.membership.setup(setup);
                    }
                    let heartbeat = heartbeat_interval(welcome.heartbeat_interval_ms);
                    tracing::info!(
                        node = self.node(),
                        controller = self.client.base_url(),
                        heartbeat_ms = u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX),
                        "registered with controller"
                    );
                    return Ok(heartbeat);
                }
                Err(error) => {
                    if let Some(fatal) = self.link.fatal(&error, self.state.has_desired()) {
                        return Err(fatal);
                    }
                    self.link.down(&error);
                    if matches!(error, ClientError::Auth { .. }) {
                        self.state.enter_independent(&self.link.token_refused());
                    }
                    backoff.wait().await;
                }
            }
        }
    }

    /// Long-polls the node's desired state into the registry, from `index`
    /// (`None`: fetch and apply the current one first).
    async fn poll_desired(&self, mut index: Option<u64>, heartbeat: Duration) -> Interrupted {
        let lost_after = heartbeat * MISSED_HEARTBEATS;
        let mut backoff = Backoff::new();
        loop {
            match self
                .client
                .desired(self.node(), index.unwrap_or(0), POLL_WAIT)
                .await
            {
                Ok(mut desired) => {
                    self.link.up();
                    backoff.reset();
                    // Every answer carries the keys (a rotation moves them
                    // without a change of the servers); never kept in the
                    // local copy.
                    if let Some(keys) = desired.membership_keys.take() {
                        self.membership.set_keys(keys);
                    }
                    if index != Some(desired.index) {
                        tracing::debug!(
                            index = desired.index,
                            servers = desired.servers.len(),
                            "desired state changed"
                        );
                        index = Some(desired.index);
                        self.state.apply(desired);
                    }
                }
                Err(error) => {
                    if let Some(interrupted) = self.failed(&error, lost_after) {
                        return interrupted;
                    }
                    backoff.wait().await;
                }
            }
        }
    }

    /// Reports on every change and at least every `heartbeat`.
    async fn report(&self, heartbeat: Duration) -> Interrupted {
        let lost_after = heartbeat * MISSED_HEARTBEATS;
        let mut changes = self.state.subscribe();
        let mut peers_changed = self.membership.subscribe();
        let mut apps_changed = self.state.subscribe_apps();
        let mut backoff = Backoff::new();
        loop {
            changes.borrow_and_update();
            peers_changed.borrow_and_update();
            apps_changed.borrow_and_update();
            let report = self.report_of(Vec::new());
            let sent = self.client.report(self.node(), &report);
            // The report is the heartbeat: one that hangs (a stopped
            // controller still accepts connections) must not hold off
            // INDEPENDENT mode for the client's whole request timeout.
            let answer = tokio::time::timeout(lost_after, sent)
                .await
                .unwrap_or_else(|_| Err(self.no_answer(lost_after)));
            match answer {
                Ok(()) => {
                    self.link.up();
                    self.state.heard(report.servers);
                    backoff.reset();
                    tokio::select! {
                        changed = changes.changed() => {
                            // A change goes out at once (operations wait on it);
                            // changes made while a report is in flight ride in
                            // the next one.
                            if changed.is_err() {
                                tokio::time::sleep(heartbeat).await;
                            }
                        }
                        // The controller's events of joins and failures
                        // follow the view without waiting for a heartbeat.
                        changed = peers_changed.changed() => {
                            if changed.is_err() {
                                tokio::time::sleep(heartbeat).await;
                            }
                        }
                        changed = apps_changed.changed() => {
                            if changed.is_err() {
                                tokio::time::sleep(heartbeat).await;
                            }
                        }
                        () = tokio::time::sleep(heartbeat) => {}
                    }
                }
                Err(error) => {
                    if let Some(interrupted) = self.failed(&error, lost_after) {
                        return interrupted;
                    }
                    backoff.wait().await;
                }
            }
        }
    }

    /// The error of a request that got no answer in `within`.
    fn no_answer(&self, within: Duration) -> ClientError {
        ClientError::Unreachable {
            url: self.client.base_url().to_string(),
            reason: format!("no answer within {}", DurationSpec(within)),
        }
    }
}

/// `report` with the endpoint and version of `hello`.
fn with_endpoint(report: AgentReport, hello: &AgentHello) -> AgentReport {
    AgentReport {
        address: Some(hello.address.clone()),
        agent_port: Some(hello.agent_port),
        version: Some(hello.version.clone()),
        instance_id: hello.instance_id.clone(),
        membership_port: hello.membership_port,
        ..report
    }
}

/// The heartbeat interval a welcome asks for: the default when it gives
/// none, and never below [`MIN_HEARTBEAT`].
fn heartbeat_interval(interval_ms: u64) -> Duration {
    match interval_ms {
        0 => DEFAULT_HEARTBEAT,
        ms => Duration::from_millis(ms).max(MIN_HEARTBEAT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_says_where_the_agent_is() {
        let hello = AgentHello {
            node: "n1".into(),
            address: "10.0.0.5".into(),
            agent_port: 7001,
            version: "1.2.3".into(),
            instance_id: Some("0af3".into()),
            membership_port: None,
        };
        let report = AgentReport {
            servers: Vec::new(),
            mode: Some(dure_api::AgentMode::Managed),
            independent_since_ms: None,
            drift: vec!["line".into()],
            address: None,
            agent_port: None,
            version: None,
            instance_id: None,
            membership_port: None,
            peers: None,
            apps: Vec::new(),
        };
        let sent = with_endpoint(report.clone(), &hello);
        assert_eq!(sent.address.as_deref(), Some("10.0.0.5"));
        assert_eq!(sent.agent_port, Some(7001));
        assert_eq!(sent.version.as_deref(), Some("1.2.3"));
        assert_eq!(sent.instance_id.as_deref(), Some("0af3"));
        assert_eq!((sent.mode, &sent.drift), (report.mode, &report.drift));
    }

    fn link() -> Link {
        Link::new(
            "n1",
            "http://127.0.0.1:7070",
            "give the agent the controller's admin token with --token",
        )
    }

    fn refused_token() -> ClientError {
        ClientError::Auth {
            status: 401,
            message: "the bearer token is not the admin token".into(),
        }
    }

    #[test]
    fn another_live_agent_ends_the_link_with_the_controllers_message() {
        let conflict = ClientError::Api {
            status: 409,
            code: "conflict".into(),
            message: "node `n1` has a live agent at 127.0.0.1:7001 since 06:00:00".into(),
        };
        for has_desired in [false, true] {
            let fatal = link().fatal(&conflict, has_desired).expect("fatal");
            assert!(matches!(fatal, LinkError::AnotherAgent { .. }));
            assert_eq!(
                fatal.to_string(),
                "controller http://127.0.0.1:7070 refused this agent of node `n1`: node `n1` has a \
                 live agent at 127.0.0.1:7001 since 06:00:00; stop that agent first, or give this \
                 one another --node"
            );
        }
    }

    #[test]
    fn a_refused_token_ends_the_link_only_with_nothing_to_run_from() {
        let fatal = link().fatal(&refused_token(), false).expect("fatal");
        assert!(matches!(fatal, LinkError::TokenRefused { .. }));
        let text = fatal.to_string();
        for part in [
            "http://127.0.0.1:7070",
            "refused the agent's token",
            "--token",
        ] {
            assert!(text.contains(part), "{text}");
        }
        assert_eq!(link().fatal(&refused_token(), true), None);
    }

    #[test]
    fn other_failures_are_retried() {
        let unreachable = ClientError::Unreachable {
            url: "http://127.0.0.1:7070".into(),
            reason: "connection refused".into(),
        };
        let unknown = ClientError::Api {
            status: 404,
            code: "not_found".into(),
            message: "no node".into(),
        };
        for error in [unreachable, unknown] {
            assert_eq!(link().fatal(&error, false), None, "{error}");
        }
    }

    #[test]
    fn a_refused_token_is_logged_again_only_after_a_minute() {
        let link = link();
        link.down(&refused_token());
        let first = link.problem.lock().unwrap().expect("logged").1;
        link.down(&refused_token());
        assert_eq!(
            link.problem.lock().unwrap().expect("logged").1,
            first,
            "not logged again at once"
        );
        let long_ago = Instant::now() - REFUSAL_LOG_INTERVAL;
        link.problem.lock().unwrap().as_mut().expect("logged").1 = long_ago;
        link.down(&refused_token());
        assert!(link.problem.lock().unwrap().expect("logged").1 > long_ago);
        assert_eq!(Problem::Unreachable.repeat_after(), None, "once per outage");
    }

    #[test]
    fn the_heartbeat_is_the_controllers_within_bounds() {
        assert_eq!(heartbeat_interval(0), DEFAULT_HEARTBEAT);
        assert_eq!(heartbeat_interval(250), Duration::from_millis(250));
        assert_eq!(heartbeat_interval(1), MIN_HEARTBEAT);
        assert_eq!(
            heartbeat_interval(u64::MAX),
            Duration::from_millis(u64::MAX)
        );
    }
}
