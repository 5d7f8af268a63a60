//! Child processes of a test: each in its own process group, output to a
//! log file, killed by group and reaped when dropped.

use rustix::process::{Pid, Signal};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long dropping a [`ChildProcess`] waits for the killed process to be
/// reaped, so it does not linger as a zombie of the test.
const REAP: Duration = Duration::from_secs(2);

/// A process started by a test; its whole group is killed on drop.
pub struct ChildProcess {
    child: tokio::process::Child,
    pid: i32,
}

impl ChildProcess {
    pub fn spawn(
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<ChildProcess> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let err = out.try_clone()?;
        let mut command = tokio::process::Command::new(bin);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .env("RUST_LOG", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn()?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| anyhow::anyhow!("spawned process has no pid"))?;
        Ok(ChildProcess { child, pid })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the process to exit on its own; an error when it is still
    /// running after `within` (it is left running).
    pub async fn wait_exit(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => anyhow::bail!("process {} still runs after {within:?}", self.pid),
        }
    }

    /// Whether the process has exited (and was reaped).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn terminate(&mut self, grace: Duration) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            // A pid we spawned and have not reaped (just checked), so it
            // cannot have been reused.
            if let Some(pid) = Pid::from_raw(self.pid) {
                let _ = rustix::process::kill_process(pid, Signal::TERM);
            }
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => {
                self.kill().await;
                anyhow::bail!("process {} ignored SIGTERM for {grace:?}", self.pid)
            }
        }
    }

    /// SIGKILL the process (only the process: servers it spawned live in
    /// their own groups and must survive, as they would in production).
    pub async fn kill(&mut self) {
        // A no-op once it has been reaped.
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Once reaped, its pid (and so its group id) may belong to someone else.
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        kill_group(self.pid);
        let deadline = Instant::now() + REAP;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// SIGKILLs a whole process group; never init's (`pgid` 0 or 1) or the
/// test's own.
pub fn kill_group(pgid: i32) {
    let Some(group) = Pid::from_raw(pgid) else {
        return;
    };
    if pgid > 1 && group != rustix::process::getpgrp() {
        // A group id that no longer exists fails with ESRCH: nothing to do.
        let _ = rustix::process::kill_process_group(group, Signal::KILL);
    }
}

/// Ports handed out by [`free_port`] are taken from below the kernel's
/// ephemeral range (32768 and up on Linux), so an outgoing connection of a
/// test running beside it never takes the port between the check and the
/// bind, as one from `bind(:0)` could.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port that was free a moment ago on 127.0.0.1 and that this process has
/// not handed out before, so two tests of one binary never get the same one.
pub fn free_port() -> u16 {
    free_ports_in_a_row(1)
}

/// The first of `n` consecutive ports (such as `dure up --demo-port`'s),
/// each free a moment ago on every address and none handed out before by
/// this process; all `n` count as handed out.
pub fn free_ports_in_a_row(n: u16) -> u16 {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, RandomState};
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    // A random start spreads test binaries run one after another over the range.
    let span = TEST_PORTS.end - TEST_PORTS.start - n;
    let start = (RandomState::new().hash_one(std::process::id()) % u64::from(span)) as u16;
    let free = |port: u16| {
        !handed_out.contains(&port)
            && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
    };
    let first = (0..span)
        .map(|i| TEST_PORTS.start + (start + i) % span)
        .find(|first| (*first..*first + n).all(free))
        .expect("no free ports on 127.0.0.1 below the ephemeral range");
    handed_out.extend(first..first + n);
    first
}
