//! The HTTP edges: how credentials may travel, and what hostile or clumsy requests get back.
//! The rule throughout: a client's mistake is a 4xx with a JSON body, never a 5xx.

use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn the_authorization_scheme_is_case_insensitive_and_jwt_is_accepted() {
    let app = spawn_app().await;
    for backend in token_backends() {
        let (_, credential) = app.logged_in(backend).await;
        for scheme in ["Bearer", "bearer", "BEARER", "JWT", "jwt"] {
            let response = app
                .client
                .get(app.url(&format!("/{backend}/me")))
                .header(
                    header::AUTHORIZATION,
                    format!("{scheme} {}", credential.value()),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{backend} with {scheme}");
        }
        let basic = app
            .client
            .get(app.url(&format!("/{backend}/me")))
            .basic_auth("user", Some("pass"))
            .send()
            .await
            .unwrap();
        assert_error(basic, StatusCode::UNAUTHORIZED, "missing_credentials").await;
    }
}

#[tokio::test]
async fn a_token_in_the_query_string_is_ignored_by_default() {
    let app = spawn_app().await;
    for backend in token_backends() {
        let (_, credential) = app.logged_in(backend).await;
        let response = app
            .get(&format!("/{backend}/me?token={}", credential.value()))
            .await;
        assert_error(response, StatusCode::UNAUTHORIZED, "missing_credentials").await;
    }
}

#[tokio::test]
async fn a_token_in_the_query_string_works_only_behind_the_flag() {
    let app = spawn_app_with(|s| s.allow_query_token = true).await;
    for backend in token_backends() {
        let (user, credential) = app.logged_in(backend).await;
        let response = app
            .get(&format!("/{backend}/me?token={}", credential.value()))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["username"], user.username);
    }
    // The session backend never reads tokens from URLs, flag or not.
    let (_, sid) = app.logged_in(Backend::Session).await;
    let response = app.get(&format!("/session/me?token={}", sid.value())).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "missing_credentials").await;
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let app = spawn_app().await;
    let huge = json!({ "username": "x".repeat(70 * 1024), "password": PASSWORD });
    for path in ["/users", "/session/login", "/redis/login", "/jwt/login"] {
        let response = app.post_json(path, &huge).await;
        assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    }
}

#[tokio::test]
async fn malformed_login_bodies_are_400_and_oversize_fields_are_plain_failed_logins() {
    let app = spawn_app().await;
    for backend in Backend::ALL {
        let response = app
            .client
            .post(app.url(&format!("/{backend}/login")))
            .header("content-type", "application/json")
            .body("{\"username\": ")
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, "malformed_json").await;
        let response = app
            .login_response(backend, &"u".repeat(10_000), PASSWORD)
            .await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
}

#[tokio::test]
async fn a_huge_header_is_a_4xx_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/jwt/me"))
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", "a".repeat(100 * 1024)),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    assert_eq!(app.get("/hello").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn garbage_credentials_never_cause_a_5xx() {
    let app = spawn_app().await;
    let junk = [
        "",
        " ",
        "Bearer",
        "Bearer ",
        "Bearer  ",
        "Bearer a b",
        "Bearer ....",
        "Bearer ===",
        "Bearer \u{7f}",
        "JWT",
        "Negotiate abc",
    ];
    for backend in token_backends() {
        for value in junk {
            let Ok(value) = header::HeaderValue::from_str(value) else {
                continue;
            };
            let response = app
                .client
                .get(app.url(&format!("/{backend}/me")))
                .header(header::AUTHORIZATION, value)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{backend}");
        }
        // Non-UTF-8 bytes in the header.
        let response = app
            .client
            .get(app.url(&format!("/{backend}/me")))
            .header(
                header::AUTHORIZATION,
                header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    for cookie in [
        "sid=",
        "sid",
        "sid=\"\"",
        "sid=../../etc",
        "=; ;;",
        "sid=AAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let response = app
            .client
            .get(app.url("/session/me"))
            .header(header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{cookie}");
    }
}

#[tokio::test]
async fn unknown_routes_are_json_404_and_wrong_methods_json_405() {
    let app = spawn_app().await;
    assert_error(
        app.get("/nowhere").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        app.get("/session/nowhere").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let response = app.get("/redis/login").await;
    assert_eq!(response.headers()[header::ALLOW], "POST");
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let response = app.client.post(app.url("/jwt/me")).send().await.unwrap();
    assert_eq!(response.headers()[header::ALLOW], "GET");
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn hello_is_unauthenticated_and_shaped_like_me() {
    let app = spawn_app().await;
    let response = app.get("/hello").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "user_id": 0, "username": "anonymous", "backend": "none" })
    );
}

#[tokio::test]
async fn health_and_readiness_are_200_when_everything_is_up() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"], json!({ "redis": "ok", "database": "ok" }));
}

#[tokio::test]
async fn the_cookie_is_secure_when_configured() {
    let app = spawn_app_with(|s| s.cookie_secure = true).await;
    let user = app.register().await;
    let response = app
        .login_response(Backend::Session, &user.username, &user.password)
        .await;
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn redis_tokens_live_under_the_configured_prefix_with_a_ttl() {
    let app = spawn_app().await;
    let (user, credential) = app.logged_in(Backend::Redis).await;
    let client = redis::Client::open(app.settings.redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // The key is the token's SHA-256, never the token (see at_rest.rs).
    let key = crate::at_rest::token_key(&app, credential.value());
    let value: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let value = value.expect("the token's key exists");
    let (id, rest) = value.split_once(':').unwrap();
    let (family, name) = rest.split_once(':').unwrap();
    assert_eq!(id, user.user_id.to_string());
    assert_eq!(name, user.username);
    assert_eq!(family.len(), 32, "the token's family id: {value}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let max = app.settings.access_ttl.as_secs() as i64;
    assert!(
        ttl > 0 && ttl <= max,
        "TTL {ttl} should be within (0, {max}]"
    );

    app.logout(Backend::Redis, &credential).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "logout is a DEL");
}

#[tokio::test]
async fn every_json_body_ends_with_a_newline_so_curl_output_does_not_run_together() {
    let app = spawn_app().await;
    let (_, credential) = app.logged_in(Backend::Jwt).await;
    let responses = [
        app.get("/hello").await,
        app.get("/no-such-route").await,
        app.get("/readyz").await,
        app.me(Backend::Jwt, &credential).await,
        app.post_json("/users", &json!({ "username": "" })).await,
    ];
    for response in responses {
        let status = response.status();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json",
            "{status}"
        );
        let body = response.text().await.unwrap();
        assert!(body.ends_with("}\n"), "{status}: {body:?}");
        assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
    }
}

#[tokio::test]
async fn every_answer_names_the_instance_that_served_it() {
    let named = spawn_app_with(|s| s.instance_id = Some("web-1".to_owned())).await;
    for path in ["/hello", "/no-such-route", "/session/me"] {
        let response = named.get(path).await;
        assert_eq!(
            response.headers()["x-authlab-instance"],
            "web-1",
            "{path}: {}",
            response.status()
        );
    }
    // Without --instance-id every instance still has a name of its own (random, 8 hex digits).
    let (first, second) = (spawn_app().await, spawn_app().await);
    let name = |response: &reqwest::Response| {
        response.headers()["x-authlab-instance"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let a = name(&first.get("/hello").await);
    let b = name(&second.get("/hello").await);
    assert_eq!(a.len(), 8, "{a}");
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    assert_ne!(a, b);
    assert_eq!(name(&first.get("/healthz").await), a);
}
