//! The client-side cache (`--redis-cache on`, `--jwt-denylist cached`) on a real Redis Cluster
//! (3 masters, 3 replicas): it serves hits, an idle instance sends the cluster nothing, and
//! under each fault that changes who holds a key (a slot migration, a manual failover, a killed
//! master, a stalled one) a revocation acknowledged by Redis is never answered from a cache
//! later than the staleness bound W after it.
//!
//! The pattern of every fault test: two instances A and B on one cluster and one key prefix;
//! A's cache warm (a token accepted twice by A, the second time from its cache); the fault; the
//! revocation through B, retried through the fault until acknowledged (204); then A is probed
//! until it refuses, every probe timed, and no probe sent more than W after the acknowledgement
//! may have been accepted. The Sentinel switchover follows the same pattern in `sentinel.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authlab::config::{ConfirmReplicas, Settings};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;

use crate::at_rest::token_key;
use crate::client_cache::{cache_metric, cache_on, cached};
use crate::helpers::*;
use crate::redis_cluster::{Node, RedisCluster};

/// The staleness bound W the fault tests run with (`--redis-cache-staleness`; 5 ms by default).
/// Long enough that A's steady probes keep its cache trusted throughout the fault, so that only
/// the cache's own rules (the node's view in the proof, the generation, the silence rule) can
/// stop a stale hit: with 5 ms on a busy machine trust lapses between probes now and then, and
/// the miss that follows reads the key afresh and hides a missing rule. The guarantee is the
/// same for any W: no hit later than W after the revocation was acknowledged.
const FAULT_W: Duration = Duration::from_millis(500);

pub(crate) fn fault_bound(settings: &mut Settings) {
    settings.redis_cache_staleness = FAULT_W;
}

/// How long a fault test waits for a revocation to be acknowledged through the fault (a
/// replica takes over 3.4-4.4 s after its master stops answering).
const ACK_LIMIT: Duration = Duration::from_secs(30);

/// How long A is given to refuse a revoked token. Generous: the assertion that matters is that
/// no probe sent more than W after the acknowledgement was accepted.
const REFUSAL_LIMIT: Duration = Duration::from_secs(15);

/// Two caching instances on one Redis (cluster or Sentinel) and one key prefix: A serves from
/// its cache, B revokes.
pub(crate) async fn two_cached_instances(url: &str) -> (TestApp, TestApp) {
    two_cached_instances_with(url, |_| {}).await
}

/// [`two_cached_instances`] with `customise` applied to both.
pub(crate) async fn two_cached_instances_with(
    url: &str,
    customise: impl Fn(&mut Settings),
) -> (TestApp, TestApp) {
    let a = spawn_app_with(|s| {
        cached(s);
        s.redis.url = url.to_owned();
        customise(s);
    })
    .await;
    let (prefix, database) = (
        a.settings.redis_prefix.clone(),
        a.settings.database_url.clone(),
    );
    let b = spawn_app_with(|s| {
        cached(s);
        s.redis.url = url.to_owned();
        s.redis_prefix = prefix;
        s.database_url = database;
        customise(s);
    })
    .await;
    (a, b)
}

/// The Redis key whose write revokes `credential`, and whose slot decides where it lives: the
/// token's own key (redis backend), or its family's denylist entry (JWT).
fn revocation_key(app: &TestApp, backend: Backend, credential: &Credential) -> String {
    match backend {
        Backend::Jwt => {
            let payload = credential
                .value()
                .split('.')
                .nth(1)
                .expect("a JWT has a payload");
            let claims: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
                    .expect("JSON claims");
            let family = claims["fam"].as_str().expect("a family claim");
            format!("{}deny:{{{family}}}", app.settings.redis_prefix)
        }
        _ => token_key(app, credential.value()),
    }
}

/// How the revocation is asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Revocation {
    /// `POST /{backend}/logout` with the token: the whole login ends (204).
    Logout,
    /// `POST /{backend}/revoke` (RFC 7009) with the token: that access token alone (200). A
    /// single-key write (the token's key, or the JWT's denylist entry), so it goes through while
    /// its slot migrates; a logout there runs a script over the family's keys, which Redis
    /// refuses with `TRYAGAIN` while some of them are missing on either side of a migration.
    Rfc7009,
}

/// What one probe of A saw, and when it was sent.
struct Probe {
    sent: Instant,
    status: Option<StatusCode>,
}

/// A's answers for one token, probed without pause (one request at a time) from before the
/// fault until the judgement, so that A's cache stays warm through the fault: its hits keep
/// renewing the proof, and only the cache's own rules can stop them.
pub(crate) struct Watch {
    backend: Backend,
    /// A's staleness bound.
    staleness: Duration,
    probes: Arc<Mutex<Vec<Probe>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts probing `credential` on `a` (see [`Watch`]).
pub(crate) fn watch(a: &TestApp, backend: Backend, credential: &Credential) -> Watch {
    let probes = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (client, url, credential) = (
        a.client.clone(),
        a.url(&format!("/{backend}/me")),
        credential.clone(),
    );
    let task = tokio::spawn({
        let (probes, stop) = (probes.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::Acquire) {
                let sent = Instant::now();
                let status = credential
                    .apply(client.get(&url))
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status());
                probes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Probe { sent, status });
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    Watch {
        backend,
        staleness: a.settings.redis_cache_staleness,
        probes,
        stop,
        task,
    }
}

/// Revokes `credential` through `b` (as `how` says), retrying through the fault until Redis
/// acknowledges it (a logout's 204, or 401 when an earlier attempt that answered 503 had already
/// deleted the token; a revocation's 200). Returns when it was first asked and when acknowledged.
pub(crate) async fn revoke(
    b: &TestApp,
    backend: Backend,
    credential: &Credential,
    how: Revocation,
) -> (Instant, Instant) {
    let asked = Instant::now();
    loop {
        let status = match how {
            Revocation::Logout => b.logout(backend, credential).await.status(),
            Revocation::Rfc7009 => b
                .client
                .post(b.url(&format!("/{backend}/revoke")))
                .form(&[("token", credential.value())])
                .send()
                .await
                .expect("request sent")
                .status(),
        };
        let acknowledged = match how {
            Revocation::Logout => [StatusCode::NO_CONTENT, StatusCode::UNAUTHORIZED],
            Revocation::Rfc7009 => [StatusCode::OK, StatusCode::OK],
        };
        if acknowledged.contains(&status) {
            return (asked, Instant::now());
        }
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{backend}: the revocation through B"
        );
        assert!(
            asked.elapsed() < ACK_LIMIT,
            "{backend}: the revocation was never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Watch {
    /// Waits until A has refused the token after `acked` and for `linger` more, then stops
    /// probing. Panics if A accepted the token in a probe sent more than A's staleness bound W
    /// after `acked`, or
    /// never refused it.
    pub(crate) async fn judge(self, asked: Instant, acked: Instant, linger: Duration) {
        let backend = self.backend;
        let refused_at = || {
            self.probes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|p| p.sent > acked && p.status == Some(StatusCode::UNAUTHORIZED))
                .map(|p| p.sent)
        };
        while acked.elapsed() < REFUSAL_LIMIT
            && refused_at().is_none_or(|at| at.elapsed() <= linger)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stop.store(true, Ordering::Release);
        let _ = self.task.await;
        let probes = std::mem::take(&mut *self.probes.lock().unwrap_or_else(|e| e.into_inner()));
        let before = probes.iter().filter(|p| p.sent < asked).count();
        let late: Vec<Duration> = probes
            .iter()
            .filter(|p| p.sent > acked + self.staleness && p.status == Some(StatusCode::OK))
            .map(|p| p.sent - acked)
            .collect();
        assert!(
            late.is_empty(),
            "{backend}: A accepted the revoked token {} times more than W ({:?}) after the ack, from {:?} on",
            late.len(),
            self.staleness,
            late.first()
        );
        let refused = probes
            .iter()
            .find(|p| p.sent > acked && p.status == Some(StatusCode::UNAUTHORIZED))
            .map(|p| p.sent)
            .unwrap_or_else(|| {
                panic!(
                    "{backend}: A never refused the revoked token in {REFUSAL_LIMIT:?} ({} probes)",
                    probes.len()
                )
            });
        eprintln!(
            "{backend}: {before} probes before the revocation; acknowledged {:?} after it was \
             asked; A refused {:?} after the ack; {} probes in all, {} answered 503",
            acked - asked,
            refused.saturating_duration_since(acked),
            probes.len(),
            probes
                .iter()
                .filter(|p| p.status == Some(StatusCode::SERVICE_UNAVAILABLE))
                .count()
        );
    }
}

impl Watch {
    /// Stops probing; how many probes answered `status`.
    async fn stop_and_count(self, status: StatusCode) -> usize {
        self.stop.store(true, Ordering::Release);
        let _ = self.task.await;
        self.probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|p| p.status == Some(status))
            .count()
    }
}

fn node(port: u16, args: &[&str]) -> String {
    Node::at(port)
        .command(args)
        .unwrap_or_else(|| panic!("node {port} answers {args:?}"))
}

fn node_id(port: u16) -> String {
    node(port, &["CLUSTER", "MYID"]).trim().to_owned()
}

fn slot_of(port: u16, key: &str) -> String {
    node(port, &["CLUSTER", "KEYSLOT", key]).trim().to_owned()
}

/// Starts moving `slot` from the master on `from` to the one on `to`: `IMPORTING` on the
/// target, then `MIGRATING` on the source. From now on a key missing on the source is written
/// on the target (clients follow `ASK`).
fn begin_migration(slot: &str, from: u16, to: u16) {
    let answer = node(
        to,
        &["CLUSTER", "SETSLOT", slot, "IMPORTING", &node_id(from)],
    );
    assert_eq!(answer.trim(), "OK", "IMPORTING on {to}");
    let answer = node(
        from,
        &["CLUSTER", "SETSLOT", slot, "MIGRATING", &node_id(to)],
    );
    assert_eq!(answer.trim(), "OK", "MIGRATING on {from}");
}

/// Moves every key of `slot` from `from` to `to` (`MIGRATE`), then gives the slot to `to` on
/// every master (target first, then source, then the others).
fn finish_migration(cluster: &RedisCluster, slot: &str, from: u16, to: u16) {
    loop {
        let keys = node(from, &["CLUSTER", "GETKEYSINSLOT", slot, "100"]);
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        if keys.is_empty() {
            break;
        }
        let to_port = to.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
        args.extend(keys);
        let answer = node(from, &args);
        assert_eq!(answer.trim(), "OK", "MIGRATE from {from}: {answer}");
    }
    let to_id = node_id(to);
    let mut order = vec![to, from];
    order.extend(
        cluster
            .masters()
            .into_iter()
            .filter(|p| *p != to && *p != from),
    );
    for port in order {
        let answer = node(port, &["CLUSTER", "SETSLOT", slot, "NODE", &to_id]);
        assert_eq!(answer.trim(), "OK", "SETSLOT NODE on {port}");
    }
}

/// A master other than `port`.
fn another_master(cluster: &RedisCluster, port: u16) -> u16 {
    cluster
        .masters()
        .into_iter()
        .find(|p| *p != port)
        .expect("three masters")
}

/// Logs in on `a` until a token of each backend has its revocation key on one master; returns
/// them, warm in A's cache, with that master's port.
async fn tokens_on_one_master(
    cluster: &RedisCluster,
    a: &TestApp,
    user: &TestUser,
) -> (Credential, Credential, u16) {
    let opaque = a.login(Backend::Redis, user).await;
    let master = cluster.master_of(&revocation_key(a, Backend::Redis, &opaque));
    let mut jwt = None;
    for _ in 0..40 {
        let candidate = a.login(Backend::Jwt, user).await;
        if cluster.master_of(&revocation_key(a, Backend::Jwt, &candidate)) == master {
            jwt = Some(candidate);
            break;
        }
    }
    let jwt = jwt.expect("a JWT whose family lives on the opaque token's master");
    cache_on(a, Backend::Redis, &opaque).await;
    cache_on(a, Backend::Jwt, &jwt).await;
    (opaque, jwt, master)
}

/// For the tests that take a master away: once its replica has taken over, its shard has no
/// replica left to confirm a write (`WAIT`), and every revocation would answer 503 until one
/// rejoins. That is the write confirmation's business (tested in `cluster.rs`, `sentinel.rs`);
/// here the revocation must be acknowledged, so nothing waits for a replica.
fn unconfirmed(settings: &mut Settings) {
    fault_bound(settings);
    settings.redis.confirm_replicas = ConfirmReplicas::Exactly(0);
}

/// Lets A's cache settle under the watch's steady traffic before the fault: the first
/// heartbeat after an idle spell longer than the silence limit drops the entries (and the next
/// probes read them again), which would otherwise hide, by luck, a fault no other rule caught.
pub(crate) async fn settle() {
    tokio::time::sleep(2 * FAULT_W).await;
}

/// A node's role, as the first line of `ROLE` says (`master`, `slave`).
fn role(port: u16) -> Option<String> {
    Node::at(port)
        .command(&["ROLE"])
        .and_then(|text| text.lines().next().map(str::to_owned))
}

#[tokio::test]
async fn the_cache_serves_hits_on_a_cluster_for_both_backends() {
    let cluster = RedisCluster::shared();
    let (a, _b) = two_cached_instances(&cluster.url()).await;
    let user = a.register().await;
    for backend in token_backends() {
        // Several logins, so keys land on several masters.
        for _ in 0..3 {
            let credential = a.login(backend, &user).await;
            // Accepted twice, the second time from memory (the hit counter grew).
            cache_on(&a, backend, &credential).await;
        }
    }
    assert!(cache_metric(&a, "authlab_redis_cache_hits_total", "redis").await >= 3.0);
    assert!(cache_metric(&a, "authlab_redis_cache_hits_total", "jwt_denylist").await >= 3.0);
}

/// Commands each master has processed, by command (`INFO commandstats`), less the ones the
/// cluster and this test send themselves (`INFO`, a replica's `REPLCONF ACK` every second).
fn commands_by_masters(masters: &[u16]) -> Vec<(u16, Vec<(String, u64)>)> {
    masters
        .iter()
        .copied()
        .map(|port| {
            let stats = node(port, &["INFO", "commandstats"]);
            let calls = stats
                .lines()
                .filter(|line| {
                    !line.starts_with("cmdstat_info:") && !line.starts_with("cmdstat_replconf:")
                })
                .filter_map(|line| {
                    let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                    let calls = rest.split_once("calls=")?.1.split(',').next()?;
                    Some((name.to_owned(), calls.parse::<u64>().ok()?))
                })
                .collect();
            (port, calls)
        })
        .collect()
}

#[tokio::test]
async fn an_idle_instance_on_a_cluster_sends_no_master_anything_in_10_s() {
    let cluster = RedisCluster::start();
    let app = spawn_app_with(|s| {
        cached(s);
        s.redis.url = cluster.url();
    })
    .await;
    let user = app.register().await;
    for backend in token_backends() {
        for _ in 0..3 {
            let credential = app.login(backend, &user).await;
            cache_on(&app, backend, &credential).await;
        }
    }
    // Let the last heartbeats asked for be answered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Asked once, before: `CLUSTER NODES` is a command too.
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let before = commands_by_masters(&masters);
    // Idle time is what is measured here, so this test waits in real time.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = commands_by_masters(&masters);
    assert_eq!(
        before, after,
        "commands per master (port, calls) before and after 10 idle seconds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migration_with_a_revocation_during_it_or_after_it_never_serves_the_revoked_token() {
    let cluster = RedisCluster::start();
    let (a, b) = two_cached_instances_with(&cluster.url(), fault_bound).await;
    let user = a.register().await;
    for backend in token_backends() {
        // Revoked while the slot is half moved: a key missing on the source (the JWT denylist's
        // "not revoked") is written on the target, and the source, which still owns the slot,
        // sees nothing.
        let credential = a.login(backend, &user).await;
        cache_on(&a, backend, &credential).await;
        let key = revocation_key(&a, backend, &credential);
        let from = cluster.master_of(&key);
        let to = another_master(&cluster, from);
        let slot = slot_of(from, &key);
        let watching = watch(&a, backend, &credential);
        settle().await;
        begin_migration(&slot, from, to);
        let (asked, acked) = revoke(&b, backend, &credential, Revocation::Rfc7009).await;
        // Judged while the slot is still migrating: only the node's view can stop the hits.
        watching
            .judge(asked, acked, Duration::from_millis(300))
            .await;
        let watching = watch(&a, backend, &credential);
        finish_migration(&cluster, &slot, from, to);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            watching.stop_and_count(StatusCode::OK).await,
            0,
            "{backend}: accepted again once the slot had moved"
        );

        // Revoked after a completed migration: the new owner never tracked A's read.
        let credential = a.login(backend, &user).await;
        cache_on(&a, backend, &credential).await;
        let key = revocation_key(&a, backend, &credential);
        let from = cluster.master_of(&key);
        let to = another_master(&cluster, from);
        let slot = slot_of(from, &key);
        let watching = watch(&a, backend, &credential);
        settle().await;
        begin_migration(&slot, from, to);
        finish_migration(&cluster, &slot, from, to);
        let (asked, acked) = revoke(&b, backend, &credential, Revocation::Logout).await;
        watching
            .judge(asked, acked, Duration::from_millis(300))
            .await;
    }
}

/// Both tokens revoked through B, one after the other, while A is watched.
async fn revoke_both(
    b: &TestApp,
    (opaque, opaque_watch): (&Credential, Watch),
    (jwt, jwt_watch): (&Credential, Watch),
    linger: Duration,
) {
    let (asked, acked) = revoke(b, Backend::Redis, opaque, Revocation::Logout).await;
    opaque_watch.judge(asked, acked, linger).await;
    let (asked, acked) = revoke(b, Backend::Jwt, jwt, Revocation::Logout).await;
    jwt_watch.judge(asked, acked, linger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_failover_never_serves_a_token_revoked_on_the_new_master() {
    let cluster = RedisCluster::start();
    let (a, b) = two_cached_instances_with(&cluster.url(), fault_bound).await;
    let user = a.register().await;
    let (opaque, jwt, master) = tokens_on_one_master(&cluster, &a, &user).await;
    let replica = cluster.replica_of(master);
    let watches = (
        watch(&a, Backend::Redis, &opaque),
        watch(&a, Backend::Jwt, &jwt),
    );
    settle().await;
    let answer = node(replica, &["CLUSTER", "FAILOVER"]);
    assert_eq!(answer.trim(), "OK", "CLUSTER FAILOVER on {replica}");
    let promoted = eventually(Duration::from_secs(15), || async {
        role(replica).as_deref() == Some("master") && role(master).as_deref() == Some("slave")
    })
    .await;
    assert!(
        promoted,
        "the replica took over and the old master follows it"
    );
    revoke_both(
        &b,
        (&opaque, watches.0),
        (&jwt, watches.1),
        Duration::from_millis(500),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_never_lets_a_cache_serve_a_token_revoked_on_its_successor() {
    let mut cluster = RedisCluster::start();
    let (a, b) = two_cached_instances_with(&cluster.url(), unconfirmed).await;
    let user = a.register().await;
    let (opaque, jwt, master) = tokens_on_one_master(&cluster, &a, &user).await;
    let replica = cluster.replica_of(master);
    let watches = (
        watch(&a, Backend::Redis, &opaque),
        watch(&a, Backend::Jwt, &jwt),
    );
    settle().await;
    cluster.kill(master);
    // Revoked as soon as the cluster acknowledges it (once the replica has taken over).
    revoke_both(
        &b,
        (&opaque, watches.0),
        (&jwt, watches.1),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(role(replica).as_deref(), Some("master"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_master_never_lets_a_cache_serve_a_token_revoked_on_its_successor() {
    let cluster = RedisCluster::start();
    let (a, b) = two_cached_instances_with(&cluster.url(), unconfirmed).await;
    let user = a.register().await;
    let (opaque, jwt, master) = tokens_on_one_master(&cluster, &a, &user).await;
    let replica = cluster.replica_of(master);
    let watches = (
        watch(&a, Backend::Redis, &opaque),
        watch(&a, Backend::Jwt, &jwt),
    );
    settle().await;
    let paused = cluster.pause(master);
    // A's hits stop within W (no proof), and its reads time out until the replica takes over.
    revoke_both(
        &b,
        (&opaque, watches.0),
        (&jwt, watches.1),
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(role(replica).as_deref(), Some("master"));
    // The stalled master wakes up, for a moment still believing it is the master, with A's
    // tracking connection to it perhaps still open: neither token may be accepted again.
    let watches = (
        watch(&a, Backend::Redis, &opaque),
        watch(&a, Backend::Jwt, &jwt),
    );
    drop(paused);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for watching in [watches.0, watches.1] {
        let backend = watching.backend;
        let accepted = watching.stop_and_count(StatusCode::OK).await;
        assert_eq!(
            accepted, 0,
            "{backend}: accepted after the stalled master woke up"
        );
    }
}
