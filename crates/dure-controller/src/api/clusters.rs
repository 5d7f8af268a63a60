//! `/v1/clusters`: cluster definitions, members and cluster operations.
//! Reads (with members and their states) are blocking queries
//! ([`crate::watch`]).

use super::{Actor, AppState, Body, OptionalBody, Path, Query};
use crate::changes::{self, Edit, View};
use crate::error::{ApiError, ApiResult};
use crate::operations;
use crate::views::{cluster_view, cluster_view_by_name};
use crate::watch::{Blocking, Indexed, Topic};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use dure_api::{AddMember, ChangeQuery, ClusterView, Operation, OperationKind, OperationRequest};
use dure_core::ClusterSpec;

pub async fn list(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<ChangeQuery>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<Vec<ClusterView>>>> {
    let view = View::from_query(&query)?;
    let index = app.watch.wait(&[Topic::Clusters], blocking).await;
    let clusters = changes::read(&app, actor.name(), view, |d| {
        d.clusters
            .values()
            .map(|c| cluster_view(&app, d, c))
            .collect()
    })
    .await?;
    Ok(Indexed(index, Json(clusters)))
}

pub async fn show(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<ClusterView>>> {
    let view = View::from_query(&query)?;
    let index = app.watch.wait(&[Topic::Clusters], blocking).await;
    let cluster = cluster_view_by_name(&app, actor.name(), view, &name).await?;
    Ok(Indexed(index, Json(cluster)))
}

pub async fn create(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<ChangeQuery>,
    Body(spec): Body<ClusterSpec>,
) -> ApiResult<impl IntoResponse> {
    let name = spec.name.clone();
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("cluster/{name}"),
        message: format!(
            "created cluster `{name}` with members {}",
            spec.members.join(", ")
        ),
    };
    let ((), mode) = changes::edit(&app, edit, |d| d.create_cluster(spec)).await?;
    let view = cluster_view_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((StatusCode::CREATED, mode.header(), Json(view)))
}

pub async fn delete(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
) -> ApiResult<impl IntoResponse> {
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("cluster/{name}"),
        message: format!("deleted cluster `{name}`; its servers are kept"),
    };
    let (spec, mode) = changes::edit(&app, edit, |d| d.delete_cluster(&name)).await?;
    Ok((mode.header(), Json(spec)))
}

pub async fn add_member(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
    Body(member): Body<AddMember>,
) -> ApiResult<impl IntoResponse> {
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("cluster/{name}"),
        message: format!("added `{}` to cluster `{name}`", member.server),
    };
    let ((), mode) = changes::edit(&app, edit, |d| {
        d.add_member(&name, &member.server, member.position)
            .map(|_| ())
    })
    .await?;
    let view = cluster_view_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((mode.header(), Json(view)))
}

pub async fn remove_member(
    State(app): AppState,
    actor: Actor,
    Path((name, server)): Path<(String, String)>,
    Query(query): Query<ChangeQuery>,
) -> ApiResult<impl IntoResponse> {
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("cluster/{name}"),
        message: format!("removed `{server}` from cluster `{name}`"),
    };
    let ((), mode) =
        changes::edit(&app, edit, |d| d.remove_member(&name, &server).map(|_| ())).await?;
    let view = cluster_view_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((mode.header(), Json(view)))
}

pub async fn operation(
    State(app): AppState,
    actor: Actor,
    Path((name, action)): Path<(String, String)>,
    OptionalBody(options): OptionalBody<OperationRequest>,
) -> ApiResult<(StatusCode, Json<Operation>)> {
    let kind = OperationKind::from_action(&action).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown cluster action `{action}`: use start, stop, kill or restart"
        ))
    })?;
    let op = match operations::begin(&app, &name, kind, options, actor.name()).await {
        Ok(op) => op,
        Err(e) => {
            return Err(
                changes::explain_unsaved(&app, actor.name(), e, "cluster", &name, |d| {
                    d.clusters.contains_key(&name)
                })
                .await,
            )
        }
    };
    Ok((StatusCode::ACCEPTED, Json(op)))
}
