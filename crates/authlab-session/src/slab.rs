//! Where sessions live: a slab, addressed by the session id itself.
//!
//! A hash table is the obvious home for "random id -> session", and it is what this crate used
//! until issue #12. At a million sessions it costs about twice what it holds: a table doubles
//! when it is 7/8 full, so right after a doubling it is less than half full, and its empty
//! buckets are memory too. A lookup also touches two cache lines: the control bytes, then the
//! bucket.
//!
//! A slab needs neither. Every session sits in a numbered slot of a growing array, and the id
//! the client holds *says which slot*: [`SessionId`] is the slot's number (32 bits, not secret)
//! and 128 random bits (the secret). Verify goes straight to the slot and compares the secret in
//! constant time, so the client learns nothing from how long a wrong guess took. What the slot
//! number gives away is only how many sessions the server has held, roughly.
//!
//! - **Memory:** one [`Slot`] (72 bytes) per session, in chunks of [`CHUNK`] slots allocated as
//!   the population grows: no doubling, at most one part-filled chunk per shard.
//! - **Reuse without confusion:** a freed slot goes on a free list and is handed out again, with
//!   a new secret and its *generation* counted up. An old id no longer matches the secret; an old
//!   [`SessionRef`] (slot + generation: the per-user index and the public handle) no longer
//!   matches the generation. Nothing that named the old session can reach the new one.
//! - **Renewal in place:** a new id for the same session ([`SessionSlab::renew`]) is a new secret
//!   in the same slot, so the session's [`SessionRef`] (its handle and its index entry) stays.
//! - **Concurrency:** [`SHARDS`] shards, each behind its own read-write lock; a slot's shard is
//!   the low bits of its number, and a new session picks its shard from its random secret, so
//!   sessions spread evenly. A verify takes one shard's read lock; the sliding expiry is an
//!   atomic inside the session, so a hit writes nothing under the lock.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use subtle::ConstantTimeEq as _;

use crate::SessionId;
use crate::stored::Session;

/// log2 of the shard count.
const SHARD_BITS: u32 = 4;
/// How many shards (independent locks) the slab has.
pub(crate) const SHARDS: usize = 1 << SHARD_BITS;
/// Slots allocated at a time per shard: 1,024 slots of 72 bytes, 72 KiB.
pub(crate) const CHUNK: usize = 1024;
/// The largest slot number a shard may hand out (`u32` slot numbers, shard in the low bits).
const MAX_LOCAL: u32 = u32::MAX >> SHARD_BITS;

/// One occupancy of one slot: which session a per-user index entry or a public handle names.
/// Unlike a [`SessionId`] it holds no secret, and it survives [`SessionSlab::renew`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct SessionRef {
    /// The slot number (shard in the low bits).
    pub(crate) slot: u32,
    /// How many sessions this slot had held before this one.
    pub(crate) generation: u32,
}

/// A place for one session: 72 bytes (checked by a test).
struct Slot {
    /// The random half of the id that opens this slot; all zeros while the slot is free (and a
    /// zero secret opens nothing, because a free slot has no session).
    secret: [u8; 16],
    /// Counted up each time the slot is freed.
    generation: u32,
    /// The session, or `None` while the slot is free.
    session: Option<Session>,
}

impl Slot {
    const FREE: Self = Self {
        secret: [0; 16],
        generation: 0,
        session: None,
    };

    /// The session in this slot, if `secret` opens it (compared in constant time).
    fn opened_by(&self, secret: &[u8; 16]) -> Option<&Session> {
        let session = self.session.as_ref()?;
        bool::from(self.secret.ct_eq(secret)).then_some(session)
    }

    /// The session in this slot, if it is the occupancy `generation` names.
    fn of_generation(&self, generation: u32) -> Option<&Session> {
        self.session
            .as_ref()
            .filter(|_| self.generation == generation)
    }
}

/// One shard: its slots, in chunks, and the numbers of its free ones.
struct Shard {
    chunks: Vec<Box<[Slot]>>,
    /// Freed slots, handed out again before any new one.
    free: Vec<u32>,
    /// Slots `0..next_unused` have been handed out at least once.
    next_unused: u32,
    /// Occupied slots.
    live: usize,
}

impl Shard {
    fn slot(&self, local: u32) -> Option<&Slot> {
        let local = local as usize;
        self.chunks.get(local / CHUNK)?.get(local % CHUNK)
    }

    fn slot_mut(&mut self, local: u32) -> Option<&mut Slot> {
        let local = local as usize;
        self.chunks.get_mut(local / CHUNK)?.get_mut(local % CHUNK)
    }

    /// A free slot's local number: a freed one if there is one, else the next unused one (with a
    /// new chunk when the last is full). `None` when the shard has handed out `MAX_LOCAL` slots.
    fn claim(&mut self) -> Option<u32> {
        if let Some(local) = self.free.pop() {
            return Some(local);
        }
        let local = self.next_unused;
        if local > MAX_LOCAL {
            return None;
        }
        if (local as usize).is_multiple_of(CHUNK) {
            self.chunks
                .push((0..CHUNK).map(|_| Slot::FREE).collect::<Vec<_>>().into());
        }
        self.next_unused += 1;
        Some(local)
    }

    /// Empties an occupied slot and puts it on the free list.
    fn release(&mut self, local: u32) -> Option<Session> {
        let slot = self.slot_mut(local)?;
        let session = slot.session.take()?;
        slot.secret = [0; 16];
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(local);
        self.live -= 1;
        Some(session)
    }
}

/// What [`SessionSlab::renew`] did.
pub(crate) enum Renewal {
    /// The session now answers to this id; the old one opens nothing.
    Renewed(SessionId),
    /// The session was found but no longer live: it has been removed.
    Ended(SessionRef, Session),
    /// The id opens no slot.
    Unknown,
}

/// Every live session of this process, in [`SHARDS`] shards of slots.
pub(crate) struct SessionSlab {
    shards: Box<[RwLock<Shard>]>,
}

/// Which shard a slot number is in, and its number within the shard.
fn locate(slot: u32) -> (usize, u32) {
    ((slot as usize) & (SHARDS - 1), slot >> SHARD_BITS)
}

impl SessionSlab {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        chunks: Vec::new(),
                        free: Vec::new(),
                        next_unused: 0,
                        live: 0,
                    })
                })
                .collect(),
        }
    }

    // No code runs with a shard's lock held that can panic half-way through a change (the
    // closures passed in only read), so a poisoned lock still guards consistent data.
    fn read(&self, shard: usize) -> Option<RwLockReadGuard<'_, Shard>> {
        let lock = self.shards.get(shard)?;
        Some(lock.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write(&self, shard: usize) -> Option<RwLockWriteGuard<'_, Shard>> {
        let lock = self.shards.get(shard)?;
        Some(lock.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// Stores `session` in a free slot under a fresh random secret. `None` only if the shard
    /// the secret picked has run out of slot numbers (268 million sessions in one shard).
    pub(crate) fn insert(&self, session: Session) -> Option<(SessionId, SessionRef)> {
        let secret: [u8; 16] = authlab_core::random::bytes();
        let shard_index = usize::from(secret[0]) & (SHARDS - 1);
        let mut shard = self.write(shard_index)?;
        let local = shard.claim()?;
        let slot_number = (local << SHARD_BITS) | shard_index as u32;
        let slot = shard.slot_mut(local)?;
        slot.secret = secret;
        slot.session = Some(session);
        let generation = slot.generation;
        shard.live += 1;
        Some((
            SessionId {
                slot: slot_number,
                secret,
            },
            SessionRef {
                slot: slot_number,
                generation,
            },
        ))
    }

    /// Runs `read` on the session `id` opens, under its shard's read lock.
    pub(crate) fn with<R>(
        &self,
        id: &SessionId,
        read: impl FnOnce(SessionRef, &Session) -> R,
    ) -> Option<R> {
        let (shard, local) = locate(id.slot);
        let shard = self.read(shard)?;
        let slot = shard.slot(local)?;
        let session = slot.opened_by(&id.secret)?;
        Some(read(
            SessionRef {
                slot: id.slot,
                generation: slot.generation,
            },
            session,
        ))
    }

    /// Runs `read` on the session `session_ref` names, under its shard's read lock.
    pub(crate) fn with_ref<R>(
        &self,
        session_ref: SessionRef,
        read: impl FnOnce(&Session) -> R,
    ) -> Option<R> {
        let (shard, local) = locate(session_ref.slot);
        let shard = self.read(shard)?;
        let session = shard.slot(local)?.of_generation(session_ref.generation)?;
        Some(read(session))
    }

    /// Removes the session `id` opens if `pick` says so.
    pub(crate) fn remove_if(
        &self,
        id: &SessionId,
        pick: impl FnOnce(&Session) -> bool,
    ) -> Option<(SessionRef, Session)> {
        let (shard, local) = locate(id.slot);
        let mut shard = self.write(shard)?;
        let slot = shard.slot(local)?;
        let generation = slot.generation;
        if !slot.opened_by(&id.secret).is_some_and(pick) {
            return None;
        }
        let session = shard.release(local)?;
        Some((
            SessionRef {
                slot: id.slot,
                generation,
            },
            session,
        ))
    }

    /// Removes the session `session_ref` names if `pick` says so.
    pub(crate) fn remove_ref_if(
        &self,
        session_ref: SessionRef,
        pick: impl FnOnce(&Session) -> bool,
    ) -> Option<Session> {
        let (shard, local) = locate(session_ref.slot);
        let mut shard = self.write(shard)?;
        let slot = shard.slot(local)?;
        if !slot.of_generation(session_ref.generation).is_some_and(pick) {
            return None;
        }
        shard.release(local)
    }

    /// Gives the session `id` opens a new secret, if `still_live` says it is; removes it if not.
    pub(crate) fn renew(
        &self,
        id: &SessionId,
        still_live: impl FnOnce(&Session) -> bool,
    ) -> Renewal {
        let (shard_index, local) = locate(id.slot);
        let Some(mut shard) = self.write(shard_index) else {
            return Renewal::Unknown;
        };
        let Some(slot) = shard.slot_mut(local) else {
            return Renewal::Unknown;
        };
        let generation = slot.generation;
        let Some(live) = slot.opened_by(&id.secret).map(still_live) else {
            return Renewal::Unknown;
        };
        if live {
            slot.secret = authlab_core::random::bytes();
            return Renewal::Renewed(SessionId {
                slot: id.slot,
                secret: slot.secret,
            });
        }
        match shard.release(local) {
            Some(session) => Renewal::Ended(
                SessionRef {
                    slot: id.slot,
                    generation,
                },
                session,
            ),
            None => Renewal::Unknown,
        }
    }

    /// Removes every session `keep` says no to; returns how many went.
    pub(crate) fn retain(&self, keep: impl Fn(&Session) -> bool) -> usize {
        let mut removed = 0;
        for shard_index in 0..SHARDS {
            let Some(mut shard) = self.write(shard_index) else {
                continue;
            };
            for local in 0..shard.next_unused {
                let ends = shard
                    .slot(local)
                    .and_then(|slot| slot.session.as_ref())
                    .is_some_and(|session| !keep(session));
                if ends && shard.release(local).is_some() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Whether `session_ref` still names a session.
    pub(crate) fn contains(&self, session_ref: SessionRef) -> bool {
        self.with_ref(session_ref, |_| ()).is_some()
    }

    /// How many sessions are stored.
    pub(crate) fn len(&self) -> usize {
        (0..SHARDS)
            .filter_map(|shard| self.read(shard).map(|shard| shard.live))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::stored::StoredName;

    fn session(user_id: i64) -> Session {
        Session {
            user_id,
            username: StoredName::new("alice"),
            created_s: 0,
            expires_s: AtomicU32::new(10),
            user_agent: None,
        }
    }

    #[test]
    fn a_slot_is_72_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 72);
    }

    #[test]
    fn an_id_opens_its_slot_and_nothing_else_does() {
        let slab = SessionSlab::new();
        let (id, session_ref) = slab.insert(session(7)).unwrap();
        assert_eq!(
            slab.with(&id, |r, s| (r, s.user_id)),
            Some((session_ref, 7))
        );
        let mut wrong = id;
        wrong.secret[15] ^= 1;
        assert!(slab.with(&wrong, |_, _| ()).is_none(), "one bit off");
        let elsewhere = SessionId {
            slot: id.slot ^ 1,
            secret: id.secret,
        };
        assert!(slab.with(&elsewhere, |_, _| ()).is_none(), "another slot");
        let beyond = SessionId {
            slot: u32::MAX,
            secret: id.secret,
        };
        assert!(
            slab.with(&beyond, |_, _| ()).is_none(),
            "a slot never handed out"
        );
    }

    #[test]
    fn a_reused_slot_answers_neither_the_old_id_nor_the_old_ref() {
        let slab = SessionSlab::new();
        let (old_id, old_ref) = slab.insert(session(7)).unwrap();
        assert!(slab.remove_if(&old_id, |_| true).is_some());
        // Fill the shard's free list back up until the old slot is handed out again.
        let (new_id, new_ref) = std::iter::repeat_with(|| slab.insert(session(8)).unwrap())
            .find(|(id, _)| id.slot == old_id.slot)
            .unwrap();
        assert_eq!(new_ref.slot, old_ref.slot);
        assert_ne!(new_ref.generation, old_ref.generation);
        assert!(slab.with(&old_id, |_, _| ()).is_none());
        assert!(!slab.contains(old_ref));
        assert!(slab.remove_ref_if(old_ref, |_| true).is_none());
        assert_eq!(slab.with(&new_id, |_, s| s.user_id), Some(8));
    }

    #[test]
    fn renewal_changes_the_secret_and_keeps_the_ref() {
        let slab = SessionSlab::new();
        let (old_id, session_ref) = slab.insert(session(7)).unwrap();
        let Renewal::Renewed(new_id) = slab.renew(&old_id, |_| true) else {
            panic!("a live session renews");
        };
        assert_eq!(new_id.slot, old_id.slot);
        assert!(slab.with(&old_id, |_, _| ()).is_none());
        assert_eq!(slab.with(&new_id, |r, _| r), Some(session_ref));
        assert!(matches!(slab.renew(&new_id, |_| false), Renewal::Ended(r, _) if r == session_ref));
        assert!(matches!(slab.renew(&new_id, |_| true), Renewal::Unknown));
        assert_eq!(slab.len(), 0);
    }

    #[test]
    fn threads_inserting_reading_and_removing_at_once_never_see_each_others_sessions() {
        let slab = SessionSlab::new();
        std::thread::scope(|scope| {
            for user in 0..4_i64 {
                let slab = &slab;
                scope.spawn(move || {
                    for _ in 0..2_000 {
                        let (id, session_ref) = slab.insert(session(user)).unwrap();
                        assert_eq!(
                            slab.with(&id, |r, s| (r, s.user_id)),
                            Some((session_ref, user))
                        );
                        assert_eq!(slab.with_ref(session_ref, |s| s.user_id), Some(user));
                        assert!(slab.remove_if(&id, |s| s.user_id == user).is_some());
                        assert!(slab.with(&id, |_, _| ()).is_none());
                        assert!(!slab.contains(session_ref));
                    }
                });
            }
        });
        assert_eq!(slab.len(), 0);
    }

    #[test]
    fn chunks_grow_one_at_a_time_and_retain_frees_slots() {
        let slab = SessionSlab::new();
        let ids: Vec<_> = (0..3 * CHUNK * SHARDS / 2)
            .map(|n| slab.insert(session(n as i64)).unwrap().0)
            .collect();
        assert_eq!(slab.len(), ids.len());
        assert_eq!(slab.retain(|s| s.user_id % 2 == 0), ids.len() / 2);
        assert_eq!(slab.len(), ids.len() / 2);
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(slab.with(id, |_, _| ()).is_some(), n % 2 == 0);
        }
        let chunks: usize = (0..SHARDS)
            .map(|s| slab.read(s).unwrap().chunks.len())
            .sum();
        assert!(
            chunks <= 2 * SHARDS + SHARDS,
            "{chunks} chunks for 1.5 per shard"
        );
    }
}
