//! Login throttling: failures counted per account name and per client address, in Redis, shared
//! by every instance; the same answer for known and unknown names; `X-Forwarded-For` believed
//! only from a trusted proxy; an in-process stand-in when Redis is down.

use std::time::Duration;

use reqwest::{Response, StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const WRONG: &str = "not the password at all";

/// A login from this test's client, optionally through a proxy that sets `X-Forwarded-For`.
async fn login_via(
    app: &TestApp,
    backend: Backend,
    username: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> Response {
    let mut request = app
        .client
        .post(app.url(&format!("/{backend}/login")))
        .json(&json!({ "username": username, "password": password }));
    if let Some(forwarded) = forwarded_for {
        request = request.header("X-Forwarded-For", forwarded);
    }
    request.send().await.expect("request sent")
}

/// Asserts a `429 too_many_attempts` with a `Retry-After` of 1 to `window` seconds; returns the
/// body.
async fn assert_throttled(response: Response, window: Duration) -> Value {
    let retry_after: u64 = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a 429 carries Retry-After in seconds");
    assert!(
        (1..=window.as_secs()).contains(&retry_after),
        "Retry-After {retry_after} is within the window of {window:?}"
    );
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await
}

fn unknown_name() -> String {
    format!("nobody-{}", Uuid::new_v4().simple())
}

#[tokio::test]
async fn ten_wrong_passwords_then_the_right_one_answers_429_with_retry_after() {
    let app = spawn_app().await;
    let user = app.register().await;
    let window = app.settings.login_window;
    for attempt in 1..=10 {
        let response = login_via(&app, Backend::Session, &user.username, WRONG, None).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt} is judged, not throttled"
        );
    }
    // The right password no longer helps, on any backend: the count is the name's, not the scope's.
    for backend in Backend::ALL {
        let response = login_via(&app, backend, &user.username, &user.password, None).await;
        assert_throttled(response, window).await;
    }
    // Another case does not make another name.
    let shouted = user.username.to_uppercase();
    assert_throttled(
        login_via(&app, Backend::Jwt, &shouted, &user.password, None).await,
        window,
    )
    .await;
}

#[tokio::test]
async fn a_known_and_an_unknown_name_hit_429_after_the_same_count_with_the_same_answer() {
    let app = spawn_app_with(|s| s.login_max_failures = 3).await;
    let known = app.register().await;
    let unknown = unknown_name();
    let mut answers = Vec::new();
    for name in [known.username.as_str(), unknown.as_str()] {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let response = login_via(&app, Backend::Redis, name, WRONG, None).await;
            failures.push(
                assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await,
            );
        }
        // The fourth attempt, with the known user's right password: refused before it is checked.
        let response = login_via(&app, Backend::Redis, name, &known.password, None).await;
        let throttled = assert_throttled(response, app.settings.login_window).await;
        answers.push((failures, throttled));
    }
    assert_eq!(
        answers[0], answers[1],
        "a known and an unknown name get the same answers"
    );
}

#[tokio::test]
async fn the_window_is_fixed_and_when_it_has_passed_logins_work_again() {
    let app = spawn_app_with(|s| {
        s.login_max_failures = 2;
        s.login_window = Duration::from_secs(1);
    })
    .await;
    let user = app.register().await;
    // A success in between does not reset the count: the window is fixed.
    login_via(&app, Backend::Session, &user.username, WRONG, None).await;
    let ok = login_via(&app, Backend::Session, &user.username, &user.password, None).await;
    assert_eq!(ok.status(), StatusCode::OK);
    login_via(&app, Backend::Session, &user.username, WRONG, None).await;
    let refused = login_via(&app, Backend::Session, &user.username, &user.password, None).await;
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    assert_throttled(refused, Duration::from_secs(1)).await;

    // Real time is the thing under test here: the counter's TTL in Redis.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = login_via(&app, Backend::Session, &user.username, &user.password, None).await;
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test]
async fn failures_from_one_address_block_every_name_from_it() {
    let app = spawn_app_with(|s| s.login_ip_max_failures = 5).await;
    let user = app.register().await;
    for _ in 0..5 {
        let response = login_via(&app, Backend::Jwt, &unknown_name(), WRONG, None).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // A name never tried before, with its right password, from the same address.
    let response = login_via(&app, Backend::Jwt, &user.username, &user.password, None).await;
    assert_throttled(response, app.settings.login_window).await;
}

#[tokio::test]
async fn two_instances_on_one_redis_share_the_count() {
    let first = spawn_app_with(|s| s.login_max_failures = 4).await;
    let (prefix, database) = (
        first.settings.redis_prefix.clone(),
        first.settings.database_url.clone(),
    );
    // The same Redis prefix, user store and JWT secret: two instances of one deployment.
    let second = spawn_app_with(|s| {
        s.login_max_failures = 4;
        s.redis_prefix = prefix;
        s.database_url = database;
    })
    .await;
    let user = first.register().await;
    for app in [&first, &second, &first, &second] {
        let response = login_via(app, Backend::Redis, &user.username, WRONG, None).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    for app in [&first, &second] {
        let response = login_via(app, Backend::Redis, &user.username, &user.password, None).await;
        assert_throttled(response, app.settings.login_window).await;
    }
}

#[tokio::test]
async fn a_random_x_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let app = spawn_app_with(|s| s.login_ip_max_failures = 3).await;
    for n in 0..3 {
        let spoofed = format!("198.51.100.{}", 10 + n);
        let response = login_via(
            &app,
            Backend::Session,
            &unknown_name(),
            WRONG,
            Some(&spoofed),
        )
        .await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // Yet another made-up address: still the same peer, 127.0.0.1, which has used its failures.
    let response = login_via(
        &app,
        Backend::Session,
        &unknown_name(),
        WRONG,
        Some("203.0.113.200"),
    )
    .await;
    assert_throttled(response, app.settings.login_window).await;
}

#[tokio::test]
async fn x_forwarded_for_from_a_trusted_proxy_names_the_client() {
    let app = spawn_app_with(|s| {
        s.login_ip_max_failures = 3;
        s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("a CIDR range")];
    })
    .await;
    let user = app.register().await;
    for _ in 0..3 {
        let response = login_via(
            &app,
            Backend::Session,
            &unknown_name(),
            WRONG,
            Some("203.0.113.7"),
        )
        .await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // 203.0.113.7 has used its failures, even with an entry it wrote itself in front.
    for forwarded in ["203.0.113.7", "192.0.2.55, 203.0.113.7"] {
        let response = login_via(
            &app,
            Backend::Session,
            &user.username,
            &user.password,
            Some(forwarded),
        )
        .await;
        assert_throttled(response, app.settings.login_window).await;
    }
    // Another client behind the same proxy is not affected.
    let response = login_via(
        &app,
        Backend::Session,
        &user.username,
        &user.password,
        Some("203.0.113.8"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_old_passwords_at_the_password_change_count_with_failed_logins() {
    let app = spawn_app_with(|s| s.login_max_failures = 3).await;
    let (user, credential) = app.logged_in(Backend::Session).await;
    let change = |old: &str| {
        app.authed(reqwest::Method::POST, "/users/me/password", &credential)
            .json(&json!({ "old_password": old, "new_password": "a brand new passphrase" }))
            .send()
    };
    for _ in 0..3 {
        let response = change(WRONG).await.expect("request sent");
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // The right old password is refused now, and so is a login with it.
    let response = change(&user.password).await.expect("request sent");
    assert_throttled(response, app.settings.login_window).await;
    let response = login_via(&app, Backend::Session, &user.username, &user.password, None).await;
    assert_throttled(response, app.settings.login_window).await;
}

#[tokio::test]
async fn registrations_from_one_address_are_limited() {
    let app = spawn_app_with(|s| s.register_ip_max = 3).await;
    for _ in 0..3 {
        app.register().await;
    }
    let response = app
        .post_json(
            "/users",
            &json!({ "username": unknown_name(), "password": PASSWORD }),
        )
        .await;
    assert_throttled(response, app.settings.login_window).await;
}

#[tokio::test]
async fn with_redis_down_an_in_process_limiter_still_throttles_and_session_login_works() {
    let redis = PrivateRedis::not_started();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis.url = url;
        s.login_max_failures = 3;
    })
    .await;
    let user = app.register().await;
    let other = app.register().await;
    // Sessions never needed Redis, and throttling does not change that.
    app.login(Backend::Session, &user).await;
    for _ in 0..3 {
        let response = login_via(&app, Backend::Session, &user.username, WRONG, None).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let response = login_via(&app, Backend::Session, &user.username, &user.password, None).await;
    assert_throttled(response, app.settings.login_window).await;
    // The check comes before the backend: a Redis-backed login is throttled too, not a 503.
    let response = login_via(&app, Backend::Redis, &user.username, &user.password, None).await;
    assert_throttled(response, app.settings.login_window).await;
    // Other names are unaffected.
    app.login(Backend::Session, &other).await;
}
