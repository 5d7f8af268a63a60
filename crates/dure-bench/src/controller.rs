//! The controller under measurement: a real `dure controller` process in a
//! process group of its own, on loopback with a free port and a fresh data
//! directory, and what `/proc` says about it (CPU time and resident memory).
//! Dropping it kills its process group, so no run leaves it behind.

use anyhow::Context;
use rustix::process::{kill_process_group, Pid, Signal};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the controller may take to write its address file.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Controller {
    child: Child,
    /// Written beside the data directory while the controller runs.
    pid_file: Option<PathBuf>,
    pub url: String,
    pub token: String,
    pub log: PathBuf,
}

impl Controller {
    /// Starts `dure controller` on `data` (created here) with a 1 s
    /// heartbeat and changes saved at once, and waits until it listens.
    pub fn start(dure: &Path, data: &Path) -> anyhow::Result<Controller> {
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create {}", data.display()))?;
        let log = data.with_extension("log");
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(dure)
            .arg("controller")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--heartbeat",
                "1s",
                "--auto-save",
                // The simulated fleet measures the controller, not TLS
                // handshakes of thousands of clients on one loopback host.
                "--insecure-http",
            ])
            .arg("--data")
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", dure.display()))?;
        let mut controller = Controller {
            child,
            pid_file: None,
            url: String::new(),
            token: String::new(),
            log,
        };
        // For the script that started the benchmark: the group to kill if
        // this process is killed before it can.
        if let Some(parent) = data.parent() {
            let pid_file = parent.join("controller.pid");
            std::fs::write(&pid_file, controller.pid().to_string())
                .context("cannot write the controller's pid file")?;
            controller.pid_file = Some(pid_file);
        }
        let addr_file = data.join("controller.addr");
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                if !text.trim().is_empty() {
                    break text.trim().to_string();
                }
            }
            if let Some(status) = controller.child.try_wait()? {
                anyhow::bail!(
                    "the controller exited with {status} before listening; see {}",
                    controller.log.display()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the controller did not listen within {START_TIMEOUT:?}; see {}",
                controller.log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let token = std::fs::read_to_string(data.join("admin.token"))
            .context("cannot read the controller's admin token")?;
        controller.url = format!("http://{addr}");
        controller.token = token.trim().to_string();
        Ok(controller)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User plus system CPU time the controller used so far, in clock ticks
    /// (fields 14 and 15 of `/proc/PID/stat`).
    pub fn cpu_ticks(&self) -> anyhow::Result<u64> {
        cpu_ticks_of(&format!("/proc/{}/stat", self.pid()))
    }

    /// Resident memory (`VmRSS`) in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .with_context(|| format!("{path} has no VmRSS line"))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(group) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process_group(group, Signal::KILL);
        }
        let _ = self.child.wait();
        if let Some(pid_file) = &self.pid_file {
            let _ = std::fs::remove_file(pid_file);
        }
    }
}

/// CPU time of the process whose `stat` file is `path`, in clock ticks.
pub fn cpu_ticks_of(path: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields after its closing one, where field 3 comes first.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path} is not a stat file"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path} has no field {n}"))
    };
    Ok(field(14)? + field(15)?)
}

/// Clock ticks per second, the unit of [`cpu_ticks_of`].
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}
