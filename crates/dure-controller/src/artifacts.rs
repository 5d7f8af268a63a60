//! The artifact store: uploaded applications kept content-addressed under
//! `<data>/artifacts/sha256/<digest>`, where agents fetch them to install.
//!
//! An upload streams to a temporary file in `<data>/artifacts/tmp/`,
//! hashed as it is written and never held whole in memory; only a complete
//! upload within the size limit whose first bytes say WAR (zip) or tar is
//! fsynced and renamed to its digest's name (with the directory fsynced),
//! so a refused, cut or oversized upload leaves nothing behind and a
//! stored artifact is always whole. The same bytes uploaded twice are one
//! file.

use crate::error::{ApiError, ApiResult};
use dure_api::ArtifactStored;
use dure_core::application::{is_digest, ArtifactKind};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The largest artifact accepted unless the controller is told otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;

pub struct Artifacts {
    dir: PathBuf,
    max_bytes: u64,
}

impl Artifacts {
    /// Artifacts under `<data_dir>/artifacts`, each at most `max_bytes`.
    pub fn new(data_dir: &Path, max_bytes: u64) -> Artifacts {
        Artifacts {
            dir: data_dir.join("artifacts"),
            max_bytes,
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where artifact `digest` is stored, if it is a digest and is stored.
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        if !is_digest(digest) {
            return None;
        }
        let path = self.dir.join("sha256").join(digest);
        path.is_file().then_some(path)
    }

    /// Deletes stored artifact `digest` (housekeeping, once no version
    /// names it); returns whether there was one.
    pub fn remove(&self, digest: &str) -> ApiResult<bool> {
        let Some(path) = self.path(digest) else {
            return Ok(false);
        };
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(internal(&path, "delete", &e)),
        }
    }

    /// The refusal of an upload that says it is `length` bytes long, when
    /// that is over the limit: answered before a byte of it is read.
    pub fn refuse_length(&self, length: Option<u64>) -> ApiResult<()> {
        match length {
            Some(length) if length > self.max_bytes => Err(self.too_large()),
            _ => Ok(()),
        }
    }

    fn too_large(&self) -> ApiError {
        ApiError::too_large(format!(
            "the artifact is larger than {} bytes, the most this controller stores \
             (controller setting artifact_max_bytes)",
            self.max_bytes
        ))
    }

    /// Stores the body of an upload; see the module doc for what is
    /// refused. An oversized body is refused as soon as it passes the limit.
    pub async fn store(&self, body: axum::body::Body) -> ApiResult<ArtifactStored> {
        let tmp_dir = self.dir.join("tmp");
        let sha_dir = self.dir.join("sha256");
        for dir in [&tmp_dir, &sha_dir] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| internal(dir, "create", &e))?;
        }
        let tmp = tmp_dir.join(format!("{}.part", random_name()?));
        let received = self.receive(body, &tmp).await;
        let stored = match received {
            Ok(received) => self.keep(&tmp, &sha_dir, received).await,
            Err(refusal) => Err(refusal),
        };
        if stored.is_err() {
            // Nothing of a refused upload stays.
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        stored
    }

    /// Writes the body to `tmp`, hashing it; refuses it once it passes the
    /// limit.
    async fn receive(&self, mut body: axum::body::Body, tmp: &Path) -> ApiResult<Received> {
        let mut file = tokio::fs::File::create(tmp)
            .await
            .map_err(|e| internal(tmp, "create", &e))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut head = Vec::with_capacity(ArtifactKind::SNIFF_BYTES);
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::invalid(format!("the upload was cut short: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            size += data.len() as u64;
            if size > self.max_bytes {
                // Read on (bounded) so the client sees the refusal, not a reset.
                crate::api::drain(body).await;
                return Err(self.too_large());
            }
            if head.len() < ArtifactKind::SNIFF_BYTES {
                let take = (ArtifactKind::SNIFF_BYTES - head.len()).min(data.len());
                head.extend_from_slice(&data[..take]);
            }
            hasher.update(&data);
            file.write_all(&data)
                .await
                .map_err(|e| internal(tmp, "write", &e))?;
        }
        let kind = ArtifactKind::sniff(&head).ok_or_else(|| {
            ApiError::invalid(
                "the upload is neither a WAR (zip) file nor a tar of an application directory",
            )
        })?;
        file.sync_all()
            .await
            .map_err(|e| internal(tmp, "sync", &e))?;
        Ok(Received {
            digest: hex::encode(hasher.finalize()),
            size,
            kind,
        })
    }

    /// Renames a received upload to its digest's name (an artifact already
    /// stored under it stays, the copy goes).
    async fn keep(&self, tmp: &Path, sha_dir: &Path, got: Received) -> ApiResult<ArtifactStored> {
        let path = sha_dir.join(&got.digest);
        if path.is_file() {
            let _ = tokio::fs::remove_file(tmp).await;
        } else {
            tokio::fs::rename(tmp, &path)
                .await
                .map_err(|e| internal(&path, "rename into", &e))?;
            let dir = sha_dir.to_path_buf();
            tokio::task::spawn_blocking(move || crate::fsutil::sync_dir(&dir))
                .await
                .map_err(|e| ApiError::internal(format!("cannot sync the artifact store: {e}")))?
                .map_err(|e| internal(sha_dir, "sync", &e))?;
        }
        tracing::info!(digest = %got.digest, size = got.size, kind = %got.kind, "artifact stored");
        Ok(ArtifactStored {
            digest: got.digest,
            size: got.size,
            kind: got.kind,
        })
    }
}

struct Received {
    digest: String,
    size: u64,
    kind: ArtifactKind,
}

fn internal(path: &Path, what: &str, error: &std::io::Error) -> ApiError {
    ApiError::internal(format!("cannot {what} {}: {error}", path.display()))
}

fn random_name() -> ApiResult<String> {
    let mut bytes = [0u8; 12];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| ApiError::internal(format!("no randomness for a temporary name: {e}")))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_bytes() -> Vec<u8> {
        let mut bytes = vec![0u8; 1024];
        bytes[257..262].copy_from_slice(b"ustar");
        bytes
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = walk(dir);
        names.sort();
        names
    }

    fn walk(dir: &Path) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .flat_map(|e| {
                if e.path().is_dir() {
                    walk(&e.path())
                } else {
                    vec![e.file_name().to_string_lossy().into_owned()]
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn an_upload_is_stored_once_by_its_digest() {
        let data = tempfile::tempdir().expect("tempdir");
        let artifacts = Artifacts::new(data.path(), 4096);
        let bytes = tar_bytes();
        let stored = artifacts
            .store(axum::body::Body::from(bytes.clone()))
            .await
            .expect("stored");
        assert_eq!(stored.digest, hex::encode(Sha256::digest(&bytes)));
        assert_eq!((stored.size, stored.kind), (1024, ArtifactKind::Dir));
        let again = artifacts
            .store(axum::body::Body::from(bytes.clone()))
            .await
            .expect("stored again");
        assert_eq!(again, stored);
        let path = artifacts.path(&stored.digest).expect("kept");
        assert_eq!(std::fs::read(path).expect("read"), bytes);
        assert_eq!(files(data.path()), std::slice::from_ref(&stored.digest));
        assert_eq!(artifacts.path("../../etc/passwd"), None);
    }

    #[tokio::test]
    async fn an_oversized_or_unknown_upload_leaves_nothing() {
        let data = tempfile::tempdir().expect("tempdir");
        let artifacts = Artifacts::new(data.path(), 1000);
        let refused = artifacts
            .store(axum::body::Body::from(tar_bytes()))
            .await
            .expect_err("too large");
        assert_eq!(refused.status.as_u16(), 413);
        assert!(
            refused.message.contains("larger than 1000 bytes"),
            "{}",
            refused.message
        );
        let refused = artifacts
            .store(axum::body::Body::from(b"<html>not an app</html>".to_vec()))
            .await
            .expect_err("not an artifact");
        assert_eq!(refused.status.as_u16(), 400);
        assert!(
            refused.message.contains("neither a WAR"),
            "{}",
            refused.message
        );
        assert_eq!(files(data.path()), Vec::<String>::new());
        assert!(artifacts.refuse_length(Some(1001)).is_err());
        assert!(artifacts.refuse_length(Some(1000)).is_ok());
    }
}
