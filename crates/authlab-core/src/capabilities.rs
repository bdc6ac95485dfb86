//! What a backend can do, one trait per capability.
//!
//! Every backend answers the one question (*given this credential, who is it?*) through
//! [`Authenticator`]: issue at login, verify on every request, revoke at logout. Everything else
//! is a capability that only some backends have, and each is a trait of its own, so the server
//! mounts a route only for a backend whose type has the capability (the compiler refuses to mount
//! `/session/refresh`, because sessions have no refresh tokens):
//!
//! | trait | routes it puts behind a backend's scope | session | redis | jwt |
//! |---|---|---|---|---|
//! | [`Authenticator`] | `login`, `me`, `logout` | yes | yes | yes |
//! | [`SessionRegistry`] | `sessions`, `sessions/{id}`, `logout-all` (and password change) | yes | yes | yes (`Unsupported` with stateless refresh) |
//! | [`TokenEndpoints`] | `refresh`, RFC 7009 `revoke`, RFC 7662 `introspect` | no | yes | yes |
//!
//! [`AuthError::Unsupported`] is left for the one case the type cannot know: a JWT backend
//! configured at run time with stateless refresh tokens keeps no list of sessions.

use std::future::Future;

use crate::{AuthError, ClientInfo, Identity, Issued, SessionInfo, TokenInfo};

/// What a refresh gave: the new credentials, and whose they are (the backend learns that while
/// exchanging the token, so the caller never looks it up again).
pub struct Refreshed {
    /// Whose login was refreshed.
    pub identity: Identity,
    /// The new access credential and refresh token.
    pub issued: Issued,
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
/// use authlab_core::{AuthError, Authenticator, ClientInfo, Identity, Issued};
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
///     async fn revoke(&self, _credential: &str) -> Result<Identity, AuthError> {
///         Err(AuthError::Invalid) // nothing to revoke: the credential is the claim itself
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
/// `TrustMe` remembers nothing, so it implements neither [`SessionRegistry`] nor
/// [`TokenEndpoints`], and the server mounts neither a session list nor a refresh route for it.
pub trait Authenticator: Send + Sync + 'static {
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
    /// so does a refresh with any refresh token issued with it. Returns whose credential it was
    /// (every backend has to find that out to revoke it, so the caller never verifies twice).
    ///
    /// A credential that is not currently valid cannot be revoked and gets the same error `verify`
    /// would give, so logout answers exactly like an authenticated request.
    fn revoke(&self, credential: &str) -> impl Future<Output = Result<Identity, AuthError>> + Send;
}

/// A backend that remembers each user's live sessions (or token families), so a user can list
/// them, end one, or end them all ("log out everywhere"; also what a password change does).
pub trait SessionRegistry: Send + Sync + 'static {
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
}

/// A backend that hands out bearer tokens with refresh tokens, and so has the endpoints every
/// token server is expected to have: refresh, RFC 7009 revocation and RFC 7662 introspection.
pub trait TokenEndpoints: Send + Sync + 'static {
    /// Exchanges a refresh token for a new credential *and* a new refresh token; the old refresh
    /// token is spent. Presenting a spent one again is [`AuthError::Reused`].
    fn refresh(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> impl Future<Output = Result<Refreshed, AuthError>> + Send;

    /// RFC 7662: what a token is, if it is live (`Ok(None)` for anything that is not).
    fn introspect(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<Option<TokenInfo>, AuthError>> + Send;

    /// RFC 7009: revokes an access or refresh token; revoking a refresh token revokes its whole
    /// family. Unknown or dead tokens are not an error (the RFC answers 200 for them too).
    fn revoke_token(&self, token: &str) -> impl Future<Output = Result<(), AuthError>> + Send;
}
