//! `/v1/changes`: the caller's change set: review, save, discard.

use super::{Actor, AppState, OptionalBody};
use crate::changes;
use crate::error::ApiResult;
use axum::extract::State;
use axum::Json;
use dure_api::{ChangeSetView, SaveRequest, SaveResult};

pub async fn show(State(app): AppState, actor: Actor) -> ApiResult<Json<ChangeSetView>> {
    Ok(Json(changes::review(&app, actor.name()).await?))
}

/// Without a body (or a message) the staged edits' own messages are kept.
pub async fn save(
    State(app): AppState,
    actor: Actor,
    OptionalBody(request): OptionalBody<SaveRequest>,
) -> ApiResult<Json<SaveResult>> {
    Ok(Json(
        changes::save(&app, actor.name(), request.message).await?,
    ))
}

pub async fn discard(State(app): AppState, actor: Actor) -> ApiResult<Json<ChangeSetView>> {
    Ok(Json(changes::discard(&app, actor.name()).await?))
}
