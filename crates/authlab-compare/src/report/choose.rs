//! "Which should I choose": one statement per backend, built from this run's own figures.
//!
//! Each statement is a list of trade-offs, not a rank: how fast the route was against `/hello`
//! and its p99, how soon a logout took effect and whether the other instance agreed, whether a
//! second instance accepts the credential, how many Redis commands each request cost, what a live
//! session or login costs in memory, and how big the credential is. Every figure comes from the
//! report; a figure the run did not take (a `--target` run has no scale-out check, `--skip-memory`
//! no memory) is left out, never filled in.

use super::format;
use super::model::{Report, RouteResult};
use crate::modes::{self, Backend, Mode};
use crate::revocation::RevocationLatency;
use crate::setup::ScaleOutCheck;

/// The modes the section speaks of, in the report's order: every measured mode but the
/// metrics-off ones (which exist to price the metrics, not as a choice).
fn choices(report: &Report) -> Vec<(&'static Mode, &RouteResult)> {
    report
        .routes
        .iter()
        .filter_map(|route| {
            let mode = modes::by_row(&route.name)
                .or_else(|| modes::AS_SERVED.iter().find(|m| m.row == route.name))?;
            mode.metrics_off_of.is_none().then_some((mode, route))
        })
        .collect()
}

/// The section's statements, one per mode measured, then one on login cost.
pub fn statements(report: &Report) -> Vec<String> {
    let choices = choices(report);
    let authenticated: Vec<&RouteResult> = choices.iter().map(|(_, route)| *route).collect();
    let ranges: Vec<Spread<'_>> = authenticated.iter().filter_map(|r| Spread::of(r)).collect();

    let mut out = Vec::new();
    for (mode, route) in choices {
        let route_name = route.name.as_str();
        let check = report.scale_out.iter().find(|c| c.route == route_name);
        let mut parts = vec![speed(route, &ranges)];
        if let Some(check) = check {
            parts.push(revocation(check));
            parts.push(second_instance(check));
        }
        if let Some(latency) = report
            .revocation
            .iter()
            .find(|r| r.route.as_deref() == Some(route_name))
        {
            parts.push(across_instances(latency));
        }
        if let Some(cache) = &route.cache
            && let Some(ratio) = cache.hit_ratio
        {
            parts.push(format!(
                "{:.1}% of its cache lookups hit, and the cache held {} {} at the end",
                ratio * 100.0,
                format::thousands(cache.entries),
                if cache.entries == 1 {
                    "entry"
                } else {
                    "entries"
                }
            ));
        }
        if let Some(redis) = &route.redis {
            parts.push(if redis.commands_per_request >= 0.005 {
                format!(
                    "every request costs {:.2} Redis commands, so it fails (503) while Redis is down",
                    redis.commands_per_request
                )
            } else {
                "no Redis on the request path".to_owned()
            });
            // A route that sends Redis nothing has no capacity line: what Redis did meanwhile
            // was someone else's work.
            let uses_redis = redis.commands_per_request >= 0.005 || route.cache.is_some();
            if let Some(instances) = route.instances_per_redis_core.filter(|_| uses_redis) {
                parts.push(format!(
                    "one Redis core carries about {instances:.1} instances like this one before Redis is the bottleneck"
                ));
            }
        }
        if mode.flags.contains(&"--jwt-alg") || mode.issuer.is_some() {
            parts.push(
                "signed with a key pair: an instance checks it with the issuer's public JWKS \
                 alone and cannot mint one (with HS256 every instance that checks a token holds \
                 the secret that mints it)"
                    .to_owned(),
            );
        }
        if let Some(memory) = memory(report, mode) {
            parts.push(memory);
        }
        if route.credential_bytes > 0 {
            parts.push(format!(
                "a {}-byte credential on every request",
                format::thousands(route.credential_bytes as u64)
            ));
        }
        out.push(format!("{}: {}.", mode.label, parts.join("; ")));
    }
    if let Some(login) = &report.login {
        let mut text = format!(
            "login: {:.0} logins/s on one instance (argon2id, the same on every backend, p99 {})",
            login.requests_per_sec,
            format::latency(login.latency.p99_us)
        );
        if let Some(baseline) = report.baseline_requests_per_sec {
            text.push_str(&format!(
                ", against {} requests/s of /hello: what differs between the backends is the cost of every later request, not of logging in",
                format::thousands_f(baseline)
            ));
        }
        text.push('.');
        out.push(text);
    }
    out
}

/// A route's ratio and the lowest and highest of its per-round ratios.
struct Spread<'a> {
    name: &'a str,
    ratio: f64,
    lo: f64,
    hi: f64,
}

impl<'a> Spread<'a> {
    /// `None` for a route with no ratio (a `--target` run without `/hello`).
    fn of(route: &'a RouteResult) -> Option<Self> {
        let ratio = route.ratio_to_hello?;
        let lo = route.ratio_per_round.iter().copied().reduce(f64::min);
        let hi = route.ratio_per_round.iter().copied().reduce(f64::max);
        let (lo, hi) = lo.zip(hi).unwrap_or((ratio, ratio));
        Some(Self {
            name: &route.name,
            ratio,
            lo,
            hi,
        })
    }
}

/// `0.94x of /hello, p99 510 us (the fastest here)`. "Fastest" and "slowest" are said only of a
/// route whose rounds all lie above (below) every other route's rounds; where the best (worst)
/// route's rounds overlap another's, the two are within this machine's noise, and it says so.
fn speed(route: &RouteResult, ranges: &[Spread<'_>]) -> String {
    let Some(ratio) = route.ratio_to_hello else {
        return format!(
            "{} req/s, p99 {}",
            format::thousands_f(route.requests_per_sec),
            format::latency(route.load.latency.p99_us)
        );
    };
    let mut text = format!(
        "{ratio:.2}x of /hello, p99 {}",
        format::latency(route.load.latency.p99_us)
    );
    if let Some(note) = rank(route, ranges) {
        text.push_str(&note);
    }
    if route.errors > 0 {
        text.push_str(&format!(
            ", {} failed requests",
            format::thousands(route.errors)
        ));
    }
    text
}

/// ` (the fastest here)`, ` (the slowest here)`, or ` (within noise of /redis/me ...)`, for the
/// route with the highest or lowest ratio; nothing for the others.
fn rank(route: &RouteResult, ranges: &[Spread<'_>]) -> Option<String> {
    if ranges.len() < 2 {
        return None;
    }
    let this = ranges.iter().find(|s| s.name == route.name)?;
    let others: Vec<&Spread<'_>> = ranges.iter().filter(|s| s.name != route.name).collect();
    let highest = others.iter().all(|o| this.ratio >= o.ratio);
    let lowest = others.iter().all(|o| this.ratio <= o.ratio);
    if !highest && !lowest {
        return None;
    }
    let overlapping: Vec<&str> = others
        .iter()
        .filter(|o| this.lo <= o.hi && o.lo <= this.hi)
        .map(|o| o.name)
        .collect();
    Some(match (overlapping.is_empty(), highest) {
        (true, true) => " (the fastest here)".to_owned(),
        (true, false) => " (the slowest here)".to_owned(),
        (false, _) => format!(
            " (within noise of {}: their rounds overlap)",
            overlapping.join(", ")
        ),
    })
}

/// How soon a logout on the issuing instance took effect, there and on the other one.
fn revocation(check: &ScaleOutCheck) -> String {
    match check.revocation_us {
        Some(us) if check.other_after == 200 => format!(
            "a logout is refused by its own instance {} later, but the other instance still accepts the credential (it checks no denylist)",
            format::latency(us)
        ),
        Some(us) => format!("a logout is refused {} later", format::latency(us)),
        None => format!(
            "a logout cannot end it: still accepted ({}) after the logout, until it expires",
            check.issuer_after
        ),
    }
}

/// How soon a second instance refused after a logout on the first, over many samples.
fn across_instances(latency: &RevocationLatency) -> String {
    let mut text = if latency.refused == 0 {
        "no token revoked on one instance was ever refused by the second".to_owned()
    } else if latency.max_us == 0 {
        format!(
            "a second instance refuses a token revoked on the first at its very next request ({} samples; its answer {} later at p99)",
            format::thousands(latency.samples as u64),
            format::latency(latency.answered_p99_us)
        )
    } else {
        format!(
            "a second instance still accepts a token revoked on the first for up to {} at p99 ({} max, {} samples)",
            format::latency(latency.p99_us),
            format::latency(latency.max_us),
            format::thousands(latency.samples as u64)
        )
    };
    if latency.never_refused > 0 {
        text.push_str(&format!(
            ", and {} samples were still accepted a second after the logout",
            format::thousands(latency.never_refused as u64)
        ));
    }
    text
}

/// Whether the credential works on the instance that did not issue it.
fn second_instance(check: &ScaleOutCheck) -> String {
    if (200..300).contains(&check.other_before) {
        "a second instance accepts it".to_owned()
    } else {
        format!(
            "a second instance does not know it ({}): sticky routing or a shared store",
            check.other_before
        )
    }
}

/// What a live credential of this mode's backend costs in memory, where the run measured it.
fn memory(report: &Report, mode: &Mode) -> Option<String> {
    match mode.backend {
        Backend::Session => report.sessions.iter().max_by_key(|p| p.sessions).map(|p| {
            format!(
                "{} of process memory per live session at {} sessions",
                format::bytes(p.bytes_per_session),
                format::thousands(p.sessions as u64)
            )
        }),
        Backend::Redis => report.redis_memory.as_ref().map(|m| {
            format!(
                "{} of Redis memory per login (token, refresh family, user index)",
                format::bytes(m.bytes_per_token)
            )
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Figures, report_with};
    use super::*;

    fn find<'a>(statements: &'a [String], label: &str) -> &'a str {
        statements
            .iter()
            .find(|s| s.starts_with(&format!("{label}:")))
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no statement for {label}: {statements:?}"))
    }

    #[test]
    fn each_statement_quotes_the_runs_own_figures() {
        let report = report_with(&Figures::default());
        let s = statements(&report);
        let session = find(&s, "session");
        assert!(
            session.contains("0.94x of /hello, p99 510 us (the fastest here)"),
            "{session}"
        );
        assert!(
            session.contains("a second instance does not know it (401)"),
            "{session}"
        );
        assert!(
            session.contains("451 B of process memory per live session at 1,000,000"),
            "{session}"
        );
        assert!(
            session.contains("no Redis on the request path"),
            "{session}"
        );
        let redis = find(&s, "redis");
        assert!(
            redis.contains("every request costs 1.00 Redis commands"),
            "{redis}"
        );
        assert!(
            redis.contains("1,190 B of Redis memory per login"),
            "{redis}"
        );
        assert!(redis.contains("a second instance accepts it"), "{redis}");
        let off = find(&s, "jwt, denylist off");
        assert!(
            off.contains("a logout cannot end it: still accepted (200)"),
            "{off}"
        );
        // A route that sends Redis nothing gets no capacity line; HS256 is not a key pair.
        assert!(!session.contains("one Redis core carries"), "{session}");
        let on = find(&s, "jwt, denylist on");
        assert!(!on.contains("key pair"), "{on}");
        assert!(on.contains("(the slowest here)"), "{on}");
        assert!(
            on.contains("the other instance still accepts the credential"),
            "{on}"
        );
        let login = find(&s, "login");
        assert!(login.contains("107 logins/s"), "{login}");
        assert!(login.contains("115,000 requests/s of /hello"), "{login}");
    }

    #[test]
    fn the_best_and_worst_are_within_noise_when_their_rounds_overlap() {
        let mut report = report_with(&Figures::default());
        // Make every mode's rounds span the same range: nobody is ranked.
        for route in &mut report.routes {
            if route.path != "/hello" {
                route.ratio_per_round = vec![0.40, 1.20];
            }
        }
        let s = statements(&report);
        let session = find(&s, "session");
        assert!(session.contains("(within noise of "), "{session}");
        assert!(!session.contains("fastest"), "{session}");
        let on = find(&s, "jwt, denylist on");
        assert!(on.contains("(within noise of "), "{on}");
        assert!(!on.contains("slowest"), "{on}");
    }

    #[test]
    fn a_different_run_gives_different_sentences() {
        let first = statements(&report_with(&Figures::default()));
        let second = statements(&report_with(&Figures {
            session_rps: 60_000.0,
            redis_rps: 100_000.0,
            session_bytes: 200.0,
            redis_bytes: 900.0,
            login_rps: 50.0,
            ..Figures::default()
        }));
        assert_ne!(first, second);
        let session = find(&second, "session");
        assert!(session.contains("0.52x of /hello"), "{session}");
        assert!(session.contains("200 B of process memory"), "{session}");
        let redis = find(&second, "redis");
        assert!(redis.contains("0.87x of /hello"), "{redis}");
        assert!(redis.contains("(the fastest here)"), "{redis}");
        assert!(find(&second, "login").contains("50 logins/s"));
    }

    #[test]
    fn figures_the_run_did_not_take_are_left_out() {
        let mut report = report_with(&Figures::default());
        report.scale_out.clear();
        report.sessions.clear();
        report.redis_memory = None;
        let s = statements(&report);
        let session = find(&s, "session");
        assert!(!session.contains("second instance"), "{session}");
        assert!(!session.contains("memory"), "{session}");
        assert!(!find(&s, "redis").contains("memory"));
    }
}
