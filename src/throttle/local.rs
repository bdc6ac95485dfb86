//! The in-process stand-in for the Redis throttle counters: the same operations, the same
//! windows, in this process only. [`super::Throttle`] falls back to it when Redis does not answer;
//! N instances then allow N times the limit, and the count restarts with the process.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use authlab_redis::Verdict;

/// Most subjects the in-process fallback keeps at once; beyond it, the entry closest to the end
/// of its window is forgotten first.
const MAX_LOCAL_ENTRIES: usize = 100_000;

/// The in-process stand-in for the Redis counters: the same operations, the same windows, in
/// this process only.
#[derive(Default)]
pub(super) struct LocalCounters {
    entries: Mutex<HashMap<String, LocalEntry>>,
}

#[derive(Debug, Clone, Copy)]
struct LocalEntry {
    failed: u32,
    pending: u32,
    until: Instant,
}

impl LocalCounters {
    fn with_entry<T>(
        &self,
        key: &str,
        now: Instant,
        f: impl FnOnce(Option<&mut LocalEntry>) -> (T, Option<LocalEntry>),
    ) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let live = entries.get_mut(key).filter(|e| e.until > now);
        let (answer, insert) = f(live);
        if let Some(entry) = insert {
            if entries.len() >= MAX_LOCAL_ENTRIES && !entries.contains_key(key) {
                entries.retain(|_, e| e.until > now);
                if entries.len() >= MAX_LOCAL_ENTRIES
                    && let Some(oldest) = entries
                        .iter()
                        .min_by_key(|(_, e)| e.until)
                        .map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
            }
            entries.insert(key.to_owned(), entry);
        }
        answer
    }

    pub(super) fn reserve(&self, key: &str, limit: u32, window: Duration, now: Instant) -> Verdict {
        self.with_entry(key, now, |entry| match entry {
            Some(e) if e.failed >= limit => (
                Verdict::Blocked {
                    retry_after: e.until.saturating_duration_since(now),
                },
                None,
            ),
            Some(e) if e.failed.saturating_add(e.pending) >= limit => (Verdict::Busy, None),
            Some(e) => {
                e.pending += 1;
                (Verdict::Allowed, None)
            }
            None => (
                Verdict::Allowed,
                Some(LocalEntry {
                    failed: 0,
                    pending: 1,
                    until: now + window,
                }),
            ),
        })
    }

    pub(super) fn hit(&self, key: &str, limit: u32, window: Duration, now: Instant) -> Verdict {
        self.with_entry(key, now, |entry| match entry {
            Some(e) if e.failed >= limit => (
                Verdict::Blocked {
                    retry_after: e.until.saturating_duration_since(now),
                },
                None,
            ),
            Some(e) => {
                e.failed += 1;
                (Verdict::Allowed, None)
            }
            None => (
                Verdict::Allowed,
                Some(LocalEntry {
                    failed: 1,
                    pending: 0,
                    until: now + window,
                }),
            ),
        })
    }

    pub(super) fn settle(&self, key: &str, failed: bool, window: Duration, now: Instant) {
        let forget = self.with_entry(key, now, |entry| match entry {
            Some(e) => {
                e.pending = e.pending.saturating_sub(1);
                if failed {
                    e.failed += 1;
                }
                (e.failed == 0 && e.pending == 0, None)
            }
            None if failed => (
                false,
                Some(LocalEntry {
                    failed: 1,
                    pending: 0,
                    until: now + window,
                }),
            ),
            None => (false, None),
        });
        if forget {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn the_local_stand_in_counts_like_the_redis_script() {
        let local = LocalCounters::default();
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(local.reserve("k", 3, WINDOW, t0), Verdict::Allowed);
            local.settle("k", true, WINDOW, t0);
        }
        assert_eq!(local.reserve("k", 3, WINDOW, t0), Verdict::Allowed);
        local.settle("k", false, WINDOW, t0);
        assert_eq!(local.reserve("k", 3, WINDOW, t0), Verdict::Allowed);
        assert_eq!(local.reserve("k", 3, WINDOW, t0), Verdict::Busy);
        local.settle("k", true, WINDOW, t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            local.reserve("k", 3, WINDOW, later),
            Verdict::Blocked {
                retry_after: Duration::from_secs(50)
            }
        );
        // The window is fixed: when it is over, the counter starts again.
        assert_eq!(local.reserve("k", 3, WINDOW, t0 + WINDOW), Verdict::Allowed);
    }

    #[test]
    fn a_success_with_no_failures_leaves_nothing_behind() {
        let local = LocalCounters::default();
        let t0 = Instant::now();
        assert_eq!(local.reserve("k", 3, WINDOW, t0), Verdict::Allowed);
        local.settle("k", false, WINDOW, t0);
        let entries = local.entries.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(entries.is_empty());
    }

    #[test]
    fn the_local_stand_in_stays_bounded() {
        let local = LocalCounters::default();
        let t0 = Instant::now();
        for n in 0..MAX_LOCAL_ENTRIES + 10 {
            let _ = local.hit(
                &format!("k{n}"),
                5,
                WINDOW,
                t0 + Duration::from_nanos(n as u64),
            );
        }
        let entries = local.entries.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(entries.len(), MAX_LOCAL_ENTRIES);
        // The entries closest to the end of their window went first.
        assert!(!entries.contains_key("k0"));
        assert!(entries.contains_key(&format!("k{}", MAX_LOCAL_ENTRIES + 9)));
    }
}
