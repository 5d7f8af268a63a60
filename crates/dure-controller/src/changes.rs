//! What a configuration change does: an operator's edit is saved at once
//! as its own revision or staged in the caller's change set; a change set
//! is reviewed, saved as one revision (refused on conflict) or discarded; a
//! whole tree or an old revision replaces the configuration. Every commit is
//! checked on the whole result (the domain rules, and that no running
//! server is deleted), drops the intents of the servers it deletes in the
//! same revision, and is followed by waking the agents of the nodes it
//! touched.

use crate::app::App;
use crate::clock::now_ms;
use crate::config_repo::{deleted_servers, domain_of, Author, Committed, ConfigVersion, Plan};
use crate::error::{ApiError, ApiResult};
use dure_api::{
    ChangeQuery, ChangeSetView, DocumentChange, DocumentTree, RawDocumentTree, SaveResult,
    CHANGE_HEADER, CHANGE_SAVED, CHANGE_STAGED,
};
use dure_core::changeset::{differences, texts, ChangeSet, Difference, Documents};
use dure_core::{Domain, DomainError};
use dure_store::Revision;

/// How a configuration change was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Saved,
    Staged,
}

impl Mode {
    /// How a change that says `save` (or not) is handled here.
    pub fn of(app: &App, save: Option<bool>) -> Mode {
        if save.unwrap_or(app.auto_save) {
            Mode::Saved
        } else {
            Mode::Staged
        }
    }

    /// The `Dure-Change` response header saying so.
    pub fn header(self) -> [(&'static str, &'static str); 1] {
        let value = match self {
            Mode::Saved => CHANGE_SAVED,
            Mode::Staged => CHANGE_STAGED,
        };
        [(CHANGE_HEADER, value)]
    }

    /// The view the answer to the change is read from.
    pub fn view(self) -> View {
        match self {
            Mode::Saved => View::Saved,
            Mode::Staged => View::Changes,
        }
    }
}

/// Which configuration a read shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Saved,
    /// The caller's change set on top of the saved configuration.
    Changes,
}

impl View {
    pub fn from_query(query: &ChangeQuery) -> ApiResult<View> {
        match query.view.as_deref() {
            None | Some("saved") => Ok(View::Saved),
            Some("changes") => Ok(View::Changes),
            Some(other) => Err(ApiError::invalid(format!(
                "view `{other}` is unknown: use `saved` or `changes`"
            ))),
        }
    }
}

/// An operator's configuration edit: who makes it, whether to save it at
/// once, and how the event log describes it.
pub struct Edit<'a> {
    pub actor: &'a str,
    pub save: Option<bool>,
    pub subject: String,
    pub message: String,
}

/// Applies an edit to the saved configuration (a revision of its own) or
/// to the caller's change set, as `save` says or else the controller's
/// default. Either way the result must keep every rule it kept before.
pub async fn edit<T>(
    app: &App,
    edit: Edit<'_>,
    change: impl FnOnce(&mut Domain) -> Result<T, DomainError>,
) -> ApiResult<(T, Mode)> {
    let Edit {
        actor,
        save,
        subject,
        message,
    } = edit;
    if Mode::of(app, save) == Mode::Saved {
        let author = Author::new(actor, message.clone());
        let (value, _) = commit(app, author, |before| {
            let mut after = before.clone();
            let value = change(&mut after)?;
            Ok(Plan::new(after, value))
        })
        .await?;
        app.events.record(actor, "api", &subject, message).await;
        return Ok((value, Mode::Saved));
    }
    let value = stage(app, actor, &message, change).await?;
    app.events
        .record(
            actor,
            "api",
            &subject,
            format!("staged in the change set of `{actor}`: {message}"),
        )
        .await;
    Ok((value, Mode::Staged))
}

/// Runs `f` on the configuration the caller asked to see.
pub async fn read<T>(
    app: &App,
    actor: &str,
    view: View,
    f: impl FnOnce(&Domain) -> T,
) -> ApiResult<T> {
    match view {
        View::Saved => Ok(app.config.read(f)),
        View::Changes => Ok(f(&Workspace::load(app, actor).await?.view)),
    }
}

/// The caller's change set on top of the saved configuration.
struct Workspace {
    saved: Documents,
    revision: Revision,
    changes: ChangeSet,
    view: Domain,
}

impl Workspace {
    async fn load(app: &App, actor: &str) -> ApiResult<Workspace> {
        let (saved, revision) = app.config.snapshot();
        let saved = texts(saved.documents());
        let changes = app
            .changesets
            .load(actor)
            .await?
            .unwrap_or_else(|| ChangeSet::new(revision, now_ms()));
        let view = domain_of(&changes.apply_to(&saved)).map_err(|e| {
            ApiError::conflict(format!(
                "your change set cannot be read on top of the saved configuration ({e}); drop it with `dure changes discard`"
            ))
        })?;
        Ok(Workspace {
            saved,
            revision,
            changes,
            view,
        })
    }

    fn review(&self, app: &App) -> ChangeSetView {
        let staged = self.changes.apply_to(&self.saved);
        let base_revision = if self.changes.is_empty() {
            0
        } else {
            self.changes.base_revision
        };
        ChangeSetView {
            base_version: app.config.version_at(base_revision),
            saved_version: app.config.version_at(self.revision),
            base_revision,
            saved_revision: self.revision,
            changes: document_changes(&differences(&self.saved, &staged)),
            conflicts: self.changes.conflicts(&self.saved),
        }
    }
}

/// Applies an edit to the caller's change set view and stores the result's
/// difference from the saved configuration as the change set.
async fn stage<T>(
    app: &App,
    actor: &str,
    message: &str,
    change: impl FnOnce(&mut Domain) -> Result<T, DomainError>,
) -> ApiResult<T> {
    let _staging = app.changesets.lock().await;
    let mut ws = Workspace::load(app, actor).await?;
    let mut after = ws.view.clone();
    let value = change(&mut after)?;
    refuse(after.new_problems(&ws.view))?;
    let staged_before = ws.changes.documents.clone();
    ws.changes.restage(&ws.saved, &texts(after.documents()));
    if ws.changes.documents != staged_before {
        ws.changes.messages.push(message.to_string());
    }
    app.changesets.store(actor, &ws.changes).await?;
    Ok(value)
}

/// `GET /v1/changes`: what saving the caller's change set would change.
pub async fn review(app: &App, actor: &str) -> ApiResult<ChangeSetView> {
    Ok(Workspace::load(app, actor).await?.review(app))
}

/// Drops the caller's change set; returns what it held.
pub async fn discard(app: &App, actor: &str) -> ApiResult<ChangeSetView> {
    let _staging = app.changesets.lock().await;
    // An unreadable change set can still be dropped: that is the way out.
    let dropped = Workspace::load(app, actor)
        .await
        .map(|ws| ws.review(app))
        .unwrap_or_else(|_| ChangeSetView {
            base_version: 0,
            saved_version: app.config.saved().version,
            base_revision: 0,
            saved_revision: app.config.revision(),
            changes: Vec::new(),
            conflicts: Vec::new(),
        });
    app.changesets.discard(actor).await?;
    if !dropped.changes.is_empty() {
        app.events
            .record(
                actor,
                "config",
                "config",
                format!(
                    "discarded the change set of `{actor}` ({} document(s))",
                    dropped.changes.len()
                ),
            )
            .await;
    }
    Ok(dropped)
}

/// Saves the caller's change set on top of the current saved configuration
/// as one revision, refused when the saved configuration changed one of the
/// staged documents since it was staged.
pub async fn save(app: &App, actor: &str, message: Option<String>) -> ApiResult<SaveResult> {
    let _staging = app.changesets.lock().await;
    let Some(changes) = app.changesets.load(actor).await? else {
        let saved = app.config.saved();
        return Ok(SaveResult {
            version: saved.version,
            revision: saved.revision,
            changes: Vec::new(),
            message: "nothing to save: your change set is empty".into(),
        });
    };
    let message = message.unwrap_or_else(|| match changes.messages.as_slice() {
        [] => "save change set".to_string(),
        staged => staged.join("; "),
    });
    let author = Author::new(actor, message);
    let (_, committed) = commit(app, author, |before| {
        let saved = texts(before.documents());
        let conflicts = changes.conflicts(&saved);
        if !conflicts.is_empty() {
            return Err(ApiError::conflict(format!(
                "cannot save: the saved configuration changed {} since your change set began at version {}; discard the change set (`dure changes discard`) and stage your edits again",
                conflicts.join(", "),
                app.config.version_at(changes.base_revision)
            )));
        }
        let after = domain_of(&changes.apply_to(&saved))?;
        let mut plan = Plan::new(after, ());
        plan.also.push(app.changesets.drop_op(actor));
        Ok(plan)
    })
    .await?;
    Ok(saved_result(app, actor, &committed, "saved the change set", true).await)
}

/// Replaces the whole configuration with `target` as one revision, or with
/// `dry_run` only says what that would change; the answer carries each
/// changed document's unified diff only when `diff` asks for it.
pub async fn replace(
    app: &App,
    author: Author,
    target: Domain,
    dry_run: bool,
    diff: bool,
) -> ApiResult<SaveResult> {
    if dry_run {
        let (before, revision) = app.config.snapshot();
        check(app, &before, &target)?;
        let diffs = differences(&texts(before.documents()), &texts(target.documents()));
        return Ok(SaveResult {
            version: app.config.version_at(revision),
            revision,
            message: format!(
                "dry run: this would change {} document(s); nothing was saved",
                diffs.len()
            ),
            changes: wire_changes(&diffs, diff),
        });
    }
    let actor = author.actor.clone();
    let what = author.message.clone();
    let (_, committed) = commit(app, author, |_| Ok(Plan::new(target, ()))).await?;
    Ok(saved_result(app, &actor, &committed, &what, diff).await)
}

/// Reads an applied tree as a whole configuration, each document straight
/// from its text; errors name the document path and the field.
pub fn domain_of_tree(tree: &RawDocumentTree) -> ApiResult<Domain> {
    Ok(Domain::from_documents(
        tree.documents
            .iter()
            .map(|(p, doc)| (p.as_str(), doc.get().as_bytes())),
    )?)
}

/// Turns documents into a tree of JSON values.
pub fn tree_of(docs: &Documents, at: ConfigVersion) -> ApiResult<DocumentTree> {
    let documents = docs
        .iter()
        .map(|(path, text)| {
            serde_json::from_str(text)
                .map(|value| (path.clone(), value))
                .map_err(|e| {
                    ApiError::internal(format!("stored document `{path}` is not JSON: {e}"))
                })
        })
        .collect::<ApiResult<_>>()?;
    Ok(DocumentTree {
        version: at.version,
        revision: at.revision,
        documents,
    })
}

/// The wire form of differences.
pub fn document_changes(diffs: &[Difference]) -> Vec<DocumentChange> {
    wire_changes(diffs, true)
}

/// The wire form of differences, with each one's unified diff or, without
/// `diff`, only what changed: the diffs of a whole-domain save are
/// megabytes that a caller listing the changed documents never reads.
fn wire_changes(diffs: &[Difference], diff: bool) -> Vec<DocumentChange> {
    diffs
        .iter()
        .map(|d| DocumentChange {
            path: d.path.clone(),
            kind: d.kind(),
            diff: if diff { d.unified() } else { String::new() },
        })
        .collect()
}

/// Rewrites "does not exist" for a server or cluster the caller has only
/// staged, so the operator learns to save it rather than to create it.
pub async fn explain_unsaved(
    app: &App,
    actor: &str,
    error: ApiError,
    kind: &str,
    name: &str,
    staged: impl FnOnce(&Domain) -> bool,
) -> ApiError {
    if error.status != axum::http::StatusCode::NOT_FOUND {
        return error;
    }
    match Workspace::load(app, actor).await {
        Ok(ws) if staged(&ws.view) => ApiError::not_found(format!(
            "{kind} `{name}` is staged in your change set and not saved: save it first with `dure changes save`"
        )),
        _ => error,
    }
}

/// Commits a plan after checking its whole result, with the intents of the
/// servers it deletes dropped in the same revision (a later server of the
/// same name starts with none), then wakes the agents of the nodes it
/// touched.
async fn commit<T>(
    app: &App,
    author: Author,
    plan: impl FnOnce(&Domain) -> ApiResult<Plan<T>>,
) -> ApiResult<(T, Committed)> {
    let (value, committed) = {
        let turn = app.config.writer().await;
        let (value, committed) = turn
            .commit(author, |before| {
                let mut plan = plan(before)?;
                check(app, before, &plan.after)?;
                let deleted = deleted_servers(before, &plan.after);
                plan.also
                    .extend(deleted.iter().map(|server| app.intents.drop_op(server)));
                Ok(plan)
            })
            .await?;
        app.intents.forget(&turn, &committed.deleted_servers);
        (value, committed)
    };
    app.desired.bump(&committed.nodes, committed.revision);
    if !committed.differences.is_empty() {
        app.watch.bump(crate::watch::CONFIGURATION);
    }
    Ok((value, committed))
}

/// Refuses a result that breaks a rule `before` kept, or that deletes a
/// running server or moves it to another node (its process would be left
/// running on the old node with nobody managing it).
fn check(app: &App, before: &Domain, after: &Domain) -> ApiResult<()> {
    refuse(after.new_problems(before))?;
    let busy: Vec<String> = before
        .servers()
        .values()
        .filter_map(|s| {
            let change = match after.servers().get(&s.name) {
                None => "delete".to_string(),
                Some(moved) if moved.node != s.node => {
                    format!("move to node `{}`", moved.node)
                }
                Some(_) => return None,
            };
            app.server_busy(s)
                .map(|state| format!("`{}` ({state}; {change})", s.name))
        })
        .collect();
    if busy.is_empty() {
        return Ok(());
    }
    Err(ApiError::conflict(format!(
        "this would delete or move running server(s) {}: stop them first (`dure server stop NAME`)",
        busy.join(", ")
    )))
}

/// Turns rule violations into one error (see [`ApiError::from_problems`]).
fn refuse(problems: Vec<DomainError>) -> ApiResult<()> {
    ApiError::from_problems(&problems).map_or(Ok(()), Err)
}

/// The answer of a save, apply or rollback (with each unified diff when
/// `diff` says so), with its event.
async fn saved_result(
    app: &App,
    actor: &str,
    committed: &Committed,
    what: &str,
    diff: bool,
) -> SaveResult {
    let count = committed.differences.len();
    let message = if count == 0 {
        "nothing to save: the saved configuration already matches".to_string()
    } else {
        format!("saved {count} document(s) as version {}", committed.version)
    };
    if count > 0 {
        app.events
            .record(actor, "config", "config", format!("{what}: {message}"))
            .await;
    }
    SaveResult {
        version: committed.version,
        revision: committed.revision,
        changes: wire_changes(&committed.differences, diff),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intents::ServerIntent;
    use crate::testing::{app_in, populate, server};
    use dure_core::Intent;
    use dure_store::EventKind;

    #[test]
    fn refused_changes_keep_each_problems_class_and_message() {
        let exists = DomainError::AlreadyExists {
            kind: dure_core::NameKind::Node,
            name: "n1".into(),
        };
        let error = ApiError::from(exists.clone());
        assert_eq!(
            (error.status, error.code),
            (axum::http::StatusCode::CONFLICT, "conflict")
        );
        assert_eq!(error.message, "node `n1` already exists");
        let missing = DomainError::NotFound {
            kind: dure_core::NameKind::Server,
            name: "w".into(),
        };
        assert_eq!(
            ApiError::from(missing).status,
            axum::http::StatusCode::NOT_FOUND
        );
        let own = DomainError::OwnBackup { node: "n1".into() };
        assert_eq!(ApiError::from(own.clone()).code, "invalid");

        assert_eq!(refuse(Vec::new()).err(), None);
        let both = refuse(vec![exists.clone(), own]).expect_err("an error");
        assert_eq!(both.code, "invalid", "any invalid problem makes it invalid");
        assert_eq!(
            both.message,
            "node `n1` already exists; node `n1` cannot be its own backup"
        );
        let one = refuse(vec![exists]).expect_err("an error");
        assert_eq!(one.code, "conflict");
    }

    fn saved_edit(message: &str) -> Edit<'static> {
        Edit {
            actor: "admin",
            save: Some(true),
            subject: "server/web2".into(),
            message: message.into(),
        }
    }

    #[tokio::test]
    async fn deleting_a_server_drops_its_intent_in_the_same_revision() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        populate(&app).await;
        app.set_intent("web2", Intent::Stop, "admin")
            .await
            .expect("intent");
        let before = app.store.current_revision().await.expect("revision");
        edit(&app, saved_edit("delete web2"), |d| {
            d.delete_server("web2").map(|_| ())
        })
        .await
        .expect("deleted");
        let revision = app.config.revision();
        let dropped: Vec<_> = app
            .store
            .changes_since("/intents/", before)
            .await
            .expect("changes")
            .into_iter()
            .map(|e| (e.kind, e.kv.key, e.kv.mod_revision))
            .collect();
        assert_eq!(
            dropped,
            [(EventKind::Delete, "/intents/web2".to_string(), revision)]
        );
        assert_eq!(app.intents.get("web2"), ServerIntent::default());

        // A new server of the same name starts with no intent.
        edit(&app, saved_edit("create web2"), |d| {
            d.create_server(server("web2", "n1", 9002))
        })
        .await
        .expect("created");
        assert_eq!(app.intents.get("web2"), ServerIntent::default());
    }
}
