//! Group commit seen from outside: many tasks writing at once share
//! commits, yet each write keeps its own revision, in call order.

use std::collections::BTreeSet;
use std::sync::Arc;

use dure_store::{SqliteStore, Store};

const WRITERS: u64 = 32;
const WRITES_EACH: u64 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_distinct_consecutive_revisions_in_call_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("open"));
    let start = store.put("/start", b"v").await.expect("put");
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut written = Vec::new();
                for i in 0..WRITES_EACH {
                    let key = format!("/w/{writer:02}/{i:03}");
                    let revision = store.put(&key, key.as_bytes()).await.expect("put");
                    written.push((key, revision));
                }
                written
            })
        })
        .collect();
    let mut all = Vec::new();
    for writer in writers {
        let written = writer.await.expect("writer task");
        let revisions: Vec<u64> = written.iter().map(|(_, revision)| *revision).collect();
        assert!(
            revisions.windows(2).all(|pair| pair[0] < pair[1]),
            "one task's writes take revisions in its call order: {revisions:?}"
        );
        all.extend(written);
    }

    let total = WRITERS * WRITES_EACH;
    let distinct: BTreeSet<u64> = all.iter().map(|(_, revision)| *revision).collect();
    let expected: BTreeSet<u64> = (start + 1..=start + total).collect();
    assert_eq!(
        distinct, expected,
        "every write has its own revision, no holes"
    );
    assert_eq!(
        store.current_revision().await.expect("revision"),
        start + total
    );
    for (key, revision) in &all {
        let kv = store.get(key).await.expect("get").expect("written key");
        assert_eq!(kv.mod_revision, *revision, "{key}");
    }
}
