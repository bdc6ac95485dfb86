//! The Redis client-side cache (`--redis-cache on`, `--jwt-denylist cached`): two instances on
//! one Redis, each serving tokens from memory, and every way the cache could serve a token Redis
//! no longer vouches for. Tests that kill, pause or restart Redis run a private `redis-server`.

use std::process::Command;
use std::time::Duration;

use authlab::config::{DenylistMode, Settings, Switch};
use authlab_compare::revocation::{self, RevocationProbe};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// The cache's staleness bound (`--redis-cache-staleness`, default 5 ms): a hit is served only
/// while a reply sent this recently was acknowledged, so every write acknowledged this long ago
/// is reflected in every hit.
const TRUST_WINDOW: Duration = Duration::from_millis(5);

pub(crate) fn cached(settings: &mut Settings) {
    settings.redis_cache = Switch::On;
    settings.jwt_denylist = DenylistMode::Cached;
}

/// Two instances on one Redis and one key prefix, both caching: A issues and revokes, B holds
/// the token in its cache.
async fn two_instances(customise: impl Fn(&mut Settings)) -> (TestApp, TestApp) {
    let a = spawn_app_with(|s| {
        cached(s);
        customise(s);
    })
    .await;
    let (prefix, url) = (
        a.settings.redis_prefix.clone(),
        a.settings.redis.url.clone(),
    );
    let b = spawn_app_with(|s| {
        cached(s);
        customise(s);
        s.redis_prefix = prefix;
        s.redis.url = url;
    })
    .await;
    (a, b)
}

/// The cache a backend's answers come from, as `/metrics` labels it.
fn cache_of(backend: Backend) -> &'static str {
    match backend {
        Backend::Jwt => "jwt_denylist",
        _ => "redis",
    }
}

/// Presents `credential` to `app` until an acceptance was served from its cache (the tracking
/// connection is up and the token cached), so that what follows starts from a cached token.
pub(crate) async fn cache_on(app: &TestApp, backend: Backend, credential: &Credential) {
    let cached = eventually(Duration::from_secs(5), || async {
        let hits = cache_metric(app, "authlab_redis_cache_hits_total", cache_of(backend)).await;
        app.me(backend, credential).await.status() == StatusCode::OK
            && app.me(backend, credential).await.status() == StatusCode::OK
            && cache_metric(app, "authlab_redis_cache_hits_total", cache_of(backend)).await > hits
    })
    .await;
    assert!(
        cached,
        "{backend}: the token is accepted from the other instance's cache"
    );
}

async fn tokens(app: &TestApp, backend: Backend, user: &TestUser) -> (Credential, String) {
    let response = app
        .login_response(backend, &user.username, &user.password)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    (
        Credential::Bearer(body["access_token"].as_str().unwrap().to_owned()),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn refused_after_the_trust_window(app: &TestApp, backend: Backend, credential: &Credential) {
    tokio::time::sleep(TRUST_WINDOW).await;
    let status = app.me(backend, credential).await.status();
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "{backend}: a revoked token is refused"
    );
}

pub(crate) async fn cache_metric(app: &TestApp, series: &str, cache: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    let wanted = format!("{series}{{cache=\"{cache}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{wanted} in /metrics:\n{text}"))
}

#[tokio::test]
async fn a_logout_on_one_instance_is_refused_by_another_that_had_the_token_cached() {
    let (a, b) = two_instances(|_| {}).await;
    let user = a.register().await;
    for backend in token_backends() {
        let credential = a.login(backend, &user).await;
        cache_on(&b, backend, &credential).await;
        assert_eq!(
            a.logout(backend, &credential).await.status(),
            StatusCode::NO_CONTENT
        );
        // The instance that logged out forgets at once, without waiting for Redis.
        assert_eq!(
            a.me(backend, &credential).await.status(),
            StatusCode::UNAUTHORIZED
        );
        refused_after_the_trust_window(&b, backend, &credential).await;
    }
    // It really was served from memory on B.
    assert!(cache_metric(&b, "authlab_redis_cache_hits_total", "redis").await >= 1.0);
    assert!(cache_metric(&b, "authlab_redis_cache_hits_total", "jwt_denylist").await >= 1.0);
}

#[tokio::test]
async fn logout_all_on_one_instance_is_refused_by_another_that_had_the_tokens_cached() {
    let (a, b) = two_instances(|_| {}).await;
    let user = a.register().await;
    for backend in token_backends() {
        let first = a.login(backend, &user).await;
        let second = a.login(backend, &user).await;
        cache_on(&b, backend, &first).await;
        cache_on(&b, backend, &second).await;
        let path = format!("/{backend}/logout-all");
        let response = a.authed(Method::POST, &path, &first).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{backend}: {}",
            response.status()
        );
        refused_after_the_trust_window(&b, backend, &first).await;
        refused_after_the_trust_window(&b, backend, &second).await;
    }
}

#[tokio::test]
async fn a_password_change_on_one_instance_is_refused_by_another_that_had_the_tokens_cached() {
    let (a, b) = two_instances(|_| {}).await;
    let user = a.register().await;
    let opaque = a.login(Backend::Redis, &user).await;
    let jwt = a.login(Backend::Jwt, &user).await;
    cache_on(&b, Backend::Redis, &opaque).await;
    cache_on(&b, Backend::Jwt, &jwt).await;
    let changed = a
        .authed(Method::POST, "/users/me/password", &opaque)
        .json(&json!({ "old_password": user.password, "new_password": "a brand new password" }))
        .send()
        .await
        .unwrap();
    assert!(changed.status().is_success(), "{}", changed.status());
    refused_after_the_trust_window(&b, Backend::Redis, &opaque).await;
    refused_after_the_trust_window(&b, Backend::Jwt, &jwt).await;
}

#[tokio::test]
async fn a_reused_refresh_token_on_one_instance_is_refused_by_another_that_had_the_token_cached() {
    let (a, b) = two_instances(|s| s.refresh_grace = Duration::ZERO).await;
    let user = a.register().await;
    for backend in token_backends() {
        let (_, refresh) = tokens(&a, backend, &user).await;
        let body = json!({ "refresh_token": refresh });
        let rotated = a.post_json(&format!("/{backend}/refresh"), &body).await;
        assert_eq!(rotated.status(), StatusCode::OK);
        let rotated: Value = rotated.json().await.unwrap();
        let access = Credential::Bearer(rotated["access_token"].as_str().unwrap().to_owned());
        cache_on(&b, backend, &access).await;
        // The spent refresh token again: theft is assumed, and the whole family dies.
        let replay = a.post_json(&format!("/{backend}/refresh"), &body).await;
        assert_error(replay, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
        refused_after_the_trust_window(&b, backend, &access).await;
    }
}

/// The bound: p99 over at least 1,000 revoke-then-probe samples across two instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_the_other_instance_within_5ms_at_p99() {
    let (a, b) = two_instances(|s| s.refresh_grace = Duration::ZERO).await;
    let user = a.register().await;
    let addr = |app: &TestApp| app.address.trim_start_matches("http://").parse().unwrap();
    for backend in ["redis", "jwt"] {
        let probe = RevocationProbe {
            issuer: addr(&a),
            other: addr(&b),
            backend,
            username: user.username.clone(),
            password: user.password.clone(),
        };
        let latency = revocation::measure(
            &probe,
            1_000,
            Duration::from_secs(1),
            Duration::from_secs(5),
        )
        .await
        .expect("every sample ran");
        eprintln!("{backend}: revocation latency across instances {latency:?}");
        assert_eq!(latency.never_refused, 0, "{backend}: {latency:?}");
        assert!(latency.p99_us <= 5_000, "{backend}: {latency:?}");
    }
    // B answered from memory: the bound is about cached answers, not round trips.
    assert!(cache_metric(&b, "authlab_redis_cache_hit_ratio", "redis").await > 0.2);
}

/// Starts a private Redis with `DEBUG` allowed (to switch its active expiry off).
fn private_redis_with_debug() -> PrivateRedis {
    PrivateRedis::start_with(&["--enable-debug-command", "yes"])
}

pub(crate) fn redis_cli(redis: &PrivateRedis, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_cached_token_is_refused_when_its_key_expires_even_if_redis_never_says_so() {
    let redis = private_redis_with_debug();
    let url = redis.url();
    let (a, b) = two_instances(|s| {
        s.redis.url = url.clone();
        s.access_ttl = Duration::from_secs(1);
    })
    .await;
    // Without active expiry Redis deletes an expired key only when it is touched, so no
    // invalidation comes: only the entry's own deadline (the key's PTTL) ends it.
    assert_eq!(
        redis_cli(&redis, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]).trim(),
        "OK"
    );
    let user = a.register().await;
    let credential = a.login(Backend::Redis, &user).await;
    cache_on(&b, Backend::Redis, &credential).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        b.me(Backend::Redis, &credential).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn killing_the_tracking_connection_empties_the_cache_before_it_answers_again() {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let (a, b) = two_instances(|s| s.redis.url = url.clone()).await;
    let user = a.register().await;
    for kill in [
        &["CLIENT", "KILL", "TYPE", "normal"][..],
        &["CLIENT", "KILL", "ID"][..],
    ] {
        for backend in token_backends() {
            let credential = a.login(backend, &user).await;
            cache_on(&b, backend, &credential).await;
            if kill.len() == 3 {
                // Only the tracking connections (flag `t`), by id.
                let list = redis_cli(&redis, &["CLIENT", "LIST"]);
                let ids: Vec<String> = list
                    .lines()
                    .filter(|line| {
                        line.split(' ')
                            .any(|f| f.starts_with("flags=") && f.contains('t'))
                    })
                    .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
                    .map(str::to_owned)
                    .collect();
                assert!(!ids.is_empty(), "tracking connections in:\n{list}");
                for id in ids {
                    let mut args = kill.to_vec();
                    args.push(&id);
                    redis_cli(&redis, &args);
                }
            } else {
                redis_cli(&redis, kill);
            }
            // The revocation B's tracking connection cannot hear: it was cut.
            let logout = a.logout(backend, &credential).await.status();
            assert!(
                logout == StatusCode::NO_CONTENT || logout == StatusCode::SERVICE_UNAVAILABLE,
                "{logout}"
            );
            if logout == StatusCode::SERVICE_UNAVAILABLE {
                // A's own connection was killed too; its next attempt reconnects.
                assert!(
                    eventually(Duration::from_secs(5), || async {
                        a.logout(backend, &credential).await.status() == StatusCode::NO_CONTENT
                    })
                    .await
                );
            }
            let status = b.me(backend, &credential).await.status();
            assert_ne!(
                status,
                StatusCode::OK,
                "{backend} after {kill:?}: a stale accept"
            );
            assert!(
                eventually(Duration::from_secs(5), || async {
                    b.me(backend, &credential).await.status() == StatusCode::UNAUTHORIZED
                })
                .await
            );
        }
    }
    assert!(cache_metric(&b, "authlab_redis_cache_flushes_total", "redis").await >= 2.0);
}

#[tokio::test]
async fn a_restarted_redis_leaves_nothing_cached() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let (a, b) = two_instances(|s| s.redis.url = url.clone()).await;
    let user = a.register().await;
    let opaque = a.login(Backend::Redis, &user).await;
    let jwt = a.login(Backend::Jwt, &user).await;
    cache_on(&b, Backend::Redis, &opaque).await;
    cache_on(&b, Backend::Jwt, &jwt).await;
    // Without persistence the restart loses every key: the token, and the denylist's epoch.
    redis.stop();
    redis.restart();
    for (backend, credential) in [(Backend::Redis, &opaque), (Backend::Jwt, &jwt)] {
        let status = b.me(backend, credential).await.status();
        assert_ne!(
            status,
            StatusCode::OK,
            "{backend}: a stale accept after a restart"
        );
        assert!(
            eventually(Duration::from_secs(5), || async {
                b.me(backend, credential).await.status() == StatusCode::UNAUTHORIZED
            })
            .await,
            "{backend}: refused once Redis is back"
        );
    }
}

#[tokio::test]
async fn a_paused_redis_stops_cache_hits_and_fails_closed() {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let (a, b) = two_instances(|s| {
        s.redis.url = url.clone();
        s.redis.timeout = Duration::from_millis(200);
    })
    .await;
    let user = a.register().await;
    let opaque = a.login(Backend::Redis, &user).await;
    let jwt = a.login(Backend::Jwt, &user).await;
    cache_on(&b, Backend::Redis, &opaque).await;
    cache_on(&b, Backend::Jwt, &jwt).await;
    let resume = redis.pause();
    // A hung Redis answers no heartbeat: after the staleness bound hits stop, and the requests
    // that go to Redis time out: 503, never the cached 200.
    tokio::time::sleep(TRUST_WINDOW).await;
    for (backend, credential) in [(Backend::Redis, &opaque), (Backend::Jwt, &jwt)] {
        assert_error(
            b.me(backend, credential).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "backend_unavailable",
        )
        .await;
    }
    drop(resume); // SIGCONT
    for (backend, credential) in [(Backend::Redis, &opaque), (Backend::Jwt, &jwt)] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                b.me(backend, credential).await.status() == StatusCode::OK
            })
            .await,
            "{backend}: served again once Redis answers"
        );
    }
}

#[tokio::test]
async fn the_cache_holds_at_most_its_size_and_reports_its_hit_ratio() {
    let (a, b) = two_instances(|s| s.redis_cache_size = 4).await;
    let user = a.register().await;
    for _ in 0..8 {
        let credential = a.login(Backend::Redis, &user).await;
        cache_on(&b, Backend::Redis, &credential).await;
    }
    assert!(cache_metric(&b, "authlab_redis_cache_entries", "redis").await <= 4.0);
    assert!(cache_metric(&b, "authlab_redis_cache_evictions_total", "redis").await >= 4.0);
    let hits = cache_metric(&b, "authlab_redis_cache_hits_total", "redis").await;
    let misses = cache_metric(&b, "authlab_redis_cache_misses_total", "redis").await;
    let ratio = cache_metric(&b, "authlab_redis_cache_hit_ratio", "redis").await;
    assert!(hits >= 8.0 && misses >= 8.0, "{hits} hits, {misses} misses");
    assert!((ratio - hits / (hits + misses)).abs() < 1e-9, "{ratio}");
}

/// One field of a private Redis's `INFO` (`total_commands_processed`).
fn redis_info(redis: &PrivateRedis, field: &str) -> u64 {
    let text = redis_cli(redis, &["INFO", "everything"]);
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in INFO:\n{text}"))
}

/// One caching instance on `redis` (a private server), with `customise` applied.
async fn cached_app_on(redis: &PrivateRedis, customise: impl Fn(&mut Settings)) -> TestApp {
    let url = redis.url();
    spawn_app_with(|s| {
        cached(s);
        s.redis.url = url.clone();
        customise(s);
    })
    .await
}

#[tokio::test]
async fn an_idle_instance_sends_redis_nothing() {
    let redis = PrivateRedis::start();
    let app = cached_app_on(&redis, |_| {}).await;
    let user = app.register().await;
    let opaque = app.login(Backend::Redis, &user).await;
    let jwt = app.login(Backend::Jwt, &user).await;
    // Both caches connected and serving: their tracking connections are up.
    cache_on(&app, Backend::Redis, &opaque).await;
    cache_on(&app, Backend::Jwt, &jwt).await;
    let before = redis_info(&redis, "total_commands_processed");
    // Idle time is what is measured here, so this test waits in real time. With a heartbeat on a
    // timer (1 ms), two caches sent about 4,000 commands in these 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = redis_info(&redis, "total_commands_processed");
    // The first INFO itself is the only command Redis processed in between.
    assert!(
        after - before <= 1,
        "an idle instance sent Redis {} commands in 2 s",
        after - before - 1
    );
}

#[tokio::test]
async fn a_busy_instance_sends_at_most_two_heartbeats_per_staleness_bound() {
    const STALENESS: Duration = Duration::from_millis(20);
    let redis = PrivateRedis::start();
    let app = cached_app_on(&redis, |s| s.redis_cache_staleness = STALENESS).await;
    let user = app.register().await;
    let opaque = app.login(Backend::Redis, &user).await;
    cache_on(&app, Backend::Redis, &opaque).await;
    let beats = "authlab_redis_cache_heartbeats_total";
    let pings = cache_metric(&app, beats, "redis").await;
    let hits = cache_metric(&app, "authlab_redis_cache_hits_total", "redis").await;
    let started = std::time::Instant::now();
    let mut requests = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        assert_eq!(
            app.me(Backend::Redis, &opaque).await.status(),
            StatusCode::OK
        );
        requests += 1;
    }
    let elapsed = started.elapsed();
    let pings = (cache_metric(&app, beats, "redis").await - pings) as u64;
    let hits = cache_metric(&app, "authlab_redis_cache_hits_total", "redis").await - hits;
    // One heartbeat at most per half bound: the proof is renewed only once it is W/2 old, and
    // only one heartbeat is in flight at a time.
    let bound = (elapsed.as_secs_f64() / (STALENESS.as_secs_f64() / 2.0)).ceil() as u64 + 1;
    assert!(
        pings <= bound,
        "{pings} heartbeats in {elapsed:?} of steady traffic ({requests} requests); at most {bound}"
    );
    // And the traffic was served from memory: the heartbeats kept the proof fresh.
    assert!(
        hits as u64 * 2 > requests,
        "{hits} of {requests} requests were cache hits"
    );
}

#[tokio::test]
async fn a_swapped_database_empties_the_cache_under_steady_traffic() {
    let redis = PrivateRedis::start();
    // A long staleness bound, so that steady traffic is all hits and heartbeats (no lookup ever
    // finds the proof expired and reads the token again by itself).
    let app = cached_app_on(&redis, |s| {
        s.redis_cache_staleness = Duration::from_millis(400);
    })
    .await;
    let user = app.register().await;
    let opaque = app.login(Backend::Redis, &user).await;
    cache_on(&app, Backend::Redis, &opaque).await;
    // SWAPDB sends no invalidation and leaves the connection up: database 0, which the instance
    // reads, now holds what database 1 held (nothing), so the token no longer exists.
    assert_eq!(redis_cli(&redis, &["SWAPDB", "0", "1"]).trim(), "OK");
    // Steady traffic keeps the proof fresh with heartbeats; each one reads the dataset mark,
    // which is gone from database 0, so the cache is emptied and the token looked up again.
    let started = std::time::Instant::now();
    let mut last = StatusCode::OK;
    while started.elapsed() < Duration::from_millis(1_500) {
        last = app.me(Backend::Redis, &opaque).await.status();
    }
    assert_eq!(
        last,
        StatusCode::UNAUTHORIZED,
        "a token that is not in the database Redis now serves is refused"
    );
}

#[tokio::test]
async fn a_debug_reload_empties_the_cache() {
    // DEBUG RELOAD replaces the dataset with what it loads from disk; Redis tells tracking
    // clients with an invalidation of every key, which the cache treats like FLUSHALL.
    // DEBUG RELOAD writes an RDB file first: into a directory of the test's own.
    let dir = std::env::temp_dir().join(format!("authlab-reload-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let dir_arg = dir.to_string_lossy().into_owned();
    let redis = PrivateRedis::start_with(&["--enable-debug-command", "yes", "--dir", &dir_arg]);
    let app = cached_app_on(&redis, |_| {}).await;
    let user = app.register().await;
    let opaque = app.login(Backend::Redis, &user).await;
    cache_on(&app, Backend::Redis, &opaque).await;
    let flushes = cache_metric(&app, "authlab_redis_cache_flushes_total", "redis").await;
    assert_eq!(redis_cli(&redis, &["DEBUG", "RELOAD"]).trim(), "OK");
    assert!(
        eventually(Duration::from_secs(2), || async {
            cache_metric(&app, "authlab_redis_cache_flushes_total", "redis").await > flushes
        })
        .await,
        "the reload emptied the cache"
    );
    assert_eq!(
        cache_metric(&app, "authlab_redis_cache_entries", "redis").await,
        0.0
    );
    // The reloaded data still holds the token: it is read again, and accepted.
    assert_eq!(
        app.me(Backend::Redis, &opaque).await.status(),
        StatusCode::OK
    );
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_sparse_request_is_served_from_the_cache_after_one_heartbeat() {
    // Requests further apart than the staleness bound find the proof lapsed every time. Real
    // time is what is under test, so the test sleeps between requests.
    const STALENESS: Duration = Duration::from_millis(50);
    let redis = PrivateRedis::start();
    let app = cached_app_on(&redis, |s| s.redis_cache_staleness = STALENESS).await;
    let user = app.register().await;
    for backend in [Backend::Redis, Backend::Jwt] {
        let credential = app.login(backend, &user).await;
        cache_on(&app, backend, &credential).await;
        let cache = cache_of(backend);
        let counters = || async {
            (
                cache_metric(&app, "authlab_redis_cache_hits_total", cache).await,
                cache_metric(&app, "authlab_redis_cache_misses_total", cache).await,
                cache_metric(&app, "authlab_redis_cache_heartbeats_total", cache).await,
            )
        };
        for _ in 0..3 {
            tokio::time::sleep(STALENESS * 3).await;
            let (hits, misses, beats) = counters().await;
            assert_eq!(app.me(backend, &credential).await.status(), StatusCode::OK);
            let (hits_after, misses_after, beats_after) = counters().await;
            // Every key the check looks up (one token, or the JWT denylist's keys) waited for
            // the same heartbeat and was then served from memory: nothing was read again.
            assert!(hits_after > hits, "{backend}: {hits} -> {hits_after} hits");
            assert_eq!(misses_after, misses, "{backend}: no lookup went to Redis");
            assert_eq!(beats_after - beats, 1.0, "{backend}: one shared heartbeat");
        }
    }
}
