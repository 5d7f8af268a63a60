//! `/v1/nodes`: the hosts of the domain. Reads are blocking queries
//! ([`crate::watch`]).

use super::{Actor, AppState, Body, Path, Query};
use crate::changes::{self, Edit, View};
use crate::error::{ApiError, ApiResult};
use crate::views::node_view;
use crate::watch::{Blocking, Indexed, Topic};
use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use dure_api::{ChangeQuery, NodeView};
use dure_core::NodeSpec;

pub async fn list(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<ChangeQuery>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<Vec<NodeView>>>> {
    let view = View::from_query(&query)?;
    let index = app.watch.wait(&[Topic::Nodes], blocking).await;
    let nodes = changes::read(&app, &actor.0, view, |d| {
        d.nodes.values().map(|n| node_view(&app, d, n)).collect()
    })
    .await?;
    Ok(Indexed(index, Json(nodes)))
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
    let node = node_view_by_name(&app, &actor.0, view, &name).await?;
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
        actor: &actor.0,
        save: query.save,
        subject: format!("node/{name}"),
        message: format!("saved node `{name}`"),
    };
    let ((), mode) = changes::edit(&app, edit, |d| d.put_node(spec)).await?;
    let view = node_view_by_name(&app, &actor.0, mode.view(), &name).await?;
    Ok((mode.header(), Json(view)))
}

pub async fn delete(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
) -> ApiResult<impl IntoResponse> {
    let edit = Edit {
        actor: &actor.0,
        save: query.save,
        subject: format!("node/{name}"),
        message: format!("deleted node `{name}`"),
    };
    let (spec, mode) = changes::edit(&app, edit, |d| d.delete_node(&name)).await?;
    Ok((mode.header(), Json(spec)))
}
