//! The REST API under `/v1`: the router built from the route table, token
//! or node-certificate authentication and authorization on every route, and the extractors (JSON bodies, query strings, path parameters) that turn
//! malformed input into `invalid` answers.

mod agent;
mod apps;
mod audit;
#[cfg(test)]
mod blocking_tests;
mod body;
mod certs;
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
mod tokens;

use crate::app::App;
use crate::error::ApiError;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, MatchedPath};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Extension;
use axum::{Json, Router};
use dure_api::routes::Route;
use dure_api::AuditEntry;
use dure_api::{routes, Health, Liveness};
use dure_core::access::{Permission, Principal, Role};
use std::sync::Arc;

pub use crate::access::Actor;

/// The header every answer carries its request id in, as the audit log
/// records it.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

pub(crate) use body::drain;
pub use body::{Body, OptionalBody};

pub type AppState = State<Arc<App>>;

/// The router, built from the route table `dure_api::routes::TABLE`: a
/// route is served only when the table declares its permission, and every
/// request is authorized against that permission before its handler runs.
pub fn router(app: Arc<App>) -> Router {
    let mut router = Router::new();
    for route in routes::TABLE {
        router = router.route(route.pattern, handler(route));
    }
    router
        .route_layer(middleware::from_fn_with_state(app.clone(), authorize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

/// The handler of a route of the table, on the route's method.
fn handler(route: &Route) -> MethodRouter<Arc<App>> {
    use dure_api::routes::Method::{Delete, Get, Post, Put};
    use routes as r;
    match (route.method, route.pattern) {
        (Get, r::HEALTH) => get(health),
        (Get, r::NODES) => get(nodes::list),
        (Post, r::NODES) => post(nodes::create),
        (Get, r::NODE) => get(nodes::show),
        (Put, r::NODE) => put(nodes::put),
        (Delete, r::NODE) => delete(nodes::delete),
        (Get, r::NODE_PEERS) => get(nodes::peers),
        (Get, r::SERVERS) => get(servers::list),
        (Post, r::SERVERS) => post(servers::create),
        (Get, r::SERVER) => get(servers::show),
        (Put, r::SERVER) => put(servers::replace),
        (Delete, r::SERVER) => delete(servers::delete),
        (Get, r::SERVER_LOGS) => get(servers::logs),
        (Get, r::SERVER_CONFIG) => get(servers::config),
        (Post, r::SERVER_ACTION) => post(servers::action),
        (Get, r::CLUSTERS) => get(clusters::list),
        (Post, r::CLUSTERS) => post(clusters::create),
        (Get, r::CLUSTER) => get(clusters::show),
        (Delete, r::CLUSTER) => delete(clusters::delete),
        (Post, r::CLUSTER_MEMBERS) => post(clusters::add_member),
        (Delete, r::CLUSTER_MEMBER) => delete(clusters::remove_member),
        (Post, r::CLUSTER_ACTION) => post(clusters::operation),
        (Get, r::CLUSTER_BALANCE) => get(lbs::balance),
        (Put, r::CLUSTER_BALANCE) => put(lbs::set_balance),
        (Put, r::CLUSTER_SERVERS) => put(lbs::set_cluster_servers),
        (Get, r::LBS) => get(lbs::list),
        (Post, r::LBS) => post(lbs::create),
        (Get, r::LB) => get(lbs::show),
        (Put, r::LB) => put(lbs::replace),
        (Delete, r::LB) => delete(lbs::delete),
        (Post, r::LB_ROUTES) => post(lbs::add_route),
        (Post, r::LB_ROUTES_REMOVE) => post(lbs::remove_route),
        (Get, r::LB_TABLE) => get(lbs::table),
        (Post, r::LB_REPORT) => post(lbs::report),
        (Get, r::LB_STATS) => get(lbs::stats),
        (Get, r::LB_STATS_ALL) => get(lbs::all_stats),
        (Get, r::OPERATIONS) => get(operations::list),
        (Get, r::OPERATION) => get(operations::show),
        (Get, r::EVENTS) => get(events::list),
        (Get, r::EVENTS_STREAM) => get(stream::stream),
        (Get, r::CHANGES) => get(changes::show),
        (Delete, r::CHANGES) => delete(changes::discard),
        (Post, r::CHANGES_SAVE) => post(changes::save),
        (Post, r::CHANGES_DISCARD) => post(changes::discard),
        (Get, r::CONFIG_HISTORY) => get(config::history),
        (Get, r::CONFIG_DOCUMENTS) => get(config::documents),
        (Get, r::CONFIG_DIFF) => get(config::diff),
        (Post, r::CONFIG_ROLLBACK) => post(config::rollback),
        (Post, r::CONFIG_APPLY) => {
            post(config::apply).layer(axum::Extension(body::BodyLimit(config::MAX_TREE_BYTES)))
        }
        (Get, r::DOMAIN_PACK) => get(domain::pack),
        (Post, r::DOMAIN_ROTATE_KEY) => post(domain::rotate_key),
        (Get, r::TOKENS) => get(tokens::list),
        (Post, r::TOKENS) => post(tokens::create),
        (Delete, r::TOKEN) => delete(tokens::revoke),
        (Get, r::AUDIT) => get(audit::list),
        (Get, r::WHOAMI) => get(tokens::whoami),
        (Post, r::AGENT_REGISTER) => post(agent::register),
        (Get, r::AGENT_DESIRED) => get(agent::desired),
        (Get, r::AGENT_ARTIFACT) => get(apps::download),
        (Post, r::ARTIFACTS) => post(apps::upload),
        (Get, r::CLUSTER_APPS) => get(apps::list),
        (Post, r::CLUSTER_APPS) => post(apps::deploy),
        (Get, r::CLUSTER_APPS_HISTORY) => get(apps::history),
        (Post, r::CLUSTER_APPS_ROLLBACK) => post(apps::rollback),
        (Post, r::AGENT_REPORT) => post(agent::report),
        (Post, r::AGENT_JOIN) => post(certs::join),
        (Post, r::AGENT_CERTIFICATE) => post(certs::renew),
        // A route declared in the table without a handler is a programming
        // error that every test building the router finds at once.
        (method, pattern) => panic!(
            "route {} {pattern} is in the route table but has no handler",
            method.as_str()
        ),
    }
}

/// Liveness for anyone; with a valid token also the version and the store
/// revision. A token that is given but wrong is refused by `authorize`,
/// so a caller learns of its mistake rather than seeing fewer details.
async fn health(
    State(app): AppState,
    actor: Option<Extension<Actor>>,
) -> Result<Response, ApiError> {
    if actor.is_none() {
        return Ok(Json(Liveness {
            status: "ok".into(),
        })
        .into_response());
    }
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

/// Finds the request's route in the table, resolves its token to an actor
/// and refuses the request unless the actor's role allows the route's
/// permission; the actor is then there for the handler. Every refusal and
/// every call the table says is audited goes to the audit log, and every
/// answer carries its request id (`X-Request-Id`).
async fn authorize(
    State(app): AppState,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let pattern = matched.as_ref().map_or("", MatchedPath::as_str);
    let request_id = app.audit.request_id();
    let mut response = match Route::find(request.method().as_str(), pattern) {
        // A path of the table with a method it does not take is answered
        // 405 by the method router.
        None if routes::TABLE.iter().any(|r| r.pattern == pattern) => next.run(request).await,
        // Anything else is denied by default.
        None => ApiError::forbidden(format!(
            "no permission is declared for {} {}",
            request.method(),
            request.uri().path()
        ))
        .into_response(),
        Some(route) => {
            let call = Call::of(&request, pattern, &request_id);
            match check(&app, route, &request) {
                Decision::Allowed(actor) => {
                    if let Some(actor) = actor.clone() {
                        request.extensions_mut().insert(actor);
                    }
                    let response = next.run(request).await;
                    if route.audited() {
                        app.audit
                            .append(&call.entry(actor.as_ref(), response.status(), None));
                    }
                    response
                }
                Decision::Denied(actor, refusal) => {
                    app.audit.append(&call.entry(
                        actor.as_ref(),
                        refusal.status,
                        Some(&refusal.message),
                    ));
                    refusal.into_response()
                }
            }
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// What the authorization check decided about a request.
enum Decision {
    /// With the caller's actor (none for a public route called without a
    /// token).
    Allowed(Option<Actor>),
    /// The refusal, with the actor when the token was valid.
    Denied(Option<Actor>, ApiError),
}

/// Decides whether `route` allows `request`. The caller is its bearer
/// token when it sends one, else the node its client certificate names
/// (verified under the domain CA in the handshake), else no one.
fn check(app: &App, route: &Route, request: &Request) -> Decision {
    let header = authorization(request.headers());
    let now = crate::clock::now_ms();
    // A public route needs no token, but one that is given must be valid,
    // so a caller learns of its mistake.
    if route.permission == Permission::Public && header.is_none() {
        return Decision::Allowed(None);
    }
    let resolved = match (header, route.permission) {
        (None, _) => match certificate_node(request, now) {
            Some(node) => node,
            None => app.tokens.resolve_header(None, now),
        },
        // A join token is checked as one; any other token as itself, so
        // its refusal names it.
        (Some(_), Permission::Join) => match dure_api::auth::bearer_token(header) {
            Some(token) if app.tokens.is_join_token(token) => app.tokens.check_join(token, now),
            _ => app.tokens.resolve_header(header, now),
        },
        (Some(_), _) => app.tokens.resolve_header(header, now),
    };
    let actor = match resolved {
        Ok(actor) => actor,
        Err(refusal) => return Decision::Denied(None, refusal),
    };
    let (method, path) = (request.method(), request.uri().path());
    if !actor.principal.allows(route.permission) {
        let refusal = ApiError::forbidden(match &actor.principal {
            Principal::Node(node) => format!(
                "the node certificate of `{node}` may not {method} {path}: a node's certificate reaches only its own agent calls"
            ),
            _ if route.permission == Permission::Join => format!(
                "`{}` may not {method} {path}: that needs a join token (`dure token create --join --node NAME`)",
                actor.name()
            ),
            _ => format!(
                "token `{}` has role {}, which may not {method} {path}: that needs role {}",
                actor.id,
                actor.role().map_or("none".to_string(), |r| r.to_string()),
                Role::least_for(route.permission)
            ),
        });
        return Decision::Denied(Some(actor), refusal);
    }
    // A node's certificate acts for its own node only; the node the call is
    // about is the route's `{node}` (a registration's is checked with its
    // body).
    if let Some(named) = route.node_segment(path) {
        if !actor.principal.may_act_for(named) {
            let refusal = ApiError::forbidden(format!(
                "`{}` may not {method} {path}: a node's certificate reaches only its own node's calls, not node `{named}`'s",
                actor.name()
            ));
            return Decision::Denied(Some(actor), refusal);
        }
    }
    Decision::Allowed(Some(actor))
}

/// The agent a request's client certificate names, if it shows a node
/// certificate of the domain CA: its actor, or the 401 of a certificate
/// that expired since the connection was made.
fn certificate_node(request: &Request, now_ms: u64) -> Option<crate::error::ApiResult<Actor>> {
    use dure_api::identity::{cert_identity, not_after_ms, CertIdentity};
    let der = request
        .extensions()
        .get::<ConnectInfo<crate::tls::Peer>>()?
        .0
        .client_cert
        .clone()?;
    let Some(CertIdentity::Node(node)) = cert_identity(der.as_ref()) else {
        return None;
    };
    Some(match not_after_ms(der.as_ref()) {
        Some(end) if end > now_ms => Ok(Actor::node(&node)),
        _ => Err(ApiError::unauthorized(format!(
            "the node certificate of `{node}` has expired: its agent renews it before then, or joins again with a new join token"
        ))),
    })
}

/// What the audit log says of a request, taken before it is handled.
struct Call {
    method: String,
    path: String,
    target: String,
    source: Option<String>,
    request_id: String,
}

impl Call {
    fn of(request: &Request, pattern: &str, request_id: &str) -> Call {
        let path = request.uri().path().to_string();
        Call {
            method: request.method().to_string(),
            target: target(pattern, &path),
            path,
            source: request
                .extensions()
                .get::<ConnectInfo<crate::tls::Peer>>()
                .map(|info| info.0.addr.to_string()),
            request_id: request_id.to_string(),
        }
    }

    fn entry(&self, actor: Option<&Actor>, status: StatusCode, error: Option<&str>) -> AuditEntry {
        let time_ms = crate::clock::now_ms();
        AuditEntry {
            time: dure_core::timefmt::rfc3339_millis(time_ms),
            time_ms,
            request_id: self.request_id.clone(),
            actor: actor.map(|a| a.name().to_string()),
            actor_id: actor.map(|a| a.id.clone()),
            role: actor.and_then(Actor::role),
            source: self.source.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            target: self.target.clone(),
            status: status.as_u16(),
            denied: error.is_some(),
            error: error.map(str::to_string),
        }
    }
}

/// What a call is about: the kind and name of the first parameter of its
/// route (`servers/web1` for `/v1/servers/{name}/start`, `nodes/n1` for an
/// agent's report), else its path after `/v1/` (`config/apply`).
fn target(pattern: &str, path: &str) -> String {
    let pattern: Vec<&str> = pattern
        .trim_start_matches(routes::PREFIX)
        .split('/')
        .collect();
    let path: Vec<&str> = path.trim_start_matches(routes::PREFIX).split('/').collect();
    match pattern.iter().position(|s| s.starts_with('{')) {
        Some(at) if at > 0 && at < path.len() => format!("{}/{}", pattern[at - 1], path[at]),
        _ => path.join("/").trim_start_matches('/').to_string(),
    }
}

pub(crate) fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
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
