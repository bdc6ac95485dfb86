//! What happens when Redis goes away. Each test runs a private `redis-server` it can kill, pause
//! and restart, never the machine's shared one.

use std::process::Command;
use std::time::Duration;

use reqwest::{StatusCode, header};
use serde_json::Value;

use crate::helpers::*;

const RECOVERY: Duration = Duration::from_secs(10);

#[tokio::test]
async fn when_redis_dies_redis_routes_answer_503_the_others_keep_working_and_all_recover() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| s.redis.url = url).await;
    let user = app.register().await;
    let sid = app.login(Backend::Session, &user).await;
    let opaque = app.login(Backend::Redis, &user).await;
    let jwt = app.login(Backend::Jwt, &user).await;

    redis.stop();

    let response = app.me(Backend::Redis, &opaque).await;
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "backend_unavailable",
    )
    .await;
    // The JWT is genuine, but with the denylist on it cannot be judged without Redis.
    assert_error(
        app.me(Backend::Jwt, &jwt).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "backend_unavailable",
    )
    .await;
    let login = app
        .login_response(Backend::Redis, &user.username, &user.password)
        .await;
    assert_error(
        login,
        StatusCode::SERVICE_UNAVAILABLE,
        "backend_unavailable",
    )
    .await;
    // Sessions live in process memory and do not care.
    assert_eq!(
        app.me(Backend::Session, &sid).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.get("/hello").await.status(), StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["redis"], "unavailable");
    assert_eq!(body["checks"]["database"], "ok");
    // The load balancer's check keeps this instance in the pool: it can still serve sessions.
    let live = app.get("/livez").await;
    assert_eq!(live.status(), StatusCode::OK);
    let body: Value = live.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["redis"], "unavailable");
    assert_eq!(body["backends"]["session"], "ok");
    assert_eq!(body["backends"]["redis"], "unavailable");
    assert_eq!(body["backends"]["jwt"], "unavailable");

    redis.restart();

    assert!(
        eventually(RECOVERY, || async {
            app.get("/readyz").await.status() == StatusCode::OK
        })
        .await,
        "readiness recovers by itself"
    );
    // This Redis keeps nothing on disk: the old opaque token died with it, a new login works.
    assert_error(
        app.me(Backend::Redis, &opaque).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let fresh = app.login(Backend::Redis, &user).await;
    assert_eq!(
        app.me(Backend::Redis, &fresh).await.status(),
        StatusCode::OK
    );
    // The JWT was issued before Redis lost its data (the denylist with it): it is refused, so
    // that no logged-out JWT can come back (see at_rest.rs). A new login works at once.
    assert_error(
        app.me(Backend::Jwt, &jwt).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    let fresh = app.login(Backend::Jwt, &user).await;
    assert_eq!(app.me(Backend::Jwt, &fresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_server_starts_while_redis_is_down_and_connects_when_it_comes_up() {
    let mut redis = PrivateRedis::not_started();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis.url = url;
        // The fully stateless JWT configuration: no denylist, refresh tokens that are JWTs too.
        s.jwt_denylist = authlab::config::DenylistMode::Off;
        s.jwt_refresh = authlab::config::RefreshKind::Stateless;
    })
    .await;
    let user = app.register().await;

    let login = app
        .login_response(Backend::Redis, &user.username, &user.password)
        .await;
    assert_error(
        login,
        StatusCode::SERVICE_UNAVAILABLE,
        "backend_unavailable",
    )
    .await;
    // Session and fully stateless JWT need no Redis at all.
    let sid = app.login(Backend::Session, &user).await;
    assert_eq!(
        app.me(Backend::Session, &sid).await.status(),
        StatusCode::OK
    );
    let jwt = app.login(Backend::Jwt, &user).await;
    assert_eq!(app.me(Backend::Jwt, &jwt).await.status(), StatusCode::OK);
    assert_eq!(
        app.logout(Backend::Jwt, &jwt).await.status(),
        StatusCode::NO_CONTENT
    );

    redis.restart();

    assert!(
        eventually(RECOVERY, || async {
            app.login_response(Backend::Redis, &user.username, &user.password)
                .await
                .status()
                == StatusCode::OK
        })
        .await,
        "the redis backend connects once Redis is up"
    );
}

#[tokio::test]
async fn a_redis_that_hangs_gets_a_503_after_the_timeout_not_a_hung_request() {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis.url = url;
        s.redis.timeout = Duration::from_millis(300);
    })
    .await;
    let (_, opaque) = app.logged_in(Backend::Redis).await;
    let pid = redis.pid().expect("running");

    // SIGSTOP: the socket stays open but nothing answers, like an overloaded or partitioned Redis.
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let response = app.me(Backend::Redis, &opaque).await; // the client itself gives up after 10 s
    let outcome = (response.status(), response.json::<Value>().await.unwrap());
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );

    assert_eq!(outcome.0, StatusCode::SERVICE_UNAVAILABLE, "{}", outcome.1);
    assert_eq!(outcome.1["error"], "backend_unavailable");
    assert!(
        eventually(RECOVERY, || async {
            app.me(Backend::Redis, &opaque).await.status() == StatusCode::OK
        })
        .await,
        "the backend recovers once Redis answers again"
    );
}

#[tokio::test]
async fn livez_says_ok_with_every_backend_ok_and_keeps_stateless_jwt_ok_when_redis_is_down() {
    let healthy = spawn_app().await;
    let live = healthy.get("/livez").await;
    assert_eq!(live.status(), StatusCode::OK);
    let body: Value = live.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "status": "ok",
            "checks": {"redis": "ok", "database": "ok"},
            "backends": {"session": "ok", "redis": "ok", "jwt": "ok"},
        })
    );

    let redis = PrivateRedis::not_started();
    let url = redis.url();
    let stateless = spawn_app_with(|s| {
        s.redis.url = url;
        s.jwt_denylist = authlab::config::DenylistMode::Off;
        s.jwt_refresh = authlab::config::RefreshKind::Stateless;
    })
    .await;
    let live = stateless.get("/livez").await;
    assert_eq!(live.status(), StatusCode::OK);
    let body: Value = live.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["backends"]["session"], "ok");
    assert_eq!(body["backends"]["redis"], "unavailable");
    assert_eq!(body["backends"]["jwt"], "ok");
    assert_eq!(
        stateless.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}
