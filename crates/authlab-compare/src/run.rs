//! The order of a run: memory first (on a quiet process), then the instances, the scale-out
//! checks, every route in rounds, the login cost, and Redis memory per login.
//!
//! Every step prints one line to stderr with the ETA of the whole run (see [`crate::progress`]);
//! between steps, and inside the long ones, the run checks for Ctrl-C ([`Interrupt`]) and then
//! cleans up as it would at the end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use authlab_loadgen::{LoadReport, LoadSpec, RequestSpec};

use crate::interrupt::Interrupt;
use crate::modes::{self, Backend, Mode};
use crate::probes::{self, CacheActivity, CommandStats};
use crate::progress::{self, Plan, StepId};
use crate::report::{self, Report, RouteResult, format};
use crate::revocation::{self, RevocationLatency, RevocationProbe};
use crate::setup::{self, CredentialHeader, Instances, Logins};
use crate::{CompareArgs, CompareError};

/// One route to load: what the table calls it, where it is, and the credential it carries.
struct RouteSpec {
    name: &'static str,
    addr: SocketAddr,
    path: &'static str,
    credential: Option<CredentialHeader>,
    /// The mode the row measures (`None` for `/hello`).
    mode: Option<&'static Mode>,
}

/// The rows of a run, in the order of a round (what [`Plan`] counts): `/hello`, every mode,
/// `/hello` again.
fn route_names(args: &CompareArgs) -> Vec<&'static str> {
    let modes = match args.target {
        Some(_) => modes::AS_SERVED.iter().collect(),
        None => modes::selected(&args.modes),
    };
    let mut names = vec!["/hello"];
    names.extend(modes.iter().map(|m| m.row));
    names.push("/hello (again)");
    names
}

/// Redis's own count of what one route made it do, summed over the rounds.
struct CommandTally {
    /// Calls per command (after minus before), over every round.
    delta: CommandStats,
    /// HTTP requests sent, over every round.
    requests: u64,
    /// False if any snapshot could not be read (then no figure is reported).
    complete: bool,
    /// Wall time between the snapshots, over every round (for the background rate).
    elapsed: Duration,
    /// What the mode's client-side cache did, over every round (`None`: no cache series).
    cache: Option<CacheActivity>,
    /// Redis's CPU seconds between the snapshots, over every round (`None`: not readable).
    cpu_seconds: Option<f64>,
}

/// Runs the whole comparison and writes the report. Blocks; call it outside any async runtime.
/// Ctrl-C (`interrupt`) ends it early with [`CompareError::Interrupted`], after the clean-up.
pub fn run(args: &CompareArgs, interrupt: &Interrupt) -> Result<Report, CompareError> {
    // The orchestration's own small runtime: setup calls and Redis statistics, never the load.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CompareError::Io)?;
    // What the in-process servers need, checked before anything is printed or measured: Redis,
    // when a mode logs in through it (a session-only run does not).
    let needs_redis = modes::selected(&args.modes)
        .iter()
        .any(|mode| !matches!(mode.backend, Backend::Session));
    if args.target.is_none() && needs_redis {
        rt.block_on(setup::check_redis(&args.redis))?;
    }
    let mut report = Report::new(args);
    let mut plan = Plan::new(args, &route_names(args));
    eprintln!(
        "{}",
        format::wrap(
            &format!(
                "authlab compare: about {} (Ctrl-C stops it and cleans up)",
                format::eta(plan.total())
            ),
            format::COLUMNS,
            "  "
        )
    );
    for leftover in setup::remove_stale_runs(&std::env::temp_dir()) {
        eprintln!("removed a crashed run's {}", leftover.display());
    }

    if !args.skip_memory {
        plan.start(StepId::Sessions);
        eprintln!("{}", plan.line("memory: live sessions in this process"));
        report.sessions = rt.block_on(probes::session_population(
            &args.sessions,
            &interrupt.flag(),
            |p| {
                eprintln!(
                    "{}",
                    plan.line(&format!(
                        "{:>10} sessions: {}/session (RSS), verify {:.0} ns",
                        format::thousands(p.sessions as u64),
                        format::bytes(p.bytes_per_session),
                        p.verify_ns
                    ))
                );
            },
        ));
        interrupt.check()?;
    }

    plan.start(StepId::Setup);
    eprintln!(
        "{}",
        plan.line("starting the instances, logging in on every backend")
    );
    let instances = match &args.target {
        Some(url) => Instances::external(setup::parse_target(url)?),
        // Started instances are always stopped and cleaned up below, even after a Ctrl-C; only
        // a start that failed because of one is reported as the interruption.
        None => Instances::start(args).map_err(|err| match interrupt.check() {
            Err(interrupted) => interrupted,
            Ok(()) => err,
        })?,
    };
    let outcome = run_against(args, &rt, &instances, &mut report, &mut plan, interrupt);
    rt.block_on(instances.stop());
    if instances.in_process() {
        rt.block_on(probes::remove_prefix(&args.redis, &instances.redis_prefix))
            .unwrap_or_else(|err| eprintln!("warning: could not clean up Redis keys: {err}"));
    }
    drop(instances);
    interrupt.outcome(outcome)?;

    report.finish();
    report::write_all(&report, &args.out)?;
    Ok(report)
}

fn run_against(
    args: &CompareArgs,
    rt: &tokio::runtime::Runtime,
    instances: &Instances,
    report: &mut Report,
    plan: &mut Plan,
    interrupt: &Interrupt,
) -> Result<(), CompareError> {
    interrupt.check()?;
    report.redis_version = rt.block_on(probes::redis_version(&args.redis.url)).ok();
    let logins =
        interrupt.outcome(rt.block_on(setup::log_in_everywhere(instances, args.timeout)))?;

    if instances.in_process() {
        plan.start(StepId::ScaleOut);
        eprintln!("{}", plan.line("scale-out and revocation checks"));
        report.scale_out =
            interrupt.outcome(rt.block_on(setup::scale_out(instances, args.timeout)))?;
    }

    if instances.in_process() && args.revocation_samples > 0 {
        report.revocation = revocation_latency(args, rt, instances, plan, interrupt)?;
    }

    let routes = route_plan(instances, &logins);
    (report.routes, report.redis_background_per_second) =
        measure_routes(args, rt, &routes, plan, interrupt)?;

    plan.start(StepId::Login);
    eprintln!("{}", plan.line("login cost: POST /jwt/login (argon2id)"));
    let progress = plan.step_progress("POST /jwt/login");
    let login = interrupt.outcome(login_cost(args, instances.hello, progress, interrupt))?;
    eprintln!(
        "{}",
        plan.line(&format!(
            "login cost: {:.1} logins/s, p99 {}",
            login.requests_per_sec,
            format::latency(login.latency.p99_us)
        ))
    );
    report.login = Some(login);

    if !args.skip_memory && args.redis_tokens > 0 {
        plan.start(StepId::RedisMemory);
        eprintln!(
            "{}",
            plan.line(&format!(
                "memory: {} logins into Redis",
                format::thousands(args.redis_tokens as u64)
            ))
        );
        report.redis_memory = rt
            .block_on(probes::redis_token_memory(
                &args.redis,
                args.redis_tokens,
                &interrupt.flag(),
            ))
            .map_err(|err| eprintln!("warning: Redis memory not measured: {err}"))
            .ok();
        interrupt.check()?;
    }
    Ok(())
}

/// The revocation-latency probe of every revocable mode (in-process runs only).
fn revocation_latency(
    args: &CompareArgs,
    rt: &tokio::runtime::Runtime,
    instances: &Instances,
    plan: &mut Plan,
    interrupt: &Interrupt,
) -> Result<Vec<RevocationLatency>, CompareError> {
    let mut found = Vec::new();
    let revocable = instances.modes.iter().filter(|i| i.mode.revocable);
    for (index, instance) in (1..).zip(revocable) {
        let Some(twin) = instance.twin else {
            continue;
        };
        plan.start(StepId::Revocation { index });
        eprintln!(
            "{}",
            plan.line(&format!(
                "revocation latency: {} ({} samples)",
                instance.mode.row,
                format::thousands(args.revocation_samples as u64)
            ))
        );
        let probe = RevocationProbe {
            issuer: instance.addr,
            other: twin,
            backend: instance.mode.backend.name(),
            username: setup::USERNAME.to_owned(),
            password: setup::PASSWORD.to_owned(),
        };
        let cancel = interrupt.flag();
        let measured = rt.block_on(revocation::measure_until(
            &probe,
            args.revocation_samples,
            modes::REVOCATION_GIVE_UP,
            args.timeout,
            || cancel.load(std::sync::atomic::Ordering::Relaxed),
        ));
        let mut measured = interrupt.outcome(measured)?;
        measured.route = Some(instance.mode.row.to_owned());
        measured.mode = Some(instance.mode.key.to_owned());
        interrupt.check()?;
        eprintln!(
            "{}",
            plan.line(&format!(
                "revocation latency: {}: still accepted p99 {}, {} never refused",
                instance.mode.row,
                format::latency(measured.p99_us),
                measured.never_refused
            ))
        );
        found.push(measured);
    }
    Ok(found)
}

/// The routes, in the order every round runs them: `/hello` opens and closes each round, every
/// mode in between in the table's order.
fn route_plan(instances: &Instances, logins: &Logins) -> Vec<RouteSpec> {
    let hello = |name| RouteSpec {
        name,
        addr: instances.hello,
        path: "/hello",
        credential: None,
        mode: None,
    };
    let mut routes = vec![hello("/hello")];
    for (instance, credential) in instances.modes.iter().zip(&logins.credentials) {
        routes.push(RouteSpec {
            name: instance.mode.row,
            addr: instance.addr,
            path: instance.mode.backend.me_path(),
            credential: Some(credential.clone()),
            mode: Some(instance.mode),
        });
    }
    // The baseline again, last: if the machine drifted during the run, the two `/hello` rows
    // differ, and the ratios use their mean.
    routes.push(hello("/hello (again)"));
    routes
}

/// Every route once per round, in the same order; one row per route, over all its rounds.
fn measure_routes(
    args: &CompareArgs,
    rt: &tokio::runtime::Runtime,
    routes: &[RouteSpec],
    plan: &mut Plan,
    interrupt: &Interrupt,
) -> Result<(Vec<RouteResult>, BTreeMap<String, f64>), CompareError> {
    let rounds = args.rounds.max(1);
    let mut loads: Vec<Vec<LoadReport>> = vec![Vec::new(); routes.len()];
    let mut tallies: Vec<CommandTally> = routes
        .iter()
        .map(|_| CommandTally {
            delta: CommandStats::new(),
            requests: 0,
            complete: true,
            elapsed: Duration::ZERO,
            cache: None,
            cpu_seconds: Some(0.0),
        })
        .collect();
    for round in 1..=rounds {
        for (index, ((route, rounds_so_far), tally)) in
            routes.iter().zip(&mut loads).zip(&mut tallies).enumerate()
        {
            let index = index + 1;
            interrupt.check()?;
            plan.start(StepId::Route { round, index });
            let progress = plan.route_progress(round, index);
            let load = measure_once(args, rt, route, tally, progress, interrupt);
            let load = interrupt.outcome(load)?;
            eprintln!("{}", plan.route_done(round, index, &load));
            rounds_so_far.push(load);
        }
    }
    let background = background_rate(routes, &tallies);
    let background_cpu = background_cpu_rate(routes, &tallies);
    let rows = routes
        .iter()
        .zip(loads)
        .zip(tallies)
        .map(|((route, rounds), tally)| {
            let redis = tally.complete.then(|| {
                let own =
                    without_background(&tally.delta, &background, tally.elapsed, tally.requests);
                let per = probes::per_request(&CommandStats::new(), &own, tally.requests);
                match (tally.cpu_seconds, background_cpu) {
                    (Some(cpu), Some(rate)) => {
                        per.with_cpu(cpu - rate * tally.elapsed.as_secs_f64(), tally.requests)
                    }
                    _ => per,
                }
            });
            let mut row = RouteResult::new(
                route.name,
                route.path,
                route.credential.as_ref(),
                route
                    .mode
                    .and_then(|m| m.target)
                    .map(|t| (t.ratio, t.source)),
                rounds,
                redis,
            );
            if let Some(mode) = route.mode {
                row.mode = Some(mode.key.to_owned());
                row.flags = Some(mode.flags_text());
            }
            row.cache = tally.cache;
            row
        })
        .collect();
    Ok((rows, background))
}

/// Redis commands per second that no request sent: what Redis ran while only `/hello`, which
/// never touches Redis, was loaded. The cached instances' heartbeats used to be most of it (a
/// `PING` a millisecond each); since trust is earned on demand an idle instance sends none, so
/// this is about 0, and a cached route's heartbeats count in its own Redis/req.
fn background_rate(routes: &[RouteSpec], tallies: &[CommandTally]) -> BTreeMap<String, f64> {
    let mut calls = CommandStats::new();
    let mut seconds = 0.0;
    for (_, tally) in routes
        .iter()
        .zip(tallies)
        .filter(|(route, tally)| route.mode.is_none() && tally.complete)
    {
        for (name, delta) in &tally.delta {
            *calls.entry(name.clone()).or_default() += delta;
        }
        seconds += tally.elapsed.as_secs_f64();
    }
    if seconds <= 0.0 {
        return BTreeMap::new();
    }
    probes::per_request(&CommandStats::new(), &calls, 1)
        .by_command
        .into_iter()
        .map(|(name, calls)| (name, calls / seconds))
        .collect()
}

/// Redis CPU seconds per second that no request used (its own cron, our `INFO` probes), measured
/// while only `/hello` ran, like [`background_rate`]; `None` where it could not be read.
fn background_cpu_rate(routes: &[RouteSpec], tallies: &[CommandTally]) -> Option<f64> {
    let (mut cpu, mut seconds) = (0.0, 0.0);
    for (_, tally) in routes
        .iter()
        .zip(tallies)
        .filter(|(route, tally)| route.mode.is_none() && tally.complete)
    {
        cpu += tally.cpu_seconds?;
        seconds += tally.elapsed.as_secs_f64();
    }
    (seconds > 0.0).then(|| cpu / seconds)
}

/// Below this many per request, what is left of a background command after the subtraction is
/// taken for the background's own jitter (a heartbeat's rate moves with the load on the
/// machine), not for the route: a route that really sends one, like a pool's `PING` at every
/// checkout, sends about one per request.
const BACKGROUND_JITTER_PER_REQUEST: f64 = 0.5;

/// A route's command counts less the background rate over its measured wall time.
fn without_background(
    delta: &CommandStats,
    background: &BTreeMap<String, f64>,
    elapsed: Duration,
    requests: u64,
) -> CommandStats {
    delta
        .iter()
        .map(|(name, calls)| {
            let Some(rate) = background.get(name) else {
                return (name.clone(), *calls);
            };
            let left = calls.saturating_sub((rate * elapsed.as_secs_f64()).round() as u64);
            let own = if (left as f64) < BACKGROUND_JITTER_PER_REQUEST * requests.max(1) as f64 {
                0
            } else {
                left
            };
            (name.clone(), own)
        })
        .collect()
}

/// One route, one round: the load, with Redis's command counters read before and after.
fn measure_once(
    args: &CompareArgs,
    rt: &tokio::runtime::Runtime,
    route: &RouteSpec,
    tally: &mut CommandTally,
    progress: authlab_loadgen::Progress,
    interrupt: &Interrupt,
) -> Result<LoadReport, CompareError> {
    let mut request = RequestSpec::get(route.addr, route.path);
    if let Some(credential) = &route.credential {
        let (name, value) = credential.header();
        request = request.header(name, value);
    }
    let before = rt.block_on(probes::command_stats(&args.redis.url)).ok();
    let cpu_before = rt.block_on(probes::redis_cpu_seconds(&args.redis.url)).ok();
    let cache_before = rt.block_on(cache_counters(route, args.timeout));
    let started = std::time::Instant::now();
    let spec = LoadSpec {
        request,
        connections: args.connections,
        threads: args.threads,
        warmup: args.warmup,
        duration: args.duration,
        timeout: args.timeout,
        progress: Some(progress),
        cancel: Some(interrupt.flag()),
    };
    let load = authlab_loadgen::run_blocking(&spec).map_err(CompareError::Load)?;
    let elapsed = started.elapsed();
    let cpu_after = rt.block_on(probes::redis_cpu_seconds(&args.redis.url)).ok();
    let after = rt.block_on(probes::command_stats(&args.redis.url)).ok();
    let cache_after = rt.block_on(cache_counters(route, args.timeout));
    tally.cpu_seconds = match (tally.cpu_seconds, cpu_before, cpu_after) {
        (Some(sum), Some(before), Some(after)) => Some(sum + (after - before)),
        _ => None,
    };
    if let (Some(before), Some(after)) = (cache_before, cache_after) {
        tally
            .cache
            .get_or_insert_with(CacheActivity::default)
            .add(&before, &after);
    }
    match (before, after) {
        (Some(before), Some(after)) => {
            for (name, calls) in after {
                let delta = calls.saturating_sub(before.get(&name).copied().unwrap_or(0));
                *tally.delta.entry(name).or_default() += delta;
            }
            tally.requests += load.total_requests();
            tally.elapsed += elapsed;
        }
        _ => tally.complete = false,
    }
    Ok(load)
}

/// The `authlab_redis_cache_*` series of the cache a mode's row uses, from its instance's
/// `/metrics` (`None` for `/hello`, for a mode without a cache, or when `/metrics` does not
/// answer: `--metrics off`).
async fn cache_counters(route: &RouteSpec, timeout: Duration) -> Option<probes::Counters> {
    let cache = match route.mode?.backend {
        Backend::Redis => "redis",
        Backend::Jwt => "jwt_denylist",
        Backend::Session => return None,
    };
    let answer = authlab_loadgen::fetch(&RequestSpec::get(route.addr, "/metrics"), timeout)
        .await
        .ok()
        .filter(|answer| answer.status == 200)?;
    let counters = probes::cache_counters(&String::from_utf8_lossy(&answer.body), cache);
    (!counters.is_empty()).then_some(counters)
}

/// Logins per second at `POST /jwt/login` (argon2id dominates).
fn login_cost(
    args: &CompareArgs,
    addr: SocketAddr,
    progress: authlab_loadgen::Progress,
    interrupt: &Interrupt,
) -> Result<LoadReport, CompareError> {
    let login = LoadSpec {
        request: setup::login_request(addr, "jwt"),
        connections: args.login_connections,
        threads: args.threads,
        warmup: progress::LOGIN_WARMUP,
        duration: args.login_duration,
        timeout: args.timeout,
        progress: Some(progress),
        cancel: Some(interrupt.flag()),
    };
    authlab_loadgen::run_blocking(&login).map_err(CompareError::Load)
}

#[cfg(test)]
mod tests {
    use clap::{Args, FromArgMatches};

    use super::*;

    fn args(extra: &[&str]) -> CompareArgs {
        let argv = std::iter::once("compare").chain(extra.iter().copied());
        let matches = CompareArgs::augment_args(clap::Command::new("compare"))
            .try_get_matches_from(argv)
            .unwrap();
        CompareArgs::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn the_background_is_subtracted_and_what_is_left_of_it_counts_only_near_one_per_request() {
        let background = BTreeMap::from([("ping".to_owned(), 1_000.0)]);
        let second = Duration::from_secs(1);
        // 1,000 requests in a second: heartbeats alone (1,100 after jitter), and a pool that
        // sends a PING per request on top of them.
        let heartbeats = CommandStats::from([("ping".into(), 1_100), ("get".into(), 1_000)]);
        let own = without_background(&heartbeats, &background, second, 1_000);
        assert_eq!(own["ping"], 0);
        assert_eq!(own["get"], 1_000, "a command the background lacks is kept");
        let pooled = CommandStats::from([("ping".into(), 2_050)]);
        assert_eq!(
            without_background(&pooled, &background, second, 1_000)["ping"],
            1_050
        );
    }

    #[test]
    fn a_round_is_hello_every_mode_then_hello_again() {
        let all = route_names(&args(&[]));
        assert_eq!(all.len(), modes::MODES.len() + 2);
        assert_eq!(all[0], "/hello");
        assert_eq!(all[all.len() - 1], "/hello (again)");
        assert!(all.contains(&setup::JWT_ON));
    }

    #[test]
    fn modes_picks_the_rows_and_an_external_target_has_one_row_per_backend() {
        assert_eq!(
            route_names(&args(&["--modes", "jwt-denylist,redis"])),
            vec!["/hello", setup::REDIS, setup::JWT_ON, "/hello (again)"]
        );
        assert_eq!(
            route_names(&args(&["--target", "http://127.0.0.1:1"])).len(),
            5
        );
    }
}
