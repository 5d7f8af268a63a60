//! `/v1/operations`: tracked cluster operations and their progress.

use super::{AppState, Path};
use crate::error::ApiResult;
use axum::extract::State;
use axum::Json;
use dure_api::Operation;

pub async fn list(State(app): AppState) -> ApiResult<Json<Vec<Operation>>> {
    Ok(Json(app.operations.list()?))
}

pub async fn show(State(app): AppState, Path(id): Path<String>) -> ApiResult<Json<Operation>> {
    Ok(Json(app.operations.get(&id)?))
}
