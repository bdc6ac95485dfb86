//! Every error the API can answer, and the one place where each becomes an HTTP response.
//!
//! Backends and the user store speak in their own typed errors ([`AuthError`], [`UserStoreError`]);
//! this module is the only code that knows status codes. Every error body has the same shape,
//! `{"error": "<code>", "message": "<human text>"}`: the code is stable for programs, the message is
//! for people. Server-side failures (5xx) show a fixed message; their cause goes to the log only.

use std::collections::BTreeMap;
use std::error::Error as StdError;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError, error::JsonPayloadError};
use authlab_core::AuthError;
use authlab_jwt::JwtError;
use authlab_redis::RedisBackendError;
use authlab_users::UserStoreError;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

use crate::json::JsonLine;
use crate::readiness::Readiness;

/// `{"error", "message"}`: the JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    /// Stable, for programs: one of the codes listed in the API description.
    pub error: ErrorCode,
    /// For people; may change.
    pub message: &'a str,
    /// `/readyz` only: each dependency, `ok` or `unavailable`.
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
    /// An issuing route (login, refresh, logout, ...) of `/jwt` on a verifier-only instance
    /// (`--role verifier`), which holds no key that signs.
    #[error(
        "this instance only verifies JWTs (--role verifier): log in, refresh and log out at the issuer"
    )]
    NotAnIssuer,
    /// A bug or an unexpected failure. The client learns nothing more.
    #[error("internal error")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

/// Declares [`ErrorCode`] from one table: each code once, with its status and what it means.
/// The body's `error`, the response's status and the API description all read it.
macro_rules! error_codes {
    ($(#[doc = $meaning:literal] $variant:ident = $code:literal, $status:ident;)+) => {
        /// Every code an error body can carry: stable, for programs (the message is for people).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ErrorCode {
            $(#[doc = $meaning] $variant,)+
        }

        impl ErrorCode {
            /// Every code, ordered by status.
            pub const ALL: &[ErrorCode] = &[$(Self::$variant),+];

            /// The code as a body carries it: `invalid_token`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)+
                }
            }

            /// The status of every answer with this code.
            pub const fn status(self) -> StatusCode {
                match self {
                    $(Self::$variant => StatusCode::$status,)+
                }
            }

            /// What the code means, in a line.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(Self::$variant => $meaning.trim_ascii(),)+
                }
            }
        }
    };
}

error_codes! {
    /// the body is not the JSON the route takes
    MalformedJson = "malformed_json", BAD_REQUEST;
    /// a form body (revoke, introspect) that does not parse, or more than one credential
    InvalidRequest = "invalid_request", BAD_REQUEST;
    /// no credential was presented
    MissingCredentials = "missing_credentials", UNAUTHORIZED;
    /// the credential is malformed, forged or unknown
    InvalidToken = "invalid_token", UNAUTHORIZED;
    /// the credential's lifetime is over
    TokenExpired = "token_expired", UNAUTHORIZED;
    /// the credential was revoked (logout)
    TokenRevoked = "token_revoked", UNAUTHORIZED;
    /// a spent refresh token came back: its whole login was revoked
    RefreshTokenReused = "refresh_token_reused", UNAUTHORIZED;
    /// wrong user name or password (one answer for both)
    InvalidCredentials = "invalid_credentials", UNAUTHORIZED;
    /// `/introspect` without the right client secret
    InvalidClient = "invalid_client", UNAUTHORIZED;
    /// an unsafe request carrying the session cookie came from another site
    CsrfRejected = "csrf_rejected", FORBIDDEN;
    /// a CORS preflight this server does not grant
    CorsRejected = "cors_rejected", FORBIDDEN;
    /// no such session of the caller's
    SessionNotFound = "session_not_found", NOT_FOUND;
    /// no such route
    NotFound = "not_found", NOT_FOUND;
    /// the route exists, the method does not (see `Allow`)
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED;
    /// the user name is taken
    UsernameTaken = "username_taken", CONFLICT;
    /// the body is larger than 64 KiB
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE;
    /// the body is not of the type the route takes
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    /// a field breaks a rule (name, password policy)
    InvalidField = "invalid_field", UNPROCESSABLE_ENTITY;
    /// login throttling: too many failures; see `Retry-After`
    TooManyAttempts = "too_many_attempts", TOO_MANY_REQUESTS;
    /// an unexpected failure; the body says nothing more
    InternalError = "internal_error", INTERNAL_SERVER_ERROR;
    /// this backend cannot do it in its current configuration (stateless JWT refresh)
    Unsupported = "unsupported", NOT_IMPLEMENTED;
    /// a verifier-only instance (`--role verifier`) does not issue, refresh or revoke JWTs: the issuer does
    NotAnIssuer = "not_an_issuer", NOT_IMPLEMENTED;
    /// Redis or the user store did not answer; see `Retry-After`
    BackendUnavailable = "backend_unavailable", SERVICE_UNAVAILABLE;
    /// a verifier has no usable keys: the issuer's JWKS was not fetched yet, or not for longer than `--jwks-max-stale`
    JwksUnavailable = "jwks_unavailable", SERVICE_UNAVAILABLE;
    /// `/readyz`: a dependency is down (`checks` names it)
    NotReady = "not_ready", SERVICE_UNAVAILABLE;
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A string enum of every code, each with its status and meaning in the description.
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let listed: Vec<String> = Self::ALL
            .iter()
            .map(|c| {
                format!(
                    "- `{}` ({}): {}",
                    c.as_str(),
                    c.status().as_u16(),
                    c.meaning()
                )
            })
            .collect();
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Self::ALL.iter().map(|c| c.as_str())))
            .description(Some(format!("Every error code:\n{}", listed.join("\n"))))
            .into()
    }
}

impl ToSchema for ErrorCode {}

impl ErrorCode {
    /// Adds `codes` to an operation's responses: one response per status, whose description
    /// names its codes (`` `token_expired`, `token_revoked` ``) and whose body is the error body.
    pub fn add_responses(codes: &[ErrorCode], responses: &mut BTreeMap<String, RefOr<Response>>) {
        for code in codes {
            let named = format!("`{}`", code.as_str());
            let response = responses
                .entry(code.status().as_u16().to_string())
                .or_insert_with(|| {
                    ResponseBuilder::new()
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                                .build(),
                        )
                        .into()
                });
            if let RefOr::T(response) = response
                && !response.description.contains(&named)
            {
                if !response.description.is_empty() {
                    response.description.push_str(", ");
                }
                response.description.push_str(&named);
            }
        }
    }
}

/// Declares the error responses of a handler, for its `#[utoipa::path(responses(...))]`: the
/// codes the handler itself answers with. What the router and middleware add to every route
/// (`method_not_allowed`, a refused body, `csrf_rejected`) is added where the document is built.
macro_rules! refusals {
    ($(#[$doc:meta])* $name:ident: $($code:ident),+ $(,)?) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                let mut responses = std::collections::BTreeMap::new();
                $crate::error::ErrorCode::add_responses(
                    &[$($crate::error::ErrorCode::$code),+],
                    &mut responses,
                );
                responses
            }
        }
    };
}
pub(crate) use refusals;

impl ApiError {
    /// The stable code in the body; it decides the status too ([`ErrorCode::status`]).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated { cause, .. } => match cause {
                AuthError::Missing => ErrorCode::MissingCredentials,
                AuthError::Expired => ErrorCode::TokenExpired,
                AuthError::Revoked => ErrorCode::TokenRevoked,
                AuthError::Reused => ErrorCode::RefreshTokenReused,
                AuthError::Unsupported => ErrorCode::Unsupported,
                AuthError::Unavailable(source)
                    if matches!(
                        source.downcast_ref::<JwtError>(),
                        Some(JwtError::KeysUnavailable)
                    ) =>
                {
                    ErrorCode::JwksUnavailable
                }
                AuthError::Unavailable(_) => ErrorCode::BackendUnavailable,
                AuthError::Ambiguous => ErrorCode::InvalidRequest,
                _ => ErrorCode::InvalidToken,
            },
            Self::InvalidCredentials => ErrorCode::InvalidCredentials,
            Self::UsernameTaken => ErrorCode::UsernameTaken,
            Self::InvalidField { .. } => ErrorCode::InvalidField,
            Self::MalformedJson(_) => ErrorCode::MalformedJson,
            Self::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::CsrfRejected => ErrorCode::CsrfRejected,
            Self::CorsRejected(_) => ErrorCode::CorsRejected,
            Self::InvalidClient => ErrorCode::InvalidClient,
            Self::NotFound => ErrorCode::NotFound,
            Self::SessionNotFound => ErrorCode::SessionNotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::Unavailable { .. } => ErrorCode::BackendUnavailable,
            Self::NotReady(_) => ErrorCode::NotReady,
            Self::TooManyAttempts { .. } => ErrorCode::TooManyAttempts,
            Self::NotAnIssuer => ErrorCode::NotAnIssuer,
            Self::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// The stable code in the body, as text.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
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
                AuthError::Unavailable(source)
                    if matches!(
                        source.downcast_ref::<JwtError>(),
                        Some(JwtError::KeysUnavailable)
                    ) =>
                {
                    "this verifier has no usable keys from the issuer's JWKS yet (or they are \
                     too old); try again shortly"
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
        self.error_code().status()
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
            error: self.error_code(),
            message: &message,
            checks: match self {
                Self::NotReady(readiness) => Some(readiness),
                _ => None,
            },
        })
    }
}
