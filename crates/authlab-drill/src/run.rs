//! The order of a drill: check, start Redis, the instances and HAProxy, register and log in the
//! users, run the load with the fault beside it, ask the revoked credentials again, report.
//! Every process is owned by a guard, so whatever way this function leaves (success, error,
//! Ctrl-C, panic), each one is killed by its pid.

use std::path::Path;
use std::time::Duration;

use crate::DrillError;
use crate::args::DrillArgs;
use crate::balancer::Balancer;
use crate::instances::{self, InstanceSpec};
use crate::interrupt::Interrupt;
use crate::load::{Load, User};
use crate::procs;
use crate::report::{self, DrillReport, Findings, RunInfo};
use crate::scenario;
use crate::topology::{Ports, Redis, wait_until};

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DrillError + '_ {
    move |source| DrillError::Io {
        path: path.to_owned(),
        source,
    }
}

fn step(message: &str) {
    eprintln!("drill: {message}");
}

/// Runs a drill and writes its report to `--out`.
pub fn run(args: &DrillArgs, interrupt: &Interrupt) -> Result<DrillReport, DrillError> {
    args.validate()?;
    if args.scenario == scenario::Scenario::CacheScale {
        return Err(DrillError::BadArgs(
            "cache-scale has a report of its own: run it with `authlab drill` (cache_scale::run)"
                .into(),
        ));
    }
    procs::check_installed()?;
    let topology = args.topology();
    let ports = Ports {
        base: args.base_port,
    };
    let mut needed = topology.ports(ports);
    needed.extend((0..usize::from(args.instances())).map(|i| args.instance_port(i)));
    needed.push(args.balancer_port());
    procs::check_ports_free(&needed)?;
    let logs = args.out.join("logs");
    std::fs::create_dir_all(&logs).map_err(io_err(&logs))?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let program = match &args.authlab_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(io_err(Path::new("the current executable")))?,
    };
    let database = logs.join("users.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }

    step(&format!("starting Redis ({topology:?})"));
    let mut redis = Redis::start(topology, ports, args.node_timeout_ms, &logs)?;
    interrupt.check()?;
    let spec = InstanceSpec {
        program,
        redis_url: redis.url(),
        database_url: args
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", database.display())),
        redis_prefix: format!("authlab-drill:{}:", &run_id[..12]),
        // Two v4 UUIDs: 244 random bits, 64 characters.
        jwt_secret: format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ),
        extra_args: args.instance_args.clone(),
    };
    step(&format!(
        "starting {} authlab instances on {}",
        args.instances(),
        spec.redis_url
    ));
    let mut running = Vec::new();
    for i in 0..usize::from(args.instances()) {
        // One at a time: the first one creates the user store's tables.
        running.push(instances::start(
            &spec,
            &format!("a{}", i + 1),
            args.instance_port(i),
            &logs,
        )?);
        interrupt.check()?;
    }
    let servers: Vec<_> = running.iter().map(instances::Instance::server).collect();
    step(&format!(
        "starting HAProxy on 127.0.0.1:{} (health check GET {})",
        args.balancer_port(),
        args.balancer_check
    ));
    let balancer = Balancer::start(args.balancer_port(), &servers, &logs, &args.balancer_check)?;
    let all_up = wait_until(Duration::from_secs(15), || {
        let states = balancer.server_states();
        states.len() == servers.len() && states.iter().all(|(_, s)| s == "UP")
    });
    if !all_up {
        return Err(DrillError::Setup {
            step: "HAProxy",
            detail: format!(
                "not every instance passed the {} check within 15 s: {:?}",
                args.balancer_check,
                balancer.server_states()
            ),
        });
    }
    interrupt.check()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io_err(Path::new("the load's runtime")))?;
    let users: Vec<User> = (0..args.users)
        .map(|i| User {
            username: format!("drill-{}-{i}", &run_id[..8]),
            password: format!("{}-{}", uuid::Uuid::new_v4().simple(), run_id),
        })
        .collect();
    let base = format!("http://127.0.0.1:{}", args.balancer_port());
    let load = Load::new(
        base,
        users,
        running.iter().map(|i| i.name.clone()).collect(),
        args.request_timeout,
    )
    .map_err(|e| DrillError::Setup {
        step: "HTTP client",
        detail: e.to_string(),
    })?;
    step(&format!(
        "registering {} users and logging each in on the three backends",
        args.users
    ));
    runtime
        .block_on(async {
            load.register_all().await?;
            load.login_all().await
        })
        .map_err(|detail| DrillError::Setup {
            step: "users",
            detail,
        })?;
    interrupt.check()?;
    let target = scenario::target(args.scenario, &redis, args.redis_down_for)?;

    step(&format!(
        "load: {} req/s for {} s{}",
        args.rate(),
        args.duration.as_secs_f64(),
        if args.scenario == scenario::Scenario::None {
            String::new()
        } else {
            format!(
                ", {} at {} s",
                args.scenario.name(),
                args.fault_at.as_secs_f64()
            )
        }
    ));
    let started = std::time::Instant::now();
    let wait_limit = args.duration.saturating_sub(args.fault_at) + Duration::from_secs(5);
    let (outcome, fault) = std::thread::scope(|scope| {
        let redis = &mut redis;
        let running = &mut running;
        let balancer = &balancer;
        let fault = scope.spawn(move || {
            scenario::inject(
                args.scenario,
                target,
                redis,
                running,
                balancer,
                started,
                args.fault_at,
                wait_limit,
                interrupt,
            )
        });
        let outcome = runtime.block_on(load.run(
            args.rate(),
            args.duration,
            args.logout_share,
            interrupt,
            tokio::time::Instant::from_std(started),
        ));
        let fault = fault.join().unwrap_or_else(|_| {
            Err(DrillError::Setup {
                step: "fault",
                detail: "the fault thread panicked".into(),
            })
        });
        (outcome, fault)
    });
    interrupt.check()?;
    let fault = fault?;
    step("asking every credential whose logout was acknowledged again");
    let reprobe = runtime.block_on(load.reprobe());

    let report = report::build(
        RunInfo {
            scenario: args.scenario,
            topology,
            redis_url: spec.redis_url.clone(),
            instances: running.iter().map(|i| i.name.clone()).collect(),
            balancer_check: args.balancer_check.clone(),
            rate: args.rate(),
            users: args.users as usize,
            duration_ms: u32::try_from(args.duration.as_millis()).unwrap_or(u32::MAX),
        },
        Findings {
            samples: &outcome.samples,
            tallies: &outcome.tallies,
            reprobe,
            fault,
        },
    );
    write(&report, &args.out)?;
    // The guards stop HAProxy, the instances and Redis here; the user store goes too.
    drop(balancer);
    drop(running);
    drop(redis);
    remove_scratch_database(args, &database);
    Ok(report)
}

/// Removes the run's own SQLite user store (and its WAL files), unless `--database-url` named
/// one of the user's.
pub(crate) fn remove_scratch_database(args: &DrillArgs, database: &Path) {
    if args.database_url.is_none() {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
        }
    }
}

/// Writes `<stem>.json` (the report) and `<stem>.md` (`markdown` of the command line that ran
/// it) to `out`: every scenario's report is these two files.
pub(crate) fn write_report_files<T: serde::Serialize>(
    report: &T,
    out: &Path,
    stem: &str,
    markdown: impl FnOnce(&str) -> String,
) -> Result<(), DrillError> {
    let json = out.join(format!("{stem}.json"));
    let text = serde_json::to_string_pretty(report).map_err(|e| DrillError::Io {
        path: json.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&json, text).map_err(io_err(&json))?;
    let command: Vec<String> = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect();
    let md = out.join(format!("{stem}.md"));
    std::fs::write(&md, markdown(&command.join(" "))).map_err(io_err(&md))
}

/// Writes `drill.json`, `drill.md` and `timeline.svg` to `out`.
pub fn write(report: &DrillReport, out: &Path) -> Result<(), DrillError> {
    write_report_files(report, out, "drill", |command| {
        report::markdown::render(report, command)
    })?;
    report::svg::timeline(report, &out.join("timeline.svg"))
}
