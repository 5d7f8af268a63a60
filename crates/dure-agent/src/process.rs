//! Operating-system side of one server process: spawning it (argv directly,
//! its own process group, output appended to its log file), recognising it
//! again by pid *and* start time, signalling its whole group, and the pid
//! file that lets a restarted agent adopt it.
//!
//! Safety rule: a pid is only ever signalled when `/proc/<pid>/stat` still
//! shows the start time recorded when it was spawned, so a pid reused by an
//! unrelated process is never hit.

use crate::layout::{write_atomic, Layout};
use dure_core::ServerSpec;
use rustix::io::Errno;
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use tokio::process::{Child, Command};

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("the command is empty")]
    EmptyCommand,
    #[error("cannot start `{program}`: {source}")]
    Start {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("working directory `{dir}` cannot be used: {source}")]
    WorkDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("log file `{path}` cannot be opened: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("started `{program}` as pid {pid} but cannot read /proc/{pid}/stat: {source}")]
    Inspect {
        program: String,
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// A process recognised by pid and kernel start time, which together never
/// repeat on one boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot.
    pub start_time: u64,
}

/// What `/proc` says about a [`ProcessId`] now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Gone, or a zombie waiting to be reaped: it will not run again.
    Exited,
    /// The pid now belongs to a different process.
    Replaced,
}

/// The fields of `/proc/<pid>/stat` the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    pub pgrp: i32,
    pub start_time: u64,
}

impl ProcStat {
    fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may
/// contain spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(5 - 3)?.parse().ok()?,
        start_time: fields.get(22 - 3)?.parse().ok()?,
    })
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub fn read_stat(pid: u32) -> io::Result<Option<ProcStat>> {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => parse_stat(&text).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/stat is not in the expected format"),
            )
        }),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Live (non-zombie) processes whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            matches!(read_stat(*pid), Ok(Some(stat))
                if i64::from(stat.pgrp) == i64::from(pgid) && !stat.is_dead())
        })
        .collect()
}

impl ProcessId {
    /// Identifies the running process `pid`; `None` when it does not exist.
    pub fn of(pid: u32) -> io::Result<Option<ProcessId>> {
        Ok(read_stat(pid)?.map(|stat| ProcessId {
            pid,
            start_time: stat.start_time,
        }))
    }

    pub fn liveness(&self) -> Liveness {
        match read_stat(self.pid) {
            Ok(Some(stat)) if stat.start_time != self.start_time => Liveness::Replaced,
            Ok(Some(stat)) if stat.is_dead() => Liveness::Exited,
            Ok(Some(_)) => Liveness::Alive,
            Ok(None) => Liveness::Exited,
            // /proc is world-readable; if it cannot be read, assuming the
            // process died would start a second copy of the server.
            Err(error) => {
                tracing::warn!(pid = self.pid, %error, "cannot read process state; assuming it is alive");
                Liveness::Alive
            }
        }
    }

    /// Checks that this process can be a server the agent spawned, before
    /// it is adopted from a pid file: every server is spawned as the leader
    /// of its own process group and is only ever signalled through that
    /// group, so anything else (init, the agent itself, a member of another
    /// group) would be adopted and then never stopped.
    pub fn check_server(&self) -> io::Result<()> {
        check_group(self.pid)?;
        match read_stat(self.pid)? {
            Some(stat) if i64::from(stat.pgrp) != i64::from(self.pid) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "pid {} is not the leader of its own process group (its group is {})",
                    self.pid, stat.pgrp
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Sends `signal` to the process group this process leads (the agent
    /// spawns every server as a group leader, so pgid = pid).
    ///
    /// Returns `Ok(false)` without signalling when the pid now belongs to a
    /// different process or when nothing is left of the group. After the
    /// leader is gone, leftover members may still be signalled: the kernel
    /// does not reuse a pid while it is still some group's id.
    pub fn signal_group(&self, signal: i32) -> io::Result<bool> {
        check_group(self.pid)?;
        match read_stat(self.pid)? {
            Some(stat) if stat.start_time != self.start_time => return Ok(false),
            Some(_) => {}
            None if group_members(self.pid).is_empty() => return Ok(false),
            None => {}
        }
        killpg(self.pid, signal)
    }
}

/// Refuses process group ids that are never a server's: `killpg(0)` and
/// `killpg(1)` would hit the agent's own group or init's, and the
/// agent's pid or group is the agent itself.
fn check_group(pgid: u32) -> io::Result<()> {
    if pgid <= 1 || pgid == std::process::id() || pgid == own_group() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}: it is init's or the agent's own"),
        ));
    }
    Ok(())
}

/// The agent's own process group.
fn own_group() -> u32 {
    u32::try_from(rustix::process::getpgrp().as_raw_nonzero().get()).unwrap_or(0)
}

/// `killpg(2)`; `Ok(false)` when the group no longer exists.
fn killpg(pgid: u32, signal: i32) -> io::Result<bool> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    let pgid = i32::try_from(pgid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| invalid("pid out of range"))?;
    let signal = Signal::from_named_raw(signal).ok_or_else(|| invalid("unknown signal number"))?;
    match rustix::process::kill_process_group(pgid, signal) {
        Ok(()) => Ok(true),
        Err(Errno::SRCH) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

/// A freshly spawned server process.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub id: ProcessId,
}

/// Starts `spec`'s server: argv without a shell, the agent's environment
/// plus `spec.env`, in its own process group, stdin from /dev/null, stdout
/// and stderr appended to its log. The child writes the log itself, so it
/// keeps running and logging when the agent dies.
pub fn spawn(layout: &Layout, spec: &ServerSpec) -> Result<Spawned, SpawnError> {
    let dir = working_dir(layout, spec)?;
    let mut child = start(layout, &spec.name, &spec.argv, &spec.env, &dir)?;
    let program = spec.argv.first().cloned().unwrap_or_default();
    // A child that has not been waited for keeps its /proc entry (at worst as
    // a zombie), so its start time can always be read here.
    let pid = child.id().ok_or_else(|| SpawnError::Inspect {
        program: program.clone(),
        pid: 0,
        source: io::Error::other("the child was already reaped"),
    })?;
    let source = match ProcessId::of(pid) {
        Ok(Some(id)) => return Ok(Spawned { child, id }),
        Ok(None) => io::Error::other("no /proc entry"),
        Err(e) => e,
    };
    // Without a start time the process could never be signalled safely;
    // do not leave it running unsupervised.
    let _ = child.start_kill();
    Err(SpawnError::Inspect {
        program,
        pid,
        source,
    })
}

/// Starts a server's stop command with the server's environment, working
/// directory and log, in its own process group.
pub fn spawn_stop_command(
    layout: &Layout,
    spec: &ServerSpec,
    argv: &[String],
) -> Result<Child, SpawnError> {
    let dir = working_dir(layout, spec)?;
    start(layout, &spec.name, argv, &spec.env, &dir)
}

fn start(
    layout: &Layout,
    name: &str,
    argv: &[String],
    env: &BTreeMap<String, String>,
    dir: &Path,
) -> Result<Child, SpawnError> {
    let (program, args) = argv.split_first().ok_or(SpawnError::EmptyCommand)?;
    let log = open_log(&layout.log_path(name))?;
    let log_err = log.try_clone().map_err(|source| SpawnError::Log {
        path: layout.log_path(name),
        source,
    })?;
    Command::new(program)
        .args(args)
        .envs(env)
        .current_dir(dir)
        // Its own group: the agent can signal the server and everything it
        // started at once, and a terminal's Ctrl-C to the agent misses it.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        // Servers outlive the agent: dropping the handle must not kill.
        .kill_on_drop(false)
        .spawn()
        .map_err(|source| SpawnError::Start {
            program: program.clone(),
            source,
        })
}

/// The server's working directory: `spec.dir`, which must exist, or the
/// agent's `<data>/servers/<name>/work`, created on demand.
fn working_dir(layout: &Layout, spec: &ServerSpec) -> Result<PathBuf, SpawnError> {
    match &spec.dir {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            match std::fs::metadata(&dir) {
                Ok(meta) if meta.is_dir() => Ok(dir),
                Ok(_) => Err(SpawnError::WorkDir {
                    dir,
                    source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                }),
                Err(source) => Err(SpawnError::WorkDir { dir, source }),
            }
        }
        None => {
            let dir = layout.work_dir(&spec.name);
            std::fs::create_dir_all(&dir).map_err(|source| SpawnError::WorkDir {
                dir: dir.clone(),
                source,
            })?;
            Ok(dir)
        }
    }
}

/// Opens (creating) a log file in append mode: every write lands at the
/// current end even after a copytruncate rotation shortened the file.
pub fn open_log(path: &Path) -> Result<File, SpawnError> {
    let fail = |source| SpawnError::Log {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)
}

/// How a process ended: its exit code (`None` when killed by a signal) and
/// a short description for `last_error`.
pub fn describe_exit(status: ExitStatus) -> (Option<i32>, String) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (Some(code), format!("exited with code {code}")),
        (None, Some(signal)) => (None, format!("killed by signal {signal}")),
        (None, None) => (None, "exited".to_string()),
    }
}

/// Contents of `<data>/servers/<name>/server.pid`: the process, and what
/// a restarted agent needs to go on reporting it as it was (rewritten,
/// atomically, whenever that changes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidFile {
    pub pid: u32,
    pub start_time: u64,
    /// The desired-state generation the process runs for.
    pub generation: u64,
    /// Restarts by policy since the last start asked for.
    #[serde(default)]
    pub restarts: u32,
    /// Restarts in a row: the restart policy's budget spent.
    #[serde(default)]
    pub streak: u32,
    /// Whether the server was ready (its probe passing).
    #[serde(default)]
    pub ready: bool,
    /// Since when it has been in its state, in ms since the Unix epoch.
    #[serde(default)]
    pub since_ms: u64,
}

impl PidFile {
    pub fn id(&self) -> ProcessId {
        ProcessId {
            pid: self.pid,
            start_time: self.start_time,
        }
    }

    pub fn write(&self, path: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        write_atomic(path, &bytes)
    }

    /// Reads a pid file; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> io::Result<Option<PidFile>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes a pid file; a missing one is fine.
    pub fn remove(path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let text = "4242 (my (odd) server) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10 1";
        assert_eq!(
            parse_stat(text),
            Some(ProcStat {
                state: 'S',
                pgrp: 4242,
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("4242 (x) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_its_own_process() {
        let me = ProcessId::of(std::process::id()).unwrap().unwrap();
        assert_eq!(me.liveness(), Liveness::Alive);
        let other = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert_eq!(other.liveness(), Liveness::Replaced);
        assert!(
            other.signal_group(0).is_err(),
            "never signals its own group"
        );
        let error = me.check_server().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "refusing to signal process group {}: it is init's or the agent's own",
                me.pid
            )
        );
    }

    #[test]
    fn only_a_group_leader_can_be_a_server() {
        use std::os::unix::process::CommandExt;
        let mut member = std::process::Command::new("/bin/sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let mut leader = std::process::Command::new("/bin/sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        let id = |child: &std::process::Child| ProcessId::of(child.id()).unwrap().unwrap();
        assert_eq!(
            id(&member).check_server().unwrap_err().to_string(),
            format!(
                "pid {} is not the leader of its own process group (its group is {})",
                member.id(),
                own_group()
            )
        );
        assert!(id(&leader).check_server().is_ok());
        for child in [&mut member, &mut leader] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn pid_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.pid");
        assert_eq!(PidFile::read(&path).unwrap(), None);
        let file = PidFile {
            pid: 12,
            start_time: 34,
            generation: 5,
            restarts: 2,
            streak: 1,
            ready: true,
            since_ms: 99,
        };
        file.write(&path).unwrap();
        assert_eq!(PidFile::read(&path).unwrap(), Some(file));
        // A pid file of an earlier agent, without the lifecycle fields.
        std::fs::write(&path, br#"{"pid":12,"start_time":34,"generation":5}"#).unwrap();
        let old = PidFile::read(&path).unwrap().unwrap();
        assert_eq!((old.pid, old.restarts, old.ready), (12, 0, false));
        PidFile::remove(&path).unwrap();
        PidFile::remove(&path).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        assert!(PidFile::read(&path).is_err());
    }

    #[test]
    fn describes_exits() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            (Some(3), "exited with code 3".to_string())
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(9)),
            (None, "killed by signal 9".to_string())
        );
    }
}
