//! `/v1/operations`: tracked cluster operations and their progress. Reads
//! are blocking queries ([`crate::watch`]): a follower of an operation
//! waits for its next step instead of polling.

use super::{AppState, Path, Query};
use crate::error::ApiResult;
use crate::watch::{Blocking, Indexed, Topic};
use axum::extract::State;
use axum::Json;
use dure_api::{Operation, OperationQuery};

pub async fn list(
    State(app): AppState,
    Query(query): Query<OperationQuery>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<Vec<Operation>>>> {
    let index = app.watch.wait(&[Topic::Operations], blocking).await;
    Ok(Indexed(index, Json(app.operations.list(&query).await?)))
}

pub async fn show(
    State(app): AppState,
    Path(id): Path<String>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<Operation>>> {
    let index = app.watch.wait(&[Topic::Operations], blocking).await;
    Ok(Indexed(index, Json(app.operations.get(&id).await?)))
}
