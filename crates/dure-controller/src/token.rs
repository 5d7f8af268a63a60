//! The admin token: generated at first start, kept in the data directory
//! with mode 0600.

use anyhow::Context;
use std::path::{Path, PathBuf};

pub const TOKEN_FILE: &str = "admin.token";

/// Loads the admin token, creating it on first start.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let path = data_dir.join(TOKEN_FILE);
    match load(&path) {
        Err(e) if is_not_found(&e) => {}
        loaded => return loaded.map(|token| (token, path)),
    }
    let token = generate()?;
    // Written whole under a temporary name first: a crash never leaves a
    // torn token that would need deleting by hand.
    match crate::fsutil::write_new(&path, format!("{token}\n").as_bytes(), 0o600) {
        Ok(()) => Ok((token, path)),
        // Another controller starting on this directory wrote one first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((load(&path)?, path)),
        Err(e) => {
            Err(e).with_context(|| format!("cannot create admin token file {}", path.display()))
        }
    }
}

fn load(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read admin token {}", path.display()))?;
    parse(&text).map(str::to_string).with_context(|| {
        format!(
            "admin token in {} is not valid: it must be at least 32 visible characters; delete the file to generate a new one",
            path.display()
        )
    })
}

fn is_not_found(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// The token a token file holds, if it holds one: at least 32 visible
/// ASCII characters, around which whitespace is ignored.
pub fn parse(text: &str) -> Option<&str> {
    let token = text.trim();
    (token.len() >= 32 && token.chars().all(|c| c.is_ascii_graphic())).then_some(token)
}

fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the token: {e}"))?;
    Ok(hex::encode(bytes))
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

    #[test]
    fn a_file_without_a_token_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        for bad in ["", "short\n", "0123456789abcdef 0123456789abcdef0123\n"] {
            std::fs::write(&path, bad).unwrap();
            let err = load_or_create(dir.path()).expect_err(bad).to_string();
            assert!(err.contains("delete the file"), "{bad:?}: {err}");
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                bad,
                "kept as it was"
            );
        }
        assert_eq!(
            parse(" 0123456789abcdef0123456789abcdef\n"),
            Some("0123456789abcdef0123456789abcdef")
        );
    }
}
