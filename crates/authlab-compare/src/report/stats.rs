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

impl Report {
    /// Fills in the ratios to `/hello` and whether each target is met.
    ///
    /// `/hello` runs first and last in every round; a round's baseline is the mean of its two
    /// `/hello` runs, each route's ratio in a round divides by that round's baseline, and the
    /// reported ratio is the median over the rounds. A machine that speeds up or slows down
    /// during the run (frequency, a busy neighbour) so shifts the ratios as little as it can.
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
            route.ratio_to_hello =
                (!route.ratio_per_round.is_empty()).then(|| median(&route.ratio_per_round));
            route.target_met = route
                .target_ratio
                .zip(route.ratio_to_hello)
                .map(|(target, ratio)| ratio >= target && route.errors == 0);
        }
    }
}
