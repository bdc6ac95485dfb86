//! The HTTP API. Each backend is mounted under its own scope (`/session`, `/redis`, `/jwt`) with the
//! *same* handlers, written once and made generic over [`Authenticator`]: whatever differs between
//! the three scopes' numbers comes from the backend, not from the code around it.
//!
//! Which routes a scope gets follows from the backend's type: every backend gets login, `/me` and
//! logout ([`Authenticator`]); a backend that implements [`SessionRegistry`] gets the session
//! list and logout-all; one that implements [`TokenEndpoints`] gets refresh and the two OAuth
//! endpoints. The session backend has no refresh tokens, so `/session/refresh` is never mounted.
//!
//! | route | answer |
//! |---|---|
//! | `POST /users` | register: 201 `{"user_id","username"}` |
//! | `POST /users/me/password` | change password (any backend's credential); revokes everything |
//! | `POST /{backend}/login` | a new credential (cookie, or bearer + refresh token) |
//! | `GET /{backend}/me` | who the credential belongs to |
//! | `POST /{backend}/logout` | 204; the credential (and its refresh token) is dead |
//! | `POST /{backend}/logout-all` | every session of the user on this backend is dead |
//! | `GET /{backend}/sessions`, `DELETE /{backend}/sessions/{id}` | list / revoke one |
//! | `POST /{redis,jwt}/refresh` | rotate: new access token and new refresh token |
//! | `POST /{redis,jwt}/revoke`, `POST /{redis,jwt}/introspect` | RFC 7009 / RFC 7662 |
//! | `POST /session/rotate` | a new session id for the same session (after a privilege change) |
//! | `GET /hello` | the unauthenticated baseline for load tests, shaped like `/me` |
//! | `GET /healthz`, `GET /readyz` | liveness; readiness of Redis and the user store |
//! | `GET /livez` | the load balancer's check: 200 while this instance can serve, degraded backends named |
//! | `GET /`, `GET /static/{demo.js,demo.css,favicon.svg}` | the demo page and its assets |
//! | `GET /openapi.json`, `GET /docs/` | the OpenAPI 3.1 description; Swagger UI ([`crate::openapi`]) |
//! | `GET /metrics` | Prometheus metrics ([`crate::metrics`]) |
//!
//! # Where a request goes
//! `startup` builds the app with [`configure`]; a request under `/{backend}` reaches a generic
//! handler here, which finds the credential with [`crate::transport`], asks the backend
//! (`Backend::authenticate` is the hot path), and turns any failure into JSON through the one
//! mapping in [`crate::error`].
//!
//! # Layout
//! - [`auth`]: login, `/me`, logout and refresh: the per-backend core;
//! - [`lifecycle`]: the registry (list, revoke one, revoke all), password change, session rotation;
//! - [`oauth`]: RFC 7009 revocation and RFC 7662 introspection;
//! - [`health`]: `/hello`, `/healthz`, `/readyz`, `/livez`;
//! - [`demo`]: the demo page at `/` (embedded HTML, script and style, with its own CSP).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use authlab_core::{
    AuthError, Authenticator, ClientInfo, Identity, SessionRegistry, TokenEndpoints,
};
use authlab_redis::{RedisConnection, RedisTokenAuthenticator};
use authlab_session::SessionAuthenticator;
use authlab_users::UserStore;

use crate::backends::JwtBackend;
use crate::metrics::BackendMetrics;

use crate::error::{ApiError, Challenge};
use crate::introspection::IntrospectionClients;
use crate::transport::Transport;

pub mod auth;
pub mod demo;
pub mod health;
pub mod lifecycle;
pub mod oauth;

/// Longest `User-Agent` kept with a session, in bytes.
const MAX_USER_AGENT: usize = 256;

/// One mounted backend: the authenticator, how its credential travels, and its scope's name.
pub struct Backend<A> {
    /// The authenticator itself.
    pub auth: A,
    /// Cookie or bearer.
    pub transport: Transport,
    /// The scope (`session`, `redis`, `jwt`), also reported by `/me`.
    pub name: &'static str,
    /// Its decision counters and verify-latency histogram, registered once.
    pub metrics: BackendMetrics,
}

impl<A: Authenticator> Backend<A> {
    /// The identity behind the credential in `req`: the per-request hot path.
    async fn authenticate(&self, req: &HttpRequest) -> Result<Identity, ApiError> {
        let started = self.metrics.start();
        let result = match self.transport.credential(req) {
            Ok(credential) => self.auth.verify(credential).await,
            Err(missing) => Err(missing),
        };
        self.metrics.verified(&result, started);
        result.map_err(|c| self.refuse(c))
    }

    /// Ends the sessions whose cookies a login request presents: one browser, one live session,
    /// and an id planted or seen before the login is worthless after it. Only cookies are
    /// ended (a bearer token is never sent to a login); a dead or unknown id has nothing to end.
    async fn end_presented_sessions(&self, req: &HttpRequest) {
        for old in self.transport.session_cookies(req) {
            // Revoking a dead id fails harmlessly; the new login goes ahead either way.
            let _ = self.auth.revoke(old).await;
        }
    }

    /// The 401 (or 503) for a credential this backend did not accept.
    fn refuse(&self, cause: AuthError) -> ApiError {
        ApiError::Unauthenticated {
            cause,
            challenge: self.transport.challenge(),
        }
    }
}

/// A future that borrows from its caller, for the object-safe [`AnyBackend`].
type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// What the routes that span all backends (password change) need from each one, behind `dyn`
/// (the capability traits use `async fn` and so are not object-safe).
pub trait AnyBackend: Send + Sync {
    /// `None` if the request carries no credential of this backend's kind; otherwise what
    /// verifying it gave.
    fn identify<'a>(
        &'a self,
        req: &'a HttpRequest,
    ) -> Boxed<'a, Option<Result<Identity, AuthError>>>;
    /// Revokes every credential of the user on this backend.
    fn revoke_all(&self, user_id: i64) -> Boxed<'_, Result<usize, AuthError>>;
}

impl<A: Authenticator + SessionRegistry> AnyBackend for Backend<A> {
    fn identify<'a>(
        &'a self,
        req: &'a HttpRequest,
    ) -> Boxed<'a, Option<Result<Identity, AuthError>>> {
        Box::pin(async move {
            match self.transport.credential(req) {
                Err(AuthError::Missing) => None,
                Err(other) => Some(Err(other)),
                Ok(credential) => Some(self.auth.verify(credential).await),
            }
        })
    }

    fn revoke_all(&self, user_id: i64) -> Boxed<'_, Result<usize, AuthError>> {
        Box::pin(self.auth.revoke_all(user_id))
    }
}

/// What the rest of the app shares with the handlers.
pub struct Shared {
    /// The user store, for registration and login.
    pub users: UserStore,
    /// The Redis connection, for the readiness check.
    pub redis: Arc<RedisConnection>,
    /// Whether the JWT backend needs Redis (denylist or stored refresh tokens), for `/livez`.
    pub jwt_uses_redis: bool,
    /// Every mounted backend, for what spans them all.
    pub backends: Vec<Arc<dyn AnyBackend>>,
    /// How the session cookie is set, so routes outside `/session` can clear it.
    pub session_transport: Transport,
    /// Who may call RFC 7662 introspection.
    pub introspection: IntrospectionClients,
}

/// The client details kept with a new session.
fn client_info(req: &HttpRequest) -> ClientInfo {
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| {
            let mut end = ua.len().min(MAX_USER_AGENT);
            while !ua.is_char_boundary(end) {
                end -= 1;
            }
            ua[..end].to_owned()
        });
    ClientInfo { user_agent }
}

/// The three mounted backends and what their handlers share, as `startup` builds them.
#[derive(Clone)]
pub struct Mounted {
    /// The user store, Redis and the backends as `dyn`, for the routes outside the scopes.
    pub shared: web::Data<Shared>,
    /// `/session`.
    pub session: web::Data<Backend<SessionAuthenticator>>,
    /// `/redis`.
    pub redis: web::Data<Backend<RedisTokenAuthenticator>>,
    /// `/jwt`.
    pub jwt: web::Data<Backend<JwtBackend>>,
    /// The app's metrics, for `/metrics`.
    pub metrics: web::Data<crate::metrics::Metrics>,
}

/// Mounts every route on an app: the shared routes, then each backend's scope with the routes of
/// the capabilities its type has, then the description and metrics routes. Each route is listed
/// as it is mounted ([`mounted_routes`]).
pub fn configure(cfg: &mut web::ServiceConfig, mounted: &Mounted) {
    let mut list = Vec::new();
    let mut at = Mount::under("", &mut list);
    cfg.app_data(mounted.shared.clone())
        .service(
            at.resource("/users", "POST")
                .route(web::post().to(auth::register)),
        )
        .service(
            at.resource("/users/me/password", "POST")
                .route(web::post().to(lifecycle::change_password)),
        )
        .service(
            at.resource("/hello", "GET")
                .route(web::get().to(health::hello)),
        )
        .service(
            at.resource("/healthz", "GET")
                .route(web::get().to(health::healthz)),
        )
        .service(
            at.resource("/readyz", "GET")
                .route(web::get().to(health::readyz)),
        )
        .service(
            at.resource("/livez", "GET")
                .route(web::get().to(health::livez)),
        );
    let mut at = Mount::under(mounted.session.name, &mut list);
    cfg.service(
        registry_routes::<SessionAuthenticator>(
            backend_scope(mounted.session.clone(), &mut at),
            &mut at,
        )
        .service(
            at.resource("/rotate", "POST")
                .route(web::post().to(lifecycle::renew_session_id)),
        ),
    );
    let mut at = Mount::under(mounted.redis.name, &mut list);
    cfg.service(token_routes::<RedisTokenAuthenticator>(
        registry_routes::<RedisTokenAuthenticator>(
            backend_scope(mounted.redis.clone(), &mut at),
            &mut at,
        ),
        &mut at,
    ));
    let mut at = Mount::under(mounted.jwt.name, &mut list);
    cfg.service(token_routes::<JwtBackend>(
        registry_routes::<JwtBackend>(backend_scope(mounted.jwt.clone(), &mut at), &mut at),
        &mut at,
    ));
    let mut at = Mount::under("", &mut list);
    demo::configure(cfg, &mut at);
    cfg.service(
        at.resource("/openapi.json", "GET")
            .route(web::get().to(crate::openapi::openapi_json)),
    )
    .service(
        at.resource("/docs", "GET")
            .route(web::get().to(crate::openapi::docs_redirect)),
    )
    .service(
        at.resource("/docs/{file:.*}", "GET")
            .route(web::get().to(crate::openapi::docs)),
    )
    .service(
        at.resource("/metrics", "GET")
            .app_data(mounted.metrics.clone())
            .route(web::get().to(crate::metrics::scrape)),
    );
    // Which routes exist follows from the backends' types, not from the settings: every app
    // mounts the same list, so the first one to be configured records it.
    let _ = MOUNTED.get_or_init(|| list);
}

/// A route as [`configure`] mounted it: its method and its path template (`/redis/sessions/{id}`,
/// without any regex a parameter has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedRoute {
    /// `GET`, `POST`, `DELETE`.
    pub method: &'static str,
    /// The full path, with `{name}` parameters.
    pub path: String,
}

static MOUNTED: OnceLock<Vec<MountedRoute>> = OnceLock::new();

/// Every route [`configure`] mounts, in order (empty until an app has been configured). The
/// OpenAPI document describes exactly these, and `tests/api/openapi.rs` checks it.
pub fn mounted_routes() -> &'static [MountedRoute] {
    MOUNTED.get().map_or(&[], Vec::as_slice)
}

/// Makes resources under a prefix and lists each one as it is made.
struct Mount<'a> {
    prefix: String,
    list: &'a mut Vec<MountedRoute>,
}

impl<'a> Mount<'a> {
    /// Resources under `/{scope}` (the root for `""`).
    fn under(scope: &str, list: &'a mut Vec<MountedRoute>) -> Self {
        let prefix = if scope.is_empty() {
            String::new()
        } else {
            format!("/{scope}")
        };
        Self { prefix, list }
    }

    /// [`resource`], listed.
    fn resource(&mut self, path: &str, allow: &'static str) -> actix_web::Resource {
        // `{file:.*}` is `{file}` to anybody reading the list.
        let template: String = path
            .split('/')
            .map(|segment| match segment.split_once(':') {
                Some((name, _)) if segment.starts_with('{') => format!("{name}}}"),
                _ => segment.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        self.list.push(MountedRoute {
            method: allow,
            path: format!("{}{template}", self.prefix),
        });
        resource(path, allow)
    }
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

/// `/{backend}` with what every backend has ([`Authenticator`]): login, `/me`, logout.
fn backend_scope<A: Authenticator>(
    backend: web::Data<Backend<A>>,
    at: &mut Mount<'_>,
) -> actix_web::Scope {
    web::scope(&format!("/{}", backend.name))
        .app_data(backend)
        .service(
            at.resource("/login", "POST")
                .route(web::post().to(auth::login::<A>)),
        )
        .service(
            at.resource("/me", "GET")
                .route(web::get().to(auth::me::<A>)),
        )
        .service(
            at.resource("/logout", "POST")
                .route(web::post().to(auth::logout::<A>)),
        )
}

/// The session registry's routes ([`SessionRegistry`]): list, revoke one, revoke all.
fn registry_routes<A: Authenticator + SessionRegistry>(
    scope: actix_web::Scope,
    at: &mut Mount<'_>,
) -> actix_web::Scope {
    scope
        .service(
            at.resource("/logout-all", "POST")
                .route(web::post().to(lifecycle::logout_all::<A>)),
        )
        .service(
            at.resource("/sessions", "GET")
                .route(web::get().to(lifecycle::list::<A>)),
        )
        .service(
            at.resource("/sessions/{id}", "DELETE")
                .route(web::delete().to(lifecycle::revoke_one::<A>)),
        )
}

/// A token server's routes ([`TokenEndpoints`]): refresh, RFC 7009 revoke, RFC 7662 introspect.
fn token_routes<A: TokenEndpoints>(
    scope: actix_web::Scope,
    at: &mut Mount<'_>,
) -> actix_web::Scope {
    scope
        .service(
            at.resource("/refresh", "POST")
                .route(web::post().to(auth::refresh::<A>)),
        )
        .service(
            at.resource("/revoke", "POST")
                .route(web::post().to(oauth::revoke::<A>)),
        )
        .service(
            at.resource("/introspect", "POST")
                .route(web::post().to(oauth::introspect::<A>)),
        )
}

/// The JSON answer for a route that does not exist.
pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}

/// A refresh-token failure: a 401 without a Bearer challenge (the refresh endpoint is not a
/// protected resource; the token travels in the body).
fn refresh_refused(cause: AuthError) -> ApiError {
    ApiError::Unauthenticated {
        cause,
        challenge: Challenge::None,
    }
}
