//! `--scenario cache-scale`: what N instances with the client-side cache cost one Redis, idle
//! and busy.
//!
//! The cache's trust is earned on demand (see authlab-redis `tracking`): an idle instance
//! sends Redis nothing, a busy one at most 2/W heartbeats a second per cache. That is a claim
//! about the whole deployment, so this scenario measures it on one: one `redis-server`, N
//! instances (`--instances`, default 4) with `--redis-cache on --jwt-denylist cached`, no
//! balancer (each instance gets its own traffic, so each one's cost can be read apart).
//!
//! 1. Every instance logs its users in on `/redis` and `/jwt` and asks `/me` with each token
//!    until both caches answered from memory (warm).
//! 2. **Idle** (`--idle-for`, default 10 s): no requests at all.
//! 3. **Loaded** (`--duration`): each instance receives `--rate / N` requests a second, `GET
//!    /redis/me` and `GET /jwt/me` in turn over its warm tokens.
//!
//! Each phase is measured between two readings, taken right before and right after it:
//! Redis's `INFO commandstats` (every command's calls, minus the `INFO` the readings send
//! themselves) and `INFO cpu` (`used_cpu_sys` + `used_cpu_user`); and each instance's
//! `/metrics` (the cache's hits, misses and heartbeats, summed over its two caches). The report
//! gives per phase: Redis commands a second in all and per instance, commands by name, the
//! heartbeats a second of each instance, the hit ratio, and Redis CPU per request; it is
//! written to `cache-scale.json` and `cache-scale.md` in `--out`.
//!
//! A simplification, named: Redis counts commands per server, not per client, so "per
//! instance" is the total divided by N (the heartbeats, counted by each instance, are its own).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::DrillError;
use crate::args::DrillArgs;
use crate::instances::{self, Instance, InstanceSpec};
use crate::interrupt::Interrupt;
use crate::procs::{self, redis_cli};
use crate::topology::{Ports, Redis, Topology};

/// The flags every instance of this scenario gets, before `--instance-arg`s.
pub const CACHE_FLAGS: [&str; 4] = ["--redis-cache", "on", "--jwt-denylist", "cached"];

/// What a cache-scale run measured.
#[derive(Debug, Clone, Serialize)]
pub struct CacheScaleReport {
    /// `cache-scale`.
    pub scenario: &'static str,
    /// The instances' names (`a1`, ...).
    pub instances: Vec<String>,
    /// The flags every instance ran with (the cache's, then `--instance-arg`s).
    pub instance_flags: Vec<String>,
    /// Requests a second asked of all instances together in the loaded phase.
    pub rate: u32,
    /// The idle phase.
    pub idle: Phase,
    /// The loaded phase.
    pub loaded: Phase,
}

/// One phase, between two readings.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// How long it lasted, ms.
    pub duration_ms: u64,
    /// Requests sent to the instances.
    pub requests: u64,
    /// Of them, answers other than 200 (none expected: every token is warm and valid).
    pub not_ok: u64,
    /// Commands Redis processed, the readings' own `INFO` excluded.
    pub redis_commands: u64,
    /// The same a second.
    pub redis_commands_per_s: f64,
    /// The same a second, divided by the instances.
    pub redis_commands_per_s_per_instance: f64,
    /// Commands by name (lower case), the readings' own `INFO` excluded.
    pub redis_commands_by_name: BTreeMap<String, u64>,
    /// Heartbeats a second sent by each instance (both caches), in instance order.
    pub heartbeats_per_s: Vec<f64>,
    /// Cache hits over lookups, both caches of every instance; `None` without lookups.
    pub hit_ratio: Option<f64>,
    /// Redis CPU (`used_cpu_sys` + `used_cpu_user`) spent in the phase, ms.
    pub redis_cpu_ms: f64,
    /// The same per request, microseconds; `None` without requests.
    pub redis_cpu_us_per_request: Option<f64>,
    /// Redis commands per request; `None` without requests.
    pub redis_commands_per_request: Option<f64>,
}

impl CacheScaleReport {
    /// The human summary printed at the end.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "cache-scale: {} instances ({}), one Redis\n",
            self.instances.len(),
            self.instance_flags.join(" ")
        );
        for (name, phase) in [("idle", &self.idle), ("loaded", &self.loaded)] {
            text.push_str(&format!(
                "  {name:<6} {:>5.1} s: {} requests ({} not 200), Redis {:.1} commands/s \
                 ({:.1} per instance), heartbeats/s per instance {}, hit ratio {}, \
                 Redis CPU {}\n",
                phase.duration_ms as f64 / 1000.0,
                phase.requests,
                phase.not_ok,
                phase.redis_commands_per_s,
                phase.redis_commands_per_s_per_instance,
                phase
                    .heartbeats_per_s
                    .iter()
                    .map(|h| format!("{h:.1}"))
                    .collect::<Vec<_>>()
                    .join("/"),
                phase
                    .hit_ratio
                    .map_or("-".to_owned(), |r| format!("{:.3}", r)),
                match phase.redis_cpu_us_per_request {
                    Some(us) => format!("{us:.2} us/request"),
                    None => format!("{:.1} ms in all", phase.redis_cpu_ms),
                },
            ));
        }
        text
    }

    /// The Markdown report.
    pub fn markdown(&self, command: &str) -> String {
        let mut md = format!(
            "# authlab drill: cache-scale\n\n`{command}`\n\n{} instances ({}) with `{}` on one \
             Redis, idle and then loaded at {} requests/s in all (`/redis/me` and `/jwt/me` \
             in turn, warm tokens). Redis commands are `INFO commandstats` deltas (the \
             readings' own `INFO` excluded); per instance is the total over {}; heartbeats are \
             each instance's own `authlab_redis_cache_heartbeats_total`.\n\n",
            self.instances.len(),
            self.instances.join(", "),
            self.instance_flags.join(" "),
            self.rate,
            self.instances.len(),
        );
        md.push_str(
            "| phase | s | requests | not 200 | Redis cmd/s | cmd/s per instance | cmd per \
             request | heartbeats/s per instance | hit ratio | Redis CPU us/request |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
        for (name, phase) in [("idle", &self.idle), ("loaded", &self.loaded)] {
            let opt = |v: Option<f64>, digits: usize| {
                v.map_or("-".to_owned(), |v| format!("{v:.digits$}"))
            };
            md.push_str(&format!(
                "| {name} | {:.1} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} |\n",
                phase.duration_ms as f64 / 1000.0,
                phase.requests,
                phase.not_ok,
                phase.redis_commands_per_s,
                phase.redis_commands_per_s_per_instance,
                opt(phase.redis_commands_per_request, 3),
                phase
                    .heartbeats_per_s
                    .iter()
                    .map(|h| format!("{h:.1}"))
                    .collect::<Vec<_>>()
                    .join(" / "),
                opt(phase.hit_ratio, 3),
                opt(phase.redis_cpu_us_per_request, 2),
            ));
        }
        md.push_str("\nCommands by name:\n\n");
        for (name, phase) in [("idle", &self.idle), ("loaded", &self.loaded)] {
            let names: Vec<String> = phase
                .redis_commands_by_name
                .iter()
                .map(|(command, calls)| format!("{command} {calls}"))
                .collect();
            let names = if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            };
            md.push_str(&format!("- {name}: {names}\n"));
        }
        md
    }
}

/// One reading of Redis and of every instance.
struct Reading {
    at: Instant,
    commands: BTreeMap<String, u64>,
    cpu_seconds: f64,
    /// Per instance: (hits, misses, heartbeats), both caches summed.
    caches: Vec<(f64, f64, f64)>,
}

/// `cmdstat_get:calls=12,usec=...` lines: calls by command name, `info` left out.
fn commandstats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            (name != "info").then(|| (name.to_owned(), calls))
        })
        .collect()
}

/// `used_cpu_sys` + `used_cpu_user`, seconds.
fn cpu_seconds(text: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(':')?;
            matches!(name, "used_cpu_sys" | "used_cpu_user")
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// The sum of one series over its labels in a Prometheus text exposition.
fn metric_sum(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn read_caches(
    client: &reqwest::Client,
    instances: &[(String, u16)],
) -> Result<Vec<(f64, f64, f64)>, DrillError> {
    let mut caches = Vec::with_capacity(instances.len());
    for (name, port) in instances {
        let text = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| DrillError::Setup {
                step: "metrics",
                detail: format!("{name}: {e}"),
            })?
            .text()
            .await
            .map_err(|e| DrillError::Setup {
                step: "metrics",
                detail: format!("{name}: {e}"),
            })?;
        caches.push((
            metric_sum(&text, "authlab_redis_cache_hits_total"),
            metric_sum(&text, "authlab_redis_cache_misses_total"),
            metric_sum(&text, "authlab_redis_cache_heartbeats_total"),
        ));
    }
    Ok(caches)
}

/// Reads Redis between the instances' `/metrics`: `before` reads the instances first, so that
/// their scrapes fall outside the Redis window; `after` reads Redis first.
async fn reading(
    client: &reqwest::Client,
    redis_port: u16,
    instances: &[(String, u16)],
    instances_first: bool,
) -> Result<Reading, DrillError> {
    let caches = if instances_first {
        Some(read_caches(client, instances).await?)
    } else {
        None
    };
    let at = Instant::now();
    let commands = commandstats(&redis_cli(redis_port, &["INFO", "commandstats"])?);
    let cpu = cpu_seconds(&redis_cli(redis_port, &["INFO", "cpu"])?);
    let caches = match caches {
        Some(caches) => caches,
        None => read_caches(client, instances).await?,
    };
    Ok(Reading {
        at,
        commands,
        cpu_seconds: cpu,
        caches,
    })
}

fn phase(before: &Reading, after: &Reading, requests: u64, not_ok: u64) -> Phase {
    let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let mut by_name = BTreeMap::new();
    for (name, &calls) in &after.commands {
        let delta = calls.saturating_sub(before.commands.get(name).copied().unwrap_or(0));
        if delta > 0 {
            by_name.insert(name.clone(), delta);
        }
    }
    let commands: u64 = by_name.values().sum();
    let n = after.caches.len().max(1) as f64;
    let (mut hits, mut misses) = (0.0, 0.0);
    let mut heartbeats = Vec::with_capacity(after.caches.len());
    for (b, a) in before.caches.iter().zip(&after.caches) {
        hits += a.0 - b.0;
        misses += a.1 - b.1;
        heartbeats.push((a.2 - b.2) / seconds);
    }
    let cpu_ms = (after.cpu_seconds - before.cpu_seconds).max(0.0) * 1000.0;
    let per_request = |total: f64| (requests > 0).then(|| total / requests as f64);
    Phase {
        duration_ms: (seconds * 1000.0).round() as u64,
        requests,
        not_ok,
        redis_commands: commands,
        redis_commands_per_s: commands as f64 / seconds,
        redis_commands_per_s_per_instance: commands as f64 / seconds / n,
        redis_commands_by_name: by_name,
        heartbeats_per_s: heartbeats,
        hit_ratio: (hits + misses > 0.0).then(|| hits / (hits + misses)),
        redis_cpu_ms: cpu_ms,
        redis_cpu_us_per_request: per_request(cpu_ms * 1000.0),
        redis_commands_per_request: per_request(commands as f64),
    }
}

/// One instance's warm tokens: bearer header values for `/redis/me` and `/jwt/me`.
struct Tokens {
    port: u16,
    bearers: Vec<(&'static str, String)>,
}

fn setup_err(step: &'static str) -> impl Fn(String) -> DrillError {
    move |detail| DrillError::Setup { step, detail }
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let response = client
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url}: {status}"));
    }
    if status == reqwest::StatusCode::CREATED || status == reqwest::StatusCode::OK {
        return response.json().await.map_err(|e| format!("{url}: {e}"));
    }
    Ok(serde_json::Value::Null)
}

/// Registers `users` users spread over the instances, and logs each in on `/redis` and `/jwt`
/// on its own instance.
async fn log_in(
    client: &reqwest::Client,
    ports: &[u16],
    users: usize,
    run_id: &str,
) -> Result<Vec<Tokens>, DrillError> {
    let mut tokens: Vec<Tokens> = ports
        .iter()
        .map(|&port| Tokens {
            port,
            bearers: Vec::new(),
        })
        .collect();
    for i in 0..users.max(ports.len()) {
        let instance = &mut tokens[i % ports.len()];
        let base = format!("http://127.0.0.1:{}", instance.port);
        let username = format!("cache-{}-{i}", &run_id[..8]);
        let password = format!("{}-{run_id}", uuid::Uuid::new_v4().simple());
        let credentials = serde_json::json!({ "username": username, "password": password });
        post_json(client, &format!("{base}/users"), credentials.clone())
            .await
            .map_err(setup_err("register"))?;
        for backend in ["redis", "jwt"] {
            let body = post_json(
                client,
                &format!("{base}/{backend}/login"),
                credentials.clone(),
            )
            .await
            .map_err(setup_err("login"))?;
            let token = body["access_token"]
                .as_str()
                .ok_or_else(|| DrillError::Setup {
                    step: "login",
                    detail: format!("{base}/{backend}/login: no access_token in {body}"),
                })?;
            instance.bearers.push((backend, format!("Bearer {token}")));
        }
    }
    Ok(tokens)
}

async fn me(client: &reqwest::Client, port: u16, backend: &str, bearer: &str) -> Option<u16> {
    client
        .get(format!("http://127.0.0.1:{port}/{backend}/me"))
        .header(reqwest::header::AUTHORIZATION, bearer)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Asks every token until a round answered all from the caches (hits grew by one per
/// request), at most 5 s.
async fn warm(
    client: &reqwest::Client,
    tokens: &[Tokens],
    instances: &[(String, u16)],
) -> Result<(), DrillError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = read_caches(client, instances).await?;
        let mut asked = 0.0;
        for instance in tokens {
            for (backend, bearer) in &instance.bearers {
                if me(client, instance.port, backend, bearer).await != Some(200) {
                    return Err(DrillError::Setup {
                        step: "warm-up",
                        detail: format!("GET /{backend}/me on :{} was not 200", instance.port),
                    });
                }
                asked += 1.0;
            }
        }
        let after = read_caches(client, instances).await?;
        let hits: f64 = after.iter().zip(&before).map(|(a, b)| a.0 - b.0).sum();
        // The JWT denylist counts one hit per answer it holds (four a request).
        if hits >= asked {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DrillError::Setup {
                step: "warm-up",
                detail: "the caches did not answer from memory within 5 s".into(),
            });
        }
    }
}

/// Steady traffic for `duration`: instance `i` is asked `rate / N` times a second, over its
/// tokens in turn, each instance by a task of its own. Returns (requests, answers other than
/// 200).
async fn load(
    client: &reqwest::Client,
    tokens: &[Tokens],
    rate: u32,
    duration: Duration,
    interrupt: &Interrupt,
) -> (u64, u64) {
    let sent = Arc::new(AtomicU64::new(0));
    let not_ok = Arc::new(AtomicU64::new(0));
    let per_instance = (f64::from(rate) / tokens.len().max(1) as f64).max(1.0);
    let period = Duration::from_secs_f64(1.0 / per_instance);
    let end = tokio::time::Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for instance in tokens {
        let (sent, not_ok) = (sent.clone(), not_ok.clone());
        let (client, interrupt) = (client.clone(), interrupt.clone());
        let (port, bearers) = (instance.port, instance.bearers.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut turn = 0usize;
            while tokio::time::Instant::now() < end && !interrupt.is_raised() {
                tick.tick().await;
                let (backend, bearer) = &bearers[turn % bearers.len()];
                turn += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                if me(&client, port, backend, bearer).await != Some(200) {
                    not_ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    (sent.load(Ordering::Relaxed), not_ok.load(Ordering::Relaxed))
}

/// Runs the scenario and writes `cache-scale.json` and `cache-scale.md` to `--out`.
pub fn run(args: &DrillArgs, interrupt: &Interrupt) -> Result<CacheScaleReport, DrillError> {
    args.validate()?;
    procs::check_installed()?;
    let ports = Ports {
        base: args.base_port,
    };
    let count = usize::from(args.instances());
    let mut needed = Topology::Single.ports(ports);
    needed.extend((0..count).map(|i| args.instance_port(i)));
    procs::check_ports_free(&needed)?;
    let logs = args.out.join("logs");
    std::fs::create_dir_all(&logs).map_err(|source| DrillError::Io {
        path: logs.clone(),
        source,
    })?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let program = match &args.authlab_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(|source| DrillError::Io {
            path: "the current executable".into(),
            source,
        })?,
    };
    let database = logs.join("users.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    eprintln!("drill: starting Redis (Single)");
    let redis = Redis::start(Topology::Single, ports, args.node_timeout_ms, &logs)?;
    interrupt.check()?;
    let mut flags: Vec<String> = CACHE_FLAGS.iter().map(|f| (*f).to_owned()).collect();
    flags.extend(args.instance_args.iter().cloned());
    let spec = InstanceSpec {
        program,
        redis_url: redis.url(),
        database_url: args
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", database.display())),
        redis_prefix: format!("authlab-drill:{}:", &run_id[..12]),
        jwt_secret: format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ),
        extra_args: flags.clone(),
    };
    eprintln!(
        "drill: starting {count} authlab instances ({}) on {}",
        flags.join(" "),
        spec.redis_url
    );
    let mut running: Vec<Instance> = Vec::new();
    for i in 0..count {
        running.push(instances::start(
            &spec,
            &format!("a{}", i + 1),
            args.instance_port(i),
            &logs,
        )?);
        interrupt.check()?;
    }
    let named: Vec<(String, u16)> = running.iter().map(|i| (i.name.clone(), i.port)).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| DrillError::Io {
            path: "the load's runtime".into(),
            source,
        })?;
    let client = reqwest::Client::builder()
        .timeout(args.request_timeout)
        .build()
        .map_err(|e| DrillError::Setup {
            step: "HTTP client",
            detail: e.to_string(),
        })?;
    let redis_port = ports.node(0);
    let report = runtime.block_on(async {
        eprintln!("drill: logging users in and warming every instance's caches");
        let ports: Vec<u16> = named.iter().map(|(_, port)| *port).collect();
        let tokens = log_in(&client, &ports, args.users as usize, &run_id).await?;
        warm(&client, &tokens, &named).await?;
        // A heartbeat a hit woke may still be in flight: let it land before the idle window.
        tokio::time::sleep(Duration::from_millis(200)).await;
        interrupt.check()?;

        eprintln!(
            "drill: idle for {} s (no requests)",
            args.idle_for.as_secs_f64()
        );
        let before = reading(&client, redis_port, &named, true).await?;
        tokio::time::sleep(args.idle_for).await;
        let after = reading(&client, redis_port, &named, false).await?;
        let idle = phase(&before, &after, 0, 0);
        interrupt.check()?;

        eprintln!(
            "drill: loaded for {} s ({} requests/s in all)",
            args.duration.as_secs_f64(),
            args.rate()
        );
        let before = reading(&client, redis_port, &named, true).await?;
        let (requests, not_ok) =
            load(&client, &tokens, args.rate(), args.duration, interrupt).await;
        let after = reading(&client, redis_port, &named, false).await?;
        let loaded = phase(&before, &after, requests, not_ok);
        interrupt.check()?;
        Ok::<_, DrillError>(CacheScaleReport {
            scenario: "cache-scale",
            instances: named.iter().map(|(name, _)| name.clone()).collect(),
            instance_flags: flags.clone(),
            rate: args.rate(),
            idle,
            loaded,
        })
    })?;
    write(&report, &args.out)?;
    drop(running);
    drop(redis);
    crate::run::remove_scratch_database(args, &database);
    Ok(report)
}

/// Writes `cache-scale.json` and `cache-scale.md` to `out`.
pub fn write(report: &CacheScaleReport, out: &Path) -> Result<(), DrillError> {
    crate::run::write_report_files(report, out, "cache-scale", |command| {
        report.markdown(command)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_are_read_by_name_without_the_readings_own_info() {
        let text = "# Commandstats\r\ncmdstat_get:calls=12,usec=30,usec_per_call=2.50,\
                    rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=4,usec=1\r\n\
                    cmdstat_client|tracking:calls=2,usec=1\r\n";
        let stats = commandstats(text);
        assert_eq!(stats.get("get"), Some(&12));
        assert_eq!(stats.get("client|tracking"), Some(&2));
        assert_eq!(stats.get("info"), None);
        assert_eq!(
            cpu_seconds("used_cpu_sys:1.5\r\nused_cpu_user:0.25\r\nused_cpu_sys_children:9\r\n"),
            1.75
        );
        let metrics = "authlab_redis_cache_heartbeats_total{cache=\"redis\"} 3\n\
                       authlab_redis_cache_heartbeats_total{cache=\"jwt_denylist\"} 4\n\
                       authlab_redis_cache_heartbeats_total_other 100\n";
        assert_eq!(
            metric_sum(metrics, "authlab_redis_cache_heartbeats_total"),
            7.0
        );
    }
}
