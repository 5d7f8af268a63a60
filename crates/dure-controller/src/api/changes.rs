//! `/v1/changes`: the caller's change set: review, save, discard.

use super::{Actor, AppState};
use crate::changes;
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::Json;
use dure_api::{ChangeSetView, SaveRequest, SaveResult};

pub async fn show(State(app): AppState, actor: Actor) -> ApiResult<Json<ChangeSetView>> {
    Ok(Json(changes::review(&app, &actor.0)?))
}

pub async fn save(
    State(app): AppState,
    actor: Actor,
    body: axum::body::Bytes,
) -> ApiResult<Json<SaveResult>> {
    // The body is optional: an empty one keeps the staged edits' messages.
    let request: SaveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SaveRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("save request is invalid: {e}")))?
    };
    Ok(Json(changes::save(&app, &actor.0, request.message).await?))
}

pub async fn discard(State(app): AppState, actor: Actor) -> ApiResult<Json<ChangeSetView>> {
    Ok(Json(changes::discard(&app, &actor.0).await?))
}
