//! The console's way into the controller: every read and every action is a
//! request to the REST API's own router, in process, with the session's
//! bearer token. So the console goes through exactly the authentication,
//! validation, change-set rules and operations the CLI does, and a refusal
//! reaches the operator in the API's own words.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use dure_api::{ErrorBody, CHANGE_HEADER};
use serde::de::DeserializeOwned;
use tower::ServiceExt;

/// The most bytes of an API answer the console reads.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// An API request refused or failed: its status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    fn internal(message: String) -> Refusal {
        Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message,
        }
    }
}

/// The REST API as the console calls it.
#[derive(Clone)]
pub struct Backend {
    api: Router,
}

impl Backend {
    pub fn new(api: Router) -> Backend {
        Backend { api }
    }

    /// Sends a request and returns the response whatever its status.
    pub async fn send(
        &self,
        token: &str,
        method: Method,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<Response, Refusal> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match json {
            Some(value) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        let request = request
            .body(body)
            .map_err(|e| Refusal::internal(format!("cannot build request {path}: {e}")))?;
        // The router's error type is `Infallible`.
        let Ok(response) = self.api.clone().oneshot(request).await;
        Ok(response)
    }

    /// Sends a request and decodes a successful answer as `T`; a refusal
    /// carries the API's message.
    pub async fn call<T: DeserializeOwned>(
        &self,
        token: &str,
        method: Method,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<T, Refusal> {
        let response = self.send(token, method, path, json).await?;
        decode(path, response).await
    }

    /// Sends a configuration change; returns whether the API saved or
    /// staged it (its `Dure-Change` header).
    pub async fn change(
        &self,
        token: &str,
        method: Method,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<Option<String>, Refusal> {
        let response = self.send(token, method, path, json).await?;
        let change = response
            .headers()
            .get(CHANGE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let _: serde_json::Value = decode(path, response).await?;
        Ok(change)
    }

    pub async fn get<T: DeserializeOwned>(&self, token: &str, path: &str) -> Result<T, Refusal> {
        self.call(token, Method::GET, path, None).await
    }
}

/// A successful answer decoded as `T`, or the API's refusal.
async fn decode<T: DeserializeOwned>(path: &str, response: Response) -> Result<T, Refusal> {
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER)
        .await
        .map_err(|e| Refusal::internal(format!("cannot read the answer of {path}: {e}")))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        return Err(Refusal { status, message });
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Refusal::internal(format!("cannot decode the answer of {path}: {e}")))
}
