//! Revocation latency across two instances: how long after one instance confirms a revocation
//! the other still accepts the token. With `--redis-cache on` (or `--jwt-denylist cached`) this is
//! what the client-side cache's guarantee bounds (5 ms, its trust window); without a cache every
//! request asks Redis, so it is zero by construction.
//!
//! One sample: mint a fresh access token on the issuing instance (a login for the first sample, a
//! refresh after that, so that a thousand samples cost one password hash), present it twice to
//! the other instance (the second presentation is served from its cache when it has one), revoke
//! it on the issuing instance (RFC 7009 `/revoke`: the same `DEL` or denylist entry a logout
//! writes, without ending the login, so the next refresh still works), then probe `/me` on the
//! other instance again and again, with no pause, until it refuses.
//!
//! Two figures per sample, both from the moment the revocation's answer is read:
//! - **still accepted for** (`p50_us`, `p99_us`, `max_us`): until the first refused probe was
//!   *sent*. A token refused at the first probe counts as zero: that probe could not have been
//!   answered from a stale entry. This is the window the 5 ms guarantee bounds.
//! - **refused after** (`answered_p50_us`, `answered_p99_us`): until the refusing *answer* was
//!   read, one request's round trip more: what a client sees. An uncached mode shows about one
//!   round trip here.
//!
//! Every request goes over a kept connection ([`KeepAlive`]), so no figure includes a TCP
//! handshake. `authlab compare` runs this for every revocable mode ([`crate::modes`]); the
//! client-side cache's API tests call it too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use authlab_loadgen::{FetchedResponse, KeepAlive, RequestSpec, header};
use serde::Serialize;

use crate::CompareError;
use crate::report::stats::percentile;

/// The distribution of [`measure`]'s samples.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct RevocationLatency {
    /// The mode's row in the main table (set by `authlab compare`).
    pub route: Option<String>,
    /// The mode's `--modes` name (set by `authlab compare`).
    pub mode: Option<String>,
    /// Samples taken.
    pub samples: usize,
    /// Samples the other instance refused within the give-up time.
    pub refused: usize,
    /// Samples whose token was still accepted when the poll gave up: each one a revocation
    /// that did not take effect. Must be 0.
    pub never_refused: usize,
    /// Still accepted for, median: microseconds from the revocation's answer to the sending of
    /// the first refused probe (0: the first probe was refused).
    pub p50_us: u64,
    /// Still accepted for, 99th percentile, microseconds.
    pub p99_us: u64,
    /// Still accepted for, the longest, microseconds.
    pub max_us: u64,
    /// Refused after, median: microseconds from the revocation's answer to the refusing answer
    /// (one round trip more than `p50_us`).
    pub answered_p50_us: u64,
    /// Refused after, 99th percentile, microseconds.
    pub answered_p99_us: u64,
    /// Mean number of probes until the refusal (1: the first probe was refused).
    pub mean_probes: f64,
    /// Every status the other instance refused with, and how often (401 expected; 503 would
    /// mean it could not tell).
    pub refusal_statuses: BTreeMap<u16, usize>,
}

/// Where to measure, and as whom.
#[derive(Debug, Clone)]
pub struct RevocationProbe {
    /// The instance that issues and revokes.
    pub issuer: SocketAddr,
    /// The instance that must stop accepting.
    pub other: SocketAddr,
    /// `redis` or `jwt`.
    pub backend: &'static str,
    /// A registered user's name.
    pub username: String,
    /// Its password.
    pub password: String,
}

/// One sample's outcome.
enum Sample {
    Refused {
        sent: Duration,
        answered: Duration,
        probes: u32,
        status: u16,
    },
    NeverRefused,
}

/// Takes `samples` revoke-then-probe samples (see the module docs); each poll gives up after
/// `give_up`, each request after `timeout`.
pub async fn measure(
    probe: &RevocationProbe,
    samples: usize,
    give_up: Duration,
    timeout: Duration,
) -> Result<RevocationLatency, CompareError> {
    measure_until(probe, samples, give_up, timeout, || false).await
}

/// [`measure`], asking `stop` before every sample: `true` ends the run early with the samples
/// taken so far (Ctrl-C).
pub async fn measure_until(
    probe: &RevocationProbe,
    samples: usize,
    give_up: Duration,
    timeout: Duration,
    stop: impl Fn() -> bool,
) -> Result<RevocationLatency, CompareError> {
    let mut issuer = KeepAlive::new(probe.issuer);
    let mut other = KeepAlive::new(probe.other);
    let mut refresh: Option<String> = None;
    let mut sent = Vec::with_capacity(samples);
    let mut answered = Vec::with_capacity(samples);
    let mut probes_total = 0u64;
    let mut result = RevocationLatency::default();
    for _ in 0..samples {
        if stop() {
            break;
        }
        let access = mint(probe, &mut issuer, &mut refresh, timeout).await?;
        let sample =
            one_sample(probe, &access, (&mut issuer, &mut other), give_up, timeout).await?;
        result.samples += 1;
        match sample {
            Sample::Refused {
                sent: s,
                answered: a,
                probes,
                status,
            } => {
                result.refused += 1;
                sent.push(micros(s));
                answered.push(micros(a));
                probes_total += u64::from(probes);
                *result.refusal_statuses.entry(status).or_default() += 1;
            }
            Sample::NeverRefused => result.never_refused += 1,
        }
    }
    sent.sort_unstable();
    answered.sort_unstable();
    result.p50_us = percentile(&sent, 50.0).unwrap_or(0);
    result.p99_us = percentile(&sent, 99.0).unwrap_or(0);
    result.max_us = sent.last().copied().unwrap_or(0);
    result.answered_p50_us = percentile(&answered, 50.0).unwrap_or(0);
    result.answered_p99_us = percentile(&answered, 99.0).unwrap_or(0);
    result.mean_probes = if sent.is_empty() {
        0.0
    } else {
        probes_total as f64 / sent.len() as f64
    };
    Ok(result)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A fresh access token from the issuer: a login the first time, a refresh after that.
async fn mint(
    probe: &RevocationProbe,
    issuer: &mut KeepAlive,
    refresh: &mut Option<String>,
    timeout: Duration,
) -> Result<header::HeaderValue, CompareError> {
    let backend = probe.backend;
    let request = match refresh.as_deref() {
        None => {
            let body =
                serde_json::json!({ "username": probe.username, "password": probe.password });
            RequestSpec::post_json(probe.issuer, format!("/{backend}/login"), body.to_string())
        }
        Some(token) => {
            let body = serde_json::json!({ "refresh_token": token });
            RequestSpec::post_json(
                probe.issuer,
                format!("/{backend}/refresh"),
                body.to_string(),
            )
        }
    };
    let minted = expect_ok(
        issuer,
        &request,
        timeout,
        "mint a token (revocation latency)",
    )
    .await?;
    let step = "read the tokens (revocation latency)";
    let body: serde_json::Value =
        serde_json::from_slice(&minted.body).map_err(|_| CompareError::NoCredential { step })?;
    let access = body["access_token"]
        .as_str()
        .ok_or(CompareError::NoCredential { step })?;
    *refresh = body["refresh_token"].as_str().map(str::to_owned);
    header::HeaderValue::from_str(&format!("Bearer {access}"))
        .map_err(|_| CompareError::NoCredential { step })
}

/// Present `access` to the other instance, revoke it on the issuer, probe the other instance.
async fn one_sample(
    probe: &RevocationProbe,
    access: &header::HeaderValue,
    (issuer, other): (&mut KeepAlive, &mut KeepAlive),
    give_up: Duration,
    timeout: Duration,
) -> Result<Sample, CompareError> {
    let backend = probe.backend;
    let me = RequestSpec::get(probe.other, format!("/{backend}/me"))
        .header(header::AUTHORIZATION, access.clone());
    // Twice: the first may fill the other instance's cache, the second is served from it.
    for _ in 0..2 {
        expect_ok(
            other,
            &me,
            timeout,
            "present the token to the other instance",
        )
        .await?;
    }
    let token = access
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let revoke = RequestSpec {
        headers: vec![(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/x-www-form-urlencoded"),
        )],
        ..RequestSpec::post_json(
            probe.issuer,
            format!("/{backend}/revoke"),
            format!("token={token}"),
        )
    };
    expect_ok(
        issuer,
        &revoke,
        timeout,
        "revoke the token (revocation latency)",
    )
    .await?;
    let revoked = Instant::now();
    let mut probes = 0u32;
    loop {
        let sent = revoked.elapsed();
        probes += 1;
        let status = other
            .send(&me, timeout)
            .await
            .map_err(CompareError::Load)?
            .status;
        if status != 200 {
            return Ok(Sample::Refused {
                // A first probe refused means the token was never accepted after the
                // revocation's answer: 0 by definition, however late the scheduler let the
                // probe go (on a busy machine that was tens of microseconds).
                sent: if probes == 1 { Duration::ZERO } else { sent },
                answered: revoked.elapsed(),
                probes,
                status,
            });
        }
        if sent > give_up {
            return Ok(Sample::NeverRefused);
        }
    }
}

async fn expect_ok(
    client: &mut KeepAlive,
    request: &RequestSpec,
    timeout: Duration,
    step: &'static str,
) -> Result<FetchedResponse, CompareError> {
    let answer = client
        .send(request, timeout)
        .await
        .map_err(CompareError::Load)?;
    crate::setup::success(answer, step)
}
