//! A mark in the environment of every process a test starts. Children
//! inherit their parent's environment, so the servers an agent spawns, the
//! stop commands it runs and anything those start in turn carry the mark
//! too, whatever process group or session they end up in and whether or
//! not a pid file still names them. [`ProcessMark::kill_all`] finds every
//! live process carrying it and kills each one.
//!
//! A process is signalled through a pidfd opened before its mark is read:
//! if its pid is reused in between, the signal goes to the process that was
//! checked (already gone) and never to the newcomer.

use rustix::process::{Pid, PidfdFlags, Signal};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that carries the mark.
const MARK_VAR: &str = "DURE_TEST_MARK";

/// How long [`ProcessMark::kill_all`] keeps sweeping: a process may fork
/// while the sweep runs, and a child forked then carries the mark too.
const SWEEP: Duration = Duration::from_secs(5);

/// A mark unique to one test sandbox, in this test process and across
/// every other one on the machine. Dropping it kills every process that
/// carries it.
#[derive(Debug)]
pub struct ProcessMark {
    value: String,
}

impl Default for ProcessMark {
    fn default() -> Self {
        ProcessMark::new()
    }
}

impl ProcessMark {
    pub fn new() -> ProcessMark {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        ProcessMark {
            value: format!(
                "{}-{}-{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// The variable and value to put in the environment of a process the
    /// test starts.
    pub fn env(&self) -> (&'static str, &str) {
        (MARK_VAR, &self.value)
    }

    /// Live (not zombie) processes carrying this mark.
    pub fn processes(&self) -> Vec<u32> {
        self.probe().processes()
    }

    /// A probe for this mark's processes that outlives the mark: how a
    /// test checks that dropping it left nothing behind.
    pub fn probe(&self) -> MarkProbe {
        MarkProbe {
            needle: self.needle(),
        }
    }

    /// Kills every process carrying this mark, sweeping again until none
    /// is left or [`SWEEP`] has passed; returns the pids still alive then.
    pub fn kill_all(&self) -> Vec<u32> {
        let needle = self.needle();
        let deadline = Instant::now() + SWEEP;
        loop {
            for pid in pids() {
                kill_if_marked(pid, &needle);
            }
            let left = self.processes();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn needle(&self) -> Vec<u8> {
        format!("{MARK_VAR}={}", self.value).into_bytes()
    }
}

impl Drop for ProcessMark {
    fn drop(&mut self) {
        let left = self.kill_all();
        if !left.is_empty() {
            eprintln!(
                "marked processes still alive after {SWEEP:?}: {left:?} ({MARK_VAR}={})",
                self.value
            );
        }
    }
}

/// Finds the live processes carrying one [`ProcessMark`]; it kills nothing.
#[derive(Debug, Clone)]
pub struct MarkProbe {
    needle: Vec<u8>,
}

impl MarkProbe {
    /// Live (not zombie) processes carrying the mark.
    pub fn processes(&self) -> Vec<u32> {
        pids()
            .into_iter()
            .filter(|pid| carries(*pid, &self.needle))
            .collect()
    }
}

/// Every pid in `/proc`.
fn pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether `pid`'s environment holds `needle` (`VAR=value`). A zombie's
/// environment reads as empty, so zombies never carry a mark.
fn carries(pid: u32, needle: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle))
}

/// SIGKILLs `pid` if it carries the mark.
fn kill_if_marked(pid: u32, needle: &[u8]) {
    // Pins the process before its mark is read (see the module docs).
    let Some(pidfd) = pidfd_open(pid) else {
        return;
    };
    if carries(pid, needle) {
        pidfd_kill(&pidfd);
    }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()
}

fn pidfd_kill(pidfd: &OwnedFd) {
    // A process that already exited fails with ESRCH: nothing to do then.
    let _ = rustix::process::pidfd_send_signal(pidfd, Signal::KILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_marked_processes_and_their_children_and_nothing_else() {
        let mark = ProcessMark::new();
        let (var, value) = mark.env();
        // A shell whose child leaves for its own session: only the mark
        // still ties it to the test.
        let mut marked = std::process::Command::new("/bin/sh")
            .args(["-c", "setsid sleep 60 & sleep 60"])
            .env(var, value)
            .spawn()
            .unwrap();
        let mut bystander = std::process::Command::new("/bin/sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while mark.processes().len() < 3 {
            assert!(Instant::now() < deadline, "{:?}", mark.processes());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(mark.kill_all(), Vec::<u32>::new());
        assert!(marked.wait().is_ok());
        assert!(mark.processes().is_empty());
        assert!(bystander.try_wait().unwrap().is_none(), "not marked");
        bystander.kill().unwrap();
        bystander.wait().unwrap();
    }
}
