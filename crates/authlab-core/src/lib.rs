//! The one question every authlab backend answers: *given this credential, who is it?*
//!
//! authlab compares three ways of answering it (server-side sessions, opaque tokens in Redis and
//! signed JWTs). So that the differences we measure come from the backends alone, everything they
//! share lives here, in a crate that knows nothing of HTTP, Redis, SQL or any one backend.
//!
//! # Layout
//! - this file: the data that crosses the trait boundary: [`Identity`] (what a verified credential
//!   tells the application), [`Issued`] (a fresh credential), [`SessionInfo`], [`TokenInfo`], and
//!   [`AuthError`] (why a credential was not accepted, kept apart from "the backend is down");
//! - [`capabilities`]: [`Authenticator`] (issue at login, verify on every request, revoke at
//!   logout: what every backend does), and the traits only some backends implement:
//!   [`SessionRegistry`] (list and end a user's sessions) and [`TokenEndpoints`] (refresh,
//!   RFC 7009, RFC 7662);
//! - [`families`]: refresh-token families ([`RefreshFamilies`], the store; [`FamilyAccess`], what
//!   dies with a family; [`FamilyLifecycle`], the logic both token backends share);
//! - [`denylist`]: [`Denylist`], the small store a stateless backend needs once it wants revocation;
//! - [`clock`]: [`Clock`], time as a dependency, so expiry is tested without sleeping (the real
//!   [`SystemClock`]; [`ManualClock`] and [`OffsetClock`], which tests move forward);
//! - [`random`]: the bytes of every id and token, from a thread-local CSPRNG;
//! - [`CauseChain`]: an error and all its sources on one line, the way every authlab log and
//!   command prints a failure.
//!
//! Dependencies point one way: the server crate depends on the backends, the backends on this crate.
//! A backend never imports another backend, and none of them sees a request or a status code: the
//! server decides how a credential travels (cookie or `Authorization` header), mounts routes by
//! the capability traits a backend implements, and maps [`AuthError`] to HTTP in exactly one place.
#![deny(missing_docs)]

pub mod capabilities;
pub mod clock;
pub mod denylist;
pub mod families;
pub mod random;

pub use capabilities::{Authenticator, Refreshed, SessionRegistry, TokenEndpoints};
pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use denylist::Denylist;
pub use families::{
    Exchange, FamilyAccess, FamilyLifecycle, NewFamily, RefreshFamilies, RevokedFamily, Rotated,
};

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

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
    /// The backend, as configured at run time, cannot do this (a JWT backend with stateless
    /// refresh tokens keeps no list of sessions). What a backend can never do is not an error but
    /// a missing trait: see [`capabilities`].
    #[error("this backend does not support the operation")]
    Unsupported,
    /// The request presented more than one credential where one is expected (two
    /// `Authorization` headers, a header and a `?token=`, two `?token=`, two session cookies),
    /// which may name different users. None of them was judged: guessing which one counts is how
    /// a planted credential (a cookie tossed in from a sibling subdomain) gets believed.
    #[error("more than one credential was presented")]
    Ambiguous,
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

/// Writes an error and its whole `source()` chain on one line (`outer: middle: root cause`), for
/// a log line or a command's last words on stderr.
///
/// An error's `Display` says what failed at its own level only, and the sources say why; a log
/// that shows only the outer error loses the why, and the client must never see it (the server
/// answers with a fixed message), so the chain is written here, in one place, for everybody.
///
/// A cause whose text the line already ends with is not written again: some libraries' errors
/// (`redis`, `sqlx`) print their source inside their own message, and "refused: refused" says
/// nothing twice.
///
/// ```
/// use authlab_core::{AuthError, CauseChain};
///
/// let err = AuthError::unavailable(std::io::Error::other("connection refused"));
/// assert_eq!(
///     CauseChain(&err).to_string(),
///     "the authentication backend is unavailable: connection refused"
/// );
/// ```
pub struct CauseChain<'a>(pub &'a dyn StdError);

impl std::fmt::Display for CauseChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !last.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            next = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_cause_chain_names_every_source_from_the_outside_in() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot start")]
        struct Startup(#[source] AuthError);
        let err = Startup(AuthError::unavailable(std::io::Error::other(
            "connection refused",
        )));
        assert_eq!(
            CauseChain(&err).to_string(),
            "cannot start: the authentication backend is unavailable: connection refused"
        );
        assert_eq!(
            CauseChain(&AuthError::Missing).to_string(),
            "no credential was presented"
        );
    }

    #[test]
    fn a_cause_the_line_already_ends_with_is_not_repeated() {
        // As `redis::RedisError` does: its message ends with its source's.
        #[derive(Debug, thiserror::Error)]
        #[error("unreachable: {0}")]
        struct Echoing(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("Redis failed")]
        struct Outer(#[source] Echoing);
        let err = Outer(Echoing(std::io::Error::other("Connection refused")));
        assert_eq!(
            CauseChain(&err).to_string(),
            "Redis failed: unreachable: Connection refused"
        );
    }
}
