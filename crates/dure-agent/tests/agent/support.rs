//! Shared test helpers: a sandbox data directory whose processes are all
//! killed when it is dropped (even when the test panics), server specs with
//! fast timings, and bounded waits.

use dure_agent::layout::Layout;
use dure_agent::local_copy::{self, LocalCopy};
use dure_agent::supervisor::Supervisor;
use dure_api::{AgentStatus, Client, DesiredNode, DesiredServer};
use dure_core::{DurationSpec, Intent, ObservedServer, RestartMode, ServerSpec};
pub use dure_testkit::free_port;
use dure_testkit::ProcessMark;
use std::time::{Duration, Instant};

/// A temporary data directory plus a guard for every process started in it.
pub struct Sandbox {
    /// Carried in the environment of every server and test process started
    /// here; dropping it (first, before the directory goes) kills them all,
    /// whatever their pids and process groups were.
    mark: ProcessMark,
    pub dir: tempfile::TempDir,
    pub layout: Layout,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(dir.path());
        Sandbox {
            mark: ProcessMark::new(),
            dir,
            layout,
        }
    }

    /// A server spec with fast probe timings, carrying the sandbox mark.
    pub fn spec(&self, name: &str, argv: &[&str]) -> ServerSpec {
        let mut spec: ServerSpec = serde_json::from_value(serde_json::json!({
            "name": name,
            "node": "n1",
            "argv": argv,
        }))
        .expect("spec");
        let (var, value) = self.mark.env();
        spec.env.insert(var.into(), value.into());
        spec.ready.interval = DurationSpec::from_millis(50);
        spec.ready.timeout = DurationSpec::from_millis(1000);
        spec.ready.start_timeout = DurationSpec::from_secs(20);
        spec.stop.timeout = DurationSpec::from_secs(10);
        spec.restart.mode = RestartMode::Never;
        spec
    }

    /// A `std::process::Command` carrying the sandbox mark.
    pub fn command(&self, program: &str) -> std::process::Command {
        let mut command = std::process::Command::new(program);
        let (var, value) = self.mark.env();
        command.env(var, value);
        command
    }

    /// Pids of live processes carrying this sandbox's mark.
    pub fn marked_processes(&self) -> Vec<u32> {
        self.mark.processes()
    }
}

/// Writes the agent's local copy for node `n1`, as the agent would after
/// applying desired state `index` from a controller.
pub fn save_local_copy(layout: &Layout, index: u64, servers: Vec<DesiredServer>) {
    let copy = LocalCopy {
        node: "n1".into(),
        controller: "http://127.0.0.1:1".into(),
        saved_ms: 1,
        desired: DesiredNode {
            index,
            servers,
            membership_keys: None,
            apps: Vec::new(),
        },
    };
    local_copy::save(&layout.local_copy(), &copy).expect("local copy saved");
}

pub fn desired(spec: &ServerSpec, intent: Intent, generation: u64) -> DesiredServer {
    DesiredServer {
        spec: spec.clone(),
        intent,
        generation,
        files: Default::default(),
    }
}

/// Waits until the supervisor publishes an observation matching `pred`;
/// panics with the last observation after `within`.
pub async fn wait_for(
    supervisor: &Supervisor,
    within: Duration,
    what: &str,
    pred: impl Fn(&ObservedServer) -> bool,
) -> ObservedServer {
    let mut rx = supervisor.subscribe();
    let deadline = Instant::now() + within;
    loop {
        let current = rx.borrow_and_update().clone();
        if pred(&current) {
            return current;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!("timed out waiting for {what}; last observed: {current:?}");
        }
        let _ = tokio::time::timeout(left, rx.changed()).await;
    }
}

/// Polls `check` until it holds; panics after `within`.
pub async fn eventually(within: Duration, what: &str, check: impl Fn() -> bool) {
    dure_testkit::eventually(what, within, || async { check().then_some(()) })
        .await
        .unwrap_or_else(|error| panic!("timed out waiting for {error}"));
}

/// Polls the agent's status until `pred` holds; panics with the last one
/// after [`LONG`].
pub async fn wait_status(
    client: &Client,
    what: &str,
    pred: impl Fn(&AgentStatus) -> bool,
) -> AgentStatus {
    let last = std::sync::Mutex::new(None);
    let found = dure_testkit::eventually(what, LONG, || async {
        let status = client.agent_status().await.expect("status");
        let found = pred(&status).then(|| status.clone());
        *last.lock().unwrap() = Some(status);
        found
    })
    .await;
    found
        .unwrap_or_else(|error| panic!("timed out waiting for {error}: {:?}", last.lock().unwrap()))
}

/// True when no live process is left in process group `pgid`.
pub fn group_gone(pgid: u32) -> bool {
    dure_agent::process::group_members(pgid).is_empty()
}

pub const LONG: Duration = Duration::from_secs(20);
