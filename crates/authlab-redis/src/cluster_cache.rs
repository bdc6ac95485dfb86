//! The client-side cache on a Redis Cluster: one tracker per master, and the node's own view of
//! its slots as part of every proof.
//!
//! # Why one tracker per master
//! A node tracks the keys read on *its* connections and invalidates them when *it* writes them.
//! A key lives on the master that owns its slot, so each master gets its own tracking connection
//! (with its own thread, entries, proof and generation: a [`Tracker`]), and a key is read on,
//! cached by and served from the tracker of the master its slot maps to. The map is read from the
//! cluster (`CLUSTER NODES` through the backend's cluster connection) when the cache starts and
//! whenever something says it changed: a miss answered `MOVED`/`ASK`/`TRYAGAIN`/`CLUSTERDOWN`,
//! a tracker that lost its connection or found its node demoted, a view that gave up slots. A
//! new master gets a tracker; a master gone from the map has its tracker stopped.
//!
//! # What a hit requires
//! For a key in slot `s`, mapped to master `M`: `M`'s tracker holds the key, its newest proof is
//! younger than the staleness bound W, and the heartbeat that made that proof (`CLUSTER NODES`,
//! whose `myself` line is `M`'s own view) said `M` is a master, owns `s` and is not migrating
//! `s` away. Why each part:
//! - **The proof** says every invalidation `M` queued before it was applied (as on one Redis).
//! - **A master, owning `s`**: a master demoted by a failover (`CLUSTER FAILOVER`, or a replica
//!   that took over from a stalled one) still answers, but writes now go to its successor, which
//!   never invalidates what `M` cached. `PING` cannot tell; the node's own flags can.
//! - **Not migrating**: while `s` moves from `M` to `N`, a key that does not exist on `M` is
//!   written on `N` (the client follows `ASK`), and `M`, which still owns `s`, sees nothing. The
//!   JWT denylist caches exactly such a missing key ("not revoked"), so a hit needs `s` stable.
//!   The view that first shows the migration (or the loss of any slot) empties the tracker.
//!
//! # What each failure does
//! - **Slot migration**: hits for `s` stop with the first proof after `MIGRATING` (at most W
//!   later); the tracker's entries are dropped; misses answered `ASK`/`MOVED` go through the
//!   cluster connection uncached and refresh the map.
//! - **Manual failover**: the old master's next heartbeat says `slave`: its generation ends
//!   (flush), the map is read again and the new master gets a tracker.
//! - **A killed master**: the connection closes (flush at once), or the heartbeat times out; no
//!   proof, so no hits after W; the map is refreshed once the replica has taken over.
//! - **A stalled master (`SIGSTOP`)**: no reply, so trust lapses within W; its heartbeat times
//!   out and ends the generation. One that wakes up before it learns it was replaced still says
//!   `master`, which is why a silence longer than [`crate::tracking::SILENCE_LIMIT`] between two
//!   heartbeats drops the entries anyway.
//!
//! # What it costs
//! Nothing while idle (no timer sends anything). Busy: at most 2/W heartbeats a second per
//! master read from, each a `CLUSTER NODES` (a few hundred bytes per node of the cluster).
//! The hit path adds the key's CRC16 and one more atomic load per key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::cache::{Nanos, Stored};
use crate::topology::{ClusterTarget, NodeAddress};
use crate::tracking::{CacheConfig, Connector, Counters, Tracker};
use crate::{RedisBackendError, RedisConnection};
use secrecy::ExposeSecret;

/// Hash slots in a Redis Cluster.
const SLOTS: usize = 16384;

/// No tracker for this slot (yet).
const NO_TRACKER: u8 = u8::MAX;

/// The fewest time between two reads of the slot map, so a burst of redirects reads it once.
const REFRESH_GAP: Duration = Duration::from_millis(100);

/// A wake-up with a flag, so a burst of requests makes one refresh.
pub(crate) struct Signal {
    wanted: AtomicBool,
    wake: Notify,
}

impl Signal {
    fn new() -> Self {
        Self {
            wanted: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Asks for one refresh, unless one is already asked for.
    pub(crate) fn raise(&self) {
        if !self.wanted.load(Ordering::Acquire) && !self.wanted.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }
}

/// A node's own view of itself: whether it is a master, and the slots it serves (owns and is
/// not migrating away), as the `myself` line of its `CLUSTER NODES` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotView {
    master: bool,
    serving: Box<[u64; SLOTS / 64]>,
}

impl SlotView {
    /// Reads the `myself` line of a `CLUSTER NODES` reply:
    /// `<id> <addr> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`, where a slot is
    /// `N`, `A-B`, `[N->-<id>]` (migrating to another node) or `[N-<-<id>]` (importing).
    pub(crate) fn of_myself(nodes: &str) -> Option<Self> {
        let line = nodes.lines().find(|line| {
            line.split_whitespace()
                .nth(2)
                .is_some_and(|flags| flags.split(',').any(|flag| flag == "myself"))
        })?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = fields.get(2)?;
        let master = flags.split(',').any(|flag| flag == "master");
        let mut view = Self {
            master,
            serving: Box::new([0; SLOTS / 64]),
        };
        let mut migrating = Vec::new();
        for range in fields.iter().skip(8) {
            if let Some(inner) = range.strip_prefix('[') {
                if let Some((slot, _)) = inner.split_once("->-") {
                    migrating.push(slot.parse::<u16>().ok()?);
                }
                continue;
            }
            let (from, to) = range.split_once('-').unwrap_or((range, range));
            let (from, to) = (from.parse::<u16>().ok()?, to.parse::<u16>().ok()?);
            for slot in from..=to.min(SLOTS as u16 - 1) {
                view.set(slot, true);
            }
        }
        for slot in migrating {
            view.set(slot, false);
        }
        Some(view)
    }

    fn set(&mut self, slot: u16, on: bool) {
        let (word, bit) = (usize::from(slot) / 64, slot % 64);
        if let Some(word) = self.serving.get_mut(word) {
            if on {
                *word |= 1 << bit;
            } else {
                *word &= !(1 << bit);
            }
        }
    }

    /// Whether the node is a master.
    pub(crate) fn is_master(&self) -> bool {
        self.master
    }

    /// Whether the node serves `slot`: a master that owns it and is not migrating it.
    pub(crate) fn serves(&self, slot: u16) -> bool {
        let (word, bit) = (usize::from(slot) / 64, slot % 64);
        self.master
            && self
                .serving
                .get(word)
                .is_some_and(|word| word & (1 << bit) != 0)
    }

    /// Whether this view still serves every slot `older` served.
    pub(crate) fn keeps(&self, older: &SlotView) -> bool {
        (self.master || !older.master)
            && self
                .serving
                .iter()
                .zip(older.serving.iter())
                .all(|(now, before)| before & !now == 0)
    }
}

/// The slot of a key, as Redis computes it: CRC16 (XMODEM) of the key, or of its hash tag (the
/// part between the first `{` and the next `}`, if not empty), modulo 16384.
pub(crate) fn slot_of(key: &str) -> u16 {
    let key = key.as_bytes();
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS as u16
}

/// CRC16-CCITT (XMODEM), the one Redis Cluster uses, by a table built at compile time.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from(((crc >> 8) as u8) ^ b)]
    })
}

const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Which tracker serves each slot, as the newest read of the slot map said.
struct Table {
    owner: Box<[u8]>,
    trackers: Vec<(String, Arc<Tracker>)>,
}

impl Table {
    fn empty() -> Self {
        Self {
            owner: vec![NO_TRACKER; SLOTS].into_boxed_slice(),
            trackers: Vec::new(),
        }
    }

    fn tracker(&self, slot: u16) -> Option<&Arc<Tracker>> {
        let index = *self.owner.get(usize::from(slot))?;
        self.trackers.get(usize::from(index)).map(|(_, t)| t)
    }
}

/// The trackers of a cluster and the thread that keeps their map (see the module docs).
pub(crate) struct ClusterTrackers {
    table: ArcSwap<Table>,
    refresh: Arc<Signal>,
    stop: AtomicBool,
}

impl ClusterTrackers {
    /// Starts the map's thread, which reads the slot map at once and starts a tracker per
    /// master. Until it has, every lookup goes to the cluster connection.
    pub(crate) fn start(
        target: &ClusterTarget,
        config: CacheConfig,
        counters: Arc<Counters>,
        fallback: Arc<RedisConnection>,
    ) -> Result<Arc<Self>, RedisBackendError> {
        let trackers = Arc::new(Self {
            table: ArcSwap::from_pointee(Table::empty()),
            refresh: Arc::new(Signal::new()),
            stop: AtomicBool::new(false),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RedisBackendError::TrackingThread)?;
        let mapper = Mapper {
            trackers: trackers.clone(),
            tls: target.tls,
            credentials: target.credentials.clone(),
            config,
            counters,
            fallback,
        };
        trackers.refresh.raise();
        std::thread::Builder::new()
            .name("redis-slot-map".into())
            .spawn(move || runtime.block_on(mapper.run()))
            .map_err(RedisBackendError::TrackingThread)?;
        Ok(trackers)
    }

    /// The hot path: every key served by its slot's tracker, trusted, whose proof's view serves
    /// the slot.
    pub(crate) fn peek_all<const N: usize>(
        &self,
        keys: [&str; N],
        now: Nanos,
    ) -> Option<[Stored; N]> {
        let table = self.table.load();
        let mut values = [const { None }; N];
        for (value, key) in values.iter_mut().zip(keys) {
            let slot = slot_of(key);
            let local = &table.tracker(slot)?.local;
            // Trust first, then the view: a view is stored before the proof that came with it.
            if !local.trusted(now) || !local.serves(slot) {
                return None;
            }
            *value = Some(local.entries.get(key, now)?);
        }
        Some(values.map(|value| value.unwrap_or_default()))
    }

    /// The tracker a miss reads `key` on: its slot's, if that tracker is connected and its
    /// node's last view serves the slot. `None` (a refresh is asked for): read through the
    /// cluster connection.
    pub(crate) fn tracker_for(&self, key: &str) -> Option<Arc<Tracker>> {
        let slot = slot_of(key);
        let table = self.table.load();
        match table.tracker(slot) {
            Some(tracker) if tracker.is_live() && tracker.local.serves(slot) => {
                Some(tracker.clone())
            }
            other => {
                // The map may be old, or the node's view (a slot it was just given).
                if let Some(tracker) = other {
                    tracker.local.want_beat();
                }
                self.refresh.raise();
                None
            }
        }
    }

    /// Removes `key` from every tracker; whether one held it.
    pub(crate) fn forget(&self, key: &str) -> bool {
        let table = self.table.load();
        let mut removed = false;
        for (_, tracker) in &table.trackers {
            removed |= tracker.local.entries.remove(key);
        }
        removed
    }

    /// Whether every tracker is trusted now (and there is one).
    pub(crate) fn all_trusted(&self, now: Nanos) -> bool {
        let table = self.table.load();
        !table.trackers.is_empty() && table.trackers.iter().all(|(_, t)| t.local.trusted(now))
    }

    /// Entries held and evictions so far, over the live trackers.
    pub(crate) fn entries_and_evictions(&self) -> (u64, u64) {
        let table = self.table.load();
        table
            .trackers
            .iter()
            .fold((0, 0), |(entries, evictions), (_, t)| {
                (
                    entries + t.local.entries.len() as u64,
                    evictions + t.local.entries.evictions.load(Ordering::Relaxed),
                )
            })
    }

    /// Stops the map's thread and every tracker.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.refresh.wake.notify_one();
        for (_, tracker) in &self.table.load().trackers {
            tracker.retire();
        }
    }
}

/// The map's thread: reads the slot map when asked, and starts and stops trackers to match.
struct Mapper {
    trackers: Arc<ClusterTrackers>,
    tls: bool,
    credentials: crate::topology::Credentials,
    config: CacheConfig,
    counters: Arc<Counters>,
    fallback: Arc<RedisConnection>,
}

impl Mapper {
    async fn run(self) {
        let signal = self.trackers.refresh.clone();
        while !self.trackers.stop.load(Ordering::Acquire) {
            if !signal.wanted.load(Ordering::Acquire) {
                // Sends nothing: wakes only to notice a stop.
                let _ = tokio::time::timeout(Duration::from_secs(1), signal.wake.notified()).await;
                continue;
            }
            let refreshed = self.refresh().await;
            signal.wanted.store(false, Ordering::Release);
            if let Err(err) = refreshed {
                tracing::warn!(error = %err, "cannot read the Redis Cluster's slot map");
                tokio::time::sleep(self.config.timeouts.retry_after).await;
                signal.raise();
            }
            tokio::time::sleep(REFRESH_GAP).await;
        }
        for (_, tracker) in &self.trackers.table.load().trackers {
            tracker.retire();
        }
    }

    /// Reads `CLUSTER NODES` from a node of the cluster and rebuilds the table.
    async fn refresh(&self) -> Result<(), RedisBackendError> {
        let nodes: String = self
            .fallback
            .query(redis::cmd("CLUSTER").arg("NODES"))
            .await?;
        let masters = masters_with_slots(&nodes);
        if masters.is_empty() {
            return Err(RedisBackendError::Command(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "CLUSTER NODES lists no master with slots",
            ))));
        }
        let old = self.trackers.table.load_full();
        let capacity = self.config.capacity.div_ceil(masters.len());
        let mut table = Table::empty();
        for (address, ranges) in masters {
            let tracker = match old
                .trackers
                .iter()
                .find(|(known, t)| *known == address && !t.stop.load(Ordering::Acquire))
            {
                Some((_, tracker)) => tracker.clone(),
                None => {
                    let (host, port) = address
                        .rsplit_once(':')
                        .and_then(|(host, port)| Some((host, port.parse().ok()?)))
                        .ok_or_else(|| {
                            RedisBackendError::Command(redis::RedisError::from((
                                redis::ErrorKind::Parse,
                                "CLUSTER NODES has an address without a port",
                            )))
                        })?;
                    let node = NodeAddress {
                        host: host
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_owned(),
                        port,
                    };
                    let url = node.url(self.tls, &self.credentials);
                    tracing::info!(node = %node, "tracking a Redis Cluster master");
                    Tracker::spawn(
                        Connector::cluster_node(url.expose_secret())?,
                        self.config.clone(),
                        capacity,
                        self.counters.clone(),
                        Some(self.trackers.refresh.clone()),
                        None,
                    )?
                }
            };
            let Ok(index) = u8::try_from(table.trackers.len()) else {
                break;
            };
            for (from, to) in ranges {
                for slot in from..=to {
                    if let Some(owner) = table.owner.get_mut(usize::from(slot)) {
                        *owner = index;
                    }
                }
            }
            table.trackers.push((address, tracker));
        }
        for (address, tracker) in &old.trackers {
            if !table.trackers.iter().any(|(_, t)| Arc::ptr_eq(t, tracker)) {
                tracing::info!(node = %address, "no longer tracking a Redis Cluster node");
                self.counters.retired_evictions.fetch_add(
                    tracker.local.entries.evictions.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                tracker.retire();
            }
        }
        self.trackers.table.store(Arc::new(table));
        Ok(())
    }
}

/// The live masters of a `CLUSTER NODES` reply, as `host:port`, with the slot ranges each owns.
fn masters_with_slots(nodes: &str) -> Vec<(String, Vec<(u16, u16)>)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags: Vec<&str> = fields.get(2)?.split(',').collect();
            let live_master = flags.contains(&"master")
                && !flags
                    .iter()
                    .any(|f| *f == "fail" || *f == "noaddr" || *f == "handshake");
            if !live_master {
                return None;
            }
            let address = fields.get(1)?.split('@').next()?.split(',').next()?;
            let ranges: Vec<(u16, u16)> = fields
                .iter()
                .skip(8)
                .filter(|range| !range.starts_with('['))
                .filter_map(|range| {
                    let (from, to) = range.split_once('-').unwrap_or((range, range));
                    Some((from.parse().ok()?, to.parse().ok()?))
                })
                .collect();
            (!ranges.is_empty()).then(|| (address.to_owned(), ranges))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn the_slot_of_a_key_is_the_one_redis_computes() {
        for key in [
            "",
            "a",
            "authlab:tok:00ff",
            "p:deny:{f00d}:j-1",
            "p:deny:{f00d}",
            "{}x",
            "x{}y{z}",
            "{user1000}.following",
        ] {
            assert_eq!(Slot::new(slot_of(key)), Some(Slot::for_key(key)), "{key:?}");
        }
    }

    const NODES: &str = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [93->-b2] [77-<-c3]
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 0 3 connected
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
";

    #[test]
    fn the_node_serves_the_slots_it_owns_but_not_one_it_migrates() {
        let view = SlotView::of_myself(NODES).unwrap();
        assert!(view.is_master());
        assert!(view.serves(0) && view.serves(5460) && view.serves(92));
        assert!(!view.serves(93), "migrating away");
        assert!(!view.serves(5461), "another master's");
        assert!(
            view.serves(77),
            "importing does not take a slot away from its owner"
        );
    }

    #[test]
    fn a_demoted_node_serves_nothing_and_a_view_that_lost_slots_does_not_keep_the_old() {
        let before = SlotView::of_myself(NODES).unwrap();
        let demoted =
            SlotView::of_myself("a1 127.0.0.1:7000@17000 myself,slave d4 0 0 4 connected\n")
                .unwrap();
        assert!(!demoted.is_master() && !demoted.serves(0));
        assert!(!demoted.keeps(&before));
        let smaller =
            SlotView::of_myself("a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-50\n")
                .unwrap();
        assert!(!smaller.keeps(&before));
        assert!(before.keeps(&smaller));
        assert!(before.keeps(&before));
    }

    #[test]
    fn only_live_masters_with_slots_are_mapped() {
        assert_eq!(
            masters_with_slots(NODES),
            [
                ("127.0.0.1:7000".to_owned(), vec![(0, 5460)]),
                ("127.0.0.1:7001".to_owned(), vec![(5461, 10922)]),
            ]
        );
    }
}
