//! Login throttling shared by every instance: failed password guesses counted per account name
//! and per client address, in Redis, so that N instances behind a load balancer enforce one
//! limit, not N.
//!
//! # What is counted
//! - **Per account name** (`--login-max-failures` (default 10) per `--login-window` (default 15m)): wrong
//!   passwords at every `/{backend}/login`, and wrong old passwords at `POST /users/me/password`,
//!   all in one counter per name. At the limit, every login for that name answers
//!   `429 too_many_attempts` with `Retry-After` until the window has passed, whether the name
//!   exists or not and whether the password is right or not.
//! - **Per client address** (`--login-ip-max-failures` (default 100)): wrong passwords at login, for any
//!   name, from one address (IPv6: one `/64`, what a single host is usually given).
//! - **Registrations per client address** (`--register-ip-max` (default 20)): every `POST /users`
//!   attempt, since a `409 username_taken` answer tells whether a name exists.
//!
//! # Not an oracle
//! The check happens *before* the password is verified, and an unknown name is counted exactly
//! like a known one, so a throttled answer, its body and its timing say nothing about whether
//! the name exists.
//!
//! # Exact under concurrency
//! A guess reserves its place in the counter before its password is checked and settles it after
//! (see `authlab_redis::AttemptCounters`): a burst of concurrent guesses cannot all slip past a
//! count that has not been updated yet. A guess whose request is dropped before it is settled
//! counts as wrong.
//!
//! # Fixed window
//! A successful login does not reset the name's counter. If it did, an attacker who knows one
//! working password for one account, or who can get the victim to log in, would interleave a
//! success every nine guesses and never be throttled. The window starts with the first failure
//! and ends `--login-window` later, whatever happens in between.
//!
//! # Keys
//! `<prefix>throttle:name:{<sha256 hex of the normalised name>}`,
//! `<prefix>throttle:ip:{<address>}`, `<prefix>throttle:register:{<address>}`, each a hash
//! (`failed`, `pending`) that expires with its window; each has its own `{...}` hash tag and
//! every script call touches one key (Redis Cluster). The name is normalised (NFKC, lower case)
//! and hashed, never stored. The address is stored as it is: hashing an IPv4 address hides
//! nothing (all 2^32 are hashed in minutes), and the key is gone when its window is.
//!
//! # Client address
//! As [`crate::client_address`] finds it (the peer, or `X-Forwarded-For` behind a
//! `--trusted-proxy`).
//!
//! # When Redis is down
//! An in-process counter with the same limits and windows takes over (the private `local` module). It is per
//! process: N instances then allow N times the limit, and the count restarts with the process. The
//! login itself keeps working wherever it did without Redis (`/session`).
//!
//! # What a refusal leaves behind
//! Every `429` is recorded twice, by the throttle itself and in the open: an audit event
//! ([`crate::audit::throttled`]) and the `throttled` outcome in the metrics
//! ([`crate::metrics::Metrics::refused`]).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, web};
use authlab_redis::{AttemptCounters, RedisConnection, Verdict};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

use crate::audit;
use crate::backend_kind::RouteGroup;
use crate::client_address::{Cidr, client_ip, ipv6_network};
use crate::error::ApiError;
use crate::metrics::{Metrics, Outcome};

mod local;

use local::LocalCounters;

/// What a client address is counted as: an IPv4 address itself, an IPv6 address its `/64`.
fn ip_subject(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = ipv6_network(v6, 64);
            format!("{net}/64")
        }
    }
}

/// The SHA-256 (hex) of an account name, case-folded and Unicode-normalised (NFKC, lower case,
/// NFKC again, as lower-casing can denormalise), so `Alice`, `ALICE` and `Ａｌｉｃｅ` share one
/// counter. This is what Redis keys and audit events carry instead of the name.
pub fn account_hash(name: &str) -> String {
    let folded: String = name.nfkc().collect::<String>().to_lowercase();
    let normalised: String = folded.nfkc().collect();
    hex(&Sha256::digest(normalised.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The limits (`--login-max-failures`, `--login-ip-max-failures`, `--register-ip-max`,
/// `--login-window`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures per account name per window.
    pub name_max_failures: u32,
    /// Failures per client address per window.
    pub ip_max_failures: u32,
    /// Registration attempts per client address per window.
    pub register_ip_max: u32,
    /// The fixed window.
    pub window: Duration,
}

/// The throttle every instance shares through Redis, with its in-process stand-in.
#[derive(Clone)]
pub struct Throttle {
    inner: Arc<Inner>,
}

struct Inner {
    redis: AttemptCounters,
    local: LocalCounters,
    limits: Limits,
    proxies: Arc<[Cidr]>,
}

/// One of the three counters an attempt is counted in (and which one refused it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// The account name's failures.
    Name,
    /// The client address's failures.
    Ip,
    /// The client address's registrations.
    Register,
}

impl Counter {
    /// As written in the key and the audit event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Ip => "ip",
            Self::Register => "register",
        }
    }
}

/// One counter a guess holds a place in.
struct Held {
    key: String,
    /// Reserved in the in-process counter, because Redis did not answer.
    local: bool,
}

/// A password guess that holds its place in its counters until it is settled: [`Guess::wrong`],
/// [`Guess::right`] or [`Guess::undecided`]. Dropped unsettled, it counts as wrong.
#[must_use = "settle the guess once the password has been checked"]
pub struct Guess {
    throttle: Throttle,
    held: Vec<Held>,
    account: String,
}

impl Guess {
    /// The hash of the account name guessed at (see [`account_hash`]).
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The password was wrong: it counts.
    pub async fn wrong(mut self) {
        let held = std::mem::take(&mut self.held);
        self.throttle.settle(&held, true).await;
    }

    /// The password was right: the guess gives its place back and the earlier failures stay.
    pub async fn right(mut self) {
        let held = std::mem::take(&mut self.held);
        self.throttle.settle(&held, false).await;
    }

    /// Nothing was decided (the user store did not answer): the guess gives its place back.
    pub async fn undecided(self) {
        self.right().await;
    }
}

impl Drop for Guess {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        // The request went away before its password was judged (the client disconnected):
        // counted as wrong, so hanging up cannot be used to guess for free.
        let held = std::mem::take(&mut self.held);
        let throttle = self.throttle.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { throttle.settle(&held, true).await });
        }
    }
}

impl Throttle {
    /// The throttle, counting in Redis under `prefix` (and in process memory when Redis fails).
    pub fn new(
        redis: Arc<RedisConnection>,
        prefix: &str,
        limits: Limits,
        proxies: Arc<[Cidr]>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                redis: AttemptCounters::new(redis, prefix),
                local: LocalCounters::default(),
                limits,
                proxies,
            }),
        }
    }

    /// The client address of `req` (see [`client_ip`]).
    pub fn client_ip(&self, req: &HttpRequest) -> IpAddr {
        client_ip(req, &self.inner.proxies)
    }

    /// Reserves a login guess for `name` from this client, or refuses it with
    /// `429 too_many_attempts` if the name or the address has reached its limit.
    pub async fn login(
        &self,
        req: &HttpRequest,
        group: RouteGroup,
        name: &str,
    ) -> Result<Guess, ApiError> {
        let limits = self.inner.limits;
        let account = account_hash(name);
        let name_key = self.inner.redis.key(Counter::Name.as_str(), &account);
        let ip_key = self
            .inner
            .redis
            .key(Counter::Ip.as_str(), &ip_subject(self.client_ip(req)));
        // Two keys in two slots: two script calls, sent together.
        let (by_name, by_ip) = tokio::join!(
            self.reserve(&name_key, limits.name_max_failures),
            self.reserve(&ip_key, limits.ip_max_failures),
        );
        let mut held = Vec::with_capacity(2);
        let mut refusal: Option<(Counter, Duration)> = None;
        for (counter, key, (verdict, local)) in [
            (Counter::Name, name_key, by_name),
            (Counter::Ip, ip_key, by_ip),
        ] {
            match refused_for(verdict) {
                None => held.push(Held { key, local }),
                Some(wait) => {
                    if refusal.is_none_or(|(_, longest)| wait > longest) {
                        refusal = Some((counter, wait));
                    }
                }
            }
        }
        let guess = Guess {
            throttle: self.clone(),
            held,
            account,
        };
        match refusal {
            None => Ok(guess),
            Some((counter, retry_after)) => {
                refused(req, group, counter, Some(guess.account()));
                // A refused attempt is no guess: give back what was reserved.
                guess.undecided().await;
                Err(ApiError::TooManyAttempts { retry_after })
            }
        }
    }

    /// Reserves a check of `name`'s old password (`POST /users/me/password`), in the same
    /// per-name counter as logins: both are guesses at that account's password.
    pub async fn password_check(&self, req: &HttpRequest, name: &str) -> Result<Guess, ApiError> {
        let account = account_hash(name);
        let key = self.inner.redis.key(Counter::Name.as_str(), &account);
        let (verdict, local) = self
            .reserve(&key, self.inner.limits.name_max_failures)
            .await;
        match refused_for(verdict) {
            None => Ok(Guess {
                throttle: self.clone(),
                held: vec![Held { key, local }],
                account,
            }),
            Some(retry_after) => {
                refused(req, RouteGroup::Users, Counter::Name, Some(&account));
                Err(ApiError::TooManyAttempts { retry_after })
            }
        }
    }

    /// Counts a registration attempt from this client, or refuses it at the limit.
    pub async fn registration(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let limits = self.inner.limits;
        let key = self
            .inner
            .redis
            .key(Counter::Register.as_str(), &ip_subject(self.client_ip(req)));
        let verdict = match self
            .inner
            .redis
            .hit(&key, limits.register_ip_max, limits.window)
            .await
        {
            Ok(verdict) => verdict,
            Err(err) => {
                tracing::debug!(error = %err, "Redis did not count a registration; counting in process");
                self.inner
                    .local
                    .hit(&key, limits.register_ip_max, limits.window, Instant::now())
            }
        };
        match refused_for(verdict) {
            None => Ok(()),
            Some(retry_after) => {
                refused(req, RouteGroup::Users, Counter::Register, None);
                Err(ApiError::TooManyAttempts { retry_after })
            }
        }
    }

    /// Reserves in Redis, or in process memory if Redis does not answer. Says which it was.
    async fn reserve(&self, key: &str, limit: u32) -> (Verdict, bool) {
        let window = self.inner.limits.window;
        match self.inner.redis.reserve(key, limit, window).await {
            Ok(verdict) => (verdict, false),
            Err(err) => {
                tracing::debug!(error = %err, "Redis did not count a login attempt; counting in process");
                let verdict = self.inner.local.reserve(key, limit, window, Instant::now());
                (verdict, true)
            }
        }
    }

    async fn settle(&self, held: &[Held], failed: bool) {
        let window = self.inner.limits.window;
        for Held { key, local } in held {
            if *local {
                self.inner.local.settle(key, failed, window, Instant::now());
            } else if let Err(err) = self.inner.redis.settle(key, failed, window).await {
                // The place stays taken until the window ends: errs towards fewer guesses.
                tracing::warn!(error = %err, "could not settle a login attempt in Redis");
            }
        }
    }
}

/// Records a `429`: the audit event and the metrics' `throttled` outcome.
fn refused(req: &HttpRequest, group: RouteGroup, counter: Counter, account: Option<&str>) {
    audit::throttled(req, group, counter.as_str(), account);
    if let Some(metrics) = req.app_data::<web::Data<Metrics>>() {
        metrics.refused(group, Outcome::Throttled);
    }
}

/// `None` to go ahead, or how long the client should wait.
fn refused_for(verdict: Verdict) -> Option<Duration> {
    match verdict {
        Verdict::Allowed => None,
        // Whole seconds, rounded up, and never 0: `Retry-After: 0` invites an immediate retry.
        Verdict::Blocked { retry_after } => Some(round_up_to_seconds(retry_after)),
        // The limit is taken by guesses being checked right now: they settle in well under a
        // second, after which there may be room again.
        Verdict::Busy => Some(Duration::from_secs(1)),
    }
}

fn round_up_to_seconds(wait: Duration) -> Duration {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Duration::from_secs(seconds.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        match text.parse() {
            Ok(ip) => ip,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(ip_subject(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(ip_subject(ip("2001:db8:1:2:ffff::1")), "2001:db8:1:2::/64");
        assert_eq!(ip_subject(ip("192.0.2.1")), "192.0.2.1");
        assert_eq!(ip_subject(ip("::ffff:192.0.2.1")), "192.0.2.1");
    }

    #[test]
    fn account_names_are_folded_and_normalised_before_hashing() {
        let alice = account_hash("alice");
        assert_eq!(alice.len(), 64);
        assert!(alice.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(account_hash("ALICE"), alice);
        // Fullwidth letters are NFKC-equivalent to ASCII ones.
        assert_eq!(account_hash("Ａｌｉｃｅ"), alice);
        assert_ne!(account_hash("alice2"), alice);
        // SHA-256("alice"): the name itself is never what is stored.
        assert_eq!(
            alice,
            "2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_never_zero() {
        assert_eq!(
            round_up_to_seconds(Duration::from_millis(1)),
            Duration::from_secs(1)
        );
        assert_eq!(round_up_to_seconds(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            round_up_to_seconds(Duration::from_millis(2001)),
            Duration::from_secs(3)
        );
        assert_eq!(
            round_up_to_seconds(Duration::from_secs(900)),
            Duration::from_secs(900)
        );
    }
}
