//! `/v1/nodes`: the hosts of the domain.

use super::{Actor, AppState, Body};
use crate::error::{ApiError, ApiResult};
use crate::views::node_view;
use axum::extract::{Path, State};
use axum::Json;
use dure_api::NodeView;
use dure_core::NodeSpec;

pub async fn list(State(app): AppState) -> Json<Vec<NodeView>> {
    Json(
        app.config
            .read(|d| d.nodes.values().map(|n| node_view(&app, d, n)).collect()),
    )
}

pub async fn show(State(app): AppState, Path(name): Path<String>) -> ApiResult<Json<NodeView>> {
    Ok(Json(
        app.config
            .read(|d| d.node(&name).map(|n| node_view(&app, d, n)))?,
    ))
}

pub async fn put(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Body(spec): Body<NodeSpec>,
) -> ApiResult<Json<NodeView>> {
    if spec.name != name {
        return Err(ApiError::invalid(format!(
            "node name in the body (`{}`) differs from the path (`{name}`)",
            spec.name
        )));
    }
    app.config.edit(|d| d.put_node(spec)).await?;
    app.events.record(
        &actor.0,
        "api",
        &format!("node/{name}"),
        format!("saved node `{name}`"),
    );
    show(State(app), Path(name)).await
}

pub async fn delete(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Json<NodeSpec>> {
    let (spec, _) = app.config.edit(|d| d.delete_node(&name)).await?;
    app.events.record(
        &actor.0,
        "api",
        &format!("node/{name}"),
        format!("deleted node `{name}`"),
    );
    Ok(Json(spec))
}
