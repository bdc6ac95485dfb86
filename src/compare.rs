//! `authlab compare`: the three backends measured side by side, in one run, with one generator.
//!
//! The articles this project answers argue in sentences ("JWT needs no lookup", "Redis adds a round
//! trip"); this command turns each sentence into a number taken on the machine it runs on:
//!
//! 1. **Throughput and latency.** The same closed-loop load ([`authlab_loadgen`]: N keep-alive
//!    connections, a warm-up, then a measured window) is driven at `/hello` (no authentication:
//!    the baseline), `/session/me`, `/redis/me`, `/jwt/me` with the Redis denylist off and on,
//!    and `/hello` again. Each route's requests/s is divided by the baseline's, so what the table
//!    shows is the cost of authentication alone, not of HTTP or JSON. The whole sequence runs
//!    `--rounds` times and each ratio is the median over rounds of (route / that round's
//!    baseline): on a shared two-core machine a single pass can be off by tens of percent.
//!    Every non-2xx answer is counted and shown.
//! 2. **Round trips**, as Redis itself counts them: `INFO commandstats` before and after each route,
//!    divided by the requests sent.
//! 3. **Login cost**, apart from verify: logins/s at `POST /jwt/login` (argon2id dominates).
//! 4. **Memory**: process RSS per live session at 10k / 100k / 1M sessions (created in-process
//!    with `SessionAuthenticator::issue`, not over HTTP), the verify time at each population, and
//!    Redis `used_memory` per live opaque token.
//! 5. **Scale-out and revocation**: two instances sharing Redis and the JWT secret; a credential
//!    from one is presented to the other, then logged out, and each instance is asked again.
//!
//! # How the run is arranged
//! By default the service runs **in this process**, exactly as `authlab serve` builds it
//! ([`Application::build`]), twice: instance A with the JWT denylist off and instance B with it on,
//! sharing a fresh temporary SQLite file, one unique Redis key prefix (removed at the end) and one
//! random JWT secret. The servers run on an actix system thread of their own; the load generator
//! runs on a Tokio runtime of its own ([`authlab_loadgen::run_blocking`]), so the two never share a
//! scheduler (they do share the machine's cores: `--workers` and `--threads` split them, 1 + 1 by
//! default on two cores, like `wrk -t1` beside a one-worker server).
//!
//! With `--target URL` the generator drives a server that is already running instead (one
//! instance: the `/jwt/me` row then measures whatever denylist setting that server has, and the
//! scale-out check is skipped).
//!
//! # Layout
//! - this file: the command's flags and the order of the run;
//! - [`setup`]: the in-process servers, the one-shot HTTP calls (register, log in), the checks;
//! - [`probes`]: what is measured outside HTTP: RSS, Redis `INFO`, the session population;
//! - [`report`]: the data model (`report.json`), the terminal table, `report.md` and the SVG charts.

pub mod probes;
pub mod report;
pub mod setup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use authlab_loadgen::{LoadError, LoadSpec, RequestSpec, header};

use crate::startup::StartupError;
use report::{Report, RouteResult};
use setup::{Credential, Instances};

/// Flags of `authlab compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Drive an already running server at this URL (e.g. `http://127.0.0.1:8080`) instead of
    /// starting two instances in-process.
    #[arg(long)]
    pub target: Option<String>,

    /// Concurrent keep-alive connections per route (like `wrk -c`).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,

    /// Worker threads of the load generator's own runtime (like `wrk -t`).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// HTTP workers of each in-process server (ignored with `--target`).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,

    /// Measured time per route and round.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Rounds: every route runs once per round, in the same order, and the ratios are medians
    /// over the rounds (robust to a machine that changes speed during the run).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,

    /// Unrecorded warm-up before each route's measurement.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// Longest wait for one answer before it counts as an error.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Measured time of the login-cost run (`POST /jwt/login`).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub login_duration: Duration,

    /// Concurrent connections of the login-cost run.
    #[arg(long, default_value_t = 4)]
    pub login_connections: usize,

    /// Live-session populations at which RSS per session and verify time are measured
    /// (cumulative, smallest first).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub sessions: Vec<usize>,

    /// Logins (opaque token + refresh family) issued into Redis to measure `used_memory` per
    /// login (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    pub redis_tokens: usize,

    /// Skip the memory measurements (sessions and Redis).
    #[arg(long)]
    pub skip_memory: bool,

    /// Redis used by the in-process servers and read for `INFO` statistics.
    #[arg(
        long,
        env = "AUTHLAB_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// Directory for `report.json`, `report.md` and the SVG charts (created if missing).
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
}

/// Why a comparison could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// An in-process instance did not start.
    #[error("the in-process server did not start")]
    Startup(#[source] StartupError),
    /// The server thread ended before reporting its ports.
    #[error("the in-process server thread stopped unexpectedly")]
    ServerThread,
    /// The load generator could not run (typically: nothing listens at the target).
    #[error("the load generator failed")]
    Load(#[source] LoadError),
    /// A setup request (register, log in) got an unexpected answer.
    #[error("{step}: expected a 2xx answer, got {status}")]
    Setup {
        /// What we were doing.
        step: &'static str,
        /// What the server answered.
        status: u16,
    },
    /// A login answer did not contain the credential where the API documents it.
    #[error("{step}: the answer carries no credential")]
    NoCredential {
        /// Which login.
        step: &'static str,
    },
    /// `--target` is not an `http://host:port` URL that resolves.
    #[error("--target must look like http://127.0.0.1:8080 ({0})")]
    BadTarget(&'static str),
    /// Redis failed while reading statistics or cleaning up.
    #[error("Redis failed")]
    Redis(#[source] redis::RedisError),
    /// Writing the report failed.
    #[error("cannot write the report")]
    Io(#[source] std::io::Error),
    /// Drawing a chart failed.
    #[error("cannot draw {chart}: {message}")]
    Chart {
        /// Which chart.
        chart: &'static str,
        /// plotters' description of the failure.
        message: String,
    },
}

/// One route to load: what the table calls it, where it is, and the credential it carries.
struct RouteSpec {
    name: &'static str,
    addr: SocketAddr,
    path: &'static str,
    credential: Option<Credential>,
    /// The ratio to `/hello` that issue #4 asks of this route.
    target_ratio: Option<f64>,
}

/// Runs the whole comparison and writes the report. Blocks; call it outside any async runtime.
pub fn run(args: &CompareArgs) -> Result<Report, CompareError> {
    // The orchestration's own small runtime: setup calls and Redis statistics, never the load.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CompareError::Io)?;
    let mut report = Report::new(args);

    if !args.skip_memory {
        eprintln!("memory: sessions in process ({:?})", args.sessions);
        report.sessions = rt.block_on(probes::session_population(&args.sessions));
    }

    let instances = match &args.target {
        Some(url) => Instances::external(setup::parse_target(url)?),
        None => Instances::start(args)?,
    };
    let outcome = run_against(args, &rt, &instances, &mut report);
    rt.block_on(instances.stop());
    if instances.in_process() {
        rt.block_on(probes::remove_prefix(
            &args.redis_url,
            &instances.redis_prefix,
        ))
        .unwrap_or_else(|err| eprintln!("warning: could not clean up Redis keys: {err}"));
    }
    outcome?;

    report.finish();
    report::write_all(&report, &args.out)?;
    Ok(report)
}

fn run_against(
    args: &CompareArgs,
    rt: &tokio::runtime::Runtime,
    instances: &Instances,
    report: &mut Report,
) -> Result<(), CompareError> {
    report.redis_version = rt.block_on(probes::redis_version(&args.redis_url)).ok();
    let logins = rt.block_on(setup::log_in_everywhere(instances, args.timeout))?;

    if instances.in_process() {
        eprintln!("scale-out and revocation checks");
        report.scale_out = rt.block_on(setup::scale_out(instances, args.timeout))?;
    }

    let a = instances.a;
    let b = instances.b;
    let jwt_on_name = if instances.in_process() {
        "/jwt/me (denylist on)"
    } else {
        "/jwt/me (as served)"
    };
    let mut routes = vec![
        RouteSpec {
            name: "/hello",
            addr: a,
            path: "/hello",
            credential: None,
            target_ratio: None,
        },
        RouteSpec {
            name: "/session/me",
            addr: a,
            path: "/session/me",
            credential: Some(logins.session.clone()),
            target_ratio: Some(0.95),
        },
        RouteSpec {
            name: "/redis/me",
            addr: a,
            path: "/redis/me",
            credential: Some(logins.redis.clone()),
            target_ratio: Some(0.60),
        },
    ];
    if instances.in_process() {
        routes.push(RouteSpec {
            name: "/jwt/me (denylist off)",
            addr: a,
            path: "/jwt/me",
            credential: Some(logins.jwt_a.clone()),
            target_ratio: Some(0.90),
        });
    }
    routes.push(RouteSpec {
        name: jwt_on_name,
        addr: b,
        path: "/jwt/me",
        credential: Some(logins.jwt_b.clone()),
        target_ratio: instances.in_process().then_some(0.60),
    });
    // The baseline again, last: if the machine drifted during the run, the two `/hello` rows
    // differ, and the ratios use their mean.
    routes.push(RouteSpec {
        name: "/hello (again)",
        addr: a,
        path: "/hello",
        credential: None,
        target_ratio: None,
    });

    // Every route once per round, in the same order; `/hello` opens and closes each round.
    let rounds = args.rounds.max(1);
    let mut loads: Vec<Vec<authlab_loadgen::LoadReport>> = vec![Vec::new(); routes.len()];
    let mut commands: Vec<(probes::CommandStats, u64, bool)> =
        vec![(probes::CommandStats::new(), 0, true); routes.len()];
    for round in 1..=rounds {
        if rounds > 1 {
            eprintln!("round {round} of {rounds}");
        }
        for (i, route) in routes.iter().enumerate() {
            let mut request = RequestSpec::get(route.addr, route.path);
            if let Some(credential) = &route.credential {
                let (name, value) = credential.header();
                request = request.header(name, value);
            }
            let before = rt.block_on(probes::command_stats(&args.redis_url)).ok();
            let spec = LoadSpec {
                request,
                connections: args.connections,
                threads: args.threads,
                warmup: args.warmup,
                duration: args.duration,
                timeout: args.timeout,
                progress: Some(route.name.to_owned()),
            };
            let load = authlab_loadgen::run_blocking(&spec).map_err(CompareError::Load)?;
            let after = rt.block_on(probes::command_stats(&args.redis_url)).ok();
            // Redis's counters, summed over the rounds: (delta per command, requests, complete).
            let tally = &mut commands[i];
            match (before, after) {
                (Some(before), Some(after)) => {
                    for (name, calls) in after {
                        let delta = calls.saturating_sub(before.get(&name).copied().unwrap_or(0));
                        *tally.0.entry(name).or_default() += delta;
                    }
                    tally.1 += load.total_requests();
                }
                _ => tally.2 = false,
            }
            eprintln!(
                "{:>24}: {:>9.0} req/s, p99 {} us, {} errors",
                route.name,
                load.requests_per_sec,
                load.latency.p99_us,
                load.errors()
            );
            loads[i].push(load);
        }
    }
    for ((route, rounds), (delta, requests, complete)) in routes.iter().zip(loads).zip(commands) {
        let redis =
            complete.then(|| probes::per_request(&probes::CommandStats::new(), &delta, requests));
        report.routes.push(RouteResult::new(
            route.name,
            route.path,
            route.credential.as_ref(),
            route.target_ratio,
            rounds,
            redis,
        ));
    }

    eprintln!("login cost: POST /jwt/login");
    let login = LoadSpec {
        request: setup::login_request(a, "jwt"),
        connections: args.login_connections,
        threads: args.threads,
        warmup: Duration::from_millis(500),
        duration: args.login_duration,
        timeout: args.timeout,
        progress: Some("POST /jwt/login".to_owned()),
    };
    report.login = Some(authlab_loadgen::run_blocking(&login).map_err(CompareError::Load)?);

    if !args.skip_memory && args.redis_tokens > 0 {
        eprintln!("memory: {} logins into Redis", args.redis_tokens);
        report.redis_memory = rt
            .block_on(probes::redis_token_memory(
                &args.redis_url,
                args.redis_tokens,
            ))
            .map_err(|err| eprintln!("warning: Redis memory not measured: {err}"))
            .ok();
    }
    Ok(())
}

/// `authlab compare` as the binary runs it: the report, a table on stdout, and the exit code.
pub fn main(args: &CompareArgs) -> std::process::ExitCode {
    match run(args) {
        Ok(report) => {
            println!("{}", report::table(&report));
            println!(
                "\nwrote {}/report.json, report.schema.json, report.md, throughput.svg and latency.svg",
                args.out.display()
            );
            if report.total_errors() > 0 {
                eprintln!(
                    "error: {} requests did not get a 2xx answer (see the errors column)",
                    report.total_errors()
                );
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {}", crate::error::CauseChain(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// A header carrying a credential, as the route's transport expects it.
impl Credential {
    fn header(&self) -> (header::HeaderName, header::HeaderValue) {
        match self {
            Credential::Cookie(value) => (header::COOKIE, value.clone()),
            Credential::Bearer(value) => (header::AUTHORIZATION, value.clone()),
        }
    }
}
