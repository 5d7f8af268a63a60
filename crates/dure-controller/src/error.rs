//! The controller's error type and its mapping to HTTP answers
//! (`{"error":{"code","message"}}` with the matching status).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dure_api::ErrorBody;
use dure_core::domain::{DomainError, ErrorClass};
use dure_store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// The caller is known but its role does not allow the request.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// The path exists but does not take the request's method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        )
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// A request body over the most the call takes (413).
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let message = error.to_string();
        match error.class() {
            ErrorClass::Invalid => ApiError::invalid(message),
            ErrorClass::NotFound => ApiError::not_found(message),
            ErrorClass::Conflict => ApiError::conflict(message),
        }
    }
}

impl ApiError {
    /// One error for the rule violations of a change, or `None` when there
    /// are none. It names every violation, and is `invalid` when any of them
    /// is, so a file with a bad name among conflicts still reads as bad input.
    pub fn from_problems(problems: &[DomainError]) -> Option<ApiError> {
        let worst = problems
            .iter()
            .find(|p| p.class() == ErrorClass::Invalid)
            .or_else(|| problems.first())?;
        let mut error = ApiError::from(worst.clone());
        if problems.len() > 1 {
            let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
            error.message = all.join("; ");
        }
        Some(error)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store failure");
        ApiError::internal(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
