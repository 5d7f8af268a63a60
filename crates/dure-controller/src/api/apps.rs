//! `/v1/artifacts`, `/v1/agent/artifacts/{digest}` and
//! `/v1/clusters/{name}/apps…`: artifact upload (streamed to the artifact
//! store, its size limit the controller's `artifact_max_bytes` rather than
//! a fixed body limit of the route table, since it is a setting), the
//! agents' download, and the deploy, rollback and reads of a cluster's
//! applications ([`crate::apps`]).

use super::{Actor, AppState, Body, Path};
use crate::apps::{self, DeployAsk};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dure_api::file_body::FileBody;
use dure_api::{
    AppRollbackRequest, AppVersionView, AppView, ArtifactStored, DeployRequest, DeployStarted,
};
use dure_core::operation::OperationOptions;

pub async fn upload(
    State(app): AppState,
    actor: Actor,
    request: Request,
) -> ApiResult<(StatusCode, Json<ArtifactStored>)> {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = request.into_body();
    if let Err(refusal) = app.artifacts.refuse_length(length) {
        super::drain(body).await;
        return Err(refusal);
    }
    let stored = app.artifacts.store(body).await?;
    tracing::info!(actor = %actor.name(), digest = %stored.digest, "artifact uploaded");
    Ok((StatusCode::CREATED, Json(stored)))
}

pub async fn download(State(app): AppState, Path(digest): Path<String>) -> ApiResult<Response> {
    let path = app.artifacts.path(&digest).ok_or_else(|| {
        ApiError::not_found(format!(
            "artifact `{digest}` is not stored in this controller"
        ))
    })?;
    let body = FileBody::open(&path)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read artifact {}: {e}", path.display())))?;
    let length = body.len();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        axum::body::Body::new(body),
    )
        .into_response())
}

pub async fn list(State(app): AppState, Path(name): Path<String>) -> ApiResult<Json<Vec<AppView>>> {
    apps::list(&app, &name).await.map(Json)
}

pub async fn history(
    State(app): AppState,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<AppVersionView>>> {
    apps::history(&app, &name).await.map(Json)
}

fn options(rolling: bool, batch: Option<u32>) -> OperationOptions {
    OperationOptions {
        rolling,
        batch,
        ..OperationOptions::default()
    }
}

pub async fn deploy(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Body(request): Body<DeployRequest>,
) -> ApiResult<(StatusCode, Json<DeployStarted>)> {
    let started = apps::deploy(
        &app,
        DeployAsk {
            cluster: &name,
            context: &request.context,
            digest: &request.digest,
            options: options(request.rolling, request.batch),
            actor: actor.name(),
            rollback_of: None,
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

pub async fn rollback(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Body(request): Body<AppRollbackRequest>,
) -> ApiResult<(StatusCode, Json<DeployStarted>)> {
    let started = apps::rollback(
        &app,
        &name,
        request.to,
        options(request.rolling, request.batch),
        actor.name(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}
