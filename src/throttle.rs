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
//! The peer address of the connection. `X-Forwarded-For` counts only when the peer is in a
//! `--trusted-proxy` range; then the right-most address in it that is not itself a trusted proxy
//! is the client (every address left of that one was written by the client and proves nothing).
//!
//! # When Redis is down
//! An in-process counter with the same limits and windows takes over. It is per process: N
//! instances then allow N times the limit, and the count restarts with the process. The login
//! itself keeps working wherever it did without Redis (`/session`).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use authlab_redis::{AttemptCounters, RedisConnection, Verdict};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

use crate::audit;
use crate::config::Settings;
use crate::error::ApiError;

/// Most subjects the in-process fallback keeps at once; beyond it, the entry closest to the end
/// of its window is forgotten first.
const MAX_LOCAL_ENTRIES: usize = 100_000;

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`), or one address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the range (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    bits & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    bits & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        let masked = match network {
            IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(mask_v4(u32::from(ip), prefix))),
            IpAddr::V6(ip) => IpAddr::V6(mask_v6(u128::from(ip), prefix).into()),
        };
        if masked != network {
            return Err(format!(
                "`{text}` has bits set after the prefix; did you mean {masked}/{prefix}?"
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most address
/// of `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(req: &HttpRequest, trusted: &[Cidr]) -> IpAddr {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip().to_canonical());
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    if !is_trusted(peer) {
        // A header from an untrusted peer was written by the client: ignore it entirely.
        return peer;
    }
    let lines: Vec<Option<&str>> = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|value| value.to_str().ok())
        .collect();
    let mut client = peer;
    // Walk from the nearest hop outwards, through the proxies we trust, to the first one we do
    // not: that is who connected to our outermost proxy. Anything unreadable stops the walk.
    for line in lines.iter().rev() {
        let Some(line) = line else { return client };
        for hop in line.rsplit(',') {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !is_trusted(ip) {
                return client;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// What a client address is counted as: an IPv4 address itself, an IPv6 address its `/64`.
fn ip_subject(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = std::net::Ipv6Addr::from(mask_v6(u128::from(v6), 64));
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

/// The limits, from the settings.
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

impl Limits {
    /// The limits the settings name.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            name_max_failures: settings.login_max_failures,
            ip_max_failures: settings.login_ip_max_failures,
            register_ip_max: settings.register_ip_max,
            window: settings.login_window,
        }
    }
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

/// Which counter refused an attempt, for the audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The account name's failures.
    Name,
    /// The client address's failures.
    Ip,
    /// The client address's registrations.
    Register,
}

impl Scope {
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
        backend: &'static str,
        name: &str,
    ) -> Result<Guess, ApiError> {
        let limits = self.inner.limits;
        let account = account_hash(name);
        let name_key = self.inner.redis.key(Scope::Name.as_str(), &account);
        let ip_key = self
            .inner
            .redis
            .key(Scope::Ip.as_str(), &ip_subject(self.client_ip(req)));
        // Two keys in two slots: two script calls, sent together.
        let (by_name, by_ip) = tokio::join!(
            self.reserve(&name_key, limits.name_max_failures),
            self.reserve(&ip_key, limits.ip_max_failures),
        );
        let mut held = Vec::with_capacity(2);
        let mut refusal: Option<(Scope, Duration)> = None;
        for (scope, key, (verdict, local)) in
            [(Scope::Name, name_key, by_name), (Scope::Ip, ip_key, by_ip)]
        {
            match refused_for(verdict) {
                None => held.push(Held { key, local }),
                Some(wait) => {
                    if refusal.is_none_or(|(_, longest)| wait > longest) {
                        refusal = Some((scope, wait));
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
            Some((scope, retry_after)) => {
                audit::throttled(req, backend, scope, Some(guess.account()));
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
        let key = self.inner.redis.key(Scope::Name.as_str(), &account);
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
                audit::throttled(req, "users", Scope::Name, Some(&account));
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
            .key(Scope::Register.as_str(), &ip_subject(self.client_ip(req)));
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
                audit::throttled(req, "users", Scope::Register, None);
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

/// The in-process stand-in for the Redis counters: the same operations, the same windows, in
/// this process only.
#[derive(Default)]
struct LocalCounters {
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

    fn reserve(&self, key: &str, limit: u32, window: Duration, now: Instant) -> Verdict {
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

    fn hit(&self, key: &str, limit: u32, window: Duration, now: Instant) -> Verdict {
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

    fn settle(&self, key: &str, failed: bool, window: Duration, now: Instant) {
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
    use actix_web::test::TestRequest;

    fn cidr(text: &str) -> Cidr {
        match text.parse() {
            Ok(c) => c,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn cidr_ranges_parse_and_match() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!cidr("10.0.0.0/8").contains(IpAddr::V4(Ipv4Addr::new(11, 0, 0, 1))));
        assert!(cidr("127.0.0.1").contains(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(!cidr("127.0.0.1").contains(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
        assert!(cidr("0.0.0.0/0").contains(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8))));
        assert!(cidr("fd00::/8").contains(ip("fd12::1")));
        // An IPv4-mapped IPv6 peer is its IPv4 address.
        assert!(cidr("192.0.2.0/24").contains(ip("::ffff:192.0.2.9")));
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "example.com", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    fn from_peer(peer: &str, forwarded: &[&str]) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(match peer.parse() {
            Ok(addr) => addr,
            Err(e) => panic!("{peer}: {e}"),
        });
        for value in forwarded {
            req = req.append_header(("X-Forwarded-For", *value));
        }
        req.to_http_request()
    }

    fn ip(text: &str) -> IpAddr {
        match text.parse() {
            Ok(ip) => ip,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_peer() {
        let trusted = [cidr("10.0.0.0/8")];
        let untrusted = from_peer("203.0.113.5:4000", &["198.51.100.1"]);
        assert_eq!(client_ip(&untrusted, &trusted), ip("203.0.113.5"));
        let proxied = from_peer("10.0.0.2:4000", &["198.51.100.1"]);
        assert_eq!(client_ip(&proxied, &trusted), ip("198.51.100.1"));
        assert_eq!(client_ip(&proxied, &[]), ip("10.0.0.2"));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = [cidr("10.0.0.0/8")];
        // The client wrote the first entry itself; our proxies appended the rest.
        let req = from_peer("10.0.0.2:1", &["1.1.1.1, 198.51.100.7, 10.0.0.9"]);
        assert_eq!(client_ip(&req, &trusted), ip("198.51.100.7"));
        // The same across several header lines.
        let req = from_peer("10.0.0.2:1", &["1.1.1.1", "198.51.100.7", "10.0.0.9"]);
        assert_eq!(client_ip(&req, &trusted), ip("198.51.100.7"));
        // Garbage stops the walk at the last address we could read.
        let req = from_peer("10.0.0.2:1", &["1.1.1.1, nonsense, 10.0.0.9"]);
        assert_eq!(client_ip(&req, &trusted), ip("10.0.0.9"));
        // Ports and brackets are tolerated.
        let req = from_peer("10.0.0.2:1", &["[2001:db8::1]:443"]);
        assert_eq!(client_ip(&req, &trusted), ip("2001:db8::1"));
        // Nothing but trusted hops: the outermost of them.
        let req = from_peer("10.0.0.2:1", &["10.0.0.7, 10.0.0.9"]);
        assert_eq!(client_ip(&req, &trusted), ip("10.0.0.7"));
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
