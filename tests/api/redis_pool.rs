//! `--redis-pool deadpool` and `deadpool-fast`: the pooled alternative to the per-thread
//! multiplexed connections works for the redis backend and the JWT denylist, sends (or skips)
//! its checkout `PING` as documented, and never lends a connection Redis has dropped. Each test
//! runs a private `redis-server`, so its `INFO commandstats` counts only this app's commands.

use std::time::Duration;

use authlab::config::RedisPool;
use reqwest::StatusCode;

use crate::helpers::*;

/// Calls of `PING` that Redis has served so far.
async fn pings(redis_url: &str) -> u64 {
    let client = redis::Client::open(redis_url).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the private Redis answers");
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO commandstats");
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_ping:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_redis_backend_and_the_jwt_denylist_work_through_each_pool() {
    for pool in [RedisPool::Deadpool, RedisPool::DeadpoolFast] {
        let redis = PrivateRedis::start();
        let url = redis.url();
        let app = spawn_app_with(|s| {
            s.redis.url = url;
            s.redis.pool = pool;
            s.redis.pool_size = Some(4);
        })
        .await;
        for backend in [Backend::Redis, Backend::Jwt] {
            let (_, credential) = app.logged_in(backend).await;
            assert_eq!(
                app.me(backend, &credential).await.status(),
                StatusCode::OK,
                "{pool:?} {backend}"
            );
            assert_eq!(
                app.logout(backend, &credential).await.status(),
                StatusCode::NO_CONTENT
            );
            assert_error(
                app.me(backend, &credential).await,
                StatusCode::UNAUTHORIZED,
                if backend == Backend::Jwt {
                    "token_revoked"
                } else {
                    "invalid_token"
                },
            )
            .await;
        }
    }
}

#[tokio::test]
async fn deadpool_pings_redis_at_every_checkout_and_deadpool_fast_does_not() {
    const REQUESTS: u64 = 20;
    for (pool, pings_per_request) in [
        (RedisPool::Multiplexed, 0),
        (RedisPool::Deadpool, 1),
        (RedisPool::DeadpoolFast, 0),
    ] {
        let redis = PrivateRedis::start();
        let url = redis.url();
        let app = spawn_app_with(|s| {
            s.redis.url = url.clone();
            s.redis.pool = pool;
        })
        .await;
        let (_, token) = app.logged_in(Backend::Redis).await;
        // Whatever reading the counter itself costs is measured, then taken off.
        let first = pings(&url).await;
        let before = pings(&url).await;
        let probe = before - first;
        for _ in 0..REQUESTS {
            assert_eq!(
                app.me(Backend::Redis, &token).await.status(),
                StatusCode::OK
            );
        }
        let sent = pings(&url).await - before - probe;
        // One request at a time: every checkout but a connection's first is recycled.
        assert_eq!(sent, pings_per_request * REQUESTS, "{pool:?}");
    }
}

#[tokio::test]
async fn a_pooled_connection_that_redis_dropped_is_never_lent_again() {
    for pool in [RedisPool::Deadpool, RedisPool::DeadpoolFast] {
        let redis = PrivateRedis::start();
        let url = redis.url();
        let app = spawn_app_with(|s| {
            s.redis.url = url.clone();
            s.redis.pool = pool;
        })
        .await;
        let (_, token) = app.logged_in(Backend::Redis).await;
        assert_eq!(
            app.me(Backend::Redis, &token).await.status(),
            StatusCode::OK
        );

        // Redis drops every client but the one asking (the app's pooled connections).
        let client = redis::Client::open(url.as_str()).expect("a Redis URL");
        let mut admin = client
            .get_multiplexed_async_connection()
            .await
            .expect("the private Redis answers");
        let killed: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"][..])
            .query_async(&mut admin)
            .await
            .expect("CLIENT KILL");
        assert!(killed >= 1, "the app had a connection open");
        tokio::time::sleep(Duration::from_millis(50)).await;

        // With the checkout PING a dead connection is caught before it is lent; without it, the
        // one request that finds a dead connection answers 503 and takes it out of the pool:
        // at most one 503 per connection Redis dropped, never the same one twice.
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.push(app.me(Backend::Redis, &token).await.status());
        }
        let failed = statuses.iter().filter(|s| **s != StatusCode::OK).count();
        let allowed = if pool == RedisPool::DeadpoolFast {
            usize::try_from(killed).unwrap_or(0)
        } else {
            0
        };
        assert!(failed <= allowed, "{pool:?}: {statuses:?}");
        assert_eq!(statuses.last(), Some(&StatusCode::OK), "{pool:?}");
        if let Some(refused) = statuses.iter().find(|s| **s != StatusCode::OK) {
            assert_eq!(*refused, StatusCode::SERVICE_UNAVAILABLE);
        }
    }
}
