//! Runs the shared conformance suite against [`SqliteStore`], one `#[test]`
//! per case so a failure names the broken behaviour.

use dure_store::conformance;
use dure_store::{SqliteStore, Store};

/// A fresh store in its own temporary directory; the directory lives as
/// long as the returned guard.
fn fresh_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = SqliteStore::open(&dir.path().join("store.db")).expect("open fresh store");
    (dir, store)
}

async fn run(case: impl AsyncFnOnce(&dyn Store)) {
    let (_dir, store) = fresh_store();
    case(&store).await;
}

macro_rules! conformance_tests {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                run(conformance::$case).await;
            }
        )*

        /// Catches a case added to the suite but not to the list above.
        #[test]
        fn every_case_has_a_test() {
            let listed = [$(stringify!($case)),*];
            let suite: Vec<&str> = conformance::CASES.iter().map(|(name, _)| *name).collect();
            assert_eq!(suite, listed);
        }
    };
}

conformance_tests!(
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
);

#[tokio::test]
async fn run_all_uses_a_fresh_store_per_case() {
    let mut dirs = Vec::new();
    let mut make = || {
        let (dir, store) = fresh_store();
        dirs.push(dir);
        store
    };
    conformance::run_all(&mut make).await;
    assert_eq!(dirs.len(), conformance::CASES.len());
}
