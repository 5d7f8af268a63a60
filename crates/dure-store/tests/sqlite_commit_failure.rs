//! A group of writes whose `COMMIT` fails acknowledges none of them: each
//! caller gets an error, none of the writes can be read, no revision is
//! used up, and once the cause is gone the store goes on where it was, also
//! after a reopen.
//!
//! The failure is a real one: the process may not grow any file past its
//! current size (`RLIMIT_FSIZE`, so every write beyond it fails with
//! `EFBIG`), and in WAL mode a transaction's pages reach the file only at
//! its commit. The limit is process-wide, so this binary holds this one
//! test alone.

use dure_store::{SqliteStore, Store};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use std::path::Path;
use std::sync::Arc;

/// Concurrent writes queued while the file cannot grow: several groups.
const BLOCKED_WRITES: usize = 16;
/// Each blocked write's value: a few pages, well within SQLite's page
/// cache, so nothing is written before the commit.
const VALUE: usize = 16 * 1024;

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_cannot_be_committed_acknowledges_none_of_its_writes() {
    // SAFETY: sets the disposition of one signal; past the limit the kernel
    // sends SIGXFSZ, whose default action would end the test process, and
    // with it ignored the write fails with EFBIG instead.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let store = Arc::new(SqliteStore::open(&path).expect("open"));
    let mut before = Vec::new();
    for i in 0..10 {
        let key = format!("/before/{i}");
        before.push(store.put(&key, key.as_bytes()).await.expect("put"));
    }
    let revision = store.current_revision().await.expect("revision");
    assert_eq!(revision, *before.last().expect("written"));

    // No file may grow any more: the next commit cannot append to the WAL.
    let wal = dir.path().join("store.db-wal");
    let limit = file_len(&wal).max(file_len(&path));
    assert!(limit > 0, "the store has written its files");
    let unlimited = getrlimit(Resource::Fsize);
    setrlimit(
        Resource::Fsize,
        Rlimit {
            current: Some(limit),
            maximum: unlimited.maximum,
        },
    )
    .expect("limit the file size");

    let blocked: Vec<_> = (0..BLOCKED_WRITES)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.put(&format!("/during/{i}"), &[b'x'; VALUE]).await })
        })
        .collect();
    for write in blocked {
        let error = write
            .await
            .expect("writer task")
            .expect_err("a write that cannot be committed is not acknowledged");
        assert!(
            error.to_string().contains("the write was not committed"),
            "{error}"
        );
    }
    assert!(
        store.list("/during/").await.expect("list").is_empty(),
        "no refused write can be read"
    );
    assert_eq!(
        store.current_revision().await.expect("revision"),
        revision,
        "no revision was used up"
    );

    // The cause gone, the store goes on from where it was.
    setrlimit(Resource::Fsize, unlimited).expect("lift the limit");
    let after = store
        .put("/after", b"v")
        .await
        .expect("put after the limit");
    assert_eq!(after, revision + 1, "the next revision, none skipped");
    drop(store);

    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.list("/before/").await.expect("list").len(), 10);
    assert!(store.list("/during/").await.expect("list").is_empty());
    let kv = store.get("/after").await.expect("get").expect("kept");
    assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"v"[..], after));
}
