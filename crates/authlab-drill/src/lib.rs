//! `authlab drill`: what each backend does when a machine dies, shown with real processes.
//!
//! `authlab compare` measures the backends in one process; a deployment has several processes
//! behind a load balancer on a Redis that fails over, and that is where the designs differ. This
//! command builds such a deployment on loopback, drives it, breaks one thing, and reports:
//!
//! - **Redis**: one `redis-server`, a Sentinel set (one master, one replica, three sentinels)
//!   or a 6-node Redis Cluster (three masters, three replicas, `cluster-node-timeout` 2000 ms),
//!   none of them persisting anything ([`topology`]);
//! - **N authlab instances** (default 3): this very executable's `serve`, sharing the user
//!   store, Redis and the JWT secret ([`instances`]);
//! - **HAProxy** in front: cookie affinity for `/session`, round robin for `/redis` and `/jwt`,
//!   health checks on `GET /livez` ([`balancer`]);
//! - **open-loop load** through HAProxy: a fixed request rate over many users and all three
//!   backends, logouts and logins mixed in, latency from each request's scheduled time
//!   ([`load`]);
//! - **one scenario** ([`scenario`]): `kill-master`, `planned-failover`, `kill-instance`,
//!   `sentinel-switchover`, `redis-restart` or `none`; or `cache-scale`, which breaks nothing
//!   and measures what N caching instances cost one Redis, idle and loaded ([`cache_scale`]);
//! - **the report** ([`report`]): per backend, requests by status and p99 in 100 ms buckets; the
//!   failover time, the time until 90 % of requests succeed again, the slowest request, the
//!   share of users affected, the credentials lost, and the acknowledged revocations undone
//!   (every credential whose logout got `204` is asked again at the end: must be 0), written
//!   to `drill.json`, `drill.md` and `timeline.svg`, with a summary on screen.
//!
//! Every process is started in a process group of its own and owned by a guard that kills it by
//! its pid when dropped: at the end, on an error, on a panic, and on Ctrl-C ([`interrupt`]).
//! A drill run killed with SIGKILL cannot clean up; its processes' pids are in `--out`/logs.
//! Missing programs are named with the `apt-get install` line that brings them, before
//! anything starts.
//!
//! A simplification, named: the processes run on one machine, so "a machine dies" is "a process
//! gets SIGKILL", and the network never partitions. The drill shows what the *designs* do; a
//! real failover adds the network's own delays.
//!
//! # Layout
//! - [`args`]: the flags; [`error`]: what can stop a drill; [`interrupt`]: Ctrl-C;
//! - [`procs`]: process guards, installed programs, free ports, `redis-cli`;
//! - [`topology`], [`instances`], [`balancer`]: what runs;
//! - [`load`]: the open-loop driver; [`scenario`]: the faults; [`cache_scale`]: the scenario that
//!   measures the cache instead, with its own load and report;
//! - [`mod@run`]: the order of a drill; [`report`]: the model, analysis and renderings.

#![deny(missing_docs)]

pub mod args;
pub mod balancer;
pub mod cache_scale;
pub mod error;
pub mod instances;
pub mod interrupt;
pub mod load;
pub mod procs;
pub mod report;
pub mod run;
pub mod scenario;
pub mod topology;

pub use args::DrillArgs;
pub use error::DrillError;
pub use run::run;

use authlab_core::CauseChain;

/// Exit code after Ctrl-C: 128 + SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;

/// `authlab drill` as the binary runs it: the report, the summary on stdout, and the exit code
/// (0; 1 on a failure or when an acknowledged revocation was undone; 130 after Ctrl-C).
pub fn main(args: &DrillArgs) -> std::process::ExitCode {
    let interrupt = interrupt::Interrupt::install();
    if args.scenario == scenario::Scenario::CacheScale {
        return match cache_scale::run(args, &interrupt) {
            Ok(report) => {
                print!("{}", report.summary());
                println!(
                    "wrote cache-scale.json and cache-scale.md to {} (process logs in {}/logs)",
                    args.out.display(),
                    args.out.display()
                );
                std::process::ExitCode::SUCCESS
            }
            Err(err) => failed(err),
        };
    }
    match run(args, &interrupt) {
        Ok(report) => {
            print!("{}", report::summary(&report));
            println!(
                "wrote drill.json, drill.md and timeline.svg to {} (process logs in {}/logs)",
                args.out.display(),
                args.out.display()
            );
            if report.undone() > 0 {
                eprintln!(
                    "error: {} acknowledged revocations were accepted again afterwards",
                    report.undone()
                );
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(err) => failed(err),
    }
}

/// The message and exit code of a drill that did not complete.
fn failed(err: DrillError) -> std::process::ExitCode {
    match err {
        DrillError::Interrupted => {
            eprintln!(
                "interrupted: every process the drill started is stopped; no report was written"
            );
            std::process::ExitCode::from(EXIT_INTERRUPTED)
        }
        err => {
            eprintln!("error: {}", CauseChain(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
