//! The agent's own HTTP endpoint: `GET /v1/status` (node, version,
//! controller reachability, MANAGED or INDEPENDENT mode, the local copy,
//! every server's observed state, this node's view of its peers and the
//! membership datagrams it refused) and
//! `GET /v1/logs/{server}` (a chunk of a server's log: `?offset=N`,
//! `?lines=N` or `?tail=BYTES`), both behind the
//! same bearer token the agent uses with the controller.

use crate::layout::Layout;
use crate::logs;
use crate::mode::Mode;
use crate::registry::Registry;
use crate::sync::Link;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dure_api::auth::{bearer_token, token_matches};
use dure_api::{routes, AgentStatus, ErrorBody, LogChunk, LogQuery};
use dure_core::{validate_name, NameKind};
use std::sync::Arc;

pub(crate) struct HttpState {
    pub(crate) node: String,
    pub(crate) token: String,
    pub(crate) layout: Layout,
    pub(crate) registry: Arc<Registry>,
    pub(crate) link: Arc<Link>,
    pub(crate) mode: Arc<Mode>,
    pub(crate) membership: Arc<crate::membership::Membership>,
}

pub(crate) fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route(routes::agent::STATUS, get(status))
        .route(routes::agent::LOGS_PATTERN, get(server_logs))
        .fallback(|request: Request| async move {
            ApiError::not_found(format!(
                "no such endpoint on the agent: {} {}",
                request.method(),
                request.uri().path()
            ))
        })
        .method_not_allowed_fallback(|request: Request| async move {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: format!(
                    "{} is not allowed on {}: the agent's endpoints only answer GET",
                    request.method(),
                    request.uri().path()
                ),
            }
        })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// An error answer: `{"error":{"code","message"}}` with its HTTP status.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn not_found(message: String) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message,
        }
    }

    fn invalid(message: String) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid",
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

async fn require_token(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match bearer_token(presented) {
        Some(token) if token_matches(&state.token, token) => next.run(request).await,
        Some(_) => unauthorized(
            "the bearer token is not this agent's token; use the cluster's agent token",
        ),
        None => unauthorized("missing bearer token: send `Authorization: Bearer <token>`"),
    }
}

fn unauthorized(message: &str) -> Response {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: message.to_string(),
    }
    .into_response()
}

async fn status(State(state): State<Arc<HttpState>>) -> Json<AgentStatus> {
    let mode = state.mode.view();
    Json(AgentStatus {
        node: state.node.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        controller_reachable: state.link.reachable(),
        servers: state.registry.observed(),
        mode: mode.mode,
        independent_since_ms: mode.independent_since_ms,
        local_copy_index: mode.local_copy_index,
        local_copy_error: mode.local_copy_error,
        membership_address: Some(state.membership.local_addr().to_string()),
        peers: state.membership.peers(),
        membership_refused: state.membership.refused(),
    })
}

async fn server_logs(
    State(state): State<Arc<HttpState>>,
    server: Result<Path<String>, PathRejection>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<LogChunk>, ApiError> {
    let Path(server) = server.map_err(|rejection| {
        ApiError::invalid(format!(
            "invalid server name in the path: {}",
            rejection.body_text()
        ))
    })?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::invalid(format!(
            "invalid log query: {}; use ?offset=N, ?lines=N or ?tail=BYTES",
            rejection.body_text()
        ))
    })?;
    query.check().map_err(ApiError::invalid)?;
    let unknown =
        || ApiError::not_found(format!("server `{server}` is not on node `{}`", state.node));
    // The name becomes a path: anything but a valid server name is unknown.
    if validate_name(NameKind::Server, &server).is_err() {
        return Err(unknown());
    }
    let path = state.layout.log_path(&server);
    if !state.registry.contains(&server) && !path.exists() {
        return Err(unknown());
    }
    let read = tokio::task::spawn_blocking(move || logs::read_chunk(&path, &query)).await;
    match read {
        Ok(Ok(chunk)) => Ok(Json(chunk)),
        Ok(Err(error)) => Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: format!("cannot read the log of server `{server}`: {error}"),
        }),
        Err(error) => Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: format!("log reader failed: {error}"),
        }),
    }
}
