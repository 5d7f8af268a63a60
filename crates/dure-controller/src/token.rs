//! The admin token: generated at first start, kept in the data directory
//! with mode 0600.

use anyhow::Context;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const TOKEN_FILE: &str = "admin.token";

/// Loads the admin token, creating it on first start.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim().to_string();
            anyhow::ensure!(
                token.len() >= 32,
                "admin token in {} is too short; delete the file to generate a new one",
                path.display()
            );
            Ok((token, path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = generate()?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create admin token file {}", path.display()))?;
            file.write_all(format!("{token}\n").as_bytes())?;
            file.sync_all()?;
            Ok((token, path))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read admin token {}", path.display())),
    }
}

fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let (token, path) = load_or_create(dir.path()).unwrap();
        assert_eq!(token.len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, _) = load_or_create(dir.path()).unwrap();
        assert_eq!(token, again);
    }
}
