//! The admin port: `GET /stats` (every member's figures as JSON),
//! `/metrics` (the Prometheus text) and `/health` (200 while the balancer
//! runs). It only reads.

use crate::body::{full, ProxyBody};
use crate::metrics;
use crate::pages;
use crate::proxy::Shared;
use crate::stats::MemberSnapshot;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;

/// Returns every member's figures, ordered by cluster and member.
pub fn snapshots(shared: &Shared) -> Vec<MemberSnapshot> {
    let routing = shared.routing();
    let mut clusters: Vec<_> = routing.clusters.values().collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    clusters.iter().flat_map(|c| c.snapshots()).collect()
}

/// Answers one admin request.
pub fn answer<B>(shared: &Arc<Shared>, request: &Request<B>) -> Response<ProxyBody> {
    if request.method() != Method::GET {
        return pages::page(
            StatusCode::METHOD_NOT_ALLOWED,
            "the admin port only answers GET",
        );
    }
    match request.uri().path() {
        "/health" => typed(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok\n".to_string(),
        ),
        "/stats" => {
            let body = serde_json::json!({ "members": snapshots(shared) });
            typed(StatusCode::OK, "application/json", body.to_string())
        }
        "/metrics" => typed(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(&snapshots(shared)),
        ),
        path => pages::page(
            StatusCode::NOT_FOUND,
            &format!("no admin page `{path}`: try /stats, /metrics or /health"),
        ),
    }
}

fn typed(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
