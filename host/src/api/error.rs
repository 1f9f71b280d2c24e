//! One error shape for every route: `{"error": {"code": "...", "message":
//! "..."}}` with a stable machine-readable code. Internal errors are
//! answered with a generic message; their cause travels with the response
//! to [`log_internal_errors`], which logs it once.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::committer::CommitError;
use crate::service::error::ServiceError;

/// An API error.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
    /// For internal errors: the cause, logged by [`log_internal_errors`]
    /// and never sent to the client.
    pub cause: Option<String>,
}

/// The cause of an internal error, carried in the response's extensions
/// from the handler to [`log_internal_errors`].
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

/// Middleware: log the cause of every internal error answered, once, with
/// the request's span (method and route), and keep it out of the response.
pub async fn log_internal_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    if let Some(InternalCause(cause)) = response.extensions_mut().remove::<InternalCause>() {
        tracing::error!(error = %cause, "internal error");
    }
    response
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
            cause: None,
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

    /// An internal failure: answered generically, its cause (with the
    /// chain of sources) logged by [`log_internal_errors`].
    pub fn internal(error: impl std::fmt::Display) -> AppError {
        AppError {
            cause: Some(error.to_string()),
            ..AppError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred; it has been logged",
            )
        }
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
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(InternalCause(cause));
        }
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

impl From<ServiceError> for AppError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound(what) => AppError::not_found(what),
            ServiceError::Invalid(message) | ServiceError::InvalidConfig { message, .. } => {
                AppError::bad_request(message)
            }
            ServiceError::Forbidden(message) => AppError::forbidden(message),
            ServiceError::Conflict(message) => AppError::conflict(message),
            ServiceError::QuotaExceeded(message) => {
                AppError::new(StatusCode::CONFLICT, "quota_exceeded", message)
            }
            ServiceError::InvalidPlugin(message) => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin", message)
            }
            ServiceError::Unavailable(message) => AppError::unavailable(message),
            // Read-modify-writes are retried by the service; this reaches a
            // client only when the record kept changing under every attempt.
            ServiceError::Commit(CommitError::Conflict) => AppError::conflict(
                "the record changed while the request was handled; send it again",
            ),
            error => AppError::internal(ErrorChain(&error)),
        }
    }
}

/// An error with its sources, for the log: `outer: cause: root cause`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = self.0.to_string();
        write!(f, "{last}")?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            // An `#[error(transparent)]` wrapper says what its source says:
            // said once.
            let text = cause.to_string();
            if text != last {
                write!(f, ": {text}")?;
            }
            last = text;
            source = cause.source();
        }
        Ok(())
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
