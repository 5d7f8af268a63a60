//! What the SQLite backend keeps across a close and reopen, and how it
//! refuses a damaged file.

use std::time::{Duration, Instant};

use dure_store::{EventKind, SqliteStore, Store, StoreError, Txn, TxnOp};

fn leased_put(key: &str, lease: u64) -> Txn {
    Txn {
        success: vec![TxnOp::Put {
            key: key.to_string(),
            value: b"leased".to_vec(),
            lease: Some(lease),
        }],
        ..Txn::default()
    }
}

#[tokio::test]
async fn reopen_keeps_values_revisions_history_and_leases() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A missing parent directory is created on open.
    let path = dir.path().join("nested").join("store.db");

    let (lease, r_old, r_last) = {
        let store = SqliteStore::open(&path).expect("open new store");
        let r_old = store.put("/a", b"1").await.expect("put");
        store.put("/a", b"2").await.expect("put");
        store.put("/gone", b"x").await.expect("put");
        store.delete("/gone").await.expect("delete");
        let lease = store
            .grant_lease(Duration::from_secs(60))
            .await
            .expect("grant");
        let r_last = store
            .txn(leased_put("/leased", lease))
            .await
            .expect("txn")
            .revision;
        (lease, r_old, r_last)
    };

    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.current_revision().await.expect("revision"), r_last);
    assert_eq!(
        *store.subscribe().borrow(),
        r_last,
        "subscribers start at the stored revision"
    );
    let a = store.get("/a").await.expect("get").expect("/a survives");
    assert_eq!(
        (a.value.as_slice(), a.create_revision, a.version),
        (&b"2"[..], r_old, 2)
    );
    assert_eq!(store.get("/gone").await.expect("get"), None);
    let old = store
        .get_at("/a", r_old)
        .await
        .expect("get_at")
        .expect("history survives");
    assert_eq!(old.value, b"1");
    let kinds: Vec<EventKind> = store
        .changes_since("", 0)
        .await
        .expect("changes_since")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.len(), 5);
    assert_eq!(kinds[3], EventKind::Delete);

    assert_eq!(
        store
            .get("/leased")
            .await
            .expect("get")
            .and_then(|kv| kv.lease),
        Some(lease)
    );
    store
        .keep_alive(lease)
        .await
        .expect("the lease survives a reopen");
    let fresh = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant");
    assert_ne!(fresh, lease, "lease ids are not reused after a reopen");
    store.revoke_lease(lease).await.expect("revoke");
    assert_eq!(store.get("/leased").await.expect("get"), None);
    assert_eq!(
        store.put("/next", b"v").await.expect("put"),
        r_last + 2,
        "revisions go on"
    );
}

#[tokio::test]
async fn reopened_leases_get_a_fresh_ttl_then_expire() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        let lease = store
            .grant_lease(Duration::from_secs(1))
            .await
            .expect("grant");
        store.txn(leased_put("/leased", lease)).await.expect("txn");
    }
    // Longer than the ttl: without a fresh ttl it would expire at once. The
    // ttl leaves a loaded machine time to reopen and read before it runs out.
    std::thread::sleep(Duration::from_millis(1200));
    let store = SqliteStore::open(&path).expect("reopen");
    assert!(
        store.get("/leased").await.expect("get").is_some(),
        "a restart restarts the countdown"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.get("/leased").await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline,
            "the reopened lease never expired"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_corrupt_naming(path: &std::path::Path, result: dure_store::Result<SqliteStore>) {
    let err = result.expect_err("a damaged file must not open");
    let message = err.to_string();
    assert!(
        matches!(err, StoreError::Corrupt(_)),
        "expected Corrupt, got {err:?}"
    );
    let shown = path.display().to_string();
    assert!(message.contains(&shown), "{message:?} should name {shown}");
    let without_path = message.replace(&shown, "");
    assert!(
        !without_path.chars().any(char::is_uppercase),
        "{message:?} should be lowercase"
    );
    eprintln!("open refused: {message}");
}

#[test]
fn garbage_file_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, garbage).expect("write garbage");
    assert_corrupt_naming(&path, SqliteStore::open(&path));
}

#[tokio::test]
async fn truncated_file_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        for i in 0..200 {
            store
                .put(&format!("/k/{i:04}"), &[b'v'; 1024])
                .await
                .expect("put");
        }
    }
    // Closing the last connection checkpointed the WAL into the main file.
    let len = std::fs::metadata(&path).expect("stat").len();
    assert!(
        len > 64 * 1024,
        "the store should span many pages, has {len} bytes"
    );
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open file");
    file.set_len(len / 2 + 123).expect("truncate");
    drop(file);
    assert_corrupt_naming(&path, SqliteStore::open(&path));
}

#[tokio::test]
async fn revision_counter_behind_history_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        for i in 0..3 {
            store.put(&format!("/k/{i}"), b"v").await.expect("put");
        }
    }
    {
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        conn.execute("UPDATE meta SET revision = 1", [])
            .expect("rewind the counter");
    }
    let result = SqliteStore::open(&path);
    let message = result
        .as_ref()
        .map(|_| ())
        .expect_err("must not open")
        .to_string();
    assert!(message.contains("behind"), "{message}");
    assert_corrupt_naming(&path, result);
}

#[test]
fn unopenable_path_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A directory where the database file should be.
    let path = dir.path().join("store.db");
    std::fs::create_dir(&path).expect("mkdir");
    let err = SqliteStore::open(&path).expect_err("a directory is no database");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[tokio::test(flavor = "current_thread")]
async fn async_open_creates_reopens_and_names_what_it_cannot_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join("store.db");
    let written = {
        let store = SqliteStore::open_async(&path)
            .await
            .expect("open new store");
        store.put("/a", b"1").await.expect("put")
    };
    let store = SqliteStore::open_async(&path).await.expect("reopen");
    let kv = store.get("/a").await.expect("get").expect("/a kept");
    assert_eq!(kv.mod_revision, written);

    let not_a_file = dir.path().join("dir.db");
    std::fs::create_dir(&not_a_file).expect("mkdir");
    let err = SqliteStore::open_async(&not_a_file)
        .await
        .expect_err("a directory is no database");
    assert!(
        err.to_string().contains(&not_a_file.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn read_only_open_reads_beside_a_writer_and_never_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let writer = SqliteStore::open(&path).expect("open writer");
    writer.put("/config/a", b"1").await.expect("put");

    let reader = SqliteStore::open_read_only(&path).expect("open a reader beside the writer");
    assert_eq!(reader.current_revision().await.expect("revision"), 1);
    let r2 = writer
        .put("/config/a", b"2")
        .await
        .expect("put while a reader is open");
    let exported = reader.export("/config/").await.expect("export");
    assert_eq!(exported.revision, r2, "the reader sees committed writes");
    assert_eq!(exported.events.len(), 2);
    assert!(
        matches!(
            reader.put("/x", b"y").await,
            Err(StoreError::Backend(message)) if message.contains("readonly")
        ),
        "a read-only store refuses writes"
    );
    drop(reader);
    drop(writer);

    let reader = SqliteStore::open_read_only(&path).expect("open a closed store read-only");
    assert_eq!(reader.current_revision().await.expect("revision"), r2);
    let missing = SqliteStore::open_read_only(&dir.path().join("absent.db"));
    assert!(
        matches!(&missing, Err(e) if e.to_string().contains("absent.db")),
        "a missing file is named: {missing:?}"
    );
    assert!(
        !dir.path().join("absent.db").exists(),
        "a read-only open creates nothing"
    );
}

#[tokio::test]
async fn imported_history_survives_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = SqliteStore::open(&dir.path().join("source.db")).expect("open source");
    source.put("/config/a", b"1").await.expect("put");
    source.put("/events/1", b"e").await.expect("put");
    source.put("/config/a", b"2").await.expect("put");
    let history = source.export("/config/").await.expect("export");

    let path = dir.path().join("restored.db");
    SqliteStore::open(&path)
        .expect("open target")
        .import(history.clone())
        .await
        .expect("import");
    let restored = SqliteStore::open(&path).expect("reopen the restored store");
    assert_eq!(restored.current_revision().await.expect("revision"), 3);
    assert_eq!(restored.export("/config/").await.expect("export"), history);
    assert_eq!(restored.put("/config/b", b"x").await.expect("put"), 4);
}

#[tokio::test]
async fn forgotten_history_stays_forgotten_after_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let (r_old, r_point) = {
        let store = SqliteStore::open(&path).expect("open");
        let r_old = store.put("/events/1", b"a").await.expect("put");
        store.put("/events/1", b"b").await.expect("put");
        let r_point = store.put("/config/a", b"c").await.expect("put");
        assert_eq!(
            store
                .forget_history("/events/", r_point)
                .await
                .expect("forget"),
            1
        );
        (r_old, r_point)
    };
    let store = SqliteStore::open(&path).expect("reopen");
    assert!(
        matches!(
            store.get_at("/events/1", r_old).await,
            Err(StoreError::Forgotten { oldest, .. }) if oldest == r_point
        ),
        "the point is kept across a restart"
    );
    assert_eq!(
        store
            .get("/events/1")
            .await
            .expect("get")
            .map(|kv| kv.value),
        Some(b"b".to_vec())
    );
    let reader = SqliteStore::open_read_only(&path).expect("read-only");
    assert!(matches!(
        reader.list_at("/", r_old).await,
        Err(StoreError::Forgotten { .. })
    ));
}

/// Turns a store file back into what builds before the `forgotten` table
/// wrote: schema version 1.
fn make_version_1(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).expect("raw open");
    conn.execute_batch("DROP TABLE forgotten; PRAGMA user_version = 1;")
        .expect("downgrade");
}

#[tokio::test]
async fn a_version_1_file_is_read_as_it_is_and_upgraded_on_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let r1 = {
        let store = SqliteStore::open(&path).expect("open");
        let r1 = store.put("/events/1", b"a").await.expect("put");
        store.put("/events/1", b"b").await.expect("put");
        r1
    };
    make_version_1(&path);

    let reader = SqliteStore::open_read_only(&path).expect("a reader takes version 1");
    let old = reader.get_at("/events/1", r1).await.expect("get_at");
    assert_eq!(old.map(|kv| kv.value), Some(b"a".to_vec()));
    assert_eq!(reader.export("/").await.expect("export").events.len(), 2);
    drop(reader);

    let store = SqliteStore::open(&path).expect("a writer upgrades version 1");
    let r3 = store.current_revision().await.expect("revision");
    assert_eq!(
        store.forget_history("/events/", r3).await.expect("forget"),
        1
    );
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version");
    assert_eq!(version, 2);
}

#[tokio::test]
async fn an_export_after_a_forget_imports_refusing_the_same_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = SqliteStore::open(&dir.path().join("source.db")).expect("open source");
    let r1 = source.put("/config/a", b"1").await.expect("put");
    source.put("/intents/web1", b"run").await.expect("put");
    let r3 = source.put("/intents/web1", b"stop").await.expect("put");
    source
        .forget_history("/intents/", r3)
        .await
        .expect("forget");
    let history = source.export("/").await.expect("export");
    assert_eq!(history.compacted, r3);

    let restored = SqliteStore::open(&dir.path().join("restored.db")).expect("open target");
    restored.import(history).await.expect("import");
    assert!(matches!(
        restored.get_at("/config/a", r1).await,
        Err(StoreError::Compacted { oldest, .. }) if oldest == r3
    ));
    assert_eq!(
        restored
            .get("/intents/web1")
            .await
            .expect("get")
            .map(|kv| kv.value),
        Some(b"stop".to_vec())
    );
}
