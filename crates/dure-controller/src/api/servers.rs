//! `/v1/servers`: server definitions, start/stop/kill and logs.

use super::{Actor, AppState, Body, Path, Query};
use crate::app::App;
use crate::changes::{self, Edit, Mode, View};
use crate::drain;
use crate::error::{ApiError, ApiResult};
use crate::views::{server_view, server_view_by_name};
use crate::watch::{Blocking, Indexed, Topic};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use dure_api::{
    ChangeQuery, Client, DeleteServerQuery, LogChunk, LogQuery, NodeStatus, ServerView,
};
use dure_core::{check_expected, Intent, ServerSpec, ServerState};
use std::sync::Arc;
use std::time::Duration;

/// How long `DELETE ?stop=true` waits for the server to be gone.
const DELETE_STOP_WAIT: Duration = Duration::from_secs(15);

pub async fn list(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<ChangeQuery>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<Vec<ServerView>>>> {
    let view = View::from_query(&query)?;
    let index = app.watch.wait(&[Topic::Servers], blocking).await;
    let servers = changes::read(&app, actor.name(), view, |d| {
        d.servers()
            .values()
            .map(|s| server_view(&app, d, s))
            .collect()
    })
    .await?;
    Ok(Indexed(index, Json(servers)))
}

pub async fn show(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<ServerView>>> {
    let view = View::from_query(&query)?;
    let index = app.watch.wait(&[Topic::Servers], blocking).await;
    let server = server_view_by_name(&app, actor.name(), view, &name).await?;
    Ok(Indexed(index, Json(server)))
}

pub async fn create(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<ChangeQuery>,
    Body(spec): Body<ServerSpec>,
) -> ApiResult<impl IntoResponse> {
    let name = spec.name.clone();
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("server/{name}"),
        message: format!("created server `{name}`"),
    };
    let ((), mode) = changes::edit(&app, edit, |d| d.create_server(spec)).await?;
    let view = server_view_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((StatusCode::CREATED, mode.header(), Json(view)))
}

pub async fn replace(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
    Body(spec): Body<ServerSpec>,
) -> ApiResult<impl IntoResponse> {
    if spec.name != name {
        return Err(ApiError::invalid(format!(
            "server name in the body (`{}`) differs from the path (`{name}`); renaming is not supported",
            spec.name
        )));
    }
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("server/{name}"),
        message: format!(
            "updated server `{name}`; a running process picks up the change at its next start"
        ),
    };
    let expect = query.expect.as_deref();
    let (_, mode) = changes::edit(&app, edit, |d| {
        check_expected(|| format!("server `{name}`"), d.server(&name)?, expect)?;
        d.replace_server(spec)
    })
    .await?;
    let view = server_view_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((mode.header(), Json(view)))
}

pub async fn delete(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<DeleteServerQuery>,
    Query(change): Query<ChangeQuery>,
) -> ApiResult<impl IntoResponse> {
    let target = Mode::of(&app, change.save).view();
    let view = server_view_by_name(&app, actor.name(), target, &name).await?;
    // The delete itself refuses a member too, but only after a `?stop=true`
    // would have killed it: refuse before anything is stopped.
    if let Some(cluster) = &view.cluster {
        return Err(ApiError::conflict(format!(
            "server `{name}` is a member of cluster `{cluster}`; remove it from the cluster first"
        )));
    }
    if let Some(state) = app.server_busy(&view.spec) {
        if !query.stop {
            return Err(ApiError::conflict(format!(
                "server `{name}` is {state}; stop it first, or delete with stop (`--stop`, `?stop=true`)"
            )));
        }
        stop_and_wait(&app, &view, &actor).await?;
    }
    let edit = Edit {
        actor: actor.name(),
        save: change.save,
        subject: format!("server/{name}"),
        message: format!("deleted server `{name}`"),
    };
    let (spec, mode) = changes::edit(&app, edit, |d| d.delete_server(&name)).await?;
    Ok((mode.header(), Json(spec)))
}

/// Kills a server and waits until its agent reports it down.
async fn stop_and_wait(app: &Arc<App>, view: &ServerView, actor: &Actor) -> ApiResult<()> {
    let name = &view.spec.name;
    if view.observed.state == ServerState::Unknown {
        return Err(ApiError::conflict(format!(
            "server `{name}` cannot be stopped: node `{}` is unreachable",
            view.spec.node
        )));
    }
    let issued = app.set_intent(name, Intent::Kill, actor.name()).await?;
    let mut changes = app.runtime.subscribe();
    let deadline = tokio::time::Instant::now() + DELETE_STOP_WAIT;
    loop {
        let observed = app.runtime.observed(&view.spec.node, name);
        if observed.generation >= issued.generation && observed.state.is_down() {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return Err(ApiError::conflict(format!(
                "server `{name}` did not stop within {}s (state {}); it was not deleted",
                DELETE_STOP_WAIT.as_secs(),
                observed.state
            )));
        }
    }
}

pub async fn action(
    State(app): AppState,
    actor: Actor,
    Path((name, action)): Path<(String, String)>,
) -> ApiResult<Json<ServerView>> {
    let intent = Intent::from_action(&action).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown server action `{action}`: use start, stop or kill"
        ))
    })?;
    if intent == Intent::Stop {
        drain_before_stop(&app, &name, &actor).await;
    }
    if let Err(e) = app.set_intent(&name, intent, actor.name()).await {
        return Err(
            changes::explain_unsaved(&app, actor.name(), e, "server", &name, |d| {
                d.servers().contains_key(&name)
            })
            .await,
        );
    }
    Ok(Json(
        server_view_by_name(&app, actor.name(), View::Saved, &name).await?,
    ))
}

/// Drains `name` when a balancer routes to its cluster (see
/// [`crate::drain`]), saying how it went in the event log.
async fn drain_before_stop(app: &App, name: &str, actor: &Actor) {
    let Some(target) = drain::target(app, name) else {
        return;
    };
    // A server stop is never cancelled; the sender lives until the drain ends.
    let (_never, mut cancelled) = tokio::sync::watch::channel(false);
    let outcome = drain::drain(app, std::slice::from_ref(&target), &mut cancelled).await;
    if let Some(outcome) = outcome.first() {
        app.events
            .record(
                actor.name(),
                "drain",
                &format!("server/{name}"),
                format!("server `{name}` {} before its stop", outcome.note()),
            )
            .await;
    }
}

/// Reads a server's log from its node's agent, at the endpoint the agent
/// last told (observed state, not configuration).
/// The files Dure writes for a templated server, from the saved
/// configuration (what its agent runs), and whether its running process
/// still runs older ones.
pub async fn config(
    State(app): AppState,
    Path(name): Path<String>,
) -> ApiResult<Json<dure_api::ServerConfig>> {
    let (node, template, files) = app.config.read(|d| {
        let spec = d.server(&name)?;
        let files = d.template_files(&name).unwrap_or_default();
        Ok::<_, dure_core::DomainError>((
            spec.node.clone(),
            spec.template.as_ref().map(|t| t.kind),
            files,
        ))
    })?;
    let restart_needed = app.runtime.observed(&node, &name).restart_needed;
    Ok(Json(dure_api::ServerConfig {
        server: name,
        template,
        files,
        restart_needed,
    }))
}

pub async fn logs(
    State(app): AppState,
    Path(name): Path<String>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Json<LogChunk>> {
    query.check().map_err(ApiError::invalid)?;
    let node = app
        .config
        .read(|d| d.server(&name).map(|s| s.node.clone()))?;
    let (status, _, _) = app.runtime.node_status(&node);
    let endpoint = match (status, app.runtime.agent_endpoint(&node)) {
        (NodeStatus::Online, Some(endpoint)) => endpoint,
        (NodeStatus::Online, None) => {
            return Err(ApiError::unavailable(format!(
                "the agent of node `{node}` has not said where its endpoint is (an older agent tells it when it registers): restart it, or read server `{name}` logs on that host under the agent's data directory"
            )))
        }
        _ => {
            return Err(ApiError::unavailable(format!(
                "node `{node}` is {status}; server `{name}` logs are on that host under the agent's data directory"
            )))
        }
    };
    // The agent's endpoint is HTTPS with its node certificate; the
    // controller shows its own client certificate, never a token.
    let tls = app.agent_tls.as_ref().ok_or_else(|| {
        ApiError::unavailable(format!(
            "this controller cannot call agents' endpoints (it serves plain HTTP or holds no CA key); server `{name}` logs are on node `{node}` under the agent's data directory"
        ))
    })?;
    let agent = Client::with_tls(
        &format!("https://{}", endpoint.authority()),
        "",
        Some(&tls.for_node(&node)),
    );
    agent
        .agent_logs(&name, &query)
        .await
        .map(Json)
        .map_err(|e| match e.status() {
            Some(404) => {
                ApiError::not_found(format!("server `{name}` has no log yet on node `{node}`"))
            }
            _ => ApiError::unavailable(format!("cannot read logs from node `{node}`: {e}")),
        })
}
