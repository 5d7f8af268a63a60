//! The agent's instance id: 128 random bits in hex, drawn the first time an
//! agent starts on a data directory and kept in `<data>/agent.instance`.
//! The controller lets one instance own a node while it is live, so the id
//! must name "the agent of this data directory": the same agent restarted
//! (after a crash, an upgrade, `kill -9`) is the same instance and gets its
//! node back at once, while a second agent on another data directory is
//! another instance and is refused. One agent per data directory is
//! already the data lock's rule, so two live agents never share an id.

use crate::layout::{write_atomic, Layout};
use std::io;
use std::path::PathBuf;

/// Why the instance id could not be read or made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InstanceError {
    #[error("cannot read the agent instance id `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot save the agent instance id `{path}`: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot draw a random agent instance id: {0}")]
    Random(String),
}

/// Returns the data directory's instance id, making one when there is none
/// or the file does not hold one (then this agent is a new instance).
pub(crate) fn load_or_create(layout: &Layout) -> Result<String, InstanceError> {
    let path = layout.agent_instance();
    match std::fs::read_to_string(&path) {
        Ok(text) if is_instance_id(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => tracing::warn!(
            path = %path.display(),
            "the agent instance id file holds no id; this agent starts as a new instance"
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(InstanceError::Read { path, source }),
    }
    let id = random_id()?;
    write_atomic(&path, format!("{id}\n").as_bytes())
        .map_err(|source| InstanceError::Write { path, source })?;
    Ok(id)
}

fn random_id() -> Result<String, InstanceError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| InstanceError::Random(e.to_string()))?;
    Ok(format!("{:032x}", u128::from_be_bytes(bytes)))
}

fn is_instance_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_random_id_per_data_directory_kept_across_starts() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = load_or_create(&Layout::new(a.path())).unwrap();
        assert!(is_instance_id(&first), "{first}");
        assert_eq!(load_or_create(&Layout::new(a.path())).unwrap(), first);
        assert_ne!(load_or_create(&Layout::new(b.path())).unwrap(), first);
    }

    #[test]
    fn a_file_without_an_id_makes_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::write(layout.agent_instance(), "not an id\n").unwrap();
        let id = load_or_create(&layout).unwrap();
        assert!(is_instance_id(&id), "{id}");
        let saved = std::fs::read_to_string(layout.agent_instance()).unwrap();
        assert_eq!(saved.trim(), id);
    }
}
