//! `/v1/operations`: tracked cluster operations and their progress.

use super::{AppState, Path, Query};
use crate::error::ApiResult;
use axum::extract::State;
use axum::Json;
use dure_api::{Operation, OperationQuery};

pub async fn list(
    State(app): AppState,
    Query(query): Query<OperationQuery>,
) -> ApiResult<Json<Vec<Operation>>> {
    Ok(Json(app.operations.list(&query)?))
}

pub async fn show(State(app): AppState, Path(id): Path<String>) -> ApiResult<Json<Operation>> {
    Ok(Json(app.operations.get(&id)?))
}
