//! Where the agent keeps things on disk: one directory per server under
//! `<data>/servers/<name>/` holding its log, its pid file, (by default)
//! its working directory and a templated server's instance, plus `<data>/agent.addr`, `<data>/agent.lock`,
//! `<data>/agent.instance` and
//! the local copy of the node's desired state, `<data>/desired-state.json`.
//!
//! Every path the agent touches comes from here, so the on-disk layout is
//! written down in exactly one place; [`write_atomic`] is how the small
//! state files in it are replaced.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The agent's data directory and the paths derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    data_dir: PathBuf,
}

impl Layout {
    pub fn new(data_dir: impl Into<PathBuf>) -> Layout {
        Layout {
            data_dir: data_dir.into(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `<data>/agent.addr`: the bound address of the agent's endpoint.
    pub fn agent_addr(&self) -> PathBuf {
        self.data_dir.join("agent.addr")
    }

    /// `<data>/agent.lock`: held by the running agent (see
    /// [`crate::data_lock`]).
    pub fn agent_lock(&self) -> PathBuf {
        self.data_dir.join("agent.lock")
    }

    /// `<data>/node.key`: the node's private key (mode 0600; see
    /// [`crate::credentials`]).
    pub fn node_key(&self) -> PathBuf {
        self.data_dir.join("node.key")
    }

    /// `<data>/node.crt`: the node's certificate from the domain CA, then
    /// the CA's (mode 0600).
    pub fn node_cert(&self) -> PathBuf {
        self.data_dir.join("node.crt")
    }

    /// `<data>/agent.instance`: the agent's instance id (see
    /// [`crate::instance`]).
    pub fn agent_instance(&self) -> PathBuf {
        self.data_dir.join("agent.instance")
    }

    /// `<data>/desired-state.json`: the last desired state applied for the
    /// node, checksummed (see [`crate::local_copy`]).
    pub fn local_copy(&self) -> PathBuf {
        self.data_dir.join("desired-state.json")
    }

    /// `<data>/servers`: one directory per server ever run here.
    /// What the controller gave for the membership: domain key, settings,
    /// peers (mode 0600: it holds the key).
    pub fn membership(&self) -> PathBuf {
        self.data_dir.join("membership.json")
    }

    pub fn servers_dir(&self) -> PathBuf {
        self.data_dir.join("servers")
    }

    /// `<data>/servers/<name>`. `name` must already be a valid server name
    /// (no `/` or `..`), which the domain rules guarantee.
    pub fn server_dir(&self, name: &str) -> PathBuf {
        self.servers_dir().join(name)
    }

    /// `<data>/servers/<name>/server.log`: stdout and stderr of the server.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.server_dir(name).join("server.log")
    }

    /// `<data>/servers/<name>/server.pid`: the running process, for adoption.
    pub fn pid_path(&self, name: &str) -> PathBuf {
        self.server_dir(name).join("server.pid")
    }

    /// `<data>/servers/<name>/restart-state`: the restart counts and the
    /// pending restart (or failure) of a server with no process, so an
    /// agent restart resumes it where it was.
    pub fn restart_state_path(&self, name: &str) -> PathBuf {
        self.server_dir(name).join("restart-state")
    }

    /// `<data>/servers/<name>/instance`: a templated server's private
    /// instance (Tomcat's CATALINA_BASE, Liberty's user directory); see
    /// [`crate::app_server`].
    pub fn instance_dir(&self, name: &str) -> PathBuf {
        self.server_dir(name).join("instance")
    }

    /// `<data>/servers/<name>/work`: the working directory when the spec
    /// gives none.
    pub fn work_dir(&self, name: &str) -> PathBuf {
        self.server_dir(name).join("work")
    }
}

/// Replaces `path` with `bytes` so that a reader (or an agent starting after
/// a crash or a power loss) sees the old content or the new one, never half
/// of it: write a temporary file beside it, flush it to disk, rename it
/// over, then flush the directory so the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o666)
}

/// [`write_atomic`] for a file only the agent's user may read (a key).
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    // A temporary left by a crash may have another mode: start afresh.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.pid");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["server.pid"]);
    }
}
