//! Server-side sessions: the credential is a random id, the state is a table in this process.
//!
//! - **State** lives in server memory: one entry per logged-in client (id -> user, expiry).
//! - **Verify** is a table lookup: no I/O, no cryptography, the cheapest check there is.
//! - **Revocation** is instant and exact: delete the entry and the id means nothing any more.
//! - **Scaling out** is the catch: another instance has another table, so a client must keep
//!   hitting the instance that logged it in (sticky sessions) or the state must move to a shared
//!   store (which is what the Redis backend is).
//!
//! # Layout
//! - [`SessionId`]: the number of the slot the session sits in (32 bits, not secret) and 128
//!   random bits ([`authlab_core::random`]: a CSPRNG seeded from the OS), written as 27 base64url
//!   characters.
//! - `slab`: where sessions live: numbered slots, opened by the id's random bits (compared in
//!   constant time). Why a slab and not a hash table is in that module's documentation.
//! - `stored`: what one session holds (48 bytes), and the per-user index's entry.
//! - [`SessionAuthenticator`]: the slab and the per-user index, with an idle timeout that slides
//!   on every use, and [`SessionAuthenticator::sweep`] which forgets expired entries so memory
//!   stays bounded by the number of *active* sessions. The server runs the sweep on a timer.
//!   Deadlines are read from the [`Clock`] the store is given, so a test moves that clock
//!   forward instead of waiting for a session to expire.
//!
//! Simplifications a real deployment would revisit: sessions die with the process (nothing is
//! persisted), and there is no cap on sessions per user.
#![deny(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use authlab_core::{
    AuthError, Authenticator, ClientInfo, Clock, Identity, Issued, SessionInfo, SessionRegistry,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use slab::{Renewal, SessionRef, SessionSlab};
use stored::{Session, StoredName, UserAgent, UserSessions};

mod slab;
mod stored;

/// The bytes of a session id: a 4-byte slot number, then 16 random bytes.
const ID_BYTES: usize = 20;

/// How a session id is written: its 20 bytes as unpadded base64url (27 characters), which is
/// safe in a cookie value without quoting.
pub const SESSION_ID_LEN: usize = 27;

/// A session's public handle (slot and generation, 8 bytes) as unpadded base64url: 11 characters.
const HANDLE_LEN: usize = 11;

/// A session id: which slot the session is in, and the 128 random bits that open it (OWASP asks
/// for at least 64 bits of entropy, ASVS 5.0 for 128 in a reference token; the slot number adds
/// none, it is not secret).
///
/// Only the store creates ids; [`SessionId::parse`] only reads them back, so a client can never
/// choose its own (no session fixation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionId {
    /// The slot number, not secret.
    pub(crate) slot: u32,
    /// The secret: drawn from the CSPRNG when the session is stored or renewed.
    pub(crate) secret: [u8; 16],
}

impl SessionId {
    /// Reads an id as it came back from a client. Anything that is not exactly 27 base64url
    /// characters decoding to 20 bytes is rejected before the store is consulted.
    pub fn parse(text: &str) -> Result<Self, SessionError> {
        if text.len() != SESSION_ID_LEN {
            return Err(SessionError::Malformed);
        }
        let mut bytes = [0u8; ID_BYTES + 1];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(ID_BYTES) => {
                let [s0, s1, s2, s3, secret @ ..] = bytes;
                let mut id = Self {
                    slot: u32::from_le_bytes([s0, s1, s2, s3]),
                    secret: [0; 16],
                };
                id.secret.copy_from_slice(&secret[..16]);
                Ok(id)
            }
            _ => Err(SessionError::Malformed),
        }
    }

    /// The id as the client will see it.
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; ID_BYTES];
        bytes[..4].copy_from_slice(&self.slot.to_le_bytes());
        bytes[4..].copy_from_slice(&self.secret);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The id *is* the credential: never print it.
        f.write_str("SessionId([redacted])")
    }
}

impl SessionRef {
    /// The public handle that lists and ends this session (`GET /session/sessions`): slot and
    /// generation, so it says nothing about the id's secret, and it is kept across
    /// [`SessionAuthenticator::renew_id`].
    fn handle(self) -> [u8; 8] {
        (u64::from(self.generation) << 32 | u64::from(self.slot)).to_le_bytes()
    }

    /// Reads a handle back; `None` for anything that is not 11 base64url characters of 8 bytes.
    fn from_handle(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 9];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(8) if text.len() == HANDLE_LEN => {
                let [s0, s1, s2, s3, g0, g1, g2, g3, _] = bytes;
                Some(Self {
                    slot: u32::from_le_bytes([s0, s1, s2, s3]),
                    generation: u32::from_le_bytes([g0, g1, g2, g3]),
                })
            }
            _ => None,
        }
    }
}

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The presented value is not a session id this server could have issued.
    #[error("the session id is malformed")]
    Malformed,
    /// A shard of the store has handed out every slot number it has (2^28 of them).
    #[error("the session store is full")]
    Full,
}

impl From<SessionError> for AuthError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::Malformed => AuthError::Invalid,
            full @ SessionError::Full => AuthError::Unavailable(Box::new(full)),
        }
    }
}

/// Settings for [`SessionAuthenticator`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Idle timeout: a session unused for this long expires. Every successful verify pushes the
    /// deadline forward again (a sliding window).
    pub idle_ttl: Duration,
    /// Absolute lifetime: a session ends this long after login however active it is, so a stolen
    /// id cannot be kept alive forever by using it. OWASP suggests a few hours.
    pub max_age: Duration,
}

/// Sessions held in this process's memory.
///
/// The sessions themselves are in a sharded slab (`slab`): a verify takes one shard's read lock
/// and goes straight to the session's slot (the expiry is updated atomically inside the entry).
/// A map indexes sessions by user, for "list my sessions" and "log out everywhere"; the sweeper
/// prunes it together with the sessions, so no index entry outlives its session.
pub struct SessionAuthenticator {
    sessions: SessionSlab,
    by_user: DashMap<i64, UserSessions>,
    /// The idle timeout, in whole seconds.
    idle_s: u32,
    /// The absolute lifetime, in whole seconds.
    max_age_s: u32,
    /// The idle timeout as configured, reported to clients as `expires_in`.
    idle_ttl: Duration,
    /// Where the time comes from (one indirect call per read).
    clock: Arc<dyn Clock>,
    /// Times are kept as whole seconds since this Unix second, the clock's reading when the store
    /// was built (`u32`: 4 bytes per time, enough for 136 years). The clock counts whole seconds,
    /// so a deadline is never later than configured (at most a second earlier).
    epoch_unix_s: u64,
}

/// Whole seconds of `duration`, saturating at `u32::MAX` (136 years).
fn seconds(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs()).unwrap_or(u32::MAX)
}

impl SessionAuthenticator {
    /// An empty session store, reading time from `clock`.
    pub fn new(config: SessionConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            sessions: SessionSlab::new(),
            by_user: DashMap::new(),
            idle_s: seconds(config.idle_ttl),
            max_age_s: seconds(config.max_age),
            idle_ttl: config.idle_ttl,
            epoch_unix_s: clock.now_unix(),
            clock,
        }
    }

    /// Whole seconds since the store's epoch (0 if the clock reads earlier than the epoch).
    fn now_s(&self) -> u32 {
        let since_epoch = self.clock.now_unix().saturating_sub(self.epoch_unix_s);
        u32::try_from(since_epoch).unwrap_or(u32::MAX)
    }

    fn unix_seconds(&self, s: u32) -> u64 {
        self.epoch_unix_s.saturating_add(u64::from(s))
    }

    /// The idle deadline from `now_s`, capped by the absolute one (`created_s + max_age`).
    fn deadline_from(&self, now_s: u32, created_s: u32) -> u32 {
        now_s
            .saturating_add(self.idle_s)
            .min(created_s.saturating_add(self.max_age_s))
    }

    /// The handle of `session_ref` as text (11 base64url characters, on the stack).
    fn handle_text(session_ref: SessionRef, out: &mut [u8; HANDLE_LEN]) -> &str {
        let written = URL_SAFE_NO_PAD
            .encode_slice(session_ref.handle(), out)
            .unwrap_or(0);
        std::str::from_utf8(&out[..written]).unwrap_or_default()
    }

    /// The identity a session stands for, built for the caller (two small allocations: the
    /// name and the handle; no pointer into shared memory is followed or reference-counted).
    fn identity(session_ref: SessionRef, session: &Session) -> Identity {
        let mut handle = [0u8; HANDLE_LEN];
        Identity::new(session.user_id, session.username.as_str())
            .in_session(Self::handle_text(session_ref, &mut handle))
    }

    /// Stores `session` under a fresh id and indexes it under its user.
    fn insert(&self, session: Session) -> Result<SessionId, AuthError> {
        let user_id = session.user_id;
        // A fresh id every time, never one the client sent: that is what defeats session
        // fixation.
        let (id, session_ref) = self.sessions.insert(session).ok_or(SessionError::Full)?;
        match self.by_user.entry(user_id) {
            Entry::Occupied(mut refs) => refs.get_mut().add(session_ref),
            Entry::Vacant(slot) => {
                slot.insert(UserSessions::One(session_ref));
            }
        }
        Ok(id)
    }

    fn unindex(&self, user_id: i64, session_ref: SessionRef) {
        if let Entry::Occupied(mut refs) = self.by_user.entry(user_id)
            && refs.get_mut().remove(session_ref)
        {
            refs.remove();
        }
    }

    /// Removes every session of `user_id` that `pick` chooses; returns how many went.
    fn remove_where(&self, user_id: i64, mut pick: impl FnMut(SessionRef) -> bool) -> usize {
        let refs = self
            .by_user
            .get(&user_id)
            .map(|refs| refs.to_vec())
            .unwrap_or_default();
        let mut removed = 0;
        for session_ref in refs {
            if pick(session_ref)
                && self
                    .sessions
                    .remove_ref_if(session_ref, |session| session.user_id == user_id)
                    .is_some()
            {
                self.unindex(user_id, session_ref);
                removed += 1;
            }
        }
        removed
    }

    /// Gives the session behind `credential` a new id and returns it; the old id stops working at
    /// once. Call it whenever the session's privileges change (OWASP: "renew the session ID after
    /// any privilege level change"), so an id planted or seen before the change is worthless
    /// after it. Creation time, absolute deadline and public handle carry over.
    pub async fn renew_id(&self, credential: &str) -> Result<Issued, AuthError> {
        let old = SessionId::parse(credential)?;
        let now = self.now_s();
        let renewal = self.sessions.renew(&old, |session| {
            if session.expires_s.load(Ordering::Relaxed) <= now {
                return false;
            }
            session.expires_s.store(
                self.deadline_from(now, session.created_s),
                Ordering::Relaxed,
            );
            true
        });
        match renewal {
            Renewal::Renewed(id) => Ok(Issued {
                credential: id.encode().into(),
                expires_in: self.idle_ttl,
                refresh: None,
            }),
            Renewal::Ended(session_ref, session) => {
                self.unindex(session.user_id, session_ref);
                Err(AuthError::Expired)
            }
            Renewal::Unknown => Err(AuthError::Invalid),
        }
    }

    /// Forgets every expired session and returns how many went. Without it, sessions that are
    /// never used again would sit in memory forever; the server calls it on a timer.
    pub fn sweep(&self) -> usize {
        let now = self.now_s();
        let removed = self
            .sessions
            .retain(|session| session.expires_s.load(Ordering::Relaxed) > now);
        // Prune the index too. (Lock order: an index shard, then a slab shard; nothing ever
        // holds a slab shard while taking an index shard, so this cannot deadlock.)
        self.by_user
            .retain(|_, refs| !refs.retain(|session_ref| self.sessions.contains(*session_ref)));
        removed
    }

    /// How many sessions the store holds (live ones plus expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many users have sessions in the index (live or awaiting the sweeper).
    pub fn indexed_users(&self) -> usize {
        self.by_user.len()
    }
}

impl Authenticator for SessionAuthenticator {
    async fn issue(&self, identity: &Identity, client: &ClientInfo) -> Result<Issued, AuthError> {
        let now = self.now_s();
        let session = Session {
            user_id: identity.user_id,
            username: StoredName::new(&identity.username),
            created_s: now,
            expires_s: AtomicU32::new(self.deadline_from(now, now)),
            user_agent: client
                .user_agent
                .as_deref()
                .map(|ua| Box::new(UserAgent(ua.into()))),
        };
        let id = self.insert(session)?;
        Ok(Issued {
            credential: id.encode().into(),
            expires_in: self.idle_ttl,
            refresh: None,
        })
    }

    async fn verify(&self, credential: &str) -> Result<Identity, AuthError> {
        let id = SessionId::parse(credential)?;
        let now = self.now_s();
        let live = self
            .sessions
            .with(&id, |session_ref, session| {
                let expires = session.expires_s.load(Ordering::Relaxed);
                if expires <= now {
                    return None;
                }
                // Sliding idle timeout: every use buys another `idle_ttl`, up to the absolute
                // end. Written at most once a second (times are whole seconds): a busy session
                // would otherwise have every core writing the same cache line on every request.
                let deadline = self.deadline_from(now, session.created_s);
                if deadline > expires {
                    session.expires_s.store(deadline, Ordering::Relaxed);
                }
                Some(Self::identity(session_ref, session))
            })
            .ok_or(AuthError::Invalid)?;
        if let Some(identity) = live {
            return Ok(identity);
        }
        // Expired: the read lock is gone (it lived inside `with`); remove it under the write lock.
        if let Some((session_ref, session)) = self
            .sessions
            .remove_if(&id, |s| s.expires_s.load(Ordering::Relaxed) <= now)
        {
            self.unindex(session.user_id, session_ref);
        }
        Err(AuthError::Expired)
    }

    async fn revoke(&self, credential: &str) -> Result<Identity, AuthError> {
        let id = SessionId::parse(credential)?;
        let now = self.now_s();
        let (session_ref, session) = self
            .sessions
            .remove_if(&id, |_| true)
            .ok_or(AuthError::Invalid)?;
        self.unindex(session.user_id, session_ref);
        if session.expires_s.load(Ordering::Relaxed) > now {
            Ok(Self::identity(session_ref, &session))
        } else {
            Err(AuthError::Expired)
        }
    }
}

impl SessionRegistry for SessionAuthenticator {
    async fn sessions(&self, user_id: i64) -> Result<Vec<SessionInfo>, AuthError> {
        let now = self.now_s();
        let refs = self
            .by_user
            .get(&user_id)
            .map(|refs| refs.to_vec())
            .unwrap_or_default();
        let mut list: Vec<SessionInfo> = refs
            .into_iter()
            .filter_map(|session_ref| {
                self.sessions
                    .with_ref(session_ref, |session| {
                        let expires = session.expires_s.load(Ordering::Relaxed);
                        (session.user_id == user_id && expires > now).then(|| {
                            let mut handle = [0u8; HANDLE_LEN];
                            SessionInfo {
                                id: Self::handle_text(session_ref, &mut handle).to_owned(),
                                created_at: self.unix_seconds(session.created_s),
                                // The idle deadline is always "last use + idle TTL" (or the
                                // absolute end).
                                last_used_at: self.unix_seconds(
                                    expires.saturating_sub(self.idle_s).max(session.created_s),
                                ),
                                expires_at: self.unix_seconds(expires),
                                user_agent: session.user_agent.as_ref().map(|ua| ua.0.to_string()),
                            }
                        })
                    })
                    .flatten()
            })
            .collect();
        list.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(list)
    }

    async fn revoke_session(&self, user_id: i64, session_id: &str) -> Result<bool, AuthError> {
        // A handle is 11 base64url characters of 8 bytes; anything else names no session.
        let Some(handle) = SessionRef::from_handle(session_id) else {
            return Ok(false);
        };
        let removed = self.remove_where(user_id, |session_ref| session_ref == handle);
        Ok(removed > 0)
    }

    async fn revoke_all(&self, user_id: i64) -> Result<usize, AuthError> {
        Ok(self.remove_where(user_id, |_| true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authlab_core::ManualClock;
    use secrecy::ExposeSecret;

    /// Any fixed Unix time: the tests only move forward from it.
    const START: u64 = 1_700_000_000;

    fn store(idle: u64) -> SessionAuthenticator {
        store_with_max_age(idle, 3600).0
    }

    /// A store on a clock of its own, and that clock, to move forward.
    fn store_on_clock(idle: u64) -> (SessionAuthenticator, ManualClock) {
        store_with_max_age(idle, 3600)
    }

    fn store_with_max_age(idle: u64, max_age: u64) -> (SessionAuthenticator, ManualClock) {
        let clock = ManualClock::new(START);
        let sessions = SessionAuthenticator::new(
            SessionConfig {
                idle_ttl: Duration::from_secs(idle),
                max_age: Duration::from_secs(max_age),
            },
            Arc::new(clock.clone()),
        );
        (sessions, clock)
    }

    fn browser() -> ClientInfo {
        ClientInfo {
            user_agent: Some("Firefox".into()),
        }
    }

    fn alice() -> Identity {
        Identity::new(7, "alice")
    }

    #[tokio::test]
    async fn an_issued_session_verifies_to_its_user() {
        let sessions = store(60);
        let issued = sessions.issue(&alice(), &browser()).await.unwrap();
        let who = sessions
            .verify(issued.credential.expose_secret())
            .await
            .unwrap();
        assert_eq!(who.user_id, alice().user_id);
        assert_eq!(who.username, alice().username);
        assert!(
            who.session_id.is_some(),
            "the identity names its session's public handle"
        );
        assert_eq!(issued.expires_in, Duration::from_secs(60));
    }

    #[tokio::test]
    async fn ids_are_27_url_safe_characters_and_never_repeat() {
        let sessions = store(60);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1_000 {
            let issued = sessions.issue(&alice(), &browser()).await.unwrap();
            let id = issued.credential.expose_secret().to_owned();
            assert_eq!(id.len(), 27);
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
        let unknown = SessionId {
            slot: 0,
            secret: authlab_core::random::bytes(),
        }
        .encode();
        assert!(matches!(
            sessions.verify(&unknown).await,
            Err(AuthError::Invalid)
        ));
    }

    #[tokio::test]
    async fn a_live_sessions_slot_with_any_other_secret_is_invalid() {
        let sessions = store(60);
        let issued = sessions.issue(&alice(), &browser()).await.unwrap();
        let genuine = SessionId::parse(issued.credential.expose_secret()).unwrap();
        for byte in 0..16 {
            let mut forged = genuine;
            forged.secret[byte] ^= 0x80;
            assert!(matches!(
                sessions.verify(&forged.encode()).await,
                Err(AuthError::Invalid)
            ));
        }
        let zeros = SessionId {
            slot: genuine.slot,
            secret: [0; 16],
        };
        assert!(matches!(
            sessions.verify(&zeros.encode()).await,
            Err(AuthError::Invalid)
        ));
        assert!(sessions.revoke(&zeros.encode()).await.is_err());
        assert!(sessions.renew_id(&zeros.encode()).await.is_err());
        assert!(
            sessions
                .verify(issued.credential.expose_secret())
                .await
                .is_ok(),
            "the forgeries ended nothing"
        );
    }

    #[tokio::test]
    async fn an_idle_session_expires_and_use_slides_the_deadline() {
        let (sessions, clock) = store_on_clock(10);
        let issued = sessions.issue(&alice(), &browser()).await.unwrap();
        let id = issued.credential.expose_secret();

        clock.advance(Duration::from_secs(8));
        assert!(sessions.verify(id).await.is_ok(), "used within the window");
        clock.advance(Duration::from_secs(8));
        assert!(
            sessions.verify(id).await.is_ok(),
            "16 s after login, but only 8 s idle"
        );
        clock.advance(Duration::from_secs(10));
        assert!(matches!(sessions.verify(id).await, Err(AuthError::Expired)));
        assert!(
            sessions.is_empty(),
            "an expired session found on use is removed"
        );
    }

    #[tokio::test]
    async fn sweep_forgets_expired_sessions_and_keeps_live_ones() {
        let (sessions, clock) = store_on_clock(10);
        for _ in 0..100 {
            sessions.issue(&alice(), &browser()).await.unwrap();
        }
        clock.advance(Duration::from_secs(5));
        let fresh = sessions.issue(&alice(), &browser()).await.unwrap();
        clock.advance(Duration::from_secs(6));

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
        let issued = sessions.issue(&alice(), &browser()).await.unwrap();
        let id = issued.credential.expose_secret();
        sessions.revoke(id).await.unwrap();
        assert!(matches!(sessions.verify(id).await, Err(AuthError::Invalid)));
        assert!(matches!(sessions.revoke(id).await, Err(AuthError::Invalid)));
    }

    #[tokio::test]
    async fn the_absolute_lifetime_ends_even_a_busy_session() {
        let (sessions, clock) = store_with_max_age(10, 25);
        let issued = sessions.issue(&alice(), &browser()).await.unwrap();
        let id = issued.credential.expose_secret();
        for _ in 0..4 {
            clock.advance(Duration::from_secs(6));
            assert!(sessions.verify(id).await.is_ok(), "busy and within max age");
        }
        clock.advance(Duration::from_secs(2));
        assert!(matches!(sessions.verify(id).await, Err(AuthError::Expired)));
    }

    #[tokio::test]
    async fn rotation_gives_a_new_id_and_kills_the_old_one_but_keeps_the_session() {
        let (sessions, clock) = store_with_max_age(10, 25);
        let issued = sessions.issue(&alice(), &browser()).await.unwrap();
        let old = issued.credential.expose_secret().to_owned();
        let before = sessions.verify(&old).await.unwrap();
        clock.advance(Duration::from_secs(8));
        let _ = sessions.verify(&old).await.unwrap();
        clock.advance(Duration::from_secs(8));

        let rotated = sessions.renew_id(&old).await.unwrap();
        let new = rotated.credential.expose_secret();
        assert_ne!(new, &old);
        assert!(matches!(
            sessions.verify(&old).await,
            Err(AuthError::Invalid)
        ));
        let after = sessions.verify(new).await.unwrap();
        assert_eq!(after.session_id, before.session_id, "same session, new id");
        assert_eq!(sessions.sessions(7).await.unwrap().len(), 1);
        for _ in 0..2 {
            clock.advance(Duration::from_secs(4));
            assert!(sessions.verify(new).await.is_ok());
        }
        clock.advance(Duration::from_secs(2));
        assert!(
            matches!(sessions.verify(new).await, Err(AuthError::Expired)),
            "rotation does not extend the absolute lifetime"
        );
    }

    #[tokio::test]
    async fn the_registry_lists_revokes_one_and_revokes_all() {
        let (sessions, clock) = store_on_clock(60);
        let bob = Identity::new(8, "bob");
        let a = sessions.issue(&alice(), &browser()).await.unwrap();
        clock.advance(Duration::from_secs(1));
        let b = sessions
            .issue(&alice(), &ClientInfo::default())
            .await
            .unwrap();
        let bobs = sessions.issue(&bob, &browser()).await.unwrap();

        let listed = sessions.sessions(7).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].user_agent, None, "newest first");
        assert_eq!(listed[1].user_agent.as_deref(), Some("Firefox"));
        assert!(listed[0].expires_at > listed[0].created_at);
        // Reported times are the given clock's.
        assert_eq!(
            (listed[1].created_at, listed[0].created_at),
            (START, START + 1)
        );
        assert_eq!(listed[0].expires_at, START + 1 + 60);

        // Another user's session handle is "no such session" for alice.
        let bob_handle = sessions.sessions(8).await.unwrap()[0].id.clone();
        assert!(!sessions.revoke_session(7, &bob_handle).await.unwrap());
        assert!(sessions.revoke_session(7, &listed[1].id).await.unwrap());
        assert!(matches!(
            sessions.verify(a.credential.expose_secret()).await,
            Err(AuthError::Invalid)
        ));
        assert!(sessions.verify(b.credential.expose_secret()).await.is_ok());

        assert_eq!(sessions.revoke_all(7).await.unwrap(), 1);
        assert!(sessions.sessions(7).await.unwrap().is_empty());
        assert!(
            sessions
                .verify(bobs.credential.expose_secret())
                .await
                .is_ok()
        );
        assert_eq!(
            sessions.indexed_users(),
            1,
            "alice left no index entry behind"
        );
    }

    #[tokio::test]
    async fn sweeping_also_prunes_the_per_user_index() {
        let (sessions, clock) = store_on_clock(10);
        for user in 0..50 {
            sessions
                .issue(&Identity::new(user, "u"), &browser())
                .await
                .unwrap();
        }
        assert_eq!(sessions.indexed_users(), 50);
        clock.advance(Duration::from_secs(11));
        assert_eq!(sessions.sweep(), 50);
        assert_eq!(
            sessions.indexed_users(),
            0,
            "no index entry outlives its session"
        );
    }

    #[test]
    fn session_id_debug_is_redacted() {
        let id = SessionId {
            slot: 1,
            secret: authlab_core::random::bytes(),
        };
        assert_eq!(format!("{id:?}"), "SessionId([redacted])");
    }
}
