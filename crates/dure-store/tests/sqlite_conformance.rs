//! Runs the shared conformance suite against [`SqliteStore`], one
//! `#[tokio::test]` per case so a failure names the broken behaviour.

use dure_store::SqliteStore;

/// A fresh store in its own temporary directory; the directory lives as
/// long as the returned guard.
fn fresh_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = SqliteStore::open(&dir.path().join("store.db")).expect("open fresh store");
    (dir, store)
}

dure_store::conformance_tests!(fresh_store);
