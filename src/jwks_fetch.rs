//! A verifier's copy of the issuer's JWKS: fetched over HTTP, checked by
//! [`authlab_jwt::parse_jwks`], and kept in the JWT backend's [`KeyRing`].
//!
//! The HTTP lives here, in the server, and not in `authlab-jwt` (backends do no I/O). One thread
//! of its own, with a current-thread Tokio runtime, owns the HTTP client and does every fetch, so
//! no actix worker's runtime ever holds the client's connections:
//!
//! - **at start-up** it fetches at once; the service does not wait for it. Until a first good
//!   fetch, JWT requests answer `503 jwks_unavailable` and `/readyz` is not ready;
//! - **on a timer**: every `--jwks-refresh`, or the answer's `Cache-Control: max-age` clamped to
//!   [`MIN_REFRESH`]..[`MAX_REFRESH`]; after a failure, again within [`MIN_REFRESH`]. The
//!   request carries `If-None-Match`, and a `304` renews the set held;
//! - **on an unknown `kid`** ([`UnknownKid`]): a token naming a key we do not hold may come from
//!   an issuer that rotated, so the verify path asks for a fetch and waits for it. At most one
//!   fetch is in flight (callers arriving meanwhile wait for that one), and an unknown `kid`
//!   starts at most one fetch per `--jwks-unknown-kid-cooldown`; within the cooldown the token
//!   is refused at once. A flood of made-up `kid`s costs the issuer one request per cooldown.
//! - **failures keep the last good set** (an unreachable issuer, a non-200 answer, a document
//!   [`authlab_jwt::parse_jwks`] refuses) for `--jwks-max-stale` after the last good fetch;
//!   then JWT requests answer `503 jwks_unavailable` until a fetch succeeds.
//!
//! The URL is the configured one only: `jku` and `x5u` in a token's header are refused by the
//! verifier, never fetched. This build's HTTP client has no TLS, so the URL is `http://`: the
//! issuer must be reached over a network the deployment trusts (see docs/security.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use authlab_core::Clock;
use authlab_jwt::jwks::MAX_JWKS_BYTES;
use authlab_jwt::{KeyRing, KeySet, UnknownKid, parse_jwks};
use tokio::sync::{Notify, watch};

/// The shortest interval between two timed fetches (and the retry after a failed one).
pub const MIN_REFRESH: Duration = Duration::from_secs(30);
/// The longest interval between two timed fetches, whatever `max-age` says.
pub const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// How long one fetch may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the fetcher is told at start-up.
pub struct JwksSettings {
    /// The issuer's JWKS URL.
    pub url: String,
    /// `--jwks-refresh`.
    pub refresh: Duration,
    /// `--jwks-unknown-kid-cooldown`.
    pub unknown_kid_cooldown: Duration,
    /// `--jwks-max-stale`.
    pub max_stale: Duration,
}

/// Why the fetcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum JwksFetchError {
    /// The URL is not an `http://` URL.
    #[error(
        "--jwks-url must be an http:// URL (this build's HTTP client has no TLS: reach the issuer over a network the deployment trusts)"
    )]
    Url,
    /// The HTTP client or its thread could not be built.
    #[error("cannot start the JWKS fetcher")]
    Start(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Default)]
struct Flight {
    /// A fetch is running.
    in_flight: bool,
    /// When an unknown `kid` last started a fetch.
    last_unknown_kid: Option<Instant>,
}

/// The fetcher (see the module documentation). The verify path holds it as the key ring's
/// [`UnknownKid`].
pub struct JwksFetcher {
    /// Weak: the ring holds the fetcher (as its [`UnknownKid`]), and the fetch thread ends
    /// once the ring, and so the app, is gone.
    ring: Weak<KeyRing>,
    settings: JwksSettings,
    clock: Arc<dyn Clock>,
    flight: Mutex<Flight>,
    /// Wakes the fetch loop for an unknown-`kid` fetch.
    kick: Arc<Notify>,
    /// Counts finished fetches; waiters watch it.
    done: watch::Sender<u64>,
    /// Fetches made, good or not (for the log and the tests' reading of it).
    fetches: AtomicU64,
}

impl JwksFetcher {
    /// Starts the fetch thread for `ring` (a [`KeyRing::remote`]) and installs the fetcher as
    /// its [`UnknownKid`]. Returns at once; the first fetch runs in the background.
    pub fn start(
        ring: Arc<KeyRing>,
        settings: JwksSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, JwksFetchError> {
        if !settings.url.starts_with("http://") {
            return Err(JwksFetchError::Url);
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // The JWKS is where it is configured to be; a redirect is a misconfiguration.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| JwksFetchError::Start(Box::new(e)))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| JwksFetchError::Start(Box::new(e)))?;
        let fetcher = Arc::new(Self {
            ring: Arc::downgrade(&ring),
            settings,
            clock,
            flight: Mutex::new(Flight::default()),
            kick: Arc::new(Notify::new()),
            done: watch::Sender::new(0),
            fetches: AtomicU64::new(0),
        });
        ring.on_unknown_kid(fetcher.clone());
        let weak = Arc::downgrade(&fetcher);
        std::thread::Builder::new()
            .name("jwks-fetch".to_owned())
            .spawn(move || runtime.block_on(fetch_loop(weak, client)))
            .map_err(|e| JwksFetchError::Start(Box::new(e)))?;
        Ok(fetcher)
    }

    /// Fetches made so far, good or not.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Asks for a fetch now, outside the cooldown (SIGHUP).
    pub fn fetch_now(&self) {
        self.kick.notify_one();
    }

    fn flight(&self) -> std::sync::MutexGuard<'_, Flight> {
        self.flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One fetch; returns how long to wait before the next timed one.
    async fn fetch_once(&self, client: &reqwest::Client, etag: &mut Option<String>) -> Duration {
        self.flight().in_flight = true;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let next = match self.get(client, etag).await {
            Ok(next) => next,
            Err(reason) => {
                tracing::warn!(
                    url = %self.settings.url,
                    reason,
                    "JWKS fetch failed: keeping the keys held"
                );
                MIN_REFRESH.min(self.settings.refresh)
            }
        };
        self.flight().in_flight = false;
        self.done.send_modify(|n| *n += 1);
        next
    }

    async fn get(
        &self,
        client: &reqwest::Client,
        etag: &mut Option<String>,
    ) -> Result<Duration, String> {
        let mut request = client.get(&self.settings.url);
        if let Some(tag) = etag.as_deref() {
            request = request.header(reqwest::header::IF_NONE_MATCH, tag);
        }
        let ring = self.ring.upgrade().ok_or("the service has stopped")?;
        let mut response = request.send().await.map_err(|e| e.to_string())?;
        let next = refresh_interval(response.headers(), self.settings.refresh);
        let usable_until = self
            .clock
            .now_unix()
            .saturating_add(self.settings.max_stale.as_secs());
        if response.status() == reqwest::StatusCode::NOT_MODIFIED && etag.is_some() {
            ring.still_good_until(usable_until);
            return Ok(next);
        }
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("the issuer answered {}", response.status()));
        }
        let new_etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Read at most MAX_JWKS_BYTES (+1 to tell a document that is too large).
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err("the JWKS is larger than 64 KiB".to_owned());
            }
        }
        let keys = parse_jwks(&body).map_err(|e| e.to_string())?;
        let text = String::from_utf8(body).map_err(|_| "the JWKS is not UTF-8".to_owned())?;
        let count = keys.len();
        if ring.replace(KeySet::from_jwks(keys, text), usable_until) {
            tracing::info!(url = %self.settings.url, keys = count, "JWKS fetched: new keys");
        }
        *etag = new_etag;
        Ok(next)
    }
}

/// The wait before the next timed fetch: `max-age` clamped to [`MIN_REFRESH`]..[`MAX_REFRESH`]
/// if the answer has one, else `--jwks-refresh`.
fn refresh_interval(headers: &reqwest::header::HeaderMap, default: Duration) -> Duration {
    headers
        .get_all(reqwest::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| value.trim().parse::<u64>().ok())?
        })
        .map_or(default, |secs| {
            Duration::from_secs(secs).clamp(MIN_REFRESH, MAX_REFRESH)
        })
}

/// Fetches at once, then on the timer or when kicked, for as long as the fetcher lives.
async fn fetch_loop(fetcher: Weak<JwksFetcher>, client: reqwest::Client) {
    let mut etag = None;
    loop {
        let Some(strong) = fetcher.upgrade() else {
            return;
        };
        let next = strong.fetch_once(&client, &mut etag).await;
        let kick = strong.kick.clone();
        // Not held while waiting, so that a stopped app's fetcher can go.
        drop(strong);
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = kick.notified() => {}
        }
    }
}

impl UnknownKid for JwksFetcher {
    fn refetch(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let waiter = {
            let mut flight = self.flight();
            if flight.in_flight {
                Some(self.done.subscribe())
            } else if flight
                .last_unknown_kid
                .is_some_and(|at| at.elapsed() < self.settings.unknown_kid_cooldown)
            {
                None
            } else {
                flight.last_unknown_kid = Some(Instant::now());
                // Marked in flight here, so that callers arriving before the loop wakes wait
                // for this fetch rather than asking for another.
                flight.in_flight = true;
                let waiter = self.done.subscribe();
                self.kick.notify_one();
                Some(waiter)
            }
        };
        Box::pin(async move {
            if let Some(mut waiter) = waiter {
                let _ = tokio::time::timeout(FETCH_TIMEOUT * 2, waiter.changed()).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{CACHE_CONTROL, HeaderMap, HeaderValue};

    #[test]
    fn max_age_is_honoured_within_its_clamp_and_its_absence_takes_the_default() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
            refresh_interval(&headers, Duration::from_secs(300))
        };
        assert_eq!(with("public, max-age=120"), Duration::from_secs(120));
        assert_eq!(with("max-age=1"), MIN_REFRESH);
        assert_eq!(with("public, MAX-AGE=86400"), MAX_REFRESH);
        assert_eq!(with("no-cache"), Duration::from_secs(300));
        assert_eq!(with("max-age=soon"), Duration::from_secs(300));
        assert_eq!(
            refresh_interval(&HeaderMap::new(), Duration::from_secs(300)),
            Duration::from_secs(300)
        );
    }
}
