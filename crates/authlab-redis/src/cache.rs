//! The bounded in-process map behind [`crate::TrackedCache`], and the rule that keeps a racing
//! miss from storing a value Redis no longer holds.
//!
//! # The race, and the pending marker that closes it
//! A miss sends `GET` to Redis and stores the reply. Redis may change the key in between: it
//! then sends an invalidation, and that invalidation can be handled *before* the reply is
//! stored (it arrives right after the reply, on another thread). Storing the reply afterwards
//! would keep the old value past its only invalidation (Redis tracks a key once per read, so no
//! second one comes): the bug redis-rs's `cache-aio` has, and Lettuce had until it added a
//! marker. So a miss first puts a **pending marker** with a fresh ticket under the key, and
//! stores its reply only if that very marker is still there. An invalidation, a flush or a newer
//! miss removes or replaces the marker, and the reply is then handed to the caller but not kept.
//! The reply answers the request that asked (it was true when Redis sent it); it is only its
//! *afterlife* in the cache that the marker forbids.
//!
//! # Bounded
//! The map is split into shards, each a `RwLock<HashMap>` with its share of the capacity, so a
//! hit takes one uncontended read lock and a full shard evicts within itself: first an expired
//! entry, else any entry (the first the map yields). Pending markers count toward the bound; a
//! shard full of them caches nothing until they resolve.
//!
//! # Hashed with foldhash, not SipHash
//! A hit hashes its key twice (which shard, then where in the shard's map), and a cached JWT
//! check looks up three keys: with std's SipHash-1-3 over ~60-byte keys that was most of the
//! check's cost. The maps use foldhash instead, seeded at random per map (two independent
//! seeds, so the shard a key falls in says nothing about its place in the shard's map). What
//! SipHash guards against, an attacker choosing keys that collide, needs control of the keys, and
//! a client has none here: denylist keys are built from a JWT's verified claims, minted by this
//! server, and a token key is a SHA-256 of the token, kept only when Redis holds the token.

use std::collections::HashMap;
use std::hash::BuildHasher as _;

use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// What Redis held under a key when it was read: `None` when the key did not exist.
pub(crate) type Stored = Option<Arc<str>>;

/// A time on the cache's own clock: nanoseconds since the cache was created. Plain integers, so
/// an entry's deadline and the heartbeat fit in atomics and compare with one instruction.
pub(crate) type Nanos = u64;

/// Most shards a map is split into.
const MAX_SHARDS: usize = 16;
/// Fewest entries per shard before the map stops adding shards (small caches stay exact).
const MIN_PER_SHARD: usize = 64;

/// One key's slot: a miss in flight, or a value with its deadline.
#[derive(Debug, Clone)]
enum Slot {
    /// A miss with this ticket is reading the key; only it may fill the slot.
    Pending(u64),
    /// What Redis held, usable until `expires` (cache clock).
    Ready { value: Stored, expires: Nanos },
}

/// One shard: a part of the keys, behind its own lock.
type Shard = RwLock<Map>;

/// A shard's map, keyed by the Redis key.
type Map = HashMap<Box<str>, Slot, RandomState>;

/// The ticket a miss gets from [`Entries::begin`]: proof that it may fill its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// The sharded, bounded map of keys to [`Slot`]s.
pub(crate) struct Entries {
    shards: Box<[Shard]>,
    per_shard: usize,
    hasher: RandomState,
    next_ticket: AtomicU64,
    /// Slots in use (pending or ready), across all shards.
    len: AtomicUsize,
    /// Ready entries removed to make room.
    pub(crate) evictions: AtomicU64,
}

impl Entries {
    /// A map holding at most `capacity` slots (0: nothing is ever kept).
    pub(crate) fn new(capacity: usize) -> Self {
        let shards = (capacity / MIN_PER_SHARD).clamp(1, MAX_SHARDS);
        Self {
            shards: (0..shards)
                .map(|_| RwLock::new(Map::with_hasher(RandomState::default())))
                .collect(),
            per_shard: capacity / shards,
            hasher: RandomState::default(),
            next_ticket: AtomicU64::new(1),
            len: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The most slots this map holds.
    pub(crate) fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// Slots in use now (pending markers included).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn shard(&self, key: &str) -> &Shard {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        &self.shards[index]
    }

    /// The value under `key` if one is ready and its deadline is after `now`.
    pub(crate) fn get(&self, key: &str, now: Nanos) -> Option<Stored> {
        match read(self.shard(key)).get(key) {
            Some(Slot::Ready { value, expires }) if now < *expires => Some(value.clone()),
            _ => None,
        }
    }

    /// Marks `key` as being read by a new miss, replacing whatever was there (an expired entry,
    /// or an older miss, whose reply will then not be kept). `None` when the shard is full of
    /// pending markers: the miss goes ahead uncached.
    pub(crate) fn begin(&self, key: &str, now: Nanos) -> Option<Ticket> {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let mut shard = write(self.shard(key));
        if let Some(slot) = shard.get_mut(key) {
            *slot = Slot::Pending(ticket);
            return Some(Ticket(ticket));
        }
        if shard.len() >= self.per_shard && !self.make_room(&mut shard, now) {
            return None;
        }
        shard.insert(key.into(), Slot::Pending(ticket));
        self.len.fetch_add(1, Ordering::Relaxed);
        Some(Ticket(ticket))
    }

    /// Stores a miss's reply, if its marker is still in place; says whether it was kept.
    pub(crate) fn fill(&self, key: &str, ticket: Ticket, value: Stored, expires: Nanos) -> bool {
        let mut shard = write(self.shard(key));
        match shard.get_mut(key) {
            Some(slot) if matches!(*slot, Slot::Pending(t) if t == ticket.0) => {
                *slot = Slot::Ready { value, expires };
                true
            }
            _ => false,
        }
    }

    /// Gives up a miss's marker (the read failed, or its reply is not to be kept), if it is
    /// still its own.
    pub(crate) fn abandon(&self, key: &str, ticket: Ticket) {
        let mut shard = write(self.shard(key));
        if matches!(shard.get(key), Some(Slot::Pending(t)) if *t == ticket.0) {
            shard.remove(key);
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Forgets `key`: its value, or the marker of a miss in flight (whose reply is then not
    /// kept). What an invalidation does.
    pub(crate) fn remove(&self, key: &str) -> bool {
        let removed = write(self.shard(key)).remove(key).is_some();
        if removed {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Forgets everything, markers included.
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            let mut shard = write(shard);
            self.len.fetch_sub(shard.len(), Ordering::Relaxed);
            shard.clear();
        }
    }

    /// Frees one slot in a full shard: an expired entry if there is one, else any ready entry.
    fn make_room(&self, shard: &mut Map, now: Nanos) -> bool {
        let victim = shard
            .iter()
            .find(|(_, slot)| matches!(slot, Slot::Ready { expires, .. } if *expires <= now))
            .or_else(|| {
                shard
                    .iter()
                    .find(|(_, slot)| matches!(slot, Slot::Ready { .. }))
            })
            .map(|(key, _)| key.clone());
        match victim {
            Some(key) => {
                shard.remove(&key);
                self.len.fetch_sub(1, Ordering::Relaxed);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Drops every entry whose deadline has passed (the tracking thread does this now and then,
    /// so expired entries do not hold memory until they are evicted).
    pub(crate) fn sweep(&self, now: Nanos) {
        for shard in &self.shards {
            let mut shard = write(shard);
            let before = shard.len();
            shard.retain(|_, slot| !matches!(slot, Slot::Ready { expires, .. } if *expires <= now));
            self.len.fetch_sub(before - shard.len(), Ordering::Relaxed);
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the map itself is
/// always consistent between statements, so carry on.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Stored {
        Some(Arc::from(text))
    }

    #[test]
    fn a_miss_whose_marker_is_intact_stores_its_reply() {
        let entries = Entries::new(100);
        let ticket = entries.begin("k", 0).unwrap();
        assert_eq!(entries.get("k", 0), None, "a pending marker is not a value");
        assert!(entries.fill("k", ticket, value("v"), 10));
        assert_eq!(entries.get("k", 5), Some(value("v")));
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn an_invalidation_between_the_reply_and_the_store_wins() {
        let entries = Entries::new(100);
        let ticket = entries.begin("k", 0).unwrap();
        // Redis changed the key; its invalidation is handled before the reply is stored.
        assert!(entries.remove("k"));
        assert!(!entries.fill("k", ticket, value("old"), 10));
        assert_eq!(entries.get("k", 1), None);
        assert_eq!(entries.len(), 0);
    }

    #[test]
    fn a_flush_between_the_reply_and_the_store_wins() {
        let entries = Entries::new(100);
        let ticket = entries.begin("k", 0).unwrap();
        entries.clear();
        assert!(!entries.fill("k", ticket, value("old"), 10));
        assert_eq!(entries.get("k", 1), None);
        assert_eq!(entries.len(), 0);
    }

    #[test]
    fn an_older_miss_cannot_overwrite_a_newer_one() {
        let entries = Entries::new(100);
        let old = entries.begin("k", 0).unwrap();
        entries.remove("k");
        let new = entries.begin("k", 0).unwrap();
        // The old reply (read before the change) arrives last: it must not be kept.
        assert!(!entries.fill("k", old, value("old"), 10));
        assert!(entries.fill("k", new, value("new"), 10));
        assert_eq!(entries.get("k", 1), Some(value("new")));
        // And once the newer one is stored, the old ticket cannot replace it either.
        assert!(!entries.fill("k", old, value("old"), 10));
        assert_eq!(entries.get("k", 1), Some(value("new")));
    }

    #[test]
    fn an_abandoned_miss_frees_its_marker_but_not_a_newer_one() {
        let entries = Entries::new(100);
        let old = entries.begin("k", 0).unwrap();
        let new = entries.begin("k", 0).unwrap();
        entries.abandon("k", old);
        assert_eq!(entries.len(), 1, "the newer marker stays");
        entries.abandon("k", new);
        assert_eq!(entries.len(), 0);
    }

    #[test]
    fn an_entry_is_not_served_at_or_after_its_deadline() {
        let entries = Entries::new(100);
        let ticket = entries.begin("k", 0).unwrap();
        entries.fill("k", ticket, None, 10);
        assert_eq!(
            entries.get("k", 9),
            Some(None),
            "a missing key is an answer too"
        );
        assert_eq!(entries.get("k", 10), None);
        entries.sweep(10);
        assert_eq!(entries.len(), 0);
    }

    #[test]
    fn the_map_never_holds_more_than_its_capacity() {
        for capacity in [0, 1, 7, 64, 1000] {
            let entries = Entries::new(capacity);
            for i in 0..5_000 {
                let key = format!("key{i}");
                if let Some(ticket) = entries.begin(&key, 0) {
                    entries.fill(&key, ticket, value("v"), 100);
                }
                assert!(entries.len() <= capacity, "{capacity}: {}", entries.len());
            }
            assert!(entries.capacity() <= capacity);
        }
    }

    #[test]
    fn a_full_shard_evicts_an_expired_entry_first() {
        let entries = Entries::new(2);
        let a = entries.begin("a", 0).unwrap();
        entries.fill("a", a, value("a"), 5);
        let b = entries.begin("b", 0).unwrap();
        entries.fill("b", b, value("b"), 100);
        let c = entries.begin("c", 50).unwrap();
        entries.fill("c", c, value("c"), 100);
        assert_eq!(entries.get("a", 50), None);
        assert_eq!(entries.get("b", 50), Some(value("b")));
        assert_eq!(entries.get("c", 50), Some(value("c")));
        assert_eq!(entries.evictions.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_shard_full_of_pending_markers_lets_the_miss_go_uncached() {
        let entries = Entries::new(1);
        let _a = entries.begin("a", 0).unwrap();
        assert_eq!(entries.begin("b", 0), None);
    }
}
