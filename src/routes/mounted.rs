//! What the handlers are given: a [`MountedBackend`] per scope (the authenticator, how its
//! credential travels, which backend it is, its metrics handles), and [`Shared`], what the routes
//! that span every backend need. The router ([`super::configure`]) mounts them; this file imports
//! nothing of the router, so every handler file can import it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header;
use authlab_core::{AuthError, Authenticator, ClientInfo, Identity, SessionRegistry};
use authlab_redis::RedisConnection;
use authlab_users::UserStore;

use crate::backend_kind::BackendKind;
use crate::error::{ApiError, Challenge};
use crate::introspection::IntrospectionClients;
use crate::metrics::BackendMetrics;
use crate::transport::Transport;

/// Longest `User-Agent` kept with a session, in bytes.
const MAX_USER_AGENT: usize = 256;

/// One mounted backend: the authenticator, how its credential travels, and which backend it is.
pub struct MountedBackend<A> {
    /// The authenticator itself.
    pub auth: A,
    /// Cookie or bearer.
    pub transport: Transport,
    /// Which backend this is: its scope (`/session`, ...), reported by `/me` too.
    pub kind: BackendKind,
    /// Its decision counters and verify-latency histogram, registered once.
    pub metrics: BackendMetrics,
}

impl<A: Authenticator> MountedBackend<A> {
    /// The identity behind the credential in `req`: the per-request hot path.
    pub(super) async fn authenticate(&self, req: &HttpRequest) -> Result<Identity, ApiError> {
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
    pub(super) async fn end_presented_sessions(&self, req: &HttpRequest) {
        for old in self.transport.session_cookies(req) {
            // Revoking a dead id fails harmlessly; the new login goes ahead either way.
            let _ = self.auth.revoke(old).await;
        }
    }

    /// The 401 (or 503) for a credential this backend did not accept.
    pub(super) fn refuse(&self, cause: AuthError) -> ApiError {
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
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// `None` if the request carries no credential of this backend's kind; otherwise what
    /// verifying it gave.
    fn identify<'a>(
        &'a self,
        req: &'a HttpRequest,
    ) -> Boxed<'a, Option<Result<Identity, AuthError>>>;
    /// Revokes every credential of the user on this backend.
    fn revoke_all(&self, user_id: i64) -> Boxed<'_, Result<usize, AuthError>>;
}

impl<A: Authenticator + SessionRegistry> AnyBackend for MountedBackend<A> {
    fn kind(&self) -> BackendKind {
        self.kind
    }

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
    /// The backends that cannot serve without Redis (with the settings in force), for `/livez`.
    pub needs_redis: Vec<BackendKind>,
    /// Every mounted backend, for what spans them all.
    pub backends: Vec<Arc<dyn AnyBackend>>,
    /// How the session cookie is set, so routes outside `/session` can clear it.
    pub session_transport: Transport,
    /// Who may call RFC 7662 introspection.
    pub introspection: IntrospectionClients,
    /// On a verifier (`--role verifier`): whether it holds usable keys from the issuer's JWKS,
    /// for `/readyz`.
    pub jwks_ready: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

/// The client details kept with a new session.
pub(super) fn client_info(req: &HttpRequest) -> ClientInfo {
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

/// A refresh-token failure: a 401 without a Bearer challenge (the refresh endpoint is not a
/// protected resource; the token travels in the body).
pub(super) fn refresh_refused(cause: AuthError) -> ApiError {
    ApiError::Unauthenticated {
        cause,
        challenge: Challenge::None,
    }
}
