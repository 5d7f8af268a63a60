//! The balancer's own answers: short plain-text pages that say what
//! happened (no route, no member available, every attempt failed, a
//! request that cannot be read), with the status that fits.

use crate::body::{full, ProxyBody};
use http::{header, HeaderValue, Response, StatusCode};

/// Returns a page of `status` saying `detail`.
pub fn page(status: StatusCode, detail: &str) -> Response<ProxyBody> {
    let reason = status.canonical_reason().unwrap_or("");
    let text = format!("{} {reason}\n\n{detail}\n", status.as_u16());
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn no_route(host: Option<&str>, path: &str) -> Response<ProxyBody> {
    let host = host.unwrap_or("(no host)");
    page(
        StatusCode::NOT_FOUND,
        &format!("no route for host `{host}` and path `{path}`"),
    )
}

pub fn no_member(cluster: &str) -> Response<ProxyBody> {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("no member of cluster `{cluster}` is available"),
    )
}

pub fn all_failed(cluster: &str, attempts: usize, last: &str) -> Response<ProxyBody> {
    page(
        StatusCode::BAD_GATEWAY,
        &format!("cluster `{cluster}`: {attempts} attempt(s) failed; last: {last}"),
    )
}

pub fn timed_out(cluster: &str, member: &str) -> Response<ProxyBody> {
    page(
        StatusCode::GATEWAY_TIMEOUT,
        &format!("cluster `{cluster}`: member `{member}` did not answer in time"),
    )
}

pub fn bad_request(detail: &str) -> Response<ProxyBody> {
    page(StatusCode::BAD_REQUEST, detail)
}
