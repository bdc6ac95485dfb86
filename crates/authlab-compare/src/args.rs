//! The flags of `authlab compare`.

use std::path::PathBuf;
use std::time::Duration;

use authlab::config::RedisSettings;

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

    /// Redis used by the in-process servers and read for `INFO` statistics (the same flags as
    /// `authlab serve`).
    #[command(flatten)]
    pub redis: RedisSettings,

    /// Directory for `report.json`, `report.md` and the SVG charts (created if missing).
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
}
