//! The order of a run: memory first (on a quiet process), then the instances, the scale-out
//! checks, every route in rounds, the login cost, and Redis memory per login.

use std::net::SocketAddr;
use std::time::Duration;

use authlab_loadgen::{LoadReport, LoadSpec, RequestSpec};

use crate::probes::{self, CommandStats};
use crate::report::{self, Report, RouteResult};
use crate::setup::{self, CredentialHeader, Instances, Logins};
use crate::{CompareArgs, CompareError};

/// One route to load: what the table calls it, where it is, and the credential it carries.
struct RouteSpec {
    name: &'static str,
    addr: SocketAddr,
    path: &'static str,
    credential: Option<CredentialHeader>,
    /// The ratio to `/hello` that issue #4 asks of this route.
    target_ratio: Option<f64>,
}

/// Redis's own count of what one route made it do, summed over the rounds.
struct CommandTally {
    /// Calls per command (after minus before), over every round.
    delta: CommandStats,
    /// HTTP requests sent, over every round.
    requests: u64,
    /// False if any snapshot could not be read (then no figure is reported).
    complete: bool,
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
        rt.block_on(probes::remove_prefix(&args.redis, &instances.redis_prefix))
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
    report.redis_version = rt.block_on(probes::redis_version(&args.redis.url)).ok();
    let logins = rt.block_on(setup::log_in_everywhere(instances, args.timeout))?;

    if instances.in_process() {
        eprintln!("scale-out and revocation checks");
        report.scale_out = rt.block_on(setup::scale_out(instances, args.timeout))?;
    }

    let routes = route_plan(instances, &logins);
    report.routes = measure_routes(args, rt, &routes)?;

    eprintln!("login cost: POST /jwt/login");
    report.login = Some(login_cost(args, instances.a)?);

    if !args.skip_memory && args.redis_tokens > 0 {
        eprintln!("memory: {} logins into Redis", args.redis_tokens);
        report.redis_memory = rt
            .block_on(probes::redis_token_memory(&args.redis, args.redis_tokens))
            .map_err(|err| eprintln!("warning: Redis memory not measured: {err}"))
            .ok();
    }
    Ok(())
}

/// The routes, in the order every round runs them: `/hello` opens and closes each round.
fn route_plan(instances: &Instances, logins: &Logins) -> Vec<RouteSpec> {
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
    routes
}

/// Every route once per round, in the same order; one row per route, over all its rounds.
fn measure_routes(
    args: &CompareArgs,
    rt: &tokio::runtime::Runtime,
    routes: &[RouteSpec],
) -> Result<Vec<RouteResult>, CompareError> {
    let rounds = args.rounds.max(1);
    let mut loads: Vec<Vec<LoadReport>> = vec![Vec::new(); routes.len()];
    let mut tallies: Vec<CommandTally> = routes
        .iter()
        .map(|_| CommandTally {
            delta: CommandStats::new(),
            requests: 0,
            complete: true,
        })
        .collect();
    for round in 1..=rounds {
        if rounds > 1 {
            eprintln!("round {round} of {rounds}");
        }
        for ((route, rounds_so_far), tally) in routes.iter().zip(&mut loads).zip(&mut tallies) {
            let load = measure_once(args, rt, route, tally)?;
            eprintln!(
                "{:>24}: {:>9.0} req/s, p99 {} us, {} errors",
                route.name,
                load.requests_per_sec,
                load.latency.p99_us,
                load.errors()
            );
            rounds_so_far.push(load);
        }
    }
    Ok(routes
        .iter()
        .zip(loads)
        .zip(tallies)
        .map(|((route, rounds), tally)| {
            let redis = tally
                .complete
                .then(|| probes::per_request(&CommandStats::new(), &tally.delta, tally.requests));
            RouteResult::new(
                route.name,
                route.path,
                route.credential.as_ref(),
                route.target_ratio,
                rounds,
                redis,
            )
        })
        .collect())
}

/// One route, one round: the load, with Redis's command counters read before and after.
fn measure_once(
    args: &CompareArgs,
    rt: &tokio::runtime::Runtime,
    route: &RouteSpec,
    tally: &mut CommandTally,
) -> Result<LoadReport, CompareError> {
    let mut request = RequestSpec::get(route.addr, route.path);
    if let Some(credential) = &route.credential {
        let (name, value) = credential.header();
        request = request.header(name, value);
    }
    let before = rt.block_on(probes::command_stats(&args.redis.url)).ok();
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
    let after = rt.block_on(probes::command_stats(&args.redis.url)).ok();
    match (before, after) {
        (Some(before), Some(after)) => {
            for (name, calls) in after {
                let delta = calls.saturating_sub(before.get(&name).copied().unwrap_or(0));
                *tally.delta.entry(name).or_default() += delta;
            }
            tally.requests += load.total_requests();
        }
        _ => tally.complete = false,
    }
    Ok(load)
}

/// Logins per second at `POST /jwt/login` (argon2id dominates).
fn login_cost(args: &CompareArgs, addr: SocketAddr) -> Result<LoadReport, CompareError> {
    let login = LoadSpec {
        request: setup::login_request(addr, "jwt"),
        connections: args.login_connections,
        threads: args.threads,
        warmup: Duration::from_millis(500),
        duration: args.login_duration,
        timeout: args.timeout,
        progress: Some("POST /jwt/login".to_owned()),
    };
    authlab_loadgen::run_blocking(&login).map_err(CompareError::Load)
}
