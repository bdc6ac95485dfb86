//! The backends' operations in isolation: issue, verify (valid, invalid, expired), revoke, each
//! backend given the same identity, so the figures differ only by mechanism.
//!
//! Run with `cargo bench --bench backends` (about two minutes; needs Redis at
//! `AUTHLAB_REDIS_URL` or `redis://127.0.0.1:6379`, and skips the Redis groups if it is down).
//! Filter with criterion's usual argument: `cargo bench --bench backends -- session/verify`.
//!
//! What each group tells:
//! - `session/verify_live/{1k,100k,1M}`: a map lookup as the live population grows (the target is
//!   <= 150 ns at 1M). Ids are verified round-robin over a 16k sample spread across the map, so
//!   the lookups are not all served from a hot cache line.
//! - `jwt/verify_valid` beside `jwt/floor_hmac_sha256`: the floor is a bare HMAC-SHA256 (aws-lc-rs,
//!   the same library jsonwebtoken uses) over the very same signing input, measured in the same
//!   run; the target is verify <= 2 us and within 4x of the floor. `jwt/jsonwebtoken_decode` is the
//!   library's own `decode` with equivalent validation, for reference.
//! - `jwt_alg/{sign,verify}/{HS256,EdDSA,ES256}`: the cost of each signing algorithm through the
//!   backend (`--jwt-alg`), keys parsed once; verify with the denylist off.
//! - `redis/*`: one round trip to the local Redis per operation (loopback), under a unique prefix
//!   that is deleted at the end.
//!
//! Session and stateless-JWT futures never wait on I/O, so they are polled to completion directly
//! (no runtime in the measurement); Redis operations run on a current-thread Tokio runtime.

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use authlab::backends::{self, JwtBackend};
use authlab::config::{DenylistMode, RefreshKind, Settings, Switch};
use authlab_core::{
    AuthError, Authenticator, ClientInfo, Clock, Identity, ManualClock, SystemClock,
};
use authlab_jwt::{JwtSecret, KeyAlg, KeyDir, KeyRing};
use authlab_redis::{RedisConnection, RedisTokenAuthenticator};
use authlab_session::SessionAuthenticator;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use secrecy::ExposeSecret;

/// Random-looking (`head -c 36 /dev/urandom | base64`), as the secret rules at start-up require.
const SECRET: &[u8] = b"PTgc7UiU9qthIZoGzfUGR9xKyG9I6OPxAA2XEGnfg3bCTV8k";
const TTL: Duration = Duration::from_secs(900);

/// Drives a future that never waits on I/O to completion, without a runtime.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
    }
}

fn alice() -> Identity {
    Identity::new(7, "alice")
}

fn client() -> ClientInfo {
    ClientInfo::default()
}

fn issue_str<A: Authenticator>(auth: &A, who: &Identity) -> String {
    match ready(auth.issue(who, &client())) {
        Ok(issued) => issued.credential.expose_secret().to_owned(),
        Err(err) => panic!("issue failed: {err}"),
    }
}

/// The settings every backend here is built from (by the server's own builders, so what is
/// measured is what the server runs): an hour of idle time, 15-minute access tokens, and the
/// Redis at `AUTHLAB_REDIS_URL` under a unique prefix.
fn settings() -> Settings {
    let mut settings = Settings::defaults();
    settings.session_ttl = Duration::from_secs(3600);
    settings.access_ttl = TTL;
    settings.redis.url = redis_url();
    settings.redis_prefix = format!("authlab-bench:{}:", uuid::Uuid::new_v4().simple());
    settings
}

fn secret() -> JwtSecret {
    match JwtSecret::new(SECRET.to_vec()) {
        Ok(secret) => secret,
        Err(err) => panic!("bench secret: {err}"),
    }
}

fn redis_connection(settings: &Settings) -> Arc<RedisConnection> {
    match backends::redis_connection(&settings.redis) {
        Ok(conn) => conn,
        Err(err) => panic!("Redis URL: {err}"),
    }
}

fn session_store() -> SessionAuthenticator {
    backends::session_backend(&settings(), Arc::new(SystemClock))
}

fn session(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    // Distinct users, prepared once: a login is one user's session, and the per-user index
    // should look like life (a few sessions per user), not one user with millions.
    let users: Vec<Identity> = (0..4096)
        .map(|n| Identity::new(n, format!("user{n:07}")))
        .collect();
    let mut turn = 0usize;
    let mut next_user = move || {
        turn = (turn + 1) % users.len();
        users[turn].clone()
    };
    let store = session_store();
    group.bench_function("issue", |b| {
        // Each iteration adds a session; the map grows by a few million at most during a run.
        b.iter_batched(
            &mut next_user,
            |who| black_box(ready(store.issue(&who, &client())).is_ok()),
            BatchSize::SmallInput,
        )
    });
    drop(store);
    let store = session_store();
    group.bench_function("verify_invalid", |b| {
        // Well-formed but unknown: a full lookup that misses.
        let unknown = "AAAAAAAAAAAAAAAAAAAAAAAAAAA";
        b.iter(|| black_box(ready(store.verify(black_box(unknown))).is_err()))
    });
    group.bench_function("verify_malformed", |b| {
        b.iter(|| black_box(ready(store.verify(black_box("not-a-session-id"))).is_err()))
    });
    group.bench_function("revoke", |b| {
        b.iter_batched(
            || issue_str(&store, &next_user()),
            |id| black_box(ready(store.revoke(&id)).is_ok()),
            BatchSize::SmallInput,
        )
    });
    drop(store);

    // Verify as the live population grows. One store, filled cumulatively; every session is a
    // distinct user, as in life.
    let store = session_store();
    let mut sample: Vec<String> = Vec::new();
    let mut live = 0usize;
    for (label, size) in [("1k", 1_000usize), ("100k", 100_000), ("1M", 1_000_000)] {
        let stride = (size / 16_384).max(1);
        sample.clear();
        while live < size {
            let id = issue_str(
                &store,
                &Identity::new(live as i64, format!("user{live:07}")),
            );
            live += 1;
            if live.is_multiple_of(stride) || size <= 16_384 {
                sample.push(id);
            }
        }
        let mut next = 0usize;
        group.bench_with_input(BenchmarkId::new("verify_live", label), &size, |b, _| {
            b.iter(|| {
                next = (next + 1) % sample.len();
                black_box(ready(store.verify(black_box(&sample[next]))).is_ok())
            })
        });
    }
    group.finish();
}

/// The JWT backend with stateless refresh tokens (issue does no I/O, so the JWT group measures
/// signing alone), with or without the Redis denylist.
fn jwt_backend(settings: &Settings, clock: Arc<dyn Clock>, denylist: DenylistMode) -> JwtBackend {
    let mut settings = settings.clone();
    settings.jwt_refresh = RefreshKind::Stateless;
    settings.jwt_denylist = denylist;
    match backends::jwt_backend(
        &settings,
        &redis_connection(&settings),
        secret(),
        None,
        clock,
    ) {
        Ok(backend) => backend,
        Err(err) => panic!("jwt backend: {err}"),
    }
}

fn jwt(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt");
    let settings = settings();
    let auth = jwt_backend(&settings, Arc::new(SystemClock), DenylistMode::Off);
    let token = issue_str(&auth, &alice());
    // The same user's token, issued by a clock two lifetimes ago: expired now.
    let past = SystemClock.now_unix() - 2 * TTL.as_secs();
    let expired = issue_str(
        &jwt_backend(
            &settings,
            Arc::new(ManualClock::new(past)),
            DenylistMode::Off,
        ),
        &alice(),
    );
    // One flipped character in the signature.
    let mut tampered = token.clone().into_bytes();
    if let Some(last) = tampered.last_mut() {
        *last = if *last == b'A' { b'B' } else { b'A' };
    }
    let tampered = String::from_utf8(tampered).unwrap_or_default();

    group.bench_function("issue", |b| {
        b.iter(|| black_box(ready(auth.issue(black_box(&alice()), &client())).is_ok()))
    });
    group.bench_function("verify_valid", |b| {
        b.iter(|| black_box(ready(auth.verify(black_box(&token))).is_ok()))
    });
    group.bench_function("verify_invalid_signature", |b| {
        b.iter(|| black_box(ready(auth.verify(black_box(&tampered))).is_err()))
    });
    group.bench_function("verify_expired", |b| {
        b.iter(|| black_box(ready(auth.verify(black_box(&expired))).is_err()))
    });
    group.bench_function("revoke_without_denylist", |b| {
        b.iter(|| black_box(ready(auth.revoke(black_box(&token))).is_ok()))
    });

    // The floor: HMAC-SHA256 over the same signing input, with a key prepared once.
    let signing_input = token.rsplit_once('.').map_or("", |(input, _)| input);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
    group.bench_function("floor_hmac_sha256", |b| {
        b.iter(|| {
            black_box(aws_lc_rs::hmac::sign(
                &key,
                black_box(signing_input.as_bytes()),
            ))
        })
    });
    // The library's own decode with equivalent checks, for reference.
    let decoding = jsonwebtoken::DecodingKey::from_secret(SECRET);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&["authlab"]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    group.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| {
            black_box(
                jsonwebtoken::decode::<authlab_jwt::Claims>(
                    black_box(&token),
                    &decoding,
                    &validation,
                )
                .is_ok(),
            )
        })
    });
    group.finish();
    eprintln!(
        "jwt: token {} bytes, signing input {} bytes",
        token.len(),
        signing_input.len()
    );
}

/// Sign and verify per algorithm (`jwt_alg/{sign,verify}/{HS256,EdDSA,ES256}`), denylist off:
/// HS256 through the same backend as `jwt/*`, EdDSA and ES256 with a key directory generated for
/// the run (keys parsed once, as the server holds them). `jwt_alg/verify_cached/{EdDSA,ES256}`
/// verifies the same token through the verified-token cache (`--jwt-verify-cache`), which
/// answers from the second call on: what `/jwt/me` costs for a token presented again. The
/// `verify` rows have the cache off. HS256 tokens are never cached.
fn jwt_algs(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt_alg");
    let settings = settings();
    let dir = std::env::temp_dir().join(format!(
        "authlab-bench-keys-{}-{}",
        std::process::id(),
        SystemClock.now_unix()
    ));
    for alg in [None, Some(KeyAlg::EdDSA), Some(KeyAlg::ES256)] {
        let auth = jwt_backend(&settings, Arc::new(SystemClock), DenylistMode::Off);
        let (name, auth) = match alg {
            None => ("HS256", auth),
            Some(alg) => {
                let keys = KeyDir::new(dir.join(alg.name()));
                let ring = keys
                    .generate(alg, 0)
                    .and_then(|_| keys.rotate(None, TTL, 0))
                    .and_then(|_| KeyRing::open(keys, None));
                match ring {
                    Ok(ring) => (alg.name(), auth.with_keys(ring)),
                    Err(err) => panic!("key directory: {err}"),
                }
            }
        };
        let token = issue_str(&auth, &alice());
        let claims = match auth.decode(&token) {
            Ok(claims) => claims,
            Err(err) => panic!("{name}: our own token does not verify: {err:?}"),
        };
        group.bench_function(BenchmarkId::new("sign", name), |b| {
            b.iter(|| black_box(auth.sign_access(black_box(&claims)).is_ok()))
        });
        group.bench_function(BenchmarkId::new("verify", name), |b| {
            b.iter(|| black_box(ready(auth.verify(black_box(&token))).is_ok()))
        });
        if alg.is_some() {
            let cached = auth.with_verify_cache(100_000);
            assert!(
                ready(cached.verify(&token)).is_ok(),
                "{name}: cached verify"
            );
            assert_eq!(cached.verify_cache_len(), 1, "{name}: the token is cached");
            group.bench_function(BenchmarkId::new("verify_cached", name), |b| {
                b.iter(|| black_box(ready(cached.verify(black_box(&token))).is_ok()))
            });
        }
        eprintln!("jwt_alg: {name} token {} bytes", token.len());
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn redis_url() -> String {
    std::env::var("AUTHLAB_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn redis_backends(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => panic!("tokio runtime: {err}"),
    };
    let settings = settings();
    let url = &settings.redis.url;
    let prefix = &settings.redis_prefix;
    let conn = redis_connection(&settings);
    if rt.block_on(conn.ping()).is_err() {
        eprintln!("redis: no Redis at {url}; skipping the Redis groups");
        return;
    }
    let build = |settings: &Settings| match backends::redis_backend(settings, &conn, &secret()) {
        Ok(backend) => backend,
        Err(err) => panic!("redis backend: {err}"),
    };
    let auth = build(&settings);
    let issue = |auth: &RedisTokenAuthenticator| -> String {
        match rt.block_on(auth.issue(&alice(), &client())) {
            Ok(issued) => issued.credential.expose_secret().to_owned(),
            Err(err) => panic!("issue failed: {err}"),
        }
    };
    let token = issue(&auth);

    let mut group = c.benchmark_group("redis");
    group.bench_function("issue", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(auth.issue(&alice(), &client()).await.is_ok()) })
    });
    group.bench_function("verify_valid", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(auth.verify(black_box(&token)).await.is_ok()) })
    });
    group.bench_function("verify_invalid", |b| {
        // Well-formed but unknown: the GET still goes to Redis and misses.
        let unknown = "00000000-0000-4000-8000-000000000000";
        b.to_async(&rt)
            .iter(|| async { black_box(auth.verify(black_box(unknown)).await.is_err()) })
    });
    group.bench_function("revoke", |b| {
        b.iter_batched(
            || issue(&auth),
            |token| black_box(rt.block_on(auth.revoke(&token)).is_ok()),
            BatchSize::SmallInput,
        )
    });

    // The same token through `--redis-cache on`: after the first miss, every verify is a hit
    // (a map lookup and the decode of the stored identity), while the uncached verify above
    // pays a Redis round trip.
    let mut cached_settings = settings.clone();
    cached_settings.redis_cache = Switch::On;
    let cached = build(&cached_settings);
    warm_up_cache(&rt, || cached.verify(&token));
    group.bench_function("verify_valid_cached", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cached.verify(black_box(&token)).await.is_ok()) })
    });

    let with_denylist = jwt_backend(&settings, Arc::new(SystemClock), DenylistMode::On);
    // Issuing with a denylist reads its epoch from Redis first, so it runs on the runtime.
    let jwt_token = match rt.block_on(with_denylist.issue(&alice(), &client())) {
        Ok(issued) => issued.credential.expose_secret().to_owned(),
        Err(err) => panic!("issue failed: {err}"),
    };
    group.bench_function("jwt_verify_with_denylist", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(with_denylist.verify(black_box(&jwt_token)).await.is_ok()) })
    });
    let denylist_cached = jwt_backend(&settings, Arc::new(SystemClock), DenylistMode::Cached);
    warm_up_cache(&rt, || denylist_cached.verify(&jwt_token));
    group.bench_function("jwt_verify_with_denylist_cached", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(denylist_cached.verify(black_box(&jwt_token)).await.is_ok())
        })
    });
    group.finish();

    if let Err(err) = rt.block_on(conn.delete_prefix(prefix)) {
        eprintln!("redis: could not delete the bench keys under {prefix}: {err}");
    }
}

/// Verifies until the client-side cache answers (its tracking connection is up and its first
/// heartbeat acknowledged), so the measurement sees hits only.
fn warm_up_cache<F, Fut>(rt: &tokio::runtime::Runtime, verify: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Identity, AuthError>>,
{
    for _ in 0..200 {
        if let Err(err) = rt.block_on(verify()) {
            panic!("verify failed while warming the cache: {err}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn config() -> Criterion {
    // Small samples keep a full `cargo bench` to a couple of minutes on two cores; the
    // confidence intervals criterion prints say how much that costs in precision.
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = session, jwt, jwt_algs, redis_backends
}
criterion_main!(benches);
