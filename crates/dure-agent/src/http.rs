//! The agent's own HTTP endpoint: `GET /v1/status` (node, version,
//! controller reachability, MANAGED or INDEPENDENT mode, the local copy,
//! every server's observed state, this node's view of its peers and the
//! membership datagrams it refused) and
//! `GET /v1/logs/{server}` (a chunk of a server's log: `?offset=N`,
//! `?lines=N` or `?tail=BYTES`). An agent with a node certificate serves
//! them over HTTPS with it and lets in only the controller's certificate
//! (`dure:controller`, from the domain CA) or a token the controller says
//! is an operator's or admin's; an agent started with a token (`--token`)
//! serves plain HTTP behind that token.

use crate::layout::Layout;
use crate::logs;
use crate::mode::Mode;
use crate::registry::Registry;
use crate::sync::Link;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::ConnectInfo;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dure_api::auth::{bearer_token, token_matches};
use dure_api::identity::{cert_identity, CertIdentity};
use dure_api::tls_listener::Peer;
use dure_api::{routes, AgentStatus, ErrorBody, LogChunk, LogQuery};
use dure_core::access::Permission;
use dure_core::{validate_name, NameKind};
use std::sync::Arc;

/// Who may call the endpoint.
pub(crate) enum EndpointAuth {
    /// The agent's own bearer token (an agent started with `--token`).
    Token(String),
    /// The controller's certificate, or a token the controller (reached
    /// through `controller`) says has role operator or admin.
    Certificates { controller: dure_api::Client },
}

pub(crate) struct HttpState {
    pub(crate) node: String,
    pub(crate) auth: EndpointAuth,
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
    let token = bearer_token(presented).filter(|t| !t.is_empty());
    let refusal = match &state.auth {
        EndpointAuth::Token(own) => match token {
            Some(token) if !own.is_empty() && token_matches(own, token) => None,
            Some(_) => Some(unauthorized(
                "the bearer token is not this agent's token; use the cluster's agent token",
            )),
            None => Some(unauthorized(
                "missing bearer token: send `Authorization: Bearer <token>`",
            )),
        },
        EndpointAuth::Certificates { controller } => {
            let shown = request
                .extensions()
                .get::<ConnectInfo<Peer>>()
                .and_then(|info| info.0.client_cert.as_ref())
                .and_then(|der| cert_identity(der.as_ref()));
            match (shown, token) {
                (_, Some(token)) => vouched(controller, token).await.err(),
                (Some(CertIdentity::Controller), None) => None,
                (Some(CertIdentity::Node(node)), None) => Some(refuse(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("the node certificate of `{node}` does not reach another agent's endpoint: only the controller's certificate or an operator token does"),
                )),
                (None, None) => Some(unauthorized(
                    "this endpoint needs the controller's certificate or an operator's token: send `Authorization: Bearer <token>`",
                )),
            }
        }
    };
    match refusal {
        None => next.run(request).await,
        Some(refusal) => refusal,
    }
}

/// Whether the controller says `token` has role operator or admin: the
/// agent keeps no tokens, the controller does (`GET /v1/whoami`).
async fn vouched(controller: &dure_api::Client, token: &str) -> Result<(), Response> {
    match controller.clone().with_token(token).whoami().await {
        Ok(me) if me.role.allows(Permission::Operate) => Ok(()),
        Ok(me) => Err(refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token `{}` has role {}, which may not read an agent's endpoint: that needs role operator",
                me.id, me.role
            ),
        )),
        Err(error) => match error.status() {
            Some(401 | 403) => Err(refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("the controller refused the token: {error}"),
            )),
            _ => Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("cannot check the token with the controller: {error}"),
            )),
        },
    }
}

fn refuse(status: StatusCode, code: &'static str, message: String) -> Response {
    ApiError {
        status,
        code,
        message,
    }
    .into_response()
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
