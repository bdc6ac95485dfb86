//! Server-side sessions: the credential is a random id, the state is a map in this process.
//!
//! - **State** lives in server memory: one map entry per logged-in client (id -> user, expiry).
//! - **Verify** is a hash-map lookup: no I/O, no cryptography, the cheapest check there is.
//! - **Revocation** is instant and exact: delete the entry and the id means nothing any more.
//! - **Scaling out** is the catch: another instance has another map, so a client must keep hitting
//!   the instance that logged it in (sticky sessions) or the state must move to a shared store
//!   (which is what the Redis backend is).
//!
//! # Layout
//! - [`SessionId`]: 128 bits from the operating system's CSPRNG, written as 22 base64url characters.
//! - [`SessionAuthenticator`]: the map, with an idle timeout that slides on every use, and
//!   [`SessionAuthenticator::sweep`] which forgets expired entries so memory stays bounded by the
//!   number of *active* sessions. The server runs the sweep on a timer.
//!
//! Simplifications a real deployment would revisit: sessions die with the process (nothing is
//! persisted), and there is no cap on sessions per user.
#![deny(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use authlab_core::{AuthError, Authenticator, Identity, Issued};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::time::Instant;

/// How a session id is written: 16 random bytes as unpadded base64url (22 characters), which is
/// safe in a cookie value without quoting.
const ENCODED_LEN: usize = 22;

/// A session id: 128 bits from the OS CSPRNG (OWASP asks for at least 64 bits of entropy).
///
/// Only [`SessionId::generate`] creates new ids; [`SessionId::parse`] only reads ids back, so a
/// client can never choose its own (no session fixation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// Draws a fresh id from the operating system's random number generator.
    pub fn generate() -> Result<Self, SessionError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| SessionError::Randomness(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// Reads an id as it came back from a client. Anything that is not exactly 22 base64url
    /// characters decoding to 16 bytes is rejected before the map is consulted.
    pub fn parse(text: &str) -> Result<Self, SessionError> {
        if text.len() != ENCODED_LEN {
            return Err(SessionError::Malformed);
        }
        let mut bytes = [0u8; 16];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(16) => Ok(Self(bytes)),
            _ => Err(SessionError::Malformed),
        }
    }

    /// The id as the client will see it.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The id *is* the credential: never print it.
        f.write_str("SessionId([redacted])")
    }
}

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The presented value is not a session id this server could have issued.
    #[error("the session id is malformed")]
    Malformed,
    /// The operating system could not provide random bytes (nothing safe can be issued).
    #[error("the operating system's random number generator failed: {0}")]
    Randomness(String),
}

impl From<SessionError> for AuthError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::Malformed => AuthError::Invalid,
            other @ SessionError::Randomness(_) => AuthError::unavailable(other),
        }
    }
}

/// One live session.
struct Session {
    identity: Identity,
    /// Milliseconds since the authenticator's epoch after which the session is dead. Atomic so
    /// that sliding it forward on use needs only the shard's read lock.
    expires_at_ms: AtomicU64,
}

/// Settings for [`SessionAuthenticator`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Idle timeout: a session unused for this long expires. Every successful verify pushes the
    /// deadline forward again (a sliding window).
    pub idle_ttl: Duration,
}

/// Sessions held in a concurrent map in this process.
///
/// The map is a [`DashMap`]: sharded, so requests on different sessions rarely wait on one another,
/// and a hit needs only a shard's read lock (the expiry is updated atomically inside the entry).
pub struct SessionAuthenticator {
    sessions: DashMap<SessionId, Session>,
    idle_ttl: Duration,
    /// Times are kept as milliseconds since this instant: 8 bytes per session instead of 16, and
    /// `tokio::time` so tests can pause and advance the clock.
    epoch: Instant,
}

impl SessionAuthenticator {
    /// An empty session store.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            sessions: DashMap::new(),
            idle_ttl: config.idle_ttl,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn deadline_from(&self, now_ms: u64) -> u64 {
        let ttl_ms = u64::try_from(self.idle_ttl.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_add(ttl_ms)
    }

    /// Forgets every expired session and returns how many went. Without it, sessions that are
    /// never used again would sit in memory forever; the server calls it on a timer.
    pub fn sweep(&self) -> usize {
        let now = self.now_ms();
        let before = self.sessions.len();
        self.sessions
            .retain(|_, session| session.expires_at_ms.load(Ordering::Relaxed) > now);
        before.saturating_sub(self.sessions.len())
    }

    /// How many sessions the map holds (live ones plus expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

impl Authenticator for SessionAuthenticator {
    async fn issue(&self, identity: &Identity) -> Result<Issued, AuthError> {
        let expires_at_ms = AtomicU64::new(self.deadline_from(self.now_ms()));
        let mut session = Some(Session {
            identity: identity.clone(),
            expires_at_ms,
        });
        // A fresh id at every login, never one the client sent: that is what defeats session
        // fixation. A collision of 128 random bits will not happen, but if it did we would draw
        // again rather than hand one user another user's session.
        loop {
            let id = SessionId::generate()?;
            if let Entry::Vacant(slot) = self.sessions.entry(id) {
                if let Some(session) = session.take() {
                    slot.insert(session);
                }
                return Ok(Issued {
                    credential: id.encode().into(),
                    expires_in: self.idle_ttl,
                });
            }
        }
    }

    async fn verify(&self, credential: &str) -> Result<Identity, AuthError> {
        let id = SessionId::parse(credential)?;
        let now = self.now_ms();
        {
            let session = self.sessions.get(&id).ok_or(AuthError::Invalid)?;
            if session.expires_at_ms.load(Ordering::Relaxed) > now {
                // Sliding idle timeout: every use buys another `idle_ttl`.
                session
                    .expires_at_ms
                    .store(self.deadline_from(now), Ordering::Relaxed);
                return Ok(session.identity.clone());
            }
        } // the read guard must be gone before we take the write lock below
        self.sessions
            .remove_if(&id, |_, s| s.expires_at_ms.load(Ordering::Relaxed) <= now);
        Err(AuthError::Expired)
    }

    async fn revoke(&self, credential: &str) -> Result<(), AuthError> {
        let id = SessionId::parse(credential)?;
        let now = self.now_ms();
        match self.sessions.remove(&id) {
            Some((_, session)) if session.expires_at_ms.load(Ordering::Relaxed) > now => Ok(()),
            Some(_) => Err(AuthError::Expired),
            None => Err(AuthError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn store(idle: u64) -> SessionAuthenticator {
        SessionAuthenticator::new(SessionConfig {
            idle_ttl: Duration::from_secs(idle),
        })
    }

    fn alice() -> Identity {
        Identity::new(7, "alice")
    }

    #[tokio::test]
    async fn an_issued_session_verifies_to_its_user() {
        let sessions = store(60);
        let issued = sessions.issue(&alice()).await.unwrap();
        let who = sessions
            .verify(issued.credential.expose_secret())
            .await
            .unwrap();
        assert_eq!(who, alice());
        assert_eq!(issued.expires_in, Duration::from_secs(60));
    }

    #[tokio::test]
    async fn ids_are_22_url_safe_characters_and_never_repeat() {
        let sessions = store(60);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1_000 {
            let issued = sessions.issue(&alice()).await.unwrap();
            let id = issued.credential.expose_secret().to_owned();
            assert_eq!(id.len(), 22);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert!(seen.insert(id));
        }
    }

    #[tokio::test]
    async fn a_malformed_or_unknown_id_is_invalid() {
        let sessions = store(60);
        for bad in [
            "",
            "short",
            "!!!!!!!!!!!!!!!!!!!!!!",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(matches!(
                sessions.verify(bad).await,
                Err(AuthError::Invalid)
            ));
        }
        let unknown = SessionId::generate().unwrap().encode();
        assert!(matches!(
            sessions.verify(&unknown).await,
            Err(AuthError::Invalid)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_expires_and_use_slides_the_deadline() {
        let sessions = store(10);
        let issued = sessions.issue(&alice()).await.unwrap();
        let id = issued.credential.expose_secret();

        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(sessions.verify(id).await.is_ok(), "used within the window");
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(
            sessions.verify(id).await.is_ok(),
            "16 s after login, but only 8 s idle"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(matches!(sessions.verify(id).await, Err(AuthError::Expired)));
        assert!(
            sessions.is_empty(),
            "an expired session found on use is removed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_forgets_expired_sessions_and_keeps_live_ones() {
        let sessions = store(10);
        for _ in 0..100 {
            sessions.issue(&alice()).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let fresh = sessions.issue(&alice()).await.unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;

        assert_eq!(sessions.sweep(), 100);
        assert_eq!(sessions.len(), 1);
        assert!(
            sessions
                .verify(fresh.credential.expose_secret())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn revoke_ends_the_session_once() {
        let sessions = store(60);
        let issued = sessions.issue(&alice()).await.unwrap();
        let id = issued.credential.expose_secret();
        sessions.revoke(id).await.unwrap();
        assert!(matches!(sessions.verify(id).await, Err(AuthError::Invalid)));
        assert!(matches!(sessions.revoke(id).await, Err(AuthError::Invalid)));
    }

    #[test]
    fn session_id_debug_is_redacted() {
        let id = SessionId::generate().unwrap();
        assert_eq!(format!("{id:?}"), "SessionId([redacted])");
    }
}
