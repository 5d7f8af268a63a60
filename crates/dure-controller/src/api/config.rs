//! `/v1/config/...`: the saved configuration as a whole: its history, its
//! documents of any version, differences between versions, rollback and
//! declarative apply of a whole tree. Every number a caller passes here is
//! a configuration version (see [`crate::history`]).

use super::{Actor, AppState, Body, Query};
use crate::changes::{self, document_changes, domain_of_tree, tree_of};
use crate::config_repo::{domain_of, Author};
use crate::error::ApiResult;
use crate::history::MAX_HISTORY;
use axum::extract::State;
use axum::Json;
use dure_api::{
    ApplyQuery, DiffQuery, DocumentChange, DocumentTree, DocumentsQuery, HistoryQuery,
    RawDocumentTree, RevisionInfo, RollbackRequest, SaveResult,
};
use dure_core::changeset::differences;

/// The largest tree `POST /v1/config/apply` takes: a whole domain of
/// thousands of nodes with tens of servers each is tens of megabytes of
/// JSON, far above the default body limit other calls keep.
pub const MAX_TREE_BYTES: usize = 64 << 20;

pub async fn history(
    State(app): AppState,
    Query(query): Query<HistoryQuery>,
) -> ApiResult<Json<Vec<RevisionInfo>>> {
    Ok(Json(
        app.config
            .history(query.limit.unwrap_or(MAX_HISTORY))
            .await?,
    ))
}

pub async fn documents(
    State(app): AppState,
    Query(query): Query<DocumentsQuery>,
) -> ApiResult<Json<DocumentTree>> {
    let (docs, at) = app.config.documents_at(query.version).await?;
    Ok(Json(tree_of(&docs, at)?))
}

pub async fn diff(
    State(app): AppState,
    Query(query): Query<DiffQuery>,
) -> ApiResult<Json<Vec<DocumentChange>>> {
    let (from, _) = app.config.documents_at(Some(query.from)).await?;
    let (to, _) = app.config.documents_at(query.to).await?;
    Ok(Json(document_changes(&differences(&from, &to))))
}

pub async fn rollback(
    State(app): AppState,
    actor: Actor,
    Body(request): Body<RollbackRequest>,
) -> ApiResult<Json<SaveResult>> {
    let (docs, _) = app.config.documents_at(Some(request.version)).await?;
    let target = domain_of(&docs)?;
    let author = Author::new(
        actor.name(),
        format!("rollback to version {}", request.version),
    );
    Ok(Json(
        changes::replace(&app, author, target, false, true).await?,
    ))
}

pub async fn apply(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<ApplyQuery>,
    Body(tree): Body<RawDocumentTree>,
) -> ApiResult<Json<SaveResult>> {
    let target = domain_of_tree(&tree)?;
    drop(tree);
    let message = query.message.unwrap_or_else(|| "apply".to_string());
    let author = Author::new(actor.name(), message);
    Ok(Json(
        changes::replace(&app, author, target, query.dry_run, query.diff).await?,
    ))
}
