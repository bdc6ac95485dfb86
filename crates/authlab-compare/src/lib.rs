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
//! ([`authlab::startup::Application::build`]), twice: instance A with the JWT denylist off and instance B with it on,
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
//! - [`args`]: the command's flags; [`error`]: what can stop a run;
//! - [`run`]: the order of the run, route by route and round by round;
//! - [`setup`]: the in-process servers, the one-shot HTTP calls (register, log in), the checks;
//! - [`probes`]: what is measured outside HTTP: RSS, Redis `INFO`, the session population;
//! - [`report`]: the data model (`report.json`), its statistics, and its three renderings
//!   (terminal table, `report.md`, SVG charts).
//!
//! This crate depends on the server library (`authlab`), never the other way round: the server
//! package serves requests and nothing else. The `authlab` binary (crates/authlab-cli) calls
//! [`main`] for `authlab compare`.

#![deny(missing_docs)]

pub mod args;
pub mod error;
pub mod probes;
pub mod report;
pub mod run;
pub mod setup;

pub use args::CompareArgs;
pub use error::CompareError;
pub use run::run;

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
            eprintln!("error: {}", authlab::error::CauseChain(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
