//! The client-side cache against a real Redis (the machine's, `AUTHLAB_REDIS_URL` or
//! `redis://127.0.0.1:6379`), each key under a prefix of its own: misses raced against writes
//! must leave no stale entry behind.

use std::sync::Arc;
use std::time::Duration;

use authlab_redis::{CacheConfig, RedisConnection, RedisTimeouts, TrackedCache};

fn redis_url() -> String {
    std::env::var("AUTHLAB_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn prefix() -> String {
    format!("authlab-test:{}:", uuid::Uuid::new_v4().simple())
}

async fn start(capacity: usize) -> (TrackedCache, Arc<RedisConnection>) {
    start_with(CacheConfig::new(capacity)).await
}

async fn start_with(config: CacheConfig) -> (TrackedCache, Arc<RedisConnection>) {
    let conn = Arc::new(
        RedisConnection::new(&redis_url(), RedisTimeouts::default()).expect("a Redis URL"),
    );
    let cache = TrackedCache::start(&redis_url(), config, conn.clone()).expect("the cache starts");
    // Until its tracking connection is up the cache serves nothing from memory. A read on it is
    // a proof (trust is earned on demand), so read, then ask: trusted right after a read means
    // the read went over the tracking connection.
    let probe = format!("{}probe", prefix());
    for _ in 0..500 {
        let _ = cache.get(&probe, false).await;
        if cache.is_trusted() {
            return (cache, conn);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the tracking connection never came up");
}

/// The longest the test waits for Redis's pushes to land after the last write: the cache's own
/// trust window covers a delay, so after it every hit reflects every write before it.
const SETTLE: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_misses_raced_against_writes_leave_no_stale_entry() {
    let (cache, conn) = start(100_000).await;
    let cache = Arc::new(cache);
    let prefix = prefix();
    const KEYS: usize = 2_000;
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("{prefix}k{i}")).collect());
    let mut pipe = redis::pipe();
    for key in keys.iter() {
        pipe.cmd("SET")
            .arg(key)
            .arg("old")
            .arg("EX")
            .arg(60)
            .ignore();
    }
    let () = conn.pipeline(&pipe).await.expect("keys written");

    // Readers miss (and re-miss) every key while a writer changes each one once, mid-flight:
    // the replies that carry "old" race the invalidations that end it.
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..8 {
        let (cache, keys) = (cache.clone(), keys.clone());
        tasks.spawn(async move {
            for round in 0..3 {
                for (i, key) in keys.iter().enumerate() {
                    if (i + lane + round) % 2 == 0 {
                        cache.get(key, false).await.expect("a read");
                    }
                }
            }
        });
    }
    {
        let (conn, keys) = (conn.clone(), keys.clone());
        tasks.spawn(async move {
            for (i, key) in keys.iter().enumerate() {
                let cmd = if i % 2 == 0 {
                    redis::cmd("SET")
                        .arg(key)
                        .arg("new")
                        .arg("EX")
                        .arg(60)
                        .clone()
                } else {
                    redis::cmd("DEL").arg(key).clone()
                };
                let _: redis::Value = conn.query(&cmd).await.expect("a write");
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("no task panicked");
    }
    tokio::time::sleep(SETTLE).await;

    let before = cache.stats();
    let mut stale = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let expected = (i % 2 == 0).then_some("new");
        let got = cache.get(key, false).await.expect("a read");
        if got.as_deref() != expected {
            stale.push((key.clone(), got));
        }
    }
    let after = cache.stats();
    assert!(
        stale.is_empty(),
        "{} stale entries, e.g. {:?}",
        stale.len(),
        &stale[..stale.len().min(3)]
    );
    // The race was real: values were cached, and invalidations arrived.
    assert!(before.invalidations > 0, "{before:?}");
    assert!(
        after.hits > before.hits,
        "the final reads were served partly from memory: {after:?}"
    );
    conn.delete_prefix(&prefix).await.expect("clean-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_expires_with_its_key_even_when_no_invalidation_comes() {
    let (cache, conn) = start(100).await;
    let key = format!("{}short", prefix());
    let written = std::time::Instant::now();
    let () = conn
        .query(redis::cmd("SET").arg(&key).arg("v").arg("PX").arg(1_000))
        .await
        .expect("written");
    // Read until one read is a hit (a read more than the staleness bound after the last proof
    // goes to Redis, and brings a new proof; on a loaded machine that can happen a few times).
    let mut cached = false;
    while !cached && written.elapsed() < Duration::from_millis(800) {
        let hits = cache.stats().hits;
        assert_eq!(cache.get(&key, false).await.unwrap().as_deref(), Some("v"));
        cached = cache.stats().hits > hits;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(cached, "the key was served from memory before it expired");
    // Redis may push the expiry late (its expiry sweep is lazy); the entry's own deadline does
    // not wait for it. (The API test pins this with active expiry switched off.)
    tokio::time::sleep(Duration::from_millis(1_050).saturating_sub(written.elapsed())).await;
    assert_eq!(cache.get(&key, false).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_never_holds_more_entries_than_its_capacity() {
    let (cache, conn) = start(16).await;
    let prefix = prefix();
    for i in 0..200 {
        let key = format!("{prefix}{i}");
        let () = conn
            .query(redis::cmd("SET").arg(&key).arg("v").arg("EX").arg(60))
            .await
            .expect("written");
        cache.get(&key, false).await.expect("read");
        assert!(cache.stats().entries <= 16, "{:?}", cache.stats());
    }
    let stats = cache.stats();
    assert!(stats.evictions > 0, "{stats:?}");
    assert_eq!(stats.capacity, 16);
    conn.delete_prefix(&prefix).await.expect("clean-up");
}

/// A staleness bound small enough that every lookup of the sparse tests below finds the proof
/// lapsed: they wait [`SPARSE_GAP`] between lookups.
const SMALL_BOUND: Duration = Duration::from_millis(2);
/// More than [`SMALL_BOUND`]: the gap between two sparse lookups. Real time is what these tests
/// are about (the proof lapses with it), so they sleep.
const SPARSE_GAP: Duration = Duration::from_millis(10);

fn sparse_config() -> CacheConfig {
    CacheConfig {
        staleness_bound: SMALL_BOUND,
        ..CacheConfig::new(100)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_key_looked_up_after_the_proof_lapsed_costs_one_heartbeat_and_no_read() {
    let (cache, conn) = start_with(sparse_config()).await;
    let key = format!("{}warm", prefix());
    let () = conn
        .query(redis::cmd("SET").arg(&key).arg("v").arg("EX").arg(60))
        .await
        .expect("written");
    assert_eq!(cache.get(&key, false).await.unwrap().as_deref(), Some("v"));
    for _ in 0..5 {
        tokio::time::sleep(SPARSE_GAP).await;
        assert!(!cache.is_trusted(), "the proof lapsed in {SPARSE_GAP:?}");
        let before = cache.stats();
        assert_eq!(cache.get(&key, false).await.unwrap().as_deref(), Some("v"));
        let after = cache.stats();
        // Served from memory once one heartbeat proved it still good: no GET of the key.
        assert_eq!(after.hits - before.hits, 1, "{before:?} -> {after:?}");
        assert_eq!(after.misses, before.misses, "{before:?} -> {after:?}");
        assert_eq!(
            after.heartbeats - before.heartbeats,
            1,
            "{before:?} -> {after:?}"
        );
    }
    conn.delete_prefix(&key).await.expect("clean-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deleted_elsewhere_is_refused_by_the_first_lookup_after_the_proof_lapsed() {
    let (cache, conn) = start_with(sparse_config()).await;
    let prefix = prefix();
    for i in 0..50 {
        let key = format!("{prefix}{i}");
        let () = conn
            .query(redis::cmd("SET").arg(&key).arg("v").arg("EX").arg(60))
            .await
            .expect("written");
        assert_eq!(cache.get(&key, false).await.unwrap().as_deref(), Some("v"));
        tokio::time::sleep(SPARSE_GAP).await;
        // Revoked on another connection, and acknowledged: the lookup right after it may run
        // before the invalidation reached the tracking connection, but the heartbeat it waits
        // for is sent after the DEL, so its reply comes after the invalidation.
        let deleted: i64 = conn
            .query(redis::cmd("DEL").arg(&key))
            .await
            .expect("deleted");
        assert_eq!(deleted, 1);
        assert_eq!(cache.get(&key, false).await.unwrap(), None, "{key}");
    }
    assert!(cache.stats().invalidations >= 50, "{:?}", cache.stats());
    conn.delete_prefix(&prefix).await.expect("clean-up");
}
