//! `/v1/events`: the event log.

use super::{AppState, Query};
use crate::error::ApiResult;
use axum::extract::State;
use axum::Json;
use dure_api::{Event, EventQuery};

pub async fn list(
    State(app): AppState,
    Query(query): Query<EventQuery>,
) -> ApiResult<Json<Vec<Event>>> {
    Ok(Json(app.events.list(&query)?))
}
