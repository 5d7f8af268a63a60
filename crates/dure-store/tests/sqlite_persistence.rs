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

#[test]
fn reopen_keeps_values_revisions_history_and_leases() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A missing parent directory is created on open.
    let path = dir.path().join("nested").join("store.db");

    let (lease, r_old, r_last) = {
        let store = SqliteStore::open(&path).expect("open new store");
        let r_old = store.put("/a", b"1").expect("put");
        store.put("/a", b"2").expect("put");
        store.put("/gone", b"x").expect("put");
        store.delete("/gone").expect("delete");
        let lease = store.grant_lease(Duration::from_secs(60)).expect("grant");
        let r_last = store
            .txn(leased_put("/leased", lease))
            .expect("txn")
            .revision;
        (lease, r_old, r_last)
    };

    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.current_revision().expect("revision"), r_last);
    assert_eq!(
        *store.subscribe().borrow(),
        r_last,
        "subscribers start at the stored revision"
    );
    let a = store.get("/a").expect("get").expect("/a survives");
    assert_eq!(
        (a.value.as_slice(), a.create_revision, a.version),
        (&b"2"[..], r_old, 2)
    );
    assert_eq!(store.get("/gone").expect("get"), None);
    let old = store
        .get_at("/a", r_old)
        .expect("get_at")
        .expect("history survives");
    assert_eq!(old.value, b"1");
    let kinds: Vec<EventKind> = store
        .changes_since("", 0)
        .expect("changes_since")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.len(), 5);
    assert_eq!(kinds[3], EventKind::Delete);

    assert_eq!(
        store.get("/leased").expect("get").and_then(|kv| kv.lease),
        Some(lease)
    );
    store
        .keep_alive(lease)
        .expect("the lease survives a reopen");
    let fresh = store.grant_lease(Duration::from_secs(60)).expect("grant");
    assert_ne!(fresh, lease, "lease ids are not reused after a reopen");
    store.revoke_lease(lease).expect("revoke");
    assert_eq!(store.get("/leased").expect("get"), None);
    assert_eq!(
        store.put("/next", b"v").expect("put"),
        r_last + 2,
        "revisions go on"
    );
}

#[test]
fn reopened_leases_get_a_fresh_ttl_then_expire() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        let lease = store.grant_lease(Duration::from_secs(1)).expect("grant");
        store.txn(leased_put("/leased", lease)).expect("txn");
    }
    // Longer than the ttl: without a fresh ttl it would expire at once. The
    // ttl leaves a loaded machine time to reopen and read before it runs out.
    std::thread::sleep(Duration::from_millis(1200));
    let store = SqliteStore::open(&path).expect("reopen");
    assert!(
        store.get("/leased").expect("get").is_some(),
        "a restart restarts the countdown"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.get("/leased").expect("get").is_some() {
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

#[test]
fn truncated_file_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        for i in 0..200 {
            store
                .put(&format!("/k/{i:04}"), &[b'v'; 1024])
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

#[test]
fn revision_counter_behind_history_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        for i in 0..3 {
            store.put(&format!("/k/{i}"), b"v").expect("put");
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

#[test]
fn read_only_open_reads_beside_a_writer_and_never_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let writer = SqliteStore::open(&path).expect("open writer");
    writer.put("/config/a", b"1").expect("put");

    let reader = SqliteStore::open_read_only(&path).expect("open a reader beside the writer");
    assert_eq!(reader.current_revision().expect("revision"), 1);
    let r2 = writer
        .put("/config/a", b"2")
        .expect("put while a reader is open");
    let exported = reader.export("/config/").expect("export");
    assert_eq!(exported.revision, r2, "the reader sees committed writes");
    assert_eq!(exported.events.len(), 2);
    assert!(
        matches!(reader.put("/x", b"y"), Err(StoreError::Database(_))),
        "a read-only store refuses writes"
    );
    drop(reader);
    drop(writer);

    let reader = SqliteStore::open_read_only(&path).expect("open a closed store read-only");
    assert_eq!(reader.current_revision().expect("revision"), r2);
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

#[test]
fn imported_history_survives_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = SqliteStore::open(&dir.path().join("source.db")).expect("open source");
    source.put("/config/a", b"1").expect("put");
    source.put("/events/1", b"e").expect("put");
    source.put("/config/a", b"2").expect("put");
    let history = source.export("/config/").expect("export");

    let path = dir.path().join("restored.db");
    SqliteStore::open(&path)
        .expect("open target")
        .import(history.clone())
        .expect("import");
    let restored = SqliteStore::open(&path).expect("reopen the restored store");
    assert_eq!(restored.current_revision().expect("revision"), 3);
    assert_eq!(restored.export("/config/").expect("export"), history);
    assert_eq!(restored.put("/config/b", b"x").expect("put"), 4);
}

#[test]
fn forgotten_history_stays_forgotten_after_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let (r_old, r_point) = {
        let store = SqliteStore::open(&path).expect("open");
        let r_old = store.put("/events/1", b"a").expect("put");
        store.put("/events/1", b"b").expect("put");
        let r_point = store.put("/config/a", b"c").expect("put");
        assert_eq!(
            store.forget_history("/events/", r_point).expect("forget"),
            1
        );
        (r_old, r_point)
    };
    let store = SqliteStore::open(&path).expect("reopen");
    assert!(
        matches!(
            store.get_at("/events/1", r_old),
            Err(StoreError::Forgotten { oldest, .. }) if oldest == r_point
        ),
        "the point is kept across a restart"
    );
    assert_eq!(
        store.get("/events/1").expect("get").map(|kv| kv.value),
        Some(b"b".to_vec())
    );
    let reader = SqliteStore::open_read_only(&path).expect("read-only");
    assert!(matches!(
        reader.list_at("/", r_old),
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

#[test]
fn a_version_1_file_is_read_as_it_is_and_upgraded_on_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let r1 = {
        let store = SqliteStore::open(&path).expect("open");
        let r1 = store.put("/events/1", b"a").expect("put");
        store.put("/events/1", b"b").expect("put");
        r1
    };
    make_version_1(&path);

    let reader = SqliteStore::open_read_only(&path).expect("a reader takes version 1");
    let old = reader.get_at("/events/1", r1).expect("get_at");
    assert_eq!(old.map(|kv| kv.value), Some(b"a".to_vec()));
    assert_eq!(reader.export("/").expect("export").events.len(), 2);
    drop(reader);

    let store = SqliteStore::open(&path).expect("a writer upgrades version 1");
    let r3 = store.current_revision().expect("revision");
    assert_eq!(store.forget_history("/events/", r3).expect("forget"), 1);
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version");
    assert_eq!(version, 2);
}

#[test]
fn an_export_after_a_forget_imports_refusing_the_same_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = SqliteStore::open(&dir.path().join("source.db")).expect("open source");
    let r1 = source.put("/config/a", b"1").expect("put");
    source.put("/intents/web1", b"run").expect("put");
    let r3 = source.put("/intents/web1", b"stop").expect("put");
    source.forget_history("/intents/", r3).expect("forget");
    let history = source.export("/").expect("export");
    assert_eq!(history.compacted, r3);

    let restored = SqliteStore::open(&dir.path().join("restored.db")).expect("open target");
    restored.import(history).expect("import");
    assert!(matches!(
        restored.get_at("/config/a", r1),
        Err(StoreError::Compacted { oldest, .. }) if oldest == r3
    ));
    assert_eq!(
        restored
            .get("/intents/web1")
            .expect("get")
            .map(|kv| kv.value),
        Some(b"stop".to_vec())
    );
}
