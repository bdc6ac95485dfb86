//! The order of a run: memory first (on a quiet process), then the instances, the scale-out
//! checks, every route in rounds, the login cost, and Redis memory per login.
//!
//! Every step prints one line to stderr with the ETA of the whole run (see [`crate::progress`]);
//! between steps, and inside the long ones, the run checks for Ctrl-C ([`Interrupt`]) and then
//! cleans up as it would at the end.

use std::net::SocketAddr;

use authlab_loadgen::{LoadReport, LoadSpec, RequestSpec};

use crate::interrupt::Interrupt;
use crate::probes::{self, CommandStats};
use crate::progress::{self, Plan, StepId};
use crate::report::{self, Report, RouteResult, format};
use crate::setup::{self, CredentialHeader, Instances, Logins};
use crate::{CompareArgs, CompareError};

/// One route to load: what the table calls it, where it is, and the credential it carries.
struct RouteSpec {
    name: &'static str,
    addr: SocketAddr,
    path: &'static str,
    credential: Option<CredentialHeader>,
    /// The ratio to `/hello` asked of this route, and where that figure comes from.
    target: Option<Target>,
}

/// A target ratio to `/hello` and its source.
#[derive(Debug, Clone, Copy)]
struct Target {
    ratio: f64,
    source: &'static str,
}

/// The targets, as issue #4 set them, each with what it was based on (the architecture notes'
/// prototypes, measured with wrk on the same kind of machine before authlab was written).
const SESSION_TARGET: Target = Target {
    ratio: 0.95,
    source: "issue #4; the architecture notes' prototype of an in-memory map lookup reached 0.92x",
};
const REDIS_TARGET: Target = Target {
    ratio: 0.60,
    source: "issue #4; the architecture notes' prototype of a Redis GET on one multiplexed connection per worker reached 0.70x (0.55x on one shared connection)",
};
const JWT_OFF_TARGET: Target = Target {
    ratio: 0.90,
    source: "issue #4; the architecture notes' lean hand-written HS256 verifier reached 0.90x (jsonwebtoken's decode 0.79x)",
};
const JWT_ON_TARGET: Target = Target {
    ratio: 0.60,
    source: "issue #4; as /redis/me: one Redis round trip (EXISTS) per request on top of the JWT",
};

/// The route names of a run, in the order of a round (what [`Plan`] counts).
fn route_names(in_process: bool) -> Vec<&'static str> {
    let mut names = vec!["/hello", setup::SESSION, setup::REDIS];
    if in_process {
        names.extend([setup::JWT_OFF, setup::JWT_ON]);
    } else {
        names.push("/jwt/me (as served)");
    }
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
}

/// Runs the whole comparison and writes the report. Blocks; call it outside any async runtime.
/// Ctrl-C (`interrupt`) ends it early with [`CompareError::Interrupted`], after the clean-up.
pub fn run(args: &CompareArgs, interrupt: &Interrupt) -> Result<Report, CompareError> {
    // The orchestration's own small runtime: setup calls and Redis statistics, never the load.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CompareError::Io)?;
    let mut report = Report::new(args);
    let mut plan = Plan::new(args, &route_names(args.target.is_none()));
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

    let routes = route_plan(instances, &logins);
    report.routes = measure_routes(args, rt, &routes, plan, interrupt)?;

    plan.start(StepId::Login);
    eprintln!("{}", plan.line("login cost: POST /jwt/login (argon2id)"));
    let progress = plan.step_progress("POST /jwt/login");
    let login = interrupt.outcome(login_cost(args, instances.a, progress, interrupt))?;
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

/// The routes, in the order every round runs them: `/hello` opens and closes each round.
fn route_plan(instances: &Instances, logins: &Logins) -> Vec<RouteSpec> {
    let a = instances.a;
    let b = instances.b;
    let names = route_names(instances.in_process());
    let mut routes = vec![
        RouteSpec {
            name: names[0],
            addr: a,
            path: "/hello",
            credential: None,
            target: None,
        },
        RouteSpec {
            name: names[1],
            addr: a,
            path: "/session/me",
            credential: Some(logins.session.clone()),
            target: Some(SESSION_TARGET),
        },
        RouteSpec {
            name: names[2],
            addr: a,
            path: "/redis/me",
            credential: Some(logins.redis.clone()),
            target: Some(REDIS_TARGET),
        },
    ];
    if instances.in_process() {
        routes.push(RouteSpec {
            name: setup::JWT_OFF,
            addr: a,
            path: "/jwt/me",
            credential: Some(logins.jwt_a.clone()),
            target: Some(JWT_OFF_TARGET),
        });
    }
    routes.push(RouteSpec {
        name: names[names.len() - 2],
        addr: b,
        path: "/jwt/me",
        credential: Some(logins.jwt_b.clone()),
        target: instances.in_process().then_some(JWT_ON_TARGET),
    });
    // The baseline again, last: if the machine drifted during the run, the two `/hello` rows
    // differ, and the ratios use their mean.
    routes.push(RouteSpec {
        name: names[names.len() - 1],
        addr: a,
        path: "/hello",
        credential: None,
        target: None,
    });
    routes
}

/// Every route once per round, in the same order; one row per route, over all its rounds.
fn measure_routes(
    args: &CompareArgs,
    rt: &tokio::runtime::Runtime,
    routes: &[RouteSpec],
    plan: &mut Plan,
    interrupt: &Interrupt,
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
                route.target.map(|t| (t.ratio, t.source)),
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
    progress: authlab_loadgen::Progress,
    interrupt: &Interrupt,
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
        progress: Some(progress),
        cancel: Some(interrupt.flag()),
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
    use super::*;

    #[test]
    fn every_target_names_its_source() {
        for target in [SESSION_TARGET, REDIS_TARGET, JWT_OFF_TARGET, JWT_ON_TARGET] {
            assert!(target.source.starts_with("issue #4"), "{}", target.source);
        }
    }

    #[test]
    fn an_external_target_has_one_jwt_row_and_in_process_two() {
        assert_eq!(route_names(true).len(), 6);
        assert_eq!(route_names(false).len(), 5);
        assert!(route_names(true).contains(&setup::JWT_ON));
    }
}
