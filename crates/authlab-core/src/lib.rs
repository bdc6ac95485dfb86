//! The one question every authlab backend answers: *given this credential, who is it?*
//!
//! authlab compares three ways of answering it (server-side sessions, opaque tokens in Redis and
//! signed JWTs). So that the differences we measure come from the backends alone, everything they
//! share lives here, in a crate that knows nothing of HTTP, Redis, SQL or any one backend:
//!
//! - [`Authenticator`]: issue a credential at login, verify one on every request (the hot path),
//!   revoke one at logout;
//! - [`Identity`]: what a verified credential tells the application;
//! - [`AuthError`]: why a credential was not accepted, kept apart from "the backend is down";
//! - [`Denylist`]: the small store a stateless backend needs once it wants revocation;
//! - [`Clock`]: time as a dependency, so expiry is tested without sleeping.
//!
//! # Layout
//! Dependencies point one way: the server crate depends on the backends, the backends on this crate.
//! A backend never imports another backend, and none of them sees a request or a status code: the
//! server decides how a credential travels (cookie or `Authorization` header) and maps
//! [`AuthError`] to HTTP in exactly one place.
#![deny(missing_docs)]

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;

/// Who a credential belongs to: the answer `verify` gives on every authenticated request.
///
/// The strings are `Arc<str>` because the session backend hands the same identity out on every
/// request: cloning it is a reference-count increment, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's id in the user store (stable across renames, unlike the name).
    pub user_id: i64,
    /// The user's login name, carried so that `/me` needs no second lookup.
    pub username: Arc<str>,
    /// The public handle of the session or token family the credential belongs to (see
    /// [`SessionInfo::id`]), so a user can tell which listed session is the current one.
    pub session_id: Option<Arc<str>>,
}

impl Identity {
    /// Builds an identity from an id and a name, not yet tied to a session.
    pub fn new(user_id: i64, username: impl Into<Arc<str>>) -> Self {
        Self {
            user_id,
            username: username.into(),
            session_id: None,
        }
    }

    /// The same identity, tied to the session or family `id`.
    pub fn in_session(mut self, id: impl Into<Arc<str>>) -> Self {
        self.session_id = Some(id.into());
        self
    }
}

/// A credential freshly issued at login (or refresh), for the transport to hand to the client.
///
/// Values are [`SecretString`]s so that they cannot end up in a log by way of `Debug`.
pub struct Issued {
    /// The value the client presents from now on (a session id, a UUID, a JWT).
    pub credential: SecretString,
    /// How long the credential stays valid if nothing else happens to it.
    pub expires_in: Duration,
    /// A refresh token, for backends whose access credentials are short-lived.
    pub refresh: Option<IssuedRefresh>,
}

/// A refresh token: exchanged once at `/refresh` for a new access credential and a new refresh
/// token, never sent on ordinary requests.
pub struct IssuedRefresh {
    /// The refresh token itself.
    pub token: SecretString,
    /// How long it can be exchanged.
    pub expires_in: Duration,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("credential", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("refresh", &self.refresh.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// What the server knows about the client at login, kept with the session for the user to see
/// in their list of sessions ("Firefox on Linux, last used 5 minutes ago").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The `User-Agent` header, truncated by the server.
    pub user_agent: Option<String>,
}

/// One live session (session backend) or token family (redis, jwt) of a user, as listed at
/// `GET /{backend}/sessions`. The id is a public handle, never the credential itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Public handle, used by `DELETE /{backend}/sessions/{id}`.
    pub id: String,
    /// When it started (login), Unix seconds.
    pub created_at: u64,
    /// When it was last used, Unix seconds (sessions: any request; token families: the last
    /// login or refresh, since access-token checks are reads that never write).
    pub last_used_at: u64,
    /// When it ends unless used or refreshed again, Unix seconds.
    pub expires_at: u64,
    /// The client's `User-Agent` at login.
    pub user_agent: Option<String>,
}

/// Which kind of token an introspection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An access credential, presented on every request.
    Access,
    /// A refresh token, only ever exchanged at `/refresh`.
    Refresh,
}

/// What introspection (RFC 7662) reports about a live token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Access or refresh.
    pub kind: TokenKind,
    /// Whose token it is.
    pub identity: Identity,
    /// Issued at, Unix seconds, where the backend knows it.
    pub issued_at: Option<u64>,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
}

/// Why a credential was not accepted.
///
/// The variants stay distinct because clients act on them differently: `Expired` means "refresh or
/// log in again", `Invalid` means "this was never ours" (a forgery, a typo, a token for another
/// server), `Revoked` means "it was ours and somebody ended it", and `Unavailable` means "try again
/// later": that one is the server's fault, never the client's, and maps to 503, not 401.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carried no credential at all.
    #[error("no credential was presented")]
    Missing,
    /// The credential is malformed, forged, unknown, or was issued by somebody else.
    #[error("the credential is not valid")]
    Invalid,
    /// The credential was genuine but its lifetime is over.
    #[error("the credential has expired")]
    Expired,
    /// The credential was genuine but has been revoked (logged out).
    #[error("the credential has been revoked")]
    Revoked,
    /// A refresh token was presented after it had been exchanged: evidence that somebody else
    /// has a copy. The whole family it belongs to has been revoked.
    #[error("the refresh token was already used; its whole family has been revoked")]
    Reused,
    /// The backend has no such operation (a session has no refresh token).
    #[error("this backend does not support the operation")]
    Unsupported,
    /// The store the backend depends on could not answer; the credential was not judged at all.
    #[error("the authentication backend is unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync + 'static>),
}

impl AuthError {
    /// Wraps a store failure (a Redis error, a timeout) as [`AuthError::Unavailable`].
    pub fn unavailable(source: impl StdError + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(source))
    }
}

/// One way of turning a login into a credential and a credential back into an [`Identity`].
///
/// The server is generic over this trait, so one set of handlers serves every backend and the
/// compiler dispatches `verify` statically on the hot path. The futures are `Send` so a backend can
/// be driven from any runtime.
///
/// A backend decides what its credential looks like and where its state lives; it never decides how
/// the credential travels (cookie or header): that is the server's job.
///
/// # Example
/// The smallest honest implementation: credentials are user ids written in decimal, accepted forever
/// and never revocable. (It is a lesson in what *not* to deploy: anyone can claim any id.)
///
/// ```
/// use std::time::Duration;
/// use authlab_core::{AuthError, Authenticator, ClientInfo, Identity, Issued, SessionInfo};
///
/// struct TrustMe;
///
/// impl Authenticator for TrustMe {
///     async fn issue(&self, identity: &Identity, _: &ClientInfo) -> Result<Issued, AuthError> {
///         Ok(Issued {
///             credential: identity.user_id.to_string().into(),
///             expires_in: Duration::MAX,
///             refresh: None,
///         })
///     }
///     async fn verify(&self, credential: &str) -> Result<Identity, AuthError> {
///         let user_id = credential.parse().map_err(|_| AuthError::Invalid)?;
///         Ok(Identity::new(user_id, "somebody"))
///     }
///     async fn revoke(&self, _credential: &str) -> Result<(), AuthError> {
///         Err(AuthError::Invalid) // nothing to revoke: the credential is the claim itself
///     }
///     async fn sessions(&self, _user_id: i64) -> Result<Vec<SessionInfo>, AuthError> {
///         Ok(Vec::new()) // nothing is remembered, so nothing can be listed...
///     }
///     async fn revoke_session(&self, _: i64, _: &str) -> Result<bool, AuthError> {
///         Ok(false) // ...or revoked
///     }
///     async fn revoke_all(&self, _user_id: i64) -> Result<usize, AuthError> {
///         Ok(0)
///     }
/// }
///
/// # tokio_test_block_on(async {
/// let who = TrustMe.verify("42").await.unwrap();
/// assert_eq!(who.user_id, 42);
/// assert!(matches!(TrustMe.verify("not a number").await, Err(AuthError::Invalid)));
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     // a tiny executor, so the example needs no runtime crate
/// #     let waker = std::task::Waker::noop();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut f = std::pin::pin!(f);
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// Whether this backend hands out refresh tokens and bearer tokens that the RFC 7009
    /// (revocation) and RFC 7662 (introspection) endpoints make sense for.
    const ISSUES_TOKENS: bool = false;

    /// Creates a new credential for a user who has just proved who they are (at login).
    ///
    /// Every call mints a fresh credential: a backend never adopts a value the client chose.
    fn issue(
        &self,
        identity: &Identity,
        client: &ClientInfo,
    ) -> impl Future<Output = Result<Issued, AuthError>> + Send;

    /// Turns a presented credential into the identity it stands for. This runs on every
    /// authenticated request, so implementations avoid every allocation and round trip they can.
    fn verify(&self, credential: &str) -> impl Future<Output = Result<Identity, AuthError>> + Send;

    /// Ends a credential (logout): from the moment this returns `Ok`, `verify` rejects it, and
    /// so does `refresh` for any refresh token issued with it.
    ///
    /// A credential that is not currently valid cannot be revoked and gets the same error `verify`
    /// would give, so logout answers exactly like an authenticated request.
    fn revoke(&self, credential: &str) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// Exchanges a refresh token for a new credential *and* a new refresh token; the old refresh
    /// token is spent. Presenting a spent one again is [`AuthError::Reused`].
    fn refresh(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> impl Future<Output = Result<Issued, AuthError>> + Send {
        let _ = (refresh_token, client);
        async { Err(AuthError::Unsupported) }
    }

    /// The user's live sessions or token families, newest first.
    fn sessions(
        &self,
        user_id: i64,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, AuthError>> + Send;

    /// Revokes one of the user's sessions by its public id. `Ok(false)`: no such live session
    /// of this user (somebody else's id is "no such session" too).
    fn revoke_session(
        &self,
        user_id: i64,
        session_id: &str,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;

    /// Revokes every session or family of the user ("log out everywhere"); returns how many.
    fn revoke_all(&self, user_id: i64) -> impl Future<Output = Result<usize, AuthError>> + Send;

    /// RFC 7662: what a token is, if it is live (`Ok(None)` for anything that is not).
    fn introspect(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<Option<TokenInfo>, AuthError>> + Send {
        let _ = token;
        async { Ok(None) }
    }

    /// RFC 7009: revokes an access or refresh token; revoking a refresh token revokes its whole
    /// family. Unknown or dead tokens are not an error (the RFC answers 200 for them too).
    fn revoke_token(&self, token: &str) -> impl Future<Output = Result<(), AuthError>> + Send {
        let _ = token;
        async { Err(AuthError::Unsupported) }
    }
}

/// Revoked JWTs, remembered only as long as the tokens they name would have lived.
///
/// A stateless credential cannot be recalled; the only way to reject one before it expires is to
/// look it up somewhere on every request. This trait names that lookup, so the JWT backend can
/// offer it without knowing that the set lives in Redis. Entries are per token (`jti`) or per
/// token family (every access token issued from one login), and one check covers both.
pub trait Denylist: Send + Sync + 'static {
    /// Remembers a token (`jti`), or with `None` a whole family, as revoked for `ttl`.
    fn deny(
        &self,
        family: &str,
        jti: Option<&str>,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// Answers whether the token `jti` of `family`, or the family itself, has been revoked.
    fn is_denied(
        &self,
        family: &str,
        jti: &str,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;
}

/// A login's refresh-token family, just started.
pub struct NewFamily {
    /// The family's public id (also the session id users see in their list).
    pub id: String,
    /// The first refresh token of the family.
    pub refresh_token: SecretString,
    /// How long it can be exchanged.
    pub refresh_ttl: Duration,
}

/// The result of a refresh-token exchange.
pub struct Rotated {
    /// Whose family it is (with [`Identity::session_id`] set to the family id).
    pub identity: Identity,
    /// The successor refresh token (the same one again for a retry within the grace window).
    pub refresh_token: SecretString,
    /// How long the successor can be exchanged.
    pub refresh_ttl: Duration,
}

/// A family that was just revoked.
pub struct RevokedFamily {
    /// Whose it was.
    pub user_id: i64,
    /// The access-token ids that had been [attached](RefreshFamilies::attach) to it, for the
    /// backend to revoke in turn.
    pub attached: Vec<String>,
}

/// Server-side refresh-token families: rotation, reuse detection, and the per-user registry.
///
/// A login starts a family; every refresh spends the family's current refresh token and mints its
/// successor. Presenting a spent token again means two parties hold it, so the family dies.
/// Both token backends (opaque and JWT) keep their families in one of these, so they share the
/// exact same lifecycle and differ only in their access credentials.
pub trait RefreshFamilies: Send + Sync + 'static {
    /// Starts a family at login.
    fn start(
        &self,
        identity: &Identity,
        client: &ClientInfo,
    ) -> impl Future<Output = Result<NewFamily, AuthError>> + Send;

    /// Spends `refresh_token` and returns its successor. A spent token presented again outside
    /// the grace window is [`AuthError::Reused`]: the caller must then revoke the family (the
    /// family id is the part of the token before the first `.`), together with whatever access
    /// credentials it issued from it.
    fn rotate(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Rotated, AuthError>> + Send;

    /// Remembers that the access credential `access_id` (valid for `ttl`) came from `family`,
    /// so that revoking the family can revoke it too. [`AuthError::Invalid`] if the family is no
    /// longer live (revoked while the credential was being minted): the caller must then discard
    /// the credential.
    fn attach(
        &self,
        family: &str,
        access_id: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// Revokes a family; `Ok(None)` if it was not live.
    fn revoke(
        &self,
        family: &str,
    ) -> impl Future<Output = Result<Option<RevokedFamily>, AuthError>> + Send;

    /// The ids of the user's live families (expired ones are pruned on the way).
    fn family_ids(
        &self,
        user_id: i64,
    ) -> impl Future<Output = Result<Vec<String>, AuthError>> + Send;

    /// Whether `family` is one of the user's live families (somebody else's is "no").
    fn owns(
        &self,
        user_id: i64,
        family: &str,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send {
        async move { Ok(self.family_ids(user_id).await?.iter().any(|f| f == family)) }
    }

    /// The user's live families, newest first (expired ones are pruned on the way).
    fn list(
        &self,
        user_id: i64,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, AuthError>> + Send;

    /// What a refresh token is, if it is the live one of its family.
    fn inspect(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Option<TokenInfo>, AuthError>> + Send;
}

/// The current time in whole seconds since the Unix epoch, as a dependency.
///
/// JWT claims (`iat`, `exp`) are Unix seconds, so that is the unit. Injecting the clock lets a test
/// move time forward and check expiry to the second without sleeping.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since 1970-01-01T00:00:00Z.
    fn now_unix(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to, for tests. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock stopped at `now_unix`.
    pub fn new(now_unix: u64) -> Self {
        Self(Arc::new(AtomicU64::new(now_unix)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_one_time() {
        let clock = ManualClock::new(1_000);
        let other = clock.clone();
        clock.advance(Duration::from_secs(15));
        assert_eq!(other.now_unix(), 1_015);
    }

    #[test]
    fn issued_debug_never_shows_the_credential() {
        let issued = Issued {
            credential: "super-secret-token".to_string().into(),
            expires_in: Duration::from_secs(1),
            refresh: Some(IssuedRefresh {
                token: "super-secret-refresh".to_string().into(),
                expires_in: Duration::from_secs(2),
            }),
        };
        let shown = format!("{issued:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn unavailable_keeps_its_source_for_the_log() {
        let err = AuthError::unavailable(std::io::Error::other("connection refused"));
        let source = StdError::source(&err).map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("connection refused"));
        assert_eq!(err.to_string(), "the authentication backend is unavailable");
    }
}
