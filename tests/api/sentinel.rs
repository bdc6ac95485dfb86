//! authlab on a master followed through Sentinel: the basics of the token backends, a planned
//! switchover under a stream of logouts with none undone, and a master killed with SIGKILL.
//!
//! The fixture ([`SentinelSet`]) starts real processes on free ports: one master, one replica and
//! three sentinels (`redis-server --sentinel` with a generated configuration, quorum 2,
//! `down-after-milliseconds` 1000), nothing persisted, each killed by its pid when the fixture is
//! dropped, also on a panic.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::*;

/// The name the sentinels know the master by.
const MASTER: &str = "authlab";

/// One `redis-server` process (a data node or a sentinel), killed by its pid on drop.
struct Node {
    port: u16,
    child: Option<Child>,
}

impl Node {
    fn spawn(port: u16, args: &[String]) -> Self {
        let child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is on PATH (see README: the tests need it)");
        let node = Self {
            port,
            child: Some(child),
        };
        for _ in 0..250 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return node;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {port} did not start");
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One master, one replica, three sentinels, in a temporary directory of their own.
pub struct SentinelSet {
    dir: PathBuf,
    master: Node,
    replica: Node,
    sentinels: Vec<Node>,
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for node in &mut self.sentinels {
            node.kill();
        }
        self.master.kill();
        self.replica.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A data node: nothing persisted, and its working directory (where a replica keeps the copy a
/// full resynchronisation sends it) is the fixture's own.
fn data_node_args(dir: &std::path::Path, port: u16, replica_of: Option<u16>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--dbfilename",
        &format!("dump-{port}.rdb"),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(master) = replica_of {
        args.extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
    }
    args
}

impl SentinelSet {
    /// Starts the set and waits until the replica is in sync and every sentinel knows the
    /// replica and the two other sentinels (so a failover can be agreed on).
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("authlab-sentinel-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let master_port = free_port();
        let master = Node::spawn(master_port, &data_node_args(&dir, master_port, None));
        let replica_port = free_port();
        let replica = Node::spawn(
            replica_port,
            &data_node_args(&dir, replica_port, Some(master_port)),
        );
        let mut set = Self {
            dir,
            master,
            replica,
            sentinels: Vec::new(),
        };
        for _ in 0..3 {
            let port = free_port();
            let config = set.dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 5000\n",
                    dir = set.dir.display()
                ),
            )
            .expect("the sentinel's configuration is written");
            let node = Node::spawn(
                port,
                &[config.display().to_string(), "--sentinel".to_owned()],
            );
            set.sentinels.push(node);
        }
        let ready = eventually(Duration::from_secs(20), || set.is_ready()).await;
        assert!(ready, "the Sentinel set did not come up within 20 s");
        set
    }

    async fn is_ready(&self) -> bool {
        if !self.replica_in_sync().await {
            return false;
        }
        for sentinel in &self.sentinels {
            let replicas: Vec<Vec<String>> = query(
                sentinel.port,
                redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER),
            )
            .await
            .unwrap_or_default();
            let others: Vec<Vec<String>> = query(
                sentinel.port,
                redis::cmd("SENTINEL").arg("SENTINELS").arg(MASTER),
            )
            .await
            .unwrap_or_default();
            let replica_known = replicas.iter().any(|fields| {
                field(fields, "flags").as_deref() == Some("slave")
                    && field(fields, "port") == Some(self.replica.port.to_string())
            });
            if !replica_known || others.len() < 2 {
                return false;
            }
        }
        true
    }

    /// Whether the replica has every write the master has (same replication offset).
    async fn replica_in_sync(&self) -> bool {
        let Ok(info) =
            query::<String>(self.master.port, redis::cmd("INFO").arg("replication")).await
        else {
            return false;
        };
        let offset = info_field(&info, "master_repl_offset");
        let replica = info_field(&info, "slave0");
        match (offset, replica) {
            (Some(offset), Some(replica)) => {
                replica.contains("state=online") && replica.contains(&format!("offset={offset},"))
            }
            _ => false,
        }
    }

    /// The `--redis-url` of this set.
    pub fn url(&self) -> String {
        let sentinels = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",");
        format!("redis+sentinel://{sentinels}/{MASTER}")
    }

    /// The port the sentinels currently name as the master's.
    async fn named_master(&self) -> Option<u16> {
        let named: Option<(String, u16)> = query(
            self.sentinels[0].port,
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER),
        )
        .await
        .ok()?;
        named.map(|(_, port)| port)
    }

    /// A node's role as it reports it (`master`, `slave`), and for a replica its link status.
    async fn role(port: u16) -> Option<(String, bool)> {
        let info: String = query(port, redis::cmd("INFO").arg("replication"))
            .await
            .ok()?;
        let role = info_field(&info, "role")?;
        let link_up = info_field(&info, "master_link_status").as_deref() == Some("up");
        Some((role, link_up))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One command on a fresh connection to a local node, with short timeouts.
async fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    cmd.query_async(&mut conn).await
}

/// `name:value` out of an `INFO` answer.
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(|value| value.trim().to_owned())
}

/// A field of a `SENTINEL REPLICAS`/`SENTINELS` entry (a flat list of names and values).
fn field(fields: &[String], name: &str) -> Option<String> {
    fields
        .chunks(2)
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair.get(1).cloned())
}

async fn spawn_on(set: &SentinelSet) -> TestApp {
    let url = set.url();
    spawn_app_with(move |s| {
        s.redis.url = url;
        // More workers than the suite's one, so several connections follow the master.
        s.workers = Some(2);
    })
    .await
}

#[tokio::test]
async fn the_token_backends_work_through_sentinel() {
    let set = SentinelSet::start().await;
    // What this test checks is the flow, not the replica's speed: on a machine busy with the rest
    // of the suite the replica has been seen to take longer than the default 200 ms to confirm a
    // logout (a 503, rightly: unconfirmed), so it gets two seconds here (within a reply timeout
    // longer still, as the server requires).
    let url = set.url();
    let app = spawn_app_with(move |s| {
        s.redis.url = url;
        s.workers = Some(2);
        s.redis.timeout = Duration::from_secs(3);
        s.redis.confirm_timeout = Duration::from_secs(2);
    })
    .await;
    for backend in token_backends() {
        // Login, /me, logout, /me refused.
        let (user, credential) = app.logged_in(backend).await;
        assert_eq!(app.me(backend, &credential).await.status(), StatusCode::OK);
        assert_eq!(
            app.logout(backend, &credential).await.status(),
            StatusCode::NO_CONTENT
        );
        let code = if backend == Backend::Jwt {
            "token_revoked"
        } else {
            "invalid_token"
        };
        assert_error(
            app.me(backend, &credential).await,
            StatusCode::UNAUTHORIZED,
            code,
        )
        .await;

        // Refresh rotates; logout-all ends every login of the user; RFC 7009 revokes.
        let login = app
            .login_response(backend, &user.username, &user.password)
            .await;
        let body: Value = login.json().await.unwrap();
        let refresh = body["refresh_token"].as_str().unwrap().to_owned();
        let rotated = app
            .post_json(
                &format!("/{backend}/refresh"),
                &json!({ "refresh_token": refresh }),
            )
            .await;
        assert_eq!(rotated.status(), StatusCode::OK);
        let rotated: Value = rotated.json().await.unwrap();
        let access = Credential::Bearer(rotated["access_token"].as_str().unwrap().to_owned());
        assert_eq!(app.me(backend, &access).await.status(), StatusCode::OK);
        let revoked = app
            .client
            .post(app.url(&format!("/{backend}/revoke")))
            .form(&[("token", rotated["access_token"].as_str().unwrap())])
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), StatusCode::OK);
        assert_eq!(
            app.me(backend, &access).await.status(),
            StatusCode::UNAUTHORIZED
        );

        let other = app.login(backend, &user).await;
        let all = app
            .authed(Method::POST, &format!("/{backend}/logout-all"), &other)
            .send()
            .await
            .unwrap();
        assert!(all.status().is_success(), "{}", all.status());
        assert_eq!(
            app.me(backend, &other).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Every one of those revocations waited for the replica (`WAIT`), on the master only.
    let waits = |port| async move {
        let stats: String = query(port, redis::cmd("INFO").arg("commandstats"))
            .await
            .unwrap_or_default();
        info_field(&stats, "cmdstat_wait")
            .and_then(|v| {
                v.strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    assert!(
        waits(set.master.port).await >= 8,
        "revocations are confirmed"
    );
    assert_eq!(
        waits(set.replica.port).await,
        0,
        "nothing is asked of the replica"
    );
}

#[tokio::test]
async fn a_revocation_no_replica_confirms_is_refused_with_503_and_reads_go_on() {
    // One Redis without a replica, told to wait for one: nothing can confirm a logout.
    let redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(move |s| {
        s.redis.url = url;
        s.redis.confirm_replicas = authlab::config::ConfirmReplicas::Exactly(1);
        s.redis.confirm_timeout = Duration::from_millis(50);
    })
    .await;
    for backend in token_backends() {
        let (_, credential) = app.logged_in(backend).await;
        let refused = app.logout(backend, &credential).await;
        assert!(refused.headers().contains_key("retry-after"));
        assert_error(
            refused,
            StatusCode::SERVICE_UNAVAILABLE,
            "backend_unavailable",
        )
        .await;
        // Reads do not wait for replicas: the hot path is untouched.
        assert_eq!(app.me(backend, &credential).await.status(), StatusCode::OK);
    }
}

/// What a stream of logouts saw across a failover.
#[derive(Debug, Default)]
struct LogoutStream {
    /// Credentials whose logout was answered 204.
    acknowledged: Vec<(Backend, Credential)>,
    /// Logouts answered 503 (not confirmed, or Redis unreachable).
    unavailable: usize,
    /// Any other answer: status and body.
    unexpected: Vec<(StatusCode, String)>,
    /// 204s answered after the sentinels named the new master.
    acknowledged_after_switch: usize,
}

/// Logs every credential out, `tasks` at a time, one logout every `pace` per task.
async fn stream_logouts(
    app: Arc<TestApp>,
    credentials: Vec<(Backend, Credential)>,
    tasks: usize,
    pace: Duration,
    switched: Arc<std::sync::atomic::AtomicBool>,
) -> LogoutStream {
    let queue = Arc::new(Mutex::new(credentials));
    let outcome = Arc::new(Mutex::new(LogoutStream::default()));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (app, queue, outcome, switched) = (
            app.clone(),
            queue.clone(),
            outcome.clone(),
            switched.clone(),
        );
        handles.push(tokio::spawn(async move {
            loop {
                let Some((backend, credential)) = queue.lock().await.pop() else {
                    return;
                };
                let after_switch = switched.load(Ordering::SeqCst);
                let response = app.logout(backend, &credential).await;
                let status = response.status();
                let mut outcome = outcome.lock().await;
                match status {
                    StatusCode::NO_CONTENT => {
                        outcome.acknowledged.push((backend, credential));
                        if after_switch {
                            outcome.acknowledged_after_switch += 1;
                        }
                    }
                    StatusCode::SERVICE_UNAVAILABLE => outcome.unavailable += 1,
                    other => {
                        let body = response.text().await.unwrap_or_default();
                        outcome.unexpected.push((other, body));
                    }
                }
                drop(outcome);
                tokio::time::sleep(pace).await;
            }
        }));
    }
    for handle in handles {
        handle.await.expect("a logout task");
    }
    Arc::try_unwrap(outcome)
        .expect("every task is done")
        .into_inner()
}

/// Logs `user` in `count` times on each token backend.
async fn many_logins(app: &TestApp, user: &TestUser, count: usize) -> Vec<(Backend, Credential)> {
    let mut credentials = Vec::with_capacity(2 * count);
    for _ in 0..count {
        for backend in token_backends() {
            credentials.push((backend, app.login(backend, user).await));
        }
    }
    credentials
}

#[tokio::test]
async fn a_sentinel_switchover_under_a_stream_of_logouts_undoes_none_of_them() {
    let set = SentinelSet::start().await;
    let app = Arc::new(spawn_on(&set).await);
    let user = app.register().await;
    let credentials = many_logins(&app, &user, 100).await;
    assert!(eventually(Duration::from_secs(5), || set.replica_in_sync()).await);
    let old_master = set.master.port;
    let new_master = set.replica.port;

    let switched = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let stream = tokio::spawn(stream_logouts(
        app.clone(),
        credentials,
        4,
        Duration::from_millis(150),
        switched.clone(),
    ));

    // How long the old master goes on accepting writes once the failover is asked for.
    let probe_key = format!("{}probe", app.settings.redis_prefix);
    let probe = tokio::spawn(async move {
        let writes = AtomicUsize::new(0);
        let mut last_accepted = None;
        let began = Instant::now();
        while began.elapsed() < Duration::from_secs(30) {
            let n = writes.fetch_add(1, Ordering::Relaxed);
            match query::<String>(old_master, redis::cmd("SET").arg(&probe_key).arg(n)).await {
                Ok(_) => last_accepted = Some(began.elapsed()),
                Err(err) if err.code() == Some("READONLY") => break,
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        last_accepted
    });

    // The nodes' roles over time, printed as transitions.
    let roles = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut last = None;
        while started.elapsed() < Duration::from_secs(25) {
            let now = (
                SentinelSet::role(old_master).await,
                SentinelSet::role(new_master).await,
            );
            if last.as_ref() != Some(&now) {
                seen.push((started.elapsed(), now.clone()));
                last = Some(now);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    });

    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked_at = started.elapsed();
    let _: String = query(
        set.sentinels[0].port,
        redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER),
    )
    .await
    .expect("the sentinel accepts the failover");

    // Settled: the sentinels name the replica, it is a master, and the old master replicates it.
    let named = eventually(Duration::from_secs(20), || async {
        set.named_master().await == Some(new_master)
    })
    .await;
    assert!(named, "the sentinels never named the new master");
    switched.store(true, Ordering::SeqCst);
    let switch_seen = started.elapsed();
    let settled = eventually(Duration::from_secs(30), || async {
        matches!(SentinelSet::role(new_master).await, Some((role, _)) if role == "master")
            && matches!(SentinelSet::role(old_master).await, Some((role, true)) if role == "slave")
    })
    .await;
    assert!(settled, "the old master never became the new one's replica");
    let settled_at = started.elapsed();
    let old_master_window = probe.await.expect("the probe");

    let outcome = stream.await.expect("the logout stream");
    eprintln!(
        "roles (old master, new master) over time: {:?}",
        roles.await
    );
    // After the switch, each acknowledged logout must still be refused, now on the new master.
    let mut undone = Vec::new();
    for (backend, credential) in &outcome.acknowledged {
        if app.me(*backend, credential).await.status() != StatusCode::UNAUTHORIZED {
            undone.push(backend.name());
        }
    }
    eprintln!(
        "sentinel switchover: asked at {asked_at:?}, new master named at {switch_seen:?}, \
         settled at {settled_at:?}; old master accepted writes until {old_master_window:?} \
         after the probe began; logouts: {} answered 204 ({} after the switch), {} answered 503, \
         {} undone, unexpected {:?}",
        outcome.acknowledged.len(),
        outcome.acknowledged_after_switch,
        outcome.unavailable,
        undone.len(),
        outcome.unexpected,
    );
    assert!(
        outcome.unexpected.is_empty(),
        "only 204 and 503: {:?}",
        outcome.unexpected
    );
    assert_eq!(undone, Vec::<&str>::new(), "acknowledged logouts undone");
    assert!(
        !outcome.acknowledged.is_empty(),
        "some logouts were acknowledged"
    );

    // The app follows the new master: a new login and its logout are confirmed there.
    assert!(
        eventually(Duration::from_secs(10), || async {
            let credential = app.login(Backend::Redis, &user).await;
            app.logout(Backend::Redis, &credential).await.status() == StatusCode::NO_CONTENT
                && app.me(Backend::Redis, &credential).await.status() == StatusCode::UNAUTHORIZED
        })
        .await,
        "logouts are confirmed again on the new master"
    );
}

#[tokio::test]
async fn a_killed_master_answers_503_with_retry_after_until_sentinel_promotes_the_replica() {
    let mut set = SentinelSet::start().await;
    let app = spawn_on(&set).await;
    let (_, redis_token) = app.logged_in(Backend::Redis).await;
    let (_, jwt) = app.logged_in(Backend::Jwt).await;
    assert!(eventually(Duration::from_secs(5), || set.replica_in_sync()).await);

    let killed_at = Instant::now();
    set.master.kill();
    let mut statuses = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut recovered_at = None;
    while killed_at.elapsed() < Duration::from_secs(20) {
        let mut all_ok = true;
        for (backend, credential) in [(Backend::Redis, &redis_token), (Backend::Jwt, &jwt)] {
            let sent = Instant::now();
            let response = app.me(backend, credential).await;
            slowest = slowest.max(sent.elapsed());
            let status = response.status();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert!(
                    response.headers().contains_key("retry-after"),
                    "a 503 says when to retry"
                );
                assert_error(response, status, "backend_unavailable").await;
            }
            all_ok &= status == StatusCode::OK;
            statuses.push(status);
        }
        if all_ok && statuses.iter().any(|s| *s != StatusCode::OK) {
            recovered_at = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unavailable = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    eprintln!(
        "sentinel master killed: {} requests, {unavailable} answered 503, recovered after \
         {recovered_at:?}, slowest request {slowest:?}",
        statuses.len()
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE),
        "only 200 and 503: {statuses:?}"
    );
    assert!(unavailable > 0, "the kill was noticed");
    assert!(
        recovered_at.is_some(),
        "the promoted replica serves within 20 s"
    );
    assert!(slowest < Duration::from_millis(1500), "slowest {slowest:?}");
    // The new master has no replica left to confirm a revocation: a logout is refused, not
    // acknowledged on a copy that a second failure would lose.
    assert_error(
        app.logout(Backend::Redis, &redis_token).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "backend_unavailable",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_ends_the_cache_generation_before_a_revocation_on_the_new_master_can_be_missed()
 {
    use crate::client_cache::{cache_metric, cache_on};
    use crate::cluster_cache::{
        Revocation, fault_bound, revoke, settle, two_cached_instances_with, watch,
    };

    let set = SentinelSet::start().await;
    let (a, b) = two_cached_instances_with(&set.url(), fault_bound).await;
    let user = a.register().await;
    let opaque = a.login(Backend::Redis, &user).await;
    let jwt = a.login(Backend::Jwt, &user).await;
    // Warm on A: accepted twice, the second time from its cache.
    cache_on(&a, Backend::Redis, &opaque).await;
    cache_on(&a, Backend::Jwt, &jwt).await;
    assert!(eventually(Duration::from_secs(5), || set.replica_in_sync()).await);
    let (old_master, new_master) = (set.master.port, set.replica.port);
    // A is probed without pause from here on, so its cache stays warm through the switchover.
    let watches = (
        watch(&a, Backend::Redis, &opaque),
        watch(&a, Backend::Jwt, &jwt),
    );
    settle().await;
    let _: String = query(
        set.sentinels[0].port,
        redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER),
    )
    .await
    .expect("the sentinel accepts the failover");
    let settled = eventually(Duration::from_secs(30), || async {
        set.named_master().await == Some(new_master)
            && matches!(SentinelSet::role(new_master).await, Some((role, _)) if role == "master")
            && matches!(SentinelSet::role(old_master).await, Some((role, true)) if role == "slave")
    })
    .await;
    assert!(settled, "the switchover did not settle");
    // The revocations land on the new master, which never tracked A's reads.
    let linger = Duration::from_millis(500);
    let (asked, acked) = revoke(&b, Backend::Redis, &opaque, Revocation::Logout).await;
    watches.0.judge(asked, acked, linger).await;
    let (asked, acked) = revoke(&b, Backend::Jwt, &jwt, Revocation::Logout).await;
    watches.1.judge(asked, acked, linger).await;
    // And A's cache serves hits again, from the new master.
    let hits = cache_metric(&a, "authlab_redis_cache_hits_total", "redis").await;
    let fresh = a.login(Backend::Redis, &user).await;
    cache_on(&a, Backend::Redis, &fresh).await;
    assert!(cache_metric(&a, "authlab_redis_cache_hits_total", "redis").await > hits);
}
