//! `/v1/clusters`: cluster definitions, members and cluster operations.

use super::{Actor, AppState, Body};
use crate::error::{ApiError, ApiResult};
use crate::operations;
use crate::views::{cluster_view, cluster_view_by_name};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use dure_api::{AddMember, ClusterView, Operation, OperationKind, OperationRequest};
use dure_core::ClusterSpec;

pub async fn list(State(app): AppState) -> Json<Vec<ClusterView>> {
    Json(app.config.read(|d| {
        d.clusters
            .values()
            .map(|c| cluster_view(&app, d, c))
            .collect()
    }))
}

pub async fn show(State(app): AppState, Path(name): Path<String>) -> ApiResult<Json<ClusterView>> {
    Ok(Json(cluster_view_by_name(&app, &name)?))
}

pub async fn create(
    State(app): AppState,
    actor: Actor,
    Body(spec): Body<ClusterSpec>,
) -> ApiResult<(StatusCode, Json<ClusterView>)> {
    let name = spec.name.clone();
    let members = spec.members.join(", ");
    app.config.edit(|d| d.create_cluster(spec)).await?;
    app.events.record(
        &actor.0,
        "api",
        &format!("cluster/{name}"),
        format!("created cluster `{name}` with members {members}"),
    );
    Ok((
        StatusCode::CREATED,
        Json(cluster_view_by_name(&app, &name)?),
    ))
}

pub async fn delete(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Json<ClusterSpec>> {
    let (spec, _) = app.config.edit(|d| d.delete_cluster(&name)).await?;
    app.events.record(
        &actor.0,
        "api",
        &format!("cluster/{name}"),
        format!("deleted cluster `{name}`; its servers are kept"),
    );
    Ok(Json(spec))
}

pub async fn add_member(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Body(member): Body<AddMember>,
) -> ApiResult<Json<ClusterView>> {
    app.config
        .edit(|d| {
            d.add_member(&name, &member.server, member.position)
                .map(|_| ())
        })
        .await?;
    app.events.record(
        &actor.0,
        "api",
        &format!("cluster/{name}"),
        format!("added `{}` to cluster `{name}`", member.server),
    );
    Ok(Json(cluster_view_by_name(&app, &name)?))
}

pub async fn remove_member(
    State(app): AppState,
    actor: Actor,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Json<ClusterView>> {
    app.config
        .edit(|d| d.remove_member(&name, &server).map(|_| ()))
        .await?;
    app.events.record(
        &actor.0,
        "api",
        &format!("cluster/{name}"),
        format!("removed `{server}` from cluster `{name}`"),
    );
    Ok(Json(cluster_view_by_name(&app, &name)?))
}

pub async fn operation(
    State(app): AppState,
    actor: Actor,
    Path((name, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Operation>)> {
    let kind = match action.as_str() {
        "start" => OperationKind::Start,
        "stop" => OperationKind::Stop,
        "kill" => OperationKind::Kill,
        other => {
            return Err(ApiError::not_found(format!(
                "unknown cluster action `{other}`: use start, stop or kill"
            )))
        }
    };
    // The options body is optional: an empty body means the defaults.
    let options: OperationRequest = if body.iter().all(u8::is_ascii_whitespace) {
        OperationRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("operation options are invalid: {e}")))?
    };
    let op = operations::begin(&app, &name, kind, options, &actor.0)?;
    Ok((StatusCode::ACCEPTED, Json(op)))
}
