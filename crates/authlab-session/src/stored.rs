//! How a session is laid out in memory: 48 bytes in its slot of the slab (72 with the slot's
//! secret and generation, see [`crate::slab`]), nothing on the heap for a typical session, and
//! one small entry per user in the index.
//!
//! At a million live sessions every byte of an entry counts, and the per-user index is a hash
//! table, whose entries count about twice (it doubles when 7/8 full, so right after a doubling
//! it is less than half full). So:
//! - the username sits in the entry ([`StoredName`], up to 22 bytes in place) instead of in an
//!   `Arc<str>` of its own (a 48-byte allocation and a pointer to chase on every verify);
//! - the public handle is not stored: it is the session's slot and generation
//!   ([`crate::slab::SessionRef`]), written out as 11 base64url characters only when asked;
//! - times are `u32` seconds since the store's epoch (136 years), and the absolute deadline is
//!   not stored at all: it is `created + max_age`;
//! - the `User-Agent`, read only when the user lists their sessions, hangs off a thin pointer
//!   ([`UserAgent`]): 8 bytes in the entry, and nothing more when there is none;
//! - the per-user index holds one 8-byte reference in place ([`UserSessions::One`]); only a
//!   user with a second session gets a list, behind one pointer so the entry stays 16 bytes.

use std::sync::atomic::AtomicU32;

use crate::slab::SessionRef;

/// One live session: 48 bytes (checked by a test).
pub(crate) struct Session {
    /// Whose session it is.
    pub(crate) user_id: i64,
    /// The user's name at login, so that `verify` needs no second lookup.
    pub(crate) username: StoredName,
    /// When the session started (login), seconds since the store's epoch.
    pub(crate) created_s: u32,
    /// Seconds since the store's epoch at which the session is dead: the idle deadline, never
    /// beyond `created_s + max_age`. Atomic so that sliding it forward on use needs only the
    /// shard's read lock.
    pub(crate) expires_s: AtomicU32,
    /// The client's `User-Agent` at login, for the user's list of sessions.
    pub(crate) user_agent: Option<Box<UserAgent>>,
}

/// A `User-Agent` behind a thin pointer (`Box<UserAgent>` is 8 bytes, `Box<str>` 16).
pub(crate) struct UserAgent(pub(crate) Box<str>);

/// Names up to this many bytes are stored in place.
const INLINE_NAME: usize = 22;

/// A username stored in the session entry itself when it is short (nearly all are: authlab's
/// own test users and most real ones are under 22 bytes), on the heap when it is not.
pub(crate) enum StoredName {
    /// `len` bytes of UTF-8 at the start of `bytes`.
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    /// A longer name (up to 64 characters, so up to 256 bytes).
    Boxed(Box<str>),
}

impl StoredName {
    pub(crate) fn new(name: &str) -> Self {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE_NAME => {
                let mut bytes = [0u8; INLINE_NAME];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Boxed(name.into()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Always the prefix of a `&str` copied whole in `new`, so always valid UTF-8; the
            // fallback is unreachable but costs nothing to keep honest.
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Boxed(name) => name,
        }
    }
}

/// The index entry of one user: their sessions. One in place (the common case, 16 bytes with no
/// allocation), more in a boxed `Vec` (a `Vec` in place would make every entry 24 bytes).
pub(crate) enum UserSessions {
    /// The user's only session.
    One(SessionRef),
    /// Two or more (never fewer: a `Many` that shrinks to one becomes `One` again).
    #[allow(clippy::box_collection)] // the box is the point: see above
    Many(Box<Vec<SessionRef>>),
}

impl UserSessions {
    pub(crate) fn add(&mut self, id: SessionRef) {
        match self {
            Self::One(first) => *self = Self::Many(Box::new(vec![*first, id])),
            Self::Many(ids) => ids.push(id),
        }
    }

    /// Removes `id` if present; returns whether the entry is now empty.
    pub(crate) fn remove(&mut self, id: SessionRef) -> bool {
        self.retain(|other| *other != id)
    }

    /// Keeps the ids for which `keep` is true; returns whether none is left.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&SessionRef) -> bool) -> bool {
        match self {
            Self::One(only) => !keep(only),
            Self::Many(ids) => {
                ids.retain(|id| keep(id));
                match ids.as_slice() {
                    [] => true,
                    [only] => {
                        *self = Self::One(*only);
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    pub(crate) fn to_vec(&self) -> Vec<SessionRef> {
        match self {
            Self::One(only) => vec![*only],
            Self::Many(ids) => ids.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_stays_at_48_bytes_and_an_index_entry_at_16() {
        assert_eq!(std::mem::size_of::<Session>(), 48);
        assert_eq!(std::mem::size_of::<Option<Session>>(), 48);
        assert_eq!(std::mem::size_of::<UserSessions>(), 16);
    }

    #[test]
    fn names_round_trip_in_place_and_boxed() {
        for name in [
            "",
            "alice",
            "exactly-22-bytes-name!",
            "ünïcødé",
            &"x".repeat(256),
        ] {
            assert_eq!(StoredName::new(name).as_str(), name);
        }
        assert!(matches!(
            StoredName::new("exactly-22-bytes-name!"),
            StoredName::Inline { .. }
        ));
        assert!(matches!(
            StoredName::new("twenty-three-bytes-name"),
            StoredName::Boxed(_)
        ));
    }

    #[test]
    fn the_index_entry_grows_and_shrinks_back_to_one_in_place() {
        let at = |slot| SessionRef {
            slot,
            generation: 0,
        };
        let (a, b, c) = (at(1), at(2), at(3));
        let mut ids = UserSessions::One(a);
        ids.add(b);
        ids.add(c);
        assert_eq!(ids.to_vec(), vec![a, b, c]);
        assert!(!ids.remove(a));
        assert!(!ids.remove(c));
        assert!(matches!(ids, UserSessions::One(only) if only == b));
        assert!(!ids.remove(a), "removing an absent id changes nothing");
        assert!(ids.remove(b), "the last one gone, the entry is empty");
    }
}
