//! Shared test helpers: a sandbox data directory whose processes are all
//! killed when it is dropped (even when the test panics), server specs with
//! fast timings, and bounded waits.

use dure_agent::layout::Layout;
use dure_agent::local_copy::{self, LocalCopy};
use dure_agent::process::{read_stat, ProcessId};
use dure_agent::supervisor::Supervisor;
use dure_api::{DesiredNode, DesiredServer};
use dure_core::{DurationSpec, Intent, ObservedServer, RestartMode, ServerSpec};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Environment variable every test server carries, so the sandbox can find
/// and kill all of them (and their children) whatever their pids were.
const MARK_VAR: &str = "DURE_AGENT_TEST_MARK";

/// A temporary data directory plus a guard for every process started in it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub layout: Layout,
    mark: String,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(dir.path());
        let mark = format!(
            "{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        Sandbox { dir, layout, mark }
    }

    /// A server spec with fast probe timings, carrying the sandbox mark.
    pub fn spec(&self, name: &str, argv: &[&str]) -> ServerSpec {
        let mut spec: ServerSpec = serde_json::from_value(serde_json::json!({
            "name": name,
            "node": "n1",
            "argv": argv,
        }))
        .expect("spec");
        spec.env.insert(MARK_VAR.into(), self.mark.clone());
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
        command.env(MARK_VAR, &self.mark);
        command
    }

    /// Pids of live processes carrying this sandbox's mark.
    pub fn marked_processes(&self) -> Vec<u32> {
        let needle = format!("{MARK_VAR}={}", self.mark);
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
                    .unwrap_or(false)
            })
            .filter(|pid| matches!(read_stat(*pid), Ok(Some(stat)) if stat.state != 'Z'))
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for _ in 0..3 {
            let pids = self.marked_processes();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                if let Ok(Some(id)) = ProcessId::of(pid) {
                    let _ = id.signal_group(libc::SIGKILL);
                }
                kill(pid);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[allow(unsafe_code)]
fn kill(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill takes two integers; the pid carries our mark.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Writes the agent's local copy for node `n1`, as the agent would after
/// applying desired state `index` from a controller.
pub fn save_local_copy(layout: &Layout, index: u64, servers: Vec<DesiredServer>) {
    let copy = LocalCopy {
        node: "n1".into(),
        controller: "http://127.0.0.1:1".into(),
        saved_ms: 1,
        desired: DesiredNode { index, servers },
    };
    local_copy::save(&layout.local_copy(), &copy).expect("local copy saved");
}

pub fn desired(spec: &ServerSpec, intent: Intent, generation: u64) -> DesiredServer {
    DesiredServer {
        spec: spec.clone(),
        intent,
        generation,
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

/// Polls `check` every 20 ms until it holds; panics after `within`.
pub async fn eventually(within: Duration, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// True when no live process is left in process group `pgid`.
pub fn group_gone(pgid: u32) -> bool {
    dure_agent::process::group_members(pgid).is_empty()
}

pub const LONG: Duration = Duration::from_secs(20);
