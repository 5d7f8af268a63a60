//! One client request through the balancer: its route, its attempts on
//! members (a failed one retried elsewhere when the rules allow and the
//! body can be sent again), the response streamed back, and an upgrade
//! (WebSocket) turned into a tunnel.

use crate::body::{ProxyBody, RequestBody, Tracked};
use crate::cluster::{Attempt, Cluster};
use crate::headers;
use crate::pages;
use crate::routing;
use crate::server::Peer;
use crate::settings::Settings;
use crate::table::Table;
use crate::upgrade;
use crate::upstream::{Lease, Upstream};
use dure_core::balance::{is_idempotent, AttemptFailure, Outcome};
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// What requests are served from: the table and its clusters' live state.
#[derive(Debug, Default)]
pub struct Routing {
    pub table: Table,
    pub clusters: HashMap<String, Arc<Cluster>>,
}

/// What every request handler shares.
#[derive(Debug)]
pub struct Shared {
    routing: RwLock<Arc<Routing>>,
    /// One pool of member connections per worker, used by that worker
    /// only, so a pooled connection never serves another thread.
    upstreams: Vec<Upstream>,
    pub settings: Settings,
}

impl Shared {
    pub fn new(routing: Routing, settings: Settings) -> Shared {
        Shared {
            routing: RwLock::new(Arc::new(routing)),
            upstreams: (0..settings.workers)
                .map(|_| Upstream::new(settings.upstream()))
                .collect(),
            settings,
        }
    }

    /// Returns the routing in force; a request keeps the one it started
    /// with, whatever replaces it meanwhile.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing
            .read()
            .expect("the routing lock is never poisoned: swaps do not panic")
            .clone()
    }

    /// Returns the member connections of worker `worker`.
    pub fn upstream(&self, worker: usize) -> &Upstream {
        &self.upstreams[worker]
    }

    pub fn swap(&self, routing: Routing) {
        *self
            .routing
            .write()
            .expect("the routing lock is never poisoned: swaps do not panic") = Arc::new(routing);
    }
}

/// Returns the host a request names: its Host header, or the authority of
/// an absolute URI (an HTTP/2 request names it there only).
fn host_of<B>(request: &Request<B>) -> Option<HeaderValue> {
    request.headers().get(header::HOST).cloned().or_else(|| {
        request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

/// Returns the size of a request's head as it came on the wire, near
/// enough: hyper's read buffer bounds it only loosely, by whole reads.
fn head_size<B>(request: &Request<B>) -> usize {
    let uri = request.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = request.method().as_str().len() + target + 12;
    line + request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
}

/// Answers one request that came to the listener written `listener` in
/// the table from `peer`.
pub async fn handle(
    shared: Arc<Shared>,
    listener: SocketAddr,
    peer: Peer,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let client = peer.addr;
    if head_size(&request) > shared.settings.max_header_bytes {
        return Ok(pages::page(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "the request head is over {} bytes",
                shared.settings.max_header_bytes
            ),
        ));
    }
    let host = host_of(&request);
    let host_text = host.as_ref().and_then(|h| h.to_str().ok());
    let routing = shared.routing();
    let route = routing
        .table
        .listener(listener)
        .and_then(|l| routing::select(&l.routes, host_text, request.uri().path()));
    let Some(cluster) = route
        .and_then(|r| routing.clusters.get(&r.cluster))
        .cloned()
    else {
        return Ok(pages::no_route(host_text, request.uri().path()));
    };
    drop(routing);
    let client_upgrade =
        headers::is_upgrade(request.headers()).then(|| hyper::upgrade::on(&mut request));
    let (mut parts, incoming) = request.into_parts();
    let body = match RequestBody::prepare(incoming, shared.settings.replay_limit).await {
        Ok(body) => body,
        Err(e) => {
            return Ok(pages::bad_request(&format!(
                "cannot read the request body: {e}"
            )))
        }
    };
    // The request's own headers are the forwarded ones, less those of its
    // hop; the cookies a sticky pick reads are among them.
    let mut forwarded = std::mem::take(&mut parts.headers);
    headers::strip_hop_by_hop(&mut forwarded);
    headers::add_forwarded(&mut forwarded, &peer.origin, host.as_ref());
    // An HTTP/2 request names its host in the URI's authority only; the
    // member, spoken to in HTTP/1.1, needs it as a Host header.
    if !forwarded.contains_key(header::HOST) {
        if let Some(value) = host {
            forwarded.insert(header::HOST, value);
        }
    }
    let path = parts.uri.path_and_query().cloned();
    let idempotent = is_idempotent(parts.method.as_str());
    let timeout = if idempotent {
        shared.settings.first_byte_timeout
    } else {
        shared.settings.response_timeout
    };

    let mut tried = Vec::new();
    let mut last_error = String::new();
    let mut client_upgrade = client_upgrade;
    loop {
        // A body already read by an earlier attempt cannot go to another
        // member: the last failure stands.
        let Some(attempt_body) = body.for_attempt() else {
            break;
        };
        let cookies = forwarded
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let Some(attempt) =
            cluster.pick(&tried, client.ip(), cookies, parts.uri.path(), peer.secure)
        else {
            break;
        };
        let mut upstream = Request::new(attempt_body);
        *upstream.method_mut() = parts.method.clone();
        *upstream.version_mut() = Version::HTTP_11;
        *upstream.headers_mut() = forwarded.clone();
        // A request without a host (HTTP/1.0) names the member, as
        // HTTP/1.1 requires one.
        if !forwarded.contains_key(header::HOST) {
            upstream
                .headers_mut()
                .insert(header::HOST, attempt.member.host.clone());
        }
        *upstream.uri_mut() = origin_form(path.as_ref());
        let started = Instant::now();
        match shared
            .upstream(peer.worker)
            .send(attempt.member.addr, upstream, Some(timeout))
            .await
        {
            Ok((response, lease)) => {
                let status = response.status();
                attempt
                    .member
                    .stats
                    .response(status.as_u16(), started.elapsed());
                let outcome = Outcome::of_status(status.as_u16());
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(client_side) = client_upgrade.take() {
                        return Ok(upgrade::tunnel(attempt, response, lease, client_side));
                    }
                }
                return Ok(relay(attempt, outcome, response, lease));
            }
            Err(e) => {
                let member = attempt.member.clone();
                member.stats.error();
                tried.push(attempt.id());
                attempt.end(e.failure.outcome());
                tracing::debug!(cluster = %cluster.name, member = %member.name, error = %e.detail, "attempt failed");
                last_error = format!("member `{}`: {}", member.name, e.detail);
                let retries = tried.len() as u32 - 1;
                if !cluster
                    .retry()
                    .may_retry(parts.method.as_str(), e.failure, retries)
                {
                    if e.failure == AttemptFailure::FirstByteTimeout && !idempotent {
                        return Ok(pages::timed_out(&cluster.name, &member.name));
                    }
                    break;
                }
                member.stats.retry();
            }
        }
    }
    if tried.is_empty() {
        return Ok(pages::no_member(&cluster.name));
    }
    Ok(pages::all_failed(&cluster.name, tried.len(), &last_error))
}

/// Returns the request target a member is sent: the path and query only
/// (origin form), whatever form the client used.
fn origin_form(path: Option<&http::uri::PathAndQuery>) -> Uri {
    Uri::from(
        path.cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    )
}

/// Streams the member's response to the client; the attempt ends when
/// the body is done or the client goes away.
fn relay(
    attempt: Attempt,
    outcome: Outcome,
    response: Response<Incoming>,
    lease: Lease,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(cookie) = attempt
        .set_cookie
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        parts.headers.append(header::SET_COOKIE, cookie);
    }
    let body = Tracked::new(body, attempt, outcome, lease);
    Response::from_parts(parts, body.boxed_unsync())
}
