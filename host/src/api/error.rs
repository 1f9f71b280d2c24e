//! One error shape for every route: `{"error": {"code": "...", "message":
//! "..."}}` with a stable machine-readable code. Internal errors are logged
//! and answered with a generic message.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

/// The JSON body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code, such as `unauthorized`, `not_found`, `invalid_request`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> AppError {
        AppError {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthorized() -> AppError {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> AppError {
        AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn rate_limited(retry_after_secs: u64) -> AppError {
        AppError {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; slow down",
            )
        }
    }

    pub fn unavailable(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// An internal failure: logged in full, answered generically.
    pub fn internal(error: impl std::fmt::Display) -> AppError {
        tracing::error!(%error, "internal error");
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_secs {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds.to_string()).expect("digits are a valid header"),
            );
        }
        response
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            "unsupported_media_type"
        } else {
            "invalid_request"
        };
        AppError::new(status, code, rejection.body_text())
    }
}

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        AppError::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        if rejection.status().is_server_error() {
            // A route whose parameters do not fit its extractor: our bug.
            return AppError::internal(rejection.body_text());
        }
        // Every path parameter is a string the handler parses into an id
        // and answers 404 when it does not parse; a segment that is not even
        // UTF-8 names no resource either, so it gets the same answer.
        AppError::new(StatusCode::NOT_FOUND, "not_found", rejection.body_text())
    }
}

impl From<BytesRejection> for AppError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_request"
        };
        AppError::new(status, code, rejection.body_text())
    }
}

impl From<crate::data::DataError> for AppError {
    fn from(error: crate::data::DataError) -> Self {
        AppError::internal(error)
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(error: crate::store::StoreError) -> Self {
        AppError::internal(error)
    }
}

impl From<crate::crypto::KeyRingError> for AppError {
    fn from(error: crate::crypto::KeyRingError) -> Self {
        AppError::internal(error)
    }
}

impl From<crate::service::committer::CommitError> for AppError {
    fn from(error: crate::service::committer::CommitError) -> Self {
        match error {
            // Handlers that read, modify and write retry this themselves
            // (see [`Attempts`]); it reaches a client only when the record
            // kept changing under every attempt.
            crate::service::committer::CommitError::Conflict => AppError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the record changed while the request was handled; send it again",
            ),
            error => AppError::internal(error),
        }
    }
}

/// `Json<T>` whose rejections use the API's error shape.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(pub T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// `Path<T>` whose rejections use the API's error shape.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct ApiPath<T>(pub T);

/// `Query<T>` whose rejections use the API's error shape.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct ApiQuery<T>(pub T);

/// The raw request body, whose rejections (too large, a broken stream) use
/// the API's error shape.
#[derive(Debug, Clone, Default)]
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ApiBytes {
    type Rejection = AppError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, AppError> {
        axum::body::Bytes::from_request(request, state)
            .await
            .map(ApiBytes)
            .map_err(AppError::from)
    }
}

/// A result of a handler.
pub type ApiResult<T> = Result<T, AppError>;

/// Attempts a read-modify-write gets while its commit is refused because
/// the record changed in between (an event for the same contact was
/// processed meanwhile; see `store::Batch::expect`). Each attempt reads
/// afresh, so neither side's change is lost; after the last one the 409
/// reaches the client.
///
/// A loop rather than a closure-taking helper: an async closure borrowing
/// the handler's extractors makes the handler's future not `Send`.
pub struct Attempts {
    left: u32,
}

impl Attempts {
    pub fn new() -> Attempts {
        Attempts { left: 4 }
    }

    /// Whether to try again after `result`; counts the attempt.
    pub fn again<T>(&mut self, result: &ApiResult<T>) -> bool {
        match result {
            Err(error) if error.status == StatusCode::CONFLICT && self.left > 0 => {
                self.left -= 1;
                true
            }
            _ => false,
        }
    }
}

impl Default for Attempts {
    fn default() -> Self {
        Attempts::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_conflicts_are_attempted_again_and_only_a_few_times() {
        let conflict =
            || -> ApiResult<()> { Err(crate::service::committer::CommitError::Conflict.into()) };
        let mut attempts = Attempts::new();
        let again: Vec<bool> = (0..6).map(|_| attempts.again(&conflict())).collect();
        assert_eq!(again, vec![true, true, true, true, false, false]);
        let mut attempts = Attempts::new();
        assert!(!attempts.again(&Ok(())));
        assert!(!attempts.again::<()>(&Err(AppError::bad_request("no"))));
        assert_eq!(conflict().unwrap_err().status, StatusCode::CONFLICT);
    }
}
