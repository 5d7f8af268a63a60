//! One agent per data directory. Two agents on the same directory would
//! both adopt the same servers, both restart one that crashed (two copies
//! fighting over its ports) and both rewrite the local copy, so the agent
//! holds an exclusive `flock` on `<data>/agent.lock` while it runs. The
//! kernel drops the lock when the agent exits, however it exits, so a
//! crashed agent never leaves a stale lock behind; the file only records
//! the holder's pid for the error message.

use crate::layout::Layout;
use rustix::fs::FlockOperation;
use rustix::io::Errno;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error(
        "data directory `{dir}` is in use by another agent{}; stop that agent or use another data directory",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Busy { dir: PathBuf, holder: Option<u32> },
    #[error("cannot lock `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The lock on a data directory, held until dropped.
#[derive(Debug)]
pub(crate) struct DataLock {
    _file: File,
}

impl DataLock {
    /// Takes the lock of `layout`'s data directory, or says who holds it.
    pub(crate) fn acquire(layout: &Layout) -> Result<DataLock, LockError> {
        let path = layout.agent_lock();
        let fail = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // Not truncated before it is locked: the holder's pid is in it.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(fail)?;
        match try_lock(&file) {
            Ok(true) => {}
            Ok(false) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Busy {
                    dir: layout.data_dir().to_path_buf(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err(source) => return Err(fail(source)),
        }
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(fail)?;
        Ok(DataLock { _file: file })
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` when another open file holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(Errno::WOULDBLOCK) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_free_again_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let held = DataLock::acquire(&layout).unwrap();
        let error = DataLock::acquire(&layout).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "data directory `{}` is in use by another agent (pid {}); stop that agent or use another data directory",
                dir.path().display(),
                std::process::id()
            )
        );
        drop(held);
        DataLock::acquire(&layout).expect("free once the holder is gone");
    }
}
