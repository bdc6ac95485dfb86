//! Revocation latency across two instances: how long after a logout on one instance the other
//! one refuses the credential.
//!
//! For every revocable mode ([`Mode::revocable`]) the run has two instances with the same
//! settings on one Redis. One sample:
//!
//! 1. a fresh credential for the compare user, issued in this process by the mode's own backend
//!    (built from the same settings, so it is the credential instance 1's login would hand out;
//!    a login over HTTP would add an argon2id hash, ~25 ms, to every sample and make a thousand
//!    of them take a minute per mode);
//! 2. `GET /me` on instance 2, which must accept it (200; this also warms a cache, if the mode
//!    has one);
//! 3. `POST /logout` on instance 1 (204);
//! 4. from the moment the logout's answer is read, `GET /me` on instance 2 again and again, with
//!    no pause, until it refuses; the sample is the time to the first refusing answer, or "never"
//!    after [`REVOCATION_GIVE_UP`].
//!
//! Every request goes over a kept connection ([`KeepAlive`]), so no sample includes a TCP
//! handshake. A mode that reads Redis on every request refuses at the first probe: about one
//! request's round trip. A mode with a cache refuses once Redis's invalidation has reached
//! instance 2; the gap between the two is what the cache costs revocation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use authlab::backends;
use authlab::config::{DenylistMode, Settings, Switch};
use authlab_core::{Authenticator, ClientInfo, Identity, SystemClock};
use authlab_jwt::JwtSecret;
use authlab_loadgen::{KeepAlive, LoadError, header};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::modes::{Backend, Mode, REVOCATION_GIVE_UP};
use crate::setup::{self, CredentialHeader};
use crate::{CompareError, report};

/// What the probe found for one mode.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RevocationLatency {
    /// The mode's row in the main table.
    pub route: String,
    /// The mode's `--modes` name.
    pub mode: String,
    /// Samples taken (each: issue, accepted by instance 2, logout on instance 1, probe 2).
    pub samples: usize,
    /// Samples that instance 2 refused within the give-up time.
    pub refused: usize,
    /// Samples instance 2 still accepted after [`REVOCATION_GIVE_UP`].
    pub never_refused: usize,
    /// Samples whose first `GET /me` on instance 2 was not accepted, or whose logout failed (the
    /// probe could not start; a healthy run has 0).
    pub setup_failures: usize,
    /// Median time from the logout's answer to the first refusal by instance 2, microseconds.
    pub p50_us: Option<u64>,
    /// 99th percentile of the same.
    pub p99_us: Option<u64>,
    /// The slowest refusal.
    pub max_us: Option<u64>,
    /// Mean number of probes of instance 2 until the refusal (1: the first probe was refused).
    pub mean_probes: Option<f64>,
    /// Every status instance 2 refused with, and how often (401 expected; 503 would mean it
    /// could not tell).
    pub refusal_statuses: std::collections::BTreeMap<u16, usize>,
}

/// Issues a credential of `backend` as instance 1's login would, without the password check.
enum Issuer {
    Redis(Box<authlab_redis::RedisTokenAuthenticator>),
    Jwt(Box<backends::JwtBackend>),
}

impl Issuer {
    fn new(backend: Backend, settings: &Settings) -> Option<Self> {
        // Issuing never reads a cache: the issuer is built without one (no tracking connection).
        let mut settings = settings.clone();
        settings.redis_cache = Switch::Off;
        if settings.jwt_denylist == DenylistMode::Cached {
            settings.jwt_denylist = DenylistMode::On;
        }
        let redis = backends::redis_connection(&settings.redis).ok()?;
        let secret = settings.jwt_secret.as_ref()?.expose_secret().as_bytes();
        let secret = JwtSecret::new(secret.to_vec()).ok()?;
        match backend {
            Backend::Redis => backends::redis_backend(&settings, &redis, &secret)
                .ok()
                .map(|redis| Self::Redis(Box::new(redis))),
            Backend::Jwt => backends::jwt_backend(&settings, &redis, secret, Arc::new(SystemClock))
                .ok()
                .map(|jwt| Self::Jwt(Box::new(jwt))),
            Backend::Session => None,
        }
    }

    async fn issue(&self, identity: &Identity) -> Option<CredentialHeader> {
        let issued = match self {
            Self::Redis(auth) => auth.issue(identity, &ClientInfo::default()).await,
            Self::Jwt(auth) => auth.issue(identity, &ClientInfo::default()).await,
        }
        .ok()?;
        let value =
            header::HeaderValue::from_str(&format!("Bearer {}", issued.credential.expose_secret()))
                .ok()?;
        Some(CredentialHeader::Bearer(value))
    }
}

/// One sample's outcome.
enum Sample {
    Refused {
        after: Duration,
        probes: u32,
        status: u16,
    },
    NeverRefused,
    SetupFailed,
}

/// Probes `mode` with `samples` samples between `first` (logout) and `second` (probes).
/// Stops early once `cancel` is set.
pub async fn measure(
    mode: &Mode,
    settings: &Settings,
    (first, second): (SocketAddr, SocketAddr),
    user: &Identity,
    samples: usize,
    timeout: Duration,
    cancel: &AtomicBool,
) -> Result<RevocationLatency, CompareError> {
    let issuer = Issuer::new(mode.backend, settings).ok_or(CompareError::NoCredential {
        step: "revocation probe: build the mode's backend",
    })?;
    let backend = mode.backend.name();
    let mut to_first = KeepAlive::new(first);
    let mut to_second = KeepAlive::new(second);
    let mut latencies = Vec::with_capacity(samples);
    let mut probes_total = 0u64;
    let mut result = RevocationLatency {
        route: mode.row.to_owned(),
        mode: mode.key.to_owned(),
        samples: 0,
        refused: 0,
        never_refused: 0,
        setup_failures: 0,
        p50_us: None,
        p99_us: None,
        max_us: None,
        mean_probes: None,
        refusal_statuses: Default::default(),
    };
    for _ in 0..samples {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let Some(credential) = issuer.issue(user).await else {
            result.samples += 1;
            result.setup_failures += 1;
            continue;
        };
        let sample = one_sample(
            backend,
            &credential,
            (&mut to_first, &mut to_second),
            timeout,
        )
        .await
        .map_err(CompareError::Load)?;
        result.samples += 1;
        match sample {
            Sample::Refused {
                after,
                probes,
                status,
            } => {
                result.refused += 1;
                latencies.push(after.as_micros() as u64);
                probes_total += u64::from(probes);
                *result.refusal_statuses.entry(status).or_default() += 1;
            }
            Sample::NeverRefused => result.never_refused += 1,
            Sample::SetupFailed => result.setup_failures += 1,
        }
    }
    latencies.sort_unstable();
    result.p50_us = report::stats::percentile(&latencies, 50.0);
    result.p99_us = report::stats::percentile(&latencies, 99.0);
    result.max_us = latencies.last().copied();
    result.mean_probes =
        (!latencies.is_empty()).then(|| probes_total as f64 / latencies.len() as f64);
    Ok(result)
}

async fn one_sample(
    backend: &str,
    credential: &CredentialHeader,
    (first, second): (&mut KeepAlive, &mut KeepAlive),
    timeout: Duration,
) -> Result<Sample, LoadError> {
    let probe = setup::me(second.addr(), backend, credential);
    if second.send(&probe, timeout).await?.status != 200 {
        return Ok(Sample::SetupFailed);
    }
    let logout = setup::logout(first.addr(), backend, credential);
    if !(200..300).contains(&first.send(&logout, timeout).await?.status) {
        return Ok(Sample::SetupFailed);
    }
    let logged_out = Instant::now();
    let mut probes = 0u32;
    while logged_out.elapsed() < REVOCATION_GIVE_UP {
        probes += 1;
        let status = second.send(&probe, timeout).await?.status;
        if status != 200 {
            return Ok(Sample::Refused {
                after: logged_out.elapsed(),
                probes,
                status,
            });
        }
    }
    Ok(Sample::NeverRefused)
}
