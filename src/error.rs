//! Every error the API can answer, and the one place where each becomes an HTTP response.
//!
//! Backends and the user store speak in their own typed errors ([`AuthError`], [`UserStoreError`]);
//! this module is the only code that knows status codes. Every error body has the same shape,
//! `{"error": "<code>", "message": "<human text>"}`: the code is stable for programs, the message is
//! for people. Server-side failures (5xx) show a fixed message; their cause goes to the log only.

use std::error::Error as StdError;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError, error::JsonPayloadError};
use authlab_core::AuthError;
use authlab_redis::RedisBackendError;
use authlab_users::UserStoreError;
use serde::Serialize;

use crate::json::JsonLine;
use crate::readiness::Readiness;

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// A stable, machine-readable code such as `invalid_token`.
    pub error: &'a str,
    /// A sentence for humans.
    pub message: &'a str,
    /// Each dependency's state, on `/readyz` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<&'a Readiness>,
}

/// Whether a 401 should carry an RFC 6750 `WWW-Authenticate: Bearer` challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// Cookie-based backends: a browser has nothing to do with a Bearer challenge.
    None,
    /// Bearer-token backends (RFC 6750 §3).
    Bearer,
}

/// Everything an API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A protected route was called without an acceptable credential.
    #[error("authentication failed")]
    Unauthenticated {
        /// Why the credential was refused (or that the backend could not judge it).
        #[source]
        cause: AuthError,
        /// What kind of challenge to send with a 401.
        challenge: Challenge,
    },
    /// Login with a wrong name or password (one answer for both, on purpose).
    #[error("invalid user name or password")]
    InvalidCredentials,
    /// Registration with a taken name.
    #[error("the user name is already taken")]
    UsernameTaken,
    /// A well-formed request whose field breaks a rule.
    #[error("{field}: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The body is not the JSON we expect (syntax, missing field, wrong type).
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    /// The body is larger than the configured limit.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// The body is not of the declared type the route takes.
    #[error(
        "the request body must be application/json (application/x-www-form-urlencoded for /revoke and /introspect)"
    )]
    UnsupportedMediaType,
    /// A form body (RFC 7009 / 7662 endpoints) that does not parse.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// An unsafe request carrying the session cookie came from another site (Fetch Metadata or
    /// `Origin`; see [`crate::middleware::csrf`]). Nothing was done.
    #[error(
        "cross-origin request refused: it carries the session cookie but comes from another site"
    )]
    CsrfRejected,
    /// A CORS preflight this server does not grant (an origin not on `--cors-origin`, or a method
    /// or header CORS does not allow).
    #[error("cross-origin request refused: {0}")]
    CorsRejected(#[source] actix_cors::CorsError),
    /// `/introspect` without a valid client secret (wrong, or none configured).
    #[error("the introspection client credential is not valid")]
    InvalidClient,
    /// No such route.
    #[error("no such route")]
    NotFound,
    /// `DELETE /{backend}/sessions/{id}` for a session the caller does not have.
    #[error("no such session")]
    SessionNotFound,
    /// The route exists, the method does not.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// A dependency (Redis, the user database) could not answer.
    #[error("{dependency} is unavailable")]
    Unavailable {
        /// Which dependency, in words.
        dependency: &'static str,
        /// What happened, for the log.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// `/readyz`: a dependency is down, so this instance should get no traffic for now.
    #[error("unavailable: {}", .0.failing().join(", "))]
    NotReady(Readiness),
    /// Too many failed attempts for this account name or from this client, within the login
    /// window (see [`crate::throttle`]). The same answer for known and unknown names.
    #[error("too many attempts; try again later")]
    TooManyAttempts {
        /// What is left of the window: sent as `Retry-After` (whole seconds).
        retry_after: std::time::Duration,
    },
    /// A bug or an unexpected failure. The client learns nothing more.
    #[error("internal error")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl ApiError {
    /// The stable code in the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated { cause, .. } => match cause {
                AuthError::Missing => "missing_credentials",
                AuthError::Expired => "token_expired",
                AuthError::Revoked => "token_revoked",
                AuthError::Reused => "refresh_token_reused",
                AuthError::Unsupported => "unsupported",
                AuthError::Unavailable(_) => "backend_unavailable",
                AuthError::Ambiguous => "invalid_request",
                _ => "invalid_token",
            },
            Self::InvalidCredentials => "invalid_credentials",
            Self::UsernameTaken => "username_taken",
            Self::InvalidField { .. } => "invalid_field",
            Self::MalformedJson(_) => "malformed_json",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidRequest(_) => "invalid_request",
            Self::CsrfRejected => "csrf_rejected",
            Self::CorsRejected(_) => "cors_rejected",
            Self::InvalidClient => "invalid_client",
            Self::NotFound => "not_found",
            Self::SessionNotFound => "session_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unavailable { .. } => "backend_unavailable",
            Self::NotReady(_) => "not_ready",
            Self::TooManyAttempts { .. } => "too_many_attempts",
            Self::Internal(_) => "internal_error",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Unauthenticated { cause, .. } => match cause {
                AuthError::Missing => "no credential was presented".into(),
                AuthError::Expired => "the credential has expired".into(),
                AuthError::Revoked => "the credential has been revoked".into(),
                AuthError::Reused => "the refresh token was already used; every token of its \
                                      login has been revoked"
                    .into(),
                AuthError::Unsupported => {
                    "this backend does not support the operation in its current configuration"
                        .into()
                }
                AuthError::Unavailable(_) => {
                    "the authentication backend is unavailable; try again shortly".into()
                }
                AuthError::Ambiguous => "more than one credential was presented (two \
                                         Authorization headers, a header and a query token, two \
                                         query tokens, or two session cookies); send exactly one"
                    .into(),
                _ => "the credential is not valid".into(),
            },
            Self::Unavailable { dependency, .. } => {
                format!("{dependency} is unavailable; try again shortly")
            }
            Self::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    fn bearer_challenge(&self) -> Option<String> {
        if let Self::InvalidClient = self {
            return Some(format!(
                r#"Bearer realm="authlab", error="invalid_token", error_description="{}""#,
                self.message()
            ));
        }
        let Self::Unauthenticated {
            cause,
            challenge: Challenge::Bearer,
        } = self
        else {
            return None;
        };
        Some(match cause {
            // RFC 6750 §3.1: no error attribute when the request had no token at all.
            AuthError::Missing => r#"Bearer realm="authlab""#.to_owned(),
            AuthError::Unavailable(_) | AuthError::Unsupported => return None,
            // RFC 6750 §3.1: "uses more than one method for including an access token".
            AuthError::Ambiguous => format!(
                r#"Bearer realm="authlab", error="invalid_request", error_description="{}""#,
                self.message()
            ),
            _ => format!(
                r#"Bearer realm="authlab", error="invalid_token", error_description="{}""#,
                self.message()
            ),
        })
    }
}

impl From<UserStoreError> for ApiError {
    fn from(err: UserStoreError) -> Self {
        match err {
            UserStoreError::InvalidField { field, reason } => Self::InvalidField { field, reason },
            UserStoreError::UsernameTaken => Self::UsernameTaken,
            UserStoreError::Unavailable(source) => Self::Unavailable {
                dependency: "the user store",
                source: Box::new(source),
            },
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<RedisBackendError> for ApiError {
    fn from(err: RedisBackendError) -> Self {
        Self::Unavailable {
            dependency: "Redis",
            source: Box::new(err),
        }
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(err: JsonPayloadError) -> Self {
        use actix_web::error::PayloadError;
        match err {
            JsonPayloadError::OverflowKnownLength { .. }
            | JsonPayloadError::Overflow { .. }
            | JsonPayloadError::Payload(PayloadError::Overflow) => Self::PayloadTooLarge,
            JsonPayloadError::ContentType => Self::UnsupportedMediaType,
            JsonPayloadError::Deserialize(e) => Self::MalformedJson(e.to_string()),
            other => Self::MalformedJson(other.to_string()),
        }
    }
}

impl From<actix_web::error::UrlencodedError> for ApiError {
    fn from(err: actix_web::error::UrlencodedError) -> Self {
        use actix_web::error::UrlencodedError;
        match err {
            UrlencodedError::Overflow { .. } => Self::PayloadTooLarge,
            UrlencodedError::ContentType => Self::UnsupportedMediaType,
            other => Self::InvalidRequest(other.to_string()),
        }
    }
}

/// Writes an error and its whole `source()` chain on one line, for the log (defined with the
/// errors every crate shares, in `authlab-core`).
pub use authlab_core::CauseChain;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthenticated {
                cause: AuthError::Unavailable(_),
                ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated {
                cause: AuthError::Unsupported,
                ..
            } => StatusCode::NOT_IMPLEMENTED,
            Self::Unauthenticated {
                cause: AuthError::Ambiguous,
                ..
            } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated { .. } | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::UsernameTaken => StatusCode::CONFLICT,
            Self::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::CsrfRejected | Self::CorsRejected(_) => StatusCode::FORBIDDEN,
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::NotFound | Self::SessionNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable { .. } | Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // A failing readiness probe is an answer, not a failure: a load balancer asks every
        // second, and the log would say the same thing every second.
        if status.is_server_error() && !matches!(self, Self::NotReady(_)) {
            // The cause chain goes to the log, never to the client.
            tracing::warn!(code = self.code(), error.cause_chain = %CauseChain(self), "request failed");
        }
        let message = self.message();
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(challenge) = self.bearer_challenge()
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            response.insert_header((header::WWW_AUTHENTICATE, value));
        }
        if matches!(self, Self::Unavailable { .. } | Self::NotReady(_))
            || matches!(
                self,
                Self::Unauthenticated {
                    cause: AuthError::Unavailable(_),
                    ..
                }
            )
        {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        if let Self::TooManyAttempts { retry_after } = self {
            response.insert_header((header::RETRY_AFTER, retry_after.as_secs().max(1)));
        }
        response.json_line(ErrorBody {
            error: self.code(),
            message: &message,
            checks: match self {
                Self::NotReady(readiness) => Some(readiness),
                _ => None,
            },
        })
    }
}
