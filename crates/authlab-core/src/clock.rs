//! Time as a dependency, so expiry is tested without sleeping.
//!
//! The backends that decide expiry in their own process (a session's idle and absolute
//! deadlines, a JWT's `iat`, `exp` and `nbf`) read the time from a [`Clock`] they were given,
//! never from the system directly. The server builds them with one clock: [`SystemClock`] in
//! production, an [`OffsetClock`] in the integration tests, which move it forward instead of
//! sleeping until something expires. (What Redis expires, Redis times by its own clock.)
//!
//! Three implementations, by what moves the time:
//! - [`SystemClock`]: the operating system. Free to copy, a plain function call behind the trait.
//! - [`ManualClock`]: only the test. It stands still until [`ManualClock::advance`], so a unit
//!   test can check a deadline to the second.
//! - [`OffsetClock`]: the operating system *and* the test: real time plus an offset that only
//!   grows. A whole running server needs this one, because some of its waits are real time and
//!   are not the test's to skip: Redis expires keys by its own clock, and the JWT denylist waits
//!   for the clock to leave the second its epoch was created in. A stopped clock would wait there
//!   forever; one that runs and can be pushed ahead keeps every real wait and skips the long ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The current time in whole seconds since the Unix epoch, as a dependency.
///
/// JWT claims (`iat`, `exp`) are Unix seconds, so that is the unit. Injecting the clock lets a test
/// move time forward and check expiry to the second without sleeping. Backends hold it as an
/// `Arc<dyn Clock>` and read it once per check: one indirect call.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since 1970-01-01T00:00:00Z.
    fn now_unix(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to, for tests. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock stopped at `now_unix`.
    pub fn new(now_unix: u64) -> Self {
        Self(Arc::new(AtomicU64::new(now_unix)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The system clock plus an offset that a test grows with [`OffsetClock::advance`], for a
/// running server under test (why not a [`ManualClock`]: see the module docs). Clones share the
/// offset, so the test keeps one clone and hands the other to the server.
///
/// It never runs behind the system clock, so nothing the server compares with real time (a
/// Redis TTL, the denylist's epoch) sees it go backwards.
#[derive(Debug, Clone, Default)]
pub struct OffsetClock {
    /// Whole seconds added to the system clock.
    offset_s: Arc<AtomicU64>,
}

impl OffsetClock {
    /// A clock that reads the same as [`SystemClock`] until it is advanced.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` (whole seconds; a fraction is dropped), for every clone.
    pub fn advance(&self, by: Duration) {
        self.offset_s.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now_unix(&self) -> u64 {
        SystemClock
            .now_unix()
            .saturating_add(self.offset_s.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_one_time() {
        let clock = ManualClock::new(1_000);
        let other = clock.clone();
        clock.advance(Duration::from_secs(15));
        assert_eq!(other.now_unix(), 1_015);
    }

    #[test]
    fn an_offset_clock_runs_with_the_system_clock_and_its_clones_share_the_offset() {
        let clock = OffsetClock::new();
        let other = clock.clone();
        let before = SystemClock.now_unix();
        let unmoved = other.now_unix();
        let after = SystemClock.now_unix();
        assert!(
            (before..=after).contains(&unmoved),
            "{before} {unmoved} {after}"
        );

        clock.advance(Duration::from_secs(3_600));
        let before = SystemClock.now_unix();
        let moved = other.now_unix();
        let after = SystemClock.now_unix();
        assert!(
            (before + 3_600..=after + 3_600).contains(&moved),
            "{before} {moved} {after}"
        );
    }
}
