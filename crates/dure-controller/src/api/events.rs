//! `/v1/events`: the event log. Reads are blocking queries
//! ([`crate::watch`]); `/v1/events/stream` follows it live
//! ([`super::stream`]).

use super::{AppState, Query};
use crate::error::ApiResult;
use crate::watch::{Blocking, Indexed, Topic};
use axum::extract::State;
use axum::Json;
use dure_api::{Event, EventQuery};

pub async fn list(
    State(app): AppState,
    Query(query): Query<EventQuery>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<Vec<Event>>>> {
    let index = app.watch.wait(&[Topic::Events], blocking).await;
    Ok(Indexed(index, Json(app.events.list(&query).await?)))
}
