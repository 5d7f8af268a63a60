//! Request bodies: JSON read up to the route's limit ([`BodyLimit`], else
//! [`DEFAULT_BODY_BYTES`]), malformed or oversized ones answered as
//! `invalid`. An oversized body is read on and thrown away (bounded in
//! bytes and time) before the refusal goes out: a client still sending it
//! would otherwise see its connection reset, not the answer.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;
use std::time::Duration;

/// The largest body a call takes unless its route says otherwise.
pub const DEFAULT_BODY_BYTES: usize = 2 << 20;
/// How much of an oversized body is read and thrown away, at most.
const DRAIN_BYTES: usize = 64 << 20;
/// How long reading an oversized body on may take, at most.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A route's body limit, as a request extension (`.layer(Extension(…))`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body whose rejection is an `invalid` API error naming the problem.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::invalid(
                "request body must be JSON: set `Content-Type: application/json`",
            ));
        }
        let bytes = read_bounded(request).await?;
        parse(&bytes).map(Body)
    }
}

/// A JSON body that may be left out: an empty body means the defaults.
/// Unlike [`Body`] it needs no `Content-Type`, so a bare `POST` works.
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;
    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_bounded(request).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        parse(&bytes).map(OptionalBody)
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("request body is invalid: {e}")))
}

/// `application/json`, or a `+json` type, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or_default().trim();
    mime.eq_ignore_ascii_case("application/json")
        || (mime.starts_with("application/") && mime.to_ascii_lowercase().ends_with("+json"))
}

/// Reads the whole body up to the route's limit.
async fn read_bounded(request: Request) -> Result<Vec<u8>, ApiError> {
    let limit = request
        .extensions()
        .get::<BodyLimit>()
        .map_or(DEFAULT_BODY_BYTES, |l| l.0);
    let mut body = request.into_body();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::invalid(format!("request body cannot be read: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > limit {
            drain(body).await;
            return Err(ApiError::invalid(format!(
                "request body is larger than {limit} bytes, the most this call takes"
            )));
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes)
}

/// Reads and throws away what is left of `body`, bounded.
pub(crate) async fn drain(mut body: axum::body::Body) {
    let reading = async {
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, reading).await;
}
