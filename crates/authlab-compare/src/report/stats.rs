//! Medians and ratios: how rounds become the figures the report shows.

use super::model::Report;

/// The median (the mean of the middle two for an even count; 0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The `p`th percentile (nearest rank) of `sorted` (ascending); `None` for no values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// What `--metrics on` costs a route: its requests/s beside the same route on the instance with
/// metrics off, round by round (each pair ran back to back, on the same machine state).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsCost {
    /// The metrics-on row.
    pub route: String,
    /// Median over rounds of `1 - on / off` (0.012: metrics on served 1.2% fewer requests/s).
    pub median: f64,
    /// The smallest per-round cost.
    pub min: f64,
    /// The largest per-round cost.
    pub max: f64,
}

/// The metrics cost of every route measured both ways (in-process runs only).
pub fn metrics_costs(report: &Report) -> Vec<MetricsCost> {
    use crate::setup::{JWT_METRICS_OFF, JWT_OFF, SESSION, SESSION_METRICS_OFF};
    let row = |name: &str| report.routes.iter().find(|r| r.name == name);
    [(SESSION, SESSION_METRICS_OFF), (JWT_OFF, JWT_METRICS_OFF)]
        .into_iter()
        .filter_map(|(on, off)| {
            let (on, off) = (row(on)?, row(off)?);
            let costs: Vec<f64> = on
                .rounds
                .iter()
                .zip(&off.rounds)
                .filter(|(_, off)| off.requests_per_sec > 0.0)
                .map(|(on, off)| 1.0 - on.requests_per_sec / off.requests_per_sec)
                .collect();
            if costs.is_empty() {
                return None;
            }
            Some(MetricsCost {
                route: on.name.clone(),
                median: median(&costs),
                min: costs.iter().copied().fold(f64::INFINITY, f64::min),
                max: costs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            })
        })
        .collect()
}

/// One line per route: `/jwt/me (denylist off): 1.2% [-0.5% to 3.0%]`.
pub fn metrics_cost_lines(report: &Report) -> Vec<String> {
    metrics_costs(report)
        .iter()
        .map(|c| {
            format!(
                "{}: {:.1}% [{:.1}% to {:.1}%]",
                c.route,
                c.median * 100.0,
                c.min * 100.0,
                c.max * 100.0
            )
        })
        .collect()
}

impl Report {
    /// Fills in the ratios to `/hello` and whether each target is met.
    ///
    /// `/hello` runs first and last in every round; a round's baseline is the mean of its two
    /// `/hello` runs, and the run's one baseline is the median of those over the rounds. Every
    /// reported ratio is the route's requests/s (its median over the rounds) over that one
    /// baseline, so a route with more requests/s always has the higher ratio. The spread over
    /// rounds divides each round by its own baseline: a machine that speeds up or slows down
    /// during the run (frequency, a busy neighbour) widens it as little as it can.
    pub fn finish(&mut self) {
        let rounds = self
            .routes
            .iter()
            .map(|r| r.rounds.len())
            .min()
            .unwrap_or(0);
        let baselines: Vec<f64> = (0..rounds)
            .map(|round| {
                let hellos: Vec<f64> = self
                    .routes
                    .iter()
                    .filter(|r| r.path == "/hello")
                    .map(|r| r.rounds[round].requests_per_sec)
                    .collect();
                hellos.iter().sum::<f64>() / hellos.len().max(1) as f64
            })
            .collect();
        self.baseline_requests_per_sec = Some(median(&baselines)).filter(|b| *b > 0.0);
        for route in &mut self.routes {
            route.ratio_per_round = baselines
                .iter()
                .zip(&route.rounds)
                .filter(|(base, _)| **base > 0.0)
                .map(|(base, round)| round.requests_per_sec / base)
                .collect();
            route.ratio_to_hello = self
                .baseline_requests_per_sec
                .filter(|_| !route.ratio_per_round.is_empty())
                .map(|baseline| route.requests_per_sec / baseline);
            route.target_met = route
                .target_ratio
                .zip(route.ratio_to_hello)
                .map(|(target, ratio)| ratio >= target && route.errors == 0);
        }
    }
}
