//! `--scenario rotate-keys`: JWT signing keys rotated and pruned under load, with the instances
//! that sign apart from the ones that only verify.
//!
//! # What runs
//! - one `redis-server` (refresh-token families and the denylist);
//! - a key directory made with `authlab keys generate` + `rotate` (EdDSA);
//! - **two issuers** (`serve --jwt-alg EdDSA --jwt-keys-dir DIR --jwt-keys-reload 1s`) sharing
//!   that directory, behind one HAProxy: they sign, and serve `/.well-known/jwks.json`;
//! - **two verifiers** (`serve --role verifier --jwks-url <issuers' HAProxy>/.well-known/jwks.json`)
//!   behind another HAProxy: no private key, only the JWKS they fetch;
//! - **open-loop load**: each user logs in on an issuer, then alternates `GET /jwt/me` on a
//!   verifier and `POST /jwt/refresh` on an issuer, at a fixed request rate;
//! - **the operator**: `authlab keys rotate` then `authlab keys prune` every `--rotate-every`
//!   (default 2 s), as the separate commands an operator or a cron job runs.
//!
//! The access-token lifetime is twice the rotation period and the retired keys' clock skew 2 s
//! (every process shares one clock here), so keys are pruned within the run. The verifiers
//! refresh their JWKS every quarter period (the issuers' HAProxy drops the JWKS's
//! `Cache-Control: max-age=300`, which a verifier would honour for at least 30 s), so a `next`
//! key is fetched before it signs.
//!
//! # What it reports (`rotate-keys.json`, `rotate-keys.md`, a summary on screen)
//! - **steady phase** (until `--fault-at`): every answer that is not 2xx for a token still within
//!   its `exp` is a failure; the target is **0** (publish before signing makes a planned rotation
//!   invisible to clients);
//! - **tokens signed by a pruned key**: one kept per key, asked again at the end: each must answer
//!   `401`;
//! - **JWKS fetches per verifier**, counted by the issuers' HAProxy (each verifier fetches through
//!   a frontend of its own), in each phase;
//! - **second phase** (from `--fault-at`): `rotate` twice at once, so the key that signs was
//!   never published before it signed: what the verifiers' unknown-`kid` path absorbed (failed
//!   requests, the window they fell in, the refetches it made). No rotation follows, so what
//!   happens then is that key's doing alone.
//!
//! The drill exits 1 if the steady phase had a failure or a pruned key's token was accepted.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::{self, HeaderValue};
use serde::Serialize;

use crate::DrillError;
use crate::args::DrillArgs;
use crate::balancer::{self, Balancer, Server};
use crate::interrupt::Interrupt;
use crate::load::User;
use crate::procs::{self, Process};
use crate::run::io_err;
use crate::topology::{Ports, Redis, Topology, wait_until};

/// How far the retired keys' keep time reaches past their last token (`keys rotate
/// --clock-skew`): every process reads one clock here, and the issuers reload the directory
/// every second, so a key may sign for up to a second after it was retired.
const CLOCK_SKEW: Duration = Duration::from_secs(2);
/// How often the issuers read the key directory again.
const KEYS_RELOAD: &str = "1s";
/// A token is "within its exp" if it has at least this much left when the request is sent
/// (`exp` counts whole seconds).
const EXP_MARGIN_S: u64 = 1;

fn step(message: &str) {
    eprintln!("drill: {message}");
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ms_since(start: Instant) -> u32 {
    u32::try_from(start.elapsed().as_millis()).unwrap_or(u32::MAX)
}

/// What a request of the rotation load did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `POST /jwt/login` on an issuer.
    Login,
    /// `GET /jwt/me` on a verifier.
    Me,
    /// `POST /jwt/refresh` on an issuer.
    Refresh,
}

/// One request as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Its scheduled send time, ms after the load started.
    pub at_ms: u32,
    /// What it did.
    pub action: Action,
    /// The HTTP status; 0 for no answer.
    pub status: u16,
    /// For `me`: the token had at least a second left before its `exp` when sent (so anything
    /// but `200` is a failure). Logins and refreshes are always "within".
    pub within_exp: bool,
    /// From the scheduled time to the whole answer, microseconds.
    pub latency_us: u64,
}

impl Sample {
    /// Whether it is a failure a client would see: no answer, or not 2xx for a live token.
    pub fn failed(&self) -> bool {
        self.within_exp && !(200..300).contains(&self.status)
    }
}

/// An access token and what the drill reads from it (without checking it: that is the
/// verifiers' job).
#[derive(Debug, Clone)]
struct Token {
    bearer: HeaderValue,
    exp: u64,
    kid: String,
}

impl Token {
    fn parse(token: &str) -> Option<Token> {
        let mut parts = token.split('.');
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
        Some(Token {
            bearer: HeaderValue::from_str(&format!("Bearer {token}")).ok()?,
            exp: claims["exp"].as_u64()?,
            kid: header["kid"].as_str()?.to_owned(),
        })
    }
}

/// One user's place in the cycle login -> me -> refresh -> me -> refresh ...
#[derive(Default)]
struct UserState {
    access: Option<Token>,
    refresh: Option<String>,
    /// The next request is a refresh (after a `me`), else a `me` (after a login or refresh).
    refresh_next: bool,
    /// A request of this user is in flight.
    busy: bool,
}

/// The rotation load's shared state.
struct Load {
    client: reqwest::Client,
    issuers: String,
    verifiers: String,
    users: Vec<User>,
    states: Vec<Mutex<UserState>>,
    samples: Mutex<Vec<Sample>>,
    /// One access token per `kid`, the first seen: asked again once its key is pruned.
    by_kid: Mutex<HashMap<String, HeaderValue>>,
    next_user: Mutex<usize>,
    /// Requests not sent because every user was busy (should be 0).
    skipped: std::sync::atomic::AtomicU64,
}

impl Load {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn keep(&self, token: &Token) {
        Self::lock(&self.by_kid)
            .entry(token.kid.clone())
            .or_insert_with(|| token.bearer.clone());
    }

    /// Registers every user on the issuers (not recorded).
    async fn register_all(&self) -> Result<(), String> {
        for user in &self.users {
            let body = serde_json::json!({"username": user.username, "password": user.password});
            let response = self
                .client
                .post(format!("{}/users", self.issuers))
                .json(&body)
                .send()
                .await
                .map_err(|e| format!("POST /users: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("POST /users answered {}", response.status()));
            }
        }
        Ok(())
    }

    /// Reads an issuer's token answer: the access token, the refresh token.
    async fn tokens(response: reqwest::Response) -> Option<(Token, String)> {
        let body: serde_json::Value = response.json().await.ok()?;
        let access = Token::parse(body["access_token"].as_str()?)?;
        Some((access, body["refresh_token"].as_str()?.to_owned()))
    }

    /// One scheduled request: the next user not busy does the next step of its cycle.
    async fn one(&self, scheduled: tokio::time::Instant, started: tokio::time::Instant) {
        let n = self.users.len();
        let picked = {
            let mut next = Self::lock(&self.next_user);
            let mut picked = None;
            for k in 0..n {
                let user = (*next + k) % n;
                let mut state = Self::lock(&self.states[user]);
                if !state.busy {
                    state.busy = true;
                    let action = match (&state.access, state.refresh_next) {
                        (None, _) => Action::Login,
                        (Some(_), false) => Action::Me,
                        (Some(_), true) => Action::Refresh,
                    };
                    picked = Some((user, action, state.access.clone(), state.refresh.clone()));
                    *next = (user + 1) % n;
                    break;
                }
            }
            picked
        };
        let Some((user, action, access, refresh)) = picked else {
            self.skipped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        };
        let mut within_exp = true;
        let (status, issued) = match (action, access, refresh) {
            (Action::Me, Some(access), _) => {
                within_exp = now_unix() + EXP_MARGIN_S < access.exp;
                let sent = self
                    .client
                    .get(format!("{}/jwt/me", self.verifiers))
                    .header(header::AUTHORIZATION, access.bearer)
                    .send()
                    .await;
                match sent {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let whole = response.bytes().await.is_ok();
                        (if whole { status } else { 0 }, None)
                    }
                    Err(_) => (0, None),
                }
            }
            (Action::Refresh, _, Some(refresh)) => {
                let sent = self
                    .client
                    .post(format!("{}/jwt/refresh", self.issuers))
                    .json(&serde_json::json!({"refresh_token": refresh}))
                    .send()
                    .await;
                match sent {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        (status, Self::tokens(response).await)
                    }
                    Err(_) => (0, None),
                }
            }
            _ => {
                let who = &self.users[user];
                let sent = self
                    .client
                    .post(format!("{}/jwt/login", self.issuers))
                    .json(&serde_json::json!({"username": who.username, "password": who.password}))
                    .send()
                    .await;
                match sent {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        (status, Self::tokens(response).await)
                    }
                    Err(_) => (0, None),
                }
            }
        };
        let done = tokio::time::Instant::now();
        {
            let mut state = Self::lock(&self.states[user]);
            match (&issued, action) {
                (Some((access, refresh)), _) => {
                    self.keep(access);
                    state.access = Some(access.clone());
                    state.refresh = Some(refresh.clone());
                    state.refresh_next = false;
                }
                // A failed login or refresh: log in again.
                (None, Action::Login | Action::Refresh) => *state = UserState::default(),
                // Answered: refresh next (an expired token too: that is what refresh is for).
                (None, Action::Me) if status == 200 || status == 401 => state.refresh_next = true,
                // No answer, or an error: log in again.
                (None, Action::Me) => *state = UserState::default(),
            }
            state.busy = false;
        }
        Self::lock(&self.samples).push(Sample {
            at_ms: u32::try_from(scheduled.duration_since(started).as_millis()).unwrap_or(u32::MAX),
            action,
            status,
            within_exp,
            latency_us: u64::try_from(done.duration_since(scheduled).as_micros())
                .unwrap_or(u64::MAX),
        });
    }

    /// `rate` requests per second for `duration`, then the answers still in flight.
    async fn run(
        self: &Arc<Self>,
        rate: u32,
        duration: Duration,
        interrupt: &Interrupt,
        started: tokio::time::Instant,
    ) -> Vec<Sample> {
        let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let total = (duration.as_secs_f64() * f64::from(rate)) as u64;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            if interrupt.is_raised() {
                break;
            }
            let scheduled = started + period.mul_f64(i as f64);
            tokio::time::sleep_until(scheduled).await;
            let load = self.clone();
            tasks.spawn(async move { load.one(scheduled, started).await });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        std::mem::take(&mut *Self::lock(&self.samples))
    }
}

/// One `authlab keys` command the operator ran.
#[derive(Debug, Clone, Serialize)]
pub struct KeyEvent {
    /// When, ms after the load started.
    pub at_ms: u32,
    /// `rotate`, `prune`, or `rotate (unpublished)` for the second phase's quick second rotate.
    pub what: String,
    /// After a rotate: the key that signs now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated: Option<String>,
    /// After a prune: the keys deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<String>,
}

/// The operator: `authlab keys ...` on the shared directory.
struct Operator {
    program: PathBuf,
    dir: PathBuf,
    access_ttl: Duration,
}

impl Operator {
    fn keys(&self, args: &[&str]) -> Result<String, DrillError> {
        let output = Command::new(&self.program)
            .arg("keys")
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .map_err(|source| DrillError::Spawn {
                what: format!("authlab keys {}", args.join(" ")),
                source,
            })?;
        if !output.status.success() {
            return Err(DrillError::Setup {
                step: "authlab keys",
                detail: format!(
                    "`keys {}` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn generate(&self) -> Result<(), DrillError> {
        self.keys(&["generate", "--alg", "EdDSA"]).map(|_| ())
    }

    /// `keys rotate`; returns the key that signs now.
    fn rotate(&self) -> Result<Option<String>, DrillError> {
        let ttl = format!("{}s", self.access_ttl.as_secs());
        let skew = format!("{}s", CLOCK_SKEW.as_secs());
        let table = self.keys(&["rotate", "--access-ttl", &ttl, "--clock-skew", &skew])?;
        Ok(table
            .lines()
            .find(|line| line.split_whitespace().nth(2) == Some("active"))
            .and_then(|line| line.split_whitespace().next())
            .map(str::to_owned))
    }

    /// `keys prune`; returns the keys deleted.
    fn prune(&self) -> Result<Vec<String>, DrillError> {
        Ok(self
            .keys(&["prune"])?
            .lines()
            .filter_map(|line| line.split_whitespace().nth(3).map(str::to_owned))
            .collect())
    }
}

/// Rotates and prunes every `every` until `fault_at`, then rotates twice at once (the
/// unpublished key) and stops. Runs on a thread beside the load.
fn operate(
    operator: &Operator,
    started: Instant,
    every: Duration,
    fault_at: Duration,
    interrupt: &Interrupt,
    at_fault: &mut dyn FnMut(),
) -> Result<Vec<KeyEvent>, DrillError> {
    let mut events = Vec::new();
    let mut next = every;
    let sleep_until = |at: Duration| {
        while started.elapsed() < at {
            if interrupt.is_raised() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(at.saturating_sub(started.elapsed())));
        }
        true
    };
    while next < fault_at {
        if !sleep_until(next) {
            return Ok(events);
        }
        let at_ms = ms_since(started);
        let activated = operator.rotate()?;
        events.push(KeyEvent {
            at_ms,
            what: "rotate".into(),
            activated,
            pruned: Vec::new(),
        });
        let at_ms = ms_since(started);
        events.push(KeyEvent {
            at_ms,
            what: "prune".into(),
            activated: None,
            pruned: operator.prune()?,
        });
        next += every;
    }
    if !sleep_until(fault_at) {
        return Ok(events);
    }
    at_fault();
    // The first rotate activates the published `next` and generates a new one; the second,
    // right after, activates that new key before any verifier could have fetched it.
    for what in ["rotate", "rotate (unpublished)"] {
        let at_ms = ms_since(started);
        let activated = operator.rotate()?;
        events.push(KeyEvent {
            at_ms,
            what: what.into(),
            activated,
            pruned: Vec::new(),
        });
    }
    Ok(events)
}

/// A phase of the run, summed up.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phase {
    /// Its start, ms after the load started.
    pub from_ms: u32,
    /// Its end.
    pub to_ms: u32,
    /// Requests sent in it.
    pub requests: u64,
    /// Of which `me` on a verifier.
    pub me: u64,
    /// Of which logins and refreshes on an issuer.
    pub issued: u64,
    /// No answer, or not 2xx for a token within its `exp`.
    pub failures: u64,
    /// `me` answered `401` for a token past its `exp` (the client refreshes: not a failure).
    pub expired: u64,
    /// Requests by status (`"200"`, `"401"`, `"none"` for no answer).
    pub statuses: BTreeMap<String, u64>,
    /// The first and the last failure, ms after the load started.
    pub failure_window_ms: Option<(u32, u32)>,
    /// The slowest answer, ms.
    pub slowest_ms: f64,
}

fn phase(samples: &[Sample], from_ms: u32, to_ms: u32) -> Phase {
    let mut out = Phase {
        from_ms,
        to_ms,
        ..Phase::default()
    };
    for s in samples
        .iter()
        .filter(|s| s.at_ms >= from_ms && s.at_ms < to_ms)
    {
        out.requests += 1;
        match s.action {
            Action::Me => out.me += 1,
            Action::Login | Action::Refresh => out.issued += 1,
        }
        let key = if s.status == 0 {
            "none".to_owned()
        } else {
            s.status.to_string()
        };
        *out.statuses.entry(key).or_default() += 1;
        if s.failed() {
            out.failures += 1;
            out.failure_window_ms = Some(match out.failure_window_ms {
                None => (s.at_ms, s.at_ms),
                Some((first, last)) => (first.min(s.at_ms), last.max(s.at_ms)),
            });
        } else if s.action == Action::Me && s.status == 401 {
            out.expired += 1;
        }
        out.slowest_ms = out.slowest_ms.max(s.latency_us as f64 / 1000.0);
    }
    out
}

/// The tokens of pruned keys, asked again at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrunedProbe {
    /// Keys pruned during the run that had signed a token the load kept.
    pub probed: u64,
    /// Of which answered `401` (all of them, or the drill fails).
    pub refused: u64,
    /// The answers by status and error code (`"401 invalid_token"`).
    pub answers: BTreeMap<String, u64>,
}

/// One verifier's JWKS fetches, counted by the issuers' HAProxy: each verifier fetches through a
/// frontend of its own (`jwks-v1`, `jwks-v2`), so its requests are counted apart from the load's.
#[derive(Debug, Clone, Serialize)]
pub struct VerifierFetches {
    /// `v1`, `v2`.
    pub verifier: String,
    /// Fetches until `--fault-at` (start-up included); `None` if HAProxy did not say.
    pub steady: Option<u64>,
    /// Fetches from `--fault-at` to the end of the load.
    pub unpublished: Option<u64>,
    /// Its `--jwks-refresh`, ms: a timed fetch every this long, whatever else happens.
    pub refresh_ms: u32,
}

/// The request count of each verifier's JWKS frontend now.
fn fetch_counts(balancer: &Balancer, verifiers: usize) -> Vec<Option<u64>> {
    (0..verifiers)
        .map(|i| balancer.frontend_requests(&format!("jwks-v{}", i + 1)))
        .collect()
}

/// What a rotate-keys drill found.
#[derive(Debug, Clone, Serialize)]
pub struct RotationReport {
    /// `rotate-keys`.
    pub scenario: &'static str,
    /// The issuers' ids.
    pub issuers: Vec<String>,
    /// The verifiers' ids.
    pub verifiers: Vec<String>,
    /// Requests per second.
    pub rate: u32,
    /// Simulated users.
    pub users: usize,
    /// How long the load ran, ms.
    pub duration_ms: u32,
    /// `--rotate-every`, ms.
    pub rotate_every_ms: u32,
    /// The issuers' access-token lifetime, s.
    pub access_ttl_s: u64,
    /// `keys rotate --clock-skew`, s.
    pub clock_skew_s: u64,
    /// Until `--fault-at`: planned rotations. The target is 0 failures.
    pub steady: Phase,
    /// From `--fault-at`: a key activated before it was published.
    pub unpublished: Phase,
    /// Every `authlab keys` command, in order.
    pub key_events: Vec<KeyEvent>,
    /// Rotations in the steady phase.
    pub rotations: u64,
    /// Keys pruned.
    pub keys_pruned: u64,
    /// Tokens of pruned keys, asked again.
    pub pruned_probe: PrunedProbe,
    /// JWKS fetches, per verifier (counted before the pruned-key probe).
    pub jwks_fetches: Vec<VerifierFetches>,
    /// Scheduled requests not sent because every user had one in flight (should be 0; raise
    /// `--users` otherwise).
    pub skipped: u64,
}

impl RotationReport {
    /// Whether the drill met its targets: no failure in the steady phase, every pruned key's
    /// token refused.
    pub fn passed(&self) -> bool {
        self.steady.failures == 0 && self.pruned_probe.refused == self.pruned_probe.probed
    }

    /// The summary printed at the end.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "drill rotate-keys: {} issuers, {} verifiers, {} req/s for {:.0} s, {} users; \
             keys rotated every {:.1} s (access tokens live {} s)\n",
            self.issuers.len(),
            self.verifiers.len(),
            self.rate,
            f64::from(self.duration_ms) / 1000.0,
            self.users,
            f64::from(self.rotate_every_ms) / 1000.0,
            self.access_ttl_s
        );
        out += "verifiers: --role verifier on the issuers' JWKS\n";
        for (name, p) in [
            ("steady", &self.steady),
            ("unpublished key", &self.unpublished),
        ] {
            out += &format!(
                "{name:<16} {:>6} requests  {:>4} failures  {:>4} expired  slowest {:.1} ms{}\n",
                p.requests,
                p.failures,
                p.expired,
                p.slowest_ms,
                p.failure_window_ms
                    .map(|(a, b)| format!(
                        "  (failures {:.1}-{:.1} s)",
                        f64::from(a) / 1000.0,
                        f64::from(b) / 1000.0
                    ))
                    .unwrap_or_default()
            );
        }
        out += &format!(
            "rotations {}, keys pruned {}, pruned keys' tokens refused {}/{}, requests skipped {}\n",
            self.rotations,
            self.keys_pruned,
            self.pruned_probe.refused,
            self.pruned_probe.probed,
            self.skipped
        );
        for v in &self.jwks_fetches {
            let show = |x: Option<u64>| x.map_or_else(|| "?".to_owned(), |x| x.to_string());
            out += &format!(
                "verifier {}: JWKS fetches {} steady, {} after the unpublished key (one timed \
                 fetch every {:.1} s)\n",
                v.verifier,
                show(v.steady),
                show(v.unpublished),
                f64::from(v.refresh_ms) / 1000.0
            );
        }
        out
    }

    /// `rotate-keys.md`.
    pub fn markdown(&self, command: &str) -> String {
        let mut out = format!("# Drill: rotate-keys\n\n`{command}`\n\n```text\n");
        out += &self.summary();
        out += "```\n\n| phase | from s | to s | requests | me | issued | failures | expired | statuses |\n|---|---|---|---|---|---|---|---|---|\n";
        for (name, p) in [
            ("steady", &self.steady),
            ("unpublished key", &self.unpublished),
        ] {
            out += &format!(
                "| {name} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
                f64::from(p.from_ms) / 1000.0,
                f64::from(p.to_ms) / 1000.0,
                p.requests,
                p.me,
                p.issued,
                p.failures,
                p.expired,
                p.statuses
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out += "\n## Key commands\n\n| at s | command | activated | pruned |\n|---|---|---|---|\n";
        for e in &self.key_events {
            out += &format!(
                "| {:.2} | {} | {} | {} |\n",
                f64::from(e.at_ms) / 1000.0,
                e.what,
                e.activated.as_deref().unwrap_or(""),
                e.pruned.join(" ")
            );
        }
        out
    }
}

/// The ports: Redis at `--base-port`, issuers at +20 and +21, verifiers at +22 and +23, the
/// issuers' HAProxy at +40 (or `--balancer-port`), the verifiers' at +41, and the issuers'
/// HAProxy frontends the verifiers fetch the JWKS through at +42 and +43.
struct RotatePorts {
    issuers: Vec<u16>,
    verifiers: Vec<u16>,
    issuer_lb: u16,
    verifier_lb: u16,
    jwks: Vec<u16>,
}

fn ports(args: &DrillArgs) -> RotatePorts {
    let base = args.base_port;
    let lb = args.balancer_port();
    RotatePorts {
        issuers: vec![base + 20, base + 21],
        verifiers: vec![base + 22, base + 23],
        issuer_lb: lb,
        verifier_lb: lb + 1,
        jwks: vec![lb + 2, lb + 3],
    }
}

/// The verifiers' `--jwks-refresh`: a key published by the issuers (within their 1 s reload)
/// reaches the verifiers within a quarter period more, well before the next rotation activates
/// it.
fn jwks_refresh(every: Duration) -> Duration {
    (every / 4).max(Duration::from_millis(500))
}

/// One verifier's own flags: no key at all, the issuers' JWKS through its own HAProxy frontend
/// (`jwks_port`).
fn verifier_flags(jwks_port: u16, every: Duration) -> Vec<String> {
    vec![
        "--role".into(),
        "verifier".into(),
        "--jwks-url".into(),
        format!("http://127.0.0.1:{jwks_port}/.well-known/jwks.json"),
        "--jwks-refresh".into(),
        format!("{}ms", jwks_refresh(every).as_millis()),
    ]
}

/// Starts one `authlab serve` with `flags` (and the HS256 `secret` in its environment, if any),
/// and waits until it listens.
fn serve(
    program: &Path,
    name: &str,
    port: u16,
    flags: &[String],
    secret: Option<&str>,
    logs: &Path,
) -> Result<Process, DrillError> {
    let mut command = Command::new(program);
    command
        .arg("serve")
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(["--instance-id", name])
        .args(["--workers", "1"])
        .args(flags)
        .env("RUST_LOG", "warn");
    if let Some(secret) = secret {
        command.env("AUTHLAB_JWT_SECRET", secret);
    }
    let mut process = Process::spawn(
        format!("authlab {name}"),
        command,
        logs.join(format!("instance-{name}.log")),
    )?;
    process.wait_for_port(port, Duration::from_secs(20))?;
    Ok(process)
}

/// Runs the rotate-keys drill and writes its report to `--out`.
pub fn run(args: &DrillArgs, interrupt: &Interrupt) -> Result<RotationReport, DrillError> {
    args.validate()?;
    procs::check_installed()?;
    let every = args.rotate_every;
    let access_ttl = Duration::from_secs((2 * every.as_secs()).max(2));
    let RotatePorts {
        issuers: issuer_ports,
        verifiers: verifier_ports,
        issuer_lb,
        verifier_lb,
        jwks: jwks_ports,
    } = ports(args);
    let mut needed = Topology::Single.ports(Ports {
        base: args.base_port,
    });
    needed.extend(
        issuer_ports
            .iter()
            .chain(&verifier_ports)
            .chain(&jwks_ports),
    );
    needed.extend([issuer_lb, verifier_lb]);
    procs::check_ports_free(&needed)?;
    let logs = args.out.join("logs");
    std::fs::create_dir_all(&logs).map_err(io_err(&logs))?;
    let program = match &args.authlab_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(io_err(Path::new("the current executable")))?,
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let database = logs.join("users.db");
    let keys = args.out.join("keys");
    let _ = std::fs::remove_dir_all(&keys);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }

    step("starting Redis");
    let redis = Redis::start(
        Topology::Single,
        Ports {
            base: args.base_port,
        },
        args.node_timeout_ms,
        &logs,
    )?;
    interrupt.check()?;
    let operator = Operator {
        program: program.clone(),
        dir: keys.clone(),
        access_ttl,
    };
    step("authlab keys generate, then rotate: an active key and a published next one");
    operator.generate()?;
    operator.rotate()?;

    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", database.display()));
    let common: Vec<String> = [
        "--database-url",
        &database_url,
        "--redis-url",
        &redis.url(),
        "--redis-prefix",
        &format!("authlab-drill:{}:", &run_id[..12]),
        "--jwt-alg",
        "EdDSA",
        "--access-ttl",
        &format!("{}s", access_ttl.as_secs()),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(args.instance_args.iter().cloned())
    .collect();
    let mut issuer_flags = common.clone();
    issuer_flags.extend(
        [
            "--jwt-keys-dir",
            &keys.display().to_string(),
            "--jwt-keys-reload",
            KEYS_RELOAD,
            "--register-ip-max",
            "1000000",
            "--login-ip-max-failures",
            "1000000",
            "--login-max-failures",
            "1000000",
        ]
        .map(str::to_owned),
    );
    // The issuers share an HS256 secret for their refresh tokens (given through the
    // environment, never a flag); the verifiers get none: they hold no key at all.
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    step("starting 2 issuers sharing the key directory");
    let mut running: Vec<Process> = Vec::new();
    let mut issuers = Vec::new();
    for (i, port) in issuer_ports.iter().enumerate() {
        let name = format!("i{}", i + 1);
        running.push(serve(
            &program,
            &name,
            *port,
            &issuer_flags,
            Some(&secret),
            &logs,
        )?);
        issuers.push(Server {
            name,
            address: format!("127.0.0.1:{port}"),
        });
        interrupt.check()?;
    }
    let issuer_dir = logs.join("issuers");
    std::fs::create_dir_all(&issuer_dir).map_err(io_err(&issuer_dir))?;
    let issuer_balancer = {
        let text = balancer::config(
            &format!("127.0.0.1:{issuer_lb}"),
            &issuers,
            Some(&issuer_dir.join("haproxy.sock")),
            &args.balancer_check,
        );
        // The JWKS says `Cache-Control: max-age=300`, which a verifier honours (at least 30 s):
        // right for rotations days apart, too slow for this drill's seconds. Without the header
        // the verifiers fetch every --jwks-refresh, so the time scale shrinks with everything
        // else and publish-before-sign still holds.
        let mut text = text.replacen(
            "\nbackend tokens\n",
            "\nbackend tokens\n    http-response del-header Cache-Control\n",
            1,
        );
        // Each verifier fetches through a frontend of its own, which counts its requests.
        for (i, port) in jwks_ports.iter().enumerate() {
            text += &format!(
                "\nfrontend jwks-v{}\n    bind 127.0.0.1:{port}\n    default_backend tokens\n",
                i + 1
            );
        }
        Balancer::start_config(issuer_lb, &issuer_dir, &text)?
    };

    step("starting 2 verifiers (no private key: the issuers' JWKS)");
    let mut verifiers = Vec::new();
    for (i, port) in verifier_ports.iter().enumerate() {
        let name = format!("v{}", i + 1);
        let mut flags = common.clone();
        flags.extend(verifier_flags(jwks_ports[i], every));
        running.push(serve(&program, &name, *port, &flags, None, &logs)?);
        verifiers.push(Server {
            name,
            address: format!("127.0.0.1:{port}"),
        });
        interrupt.check()?;
    }
    let verifier_dir = logs.join("verifiers");
    std::fs::create_dir_all(&verifier_dir).map_err(io_err(&verifier_dir))?;
    let verifier_balancer =
        Balancer::start(verifier_lb, &verifiers, &verifier_dir, &args.balancer_check)?;
    for balancer in [&issuer_balancer, &verifier_balancer] {
        let up = wait_until(Duration::from_secs(15), || {
            let states = balancer.server_states();
            states.len() == 2 && states.iter().all(|(_, s)| s == "UP")
        });
        if !up {
            return Err(DrillError::Setup {
                step: "HAProxy",
                detail: format!(
                    "not every instance passed the {} check within 15 s: {:?}",
                    args.balancer_check,
                    balancer.server_states()
                ),
            });
        }
    }
    interrupt.check()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io_err(Path::new("the load's runtime")))?;
    let client = reqwest::Client::builder()
        .timeout(args.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| DrillError::Setup {
            step: "HTTP client",
            detail: e.to_string(),
        })?;
    let users: Vec<User> = (0..args.users)
        .map(|i| User {
            username: format!("drill-{}-{i}", &run_id[..8]),
            password: format!("{}-{}", uuid::Uuid::new_v4().simple(), run_id),
        })
        .collect();
    let load = Arc::new(Load {
        client: client.clone(),
        issuers: format!("http://127.0.0.1:{issuer_lb}"),
        verifiers: format!("http://127.0.0.1:{verifier_lb}"),
        states: users.iter().map(|_| Mutex::default()).collect(),
        users,
        samples: Mutex::new(Vec::new()),
        by_kid: Mutex::new(HashMap::new()),
        next_user: Mutex::new(0),
        skipped: std::sync::atomic::AtomicU64::new(0),
    });
    step(&format!("registering {} users on the issuers", args.users));
    runtime
        .block_on(load.register_all())
        .map_err(|detail| DrillError::Setup {
            step: "users",
            detail,
        })?;
    interrupt.check()?;

    step(&format!(
        "load: {} req/s for {} s; keys rotate + prune every {} s; a never-published key at {} s",
        args.rate(),
        args.duration.as_secs_f64(),
        every.as_secs_f64(),
        args.fault_at.as_secs_f64()
    ));
    let started = Instant::now();
    let mut fetches_at_fault = Vec::new();
    let (samples, events) = std::thread::scope(|scope| {
        let operator = &operator;
        let issuer_balancer = &issuer_balancer;
        let fetches_at_fault = &mut fetches_at_fault;
        let events = scope.spawn(move || {
            let mut at_fault = || *fetches_at_fault = fetch_counts(issuer_balancer, 2);
            operate(
                operator,
                started,
                every,
                args.fault_at,
                interrupt,
                &mut at_fault,
            )
        });
        let samples = runtime.block_on(load.run(
            args.rate(),
            args.duration,
            interrupt,
            tokio::time::Instant::from_std(started),
        ));
        let events = events.join().unwrap_or_else(|_| {
            Err(DrillError::Setup {
                step: "authlab keys",
                detail: "the operator thread panicked".into(),
            })
        });
        (samples, events)
    });
    interrupt.check()?;
    let events = events?;

    let at_end = fetch_counts(&issuer_balancer, 2);
    let jwks_fetches = verifiers
        .iter()
        .enumerate()
        .map(|(i, server)| {
            let steady = fetches_at_fault.get(i).copied().flatten();
            VerifierFetches {
                verifier: server.name.clone(),
                steady,
                unpublished: at_end[i]
                    .zip(steady)
                    .map(|(end, fault)| end.saturating_sub(fault)),
                refresh_ms: u32::try_from(jwks_refresh(every).as_millis()).unwrap_or(u32::MAX),
            }
        })
        .collect();
    step("asking a token of every pruned key again");
    let pruned: Vec<String> = events.iter().flat_map(|e| e.pruned.clone()).collect();
    let pruned_probe = runtime.block_on(async {
        let mut probe = PrunedProbe::default();
        let tokens = Load::lock(&load.by_kid).clone();
        for kid in &pruned {
            let Some(bearer) = tokens.get(kid) else {
                continue;
            };
            probe.probed += 1;
            let (status, code) = match client
                .get(format!("{}/jwt/me", load.verifiers))
                .header(header::AUTHORIZATION, bearer.clone())
                .send()
                .await
            {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    (status, body["error"].as_str().unwrap_or("").to_owned())
                }
                Err(_) => (0, String::new()),
            };
            if status == 401 {
                probe.refused += 1;
            }
            *probe
                .answers
                .entry(format!("{status} {code}").trim().to_owned())
                .or_default() += 1;
        }
        probe
    });

    let fault_ms = u32::try_from(args.fault_at.as_millis()).unwrap_or(u32::MAX);
    let duration_ms = u32::try_from(args.duration.as_millis()).unwrap_or(u32::MAX);
    let report = RotationReport {
        scenario: "rotate-keys",
        issuers: issuers.iter().map(|s| s.name.clone()).collect(),
        verifiers: verifiers.iter().map(|s| s.name.clone()).collect(),
        rate: args.rate(),
        users: args.users as usize,
        duration_ms,
        rotate_every_ms: u32::try_from(every.as_millis()).unwrap_or(u32::MAX),
        access_ttl_s: access_ttl.as_secs(),
        clock_skew_s: CLOCK_SKEW.as_secs(),
        steady: phase(&samples, 0, fault_ms),
        unpublished: phase(&samples, fault_ms, duration_ms),
        rotations: events
            .iter()
            .filter(|e| e.what == "rotate" && e.at_ms < fault_ms)
            .count() as u64,
        keys_pruned: pruned.len() as u64,
        key_events: events,
        pruned_probe,
        jwks_fetches,
        skipped: load.skipped.load(std::sync::atomic::Ordering::Relaxed),
    };
    write(&report, &args.out)?;
    drop(verifier_balancer);
    drop(issuer_balancer);
    drop(running);
    drop(redis);
    crate::run::remove_scratch_database(args, &database);
    Ok(report)
}

/// Writes `rotate-keys.json` and `rotate-keys.md` to `out`.
pub fn write(report: &RotationReport, out: &Path) -> Result<(), DrillError> {
    crate::run::write_report_files(report, out, "rotate-keys", |command| {
        report.markdown(command)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u32, action: Action, status: u16, within_exp: bool) -> Sample {
        Sample {
            at_ms,
            action,
            status,
            within_exp,
            latency_us: 1000,
        }
    }

    #[test]
    fn a_failure_is_a_refusal_of_a_live_token_and_an_expired_one_is_not() {
        let samples = [
            sample(10, Action::Login, 200, true),
            sample(20, Action::Me, 200, true),
            sample(30, Action::Me, 401, false),
            sample(40, Action::Me, 401, true),
            sample(50, Action::Refresh, 0, true),
            sample(5000, Action::Me, 401, true),
        ];
        let steady = phase(&samples, 0, 1000);
        assert_eq!((steady.requests, steady.me, steady.issued), (5, 3, 2));
        assert_eq!((steady.failures, steady.expired), (2, 1));
        assert_eq!(steady.failure_window_ms, Some((40, 50)));
        assert_eq!(steady.statuses.get("none"), Some(&1));
        let later = phase(&samples, 1000, u32::MAX);
        assert_eq!((later.requests, later.failures), (1, 1));
    }

    #[test]
    fn the_drill_reads_kid_and_exp_from_a_token_without_checking_it() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","kid":"k1"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"exp":1800000000,"sub":"1"}"#);
        let token = Token::parse(&format!("{header}.{claims}.c2ln")).expect("parsed");
        assert_eq!((token.kid.as_str(), token.exp), ("k1", 1_800_000_000));
        assert!(Token::parse("not.a.token").is_none());
    }
}
