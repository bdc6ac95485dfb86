//! `/metrics`: the Prometheus text format, counters that move by exactly what happened, and the
//! `--metrics off` switch.

use reqwest::{StatusCode, header};
use serde_json::json;

use crate::helpers::*;
use authlab::config::Switch;

/// The value of the series `name{labels}` (labels as Prometheus writes them), 0 if absent.
fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

async fn scrape(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
    );
    response.text().await.unwrap()
}

fn decisions(backend: Backend, outcome: &str) -> String {
    format!(r#"authlab_auth_decisions_total{{backend="{backend}",outcome="{outcome}"}}"#)
}

#[tokio::test]
async fn login_me_failed_me_and_logout_move_the_counters_by_exactly_what_happened() {
    for backend in Backend::ALL {
        let app = spawn_app().await;
        let user = app.register().await;
        let before = scrape(&app).await;

        let credential = app.login(backend, &user).await;
        assert_eq!(app.me(backend, &credential).await.status(), StatusCode::OK);
        let missing = app.get(&format!("/{backend}/me")).await;
        assert_error(missing, StatusCode::UNAUTHORIZED, "missing_credentials").await;
        let after_login = scrape(&app).await;
        assert_eq!(
            app.logout(backend, &credential).await.status(),
            StatusCode::NO_CONTENT
        );
        let after_logout = app.me(backend, &credential).await;
        let code = if backend == Backend::Jwt {
            "token_revoked"
        } else {
            "invalid_token"
        };
        assert_error(after_logout, StatusCode::UNAUTHORIZED, code).await;
        let after = scrape(&app).await;

        let moved = |series: &str| value(&after, series) - value(&before, series);
        let login_ok = format!(r#"authlab_logins_total{{backend="{backend}",outcome="ok"}}"#);
        assert_eq!(moved(&login_ok), 1.0, "{backend}");
        assert_eq!(moved(&decisions(backend, "ok")), 1.0, "{backend}");
        assert_eq!(moved(&decisions(backend, "missing")), 1.0, "{backend}");
        let outcome = if backend == Backend::Jwt {
            "revoked"
        } else {
            "invalid"
        };
        assert_eq!(moved(&decisions(backend, outcome)), 1.0, "{backend}");
        // Three credentials were presented to the verifier, one was not.
        let count = format!(r#"authlab_verify_seconds_count{{backend="{backend}"}}"#);
        assert_eq!(moved(&count), 3.0, "{backend}\n{after}");
        // Histograms have buckets (not quantiles), up to +Inf.
        let inf = format!(r#"authlab_verify_seconds_bucket{{backend="{backend}",le="+Inf"}}"#);
        assert_eq!(value(&after, &inf), value(&after, &count), "{backend}");
        assert!(
            after.contains(&format!(
                r#"authlab_verify_seconds_bucket{{backend="{backend}",le="0.0001"}}"#
            )),
            "{after}"
        );
        assert!(!after.contains("quantile="), "{after}");
        // The other backends did not move.
        for other in Backend::ALL.into_iter().filter(|b| *b != backend) {
            assert_eq!(moved(&decisions(other, "ok")), 0.0, "{other}");
        }
        // Live sessions are read at each scrape.
        let live = "authlab_live_sessions";
        if backend == Backend::Session {
            assert_eq!(value(&after_login, live), 1.0);
            assert_eq!(value(&after, live), 0.0);
        } else {
            assert_eq!(value(&after, live), 0.0);
        }
    }
}

#[tokio::test]
async fn redis_round_trips_are_timed_and_counted() {
    let app = spawn_app().await;
    let (_, credential) = app.logged_in(Backend::Redis).await;
    let before = scrape(&app).await;
    assert_eq!(
        app.me(Backend::Redis, &credential).await.status(),
        StatusCode::OK
    );
    let after = scrape(&app).await;
    let series = r#"authlab_redis_command_seconds_count{command="query"}"#;
    // `/redis/me` is one GET.
    assert_eq!(
        value(&after, series) - value(&before, series),
        1.0,
        "{after}"
    );
    assert_eq!(
        value(&after, r#"authlab_redis_errors_total{command="query"}"#),
        0.0
    );
}

#[tokio::test]
async fn redis_errors_are_counted_when_redis_is_down() {
    let app = spawn_app_with(|s| s.redis.url = "redis://127.0.0.1:1".to_owned()).await;
    let me = app
        .client
        .get(app.url("/redis/me"))
        .bearer_auth("0b6a9f0e-5d2c-4d5e-9f3a-2f1e7c1b8a90")
        .send()
        .await
        .unwrap();
    assert_error(me, StatusCode::SERVICE_UNAVAILABLE, "backend_unavailable").await;
    let after = scrape(&app).await;
    assert_eq!(
        value(&after, r#"authlab_redis_errors_total{command="query"}"#),
        1.0,
        "{after}"
    );
    assert_eq!(
        value(&after, &decisions(Backend::Redis, "unavailable")),
        1.0,
        "{after}"
    );
}

#[tokio::test]
async fn a_throttled_login_is_counted_as_throttled_and_the_wrong_password_as_an_invalid_login() {
    let app = spawn_app_with(|s| s.login_max_failures = 1).await;
    let user = app.register().await;
    let wrong = app
        .login_response(Backend::Jwt, &user.username, "not the password")
        .await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let throttled = app
        .login_response(Backend::Jwt, &user.username, PASSWORD)
        .await;
    assert_error(
        throttled,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
    )
    .await;
    let after = scrape(&app).await;
    assert_eq!(
        value(&after, &decisions(Backend::Jwt, "throttled")),
        1.0,
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            r#"authlab_logins_total{backend="jwt",outcome="invalid"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn a_reused_refresh_token_is_counted_as_reused() {
    let app = spawn_app_with(|s| s.refresh_grace = std::time::Duration::ZERO).await;
    let user = app.register().await;
    let login = app
        .login_response(Backend::Redis, &user.username, PASSWORD)
        .await;
    let body: serde_json::Value = login.json().await.unwrap();
    let refresh = json!({ "refresh_token": body["refresh_token"] });
    assert_eq!(
        app.post_json("/redis/refresh", &refresh).await.status(),
        StatusCode::OK
    );
    let replay = app.post_json("/redis/refresh", &refresh).await;
    assert_error(replay, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    let after = scrape(&app).await;
    assert_eq!(
        value(&after, &decisions(Backend::Redis, "ok")),
        1.0,
        "{after}"
    );
    assert_eq!(
        value(&after, &decisions(Backend::Redis, "reused")),
        1.0,
        "{after}"
    );
    assert_eq!(
        value(&after, &decisions(Backend::Jwt, "reused")),
        0.0,
        "{after}"
    );
}

#[tokio::test]
async fn with_metrics_off_nothing_is_counted_and_metrics_answers_404() {
    let app = spawn_app_with(|s| s.metrics = Switch::Off).await;
    let (_, credential) = app.logged_in(Backend::Session).await;
    assert_eq!(
        app.me(Backend::Session, &credential).await.status(),
        StatusCode::OK
    );
    assert_error(
        app.get("/metrics").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_cross_site_request_refused_by_the_csrf_defence_is_counted_as_csrf() {
    let app = spawn_app().await;
    let (_, credential) = app.logged_in(Backend::Session).await;
    let refused = app
        .authed(reqwest::Method::POST, "/session/logout", &credential)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_error(refused, StatusCode::FORBIDDEN, "csrf_rejected").await;
    let after = scrape(&app).await;
    assert_eq!(
        value(&after, &decisions(Backend::Session, "csrf")),
        1.0,
        "{after}"
    );
    // Still logged in: the refusal changed nothing.
    assert_eq!(
        app.me(Backend::Session, &credential).await.status(),
        StatusCode::OK
    );
}
