//! The domain's membership key: 32 random bytes (hex) created with the
//! domain, at the controller's first start, kept in
//! `<data>/membership.key` with mode 0600 and handed to every agent in the
//! answer to its registration. Agents authenticate every membership
//! datagram with it.

use anyhow::Context;
use std::path::Path;

pub const KEY_FILE: &str = "membership.key";

/// Loads the key, creating it on first start.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => return parse(&text, &path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let key = generate()?;
    match crate::fsutil::write_new(&path, format!("{key}\n").as_bytes(), 0o600) {
        Ok(()) => Ok(key),
        // Another controller starting on this directory wrote one first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            parse(&text, &path)
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// A new key: 32 random bytes as hex.
pub fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the membership key: {e}"))?;
    Ok(hex::encode(bytes))
}

fn parse(text: &str, path: &Path) -> anyhow::Result<String> {
    let key = text.trim();
    let valid = key.len() >= 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
    anyhow::ensure!(
        valid,
        "membership key in {} is not valid: it must be at least 32 bytes as hex; restore it from another controller's data directory or delete it to create a new one (agents take the new one at their next registration)",
        path.display()
    );
    Ok(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = load_or_create(dir.path()).expect("created");
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create(dir.path()).expect("read"), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_key_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(KEY_FILE), "short\n").expect("write");
        let error = load_or_create(dir.path()).expect_err("refused");
        assert!(error.to_string().contains("is not valid"), "{error}");
    }
}
