//! `drill.md`: the report for people, with the command that made it.

use std::fmt::Write as _;

use super::{DrillReport, summary};
use crate::load::Backend;

/// The whole `drill.md`. `command`: the command line that ran the drill.
pub fn render(report: &DrillReport, command: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# authlab drill: {}\n", report.run.scenario.name());
    let _ = writeln!(md, "Command: `{command}`\n");
    let _ = writeln!(
        md,
        "Redis: `{}`; instances {} behind HAProxy (cookie affinity for `/session`, round robin \
         for `/redis` and `/jwt`, health check `GET {}`). Open-loop load: {} requests/s \
         scheduled for {:.0} s over {} users, latency measured from each request's scheduled time.\n",
        report.run.redis_url,
        report.run.instances.join(", "),
        report.run.balancer_check,
        report.run.rate,
        f64::from(report.run.duration_ms) / 1000.0,
        report.run.users
    );
    md += "```\n";
    md += &summary(report);
    md += "```\n\n";
    if let Some(fault) = &report.fault {
        let _ = writeln!(
            md,
            "**Fault** at {:.2} s: {}. Failover ({}): {}.\n",
            f64::from(fault.at_ms) / 1000.0,
            fault.what,
            fault.failover_means,
            fault
                .failover_ms
                .map_or("not seen".to_owned(), |ms| format!(
                    "{:.2} s",
                    f64::from(ms) / 1000.0
                ))
        );
    }
    md += "| backend | requests | by status | ok | p99 | slowest (at) | >= 90 % again after the fault | users affected | credentials lost | revocations undone / probed | instances answered |\n";
    md += "|---|---|---|---|---|---|---|---|---|---|---|\n";
    for b in &report.backends {
        let statuses: Vec<String> = b
            .by_status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} % | {:.1} ms | {:.1} ms ({:.1} s) | {} | {} ({:.0} %) | {} | {} / {} | {} |",
            b.backend.name(),
            b.requests,
            statuses.join(", "),
            b.success_share * 100.0,
            b.p99_ms,
            b.slowest_ms,
            f64::from(b.slowest_at_ms) / 1000.0,
            match (report.fault.is_some(), b.recovered_after_ms) {
                (false, _) => "no fault".to_owned(),
                (true, Some(ms)) => format!("{:.1} s", f64::from(ms) / 1000.0),
                (true, None) => "not by the end".to_owned(),
            },
            b.users_affected,
            b.users_affected_share * 100.0,
            b.credentials_lost,
            b.revocations_undone,
            b.revocations_probed,
            b.instances_answered.join(", ")
        );
    }
    md += "\n![requests per second by status, per backend](timeline.svg)\n\n";
    md += "## Reading it\n\n";
    md += "- **none** (a status): no HTTP answer at all: the connection was refused or reset, or \
           nothing came back within the timeout. That is what a request already sent to an \
           instance that dies gets, before HAProxy takes the instance out.\n";
    md += "- **ok**: 2xx answers (a `401` for a credential the user did not log out counts as a \
           failure: that user has to log in again).\n";
    md += "- **credentials lost**: credentials refused without a logout. Sessions live in one \
           instance's memory: when it dies, HAProxy sends its users elsewhere (`option \
           redispatch`), where the session does not exist.\n";
    md += "- **revocations undone**: logouts answered `204` whose credential was accepted again \
           when asked at the end. It must be 0: an acknowledged logout that comes back is a \
           security failure, not an availability one.\n";
    md += "- **>= 90 % again**: from the fault until the first 100 ms bucket from which every \
           500 ms window has at least 90 % 2xx answers.\n\n";
    md += "## Timeline (per second)\n\n| s |";
    for b in Backend::ALL {
        let _ = write!(
            md,
            " {} ok | {} failed | {} p99 ms |",
            b.name(),
            b.name(),
            b.name()
        );
    }
    md += "\n|---|";
    md += &"---|---|---|".repeat(3);
    md += "\n";
    let seconds = report.run.duration_ms.div_ceil(1000);
    for s in 0..seconds {
        let _ = write!(md, "| {s} |");
        for backend in Backend::ALL {
            let in_second = report
                .buckets
                .iter()
                .filter(|b| b.backend == backend && b.t_ms / 1000 == s);
            let (mut ok, mut failed, mut p99) = (0u64, 0u64, 0f64);
            for bucket in in_second {
                for (status, n) in &bucket.by_status {
                    if status.starts_with('2') {
                        ok += n;
                    } else {
                        failed += n;
                    }
                }
                p99 = p99.max(bucket.p99_ms);
            }
            let _ = write!(md, " {ok} | {failed} | {p99:.1} |");
        }
        md += "\n";
    }
    md += "\n(p99 ms per second: the highest of its ten 100 ms buckets' p99. `drill.json` has every bucket.)\n";
    md
}
