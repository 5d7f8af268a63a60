//! The connection to members: hyper-util's pooled client (one keep-alive
//! pool per member address), with a connect timeout, and one attempt of a
//! request with an optional first-byte timeout (the time to response
//! headers). How an attempt failed is classified for the retry rules.

use crate::body::ProxyBody;
use dure_core::balance::AttemptFailure;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// How the client connects and how long it keeps idle connections.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle_per_member: usize,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpConnector, ProxyBody>,
}

/// Why an attempt failed, with what the retry rules need to know.
#[derive(Debug)]
pub struct AttemptError {
    pub failure: AttemptFailure,
    pub detail: String,
}

impl Upstream {
    pub fn new(settings: UpstreamSettings) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.idle_timeout)
            .pool_max_idle_per_host(settings.max_idle_per_member)
            .build(connector);
        Upstream { client }
    }

    /// Sends `request` and waits for its response headers, at most
    /// `first_byte` when given.
    pub async fn send(
        &self,
        request: Request<ProxyBody>,
        first_byte: Option<Duration>,
    ) -> Result<Response<Incoming>, AttemptError> {
        let response = self.client.request(request);
        let result = match first_byte {
            Some(limit) => match tokio::time::timeout(limit, response).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(AttemptError {
                        failure: AttemptFailure::FirstByteTimeout,
                        detail: format!("no response within {} ms", limit.as_millis()),
                    })
                }
            },
            None => response.await,
        };
        result.map_err(|e| AttemptError {
            failure: if e.is_connect() {
                AttemptFailure::ConnectFailed
            } else {
                AttemptFailure::ResetBeforeResponse
            },
            detail: error_chain(&e),
        })
    }
}

/// Returns an error with its sources, `a: b: c`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
