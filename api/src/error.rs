//! The one place where errors become HTTP responses (`{"detail": …}` on `/api/v1`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jhe_schemas::ErrorKind;
use serde_json::json;

/// An error answered to an API caller: a kind (which decides the status) and a message a person can act on.
#[derive(Debug)]
pub(crate) struct ApiError {
    kind: ErrorKind,
    detail: String,
    /// the OperationOutcome issue code on FHIR routes (`processing`, as every reference outcome has, unless a
    /// refusal names its reason)
    fhir_code: &'static str,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        ApiError { kind, detail: detail.into(), fhir_code: "processing" }
    }

    /// A request outside the token's SMART scopes: 403, issue code `forbidden` on FHIR routes.
    pub(crate) fn insufficient_scope(detail: impl Into<String>) -> Self {
        ApiError { fhir_code: "forbidden", ..Self::forbidden(detail) }
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, detail)
    }

    pub(crate) fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, detail)
    }

    pub(crate) fn permission_denied() -> Self {
        Self::forbidden("You do not have permission to perform this action.")
    }

    pub(crate) fn not_found(entity: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("No {entity} matches the given query."))
    }

    pub(crate) fn unauthenticated() -> Self {
        Self::new(ErrorKind::Unauthenticated, "Authentication credentials were not provided.")
    }

    pub(crate) fn internal() -> Self {
        Self::new(ErrorKind::Internal, "internal error; the server log has the details")
    }

    /// The same error as a FHIR OperationOutcome (the FHIR routes' error format, §6.9), without the
    /// WWW-Authenticate header (the reference sends none on FHIR routes).
    pub(crate) fn into_fhir_response(self) -> Response {
        let outcome =
            jhe_schemas::fhir::outcome::OperationOutcome::error(self.detail.as_str()).with_code(self.fhir_code);
        (self.status(), axum::Json(outcome)).into_response()
    }

    fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Gone => StatusCode::GONE,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<jhe_catalog::Error> for ApiError {
    fn from(error: jhe_catalog::Error) -> Self {
        match error.user_message() {
            Some(detail) => ApiError::new(error.kind(), detail),
            None => {
                tracing::error!(error = %error, "control plane error");
                match error.kind() {
                    ErrorKind::Unavailable => {
                        ApiError::new(ErrorKind::Unavailable, "the database is unavailable; try again shortly")
                    }
                    _ => ApiError::internal(),
                }
            }
        }
    }
}

impl From<jhe_query::QueryError> for ApiError {
    fn from(error: jhe_query::QueryError) -> Self {
        match error.user_message() {
            Some(detail) => ApiError::new(error.kind(), detail),
            None => {
                tracing::error!(error = %error, "query error");
                match error.kind() {
                    ErrorKind::Unavailable => ApiError::new(
                        ErrorKind::Unavailable,
                        "observations cannot be read right now; try again shortly",
                    ),
                    _ => ApiError::internal(),
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(json!({ "detail": self.detail }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"api\""));
        }
        response
    }
}

/// 410 Gone with `{"detail": …}` (an expired invitation, §7.4).
pub(crate) fn gone(detail: &str) -> Response {
    (StatusCode::GONE, axum::Json(json!({ "detail": detail }))).into_response()
}

/// An OAuth 2 error (RFC 6749 §5.2, RFC 6750 §3, RFC 7009, RFC 7662): `{"error", "error_description"}` with the
/// status each RFC names. The `/o/` endpoints answer only these, never `{"detail": …}`.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// the WWW-Authenticate challenge: `Basic` for client authentication, `Bearer` for resource requests
    challenge: Option<&'static str>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError { status, error, description: description.into(), challenge: None }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// Client authentication failed: 401 with a Basic challenge (RFC 6749 §5.2).
    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        OAuthError {
            challenge: Some("Basic realm=\"jhe\""),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
        }
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(crate) fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    /// A requested scope that is malformed or wider than allowed (RFC 6749 §5.2).
    pub(crate) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    pub(crate) fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", description)
    }

    /// A bearer token that is unknown, expired or revoked (RFC 6750 §3.1).
    pub(crate) fn invalid_token(description: impl Into<String>) -> Self {
        OAuthError {
            challenge: Some("Bearer realm=\"jhe\", error=\"invalid_token\""),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
        }
    }

    pub(crate) fn insufficient_scope(description: impl Into<String>) -> Self {
        OAuthError {
            challenge: Some("Bearer realm=\"jhe\", error=\"insufficient_scope\""),
            ..Self::new(StatusCode::FORBIDDEN, "insufficient_scope", description)
        }
    }

    pub(crate) fn server_error() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error; the server log has the details")
    }

    pub(crate) fn error_code(&self) -> &'static str {
        self.error
    }
}

impl From<jhe_catalog::Error> for OAuthError {
    fn from(error: jhe_catalog::Error) -> Self {
        tracing::error!(error = %error, "control plane error in the OAuth provider");
        match error.kind() {
            ErrorKind::Unavailable => OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the database is unavailable; try again shortly",
            ),
            _ => OAuthError::server_error(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(challenge) = self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}
