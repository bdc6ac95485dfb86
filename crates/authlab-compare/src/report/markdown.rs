//! `report.md`: the table and the rest of the measurements, as Markdown.

use std::fmt::Write as _;

use super::choose;
use super::model::Report;
use super::terminal::{
    background_line, capacity_lines, errors_cell, hit_ratio_cell, ratio_cell, redis_cell,
};

/// `report.md`: the same table and the rest of the measurements, as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let m = &report.machine;
    let s = &report.settings;
    let _ = writeln!(md, "# authlab compare\n");
    let _ = writeln!(md, "Command: `{}`\n", s.command);
    let _ = writeln!(
        md,
        "Machine: {} CPUs ({}), Linux {}, authlab {} ({}), Redis {}.  ",
        m.cpus,
        m.cpu_model,
        m.kernel,
        m.authlab_version,
        m.git_sha.as_deref().unwrap_or("no git"),
        report.redis_version.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        md,
        "Load: {} keep-alive connections, {} generator thread(s), {} server worker(s), {:.0} s warm-up + {:.0} s measured per route and round, {} round(s); target: {}; 1-minute load average at start: {}.\n",
        s.connections,
        s.threads,
        s.workers,
        s.warmup_s,
        s.duration_s,
        s.rounds,
        s.target,
        m.load_average_1m
            .map_or("unknown".to_owned(), |l| format!("{l:.2}"))
    );
    let _ = writeln!(
        md,
        "Each round runs every route in this order. One baseline for every ratio: {}, the median over rounds of the mean of each round's first and last `/hello`. A ratio is the route's req/s (its median over rounds) over that baseline; the [min-max] beside it divides each round by that round's own baseline. Latencies are from the median round, errors are summed over all rounds.\n",
        report
            .baseline_requests_per_sec
            .map_or("n/a".to_owned(), |b| format!("{b:.0} req/s"))
    );
    let _ = writeln!(
        md,
        "| route | req/s | ratio to /hello (target) | p50 us | p99 us | p99.9 us | errors | credential bytes | Redis cmds/req | cache hits |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---|---:|---|---:|");
    for r in &report.routes {
        let _ = writeln!(
            md,
            "| `{}` | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.requests_per_sec,
            ratio_cell(r),
            r.load.latency.p50_us,
            r.load.latency.p99_us,
            r.load.latency.p999_us,
            errors_cell(r),
            r.credential_bytes,
            redis_cell(r.redis.as_ref()),
            hit_ratio_cell(r)
        );
    }
    if let Some(line) = background_line(report) {
        let _ = writeln!(md, "\n{line}");
    }
    let capacity = capacity_lines(report);
    if !capacity.is_empty() {
        let _ = writeln!(
            md,
            "\nWhat Redis can carry (its CPU per request, `INFO cpu`, less what it used while only `/hello` ran):\n"
        );
        for line in capacity {
            let _ = writeln!(md, "- {line}");
        }
    }
    let modes: Vec<_> = report
        .routes
        .iter()
        .filter_map(|r| Some((r, r.mode.as_deref()?, r.flags.as_deref()?)))
        .collect();
    if !modes.is_empty() {
        let _ = writeln!(
            md,
            "\nEach mode is an instance of its own, started with these `authlab serve` flags (on top of the run's address, database, Redis, key prefix and JWT secret); `--modes` picks a subset.\n\n| route | `--modes` | flags |\n|---|---|---|"
        );
        for (route, mode, flags) in modes {
            let _ = writeln!(md, "| `{}` | `{mode}` | `{flags}` |", route.name);
        }
    }
    let _ = writeln!(md, "\n![requests per second](throughput.svg)\n");
    let _ = writeln!(md, "![latency percentiles](latency.svg)\n");

    let statements = choose::statements(report);
    if !statements.is_empty() {
        let _ = writeln!(
            md,
            "## Which should I choose\n\nTrade-offs, each taken from a figure of this run (the tables here), not a ranking:\n"
        );
        for s in statements {
            let _ = writeln!(md, "- {s}");
        }
        md.push('\n');
    }
    let sourced: Vec<_> = report
        .routes
        .iter()
        .filter_map(|r| Some((r, r.target_ratio?, r.target_source.as_deref()?)))
        .collect();
    if !sourced.is_empty() {
        let _ = writeln!(
            md,
            "## Where the targets come from\n\n| route | target ratio to /hello | source |\n|---|---:|---|"
        );
        for (route, ratio, source) in sourced {
            let _ = writeln!(md, "| `{}` | >= {ratio:.2} | {source} |", route.name);
        }
        md.push('\n');
    }

    let costs = super::stats::metrics_cost_lines(report);
    if !costs.is_empty() {
        let _ = writeln!(
            md,
            "## Metrics cost\n\nFewer requests/s with `--metrics on` than the same route on an instance with `--metrics off`, round by round (each pair ran back to back); median of the rounds [min to max]. Target: <= 2%.\n"
        );
        for line in costs {
            let _ = writeln!(md, "- `{line}`");
        }
        md.push('\n');
    }
    if let Some(login) = &report.login {
        let _ = writeln!(
            md,
            "## Login cost\n\n`POST /jwt/login` (argon2id verify + issue): **{:.1} logins/s**, p50 {:.1} ms, p99 {:.1} ms, {} errors. Verify, by contrast, runs at the rates above on every request.\n",
            login.requests_per_sec,
            login.latency.p50_us as f64 / 1000.0,
            login.latency.p99_us as f64 / 1000.0,
            login.errors()
        );
    }
    if !report.sessions.is_empty() {
        let _ = writeln!(
            md,
            "## Memory per live session (in-process map)\n\n| live sessions | RSS growth | bytes/session | verify (ns, in-process loop) |\n|---:|---:|---:|---:|"
        );
        for p in &report.sessions {
            let _ = writeln!(
                md,
                "| {} | {:.1} MiB | {:.0} | {:.0} |",
                p.sessions,
                p.rss_delta_bytes as f64 / (1024.0 * 1024.0),
                p.bytes_per_session,
                p.verify_ns
            );
        }
        md.push('\n');
    }
    if let Some(r) = &report.redis_memory {
        let _ = writeln!(
            md,
            "## Redis memory per login (redis backend)\n\n{} logins, each an opaque access-token key plus a refresh-token family and its entry in the user's index (every login a distinct user): `used_memory` grew by {:.1} MiB, **{:.0} bytes per login**.\n",
            r.tokens,
            r.used_memory_delta_bytes as f64 / (1024.0 * 1024.0),
            r.bytes_per_token
        );
    }
    if !report.scale_out.is_empty() {
        let _ = writeln!(
            md,
            "## Scale-out and revocation (each mode's instance and a second one with the same flags; shared Redis and JWT secret)\n\n| credential | issuer /me | other /me | logout | issuer /me after | other /me after | logout -> first rejection |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for c in &report.scale_out {
            let revocation = c
                .revocation_us
                .map_or("never (still 200 after 1 s)".to_owned(), |us| {
                    format!("{:.1} ms", us as f64 / 1000.0)
                });
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                c.backend,
                c.issuer_before,
                c.other_before,
                c.logout,
                c.issuer_after,
                c.other_after,
                revocation
            );
        }
        let _ = writeln!(
            md,
            "\nA session lives in one process's memory, so the other instance has never heard of it (401): \
             sessions need sticky routing or a shared store. Opaque tokens live in the shared Redis and work \
             everywhere; logout deletes the key for everyone. A JWT verifies on any instance with the key; \
             it is revoked only where a denylist is checked, so a token logged out on A (no denylist) stays valid \
             until it expires, everywhere."
        );
    }
    if !report.revocation.is_empty() {
        let _ = writeln!(
            md,
            "\n## Revocation latency across two instances\n\nPer sample: a fresh access token from instance 1 (a login, then a refresh per sample), accepted twice by `GET /me` on instance 2 (the second from its cache, if it has one), revoked on instance 1 (`/revoke`: the same write as a logout), then `GET /me` on instance 2 again and again until it refuses, over kept connections. *Accepted for*: from the revocation's answer until the first refused probe was sent (0: the first probe was refused; the window the cache's 5 ms guarantee bounds). *Refused after*: until the refusing answer (one round trip more). A mode that asks Redis on every request refuses at the first probe.\n\n| route | samples | never refused (1 s) | accepted for p50 / p99 / max | refused after p50 / p99 | probes until refused (mean) | refusal statuses |\n|---|---:|---:|---|---|---:|---|"
        );
        for r in &report.revocation {
            let statuses: Vec<String> = r
                .refusal_statuses
                .iter()
                .map(|(status, n)| format!("{n}x{status}"))
                .collect();
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} / {} / {} us | {} / {} us | {:.2} | {} |",
                r.route.as_deref().unwrap_or_default(),
                r.samples,
                r.never_refused,
                r.p50_us,
                r.p99_us,
                r.max_us,
                r.answered_p50_us,
                r.answered_p99_us,
                r.mean_probes,
                statuses.join(", ")
            );
        }
        md.push('\n');
    }
    md
}
