//! The API's one error shape, `{"error": {"code", "message", "request_id"}}`, and the mapping
//! from library errors and request rejections to it.
//!
//! A message says what the caller can act on and never carries a stack trace, a credential or
//! an internal endpoint: server-side failures (5xx) are logged in full with the request id and
//! answered with a short, fixed text.

use crate::domain::error::{Error, ErrorKind};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being served: set by the request-id middleware, read when an
    /// error is rendered (errors are built far from the request, e.g. in extractors).
    pub(crate) static REQUEST_ID: String;
}

/// The id of the current request ("" outside one).
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
/// The inside of an [`ErrorBody`]: code, message and request id.
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_request`, `bucket_not_allowed`, `not_found`, `busy`,
    /// `unavailable`, ...
    pub code: String,
    /// For a person.
    pub message: String,
    /// Also in the `x-request-id` header and in every log line of the request.
    pub request_id: String,
}

/// An error answer: status, code and message.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status, from the error's kind ([`crate::ErrorKind`]) or chosen by the handler.
    pub status: StatusCode,
    /// The stable code clients branch on ([`ErrorDetail::code`]).
    pub code: &'static str,
    /// The message for a person.
    pub message: String,
    /// Seconds, sent as `Retry-After` (busy objects, unavailable dependencies).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error answer with its status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// `400 invalid_request`: the request itself is wrong; the message says what.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// `404 not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// Adds `Retry-After: secs`, for answers that a later retry can change.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The body as a value (batch results embed it per key).
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail { code: self.code.to_string(), message: self.message.clone(), request_id: current_request_id() }
    }
}

impl From<Error> for ApiError {
    /// Client-side kinds keep their message (it names the object and what was wrong), and so
    /// does `misconfigured` (it names the missing resource); other server-side kinds are logged
    /// with their whole chain and answered with a fixed text.
    fn from(e: Error) -> Self {
        let detail = e.chain();
        match e.kind() {
            ErrorKind::NotFound => Self::not_found(e.message().to_string()),
            ErrorKind::Invalid => Self::invalid(e.message().to_string()),
            ErrorKind::SourceChanged => Self::new(
                StatusCode::CONFLICT,
                "source_changed",
                "the source object changed while it was being copied; retry to copy the new version",
            )
            .with_retry_after(1),
            ErrorKind::Conflict => Self::new(
                StatusCode::CONFLICT,
                "destination_changed",
                "the destination object was changed by another writer while this copy ran; retry to copy again",
            )
            .with_retry_after(1),
            ErrorKind::AccessDenied => {
                tracing::warn!(error = %detail, "a dependency refused access");
                Self::new(
                    StatusCode::FORBIDDEN,
                    "access_denied",
                    "xcr's role is not allowed to read the source or write the destination",
                )
            }
            ErrorKind::Transient | ErrorKind::Integrity => {
                tracing::error!(kind = %e.kind(), error = %detail, "dependency unavailable after retries");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a dependency (S3, GCS, DynamoDB or SQS) failed after retries; try again later",
                )
                .with_retry_after(5)
            }
            // A resource the deployment names is missing (the destination bucket, a table, a
            // queue) or an expired Workload Identity config: an operator's problem that no retry
            // fixes. Answered with its own code and the message, which names the resource and
            // holds no secret (the chain, with SDK details, stays in the log), never "internal".
            ErrorKind::Config => {
                tracing::error!(error = %detail, "misconfigured: a resource the deployment names is missing or refused");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "misconfigured", e.message().to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.detail() };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
