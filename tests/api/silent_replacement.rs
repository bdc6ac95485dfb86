//! A replica promoted by hand, and the old master demoted under it (issue 18): the dataset a
//! caching instance reads changes under its tracking connection, which stays up. Two ways:
//! - the old master took writes after the promotion: it cannot continue from the new master's
//!   stream, and its data is replaced through a full sync. What tells the cache: Redis empties
//!   the old data before it loads the new master's snapshot, and that emptying is a flush for
//!   tracking clients (an invalidation of every key, as `FLUSHALL` sends). The dataset mark
//!   cannot tell: the promoted replica holds the very mark it copied from the old master;
//! - it took none: it continues from the new master's stream (a partial resync), and each write
//!   the new master took (the revocations) arrives as a write, with its invalidation.

use std::time::Duration;

use authlab::config::{DenylistMode, Switch};
use reqwest::StatusCode;
use serde_json::Value;

use crate::client_cache::redis_cli;
use crate::helpers::*;

/// The caches' staleness bound (the default): a hit needs a proof this recent.
const STALENESS: Duration = Duration::from_millis(5);

/// One series of `/metrics` for one cache (`redis` or `jwt_denylist`).
async fn cache_metric(app: &TestApp, series: &str, cache: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap_or_default();
    let wanted = format!("{series}{{cache=\"{cache}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{wanted} in /metrics:\n{text}"))
}

/// Presents `credential` until the answer came from the cache.
async fn served_from_cache(app: &TestApp, backend: Backend, credential: &Credential) {
    let cache = if backend == Backend::Jwt {
        "jwt_denylist"
    } else {
        "redis"
    };
    let cached = eventually(Duration::from_secs(5), || async {
        let hits = cache_metric(app, "authlab_redis_cache_hits_total", cache).await;
        app.me(backend, credential).await.status() == StatusCode::OK
            && app.me(backend, credential).await.status() == StatusCode::OK
            && cache_metric(app, "authlab_redis_cache_hits_total", cache).await > hits
    })
    .await;
    assert!(cached, "{backend}: the token is served from the cache");
}

/// One field of `INFO replication` / `INFO stats`.
fn info(redis: &PrivateRedis, field: &str) -> Option<String> {
    redis_cli(redis, &["INFO", "everything"])
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(|value| value.trim().to_owned())
}

/// Waits until `replica` is connected to its master and has applied everything it sent.
async fn in_sync(master: &PrivateRedis, replica: &PrivateRedis) -> bool {
    eventually(Duration::from_secs(10), || async {
        info(replica, "master_link_status").as_deref() == Some("up")
            && info(replica, "master_sync_in_progress").as_deref() == Some("0")
            && info(master, "master_repl_offset") == info(replica, "slave_repl_offset")
    })
    .await
}

async fn bearer(app: &TestApp, backend: Backend, user: &TestUser) -> Credential {
    let response = app
        .login_response(backend, &user.username, &user.password)
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{backend} login");
    let body: Value = response.json().await.expect("a JSON login");
    Credential::Bearer(
        body["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned(),
    )
}

/// How the demoted master caught up with the promoted replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resync {
    /// X took a write after Y's promotion, so its history left Y's: Y sends a full snapshot,
    /// and X's data is replaced.
    Full,
    /// X took no write after Y's promotion: it continues from Y's stream (`PSYNC`), and each
    /// write Y took arrives as an ordinary write.
    Partial,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_master_resynced_from_a_hand_promoted_replica_leaves_no_revoked_token_cached() {
    demote_under_a_promoted_replica(Resync::Full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_master_that_continues_a_promoted_replicas_stream_leaves_no_revoked_token_cached()
{
    demote_under_a_promoted_replica(Resync::Partial).await;
}

/// X master, Y its replica; an instance caching on X. Y is promoted by hand, an instance on Y
/// revokes, X is demoted under Y: the instance on X must refuse the revoked tokens within the
/// staleness bound of X's catching up.
async fn demote_under_a_promoted_replica(resync: Resync) {
    // The full sync starts at once (the default waits 5 s for more replicas).
    let fast_sync = ["--repl-diskless-sync-delay", "0"];
    let x = PrivateRedis::start_with(&fast_sync);
    let x_port = x.port.to_string();
    let mut replica_args = fast_sync.to_vec();
    replica_args.extend(["--replicaof", "127.0.0.1", &x_port]);
    let y = PrivateRedis::start_with(&replica_args);

    // The instance on X caches both backends' answers.
    let on_x = spawn_app_with(|s| {
        s.redis.url = x.url();
        s.redis_cache = Switch::On;
        s.jwt_denylist = DenylistMode::Cached;
        s.redis_cache_staleness = STALENESS;
    })
    .await;
    let user = on_x.register().await;
    let opaque = bearer(&on_x, Backend::Redis, &user).await;
    let jwt = bearer(&on_x, Backend::Jwt, &user).await;
    served_from_cache(&on_x, Backend::Redis, &opaque).await;
    served_from_cache(&on_x, Backend::Jwt, &jwt).await;
    assert!(in_sync(&x, &y).await, "Y did not catch up with X");

    // The operator promotes Y by hand. X does not know and keeps taking writes (a login), so
    // its history leaves Y's: X can no longer continue from Y's stream, only start over.
    assert_eq!(redis_cli(&y, &["REPLICAOF", "NO", "ONE"]).trim(), "OK");
    if resync == Resync::Full {
        let _diverged = bearer(&on_x, Backend::Redis, &user).await;
    }

    // An instance of the same deployment on Y revokes both tokens there.
    let on_y = spawn_app_with(|s| {
        s.redis.url = y.url();
        s.redis_prefix = on_x.settings.redis_prefix.clone();
        s.database_url = on_x.settings.database_url.clone();
    })
    .await;
    for (backend, token) in [(Backend::Redis, &opaque), (Backend::Jwt, &jwt)] {
        assert_eq!(
            on_y.logout(backend, token).await.status(),
            StatusCode::NO_CONTENT,
            "{backend} logout on Y"
        );
    }

    // X is demoted under Y: its data is replaced by Y's.
    let flushes = |cache| cache_metric(&on_x, "authlab_redis_cache_flushes_total", cache);
    let (redis_flushes, jwt_flushes) = (flushes("redis").await, flushes("jwt_denylist").await);
    let count = |field| info(&y, field).and_then(|n| n.parse::<u64>().ok());
    let syncs = (count("sync_full"), count("sync_partial_ok"));
    let y_port = y.port.to_string();
    assert_eq!(
        redis_cli(&x, &["REPLICAOF", "127.0.0.1", &y_port]).trim(),
        "OK"
    );
    assert!(in_sync(&y, &x).await, "X did not resync from Y");
    let (full, partial) = (syncs.0.map(|n| n + 1), syncs.1.map(|n| n + 1));
    match resync {
        // X's own last write is gone with the rest of its data.
        Resync::Full => assert_eq!(count("sync_full"), full, "Y served X a full sync"),
        Resync::Partial => assert_eq!(
            count("sync_partial_ok"),
            partial,
            "X continued from Y's stream"
        ),
    }

    // Within the staleness bound of the resync, the instance on X refuses both revoked tokens.
    tokio::time::sleep(STALENESS).await;
    assert_error(
        on_x.me(Backend::Redis, &opaque).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_error(
        on_x.me(Backend::Jwt, &jwt).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    if resync == Resync::Full {
        // What told the caches: the full sync emptied X's data, a flush for tracking clients.
        assert!(
            flushes("redis").await > redis_flushes,
            "the redis cache was flushed"
        );
        assert!(
            flushes("jwt_denylist").await > jwt_flushes,
            "the denylist cache was flushed"
        );
    }
}
