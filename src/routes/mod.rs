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
//! | `GET /openapi.json`, `GET /docs/` | the OpenAPI 3.1 description; Swagger UI (handed in by `startup`) |
//! | `GET /metrics` | Prometheus metrics ([`crate::metrics`]) |
//!
//! # Where a request goes
//! `startup` builds the app with [`configure`]; a request under `/{backend}` reaches a generic
//! handler here, which finds the credential with [`crate::transport`], asks the backend
//! (`MountedBackend::authenticate` is the hot path), and turns any failure into JSON through the
//! one mapping in [`crate::error`].
//!
//! # Layout
//! Read bottom-up: [`mount`] and [`mounted`] import nothing of the router; the handler files
//! import those two; this file, the router, imports the handlers.
//! - [`mount`]: the route table as it is built ([`Mount`], [`MountedRoute`]);
//! - [`mounted`]: what handlers are given ([`MountedBackend`], [`Shared`]);
//! - [`auth`]: login, `/me`, logout and refresh: the per-backend core;
//! - [`lifecycle`]: the registry (list, revoke one, revoke all), password change, session rotation;
//! - [`oauth`]: RFC 7009 revocation and RFC 7662 introspection;
//! - [`health`]: `/hello`, `/healthz`, `/readyz`, `/livez`;
//! - [`demo`]: the demo page at `/` (embedded HTML, script and style, with its own CSP).

use std::sync::{Arc, OnceLock};

use actix_web::{HttpResponse, ResponseError, web};
use authlab_core::{Authenticator, SessionRegistry, TokenEndpoints};

use crate::backend_kind::BackendKind;
use crate::error::ApiError;
use crate::metrics::Metrics;

pub mod auth;
pub mod demo;
pub mod health;
pub mod jwks;
pub mod lifecycle;
pub mod mount;
pub mod mounted;
pub mod oauth;

pub use mount::{Mount, MountedRoute, MountedScope};
pub use mounted::{AnyBackend, MountedBackend, Shared};

/// One backend's scope: `/{name}` with the routes its capabilities give it. Implemented where
/// each backend's type is known ([`crate::backends`]), with [`backend_scope`],
/// [`registry_routes`] and [`token_routes`], so the router mounts any backend without naming one.
pub trait BackendRoutes: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// Its scope, every resource made through `at` (so that it is listed).
    fn scope(&self, at: &mut Mount<'_>) -> actix_web::Scope;
}

/// What the router mounts: the shared state, each backend's scope, the metrics.
#[derive(Clone)]
pub struct Mounted {
    /// The user store, Redis and the backends as `dyn`, for the routes outside the scopes.
    pub shared: web::Data<Shared>,
    /// Every backend, in [`BackendKind::ALL`] order.
    pub backends: Vec<Arc<dyn BackendRoutes>>,
    /// The app's metrics, for `/metrics`.
    pub metrics: web::Data<Metrics>,
}

/// A route the router mounts for a module above it (the API description and its UI): handed in
/// by `startup`, so that the router does not import what describes it, and mounted like every
/// other route (listed, and a JSON 405 for other methods).
#[derive(Clone, Copy)]
pub struct ExtraRoute {
    /// `GET`, `POST`, `DELETE`.
    pub method: &'static str,
    /// The path as actix-web takes it (`/docs/{file:.*}`).
    pub path: &'static str,
    /// The route: its method guard and handler.
    pub route: fn() -> actix_web::Route,
}

/// Mounts every route on an app: the shared routes, then each backend's scope with the routes of
/// the capabilities its type has, then the `extra` routes and metrics. Each route is listed as
/// it is mounted ([`mounted_routes`]).
pub fn configure(cfg: &mut web::ServiceConfig, mounted: &Mounted, extra: &[ExtraRoute]) {
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
    for backend in &mounted.backends {
        let mut at = Mount::under(backend.kind().name(), &mut list);
        cfg.service(backend.scope(&mut at));
    }
    let mut at = Mount::under("", &mut list);
    demo::configure(cfg, &mut at);
    for extra in extra {
        cfg.service(at.resource(extra.path, extra.method).route((extra.route)()));
    }
    cfg.service(
        at.resource("/.well-known/jwks.json", "GET")
            .route(web::get().to(jwks::jwks)),
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

static MOUNTED: OnceLock<Vec<MountedRoute>> = OnceLock::new();

/// Every route [`configure`] mounts, in order (empty until an app has been configured). The
/// OpenAPI document describes exactly these, and `tests/api/openapi.rs` checks it.
pub fn mounted_routes() -> &'static [MountedRoute] {
    MOUNTED.get().map_or(&[], Vec::as_slice)
}

/// `/{backend}` with what every backend has ([`Authenticator`]): login, `/me`, logout.
pub fn backend_scope<A: Authenticator>(
    backend: web::Data<MountedBackend<A>>,
    at: &mut Mount<'_>,
) -> actix_web::Scope {
    at.in_backend(MountedScope {
        kind: backend.kind,
        transport: backend.transport,
    });
    web::scope(&format!("/{}", backend.kind.name()))
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
pub fn registry_routes<A: Authenticator + SessionRegistry>(
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
pub fn token_routes<A: TokenEndpoints>(
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
