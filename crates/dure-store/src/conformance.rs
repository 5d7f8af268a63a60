//! The behaviour every [`Store`] backend must show, as a reusable suite.
//!
//! Owns: the definition of correct trait behaviour and the one list of its
//! cases. Each case takes a fresh, empty store and panics with a readable
//! message when the backend is wrong. Cases only use the trait, so a later
//! backend (for example etcd) runs the very same suite: its tests call
//! [`conformance_tests!`](crate::conformance_tests) once with a constructor
//! and get one `#[tokio::test]` per case, so a case added here runs on
//! every backend, and a failure names the broken behaviour.
//!
//! Compiled only with the `conformance` feature: production builds do not
//! carry the suite; the crate's own tests turn the feature on.
//!
//! Lease cases need real time to pass; they use short ttls and poll against
//! generous deadlines rather than asserting exact timings, because CI
//! machines are small and shared.

use std::time::{Duration, Instant};

use crate::{Compare, EventKind, History, KeyValue, Store, StoreError, Txn, TxnOp, WatchEvent};

/// Generates one `#[tokio::test]` per conformance case, each on a fresh
/// store from `$fresh`: a function returning `(guard, store)`, where the
/// guard (a temporary directory, say) is kept until the case ends. The
/// calling crate needs `tokio` with its `macros` feature.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:expr) => {
        $crate::conformance_tests!(@cases $fresh;
            revisions_start_at_zero_and_increase,
            get_and_list_are_sorted_and_prefix_isolated,
            prefix_wildcards_are_literal,
            key_metadata_follows_writes,
            compare_mod_revision,
            compare_exists,
            compare_missing,
            compare_value,
            all_compares_must_hold,
            failed_compare_applies_nothing,
            multi_op_txn_is_one_revision,
            no_op_writes_keep_the_revision,
            delete_prefix,
            history_reads,
            future_revision_reads_fail,
            changes_since_orders_and_filters,
            subscribe_sees_new_revisions,
            subscribe_wakes_waiters,
            leased_keys_expire,
            expire_leases_reports_deleted_keys,
            keep_alive_extends_a_lease,
            revoke_deletes_keys_at_once,
            unknown_leases_are_errors,
            reput_without_lease_detaches,
            compaction,
            forget_history_keeps_other_prefixes,
            forget_history_keeps_current_values,
            forget_history_refuses_older_reads,
            forget_history_writes_no_revision,
            forget_history_is_idempotent,
            export_after_forget_history,
            export_reads_history_at_one_revision,
            export_keeps_what_compaction_kept,
            import_preserves_revisions_and_metadata,
            import_keeps_the_compaction_point,
            import_refuses_a_non_empty_store,
            import_refuses_malformed_history,
            queued_writes_take_revisions_in_call_order,
            a_failed_write_leaves_its_queued_neighbours_alone,
        );
    };
    (@cases $fresh:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, store) = ($fresh)();
                $crate::conformance::$case(&store).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------
// Small helpers so the cases read as specifications.

fn put_op(key: &str, value: &[u8]) -> TxnOp {
    TxnOp::Put {
        key: key.to_string(),
        value: value.to_vec(),
        lease: None,
    }
}

fn leased_put_op(key: &str, value: &[u8], lease: u64) -> TxnOp {
    TxnOp::Put {
        key: key.to_string(),
        value: value.to_vec(),
        lease: Some(lease),
    }
}

fn delete_op(key: &str) -> TxnOp {
    TxnOp::Delete {
        key: key.to_string(),
    }
}

async fn put(store: &dyn Store, key: &str, value: &[u8]) -> u64 {
    store
        .put(key, value)
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"))
}

async fn get(store: &dyn Store, key: &str) -> Option<KeyValue> {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
}

async fn value_of(store: &dyn Store, key: &str) -> Option<Vec<u8>> {
    get(store, key).await.map(|kv| kv.value)
}

async fn keys(store: &dyn Store, prefix: &str) -> Vec<String> {
    let listed = store
        .list(prefix)
        .await
        .unwrap_or_else(|e| panic!("list {prefix:?}: {e}"));
    listed.into_iter().map(|kv| kv.key).collect()
}

async fn revision(store: &dyn Store) -> u64 {
    store.current_revision().await.expect("current_revision")
}

async fn txn(store: &dyn Store, txn: Txn) -> crate::TxnResult {
    store.txn(txn).await.unwrap_or_else(|e| panic!("txn: {e}"))
}

/// Runs a txn whose only compare is `compare`, writing a marker key on
/// either branch, and returns whether the success branch ran.
async fn compare_outcome(store: &dyn Store, compare: Compare) -> bool {
    let before = revision(store).await;
    let result = txn(
        store,
        Txn {
            compares: vec![compare.clone()],
            success: vec![put_op("/marker", b"success")],
            failure: vec![put_op("/marker", b"failure")],
        },
    )
    .await;
    assert_eq!(
        result.revision,
        before + 1,
        "{compare:?}: one branch writes one revision"
    );
    let marker = value_of(store, "/marker").await.expect("marker written");
    let expected: &[u8] = if result.succeeded {
        b"success"
    } else {
        b"failure"
    };
    assert_eq!(
        marker, expected,
        "{compare:?}: the reported branch is the one applied"
    );
    result.succeeded
}

/// Polls the condition `$done` (an expression that may await) until it
/// holds or `$limit` passes; evaluates to whether it held.
macro_rules! eventually {
    ($limit:expr, $done:expr) => {{
        let deadline = Instant::now() + $limit;
        loop {
            if $done {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

/// Generous bound for lease expiry: ttl plus any backend's expiry interval
/// plus scheduling noise on a loaded machine.
const EXPIRY_LIMIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Revisions and plain reads.

pub async fn revisions_start_at_zero_and_increase(store: &dyn Store) {
    assert_eq!(revision(store).await, 0, "a new store is at revision 0");
    assert_eq!(
        put(store, "/a", b"1").await,
        1,
        "the first write makes revision 1"
    );
    assert_eq!(put(store, "/b", b"1").await, 2);
    assert_eq!(put(store, "/a", b"2").await, 3, "overwrites are writes too");
    assert_eq!(store.delete("/a").await.expect("delete"), Some(4));
    let result = txn(
        store,
        Txn {
            success: vec![put_op("/c", b"1")],
            ..Txn::default()
        },
    )
    .await;
    assert_eq!(
        result,
        crate::TxnResult {
            succeeded: true,
            revision: 5
        }
    );
    assert_eq!(revision(store).await, 5);
}

pub async fn get_and_list_are_sorted_and_prefix_isolated(store: &dyn Store) {
    for key in [
        "/b/x",
        "/a/2",
        "/ab",
        "/a",
        "/a/1",
        "/a/1/deep",
        "/é/1",
        "/f",
    ] {
        put(store, key, key.as_bytes()).await;
    }
    assert_eq!(value_of(store, "/a/1").await, Some(b"/a/1".to_vec()));
    assert_eq!(get(store, "/a/").await, None, "a prefix is not a key");
    assert_eq!(get(store, "/missing").await, None);
    assert_eq!(
        keys(store, "/a/").await,
        ["/a/1", "/a/1/deep", "/a/2"],
        "`/a/` excludes `/ab` and `/a`"
    );
    assert_eq!(
        keys(store, "/a").await,
        ["/a", "/a/1", "/a/1/deep", "/a/2", "/ab"]
    );
    assert_eq!(keys(store, "/ab").await, ["/ab"]);
    assert_eq!(keys(store, "/a/1").await, ["/a/1", "/a/1/deep"]);
    assert!(keys(store, "/nothing/").await.is_empty());
    // Keys sort by their UTF-8 bytes, so `é` (0xC3..) comes after `f`.
    assert_eq!(
        keys(store, "").await,
        [
            "/a",
            "/a/1",
            "/a/1/deep",
            "/a/2",
            "/ab",
            "/b/x",
            "/f",
            "/é/1"
        ]
    );
    let listed = store.list("/a/1").await.expect("list");
    assert_eq!(listed[0].value, b"/a/1", "list returns values");
}

pub async fn prefix_wildcards_are_literal(store: &dyn Store) {
    for key in ["/a%/x", "/a_/x", "/ab/x", "/aX/x", "/a%b", "/a\\/x"] {
        put(store, key, b"v").await;
    }
    assert_eq!(
        keys(store, "/a%").await,
        ["/a%/x", "/a%b"],
        "`%` matches only itself"
    );
    assert_eq!(
        keys(store, "/a_").await,
        ["/a_/x"],
        "`_` matches only itself"
    );
    assert_eq!(keys(store, "/a\\").await, ["/a\\/x"], "`\\` is no escape");
    let result = txn(
        store,
        Txn {
            success: vec![TxnOp::DeletePrefix {
                prefix: "/a_".to_string(),
            }],
            ..Txn::default()
        },
    )
    .await;
    assert!(result.succeeded);
    assert_eq!(
        keys(store, "").await,
        ["/a%/x", "/a%b", "/aX/x", "/a\\/x", "/ab/x"]
    );
}

pub async fn key_metadata_follows_writes(store: &dyn Store) {
    put(store, "/other", b"x").await;
    let created = put(store, "/k", b"1").await;
    let kv = get(store, "/k").await.expect("created");
    assert_eq!(
        kv,
        KeyValue {
            key: "/k".to_string(),
            value: b"1".to_vec(),
            create_revision: created,
            mod_revision: created,
            version: 1,
            lease: None,
        }
    );
    let updated = put(store, "/k", b"2").await;
    let kv = get(store, "/k").await.expect("updated");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (created, updated, 2)
    );
    store.delete("/k").await.expect("delete");
    assert_eq!(get(store, "/k").await, None);
    let recreated = put(store, "/k", b"3").await;
    let kv = get(store, "/k").await.expect("recreated");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (recreated, recreated, 1),
        "a delete ends the key's life: re-creating starts over"
    );
}

// ---------------------------------------------------------------------------
// Transactions.

pub async fn compare_mod_revision(store: &dyn Store) {
    let missing = |revision| Compare::ModRevision {
        key: "/k".to_string(),
        revision,
    };
    assert!(
        compare_outcome(store, missing(0)).await,
        "0 matches a missing key"
    );
    assert!(!compare_outcome(store, missing(1)).await);
    let written = put(store, "/k", b"v").await;
    assert!(compare_outcome(store, missing(written)).await);
    assert!(!compare_outcome(store, missing(written - 1)).await);
    assert!(
        !compare_outcome(store, missing(0)).await,
        "0 fails once the key exists"
    );
}

pub async fn compare_exists(store: &dyn Store) {
    let exists = || Compare::Exists {
        key: "/k".to_string(),
    };
    assert!(!compare_outcome(store, exists()).await);
    put(store, "/k", b"v").await;
    assert!(compare_outcome(store, exists()).await);
    store.delete("/k").await.expect("delete");
    assert!(!compare_outcome(store, exists()).await);
}

pub async fn compare_missing(store: &dyn Store) {
    let missing = || Compare::Missing {
        key: "/k".to_string(),
    };
    assert!(compare_outcome(store, missing()).await);
    put(store, "/k", b"v").await;
    assert!(!compare_outcome(store, missing()).await);
}

pub async fn compare_value(store: &dyn Store) {
    let value = |v: &[u8]| Compare::Value {
        key: "/k".to_string(),
        value: v.to_vec(),
    };
    assert!(
        !compare_outcome(store, value(b"")).await,
        "a missing key has no value, not an empty one"
    );
    put(store, "/k", b"v1").await;
    assert!(compare_outcome(store, value(b"v1")).await);
    assert!(!compare_outcome(store, value(b"v2")).await);
    assert!(
        !compare_outcome(store, value(b"v")).await,
        "values compare whole, not as prefixes"
    );
    put(store, "/empty", b"").await;
    let empty = Compare::Value {
        key: "/empty".to_string(),
        value: Vec::new(),
    };
    assert!(compare_outcome(store, empty).await);
}

pub async fn all_compares_must_hold(store: &dyn Store) {
    put(store, "/a", b"1").await;
    let exists = |key: &str| Compare::Exists {
        key: key.to_string(),
    };
    let result = txn(
        store,
        Txn {
            compares: vec![exists("/a"), exists("/b")],
            success: vec![put_op("/ok", b"")],
            failure: vec![],
        },
    )
    .await;
    assert!(!result.succeeded, "one failing compare fails the txn");
    assert_eq!(get(store, "/ok").await, None);
    put(store, "/b", b"1").await;
    let result = txn(
        store,
        Txn {
            compares: vec![exists("/a"), exists("/b")],
            success: vec![put_op("/ok", b"")],
            failure: vec![],
        },
    )
    .await;
    assert!(result.succeeded);
    assert!(get(store, "/ok").await.is_some());
}

pub async fn failed_compare_applies_nothing(store: &dyn Store) {
    let before = put(store, "/a", b"1").await;
    let result = txn(
        store,
        Txn {
            compares: vec![Compare::Value {
                key: "/a".to_string(),
                value: b"other".to_vec(),
            }],
            success: vec![put_op("/a", b"2"), put_op("/b", b"2"), delete_op("/a")],
            failure: vec![],
        },
    )
    .await;
    assert_eq!(
        result,
        crate::TxnResult {
            succeeded: false,
            revision: before
        },
        "an empty failure branch writes no revision"
    );
    assert_eq!(value_of(store, "/a").await, Some(b"1".to_vec()));
    assert_eq!(get(store, "/b").await, None);
    assert_eq!(revision(store).await, before);
}

pub async fn multi_op_txn_is_one_revision(store: &dyn Store) {
    put(store, "/c", b"old").await;
    let before = revision(store).await;
    let result = txn(
        store,
        Txn {
            compares: vec![],
            success: vec![put_op("/a", b"1"), put_op("/b", b"1"), delete_op("/c")],
            failure: vec![],
        },
    )
    .await;
    assert_eq!(result.revision, before + 1);
    assert_eq!(revision(store).await, before + 1);
    for key in ["/a", "/b"] {
        assert_eq!(
            get(store, key).await.expect("written").mod_revision,
            before + 1
        );
    }
    assert_eq!(get(store, "/c").await, None);
}

pub async fn no_op_writes_keep_the_revision(store: &dyn Store) {
    let before = put(store, "/a", b"1").await;
    assert_eq!(store.delete("/missing").await.expect("delete"), None);
    assert_eq!(
        revision(store).await,
        before,
        "deleting a missing key is no write"
    );
    let result = txn(store, Txn::default()).await;
    assert_eq!(
        result,
        crate::TxnResult {
            succeeded: true,
            revision: before
        }
    );
    let result = txn(
        store,
        Txn {
            success: vec![
                delete_op("/missing"),
                TxnOp::DeletePrefix {
                    prefix: "/nothing/".to_string(),
                },
            ],
            ..Txn::default()
        },
    )
    .await;
    assert_eq!(result.revision, before);
    assert_eq!(revision(store).await, before);
    let events = store
        .changes_since("", before)
        .await
        .expect("changes_since");
    assert!(events.is_empty(), "no-op writes emit no events: {events:?}");
}

pub async fn delete_prefix(store: &dyn Store) {
    for key in ["/p/1", "/p/2", "/p", "/pq", "/q"] {
        put(store, key, b"v").await;
    }
    let before = revision(store).await;
    let result = txn(
        store,
        Txn {
            success: vec![TxnOp::DeletePrefix {
                prefix: "/p/".to_string(),
            }],
            ..Txn::default()
        },
    )
    .await;
    assert_eq!(
        result.revision,
        before + 1,
        "all deletions share one revision"
    );
    assert_eq!(keys(store, "").await, ["/p", "/pq", "/q"]);
    let events = store
        .changes_since("", before)
        .await
        .expect("changes_since");
    let deleted: Vec<(&str, EventKind, u64)> = events
        .iter()
        .map(|e| (e.kv.key.as_str(), e.kind, e.kv.mod_revision))
        .collect();
    assert_eq!(
        deleted,
        [
            ("/p/1", EventKind::Delete, before + 1),
            ("/p/2", EventKind::Delete, before + 1)
        ]
    );
}

// ---------------------------------------------------------------------------
// Queued writes: a write is queued at the call, and writes apply in call
// order, however many are waiting at once.

/// How many writes [`queued_writes_take_revisions_in_call_order`] queues
/// before awaiting the first.
const QUEUED_WRITES: u64 = 300;

pub async fn queued_writes_take_revisions_in_call_order(store: &dyn Store) {
    let before = revision(store).await;
    // Every call is made before any is awaited, so the backend has them all
    // waiting at once (a backend that batches writes takes them together).
    let queued: Vec<_> = (0..QUEUED_WRITES)
        .map(|i| store.put(&format!("/queued/{i:04}"), format!("{i}").as_bytes()))
        .collect();
    let mut expected = before;
    for (i, written) in queued.into_iter().enumerate() {
        expected += 1;
        let written = written
            .await
            .unwrap_or_else(|e| panic!("queued put {i}: {e}"));
        assert_eq!(
            written, expected,
            "write {i} takes the next revision in call order"
        );
    }
    for i in 0..QUEUED_WRITES {
        let key = format!("/queued/{i:04}");
        let kv = get(store, &key)
            .await
            .unwrap_or_else(|| panic!("{key} is written"));
        assert_eq!(kv.mod_revision, before + 1 + i, "{key}");
    }
    assert_eq!(revision(store).await, before + QUEUED_WRITES);
}

pub async fn a_failed_write_leaves_its_queued_neighbours_alone(store: &dyn Store) {
    const UNKNOWN_LEASE: u64 = 987_654_321;
    let before = put(store, "/n/guard", b"1").await;
    let first = store.put("/n/first", b"1");
    let failed_compare = store.txn(Txn {
        compares: vec![Compare::Value {
            key: "/n/guard".to_string(),
            value: b"other".to_vec(),
        }],
        success: vec![put_op("/n/never", b"1")],
        failure: vec![],
    });
    let failed_with_branch = store.txn(Txn {
        compares: vec![Compare::Missing {
            key: "/n/guard".to_string(),
        }],
        success: vec![put_op("/n/never", b"1")],
        failure: vec![put_op("/n/failure-branch", b"1")],
    });
    let erroring = store.txn(Txn {
        success: vec![
            put_op("/n/half", b"1"),
            leased_put_op("/n/leased", b"1", UNKNOWN_LEASE),
        ],
        ..Txn::default()
    });
    let last = store.put("/n/last", b"1");

    let first = first.await.expect("the write before the failures");
    assert_eq!(first, before + 1);
    let failed_compare = failed_compare.await.expect("a failed compare is no error");
    assert_eq!(
        failed_compare,
        crate::TxnResult {
            succeeded: false,
            revision: first
        },
        "a failed compare with an empty failure branch takes no revision"
    );
    let failed_with_branch = failed_with_branch.await.expect("failure branch");
    assert_eq!(
        failed_with_branch,
        crate::TxnResult {
            succeeded: false,
            revision: first + 1
        },
        "the failure branch is one revision"
    );
    let erroring = erroring.await;
    assert!(
        matches!(erroring, Err(StoreError::LeaseNotFound(id)) if id == UNKNOWN_LEASE),
        "a put with an unknown lease fails alone: {erroring:?}"
    );
    let last = last.await.expect("the write after the failures");
    assert_eq!(last, first + 2, "the failed writes took no revision");

    assert_eq!(
        keys(store, "/n/").await,
        ["/n/failure-branch", "/n/first", "/n/guard", "/n/last"],
        "the neighbours applied, nothing of the failed writes did"
    );
    assert_eq!(revision(store).await, last);
}

// ---------------------------------------------------------------------------
// History.

pub async fn history_reads(store: &dyn Store) {
    let r1 = put(store, "/h/a", b"a1").await;
    let r2 = put(store, "/h/b", b"b1").await;
    let r3 = put(store, "/h/a", b"a2").await;
    let r4 = store
        .delete("/h/b")
        .await
        .expect("delete")
        .expect("existed");
    let r5 = put(store, "/h/b", b"b2").await;
    let at = async |key: &str, rev| {
        store
            .get_at(key, rev)
            .await
            .unwrap_or_else(|e| panic!("get_at {key} {rev}: {e}"))
    };
    let listed = async |rev| -> Vec<(String, Vec<u8>)> {
        let kvs = store
            .list_at("/h/", rev)
            .await
            .unwrap_or_else(|e| panic!("list_at {rev}: {e}"));
        kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
    };
    let pair = |k: &str, v: &[u8]| (k.to_string(), v.to_vec());

    assert_eq!(at("/h/a", 0).await, None, "revision 0 is the empty store");
    assert!(listed(0).await.is_empty());
    let a_at_r2 = at("/h/a", r2).await.expect("a exists at r2");
    assert_eq!(
        (
            a_at_r2.value.as_slice(),
            a_at_r2.mod_revision,
            a_at_r2.version
        ),
        (&b"a1"[..], r1, 1),
        "historical reads carry the metadata of that time"
    );
    assert_eq!(at("/h/a", r3).await.map(|kv| kv.version), Some(2));
    assert_eq!(at("/h/b", r1).await, None, "not yet created");
    assert_eq!(at("/h/b", r4).await, None, "deleted at r4");
    let b_again = at("/h/b", r5).await.expect("re-created");
    assert_eq!((b_again.create_revision, b_again.version), (r5, 1));
    assert_eq!(listed(r2).await, [pair("/h/a", b"a1"), pair("/h/b", b"b1")]);
    assert_eq!(listed(r4).await, [pair("/h/a", b"a2")]);
    assert_eq!(listed(r5).await, [pair("/h/a", b"a2"), pair("/h/b", b"b2")]);
    let current: Vec<_> = store.list("/h/").await.expect("list");
    let latest = store.list_at("/h/", r5).await.expect("list_at");
    assert_eq!(
        current, latest,
        "reading at the current revision is reading now"
    );
}

pub async fn future_revision_reads_fail(store: &dyn Store) {
    let now = put(store, "/k", b"v").await;
    let future = store.get_at("/k", now + 1).await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { requested, current }) if requested == now + 1 && current == now),
        "get_at a future revision: {future:?}"
    );
    let future = store.list_at("", now + 10).await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { .. })),
        "list_at a future revision: {future:?}"
    );
}

pub async fn changes_since_orders_and_filters(store: &dyn Store) {
    let r1 = put(store, "/w/a", b"1").await;
    put(store, "/other", b"x").await;
    let r3 = txn(
        store,
        Txn {
            success: vec![
                put_op("/w/c", b"3"),
                put_op("/w/b", b"3"),
                delete_op("/w/a"),
            ],
            ..Txn::default()
        },
    )
    .await
    .revision;
    let r4 = put(store, "/w/b", b"4").await;
    let summary = |events: Vec<WatchEvent>| -> Vec<(EventKind, String, u64)> {
        events
            .into_iter()
            .map(|e| (e.kind, e.kv.key, e.kv.mod_revision))
            .collect()
    };
    let all = store.changes_since("/w/", 0).await.expect("changes_since");
    let deleted = all
        .iter()
        .find(|e| e.kind == EventKind::Delete)
        .expect("delete event");
    assert!(
        deleted.kv.value.is_empty(),
        "a delete event has an empty value"
    );
    assert_eq!(
        summary(all),
        [
            (EventKind::Put, "/w/a".to_string(), r1),
            (EventKind::Put, "/w/c".to_string(), r3),
            (EventKind::Put, "/w/b".to_string(), r3),
            (EventKind::Delete, "/w/a".to_string(), r3),
            (EventKind::Put, "/w/b".to_string(), r4),
        ],
        "revision order, then op order inside a revision; other prefixes filtered out"
    );
    let tail = store.changes_since("/w/", r3).await.expect("changes_since");
    assert_eq!(summary(tail), [(EventKind::Put, "/w/b".to_string(), r4)]);
    let put_b = store
        .changes_since("/w/b", r3 - 1)
        .await
        .expect("changes_since");
    let put_b = &put_b[0];
    assert_eq!(
        (put_b.kv.value.as_slice(), put_b.kv.version),
        (&b"3"[..], 1)
    );
    let nothing = store.changes_since("/w/", r4).await.expect("changes_since");
    assert!(nothing.is_empty());
}

pub async fn subscribe_sees_new_revisions(store: &dyn Store) {
    put(store, "/before", b"v").await;
    let mut rx = store.subscribe();
    assert_eq!(
        *rx.borrow_and_update(),
        revision(store).await,
        "starts at the current revision"
    );
    let written = put(store, "/after", b"v").await;
    assert!(
        rx.has_changed().expect("sender alive"),
        "a write is announced"
    );
    assert_eq!(*rx.borrow_and_update(), written);
    store.delete("/missing").await.expect("delete");
    assert!(
        !rx.has_changed().expect("sender alive"),
        "a no-op write is not announced"
    );
}

pub async fn subscribe_wakes_waiters(store: &dyn Store) {
    let mut rx = store.subscribe();
    rx.borrow_and_update();
    let write_later = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        put(store, "/wake", b"v").await;
    };
    let (woke, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), rx.changed()),
        write_later
    );
    assert!(
        matches!(woke, Ok(Ok(()))),
        "changed() resolves after a write: {woke:?}"
    );
    assert_eq!(*rx.borrow(), revision(store).await);
}

// ---------------------------------------------------------------------------
// Leases.

pub async fn leased_keys_expire(store: &dyn Store) {
    let lease = store
        .grant_lease(Duration::from_millis(300))
        .await
        .expect("grant_lease");
    txn(
        store,
        Txn {
            success: vec![
                leased_put_op("/l/a", b"v", lease),
                leased_put_op("/l/b", b"v", lease),
            ],
            ..Txn::default()
        },
    )
    .await;
    put(store, "/l/plain", b"v").await;
    assert_eq!(
        get(store, "/l/a").await.expect("written").lease,
        Some(lease)
    );
    let before = revision(store).await;
    assert!(
        eventually!(EXPIRY_LIMIT, keys(store, "/l/").await == ["/l/plain"]),
        "leased keys expire without any call from the client; left: {:?}",
        keys(store, "/l/").await
    );
    assert_eq!(
        revision(store).await,
        before + 1,
        "expiry deletes the lease's keys in one revision"
    );
    let refreshed = store.keep_alive(lease).await;
    assert!(
        matches!(refreshed, Err(StoreError::LeaseNotFound(id)) if id == lease),
        "an expired lease cannot be kept alive: {refreshed:?}"
    );
}

pub async fn expire_leases_reports_deleted_keys(store: &dyn Store) {
    let lease = store
        .grant_lease(Duration::from_millis(100))
        .await
        .expect("grant_lease");
    txn(
        store,
        Txn {
            success: vec![leased_put_op("/e/a", b"v", lease)],
            ..Txn::default()
        },
    )
    .await;
    // The backend's own expiry may get there first; whatever this call
    // reports must be exactly the leased keys it deleted.
    let mut reported = Vec::new();
    let gone = eventually!(EXPIRY_LIMIT, {
        reported.extend(store.expire_leases().await.expect("expire_leases"));
        get(store, "/e/a").await.is_none()
    });
    assert!(gone, "an overdue lease is expired");
    assert!(
        reported.is_empty() || reported == ["/e/a"],
        "expire_leases reports the deleted keys: {reported:?}"
    );
}

pub async fn keep_alive_extends_a_lease(store: &dyn Store) {
    // A long ttl against short refreshes leaves ample slack on a busy machine.
    let ttl = Duration::from_millis(2000);
    let lease = store.grant_lease(ttl).await.expect("grant_lease");
    txn(
        store,
        Txn {
            success: vec![leased_put_op("/k/a", b"v", lease)],
            ..Txn::default()
        },
    )
    .await;
    // Refresh at a twentieth of the ttl for longer than the ttl: the key must live on.
    let until = Instant::now() + ttl * 3 / 2;
    while Instant::now() < until {
        store
            .keep_alive(lease)
            .await
            .expect("keep_alive of a live lease");
        tokio::time::sleep(ttl / 20).await;
    }
    assert!(
        get(store, "/k/a").await.is_some(),
        "a kept-alive lease does not expire"
    );
    assert!(
        eventually!(EXPIRY_LIMIT, get(store, "/k/a").await.is_none()),
        "once keep-alives stop, the lease expires"
    );
}

pub async fn revoke_deletes_keys_at_once(store: &dyn Store) {
    let lease = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant_lease");
    let other = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant_lease");
    assert_ne!(lease, other, "lease ids are unique");
    txn(
        store,
        Txn {
            success: vec![
                leased_put_op("/r/a", b"v", lease),
                leased_put_op("/r/b", b"v", lease),
                leased_put_op("/r/other", b"v", other),
                put_op("/r/plain", b"v"),
            ],
            ..Txn::default()
        },
    )
    .await;
    let before = revision(store).await;
    store.revoke_lease(lease).await.expect("revoke_lease");
    assert_eq!(keys(store, "/r/").await, ["/r/other", "/r/plain"]);
    assert_eq!(
        revision(store).await,
        before + 1,
        "revoking is one revision"
    );
    assert!(matches!(
        store.keep_alive(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        store.revoke_lease(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    store
        .keep_alive(other)
        .await
        .expect("other leases are untouched");
    let empty = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant_lease");
    store
        .revoke_lease(empty)
        .await
        .expect("revoke a lease without keys");
    assert_eq!(
        revision(store).await,
        before + 1,
        "a lease without keys revokes without a write"
    );
}

pub async fn unknown_leases_are_errors(store: &dyn Store) {
    const UNKNOWN: u64 = 987_654_321;
    let before = put(store, "/u/a", b"1").await;
    let result = store
        .txn(Txn {
            success: vec![put_op("/u/a", b"2"), leased_put_op("/u/b", b"v", UNKNOWN)],
            ..Txn::default()
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::LeaseNotFound(id)) if id == UNKNOWN),
        "put with an unknown lease: {result:?}"
    );
    assert_eq!(
        value_of(store, "/u/a").await,
        Some(b"1".to_vec()),
        "nothing of the txn applied"
    );
    assert_eq!(get(store, "/u/b").await, None);
    assert_eq!(revision(store).await, before);
    assert!(matches!(
        store.keep_alive(UNKNOWN).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        store.revoke_lease(UNKNOWN).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

pub async fn reput_without_lease_detaches(store: &dyn Store) {
    let lease = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant_lease");
    txn(
        store,
        Txn {
            success: vec![
                leased_put_op("/d/a", b"1", lease),
                leased_put_op("/d/b", b"1", lease),
            ],
            ..Txn::default()
        },
    )
    .await;
    put(store, "/d/a", b"2").await;
    assert_eq!(get(store, "/d/a").await.expect("exists").lease, None);
    store.revoke_lease(lease).await.expect("revoke_lease");
    assert_eq!(
        keys(store, "/d/").await,
        ["/d/a"],
        "a detached key outlives its old lease"
    );
}

// ---------------------------------------------------------------------------
// Compaction.

pub async fn compaction(store: &dyn Store) {
    put(store, "/c/a", b"a1").await;
    let r2 = put(store, "/c/a", b"a2").await;
    let r3 = put(store, "/c/b", b"b1").await;
    let r4 = store
        .delete("/c/b")
        .await
        .expect("delete")
        .expect("existed");
    let r5 = put(store, "/c/c", b"c1").await;
    store.compact(r3).await.expect("compact");

    let old = store.get_at("/c/a", r2).await;
    assert!(
        matches!(old, Err(StoreError::Compacted { requested, oldest }) if requested == r2 && oldest == r3),
        "get_at before the compaction point: {old:?}"
    );
    assert!(matches!(
        store.list_at("/c/", r2).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        store.changes_since("/c/", r2).await,
        Err(StoreError::Compacted { .. })
    ));

    let at_r3 = store
        .list_at("/c/", r3)
        .await
        .expect("list_at the compaction point");
    let at_r3: Vec<(&str, &[u8])> = at_r3
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    assert_eq!(at_r3, [("/c/a", &b"a2"[..]), ("/c/b", &b"b1"[..])]);
    let a = store
        .get_at("/c/a", r4)
        .await
        .expect("get_at")
        .expect("a exists");
    assert_eq!(
        (a.mod_revision, a.version),
        (r2, 2),
        "metadata survives compaction"
    );
    assert_eq!(store.get_at("/c/b", r4).await.expect("get_at"), None);
    let events = store
        .changes_since("/c/", r3)
        .await
        .expect("changes after the compaction point");
    let events: Vec<(EventKind, &str)> =
        events.iter().map(|e| (e.kind, e.kv.key.as_str())).collect();
    assert_eq!(
        events,
        [(EventKind::Delete, "/c/b"), (EventKind::Put, "/c/c")]
    );
    assert_eq!(keys(store, "/c/").await, ["/c/a", "/c/c"]);
    assert_eq!(revision(store).await, r5, "compaction is not a write");
    assert_eq!(put(store, "/c/d", b"d1").await, r5 + 1);
}

// ---------------------------------------------------------------------------
// Forgetting the history of one prefix.

/// The store the `forget_history` cases start from: two configuration
/// writes, a neighbour key that shares `/events` without the slash, and
/// event records written, rewritten and deleted; then the history of
/// `/events/` forgotten before the delete.
struct Forgot {
    /// Revisions 1 to 8, in the order written (index 0 is revision r1).
    r: [u64; 8],
    removed: u64,
}

async fn forgot(store: &dyn Store) -> Forgot {
    let r = [
        put(store, "/config/a", b"c1").await,
        put(store, "/events/1", b"e1").await,
        put(store, "/eventsx", b"x1").await,
        put(store, "/events/1", b"e1 again").await,
        put(store, "/config/a", b"c2").await,
        put(store, "/events/2", b"e2").await,
        store
            .delete("/events/1")
            .await
            .expect("delete")
            .expect("existed"),
        put(store, "/events/3", b"e3").await,
    ];
    let removed = store
        .forget_history("/events/", r[6])
        .await
        .expect("forget_history");
    Forgot { r, removed }
}

/// Whether `result` is the refusal of a read at `requested` because the
/// history of `/events/` was forgotten before `oldest`.
fn is_forgotten<T>(result: &crate::Result<T>, requested: u64, oldest: u64) -> bool {
    matches!(
        result,
        Err(StoreError::Forgotten { prefix, requested: r, oldest: o })
            if prefix == "/events/" && *r == requested && *o == oldest
    )
}

pub async fn forget_history_keeps_other_prefixes(store: &dyn Store) {
    let Forgot { r, .. } = forgot(store).await;
    let old = store
        .get_at("/config/a", r[0])
        .await
        .expect("get_at a configuration key before the point")
        .expect("it existed");
    assert_eq!((old.value.as_slice(), old.version), (&b"c1"[..], 1));
    let at = store
        .list_at("/config/", r[3])
        .await
        .expect("list_at /config/");
    assert_eq!(at.len(), 1);
    assert_eq!(at[0].value, b"c1");
    let changes = store
        .changes_since("/config/", 0)
        .await
        .expect("changes_since /config/");
    assert_eq!(
        changes.len(),
        2,
        "every configuration change is still there"
    );
    let neighbour = store
        .get_at("/eventsx", r[2])
        .await
        .expect("a key outside the prefix that shares its text")
        .expect("it existed");
    assert_eq!(neighbour.value, b"x1");
}

pub async fn forget_history_keeps_current_values(store: &dyn Store) {
    let Forgot { r, removed } = forgot(store).await;
    assert_eq!(
        removed, 3,
        "both puts of /events/1 and its delete went; the live keys' rows stay"
    );
    assert_eq!(keys(store, "/events/").await, ["/events/2", "/events/3"]);
    let e2 = get(store, "/events/2").await.expect("/events/2");
    assert_eq!(
        (
            e2.value.as_slice(),
            e2.create_revision,
            e2.mod_revision,
            e2.version
        ),
        (&b"e2"[..], r[5], r[5], 1)
    );
    assert_eq!(
        store
            .get_at("/events/2", r[6])
            .await
            .expect("get_at the point"),
        Some(e2.clone()),
        "reads from the point on are answered as before"
    );
    assert_eq!(store.get_at("/events/1", r[6]).await.expect("get_at"), None);
    assert_eq!(
        store
            .list_at("/events/", r[6])
            .await
            .expect("list_at the point"),
        [e2]
    );
    let after: Vec<(EventKind, String)> = store
        .changes_since("/events/", r[6])
        .await
        .expect("changes since the point")
        .into_iter()
        .map(|e| (e.kind, e.kv.key))
        .collect();
    assert_eq!(after, [(EventKind::Put, "/events/3".to_string())]);
}

pub async fn forget_history_refuses_older_reads(store: &dyn Store) {
    let Forgot { r, .. } = forgot(store).await;
    let (requested, oldest) = (r[5], r[6]);
    let get_at = store.get_at("/events/2", requested).await;
    assert!(
        is_forgotten(&get_at, requested, oldest),
        "get_at before the point: {get_at:?}"
    );
    for prefix in ["/events/", "/events/1", "/", ""] {
        let listed = store.list_at(prefix, requested).await;
        assert!(
            is_forgotten(&listed, requested, oldest),
            "list_at {prefix:?} within or holding the prefix: {listed:?}"
        );
        let changes = store.changes_since(prefix, requested).await;
        assert!(
            is_forgotten(&changes, requested, oldest),
            "changes_since {prefix:?}: {changes:?}"
        );
    }
    let message = store
        .get_at("/events/2", requested)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        message.contains("/events/") && message.contains(&oldest.to_string()),
        "the error names the prefix and the oldest readable revision: {message}"
    );
}

pub async fn forget_history_writes_no_revision(store: &dyn Store) {
    let mut rx = store.subscribe();
    rx.borrow_and_update();
    let Forgot { r, .. } = forgot(store).await;
    rx.borrow_and_update();
    let now = revision(store).await;
    assert_eq!(now, r[7]);
    store
        .forget_history("/events/", now)
        .await
        .expect("forget up to now");
    assert_eq!(revision(store).await, now, "forgetting is not a write");
    assert!(
        !rx.has_changed().expect("store alive"),
        "subscribers see no new revision"
    );
    let future = store.forget_history("/events/", now + 1).await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { requested, current }) if requested == now + 1 && current == now),
        "a point in the future: {future:?}"
    );
    assert_eq!(
        put(store, "/events/4", b"e4").await,
        now + 1,
        "revisions go on"
    );
    let e4 = get(store, "/events/4").await.expect("/events/4");
    assert_eq!((e4.create_revision, e4.version), (now + 1, 1));
}

pub async fn forget_history_is_idempotent(store: &dyn Store) {
    let Forgot { r, .. } = forgot(store).await;
    let before = (
        store.list("/").await.expect("list"),
        store
            .changes_since("/events/", r[6])
            .await
            .expect("changes"),
    );
    assert_eq!(
        store.forget_history("/events/", r[6]).await.expect("again"),
        0,
        "the same point forgets nothing more"
    );
    assert_eq!(
        store.forget_history("/events/", r[2]).await.expect("older"),
        0,
        "an older point forgets nothing more"
    );
    let after = (
        store.list("/").await.expect("list"),
        store
            .changes_since("/events/", r[6])
            .await
            .expect("changes"),
    );
    assert_eq!(before, after);
    assert!(
        is_forgotten(&store.get_at("/events/2", r[5]).await, r[5], r[6]),
        "an older point does not move the point back"
    );
}

/// What a backup reads: the configuration's whole history, and the
/// current values of a prefix whose history was forgotten.
pub async fn export_after_forget_history(store: &dyn Store) {
    let Forgot { r, .. } = forgot(store).await;
    let config = store.export("/config/").await.expect("export /config/");
    assert_eq!(
        config,
        History {
            revision: r[7],
            compacted: 0,
            events: vec![
                put_event("/config/a", b"c1", r[0], r[0], 1),
                put_event("/config/a", b"c2", r[4], r[0], 2),
            ],
        },
        "the configuration history exports whole"
    );
    let current = store
        .list_at("/events/", r[7])
        .await
        .expect("the trimmed prefix read at the current revision");
    assert_eq!(current, store.list("/events/").await.expect("list"));

    let events = store.export("/events/").await.expect("export /events/");
    assert_eq!(
        (events.revision, events.compacted),
        (r[7], r[6]),
        "the forget point counts as compacted"
    );
    let kept: Vec<(&str, u64)> = events
        .events
        .iter()
        .map(|e| (e.kv.key.as_str(), e.kv.mod_revision))
        .collect();
    assert_eq!(kept, [("/events/2", r[5]), ("/events/3", r[7])]);
    assert_eq!(
        store.export("/").await.expect("export /").compacted,
        r[6],
        "an export holding the prefix is compacted there too"
    );
}

// ---------------------------------------------------------------------------
// Export and import (backup and restore).

/// A put event as export reports it.
fn put_event(key: &str, value: &[u8], revision: u64, create: u64, version: u64) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Put,
        kv: KeyValue {
            key: key.to_string(),
            value: value.to_vec(),
            create_revision: create,
            mod_revision: revision,
            version,
            lease: None,
        },
    }
}

/// A delete event as export reports it.
fn delete_event(key: &str, revision: u64) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Delete,
        kv: KeyValue {
            key: key.to_string(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision: revision,
            version: 0,
            lease: None,
        },
    }
}

/// The history of `/x/` used by the import cases: a key updated twice, a
/// key deleted, a key re-created, two changes in one revision, and gaps in
/// the revisions (the gaps were writes to keys outside the prefix).
fn sample_history() -> History {
    History {
        revision: 12,
        compacted: 0,
        events: vec![
            put_event("/x/a", b"a1", 2, 2, 1),
            put_event("/x/b", b"b1", 3, 3, 1),
            put_event("/x/a", b"a2", 5, 2, 2),
            put_event("/x/c", b"c1", 6, 6, 1),
            delete_event("/x/b", 6),
            put_event("/x/b", b"b2", 9, 9, 1),
            put_event("/x/a", b"a3", 10, 2, 3),
        ],
    }
}

pub async fn export_reads_history_at_one_revision(store: &dyn Store) {
    let empty = store.export("/e/").await.expect("export an empty store");
    assert_eq!(empty, History::default(), "an empty store exports nothing");
    let r1 = put(store, "/e/a", b"a1").await;
    put(store, "/other", b"x").await;
    let r3 = txn(
        store,
        Txn {
            success: vec![put_op("/e/b", b"b1"), put_op("/e/a", b"a2")],
            ..Txn::default()
        },
    )
    .await
    .revision;
    let r4 = store
        .delete("/e/b")
        .await
        .expect("delete")
        .expect("existed");
    let r5 = put(store, "/unrelated", b"y").await;
    let exported = store.export("/e/").await.expect("export");
    assert_eq!(
        (exported.revision, exported.compacted),
        (r5, 0),
        "the export is at the store's current revision, writes outside the prefix included"
    );
    assert_eq!(
        exported.events,
        [
            put_event("/e/a", b"a1", r1, r1, 1),
            put_event("/e/b", b"b1", r3, r3, 1),
            put_event("/e/a", b"a2", r3, r1, 2),
            delete_event("/e/b", r4),
        ],
        "every change under the prefix with its metadata, in revision then op order"
    );
    assert_eq!(
        store.changes_since("/e/", 0).await.expect("changes_since"),
        exported.events,
        "without compaction, export and changes_since agree"
    );
}

pub async fn export_keeps_what_compaction_kept(store: &dyn Store) {
    put(store, "/k/a", b"a1").await;
    let r2 = put(store, "/k/a", b"a2").await;
    let r3 = put(store, "/k/b", b"b1").await;
    let r4 = put(store, "/k/a", b"a3").await;
    store.compact(r3).await.expect("compact");
    let exported = store.export("/k/").await.expect("export");
    assert_eq!((exported.revision, exported.compacted), (r4, r3));
    assert_eq!(
        exported.events,
        [
            put_event("/k/a", b"a2", r2, 1, 2),
            put_event("/k/b", b"b1", r3, r3, 1),
            put_event("/k/a", b"a3", r4, 1, 3),
        ],
        "the rows that answer reads from the compaction point on"
    );
}

pub async fn import_preserves_revisions_and_metadata(store: &dyn Store) {
    let history = sample_history();
    let mut rx = store.subscribe();
    store.import(history.clone()).await.expect("import");
    assert_eq!(
        revision(store).await,
        12,
        "the store is at the history's revision"
    );
    assert_eq!(*rx.borrow_and_update(), 12, "subscribers see the import");
    let a = get(store, "/x/a").await.expect("/x/a imported");
    assert_eq!(
        (
            a.value.as_slice(),
            a.create_revision,
            a.mod_revision,
            a.version
        ),
        (&b"a3"[..], 2, 10, 3)
    );
    let b = get(store, "/x/b").await.expect("/x/b re-created");
    assert_eq!((b.create_revision, b.version), (9, 1));
    assert_eq!(keys(store, "/x/").await, ["/x/a", "/x/b", "/x/c"]);
    let old_a = store
        .get_at("/x/a", 5)
        .await
        .expect("get_at")
        .expect("a at 5");
    assert_eq!((old_a.value.as_slice(), old_a.version), (&b"a2"[..], 2));
    assert_eq!(
        store.get_at("/x/b", 7).await.expect("get_at"),
        None,
        "deleted at 6"
    );
    let at_3: Vec<String> = store
        .list_at("/x/", 3)
        .await
        .expect("list_at")
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(at_3, ["/x/a", "/x/b"]);
    assert_eq!(
        store.changes_since("/x/", 0).await.expect("changes_since"),
        history.events,
        "watchers see the same changes as in the original store"
    );
    assert_eq!(
        store.export("/x/").await.expect("export"),
        history,
        "export after import gives back what was imported"
    );
    assert_eq!(
        put(store, "/x/d", b"d1").await,
        13,
        "new writes continue the count"
    );
    let a = txn(
        store,
        Txn {
            success: vec![put_op("/x/a", b"a4")],
            ..Txn::default()
        },
    )
    .await;
    let a4 = get(store, "/x/a").await.expect("a");
    assert_eq!(
        (a.revision, a4.create_revision, a4.version),
        (14, 2, 4),
        "versions continue from the imported ones"
    );
}

pub async fn import_keeps_the_compaction_point(store: &dyn Store) {
    let history = History {
        revision: 8,
        compacted: 5,
        events: vec![
            put_event("/c/a", b"a2", 4, 1, 2),
            put_event("/c/b", b"b1", 7, 7, 1),
        ],
    };
    store.import(history.clone()).await.expect("import");
    assert!(
        matches!(
            store.get_at("/c/a", 4).await,
            Err(StoreError::Compacted {
                requested: 4,
                oldest: 5
            })
        ),
        "reads before the compaction point stay refused"
    );
    let at_5 = store
        .get_at("/c/a", 5)
        .await
        .expect("get_at")
        .expect("a at 5");
    assert_eq!(at_5.value, b"a2");
    assert_eq!(store.export("/c/").await.expect("export"), history);
}

pub async fn import_refuses_a_non_empty_store(store: &dyn Store) {
    put(store, "/existing", b"v").await;
    let refused = store.import(sample_history()).await;
    assert!(
        matches!(&refused, Err(StoreError::Import(m)) if m.contains("not empty")),
        "import into a store with data: {refused:?}"
    );
    assert_eq!(
        keys(store, "/").await,
        ["/existing"],
        "nothing was imported"
    );
    assert_eq!(revision(store).await, 1);
}

pub async fn import_refuses_malformed_history(store: &dyn Store) {
    let mut out_of_order = sample_history();
    out_of_order.events.swap(0, 1);
    let mut beyond = sample_history();
    beyond.revision = 9;
    let mut leased = sample_history();
    leased.events[1].kv.lease = Some(7);
    let mut bad_version = sample_history();
    bad_version.events[2].kv.version = 0;
    let mut bad_compaction = sample_history();
    bad_compaction.compacted = 13;
    let cases = [
        ("out of order", out_of_order, "revision order"),
        ("beyond its revision", beyond, "outside revisions 1 to 9"),
        ("leased key", leased, "lease 7"),
        ("put with version 0", bad_version, "version 0"),
        (
            "compaction after the revision",
            bad_compaction,
            "compaction point 13",
        ),
    ];
    for (what, history, expected) in cases {
        let refused = store.import(history).await;
        assert!(
            matches!(&refused, Err(StoreError::Import(m)) if m.contains(expected)),
            "{what}: expected an import error mentioning {expected:?}, got {refused:?}"
        );
        assert_eq!(
            revision(store).await,
            0,
            "{what}: a refused import writes nothing"
        );
        assert!(
            keys(store, "/").await.is_empty(),
            "{what}: no key was written"
        );
    }
    store
        .import(sample_history())
        .await
        .expect("the store is still empty and accepts a good history");
}
