//! What the command prints while it runs: one line per step, each with an overall ETA, and for
//! every route run a live line with the route and round counters (`[7/18 r2/3 ETA 1m05s]`).
//!
//! The ETA comes from the planned schedule, not from a guess at the end: every route run takes
//! its warm-up plus its measured window, the login-cost run its own, and the memory steps an
//! estimate per session or per login (constants below, measured on a two-core VM). Each line fits
//! [`COLUMNS`]: a wider line wraps on an 80-column terminal, and a wrapped progress line is
//! redrawn as a new line on every tick.

use std::time::{Duration, Instant};

use authlab_loadgen::{LoadReport, Progress, Tick};

use crate::CompareArgs;
use crate::report::format::{self, COLUMNS};

/// Estimated time to issue one session in the memory probe (criterion: 1.5 us; RSS reads and
/// page faults on top).
const SESSION_ISSUE: Duration = Duration::from_nanos(2_500);
/// Estimated time of the verify loop at one population (400,000 calls).
const SESSION_VERIFY_LOOP: Duration = Duration::from_millis(150);
/// Estimated time per Redis login in the memory probe (64 pipelined lanes).
const REDIS_LOGIN: Duration = Duration::from_micros(30);
/// Estimated start-up of both instances plus registration and four argon2id logins.
const SETUP: Duration = Duration::from_millis(600);
/// Estimated scale-out checks: four logins, and up to one second of polling for the JWT that
/// is never revoked.
const SCALE_OUT: Duration = Duration::from_millis(1_500);
/// Estimated time of one revocation sample (a refresh, two presentations, the revocation, a
/// probe or more: five or so requests on kept connections).
const REVOCATION_SAMPLE: Duration = Duration::from_millis(2);
/// Estimated overhead around each load run (runtime start, two `INFO commandstats`).
const RUN_OVERHEAD: Duration = Duration::from_millis(50);
/// The login-cost run's warm-up (fixed in `run.rs`).
pub const LOGIN_WARMUP: Duration = Duration::from_millis(500);
/// Width of the live bar, inside its brackets.
const BAR: usize = 8;

/// One step of the run, in the order the run takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepId {
    /// RSS per live session, in this process.
    Sessions,
    /// Starting the instances, registering, logging in on every backend.
    Setup,
    /// Credentials presented to the other instance, and logouts.
    ScaleOut,
    /// The revocation-latency probe of the `index`th revocable mode (from 1).
    Revocation {
        /// Which revocable mode, from 1.
        index: usize,
    },
    /// Route `index` of the plan in round `round` (both from 1).
    Route {
        /// The round, from 1.
        round: usize,
        /// The route's place in a round, from 1.
        index: usize,
    },
    /// `POST /jwt/login` under load.
    Login,
    /// Redis `used_memory` per login.
    RedisMemory,
}

#[derive(Debug, Clone)]
struct Step {
    id: StepId,
    planned: Duration,
}

/// The planned schedule of a run, and where the run is in it.
#[derive(Debug)]
pub struct Plan {
    steps: Vec<Step>,
    current: usize,
    started: Instant,
    rounds: usize,
    routes: Vec<String>,
    name_width: usize,
}

impl Plan {
    /// The schedule of a run with `args` over `routes` (their names, in the order of a round).
    pub fn new(args: &CompareArgs, routes: &[&str]) -> Self {
        let mut steps = Vec::new();
        let memory = !args.skip_memory;
        if memory && !args.sessions.is_empty() {
            let largest = args.sessions.iter().copied().max().unwrap_or(0) as u32;
            steps.push(Step {
                id: StepId::Sessions,
                planned: SESSION_ISSUE * largest + SESSION_VERIFY_LOOP * args.sessions.len() as u32,
            });
        }
        steps.push(Step {
            id: StepId::Setup,
            planned: SETUP,
        });
        if args.target.is_none() {
            steps.push(Step {
                id: StepId::ScaleOut,
                planned: SCALE_OUT,
            });
        }
        if args.target.is_none() && args.revocation_samples > 0 {
            let revocable = crate::modes::selected(&args.modes)
                .iter()
                .filter(|m| m.revocable)
                .count();
            for index in 1..=revocable {
                steps.push(Step {
                    id: StepId::Revocation { index },
                    planned: REVOCATION_SAMPLE * args.revocation_samples as u32,
                });
            }
        }
        let rounds = args.rounds.max(1);
        for round in 1..=rounds {
            for index in 1..=routes.len() {
                steps.push(Step {
                    id: StepId::Route { round, index },
                    planned: args.warmup + args.duration + RUN_OVERHEAD,
                });
            }
        }
        steps.push(Step {
            id: StepId::Login,
            planned: LOGIN_WARMUP + args.login_duration + RUN_OVERHEAD,
        });
        if memory && args.redis_tokens > 0 {
            steps.push(Step {
                id: StepId::RedisMemory,
                planned: REDIS_LOGIN * args.redis_tokens as u32,
            });
        }
        Self {
            steps,
            current: 0,
            started: Instant::now(),
            rounds,
            routes: routes.iter().map(|r| (*r).to_owned()).collect(),
            name_width: routes.iter().map(|r| r.chars().count()).max().unwrap_or(0),
        }
    }

    /// The whole run as planned.
    pub fn total(&self) -> Duration {
        self.steps.iter().map(|s| s.planned).sum()
    }

    /// Marks `id` as the step now running (steps before it, run or skipped, are done).
    pub fn start(&mut self, id: StepId) {
        if let Some(offset) = self.steps[self.current..].iter().position(|s| s.id == id) {
            self.current += offset;
        }
        self.started = Instant::now();
    }

    /// Planned time of the steps after the current one.
    fn after_current(&self) -> Duration {
        self.steps
            .iter()
            .skip(self.current + 1)
            .map(|s| s.planned)
            .sum()
    }

    /// Time left in the whole run, as planned, from where the current step is.
    pub fn eta(&self) -> Duration {
        let current = self
            .steps
            .get(self.current)
            .map_or(Duration::ZERO, |s| s.planned)
            .saturating_sub(self.started.elapsed());
        current + self.after_current()
    }

    /// A line for a step that is not a route run: `[ETA 2m31s] memory: ...`, cut to fit.
    pub fn line(&self, text: &str) -> String {
        fit(format!("[ETA {}] {text}", format::eta(self.eta())))
    }

    fn route_name(&self, index: usize) -> &str {
        self.routes.get(index - 1).map_or("", String::as_str)
    }

    /// The counters of route `index` in `round`: `7/18 r2/3`.
    fn counter(&self, round: usize, index: usize) -> String {
        let runs = self.rounds * self.routes.len();
        route_counter(
            (round - 1) * self.routes.len() + index,
            runs,
            round,
            self.rounds,
        )
    }

    /// The live line of the route run now starting (call [`Plan::start`] first).
    pub fn route_progress(&self, round: usize, index: usize) -> Progress {
        let counter = self.counter(round, index);
        let name = format!("{:<w$}", self.route_name(index), w = self.name_width);
        let after = self.after_current();
        Progress::new(move |tick| route_line(&counter, &name, tick.remaining() + after, tick))
    }

    /// The live line of a load run that is not a route (the login cost): `[ETA 5s] label [==>  ] 104 req/s`.
    pub fn step_progress(&self, label: &str) -> Progress {
        let label = label.to_owned();
        let after = self.after_current();
        Progress::new(move |tick| {
            fit(format!(
                "[ETA {}] {label} [{}] {}",
                format::eta(tick.remaining() + after),
                bar(tick),
                status(tick)
            ))
        })
    }

    /// The line that stays once route `index` of `round` is done.
    pub fn route_done(&self, round: usize, index: usize, load: &LoadReport) -> String {
        let name = format!("{:<w$}", self.route_name(index), w = self.name_width);
        done_line(&format!("r{round}/{}", self.rounds), &name, load)
    }
}

/// `7/18 r2/3`: the route run out of all of them, and the round.
fn route_counter(run: usize, runs: usize, round: usize, rounds: usize) -> String {
    format!("{run}/{runs} r{round}/{rounds}")
}

/// `[7/18 r2/3 ETA 1m05s] /redis/me   [====>   ] 45,123 req/s`
fn route_line(counter: &str, name: &str, eta: Duration, tick: &Tick) -> String {
    fit(format!(
        "[{counter} ETA {}] {name} [{}] {}",
        format::eta(eta),
        bar(tick),
        status(tick)
    ))
}

/// `=====>  `: how far the run is, warm-up included.
fn bar(tick: &Tick) -> String {
    let filled = ((tick.fraction() * BAR as f64).round() as usize).min(BAR);
    let mut bar = "=".repeat(filled);
    if filled < BAR {
        bar.push('>');
        bar.push_str(&" ".repeat(BAR - filled - 1));
    }
    bar
}

/// `warm-up`, then the rate of the last tick.
fn status(tick: &Tick) -> String {
    if tick.warming_up() {
        "warm-up".to_owned()
    } else {
        format!("{} req/s", format::thousands_f(tick.requests_per_sec))
    }
}

/// `[r2/3] /redis/me     45,123 req/s, p99 761 us, 0 errors`
fn done_line(round: &str, name: &str, load: &LoadReport) -> String {
    fit(format!(
        "[{round}] {name} {:>9} req/s, p99 {}, {} errors",
        format::thousands_f(load.requests_per_sec),
        format::latency(load.latency.p99_us),
        format::thousands(load.errors()),
    ))
}

/// Cuts a line to [`COLUMNS`] (never needed for the lines above in practice; a safety net).
fn fit(mut line: String) -> String {
    if line.chars().count() > COLUMNS {
        line = line.chars().take(COLUMNS - 1).collect();
        line.push('~');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use authlab_loadgen::Latency;
    use std::collections::BTreeMap;

    /// The longest route name any plan has.
    const LONGEST: &str = "/jwt/me (denylist off)";
    const ROUTES: [&str; 6] = [
        "/hello",
        "/session/me",
        "/redis/me",
        LONGEST,
        "/jwt/me (denylist on)",
        "/hello (again)",
    ];

    fn args(extra: &[&str]) -> CompareArgs {
        use clap::{Args, FromArgMatches};
        let argv = std::iter::once("compare").chain(extra.iter().copied());
        let matches = CompareArgs::augment_args(clap::Command::new("compare"))
            .try_get_matches_from(argv)
            .unwrap();
        CompareArgs::from_arg_matches(&matches).unwrap()
    }

    fn load(rps: f64, p99_us: u64, errors: u64) -> LoadReport {
        LoadReport {
            requests: 1,
            warmup_requests: 0,
            duration_s: 1.0,
            requests_per_sec: rps,
            latency: Latency {
                p99_us,
                ..Latency::default()
            },
            status_counts: BTreeMap::new(),
            non_2xx: errors,
            transport_errors: 0,
            body_bytes: 0,
            curve: Vec::new(),
        }
    }

    fn tick(elapsed_ms: u64, rps: f64) -> Tick {
        Tick {
            elapsed: Duration::from_millis(elapsed_ms),
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(5),
            requests_per_sec: rps,
        }
    }

    #[test]
    fn the_progress_line_of_the_longest_route_fits_80_columns_at_the_largest_counters() {
        // The most rounds `--rounds` accepts, hours of measuring: the widest counters and ETA.
        let mut plan = Plan::new(&args(&["--rounds", "100", "--duration", "1h"]), &ROUTES);
        plan.start(StepId::Route {
            round: 100,
            index: 4,
        });
        let progress = plan.route_progress(100, 4);
        for t in [
            tick(0, 0.0),
            tick(3_000, 9_999_999.0),
            tick(7_000, 9_999_999.0),
        ] {
            let line = progress.render(&t);
            assert!(line.contains(LONGEST), "{line}");
            assert!(line.contains("r100/100"), "{line}");
            assert!(!line.ends_with('~'), "cut: {line}");
            assert!(
                line.chars().count() <= COLUMNS,
                "{} columns: {line}",
                line.len()
            );
        }
        let done = plan.route_done(100, 4, &load(9_999_999.0, 9_999, 99_999));
        assert!(!done.ends_with('~'), "cut: {done}");
        assert!(
            done.chars().count() <= COLUMNS,
            "{} columns: {done}",
            done.len()
        );
    }

    #[test]
    fn the_progress_line_names_the_route_the_counters_and_the_phase() {
        let mut plan = Plan::new(&args(&["--skip-memory"]), &ROUTES);
        plan.start(StepId::Route { round: 2, index: 3 });
        let progress = plan.route_progress(2, 3);
        let warm = progress.render(&tick(1_000, 12_000.0));
        assert!(warm.starts_with("[9/18 r2/3 ETA "), "{warm}");
        assert!(warm.contains("/redis/me"), "{warm}");
        assert!(warm.ends_with("warm-up"), "{warm}");
        let measuring = progress.render(&tick(4_000, 45_123.4));
        assert!(
            measuring.ends_with("[=====>  ] 45,123 req/s"),
            "{measuring}"
        );
    }

    #[test]
    fn the_eta_counts_every_planned_step_after_this_one() {
        // 3 rounds x 6 routes x (2 s + 5 s + overhead), login 0.5 s + 3 s, no memory steps.
        let plan = Plan::new(
            &args(&["--skip-memory", "--revocation-samples", "0"]),
            &ROUTES,
        );
        let routes = (Duration::from_secs(7) + RUN_OVERHEAD) * 18;
        let login = LOGIN_WARMUP + Duration::from_secs(3) + RUN_OVERHEAD;
        assert_eq!(plan.total(), SETUP + SCALE_OUT + routes + login);
        // The revocation probe: its samples for every revocable mode.
        let probed = Plan::new(&args(&["--skip-memory"]), &ROUTES);
        let revocable = crate::modes::MODES.iter().filter(|m| m.revocable).count() as u32;
        assert_eq!(
            probed.total() - plan.total(),
            REVOCATION_SAMPLE * 1_000 * revocable
        );

        // In the last route run of the last round, 2 s in: 5 s of it and the login run remain.
        let mut plan = plan;
        plan.start(StepId::Route { round: 3, index: 6 });
        let line = plan.route_progress(3, 6).render(&tick(2_000, 1.0));
        let eta = format::eta(Duration::from_secs(5) + login);
        assert!(
            line.starts_with(&format!("[18/18 r3/3 ETA {eta}]")),
            "{line}"
        );
    }

    #[test]
    fn memory_steps_are_planned_from_the_populations_and_logins() {
        let with = Plan::new(
            &args(&["--sessions", "1000000", "--redis-tokens", "20000"]),
            &ROUTES,
        );
        let without = Plan::new(&args(&["--skip-memory"]), &ROUTES);
        let memory = with.total() - without.total();
        assert_eq!(
            memory,
            SESSION_ISSUE * 1_000_000 + SESSION_VERIFY_LOOP + REDIS_LOGIN * 20_000
        );
    }

    #[test]
    fn a_step_line_is_cut_rather_than_wrapped() {
        let plan = Plan::new(&args(&[]), &ROUTES);
        let line = plan.line(&"x".repeat(200));
        assert_eq!(line.chars().count(), COLUMNS);
        assert!(line.ends_with('~'));
    }
}
