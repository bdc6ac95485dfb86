//! Registration, login, `/me`, logout and refresh: the core every backend shares.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use authlab_core::{AuthError, Authenticator, Issued, TokenEndpoints};
use authlab_users::Username;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::mounted::{MountedBackend, Shared, client_info, refresh_refused};
use crate::audit;
use crate::backend_kind::RouteGroup;
use crate::error::{ApiError, refusals};
use crate::json::JsonLine;
use crate::metrics::Outcome;
use crate::throttle::Throttle;
use crate::transport::Transport;

/// Body of `POST /users` and `POST /{backend}/login`.
#[derive(Deserialize, ToSchema)]
#[schema(as = Credentials)]
pub struct UsernamePassword {
    /// 1-64 characters, no control characters, no leading or trailing space.
    #[schema(example = "alice")]
    username: String,
    /// At registration: `--password-min-length` (15) to 1024 characters, not easy to guess.
    #[schema(value_type = String, example = "correct horse battery staple")]
    password: SecretString,
}

/// Body of `POST /{redis,jwt}/refresh`.
#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    #[schema(value_type = String)]
    refresh_token: SecretString,
}

/// `201` of `POST /users`.
#[derive(Serialize, ToSchema)]
#[schema(as = User)]
pub struct Registered<'a> {
    user_id: i64,
    username: &'a str,
}

/// `200` of `GET /{backend}/me` (and of `/hello`, which has the same shape on purpose, with
/// user 0).
#[derive(Serialize, ToSchema)]
pub struct Me<'a> {
    pub(super) user_id: i64,
    pub(super) username: &'a str,
    /// `session`, `redis`, `jwt` (`none` on `/hello`).
    pub(super) backend: &'a str,
}

/// `200` of a bearer login or refresh (RFC 6749 §5.1's field names, which clients already know).
#[derive(Serialize, ToSchema)]
pub struct BearerLogin<'a> {
    access_token: &'a str,
    /// Always `Bearer`.
    token_type: &'a str,
    /// Seconds.
    expires_in: u64,
    /// Absent when this backend issues no refresh tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    refresh_token: Option<&'a str>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    refresh_expires_in: Option<u64>,
}

/// `200` of a cookie login (`POST /session/login`, `/session/rotate`): the id itself travels
/// only in the `HttpOnly` cookie.
#[derive(Serialize, ToSchema)]
pub struct CookieLogin {
    /// Always `cookie`.
    pub(super) token_type: &'static str,
    /// The idle timeout, in seconds.
    pub(super) expires_in: u64,
}

refusals!(
    /// What `POST /users` can answer besides 201.
    RegisterRefusals: MalformedJson, InvalidField, UsernameTaken, TooManyAttempts, BackendUnavailable
);

refusals!(
    /// What a login can answer besides 200.
    LoginRefusals: MalformedJson, InvalidCredentials, TooManyAttempts, BackendUnavailable
);

refusals!(
    /// How a presented credential can be refused: every route that takes one answers these.
    CredentialRefusals: InvalidRequest, MissingCredentials, InvalidToken, TokenExpired, TokenRevoked,
        BackendUnavailable
);

refusals!(
    /// What a refresh can answer besides 200.
    RefreshRefusals: MalformedJson, InvalidToken, TokenExpired, TokenRevoked, RefreshTokenReused,
        BackendUnavailable
);

/// `POST /users`: registers a user (201), hashing the password before it touches the database.
#[utoipa::path(
    post,
    path = "/users",
    operation_id = "users_register",
    summary = "Register a user",
    description = "Hashes the password (argon2id) and stores the user. 20 registrations per \
                   client address per window.",
    request_body = UsernamePassword,
    responses((status = 201, description = "Registered", body = Registered), RegisterRefusals)
)]
pub async fn register(
    req: HttpRequest,
    shared: web::Data<Shared>,
    throttle: web::Data<Throttle>,
    body: web::Json<UsernamePassword>,
) -> Result<HttpResponse, ApiError> {
    // Every attempt counts, refused or not: a 409 tells whether a name exists.
    throttle.registration(&req).await?;
    let UsernamePassword { username, password } = body.into_inner();
    let username = Username::parse(username)?;
    let password = shared
        .users
        .check_new_password(username.as_str(), password)
        .await?;
    let user = shared.users.register(username, password).await?;
    Ok(HttpResponse::Created().json_line(Registered {
        user_id: user.user_id,
        username: &user.username,
    }))
}

/// The response that hands a freshly issued credential to the client.
pub(super) fn issued_response<A>(backend: &MountedBackend<A>, issued: &Issued) -> HttpResponse {
    let credential = issued.credential.expose_secret();
    let expires_in = issued.expires_in.as_secs();
    let mut response = HttpResponse::Ok();
    // Credentials must never be cached (RFC 6749 §5.1).
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    match backend.transport {
        Transport::Cookie { .. } => response
            .cookie(backend.transport.session_cookie(credential))
            .json_line(CookieLogin {
                token_type: "cookie",
                expires_in,
            }),
        Transport::Bearer { .. } => response.json_line(BearerLogin {
            access_token: credential,
            token_type: "Bearer",
            expires_in,
            refresh_token: issued.refresh.as_ref().map(|r| r.token.expose_secret()),
            refresh_expires_in: issued.refresh.as_ref().map(|r| r.expires_in.as_secs()),
        }),
    }
}

/// `POST /{backend}/login`: checks name and password, then issues this backend's credential.
#[utoipa::path(
    post,
    path = "/login",
    summary = "Log in",
    description = "Checks the name and password and issues this backend's credential (session: \
                   the `sid` cookie; redis, jwt: an access token and a refresh token). Every \
                   login starts a new session or token family.",
    request_body = UsernamePassword,
    responses((status = 200, description = "Logged in", body = BearerLogin), LoginRefusals)
)]
pub async fn login<A: Authenticator>(
    req: HttpRequest,
    shared: web::Data<Shared>,
    backend: web::Data<MountedBackend<A>>,
    throttle: web::Data<Throttle>,
    body: web::Json<UsernamePassword>,
) -> Result<HttpResponse, ApiError> {
    let UsernamePassword { username, password } = body.into_inner();
    // Counted before the password is checked, and the same way for every name, known or not:
    // a throttled answer (and its timing) must not tell which names exist.
    let guess = throttle
        .login(&req, RouteGroup::Backend(backend.kind), &username)
        .await?;
    // Over-long input cannot belong to anybody; answer like any other failed login.
    let verdict = if username.len() > 4 * authlab_users::MAX_USERNAME_CHARS
        || password.expose_secret().len() > 4 * authlab_users::MAX_PASSWORD_CHARS
    {
        Ok(None)
    } else {
        shared.users.authenticate(&username, password).await
    };
    let identity = match verdict {
        Ok(Some(identity)) => {
            guess.right().await;
            backend.metrics.login(true);
            identity
        }
        Ok(None) => {
            backend.metrics.login(false);
            audit::login_failed(&req, backend.kind, guess.account());
            guess.wrong().await;
            return Err(ApiError::InvalidCredentials);
        }
        Err(err) => {
            guess.undecided().await;
            return Err(err.into());
        }
    };
    let issued = backend
        .auth
        .issue(&identity, &client_info(&req))
        .await
        .map_err(|c| backend.refuse(c))?;
    audit::login_succeeded(&req, backend.kind, identity.user_id);
    backend.end_presented_sessions(&req).await;
    Ok(issued_response(&backend, &issued))
}

/// `GET /{backend}/me`: who the credential belongs to. The hot path every load test measures.
#[utoipa::path(
    get,
    path = "/me",
    summary = "Who the credential belongs to",
    description = "The hot path every load test measures.",
    responses((status = 200, description = "The caller", body = Me), CredentialRefusals),
    security(("bearer" = []))
)]
pub async fn me<A: Authenticator>(
    req: HttpRequest,
    backend: web::Data<MountedBackend<A>>,
) -> Result<HttpResponse, ApiError> {
    let identity = backend.authenticate(&req).await?;
    Ok(HttpResponse::Ok().json_line(Me {
        user_id: identity.user_id,
        username: &identity.username,
        backend: backend.kind.name(),
    }))
}

/// `POST /{backend}/logout`: revokes the presented credential (204).
#[utoipa::path(
    post,
    path = "/logout",
    summary = "Log out",
    description = "Ends the presented credential and its login (family): on redis and jwt, every \
                   access token and the refresh token of that login. With `--jwt-denylist off`, \
                   a JWT access token stays valid until `exp`.",
    responses((status = 204, description = "Logged out"), CredentialRefusals),
    security(("bearer" = []))
)]
pub async fn logout<A: Authenticator>(
    req: HttpRequest,
    backend: web::Data<MountedBackend<A>>,
) -> Result<HttpResponse, ApiError> {
    let outcome = match backend.transport.credential(&req) {
        // `revoke` says whose credential it ended: the audit event needs no second lookup.
        Ok(credential) => backend.auth.revoke(credential).await.map(|who| who.user_id),
        Err(missing) => Err(missing),
    };
    if let Ok(user_id) = outcome {
        audit::logout(&req, backend.kind, user_id);
    }
    match (outcome, backend.transport) {
        (Ok(_), Transport::Cookie { .. }) => Ok(HttpResponse::NoContent()
            .cookie(backend.transport.expired_session_cookie())
            .finish()),
        (Ok(_), Transport::Bearer { .. }) => Ok(HttpResponse::NoContent().finish()),
        // A dead session id in the browser is useless: tell the browser to drop it even though
        // the logout itself is refused.
        (Err(cause @ (AuthError::Invalid | AuthError::Expired)), Transport::Cookie { .. }) => {
            let mut response = backend.refuse(cause).error_response();
            let _ = response.add_cookie(&backend.transport.expired_session_cookie());
            Ok(response)
        }
        (Err(cause), _) => Err(backend.refuse(cause)),
    }
}

/// `POST /{backend}/refresh`: spends a refresh token for a new access token and refresh token.
#[utoipa::path(
    post,
    path = "/refresh",
    summary = "Exchange a refresh token",
    description = "Rotation: a new access token and a new refresh token; the old one is spent. A \
                   spent one presented again revokes the whole login (`refresh_token_reused`), \
                   except within `--refresh-grace`, which gives the same successor.",
    request_body = RefreshRequest,
    responses((status = 200, description = "The new pair", body = BearerLogin), RefreshRefusals)
)]
pub async fn refresh<A: TokenEndpoints>(
    req: HttpRequest,
    backend: web::Data<MountedBackend<A>>,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = body.into_inner().refresh_token;
    let issued = match backend
        .auth
        .refresh(token.expose_secret(), &client_info(&req))
        .await
    {
        Ok(issued) => {
            backend.metrics.decided(Outcome::Ok);
            issued
        }
        Err(cause) => {
            backend.metrics.decided(Outcome::of_error(&cause));
            if matches!(cause, AuthError::Reused) {
                audit::refresh_reuse_detected(&req, backend.kind);
            }
            return Err(refresh_refused(cause));
        }
    };
    // The backend says whose login it was: the audit event needs no second lookup.
    audit::refresh(&req, backend.kind, issued.identity.user_id);
    Ok(issued_response(&backend, &issued.issued))
}
