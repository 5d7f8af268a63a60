//! The REST API under `/v1`: the router, bearer-token authentication and
//! the extractors (JSON bodies, query strings, path parameters) that turn
//! malformed input into `invalid` answers.

mod agent;
#[cfg(test)]
mod blocking_tests;
mod body;
mod changes;
mod clusters;
mod config;
mod domain;
mod events;
mod lbs;
#[cfg(test)]
mod lbs_tests;
mod nodes;
mod operations;
mod servers;
mod stream;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;

use crate::app::App;
use crate::error::ApiError;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dure_api::auth::{bearer_token, token_matches};
use dure_api::{routes, Health, Liveness};
use std::sync::Arc;

pub use body::{Body, OptionalBody};

pub type AppState = State<Arc<App>>;

/// Who made a request: `admin` for the admin token.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

pub fn router(app: Arc<App>) -> Router {
    let authenticated = Router::new()
        .route(routes::NODES, get(nodes::list).post(nodes::create))
        .route(
            routes::NODE,
            get(nodes::show).put(nodes::put).delete(nodes::delete),
        )
        .route(routes::SERVERS, get(servers::list).post(servers::create))
        .route(
            routes::SERVER,
            get(servers::show)
                .put(servers::replace)
                .delete(servers::delete),
        )
        .route(routes::SERVER_LOGS, get(servers::logs))
        .route(routes::SERVER_ACTION, post(servers::action))
        .route(routes::CLUSTERS, get(clusters::list).post(clusters::create))
        .route(
            routes::CLUSTER,
            get(clusters::show).delete(clusters::delete),
        )
        .route(routes::CLUSTER_MEMBERS, post(clusters::add_member))
        .route(
            routes::CLUSTER_MEMBER,
            axum::routing::delete(clusters::remove_member),
        )
        .route(routes::CLUSTER_ACTION, post(clusters::operation))
        .route(
            routes::CLUSTER_BALANCE,
            get(lbs::balance).put(lbs::set_balance),
        )
        .route(routes::LBS, get(lbs::list).post(lbs::create))
        .route(
            routes::LB,
            get(lbs::show).put(lbs::replace).delete(lbs::delete),
        )
        .route(routes::LB_ROUTES, post(lbs::add_route))
        .route(routes::LB_ROUTES_REMOVE, post(lbs::remove_route))
        .route(routes::LB_TABLE, get(lbs::table))
        .route(routes::LB_REPORT, post(lbs::report))
        .route(routes::LB_STATS, get(lbs::stats))
        .route(routes::LB_STATS_ALL, get(lbs::all_stats))
        .route(routes::OPERATIONS, get(operations::list))
        .route(routes::OPERATION, get(operations::show))
        .route(routes::EVENTS, get(events::list))
        .route(routes::EVENTS_STREAM, get(stream::stream))
        .route(routes::CHANGES, get(changes::show).delete(changes::discard))
        .route(routes::CHANGES_SAVE, post(changes::save))
        .route(routes::CHANGES_DISCARD, post(changes::discard))
        .route(routes::CONFIG_HISTORY, get(config::history))
        .route(routes::CONFIG_DOCUMENTS, get(config::documents))
        .route(routes::CONFIG_DIFF, get(config::diff))
        .route(routes::CONFIG_ROLLBACK, post(config::rollback))
        .route(
            routes::CONFIG_APPLY,
            post(config::apply).layer(axum::Extension(body::BodyLimit(config::MAX_TREE_BYTES))),
        )
        .route(routes::DOMAIN_PACK, get(domain::pack))
        .route(routes::AGENT_REGISTER, post(agent::register))
        .route(routes::AGENT_DESIRED, get(agent::desired))
        .route(routes::AGENT_REPORT, post(agent::report))
        .layer(middleware::from_fn_with_state(app.clone(), authenticate));
    // Every request needs the token but the health check: monitors and
    // balancers probe liveness without a secret. It gives details (version,
    // store revision) only with a valid token.
    Router::new()
        .route(routes::HEALTH, get(health))
        .merge(authenticated)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

/// Liveness for anyone; with a valid token also the version and the store
/// revision. A token that is given but wrong is refused, so a caller learns
/// of its mistake rather than seeing fewer details.
async fn health(State(app): AppState, headers: HeaderMap) -> Result<Response, ApiError> {
    if authorization(&headers).is_none() {
        return Ok(Json(Liveness {
            status: "ok".into(),
        })
        .into_response());
    }
    check_token(&app, &headers)?;
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        revision: app.store.current_revision().await?,
    })
    .into_response())
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint: {} {}",
        request.method(),
        request.uri().path()
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::method_not_allowed(format!(
        "{} is not a method of {}: see the REST API table in the README",
        request.method(),
        request.uri().path()
    ))
}

/// Checks the bearer token and records the actor for handlers.
async fn authenticate(
    State(app): AppState,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_token(&app, request.headers())?;
    request.extensions_mut().insert(Actor("admin".into()));
    Ok(next.run(request).await)
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Refuses a request without the admin token.
fn check_token(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(given) = bearer_token(authorization(headers)) else {
        return Err(ApiError::unauthorized(
            "missing bearer token: send `Authorization: Bearer <token>` (the admin token is in the controller's data directory)",
        ));
    };
    if !token_matches(&app.token, given) {
        return Err(ApiError::unauthorized(
            "the bearer token is not valid for this controller",
        ));
    }
    Ok(())
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Actor>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("request was not authenticated"))
    }
}

/// A query string whose rejection is an `invalid` API error.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::invalid(format!("query is invalid: {}", e.body_text()))
            })
    }
}

/// Path parameters whose rejection (such as bytes that are not UTF-8) is an
/// `invalid` API error.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e: PathRejection| {
                ApiError::invalid(format!("path is invalid: {}", e.body_text()))
            })
    }
}
