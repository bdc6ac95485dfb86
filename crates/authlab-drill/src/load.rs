//! The open-loop load: a fixed request rate through the balancer, whatever the servers do.
//!
//! A closed-loop generator (like `authlab compare`'s) sends the next request when the previous
//! answer arrives, so a stalled server also stalls the load and the stall is recorded once
//! ("coordinated omission"). Here request `i` is *scheduled* at `i / rate` seconds after the
//! start and sent then, whether or not earlier ones have been answered; its latency is measured
//! from its scheduled time. A 3 s stall under 200 req/s then shows as 600 slow requests, as the
//! users behind them would have seen it.
//!
//! # What each request does
//! Requests cycle through the three backends. Each picks a random user; that user's credential
//! for the backend (a `sid` cookie plus the balancer's `SRVID`, or a bearer token) is asked
//! `GET /{backend}/me`, or, with probability `--logout-share`, logged out
//! (`POST /{backend}/logout`); a user without a credential logs in first. So logins and logouts
//! run all along, as they would with real users.
//!
//! - A `401` on a credential that was never logged out is a **lost** credential (a session whose
//!   instance died, a token whose Redis forgot it): the user has to log in again, and does.
//! - A logout answered `204` is an **acknowledged revocation**: the credential is kept aside and
//!   asked again at the end ([`Load::reprobe`]); a `200` then is a revocation that was undone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{self, HeaderValue};
use serde::Serialize;
use tokio::time::Instant;

use crate::balancer::{AFFINITY_COOKIE, SESSION_COOKIE};
use crate::interrupt::Interrupt;

/// The three backends, in the order requests cycle through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `/session`: a cookie, in one instance's memory.
    Session,
    /// `/redis`: an opaque bearer token in Redis.
    Redis,
    /// `/jwt`: a signed bearer token (denylist in Redis).
    Jwt,
}

impl Backend {
    /// All three.
    pub const ALL: [Backend; 3] = [Backend::Session, Backend::Redis, Backend::Jwt];

    /// `session`, `redis`, `jwt`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Redis => "redis",
            Self::Jwt => "jwt",
        }
    }

    /// Position in [`Backend::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `GET /{backend}/me`.
    Me,
    /// `POST /{backend}/login`.
    Login,
    /// `POST /{backend}/logout`.
    Logout,
}

/// One request as it happened.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Its scheduled send time, ms after the load started.
    pub at_ms: u32,
    /// Which backend.
    pub backend: Backend,
    /// What it did.
    pub action: Action,
    /// The HTTP status; 0 for no answer (refused, reset, timed out).
    pub status: u16,
    /// From the scheduled time to the whole answer, microseconds.
    pub latency_us: u64,
    /// Which user.
    pub user: u32,
    /// Which instance answered (`X-Authlab-Instance`), as its index in the run's list.
    pub instance: Option<u8>,
}

/// A credential as a client sends it.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The whole `Cookie` header: `sid=...; SRVID=...`.
    Cookie(HeaderValue),
    /// The whole `Authorization` header: `Bearer ...`.
    Bearer(HeaderValue),
}

impl Credential {
    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Cookie(v) => request.header(header::COOKIE, v.clone()),
            Self::Bearer(v) => request.header(header::AUTHORIZATION, v.clone()),
        }
    }
}

/// One user's state on one backend.
#[derive(Debug, Default)]
struct Slot {
    credential: Option<Credential>,
    /// Bumped at every login, so a late `401` for an older credential is not counted as a loss.
    generation: u64,
    /// A login or logout is in flight: no other request may use the slot.
    exclusive: bool,
}

/// A user of the drill.
#[derive(Debug, Clone)]
pub struct User {
    /// The registered name.
    pub username: String,
    /// Its password.
    pub password: String,
}

/// What the load found besides the samples.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tallies {
    /// Credentials that stopped working without a logout, per backend (`session`, `redis`,
    /// `jwt`).
    pub lost: [u64; 3],
    /// Requests that could not be sent because every user of the backend was busy logging in
    /// or out (should be 0; not part of the samples).
    pub skipped: u64,
}

/// The load's shared state.
pub struct Load {
    client: reqwest::Client,
    base: String,
    users: Vec<User>,
    slots: Vec<Mutex<[Slot; 3]>>,
    samples: Mutex<Vec<Sample>>,
    revoked: Mutex<Vec<(Backend, Credential)>>,
    tallies: Mutex<Tallies>,
    instances: Vec<String>,
    seed: AtomicU64,
}

/// What a load run leaves.
pub struct LoadOutcome {
    /// Every request, in completion order.
    pub samples: Vec<Sample>,
    /// Losses and skips.
    pub tallies: Tallies,
}

impl Load {
    /// A load against the balancer at `base` (`http://127.0.0.1:PORT`), for `users`.
    /// `instances`: the instance ids, to map `X-Authlab-Instance` to an index.
    pub fn new(
        base: String,
        users: Vec<User>,
        instances: Vec<String>,
        timeout: Duration,
    ) -> Result<Arc<Self>, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .build()?;
        let slots = users
            .iter()
            .map(|_| Mutex::new(Default::default()))
            .collect();
        Ok(Arc::new(Self {
            client,
            base,
            users,
            slots,
            samples: Mutex::new(Vec::new()),
            revoked: Mutex::new(Vec::new()),
            tallies: Mutex::new(Tallies::default()),
            instances,
            seed: AtomicU64::new(uuid::Uuid::new_v4().as_u64_pair().0 | 1),
        }))
    }

    /// A cheap pseudo-random number (xorshift; the load needs spread, not secrecy).
    fn random(&self) -> u64 {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        x
    }

    /// Registers every user (`POST /users`), a few at a time.
    pub async fn register_all(self: &Arc<Self>) -> Result<(), String> {
        for chunk in self.users.chunks(4) {
            let mut tasks = Vec::new();
            for user in chunk {
                let load = self.clone();
                let user = user.clone();
                tasks.push(tokio::spawn(async move {
                    let body =
                        serde_json::json!({"username": user.username, "password": user.password});
                    let response = load
                        .client
                        .post(format!("{}/users", load.base))
                        .json(&body)
                        .send()
                        .await
                        .map_err(|e| format!("POST /users: {e}"))?;
                    if response.status().is_success() {
                        Ok(())
                    } else {
                        Err(format!(
                            "POST /users answered {}: {}",
                            response.status(),
                            response.text().await.unwrap_or_default()
                        ))
                    }
                }));
            }
            for task in tasks {
                task.await.map_err(|e| e.to_string())??;
            }
        }
        Ok(())
    }

    /// Logs every user in on every backend before the load starts (not recorded).
    pub async fn login_all(self: &Arc<Self>) -> Result<(), String> {
        let pairs: Vec<(usize, Backend)> = (0..self.users.len())
            .flat_map(|u| Backend::ALL.map(|b| (u, b)))
            .collect();
        for chunk in pairs.chunks(4) {
            let mut tasks = Vec::new();
            for &(user, backend) in chunk {
                let load = self.clone();
                tasks.push(tokio::spawn(async move {
                    let (status, credential, _) = load.login(user, backend).await;
                    match credential {
                        Some(c) => {
                            let mut slots = load.lock_slots(user);
                            let slot = &mut slots[backend.index()];
                            slot.credential = Some(c);
                            slot.generation += 1;
                            Ok(())
                        }
                        None => Err(format!("{} login answered {status}", backend.name())),
                    }
                }));
            }
            for task in tasks {
                task.await.map_err(|e| e.to_string())??;
            }
        }
        Ok(())
    }

    fn lock_slots(&self, user: usize) -> std::sync::MutexGuard<'_, [Slot; 3]> {
        self.slots[user]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn instance_of(&self, response: &reqwest::Response) -> Option<u8> {
        let id = response
            .headers()
            .get("x-authlab-instance")?
            .to_str()
            .ok()?;
        self.instances
            .iter()
            .position(|i| i == id)
            .and_then(|i| u8::try_from(i).ok())
    }

    /// `POST /{backend}/login`: the status, the credential (on success), the instance.
    async fn login(&self, user: usize, backend: Backend) -> (u16, Option<Credential>, Option<u8>) {
        let user = &self.users[user];
        let body = serde_json::json!({"username": user.username, "password": user.password});
        let sent = self
            .client
            .post(format!("{}/{}/login", self.base, backend.name()))
            .json(&body)
            .send()
            .await;
        let Ok(response) = sent else {
            return (0, None, None);
        };
        let status = response.status().as_u16();
        let instance = self.instance_of(&response);
        if !response.status().is_success() {
            let _ = response.bytes().await;
            return (status, None, instance);
        }
        let credential = match backend {
            Backend::Session => session_cookie(response.headers()),
            Backend::Redis | Backend::Jwt => response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["access_token"].as_str().map(str::to_owned))
                .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
                .map(Credential::Bearer),
        };
        match credential {
            Some(c) => (status, Some(c), instance),
            // A 2xx without a credential is a failure the user would see.
            None => (0, None, instance),
        }
    }

    /// Runs the load: `rate` requests per second for `duration`, then waits for the answers
    /// still in flight. `logout_share`: the probability that a request is a logout.
    pub async fn run(
        self: &Arc<Self>,
        rate: u32,
        duration: Duration,
        logout_share: f64,
        interrupt: &Interrupt,
        started: Instant,
    ) -> LoadOutcome {
        let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let total = (duration.as_secs_f64() * f64::from(rate)) as u64;
        let logout_threshold = (logout_share.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u64;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            if interrupt.is_raised() {
                break;
            }
            let scheduled = started + period.mul_f64(i as f64);
            tokio::time::sleep_until(scheduled).await;
            let backend = Backend::ALL[(i % 3) as usize];
            let logout = (self.random() & u64::from(u32::MAX)) < logout_threshold;
            let load = self.clone();
            tasks.spawn(async move { load.one(backend, logout, scheduled, started).await });
            // Reap what finished, so the set does not grow with the run.
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()));
        let tallies = self
            .tallies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        LoadOutcome { samples, tallies }
    }

    /// One scheduled request: pick a user, do what its state calls for, record it.
    async fn one(&self, backend: Backend, logout: bool, scheduled: Instant, started: Instant) {
        let n = self.users.len();
        let first = (self.random() % n as u64) as usize;
        // The first user whose slot is free; `None` if every one is mid-login or mid-logout.
        let mut picked = None;
        for k in 0..n {
            let user = (first + k) % n;
            let mut slots = self.lock_slots(user);
            let slot = &mut slots[backend.index()];
            if slot.exclusive {
                continue;
            }
            let action = match (&slot.credential, logout) {
                (None, _) => Action::Login,
                (Some(_), true) => Action::Logout,
                (Some(_), false) => Action::Me,
            };
            let credential = match action {
                Action::Me => slot.credential.clone(),
                Action::Logout => slot.credential.take(),
                Action::Login => None,
            };
            if action != Action::Me {
                slot.exclusive = true;
            }
            picked = Some((user, action, credential, slot.generation));
            break;
        }
        let Some((user, action, credential, generation)) = picked else {
            self.tallies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .skipped += 1;
            return;
        };
        let (status, instance) = match action {
            Action::Login => {
                let (status, credential, instance) = self.login(user, backend).await;
                let mut slots = self.lock_slots(user);
                let slot = &mut slots[backend.index()];
                slot.exclusive = false;
                if let Some(c) = credential {
                    slot.credential = Some(c);
                    slot.generation += 1;
                }
                (status, instance)
            }
            Action::Logout | Action::Me => {
                let Some(credential) = credential else {
                    return;
                };
                let path = if action == Action::Me { "me" } else { "logout" };
                let url = format!("{}/{}/{path}", self.base, backend.name());
                let request = if action == Action::Me {
                    self.client.get(url)
                } else {
                    self.client.post(url)
                };
                let sent = credential.apply(request).send().await;
                let (status, instance) = match sent {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let instance = self.instance_of(&response);
                        // Read the whole answer: latency is to the last byte.
                        let whole = response.bytes().await.is_ok();
                        (if whole { status } else { 0 }, instance)
                    }
                    Err(_) => (0, None),
                };
                let mut slots = self.lock_slots(user);
                let slot = &mut slots[backend.index()];
                if action == Action::Logout {
                    slot.exclusive = false;
                    if status == 204 {
                        self.revoked
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((backend, credential));
                    }
                    // Any other answer: whether the credential still works is unknown, so the
                    // user forgets it and logs in again, as a client would.
                } else if status == 401
                    && slot.generation == generation
                    && slot.credential.is_some()
                {
                    // Never logged out, yet refused: lost.
                    slot.credential = None;
                    self.tallies.lock().unwrap_or_else(|p| p.into_inner()).lost[backend.index()] +=
                        1;
                }
                (status, instance)
            }
        };
        let done = Instant::now();
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Sample {
                at_ms: u32::try_from(scheduled.duration_since(started).as_millis())
                    .unwrap_or(u32::MAX),
                backend,
                action,
                status,
                latency_us: u64::try_from(done.duration_since(scheduled).as_micros())
                    .unwrap_or(u64::MAX),
                user: u32::try_from(user).unwrap_or(u32::MAX),
                instance,
            });
    }

    /// Asks every credential whose logout was answered `204` again (`GET /{backend}/me`):
    /// `(probed, undone)` per backend, `undone` being those that answered `200`.
    pub async fn reprobe(self: &Arc<Self>) -> [(u64, u64); 3] {
        let revoked = std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|p| p.into_inner()));
        let mut result = [(0u64, 0u64); 3];
        for chunk in revoked.chunks(16) {
            let mut tasks = Vec::new();
            for (backend, credential) in chunk.iter().cloned() {
                let load = self.clone();
                tasks.push(tokio::spawn(async move {
                    let url = format!("{}/{}/me", load.base, backend.name());
                    let status = credential
                        .apply(load.client.get(url))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    (backend, status)
                }));
            }
            for task in tasks {
                if let Ok((backend, status)) = task.await {
                    result[backend.index()].0 += 1;
                    if status == 200 {
                        result[backend.index()].1 += 1;
                    }
                }
            }
        }
        result
    }
}

/// The `Cookie` header a browser would send after this login answer: the session cookie and
/// the balancer's affinity cookie.
fn session_cookie(headers: &header::HeaderMap) -> Option<Credential> {
    let mut parts = Vec::new();
    for value in headers.get_all(header::SET_COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        let pair = text.split(';').next().unwrap_or_default().trim();
        if let Some((name, _)) = pair.split_once('=')
            && (name == SESSION_COOKIE || name == AFFINITY_COOKIE)
        {
            parts.push(pair.to_owned());
        }
    }
    if !parts.iter().any(|p| p.starts_with(SESSION_COOKIE)) {
        return None;
    }
    HeaderValue::from_str(&parts.join("; "))
        .ok()
        .map(Credential::Cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_credential_carries_the_affinity_cookie_too() {
        let mut headers = header::HeaderMap::new();
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("sid=abc; Path=/; HttpOnly; SameSite=Lax"),
        );
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("SRVID=a2; path=/; HttpOnly; SameSite=Lax"),
        );
        let Some(Credential::Cookie(value)) = session_cookie(&headers) else {
            panic!("a cookie credential");
        };
        assert_eq!(value, "sid=abc; SRVID=a2");
        assert!(session_cookie(&header::HeaderMap::new()).is_none());
    }
}
