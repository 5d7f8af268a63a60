//! `<data>/servers/<name>/restart-state`: what a restarted agent needs of
//! a server that has no process — a restart by policy waiting out its
//! backoff, or a failure — so RESTARTS and the policy's budget survive an
//! agent restart (the pid file does the same for a live process). Written
//! atomically whenever it changes, removed once a process runs again or
//! the server is stopped.

use crate::layout::write_atomic;
use dure_core::lifecycle::Resumption;
use std::io;
use std::path::Path;

/// Writes the record, replacing the one before.
pub(crate) fn write(path: &Path, resumption: &Resumption) -> io::Result<()> {
    let bytes = serde_json::to_vec(resumption).map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Reads the record; `Ok(None)` when there is none.
pub(crate) fn read(path: &Path) -> io::Result<Option<Resumption>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the record; a missing one is fine.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_state_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restart-state");
        assert_eq!(read(&path).unwrap(), None);
        let resumption = Resumption {
            generation: 3,
            restarts: 2,
            streak: 2,
            restart_due_ms: Some(1_000),
            exit_code: Some(1),
            last_error: Some("exited with code 1; restarting in 200ms".into()),
            since_ms: 900,
        };
        write(&path, &resumption).unwrap();
        assert_eq!(read(&path).unwrap(), Some(resumption));
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(read(&path).unwrap_err().kind(), io::ErrorKind::InvalidData);
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert_eq!(read(&path).unwrap(), None);
    }
}
