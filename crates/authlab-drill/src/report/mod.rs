//! What a drill found: the data model written to `drill.json`, its analysis (buckets, recovery,
//! users affected), and its renderings (`drill.md`, `timeline.svg`, the summary on screen).

pub mod markdown;
pub mod svg;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::load::{Backend, Sample, Tallies};
use crate::scenario::{Fault, Scenario};
use crate::topology::Topology;

/// Width of a timeline bucket, ms.
pub const BUCKET_MS: u32 = 100;
/// The success share that counts as recovered.
pub const RECOVERED_SHARE: f64 = 0.9;
/// The window over which recovery is judged: every window this long after the recovery point
/// must reach [`RECOVERED_SHARE`] (5 buckets of 100 ms).
pub const RECOVERY_WINDOW_BUCKETS: usize = 5;

/// `drill.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// What ran: scenario, topology, instances, load (its fields appear at the top level of
    /// `drill.json`).
    #[serde(flatten)]
    pub run: RunInfo,
    /// The fault, if any.
    pub fault: Option<Fault>,
    /// Per backend.
    pub backends: Vec<BackendReport>,
    /// Requests that could not be sent (every user of the backend busy).
    pub skipped: u64,
    /// The timeline, per backend, in 100 ms buckets.
    pub buckets: Vec<Bucket>,
}

/// One backend's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    /// Which backend.
    pub backend: Backend,
    /// Requests answered or failed.
    pub requests: u64,
    /// By status (`200`, `204`, `401`, `503`, ...; `none` for no answer).
    pub by_status: BTreeMap<String, u64>,
    /// Share of 2xx answers.
    pub success_share: f64,
    /// 99th percentile latency over the run, ms.
    pub p99_ms: f64,
    /// The slowest request, ms, and when it was scheduled (ms after the start).
    pub slowest_ms: f64,
    /// When the slowest request was scheduled, ms after the start.
    pub slowest_at_ms: u32,
    /// From the fault until every 500 ms window reaches 90 % success again, ms (0: never
    /// below; `None`: not recovered by the end).
    pub recovered_after_ms: Option<u32>,
    /// Users who saw at least one non-2xx answer on this backend.
    pub users_affected: usize,
    /// The same, as a share of all users.
    pub users_affected_share: f64,
    /// Credentials that stopped working without a logout (sessions of a dead instance, tokens
    /// a Redis forgot).
    pub credentials_lost: u64,
    /// Logouts answered 204, asked again at the end.
    pub revocations_probed: u64,
    /// Of those, how many were accepted again (must be 0).
    pub revocations_undone: u64,
    /// Which instances answered requests of this backend.
    pub instances_answered: Vec<String>,
}

/// One 100 ms bucket of one backend.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Its start, ms after the load started.
    pub t_ms: u32,
    /// Which backend.
    pub backend: Backend,
    /// Requests scheduled in it, by status.
    pub by_status: BTreeMap<String, u64>,
    /// Their 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// The status as the report names it.
pub fn status_key(status: u16) -> String {
    if status == 0 {
        "none".to_owned()
    } else {
        status.to_string()
    }
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// The `q` quantile (0-1) of `values` (sorted in place), or 0.
fn quantile(values: &mut [u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// What the run found, ready to build a report from.
pub struct Findings<'a> {
    /// Every request.
    pub samples: &'a [Sample],
    /// Losses and skips.
    pub tallies: &'a Tallies,
    /// `(probed, undone)` per backend.
    pub reprobe: [(u64, u64); 3],
    /// The fault.
    pub fault: Option<Fault>,
}

/// The fixed part of a report: what ran.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Which scenario.
    pub scenario: Scenario,
    /// On which Redis.
    pub topology: Topology,
    /// The instances' Redis URL.
    pub redis_url: String,
    /// The instance ids.
    pub instances: Vec<String>,
    /// The path HAProxy checked.
    pub balancer_check: String,
    /// Requests per second.
    pub rate: u32,
    /// Users.
    pub users: usize,
    /// Load duration, ms.
    pub duration_ms: u32,
}

/// Builds the report from what the run found.
pub fn build(info: RunInfo, findings: Findings<'_>) -> DrillReport {
    let fault_ms = findings.fault.as_ref().map(|f| f.at_ms);
    let last_bucket = (info.duration_ms / BUCKET_MS) as usize + 1;
    let mut buckets = Vec::new();
    let mut backends = Vec::new();
    for backend in Backend::ALL {
        let mine: Vec<&Sample> = findings
            .samples
            .iter()
            .filter(|s| s.backend == backend)
            .collect();
        let mut by_status = BTreeMap::new();
        let mut per_bucket: Vec<(BTreeMap<String, u64>, Vec<u64>, u64)> =
            vec![(BTreeMap::new(), Vec::new(), 0); last_bucket + 1];
        let mut affected = BTreeSet::new();
        let mut answered = BTreeSet::new();
        let mut ok = 0u64;
        for s in &mine {
            *by_status.entry(status_key(s.status)).or_insert(0) += 1;
            let b = ((s.at_ms / BUCKET_MS) as usize).min(last_bucket);
            *per_bucket[b].0.entry(status_key(s.status)).or_insert(0) += 1;
            per_bucket[b].1.push(s.latency_us);
            if is_success(s.status) {
                ok += 1;
                per_bucket[b].2 += 1;
            } else {
                affected.insert(s.user);
            }
            if let Some(i) = s.instance {
                answered.insert(i);
            }
        }
        let mut latencies: Vec<u64> = mine.iter().map(|s| s.latency_us).collect();
        let slowest = mine.iter().max_by_key(|s| s.latency_us);
        let requests = mine.len() as u64;
        let totals: Vec<(u64, u64)> = per_bucket
            .iter()
            .map(|(statuses, _, ok)| (statuses.values().sum(), *ok))
            .collect();
        let recovered_after_ms = fault_ms.and_then(|at| recovery(&totals, at));
        for (i, (statuses, mut lat, _)) in per_bucket.into_iter().enumerate() {
            if statuses.is_empty() {
                continue;
            }
            buckets.push(Bucket {
                t_ms: i as u32 * BUCKET_MS,
                backend,
                by_status: statuses,
                p99_ms: quantile(&mut lat, 0.99) as f64 / 1000.0,
            });
        }
        let (probed, undone) = findings.reprobe[backend.index()];
        backends.push(BackendReport {
            backend,
            requests,
            by_status,
            success_share: if requests == 0 {
                0.0
            } else {
                ok as f64 / requests as f64
            },
            p99_ms: quantile(&mut latencies, 0.99) as f64 / 1000.0,
            slowest_ms: slowest.map_or(0.0, |s| s.latency_us as f64 / 1000.0),
            slowest_at_ms: slowest.map_or(0, |s| s.at_ms),
            recovered_after_ms,
            users_affected: affected.len(),
            users_affected_share: if info.users == 0 {
                0.0
            } else {
                affected.len() as f64 / info.users as f64
            },
            credentials_lost: findings.tallies.lost[backend.index()],
            revocations_probed: probed,
            revocations_undone: undone,
            instances_answered: answered
                .into_iter()
                .filter_map(|i| info.instances.get(usize::from(i)).cloned())
                .collect(),
        });
    }
    buckets.sort_by_key(|b| (b.t_ms, b.backend.index()));
    DrillReport {
        run: info,
        fault: findings.fault,
        backends,
        skipped: findings.tallies.skipped,
        buckets,
    }
}

/// From the fault (`fault_ms`) until the first bucket from which every window of
/// [`RECOVERY_WINDOW_BUCKETS`] buckets reaches [`RECOVERED_SHARE`]: ms, 0 if none fell below,
/// `None` if the last one is still below.
/// `totals`: (requests, successes) per bucket.
pub fn recovery(totals: &[(u64, u64)], fault_ms: u32) -> Option<u32> {
    let first = (fault_ms / BUCKET_MS) as usize;
    let w = RECOVERY_WINDOW_BUCKETS;
    if totals.len() < first + w {
        return Some(0);
    }
    let below = |start: usize| {
        let (n, ok) = totals[start..start + w]
            .iter()
            .fold((0, 0), |(n, ok), (a, b)| (n + a, ok + b));
        n > 0 && (ok as f64) < RECOVERED_SHARE * n as f64
    };
    // Ignore the last window if the run's tail is cut short (requests still in their bucket).
    let last = totals.len() - w;
    let worst = (first..=last).rev().find(|&start| below(start));
    match worst {
        None => Some(0),
        Some(start) if start == last => None,
        Some(start) => Some(((start + 1) as u32 * BUCKET_MS).saturating_sub(fault_ms)),
    }
}

impl DrillReport {
    /// Acknowledged revocations accepted again, over all backends.
    pub fn undone(&self) -> u64 {
        self.backends.iter().map(|b| b.revocations_undone).sum()
    }

    /// The backend's figures.
    pub fn backend(&self, backend: Backend) -> Option<&BackendReport> {
        self.backends.iter().find(|b| b.backend == backend)
    }
}

/// The short summary printed at the end (fits 80 columns).
pub fn summary(report: &DrillReport) -> String {
    let mut out = format!(
        "drill {} on {} Redis, {} instances behind HAProxy, {} req/s for {:.0} s, {} users\n",
        report.run.scenario.name(),
        match report.run.topology {
            Topology::Single => "one",
            Topology::Sentinel => "a Sentinel",
            Topology::Cluster => "a Cluster",
        },
        report.run.instances.len(),
        report.run.rate,
        f64::from(report.run.duration_ms) / 1000.0,
        report.run.users
    );
    if let Some(fault) = &report.fault {
        out += &format!(
            "fault at {:.1} s: {}\n",
            f64::from(fault.at_ms) / 1000.0,
            fault.what
        );
        out += &match fault.failover_ms {
            Some(ms) => format!(
                "  failover ({}): {:.2} s\n",
                fault.failover_means,
                f64::from(ms) / 1000.0
            ),
            None => format!("  failover ({}): not seen\n", fault.failover_means),
        };
    }
    out += "backend   ok %    p99 ms  slowest ms  >=90% after  users hit  lost  undone\n";
    for b in &report.backends {
        out += &format!(
            "{:<8} {:>5.1} {:>9.1} {:>11.1} {:>12} {:>10} {:>5} {:>7}\n",
            b.backend.name(),
            b.success_share * 100.0,
            b.p99_ms,
            b.slowest_ms,
            match (report.fault.is_some(), b.recovered_after_ms) {
                (false, _) => "-".to_owned(),
                (true, Some(ms)) => format!("{:.1} s", f64::from(ms) / 1000.0),
                (true, None) => "never".to_owned(),
            },
            format!("{:.0} %", b.users_affected_share * 100.0),
            b.credentials_lost,
            format!("{}/{}", b.revocations_undone, b.revocations_probed),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_is_the_end_of_the_last_window_below_ninety_percent() {
        // 30 buckets of 10 requests; the fault at 1.0 s; buckets 10-14 fail entirely.
        let mut totals = vec![(10, 10); 30];
        for t in &mut totals[10..15] {
            *t = (10, 0);
        }
        // The last failing 5-bucket window starts at bucket 14 (one failing bucket of 5 = 80 %);
        // every window from bucket 15 on reaches 90 %: recovered 0.5 s after the fault.
        assert_eq!(recovery(&totals, 1000), Some(500));
        assert_eq!(recovery(&vec![(10, 10); 30], 1000), Some(0));
        let mut never = vec![(10, 10); 30];
        for t in &mut never[20..] {
            *t = (10, 0);
        }
        assert_eq!(recovery(&never, 1000), None);
    }

    #[test]
    fn quantiles_take_the_rank_above() {
        let mut v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&mut v, 0.99), 99);
        assert_eq!(quantile(&mut [], 0.99), 0);
    }
}
