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
//! - [`SessionId`]: 128 random bits ([`authlab_core::random`]: a CSPRNG seeded from the OS),
//!   written as 22 base64url characters.
//! - [`SessionAuthenticator`]: the map, with an idle timeout that slides on every use, and
//!   [`SessionAuthenticator::sweep`] which forgets expired entries so memory stays bounded by the
//!   number of *active* sessions. The server runs the sweep on a timer.
//!
//! Simplifications a real deployment would revisit: sessions die with the process (nothing is
//! persisted), and there is no cap on sessions per user.
#![deny(missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authlab_core::{
    AuthError, Authenticator, ClientInfo, Identity, Issued, SessionInfo, SessionRegistry, random,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::time::Instant;

use stored::{Session, StoredName, UserAgent, UserSessions};

mod stored;

/// How a session id is written: 16 random bytes as unpadded base64url (22 characters), which is
/// safe in a cookie value without quoting.
const ENCODED_LEN: usize = 22;

/// A session's public handle (a random `u64`) as unpadded base64url: 11 characters.
const HANDLE_LEN: usize = 11;

/// A session id: 128 bits from a CSPRNG (OWASP asks for at least 64 bits of entropy).
///
/// Only [`SessionId::generate`] creates new ids; [`SessionId::parse`] only reads ids back, so a
/// client can never choose its own (no session fixation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionId(pub(crate) [u8; 16]);

impl SessionId {
    /// Draws a fresh id from the thread-local CSPRNG ([`authlab_core::random`]).
    pub fn generate() -> Self {
        Self(random::bytes())
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

impl std::hash::Hash for SessionId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The id is already uniformly random: eight of its bytes are as good a hash as any.
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// A hasher that passes a [`SessionId`]'s random bits through instead of running SipHash over
/// them. SipHash exists to stop an attacker from choosing keys that collide; here every key in the
/// map was drawn by the server from the OS CSPRNG, so there is nothing to choose, and a lookup of
/// a forged id costs one probe like any other miss.
#[derive(Default, Clone, Copy)]
pub struct RandomIdHasher(u64);

impl std::hash::Hasher for RandomIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `SessionId`; a plain fold keeps the type correct for any other key.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type IdMap<V> = DashMap<SessionId, V, std::hash::BuildHasherDefault<RandomIdHasher>>;

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
}

impl From<SessionError> for AuthError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::Malformed => AuthError::Invalid,
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

/// Sessions held in a concurrent map in this process.
///
/// The map is a [`DashMap`]: sharded, so requests on different sessions rarely wait on one another,
/// and a hit needs only a shard's read lock (the expiry is updated atomically inside the entry).
/// A second map indexes sessions by user, for "list my sessions" and "log out everywhere"; the
/// sweeper prunes it together with the sessions, so no index entry outlives its session.
pub struct SessionAuthenticator {
    sessions: IdMap<Session>,
    by_user: DashMap<i64, UserSessions>,
    /// The idle timeout, in whole seconds.
    idle_s: u32,
    /// The absolute lifetime, in whole seconds.
    max_age_s: u32,
    /// The idle timeout as configured, reported to clients as `expires_in`.
    idle_ttl: Duration,
    /// Times are kept as whole seconds since this instant (`u32`: 4 bytes per time, enough for
    /// 136 years), rounded down, so a deadline is never later than configured (at most a second
    /// earlier); `tokio::time` so tests can pause and advance the clock.
    epoch: Instant,
    /// The wall-clock time of `epoch`, to report times as Unix seconds.
    epoch_unix_s: u64,
}

/// Whole seconds of `duration`, saturating at `u32::MAX` (136 years).
fn seconds(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs()).unwrap_or(u32::MAX)
}

impl SessionAuthenticator {
    /// An empty session store.
    pub fn new(config: SessionConfig) -> Self {
        let epoch_unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Self {
            sessions: IdMap::default(),
            by_user: DashMap::new(),
            idle_s: seconds(config.idle_ttl),
            max_age_s: seconds(config.max_age),
            idle_ttl: config.idle_ttl,
            epoch: Instant::now(),
            epoch_unix_s,
        }
    }

    fn now_s(&self) -> u32 {
        seconds(self.epoch.elapsed())
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

    /// The identity a session stands for, built for the caller (two small allocations: the
    /// name and the handle; no pointer into shared memory is followed or reference-counted).
    fn identity(session: &Session) -> Identity {
        let mut handle = [0u8; HANDLE_LEN];
        let written = URL_SAFE_NO_PAD
            .encode_slice(session.handle.to_le_bytes(), &mut handle)
            .unwrap_or(0);
        Identity::new(session.user_id, session.username.as_str())
            .in_session(std::str::from_utf8(&handle[..written]).unwrap_or_default())
    }

    /// Puts `session` in the map under a fresh id and indexes it under its user.
    fn insert(&self, session: Session) -> Result<SessionId, AuthError> {
        let user_id = session.user_id;
        // A fresh id every time, never one the client sent: that is what defeats session
        // fixation. A collision of 128 random bits will not happen, but if it did we would draw
        // again rather than hand one user another user's session.
        let id = loop {
            let id = SessionId::generate();
            match self.sessions.entry(id) {
                Entry::Vacant(slot) => {
                    slot.insert(session);
                    break id;
                }
                Entry::Occupied(_) => continue,
            }
        };
        match self.by_user.entry(user_id) {
            Entry::Occupied(mut ids) => ids.get_mut().add(id),
            Entry::Vacant(slot) => {
                slot.insert(UserSessions::One(id));
            }
        }
        Ok(id)
    }

    fn unindex(&self, user_id: i64, id: &SessionId) {
        if let Entry::Occupied(mut ids) = self.by_user.entry(user_id)
            && ids.get_mut().remove(id)
        {
            ids.remove();
        }
    }

    /// Removes a session if it belongs to `user_id` and is identified by `pick`.
    fn remove_where(
        &self,
        user_id: i64,
        mut pick: impl FnMut(&SessionId, &Session) -> bool,
    ) -> usize {
        let ids = self
            .by_user
            .get(&user_id)
            .map(|ids| ids.to_vec())
            .unwrap_or_default();
        let mut removed = 0;
        for id in ids {
            if self
                .sessions
                .remove_if(&id, |id, session| {
                    session.user_id == user_id && pick(id, session)
                })
                .is_some()
            {
                self.unindex(user_id, &id);
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
        let (_, session) = self.sessions.remove(&old).ok_or(AuthError::Invalid)?;
        self.unindex(session.user_id, &old);
        if session.expires_s.load(Ordering::Relaxed) <= now {
            return Err(AuthError::Expired);
        }
        session.expires_s.store(
            self.deadline_from(now, session.created_s),
            Ordering::Relaxed,
        );
        let id = self.insert(session)?;
        Ok(Issued {
            credential: id.encode().into(),
            expires_in: self.idle_ttl,
            refresh: None,
        })
    }

    /// Forgets every expired session and returns how many went. Without it, sessions that are
    /// never used again would sit in memory forever; the server calls it on a timer.
    pub fn sweep(&self) -> usize {
        let now = self.now_s();
        let before = self.sessions.len();
        self.sessions
            .retain(|_, session| session.expires_s.load(Ordering::Relaxed) > now);
        // Prune the index too. (Lock order: an index shard, then a session shard; nothing else
        // ever holds a session shard while taking an index shard, so this cannot deadlock.)
        self.by_user
            .retain(|_, ids| !ids.retain(|id| self.sessions.contains_key(id)));
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
            handle: u64::from_le_bytes(random::bytes()),
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
        {
            let session = self.sessions.get(&id).ok_or(AuthError::Invalid)?;
            let expires = session.expires_s.load(Ordering::Relaxed);
            if expires > now {
                // Sliding idle timeout: every use buys another `idle_ttl`, up to the absolute end.
                // Written at most once a second (times are whole seconds): a busy session would
                // otherwise have every core writing the same cache line on every request.
                let deadline = self.deadline_from(now, session.created_s);
                if deadline > expires {
                    session.expires_s.store(deadline, Ordering::Relaxed);
                }
                return Ok(Self::identity(&session));
            }
        } // the read guard must be gone before we take the write lock below
        if let Some((_, session)) = self
            .sessions
            .remove_if(&id, |_, s| s.expires_s.load(Ordering::Relaxed) <= now)
        {
            self.unindex(session.user_id, &id);
        }
        Err(AuthError::Expired)
    }

    async fn revoke(&self, credential: &str) -> Result<Identity, AuthError> {
        let id = SessionId::parse(credential)?;
        let now = self.now_s();
        let (_, session) = self.sessions.remove(&id).ok_or(AuthError::Invalid)?;
        self.unindex(session.user_id, &id);
        if session.expires_s.load(Ordering::Relaxed) > now {
            Ok(Self::identity(&session))
        } else {
            Err(AuthError::Expired)
        }
    }
}

impl SessionRegistry for SessionAuthenticator {
    async fn sessions(&self, user_id: i64) -> Result<Vec<SessionInfo>, AuthError> {
        let now = self.now_s();
        let ids = self
            .by_user
            .get(&user_id)
            .map(|ids| ids.to_vec())
            .unwrap_or_default();
        let mut list: Vec<SessionInfo> = ids
            .iter()
            .filter_map(|id| {
                let session = self.sessions.get(id)?;
                let expires = session.expires_s.load(Ordering::Relaxed);
                (expires > now).then(|| SessionInfo {
                    id: Self::identity(&session)
                        .session_id
                        .as_deref()
                        .unwrap_or_default()
                        .to_owned(),
                    created_at: self.unix_seconds(session.created_s),
                    // The idle deadline is always "last use + idle TTL" (or the absolute end).
                    last_used_at: self
                        .unix_seconds(expires.saturating_sub(self.idle_s).max(session.created_s)),
                    expires_at: self.unix_seconds(expires),
                    user_agent: session.user_agent.as_ref().map(|ua| ua.0.to_string()),
                })
            })
            .collect();
        list.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(list)
    }

    async fn revoke_session(&self, user_id: i64, session_id: &str) -> Result<bool, AuthError> {
        // A handle is 11 base64url characters of a `u64`; anything else names no session.
        let mut bytes = [0u8; 9];
        let handle = match URL_SAFE_NO_PAD.decode_slice(session_id, &mut bytes) {
            Ok(8) if session_id.len() == HANDLE_LEN => {
                let mut handle = [0u8; 8];
                handle.copy_from_slice(&bytes[..8]);
                u64::from_le_bytes(handle)
            }
            _ => return Ok(false),
        };
        let removed = self.remove_where(user_id, |_, session| session.handle == handle);
        Ok(removed > 0)
    }

    async fn revoke_all(&self, user_id: i64) -> Result<usize, AuthError> {
        Ok(self.remove_where(user_id, |_, _| true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn store(idle: u64) -> SessionAuthenticator {
        store_with_max_age(idle, 3600)
    }

    fn store_with_max_age(idle: u64, max_age: u64) -> SessionAuthenticator {
        SessionAuthenticator::new(SessionConfig {
            idle_ttl: Duration::from_secs(idle),
            max_age: Duration::from_secs(max_age),
        })
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
    async fn ids_are_22_url_safe_characters_and_never_repeat() {
        let sessions = store(60);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1_000 {
            let issued = sessions.issue(&alice(), &browser()).await.unwrap();
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
        let unknown = SessionId::generate().encode();
        assert!(matches!(
            sessions.verify(&unknown).await,
            Err(AuthError::Invalid)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_expires_and_use_slides_the_deadline() {
        let sessions = store(10);
        let issued = sessions.issue(&alice(), &browser()).await.unwrap();
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
            sessions.issue(&alice(), &browser()).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let fresh = sessions.issue(&alice(), &browser()).await.unwrap();
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
        let issued = sessions.issue(&alice(), &browser()).await.unwrap();
        let id = issued.credential.expose_secret();
        sessions.revoke(id).await.unwrap();
        assert!(matches!(sessions.verify(id).await, Err(AuthError::Invalid)));
        assert!(matches!(sessions.revoke(id).await, Err(AuthError::Invalid)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_absolute_lifetime_ends_even_a_busy_session() {
        let sessions = store_with_max_age(10, 25);
        let issued = sessions.issue(&alice(), &browser()).await.unwrap();
        let id = issued.credential.expose_secret();
        for _ in 0..4 {
            tokio::time::advance(Duration::from_secs(6)).await;
            assert!(sessions.verify(id).await.is_ok(), "busy and within max age");
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(sessions.verify(id).await, Err(AuthError::Expired)));
    }

    #[tokio::test(start_paused = true)]
    async fn rotation_gives_a_new_id_and_kills_the_old_one_but_keeps_the_session() {
        let sessions = store_with_max_age(10, 25);
        let issued = sessions.issue(&alice(), &browser()).await.unwrap();
        let old = issued.credential.expose_secret().to_owned();
        let before = sessions.verify(&old).await.unwrap();
        tokio::time::advance(Duration::from_secs(8)).await;
        let _ = sessions.verify(&old).await.unwrap();
        tokio::time::advance(Duration::from_secs(8)).await;

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
            tokio::time::advance(Duration::from_secs(4)).await;
            assert!(sessions.verify(new).await.is_ok());
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            matches!(sessions.verify(new).await, Err(AuthError::Expired)),
            "rotation does not extend the absolute lifetime"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_registry_lists_revokes_one_and_revokes_all() {
        let sessions = store(60);
        let bob = Identity::new(8, "bob");
        let a = sessions.issue(&alice(), &browser()).await.unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
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

    #[tokio::test(start_paused = true)]
    async fn sweeping_also_prunes_the_per_user_index() {
        let sessions = store(10);
        for user in 0..50 {
            sessions
                .issue(&Identity::new(user, "u"), &browser())
                .await
                .unwrap();
        }
        assert_eq!(sessions.indexed_users(), 50);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(sessions.sweep(), 50);
        assert_eq!(
            sessions.indexed_users(),
            0,
            "no index entry outlives its session"
        );
    }

    #[test]
    fn session_id_debug_is_redacted() {
        let id = SessionId::generate();
        assert_eq!(format!("{id:?}"), "SessionId([redacted])");
    }
}
