//! `/v1/nodes`: the hosts of the domain. Reads are blocking queries
//! ([`crate::watch`]). An operator creates a node ahead of its agent
//! (`POST`), replaces its document (`PUT`) or deletes it; an agent's
//! registration creates the node it names when there is none.
//! `GET …/peers` is the node's own view of its peers' membership.

use super::{Actor, AppState, Body, Path, Query};
use crate::changes::{self, Edit, View};
use crate::error::{ApiError, ApiResult};
use crate::views::node_view;
use crate::watch::{Blocking, Indexed, Topic};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use dure_api::{ChangeQuery, NodeStatus, NodeView};
use dure_core::NodeSpec;

pub async fn list(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<ChangeQuery>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<Vec<NodeView>>>> {
    let view = View::from_query(&query)?;
    let index = app.watch.wait(&[Topic::Nodes], blocking).await;
    let nodes = changes::read(&app, actor.name(), view, |d| {
        d.nodes.values().map(|n| node_view(&app, d, n)).collect()
    })
    .await?;
    Ok(Indexed(index, Json(nodes)))
}

/// `GET /v1/nodes/{name}/peers`: the node's own view of its peers, as its
/// agent last reported it; empty before it did.
pub async fn peers(
    State(app): AppState,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<dure_api::PeerView>>> {
    app.config.read(|d| d.node(&name).map(|_| ()))?;
    Ok(Json(app.runtime.peers_of(&name).unwrap_or_default()))
}

pub async fn show(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<NodeView>>> {
    let view = View::from_query(&query)?;
    let index = app.watch.wait(&[Topic::Nodes], blocking).await;
    let node = node_view_by_name(&app, actor.name(), view, &name).await?;
    Ok(Indexed(index, Json(node)))
}

async fn node_view_by_name(
    app: &crate::app::App,
    actor: &str,
    view: View,
    name: &str,
) -> ApiResult<NodeView> {
    Ok(changes::read(app, actor, view, |d| {
        d.node(name).map(|n| node_view(app, d, n))
    })
    .await??)
}

/// Creates a node; refused when one of that name exists (`PUT` replaces).
pub async fn create(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<ChangeQuery>,
    Body(spec): Body<NodeSpec>,
) -> ApiResult<impl IntoResponse> {
    let name = spec.name.clone();
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("node/{name}"),
        message: format!("created node `{name}`"),
    };
    let ((), mode) = changes::edit(&app, edit, |d| d.create_node(spec)).await?;
    let view = node_view_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((StatusCode::CREATED, mode.header(), Json(view)))
}

pub async fn put(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
    Body(spec): Body<NodeSpec>,
) -> ApiResult<impl IntoResponse> {
    if spec.name != name {
        return Err(ApiError::invalid(format!(
            "node name in the body (`{}`) differs from the path (`{name}`)",
            spec.name
        )));
    }
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("node/{name}"),
        message: format!("saved node `{name}`"),
    };
    let ((), mode) = changes::edit(&app, edit, |d| d.put_node(spec)).await?;
    let view = node_view_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((mode.header(), Json(view)))
}

pub async fn delete(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
) -> ApiResult<impl IntoResponse> {
    // A live agent would register its node again at once: the delete would
    // not last.
    let (status, _, _) = app.runtime.node_status(&name);
    if status == NodeStatus::Online {
        return Err(ApiError::conflict(format!(
            "node `{name}` has a live agent; stop that agent first, then delete the node"
        )));
    }
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("node/{name}"),
        message: format!("deleted node `{name}`"),
    };
    let (spec, mode) = changes::edit(&app, edit, |d| d.delete_node(&name)).await?;
    Ok((mode.header(), Json(spec)))
}
