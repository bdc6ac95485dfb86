//! The flags of `authlab compare`, and the ranges they accept.
//!
//! Every count and duration is checked by its value parser, before anything runs: a zero
//! `--duration`, `--rounds` or `--sessions` would otherwise be measured and reported as if it
//! were a result. `--help` shows each range.

use std::path::PathBuf;
use std::time::Duration;

use authlab::config::RedisSettings;
use clap::builder::RangedU64ValueParser;

/// Flags of `authlab compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Drive an already running server at this URL (e.g. `http://127.0.0.1:8080`) instead of
    /// starting an instance per mode in-process (one row per backend, as that server is
    /// configured).
    #[arg(long, conflicts_with = "modes")]
    pub target: Option<String>,

    /// The modes to measure, comma-separated (default: every one): session,
    /// session-metrics-off, redis, redis-cached, redis-deadpool, redis-deadpool-fast, jwt,
    /// jwt-metrics-off, jwt-denylist, jwt-denylist-cached, jwt-eddsa, jwt-eddsa-uncached,
    /// jwt-es256, jwt-verifier. Each is an instance started with the `authlab serve` flags of its
    /// row in report.md (jwt-verifier: a `--role verifier` instance, with tokens from an issuer
    /// instance of its own); `/hello` always runs.
    #[arg(long, value_delimiter = ',', num_args = 1.., value_parser = crate::modes::parse_key)]
    pub modes: Vec<String>,

    /// Samples of the revocation-latency probe per revocable mode: a fresh token, accepted by a
    /// second instance, revoked on the first, the second probed until it refuses (0 skips it;
    /// at most 100000).
    #[arg(long, default_value_t = 1_000, value_parser = count(0, 100_000))]
    pub revocation_samples: usize,

    /// Concurrent keep-alive connections per route, like `wrk -c` (1 to 10000).
    #[arg(long, default_value_t = 32, value_parser = count(1, 10_000))]
    pub connections: usize,

    /// Worker threads of the load generator's own runtime, like `wrk -t` (1 to 256).
    #[arg(long, default_value_t = 1, value_parser = count(1, 256))]
    pub threads: usize,

    /// HTTP workers of each in-process server, ignored with `--target` (1 to 256).
    #[arg(long, default_value_t = 1, value_parser = count(1, 256))]
    pub workers: usize,

    /// Measured time per route and round (10ms to 1h).
    #[arg(long, default_value = "5s", value_parser = measured_duration)]
    pub duration: Duration,

    /// Rounds: every route runs once per round, in the same order, and the ratios are medians
    /// over the rounds (robust to a machine that changes speed during the run) (1 to 100).
    #[arg(long, default_value_t = 3, value_parser = count(1, 100))]
    pub rounds: usize,

    /// Unrecorded warm-up before each route's measurement (0s to 10m).
    #[arg(
        long,
        default_value = "2s",
        value_parser = warmup_duration,
        allow_hyphen_values = true
    )]
    pub warmup: Duration,

    /// Longest wait for one answer before it counts as an error (1ms to 10m).
    #[arg(long, default_value = "5s", value_parser = timeout_duration)]
    pub timeout: Duration,

    /// Measured time of the login-cost run, `POST /jwt/login` (10ms to 1h).
    #[arg(long, default_value = "3s", value_parser = measured_duration)]
    pub login_duration: Duration,

    /// Concurrent connections of the login-cost run (1 to 1024).
    #[arg(long, default_value_t = 4, value_parser = count(1, 1024))]
    pub login_connections: usize,

    /// Live-session populations at which RSS per session and verify time are measured
    /// (cumulative, smallest first; each 1 to 10000000; `--skip-memory` skips them).
    #[arg(
        long,
        value_delimiter = ',',
        num_args = 1..,
        default_value = "10000,100000,1000000",
        value_parser = count(1, 10_000_000)
    )]
    pub sessions: Vec<usize>,

    /// Logins (opaque token + refresh family) issued into Redis to measure `used_memory` per
    /// login (0 skips it; at most 10000000).
    #[arg(long, default_value_t = 20_000, value_parser = count(0, 10_000_000))]
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

/// A whole number in `min..=max` (clap names the range in its error).
fn count(min: u64, max: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(min..=max)
}

/// A duration written as humantime spells it (`300ms`, `5s`, `1m 30s`), within `min..=max`.
fn duration_within(value: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let value = value.trim();
    if value.starts_with('-') {
        return Err("a duration cannot be negative".to_owned());
    }
    let parsed = humantime::parse_duration(value)
        .map_err(|err| format!("{err} (write it like 300ms, 5s or 1m 30s)"))?;
    if parsed < min || parsed > max {
        return Err(format!(
            "must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(parsed)
}

/// `--duration`, `--login-duration`: a measured window, 10 ms to 1 h.
fn measured_duration(value: &str) -> Result<Duration, String> {
    duration_within(value, Duration::from_millis(10), Duration::from_secs(3600))
}

/// `--warmup`: none at all is allowed, up to 10 minutes.
fn warmup_duration(value: &str) -> Result<Duration, String> {
    duration_within(value, Duration::ZERO, Duration::from_secs(600))
}

/// `--timeout`: 1 ms to 10 minutes.
fn timeout_duration(value: &str) -> Result<Duration, String> {
    duration_within(value, Duration::from_millis(1), Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::{Args, FromArgMatches};

    use super::*;

    fn command() -> clap::Command {
        CompareArgs::augment_args(clap::Command::new("compare"))
    }

    fn parse(extra: &[&str]) -> Result<CompareArgs, clap::Error> {
        let argv = std::iter::once("compare").chain(extra.iter().copied());
        let matches = command().try_get_matches_from(argv)?;
        CompareArgs::from_arg_matches(&matches)
    }

    /// The error clap reports for `args`, rendered as the user would see it.
    fn refusal(args: &[&str]) -> (ErrorKind, String) {
        match parse(args) {
            Ok(parsed) => panic!("{args:?} was accepted as {parsed:?}"),
            Err(err) => (err.kind(), err.to_string()),
        }
    }

    #[test]
    fn the_defaults_parse_to_the_documented_run() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.duration, Duration::from_secs(5));
        assert_eq!(args.warmup, Duration::from_secs(2));
        assert_eq!(args.rounds, 3);
        assert_eq!(args.connections, 32);
        assert_eq!(args.sessions, vec![10_000, 100_000, 1_000_000]);
    }

    #[test]
    fn a_smoke_test_run_with_small_values_is_accepted() {
        let args = parse(&[
            "--duration",
            "300ms",
            "--warmup",
            "0s",
            "--rounds",
            "1",
            "--sessions",
            "1000",
            "--redis-tokens",
            "0",
        ])
        .unwrap();
        assert_eq!(args.duration, Duration::from_millis(300));
        assert_eq!(args.warmup, Duration::ZERO);
        assert_eq!(args.sessions, vec![1000]);
        assert_eq!(args.redis_tokens, 0);
    }

    #[test]
    fn zero_counts_are_refused_with_the_accepted_range() {
        for (flag, range) in [
            ("--rounds", "1..=100"),
            ("--connections", "1..=10000"),
            ("--threads", "1..=256"),
            ("--workers", "1..=256"),
            ("--sessions", "1..=10000000"),
            ("--login-connections", "1..=1024"),
        ] {
            let (kind, message) = refusal(&[flag, "0"]);
            assert_eq!(kind, ErrorKind::ValueValidation, "{flag}");
            assert!(message.contains(flag), "{flag}: {message}");
            assert!(message.contains(range), "{flag}: {message}");
        }
    }

    #[test]
    fn a_zero_among_the_session_populations_is_refused() {
        let (kind, message) = refusal(&["--sessions", "1000,0"]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(message.contains("1..=10000000"), "{message}");
    }

    #[test]
    fn an_empty_session_list_is_refused() {
        let (kind, _) = refusal(&["--sessions", ""]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        let (kind, _) = refusal(&["--sessions"]);
        assert_eq!(kind, ErrorKind::InvalidValue);
    }

    #[test]
    fn zero_durations_are_refused_with_the_accepted_range() {
        for (flag, range) in [
            ("--duration", "between 10ms and 1h"),
            ("--login-duration", "between 10ms and 1h"),
            ("--timeout", "between 1ms and 10m"),
        ] {
            let (kind, message) = refusal(&[flag, "0s"]);
            assert_eq!(kind, ErrorKind::ValueValidation, "{flag}");
            assert!(message.contains(range), "{flag}: {message}");
        }
    }

    #[test]
    fn a_negative_warmup_is_refused_as_negative() {
        let (kind, message) = refusal(&["--warmup", "-1s"]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(
            message.contains("a duration cannot be negative"),
            "{message}"
        );
    }

    #[test]
    fn an_absurd_warmup_is_refused() {
        let (kind, message) = refusal(&["--warmup", "3h"]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(message.contains("between 0s and 10m"), "{message}");
    }

    #[test]
    fn a_duration_without_a_unit_is_refused_with_an_example() {
        let (kind, message) = refusal(&["--duration", "5"]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(
            message.contains("write it like 300ms, 5s or 1m 30s"),
            "{message}"
        );
    }

    #[test]
    fn help_names_each_range() {
        let help = command().render_long_help().to_string();
        for range in ["(1 to 100)", "(10ms to 1h)", "(0s to 10m)", "(1 to 10000)"] {
            assert!(help.contains(range), "--help lacks {range}");
        }
    }
}
