//! Housekeeping: keeps the store from growing without bound. The store
//! keeps every revision of every key, and the controller rewrites some keys
//! all the time; housekeeping runs once at start and then every
//! `housekeeping_interval`, and each pass
//!
//! - trims the event log to the newest `event_retention` events
//!   ([`EventLog::trim`](crate::events::EventLog::trim)) and the operation
//!   records to the newest `operation_retention`, never a running one
//!   ([`Operations::trim`](crate::operations::Operations::trim));
//! - keeps each cluster's newest `app_versions_kept` application versions
//!   and every one still in use, and deletes the stored artifacts only the
//!   deleted versions named ([`Apps::trim`](crate::apps::Apps::trim));
//! - forgets the past values of the controller's own records
//!   ([`FORGET_PREFIXES`]: events, intents, operation progress, change
//!   sets), whose history nobody reads.
//!
//! Architecture invariant: the history of the configuration (`/config/`
//! and `/config-history/`) is never trimmed: rollback, `config show --rev`
//! and domain packs read it.
//!
//! A pass forgets history only before the revision the previous pass saw
//! (the first pass: the revision at start), not before the revision of the
//! moment: a reader that picked its revision just before, such as a domain
//! pack reading the intents at the revision of its configuration export,
//! is still answered. A failed step is logged and retried at the next pass;
//! it never stops the controller.

use crate::app::App;
use dure_store::Revision;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Prefixes of the records whose history housekeeping forgets. Never the
/// configuration's (see the module docs).
pub const FORGET_PREFIXES: [&str; 4] = [
    crate::events::PREFIX,
    "/intents/",
    crate::operations::PREFIX,
    "/changesets/",
];

/// How housekeeping runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Housekeeping {
    /// How many of the newest events to keep; 0 keeps all.
    pub event_retention: u64,
    /// How many of the newest operation records to keep; 0 keeps all.
    pub operation_retention: u64,
    /// How many application versions of each cluster to keep; 0 keeps all.
    pub app_versions_kept: u64,
    /// Time between two passes.
    pub interval: Duration,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub events_deleted: u64,
    pub operations_deleted: u64,
    pub history_rows_forgotten: u64,
    pub app_versions_deleted: u64,
    pub artifacts_deleted: u64,
    /// Steps that failed (each one logged).
    pub failures: u32,
}

/// Starts housekeeping: a pass at once, then one every interval, until the
/// task is aborted.
pub fn spawn(app: Arc<App>, settings: Housekeeping) -> JoinHandle<()> {
    tokio::spawn(run(app, settings))
}

async fn run(app: Arc<App>, settings: Housekeeping) {
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut before = current_revision(&app).await.unwrap_or(0);
    loop {
        ticker.tick().await;
        let seen = current_revision(&app).await.unwrap_or(before);
        let worker = app.clone();
        // A task of its own, so a panicking pass is reported, not fatal.
        let done = tokio::spawn(async move { pass(&worker, &settings, before).await }).await;
        if let Err(error) = done {
            tracing::error!(%error, "housekeeping pass did not finish");
        }
        before = seen;
    }
}

async fn current_revision(app: &App) -> Option<Revision> {
    app.store
        .current_revision()
        .await
        .inspect_err(|error| tracing::warn!(%error, "housekeeping cannot read the store revision"))
        .ok()
}

/// One pass: trims the event log and the operation records to their
/// retention, then forgets the history of [`FORGET_PREFIXES`] before
/// `before`. Each step's failure is logged and leaves the other steps to
/// run.
pub async fn pass(app: &App, settings: &Housekeeping, before: Revision) -> Report {
    let mut report = Report::default();
    let event_retention = settings.event_retention;
    match app.events.trim(event_retention).await {
        Ok(deleted) => report.events_deleted = deleted,
        Err(error) => {
            report.failures += 1;
            tracing::warn!(%error, event_retention, "cannot trim the event log");
        }
    }
    let operation_retention = settings.operation_retention;
    match app.operations.trim(operation_retention).await {
        Ok(deleted) => report.operations_deleted = deleted,
        Err(error) => {
            report.failures += 1;
            tracing::warn!(%error, operation_retention, "cannot trim the operation records");
        }
    }
    match app
        .apps
        .trim(settings.app_versions_kept, &app.artifacts)
        .await
    {
        Ok((versions, artifacts)) => {
            report.app_versions_deleted = versions;
            report.artifacts_deleted = artifacts;
        }
        Err(error) => {
            report.failures += 1;
            tracing::warn!(error = %error.message, app_versions_kept = settings.app_versions_kept, "cannot trim the application versions");
        }
    }
    for prefix in FORGET_PREFIXES {
        match app.store.forget_history(prefix, before).await {
            Ok(rows) => report.history_rows_forgotten += rows,
            Err(error) => {
                report.failures += 1;
                tracing::warn!(%error, prefix, before, "cannot forget history");
            }
        }
    }
    log(&report, settings, before);
    report
}

fn log(report: &Report, settings: &Housekeeping, before: Revision) {
    let Report {
        events_deleted,
        operations_deleted,
        history_rows_forgotten,
        app_versions_deleted,
        artifacts_deleted,
        failures,
    } = *report;
    let event_retention = settings.event_retention;
    let operation_retention = settings.operation_retention;
    if events_deleted > 0
        || operations_deleted > 0
        || history_rows_forgotten > 0
        || app_versions_deleted > 0
    {
        tracing::info!(
            app_versions_deleted,
            artifacts_deleted,
            events_deleted,
            event_retention,
            operations_deleted,
            operation_retention,
            history_rows_forgotten,
            before,
            failures,
            "housekeeping trimmed the store"
        );
    } else {
        tracing::debug!(
            event_retention,
            operation_retention,
            before,
            failures,
            "housekeeping found nothing to trim"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_repo::Author;
    use crate::events::EventLog;
    use crate::testing::{app_in, node, populate};
    use dure_api::EventQuery;
    use dure_core::Intent;

    fn keep(events: u64, operations: u64) -> Housekeeping {
        Housekeeping {
            event_retention: events,
            operation_retention: operations,
            app_versions_kept: 0,
            interval: Duration::from_secs(60),
        }
    }

    async fn newest(app: &App, count: usize) -> Vec<u64> {
        let query = EventQuery {
            last: Some(count),
            ..EventQuery::default()
        };
        let events = app.events.list(&query).await.expect("events");
        events.iter().map(|e| e.seq).collect()
    }

    #[tokio::test]
    async fn retention_keeps_exactly_the_newest_events_and_numbers_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        for i in 1..=2500 {
            app.events
                .record("test", "test", "x", format!("event {i}"))
                .await;
        }
        let before = app.store.current_revision().await.expect("revision");
        let report = pass(&app, &keep(700, 0), before).await;
        assert_eq!(report.events_deleted, 1800);
        assert_eq!(report.failures, 0);
        assert_eq!(
            newest(&app, 1000).await,
            (1801..=2500).collect::<Vec<u64>>()
        );
        let from_start = app
            .events
            .list(&EventQuery {
                limit: Some(2),
                ..EventQuery::default()
            })
            .await
            .expect("events");
        assert_eq!(from_start.first().map(|e| e.seq), Some(1801));
        assert_eq!(
            app.store
                .list(crate::events::PREFIX)
                .await
                .expect("list")
                .len(),
            700,
            "the trimmed keys are gone from the store"
        );
        assert_eq!(
            pass(&app, &keep(700, 0), before).await.events_deleted,
            0,
            "nothing more"
        );
        assert_eq!(
            pass(&app, &keep(0, 0), before).await.events_deleted,
            0,
            "0 keeps all"
        );

        app.events.record("test", "test", "x", "after a trim").await;
        let reopened = EventLog::open(app.store.clone(), app.watch.clone())
            .await
            .expect("reopen");
        reopened
            .record("test", "test", "x", "after a restart")
            .await;
        let query = EventQuery {
            last: Some(3),
            ..EventQuery::default()
        };
        let seqs: Vec<u64> = reopened
            .list(&query)
            .await
            .expect("events")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [2500, 2501, 2502], "numbers are never reused");
        let all = reopened.list(&EventQuery::default()).await.expect("events");
        assert_eq!(all.first().map(|e| e.seq), Some(1801));
    }

    #[tokio::test]
    async fn configuration_history_survives_housekeeping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        populate(&app).await;
        let old = app.config.revision();
        for i in 2..=4 {
            app.config
                .edit(Author::new("admin", format!("node n{i}")), |d| {
                    d.put_node(node(&format!("n{i}")))
                })
                .await
                .expect("saved");
            app.set_intent("web1", Intent::Run, "admin")
                .await
                .expect("intent");
            app.set_intent("web1", Intent::Stop, "admin")
                .await
                .expect("intent");
        }
        let history_before = app.config.history(100).await.expect("history");
        let now = app.store.current_revision().await.expect("revision");
        let report = pass(&app, &keep(1, 1), now).await;
        assert!(report.history_rows_forgotten > 0, "{report:?}");
        assert_eq!(report.failures, 0);

        assert_eq!(
            app.config.history(100).await.expect("history"),
            history_before
        );
        let (docs, _) = app
            .config
            .documents_at(Some(old))
            .await
            .expect("an old revision");
        assert!(docs.keys().all(|path| !path.starts_with("/nodes/n2")));
        let target = crate::config_repo::domain_of(&docs).expect("domain");
        crate::changes::replace(&app, Author::new("admin", "rollback"), target, false, true)
            .await
            .expect("rollback");
        assert!(app.config.read(|d| d.node("n2").is_err()), "rolled back");
        let intent = app
            .store
            .get("/intents/web1")
            .await
            .expect("get")
            .expect("kept");
        assert!(!intent.value.is_empty(), "current intents stay");
        assert!(
            app.store.get_at("/intents/web1", old).await.is_err(),
            "the intents' past is forgotten"
        );
    }
}
