//! `authlab compare`: the three backends measured side by side, in one run, with one generator.
//!
//! The articles this project answers argue in sentences ("JWT needs no lookup", "Redis adds a round
//! trip"); this command turns each sentence into a number taken on the machine it runs on:
//!
//! 1. **Throughput and latency, per mode.** A mode is an instance configuration, the
//!    `authlab serve` flags that make it ([`modes`]: session; redis uncached, cached and through
//!    deadpool-redis; jwt with the denylist off, on and cached; two metrics-off instances). The same closed-loop load
//!    ([`authlab_loadgen`]: N keep-alive connections, a warm-up, then a measured window) is
//!    driven at `/hello` (no authentication: the baseline), every mode's `/me`, and `/hello`
//!    again. Each route's requests/s is divided by the baseline's, so what the table
//!    shows is the cost of authentication alone, not of HTTP or JSON. The whole sequence runs
//!    `--rounds` times and each ratio is the median over rounds of (route / that round's
//!    baseline): on a shared two-core machine a single pass can be off by tens of percent.
//!    Every non-2xx answer is counted and shown.
//! 2. **Round trips**, as Redis itself counts them: `INFO commandstats` before and after each route,
//!    divided by the requests sent, less what Redis ran at the same rate while only `/hello` ran
//!    (about 0 since an idle cache sends no heartbeat); and for a cached mode its cache's hits, misses and hit
//!    ratio, from the instance's own `/metrics`.
//! 3. **Login cost**, apart from verify: logins/s at `POST /jwt/login` (argon2id dominates).
//! 4. **Memory**: process RSS per live session at 10k / 100k / 1M sessions (created in-process
//!    with `SessionAuthenticator::issue`, not over HTTP), the verify time at each population, and
//!    Redis `used_memory` per live opaque token.
//! 5. **Scale-out and revocation**: two instances of a mode sharing Redis and the JWT secret; a
//!    credential from one is presented to the other, then logged out, and each instance is asked
//!    again.
//! 6. **Revocation latency across two instances** ([`revocation`]): for every revocable mode,
//!    `--revocation-samples` times: revoke a token on one instance, probe the other until it
//!    refuses.
//!
//! # How the run is arranged
//! By default the service runs **in this process**, exactly as `authlab serve` builds it
//! ([`authlab::startup::Application::build`]), once per mode (twice for a mode the scale-out and
//! revocation checks need), every instance sharing a fresh temporary SQLite file, one unique Redis
//! key prefix (removed at the end) and one random JWT secret. The servers run on an actix system thread of their own; the load generator
//! runs on a Tokio runtime of its own ([`authlab_loadgen::run_blocking`]), so the two never share a
//! scheduler (they do share the machine's cores: `--workers` and `--threads` split them, 1 + 1 by
//! default on two cores, like `wrk -t1` beside a one-worker server).
//!
//! With `--target URL` the generator drives a server that is already running instead (one
//! instance, one row per backend: the `/jwt/me` row then measures whatever denylist setting that
//! server has, and the scale-out and revocation checks are skipped).
//!
//! # What it prints
//! While it runs, one line per step on stderr, each with the ETA of the whole run computed from
//! the planned schedule, and a live line per route run with its counters
//! (`[7/18 r2/3 ETA 1m05s] /redis/me [====>   ] 45,123 req/s`). At the end, on stdout: the
//! throughput and latency tables, login cost, memory, scale-out and revocation, a "which should I
//! choose" section built from the run's own figures, and where the targets come from. Every line
//! fits 80 columns. The in-process servers log at `warn` and above only ([`init_logging`]), so
//! actix's start-up lines do not mix into this output; `RUST_LOG` overrides it.
//!
//! Ctrl-C stops the run, the servers, and removes the run's Redis keys and temporary directory,
//! then exits with 130 ([`interrupt`]); a run that crashed leaves a directory that the next run
//! removes ([`setup::remove_stale_runs`]). Zero and nonsense flag values are refused before
//! anything starts ([`args`]).
//!
//! # Layout
//! - [`args`]: the command's flags and their ranges; [`error`]: what can stop a run;
//! - [`modes`]: the table of modes, the one place that says what a run measures;
//! - [`mod@run`]: the order of the run, route by route and round by round;
//! - [`progress`]: the planned schedule, its ETA and the progress lines;
//! - [`interrupt`]: stopping on Ctrl-C, and cleaning up;
//! - [`setup`]: the in-process servers, the one-shot HTTP calls (register, log in), the checks,
//!   the temporary directory;
//! - [`probes`]: what is measured outside HTTP: RSS, Redis `INFO`, the session population, the
//!   caches' `/metrics` series;
//! - [`revocation`]: revocation latency across two instances;
//! - [`report`]: the data model (`report.json`), its statistics, the "which should I choose"
//!   statements, and three renderings (terminal tables, `report.md`, SVG charts).
//!
//! This crate depends on the server library (`authlab`), never the other way round: the server
//! package serves requests and nothing else. The `authlab` binary (crates/authlab-cli) calls
//! [`main`] for `authlab compare`.

#![deny(missing_docs)]

pub mod args;
pub mod error;
pub mod interrupt;
pub mod modes;
pub mod probes;
pub mod progress;
pub mod report;
pub mod revocation;
pub mod run;
pub mod setup;

pub use args::CompareArgs;
pub use error::CompareError;
pub use run::run;

/// Exit code after Ctrl-C: 128 + SIGINT, as a shell reports a command it interrupted.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The log filter of `authlab compare` when `RUST_LOG` is not set: warnings and errors only. The
/// in-process servers would otherwise print their start-up lines (`starting 1 workers`, ...) at
/// `info` among the progress lines; `RUST_LOG=info` brings them back. One warning is expected and
/// not shown: every instance compare starts uses a fresh key prefix, so the JWT denylist finds
/// no epoch marker and writes one ("Redis had no epoch marker ..."), which on a real server
/// means Redis lost its data, and here only means a new run.
pub const DEFAULT_LOG_FILTER: &str = "warn,authlab_redis::denylist=error";

/// Installs the log subscriber for `authlab compare`: `RUST_LOG` if set, else
/// [`DEFAULT_LOG_FILTER`]; to stderr, without colour. Call it instead of the server's
/// `authlab::telemetry::init` (later calls of either do nothing).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// `authlab compare` as the binary runs it: the report, the tables on stdout, and the exit code
/// (0; 1 on a failure or when any request failed; 130 after Ctrl-C).
pub fn main(args: &CompareArgs) -> std::process::ExitCode {
    let interrupt = interrupt::Interrupt::install();
    match run(args, &interrupt) {
        Ok(report) => {
            print!("\n{}", report::screen(&report));
            println!(
                "\n{}",
                report::format::wrap(
                    &format!(
                        "wrote report.json, report.schema.json, report.md, throughput.svg and latency.svg to {}",
                        args.out.display()
                    ),
                    report::format::COLUMNS,
                    "  "
                )
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
        Err(CompareError::Interrupted) => {
            eprintln!(
                "interrupted: the servers are stopped, the run's Redis keys and temporary files removed; no report was written"
            );
            std::process::ExitCode::from(EXIT_INTERRUPTED)
        }
        Err(err) => {
            eprintln!("error: {}", authlab::error::CauseChain(&err));
            if let Some(remedy) = err.remedy() {
                eprintln!("help: {remedy}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
