//! `GET /v1/audit`: the newest lines of the audit log (see `crate::audit`)
//! by time, actor and refusal. Admin only, as the route table says.

use super::{AppState, Query};
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::Json;
use dure_api::{AuditEntry, AuditQuery};

pub async fn list(
    State(app): AppState,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let now = crate::clock::now_ms();
    // The files are read on the blocking pool, never on an async worker.
    let lines = tokio::task::spawn_blocking(move || app.audit.read(&query, now))
        .await
        .map_err(|e| ApiError::internal(format!("the audit log read ended: {e}")))?
        .map_err(|e| ApiError::internal(format!("cannot read the audit log: {e}")))?;
    Ok(Json(lines))
}
