//! What the metrics add to one authenticated request: the handles `Backend::authenticate` uses
//! (two clock reads, a histogram sample and a counter), with `--metrics on` and `off`.
//!
//! `cargo bench --bench metrics`. docs/observability.md sets the result beside the time one
//! `/jwt/me` request takes (docs/RESULTS.md), which is the <= 2% budget of issue #10.

use std::hint::black_box;

use authlab::metrics::{Metrics, Outcome};
use authlab_core::{AuthError, Identity};
use criterion::{Criterion, criterion_group, criterion_main};

fn per_request(c: &mut Criterion) {
    let identity: Result<Identity, AuthError> = Ok(Identity::new(1, "alice"));
    let refused: Result<Identity, AuthError> = Err(AuthError::Invalid);
    let mut group = c.benchmark_group("metrics_per_request");
    for (label, enabled) in [("on", true), ("off", false)] {
        let metrics = match Metrics::new(enabled) {
            Ok(metrics) => metrics,
            Err(err) => panic!("metrics: {err}"),
        };
        let jwt = metrics.backend(authlab::backend_kind::BackendKind::Jwt);
        group.bench_function(format!("verified_ok/{label}"), |b| {
            b.iter(|| {
                let started = jwt.start();
                jwt.verified(black_box(&identity), started);
            })
        });
        group.bench_function(format!("counter_handle/{label}"), |b| {
            b.iter(|| jwt.decided(black_box(Outcome::Ok)))
        });
        group.bench_function(format!("verified_invalid/{label}"), |b| {
            b.iter(|| {
                let started = jwt.start();
                jwt.verified(black_box(&refused), started);
            })
        });
    }
    // The alternative the handles avoid: a lookup by name and labels on every request, through
    // the global recorder (`counter!` hashes the key and finds the series each time).
    if let Ok(handle) = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        group.bench_function("counter_macro_lookup/on", |b| {
            b.iter(|| {
                metrics::counter!(
                    "authlab_auth_decisions_total",
                    "backend" => black_box("jwt"),
                    "outcome" => "ok"
                )
                .increment(1);
            })
        });
        drop(handle);
    }
    group.finish();
}

criterion_group!(benches, per_request);
criterion_main!(benches);
