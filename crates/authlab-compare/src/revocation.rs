//! Revocation latency across two instances: how long after one instance confirms a revocation
//! the other still accepts the token. With `--redis-cache on` (or `--jwt-denylist cached`) this is
//! what the client-side cache's guarantee bounds (5 ms, its trust window); without a cache every
//! request asks Redis, so it is zero by construction.
//!
//! One sample: mint a fresh access token on the issuing instance (a login for the first sample, a
//! refresh after that, so that a thousand samples cost one password hash), present it twice to
//! the other instance (the second presentation is served from its cache when it has one), revoke
//! it on the issuing instance (RFC 7009 `/revoke`: the same `DEL` or denylist entry a logout
//! writes), then poll `/me` on the other instance until it refuses. The latency is the time from
//! the revocation's answer to the sending of the first refused probe, so a token refused at the
//! first probe counts as zero: the probe could not have been answered from a stale entry.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use authlab_loadgen::{FetchedResponse, RequestSpec, fetch, header};
use serde::Serialize;

use crate::CompareError;

/// The distribution of [`measure`]'s samples.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RevocationLatency {
    /// Samples taken.
    pub samples: usize,
    /// Median, microseconds.
    pub p50_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// Slowest, microseconds.
    pub max_us: u64,
    /// Samples whose token was still accepted when the poll gave up (`give_up`): each one a
    /// revocation that did not take effect. Must be 0.
    pub never_refused: usize,
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

/// Takes `samples` logout-then-probe samples (see the module docs); each poll gives up after
/// `give_up`, each request after `timeout`.
pub async fn measure(
    probe: &RevocationProbe,
    samples: usize,
    give_up: Duration,
    timeout: Duration,
) -> Result<RevocationLatency, CompareError> {
    let backend = probe.backend;
    let mut refresh: Option<String> = None;
    let mut latencies = Vec::with_capacity(samples);
    let mut never_refused = 0;
    for _ in 0..samples {
        let minted = match &refresh {
            None => {
                let body =
                    serde_json::json!({ "username": probe.username, "password": probe.password });
                let request = RequestSpec::post_json(
                    probe.issuer,
                    format!("/{backend}/login"),
                    body.to_string(),
                );
                expect_ok(&request, timeout, "log in (revocation latency)").await?
            }
            Some(token) => {
                let body = serde_json::json!({ "refresh_token": token });
                let request = RequestSpec::post_json(
                    probe.issuer,
                    format!("/{backend}/refresh"),
                    body.to_string(),
                );
                expect_ok(&request, timeout, "refresh (revocation latency)").await?
            }
        };
        let step = "read the tokens (revocation latency)";
        let body: serde_json::Value = serde_json::from_slice(&minted.body)
            .map_err(|_| CompareError::NoCredential { step })?;
        let access = body["access_token"]
            .as_str()
            .ok_or(CompareError::NoCredential { step })?
            .to_owned();
        refresh = body["refresh_token"].as_str().map(str::to_owned);
        let bearer = header::HeaderValue::from_str(&format!("Bearer {access}"))
            .map_err(|_| CompareError::NoCredential { step })?;
        let me = RequestSpec::get(probe.other, format!("/{backend}/me"))
            .header(header::AUTHORIZATION, bearer);
        // Twice: the first may fill the other instance's cache, the second is served from it.
        for _ in 0..2 {
            expect_ok(&me, timeout, "present the token to the other instance").await?;
        }
        let revoke = RequestSpec {
            headers: vec![(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/x-www-form-urlencoded"),
            )],
            ..RequestSpec::post_json(
                probe.issuer,
                format!("/{backend}/revoke"),
                format!("token={access}"),
            )
        };
        expect_ok(&revoke, timeout, "revoke the token (revocation latency)").await?;
        let revoked = Instant::now();
        loop {
            let sent = revoked.elapsed();
            let answer = fetch(&me, timeout).await.map_err(CompareError::Load)?;
            if answer.status != 200 {
                latencies.push(sent);
                break;
            }
            if sent > give_up {
                never_refused += 1;
                break;
            }
        }
    }
    latencies.sort();
    let at = |q: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        u64::try_from(latencies[index].as_micros()).unwrap_or(u64::MAX)
    };
    Ok(RevocationLatency {
        samples,
        p50_us: at(0.50),
        p99_us: at(0.99),
        max_us: at(1.0),
        never_refused,
    })
}

async fn expect_ok(
    request: &RequestSpec,
    timeout: Duration,
    step: &'static str,
) -> Result<FetchedResponse, CompareError> {
    let answer = fetch(request, timeout).await.map_err(CompareError::Load)?;
    if (200..300).contains(&answer.status) {
        Ok(answer)
    } else {
        Err(CompareError::Setup {
            step,
            status: answer.status,
        })
    }
}
