//! The HTTP API. Each backend is mounted under its own scope (`/session`, `/redis`, `/jwt`) with the
//! *same* handlers, written once and made generic over [`Authenticator`]: whatever differs between
//! the three scopes' numbers comes from the backend, not from the code around it.
//!
//! | route | answer |
//! |---|---|
//! | `POST /users` | register: 201 `{"user_id","username"}` |
//! | `POST /{backend}/login` | a new credential (cookie or bearer token) |
//! | `GET /{backend}/me` | who the credential belongs to |
//! | `POST /{backend}/logout` | 204; the credential is dead |
//! | `GET /hello` | the unauthenticated baseline for load tests, shaped like `/me` |
//! | `GET /healthz`, `GET /readyz` | liveness; readiness of Redis and the user store |

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use authlab_core::{AuthError, Authenticator, Identity};
use authlab_redis::RedisConnection;
use authlab_users::{Password, UserStore, Username};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::transport::Transport;

/// How long a readiness check waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// One mounted backend: the authenticator, how its credential travels, and its scope's name.
pub struct Backend<A> {
    /// The authenticator itself.
    pub auth: A,
    /// Cookie or bearer.
    pub transport: Transport,
    /// The scope (`session`, `redis`, `jwt`), also reported by `/me`.
    pub name: &'static str,
}

impl<A: Authenticator> Backend<A> {
    /// The identity behind the credential in `req`: the per-request hot path.
    async fn authenticate(&self, req: &HttpRequest) -> Result<Identity, ApiError> {
        let credential = self.transport.credential(req).map_err(|c| self.refuse(c))?;
        self.auth
            .verify(credential)
            .await
            .map_err(|c| self.refuse(c))
    }

    /// The 401 (or 503) for a credential this backend did not accept.
    fn refuse(&self, cause: AuthError) -> ApiError {
        ApiError::Unauthenticated {
            cause,
            challenge: self.transport.challenge(),
        }
    }
}

/// What the rest of the app shares with the handlers.
pub struct Shared {
    /// The user store, for registration and login.
    pub users: UserStore,
    /// The Redis connection, for the readiness check.
    pub redis: Arc<RedisConnection>,
}

/// Body of `POST /users` and `POST /{backend}/login`.
#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: SecretString,
}

/// Body of `/me` (and of `/hello`, which has the same shape on purpose).
#[derive(Serialize)]
struct Me<'a> {
    user_id: i64,
    username: &'a str,
    backend: &'a str,
}

/// Body of a bearer login (RFC 6749 §5.1's field names, which clients already know).
#[derive(Serialize)]
struct BearerLogin<'a> {
    access_token: &'a str,
    token_type: &'a str,
    expires_in: u64,
}

/// Body of a cookie login: the id itself travels only in the `HttpOnly` cookie.
#[derive(Serialize)]
struct CookieLogin {
    token_type: &'static str,
    expires_in: u64,
}

/// Mounts every route on an app.
pub fn configure<S, R, J>(
    cfg: &mut web::ServiceConfig,
    shared: web::Data<Shared>,
    session: web::Data<Backend<S>>,
    redis: web::Data<Backend<R>>,
    jwt: web::Data<Backend<J>>,
) where
    S: Authenticator,
    R: Authenticator,
    J: Authenticator,
{
    cfg.app_data(shared)
        .service(resource("/users", "POST").route(web::post().to(register)))
        .service(resource("/hello", "GET").route(web::get().to(hello)))
        .service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(readyz)))
        .service(backend_scope(session))
        .service(backend_scope(redis))
        .service(backend_scope(jwt));
}

/// A resource whose other methods get a JSON 405 with an `Allow` header, rather than a bare 404.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut response = ApiError::MethodNotAllowed.error_response();
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        response
    }))
}

fn backend_scope<A: Authenticator>(backend: web::Data<Backend<A>>) -> actix_web::Scope {
    web::scope(&format!("/{}", backend.name))
        .app_data(backend)
        .service(resource("/login", "POST").route(web::post().to(login::<A>)))
        .service(resource("/me", "GET").route(web::get().to(me::<A>)))
        .service(resource("/logout", "POST").route(web::post().to(logout::<A>)))
}

async fn register(
    shared: web::Data<Shared>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { username, password } = body.into_inner();
    let username = Username::parse(username)?;
    let password = Password::parse(password)?;
    let user = shared.users.register(username, password).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "user_id": user.user_id,
        "username": &*user.username,
    })))
}

async fn login<A: Authenticator>(
    shared: web::Data<Shared>,
    backend: web::Data<Backend<A>>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { username, password } = body.into_inner();
    // Over-long input cannot belong to anybody; answer like any other failed login.
    if username.len() > 4 * authlab_users::MAX_USERNAME_CHARS
        || password.expose_secret().len() > 4 * authlab_users::MAX_PASSWORD_CHARS
    {
        return Err(ApiError::InvalidCredentials);
    }
    let identity = shared
        .users
        .authenticate(&username, password)
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    let issued =
        backend
            .auth
            .issue(&identity)
            .await
            .map_err(|cause| ApiError::Unauthenticated {
                cause,
                challenge: backend.transport.challenge(),
            })?;
    let credential = issued.credential.expose_secret();
    let expires_in = issued.expires_in.as_secs();
    let mut response = HttpResponse::Ok();
    // Credentials must never be cached (RFC 6749 §5.1).
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    Ok(match backend.transport {
        Transport::Cookie { .. } => response
            .cookie(
                backend
                    .transport
                    .session_cookie(credential, issued.expires_in),
            )
            .json(CookieLogin {
                token_type: "cookie",
                expires_in,
            }),
        Transport::Bearer { .. } => response.json(BearerLogin {
            access_token: credential,
            token_type: "Bearer",
            expires_in,
        }),
    })
}

async fn me<A: Authenticator>(
    req: HttpRequest,
    backend: web::Data<Backend<A>>,
) -> Result<HttpResponse, ApiError> {
    let identity = backend.authenticate(&req).await?;
    Ok(HttpResponse::Ok().json(Me {
        user_id: identity.user_id,
        username: &identity.username,
        backend: backend.name,
    }))
}

async fn logout<A: Authenticator>(
    req: HttpRequest,
    backend: web::Data<Backend<A>>,
) -> Result<HttpResponse, ApiError> {
    let credential = backend
        .transport
        .credential(&req)
        .map_err(|c| backend.refuse(c))?;
    backend
        .auth
        .revoke(credential)
        .await
        .map_err(|c| backend.refuse(c))?;
    let mut response = HttpResponse::NoContent();
    if let Transport::Cookie { .. } = backend.transport {
        response.cookie(backend.transport.expired_session_cookie());
    }
    Ok(response.finish())
}

async fn hello() -> HttpResponse {
    HttpResponse::Ok().json(Me {
        user_id: 0,
        username: "anonymous",
        backend: "none",
    })
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(shared: web::Data<Shared>) -> HttpResponse {
    async fn check<E>(probe: impl Future<Output = Result<(), E>>) -> &'static str {
        match tokio::time::timeout(READY_TIMEOUT, probe).await {
            Ok(Ok(())) => "ok",
            _ => "unavailable",
        }
    }
    let (redis, database) = tokio::join!(check(shared.redis.ping()), check(shared.users.ping()));
    let checks = serde_json::json!({ "redis": redis, "database": database });
    if redis == "ok" && database == "ok" {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ok", "checks": checks }))
    } else {
        let failing: Vec<&str> = [("redis", redis), ("database", database)]
            .iter()
            .filter(|(_, state)| *state != "ok")
            .map(|(name, _)| *name)
            .collect();
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(serde_json::json!({
                "error": "not_ready",
                "message": format!("unavailable: {}", failing.join(", ")),
                "checks": checks,
            }))
    }
}

/// The JSON answer for a route that does not exist.
pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}
