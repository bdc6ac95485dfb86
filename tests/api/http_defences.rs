//! The HTTP defences of issue #11, each against the real server: CSRF by Fetch Metadata and
//! `Origin`, the CORS allow-list, the security headers, ambiguous credentials, the session cookie
//! at login and under `--cookie-secure`, and who may call introspection.

use reqwest::{Method, RequestBuilder, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::*;

const TRUSTED: &str = "https://app.example";
const EVIL: &str = "https://evil.example";

/// A session logged in on `/session`, and its id.
async fn session(app: &TestApp) -> (TestUser, String) {
    let (user, credential) = app.logged_in(Backend::Session).await;
    (user, credential.value().to_owned())
}

fn with_sid(app: &TestApp, method: Method, path: &str, sid: &str) -> RequestBuilder {
    app.client
        .request(method, app.url(path))
        .header(header::COOKIE, format!("sid={sid}"))
}

async fn session_me(app: &TestApp, sid: &str) -> StatusCode {
    with_sid(app, Method::GET, "/session/me", sid)
        .send()
        .await
        .unwrap()
        .status()
}

/// The cross-site shapes a browser gives a forged request: Fetch Metadata from another site (or
/// a sibling subdomain), or only an `Origin` (a browser from before Fetch Metadata).
const CROSS_SITE: [&[(&str, &str)]; 4] = [
    &[("sec-fetch-site", "cross-site"), ("origin", EVIL)],
    &[("sec-fetch-site", "cross-site")],
    &[
        ("sec-fetch-site", "same-site"),
        ("origin", "https://sub.app.example"),
    ],
    &[("origin", EVIL)],
];

fn with_headers(mut request: RequestBuilder, headers: &[(&str, &str)]) -> RequestBuilder {
    for &(name, value) in headers {
        request = request.header(name, value);
    }
    request
}

#[tokio::test]
async fn cross_site_cookie_logout_rotate_and_logout_all_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (_, sid) = session(&app).await;
    for path in ["/session/logout", "/session/rotate", "/session/logout-all"] {
        for headers in CROSS_SITE {
            let response = with_headers(with_sid(&app, Method::POST, path, &sid), headers)
                .send()
                .await
                .unwrap();
            assert!(
                !response.headers().contains_key(header::SET_COOKIE),
                "{path} {headers:?}"
            );
            assert_error(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
        }
        // The form a page can send without a preflight: text/plain, as a simple request.
        let response = with_sid(&app, Method::POST, path, &sid)
            .header("sec-fetch-site", "cross-site")
            .header("origin", EVIL)
            .header(header::CONTENT_TYPE, "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
    }
    // The same session id, never rotated, logged out or revoked.
    assert_eq!(session_me(&app, &sid).await, StatusCode::OK);
}

#[tokio::test]
async fn a_cross_site_delete_of_a_session_is_refused() {
    let app = spawn_app().await;
    let (_, sid) = session(&app).await;
    let listed: Value = with_sid(&app, Method::GET, "/session/sessions", &sid)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = listed["sessions"][0]["id"].as_str().expect("one session");
    let response = with_sid(
        &app,
        Method::DELETE,
        &format!("/session/sessions/{id}"),
        &sid,
    )
    .header("sec-fetch-site", "cross-site")
    .send()
    .await
    .unwrap();
    assert_error(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
    assert_eq!(session_me(&app, &sid).await, StatusCode::OK);
}

#[tokio::test]
async fn same_origin_requests_with_the_cookie_pass() {
    let app = spawn_app().await;
    // Fetch Metadata says same-origin (or `none`: typed in, bookmarked).
    for site in ["same-origin", "none"] {
        let (_, sid) = session(&app).await;
        let response = with_sid(&app, Method::POST, "/session/rotate", &sid)
            .header("sec-fetch-site", site)
            .header("origin", EVIL) // Sec-Fetch-Site decides when present
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{site}");
        let sid = credential_from_login(Backend::Session, response).await;
        assert_eq!(session_me(&app, sid.value()).await, StatusCode::OK);
        let response = with_sid(&app, Method::POST, "/session/logout", sid.value())
            .header("sec-fetch-site", site)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{site}");
    }
    // No Fetch Metadata, and an Origin that is the server's own (scheme, host and port).
    let (_, sid) = session(&app).await;
    let response = with_sid(&app, Method::POST, "/session/logout", &sid)
        .header("origin", app.address.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(session_me(&app, &sid).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_origin_fallback_compares_scheme_and_port_too() {
    let app = spawn_app().await;
    let (_, sid) = session(&app).await;
    let https = app.address.replacen("http://", "https://", 1);
    let other_port = "http://127.0.0.1:1";
    for origin in [https.as_str(), other_port, "null"] {
        let response = with_sid(&app, Method::POST, "/session/logout", &sid)
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
    }
    assert_eq!(session_me(&app, &sid).await, StatusCode::OK);
}

#[tokio::test]
async fn a_request_with_neither_fetch_metadata_nor_origin_passes_as_curl_sends_it() {
    let app = spawn_app().await;
    let (_, sid) = session(&app).await;
    let response = with_sid(&app, Method::POST, "/session/logout", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_trusted_origin_passes_even_from_another_site() {
    let app = spawn_app_with(|s| s.cors_origins = vec![TRUSTED.to_owned()]).await;
    for headers in [
        &[("sec-fetch-site", "cross-site"), ("origin", TRUSTED)][..],
        &[("origin", TRUSTED)][..],
    ] {
        let (_, sid) = session(&app).await;
        let response = with_headers(
            with_sid(&app, Method::POST, "/session/rotate", &sid),
            headers,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{headers:?}");
        let rotated = credential_from_login(Backend::Session, response).await;
        assert_eq!(session_me(&app, &sid).await, StatusCode::UNAUTHORIZED);
        assert_eq!(session_me(&app, rotated.value()).await, StatusCode::OK);
    }
    // Trusting one origin trusts no other.
    let (_, sid) = session(&app).await;
    let response = with_headers(
        with_sid(&app, Method::POST, "/session/logout", &sid),
        &[("sec-fetch-site", "cross-site"), ("origin", EVIL)],
    )
    .send()
    .await
    .unwrap();
    assert_error(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
    assert_eq!(session_me(&app, &sid).await, StatusCode::OK);
}

#[tokio::test]
async fn bearer_requests_without_the_cookie_are_not_subject_to_the_csrf_check() {
    let app = spawn_app().await;
    for backend in token_backends() {
        let (_, token) = app.logged_in(backend).await;
        let response = app
            .authed(Method::POST, &format!("/{backend}/logout"), &token)
            .header("sec-fetch-site", "cross-site")
            .header("origin", EVIL)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{backend}");
    }
}

#[tokio::test]
async fn a_password_change_is_csrf_checked_when_the_caller_sends_the_cookie() {
    let app = spawn_app().await;
    let (user, sid) = session(&app).await;
    let change = json!({ "old_password": PASSWORD, "new_password": "a brand new passphrase" });
    let response = with_sid(&app, Method::POST, "/users/me/password", &sid)
        .header("sec-fetch-site", "cross-site")
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
    // Unchanged: the old password still logs in, and the session still lives.
    assert_eq!(session_me(&app, &sid).await, StatusCode::OK);
    let again = app
        .login_response(Backend::Redis, &user.username, PASSWORD)
        .await;
    assert_eq!(again.status(), StatusCode::OK);

    // The same change with a bearer token and no cookie is not a CSRF matter.
    let token = credential_from_login(Backend::Redis, again).await;
    let response = app
        .authed(Method::POST, "/users/me/password", &token)
        .header("sec-fetch-site", "cross-site")
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

// --- CORS ---------------------------------------------------------------------------------

fn preflight(app: &TestApp, path: &str, origin: &str) -> RequestBuilder {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, content-type",
        )
}

fn header_text(response: &Response, name: header::HeaderName) -> &str {
    response
        .headers()
        .get(&name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} in {:?}", response.headers()))
}

fn has_no_cors_headers(response: &Response) -> bool {
    !response
        .headers()
        .keys()
        .any(|name| name.as_str().starts_with("access-control-"))
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_gets_the_allow_headers_with_credentials() {
    let app = spawn_app_with(|s| {
        s.cors_origins = vec![TRUSTED.to_owned(), "https://other.example".to_owned()]
    })
    .await;
    let response = preflight(&app, "/redis/logout", TRUSTED)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_text(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        TRUSTED
    );
    assert_eq!(
        header_text(&response, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
        "true"
    );
    let allowed = header_text(&response, header::ACCESS_CONTROL_ALLOW_HEADERS).to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    let methods = header_text(&response, header::ACCESS_CONTROL_ALLOW_METHODS);
    assert!(methods.contains("POST"), "{methods}");
    assert!(
        header_text(&response, header::VARY).contains("Origin"),
        "{:?}",
        response.headers()
    );

    // The request itself, with credentials, is answered for that origin.
    let (_, token) = app.logged_in(Backend::Jwt).await;
    let response = app
        .authed(Method::GET, "/jwt/me", &token)
        .header(header::ORIGIN, TRUSTED)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_text(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        TRUSTED
    );
    assert_eq!(
        header_text(&response, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
        "true"
    );
    assert!(header_text(&response, header::VARY).contains("Origin"));
}

#[tokio::test]
async fn a_preflight_and_a_simple_request_from_another_origin_get_no_cors_headers() {
    let app = spawn_app_with(|s| s.cors_origins = vec![TRUSTED.to_owned()]).await;
    // Exact match only: a suffix, a prefix, another scheme or port are other origins.
    for origin in [
        EVIL,
        "https://app.example.evil.example",
        "https://evil.app.example",
        "http://app.example",
        "https://app.example:8443",
        "null",
    ] {
        let response = preflight(&app, "/redis/logout", origin)
            .send()
            .await
            .unwrap();
        assert!(
            has_no_cors_headers(&response),
            "{origin}: {:?}",
            response.headers()
        );
        assert_error(response, StatusCode::FORBIDDEN, "cors_rejected").await;

        let response = app
            .client
            .get(app.url("/hello"))
            .header(header::ORIGIN, origin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{origin}");
        assert!(
            has_no_cors_headers(&response),
            "{origin}: {:?}",
            response.headers()
        );
    }
    // A request with no Origin at all (not a browser's cross-origin request) gets none either.
    let response = app.get("/hello").await;
    assert!(has_no_cors_headers(&response), "{:?}", response.headers());
}

#[tokio::test]
async fn without_cors_origins_no_request_gets_cors_headers() {
    let app = spawn_app().await;
    let response = preflight(&app, "/redis/logout", TRUSTED)
        .send()
        .await
        .unwrap();
    assert!(has_no_cors_headers(&response), "{:?}", response.headers());
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let response = app
        .client
        .get(app.url("/hello"))
        .header(header::ORIGIN, TRUSTED)
        .send()
        .await
        .unwrap();
    assert!(has_no_cors_headers(&response), "{:?}", response.headers());
}

// --- Security headers ---------------------------------------------------------------------

fn assert_security_headers(what: &str, response: &Response, hsts: bool) {
    let headers = response.headers();
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(get("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(get("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(get("cache-control"), Some("no-store"), "{what}");
    let json = get("content-type").is_some_and(|t| t.starts_with("application/json"));
    if json {
        assert_eq!(
            get("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{what}"
        );
    }
    let expected_hsts = hsts.then_some("max-age=63072000; includeSubDomains");
    assert_eq!(get("strict-transport-security"), expected_hsts, "{what}");
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_credentials_are_never_cached() {
    let app = spawn_app_with(with_introspection_secret).await;
    let username = format!("user-{}", uuid::Uuid::new_v4().simple());
    let created = app
        .post_json(
            "/users",
            &json!({ "username": username, "password": PASSWORD }),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_security_headers("POST /users", &created, false);
    let user = TestUser {
        user_id: 0,
        username,
        password: PASSWORD.to_owned(),
    };

    for backend in Backend::ALL {
        let login = app
            .login_response(backend, &user.username, &user.password)
            .await;
        assert_eq!(login.status(), StatusCode::OK);
        assert_security_headers(&format!("{backend} login"), &login, false);
        let (credential, refresh_token) = if backend == Backend::Session {
            (credential_from_login(backend, login).await, None)
        } else {
            let body: Value = login.json().await.unwrap();
            (
                Credential::Bearer(body["access_token"].as_str().unwrap().to_owned()),
                Some(body["refresh_token"].as_str().unwrap().to_owned()),
            )
        };
        let me = app.me(backend, &credential).await;
        assert_eq!(me.status(), StatusCode::OK);
        assert_security_headers(&format!("{backend} /me"), &me, false);
        let sessions = app
            .authed(Method::GET, &format!("/{backend}/sessions"), &credential)
            .send()
            .await
            .unwrap();
        assert_eq!(sessions.status(), StatusCode::OK);
        assert_security_headers(&format!("{backend} sessions"), &sessions, false);
        if let Some(refresh_token) = refresh_token {
            let refreshed = app
                .post_json(
                    &format!("/{backend}/refresh"),
                    &json!({ "refresh_token": refresh_token }),
                )
                .await;
            assert_eq!(refreshed.status(), StatusCode::OK);
            assert_security_headers(&format!("{backend} refresh"), &refreshed, false);
            let introspected = app
                .client
                .post(app.url(&format!("/{backend}/introspect")))
                .bearer_auth(INTROSPECTION_SECRET)
                .form(&[("token", credential.value())])
                .send()
                .await
                .unwrap();
            assert_eq!(introspected.status(), StatusCode::OK);
            assert_security_headers(&format!("{backend} introspect"), &introspected, false);
        }
        let all = app
            .authed(Method::POST, &format!("/{backend}/logout-all"), &credential)
            .send()
            .await
            .unwrap();
        assert_eq!(all.status(), StatusCode::OK);
        assert_security_headers(&format!("{backend} logout-all"), &all, false);
        let unauthorized = app.me(backend, &credential).await;
        assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_security_headers(&format!("{backend} 401"), &unauthorized, false);
    }
    for (what, response) in [
        ("/hello", app.get("/hello").await),
        ("/healthz", app.get("/healthz").await),
        ("404", app.get("/nowhere").await),
        ("405", app.get("/jwt/login").await),
        (
            "revoke (an empty 200)",
            app.client
                .post(app.url("/redis/revoke"))
                .form(&[("token", "x")])
                .send()
                .await
                .unwrap(),
        ),
    ] {
        assert_security_headers(what, &response, false);
    }
}

#[tokio::test]
async fn hsts_is_sent_only_with_cookie_secure() {
    let app = spawn_app_with(|s| s.cookie_secure = true).await;
    assert_security_headers("/hello", &app.get("/hello").await, true);
    assert_security_headers("404", &app.get("/nowhere").await, true);
    let plain = spawn_app().await;
    assert_security_headers("/hello", &plain.get("/hello").await, false);
}

// --- Ambiguous credentials ----------------------------------------------------------------

#[tokio::test]
async fn two_authorization_headers_are_refused_as_ambiguous() {
    let app = spawn_app().await;
    for backend in token_backends() {
        let (_, token) = app.logged_in(backend).await;
        let (_, other) = app.logged_in(backend).await;
        for second in [token.value(), other.value()] {
            let response = app
                .client
                .get(app.url(&format!("/{backend}/me")))
                .header(header::AUTHORIZATION, format!("Bearer {}", token.value()))
                .header(header::AUTHORIZATION, format!("Bearer {second}"))
                .send()
                .await
                .unwrap();
            let challenge = header_text(&response, header::WWW_AUTHENTICATE).to_owned();
            assert!(
                challenge.contains(r#"error="invalid_request""#),
                "{challenge}"
            );
            assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        }
    }
    // The password change, which reads any backend's credential, refuses them too.
    let (_, token) = app.logged_in(Backend::Redis).await;
    let response = app
        .client
        .post(app.url("/users/me/password"))
        .header(header::AUTHORIZATION, format!("Bearer {}", token.value()))
        .header(header::AUTHORIZATION, format!("Bearer {}", token.value()))
        .json(&json!({ "old_password": PASSWORD, "new_password": "another long passphrase" }))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_header_and_a_query_token_together_are_ambiguous_when_query_tokens_are_allowed() {
    let app = spawn_app_with(|s| s.allow_query_token = true).await;
    for backend in token_backends() {
        let (_, token) = app.logged_in(backend).await;
        let response = app
            .authed(
                Method::GET,
                &format!("/{backend}/me?token={}", token.value()),
                &token,
            )
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn two_query_tokens_are_ambiguous_when_query_tokens_are_allowed() {
    let app = spawn_app_with(|s| s.allow_query_token = true).await;
    for backend in token_backends() {
        let (_, token) = app.logged_in(backend).await;
        let (_, other) = app.logged_in(backend).await;
        for second in [token.value(), other.value(), ""] {
            let response = app
                .get(&format!(
                    "/{backend}/me?token={}&token={second}",
                    token.value()
                ))
                .await;
            let challenge = header_text(&response, header::WWW_AUTHENTICATE).to_owned();
            assert!(
                challenge.contains(r#"error="invalid_request""#),
                "{backend}: {challenge}"
            );
            assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        }
        // One `token=` still works: the refusal is about the second one.
        let response = app
            .get(&format!("/{backend}/me?token={}", token.value()))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{backend}");
    }
}

#[tokio::test]
async fn without_the_flag_a_query_token_beside_a_header_is_ignored() {
    let app = spawn_app().await;
    for backend in token_backends() {
        let (user, token) = app.logged_in(backend).await;
        let response = app
            .authed(
                Method::GET,
                &format!("/{backend}/me?token=whatever"),
                &token,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{backend}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["username"], user.username);
    }
}

#[tokio::test]
async fn two_session_cookies_are_refused_as_ambiguous_in_one_header_or_two() {
    let app = spawn_app().await;
    let (_, sid) = session(&app).await;
    let (_, other) = session(&app).await;
    let one_header = app
        .client
        .get(app.url("/session/me"))
        .header(header::COOKIE, format!("sid={sid}; sid={other}"))
        .send()
        .await
        .unwrap();
    assert_error(one_header, StatusCode::BAD_REQUEST, "invalid_request").await;
    let two_headers = app
        .client
        .get(app.url("/session/me"))
        .header(header::COOKIE, format!("sid={sid}"))
        .header(header::COOKIE, format!("sid={sid}"))
        .send()
        .await
        .unwrap();
    assert_error(two_headers, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Neither was logged out by the refused requests.
    assert_eq!(session_me(&app, &sid).await, StatusCode::OK);
    assert_eq!(session_me(&app, &other).await, StatusCode::OK);
}

// --- The session cookie -------------------------------------------------------------------

#[tokio::test]
async fn a_login_that_presents_a_live_session_cookie_ends_that_session() {
    let app = spawn_app().await;
    let (user, old) = session(&app).await;
    let response = app
        .client
        .post(app.url("/session/login"))
        .header(header::COOKIE, format!("sid={old}"))
        .json(&json!({ "username": user.username, "password": user.password }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let new = credential_from_login(Backend::Session, response).await;
    assert_ne!(new.value(), old);
    assert_error(
        with_sid(&app, Method::GET, "/session/me", &old)
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_eq!(session_me(&app, new.value()).await, StatusCode::OK);

    // A failed login leaves the presented session alone.
    let response = app
        .client
        .post(app.url("/session/login"))
        .header(header::COOKIE, format!("sid={}", new.value()))
        .json(&json!({ "username": user.username, "password": "not the password" }))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(session_me(&app, new.value()).await, StatusCode::OK);
}

#[tokio::test]
async fn without_cookie_secure_the_session_cookie_is_named_sid() {
    let app = spawn_app().await;
    let user = app.register().await;
    let response = app
        .login_response(Backend::Session, &user.username, &user.password)
        .await;
    let cookie = header_text(&response, header::SET_COOKIE).to_owned();
    assert!(cookie.starts_with("sid="), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let sid = credential_from_login(Backend::Session, response).await;
    assert_eq!(session_me(&app, sid.value()).await, StatusCode::OK);
    let response = app
        .client
        .get(app.url("/session/me"))
        .header(header::COOKIE, format!("__Host-sid={}", sid.value()))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "missing_credentials").await;
}

#[tokio::test]
async fn with_cookie_secure_the_session_cookie_is_host_prefixed_and_read_by_that_name() {
    let app = spawn_app_with(|s| s.cookie_secure = true).await;
    let user = app.register().await;
    let response = app
        .login_response(Backend::Session, &user.username, &user.password)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = header_text(&response, header::SET_COOKIE).to_owned();
    let sid = cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("__Host-sid="))
        .unwrap_or_else(|| panic!("{cookie}"))
        .to_owned();
    for part in ["; Secure", "; Path=/", "; HttpOnly"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");

    let as_named = |name: &str| {
        app.client
            .get(app.url("/session/me"))
            .header(header::COOKIE, format!("{name}={sid}"))
            .send()
    };
    assert_eq!(
        as_named("__Host-sid").await.unwrap().status(),
        StatusCode::OK
    );
    assert_error(
        as_named("sid").await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "missing_credentials",
    )
    .await;

    // The CSRF check and the logout read the same name.
    let cross = app
        .client
        .post(app.url("/session/logout"))
        .header(header::COOKIE, format!("__Host-sid={sid}"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_error(cross, StatusCode::FORBIDDEN, "csrf_rejected").await;
    let logout = app
        .client
        .post(app.url("/session/logout"))
        .header(header::COOKIE, format!("__Host-sid={sid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let removal = header_text(&logout, header::SET_COOKIE);
    assert!(removal.starts_with("__Host-sid=;"), "{removal}");
    assert_eq!(
        as_named("__Host-sid").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

// --- Introspection ------------------------------------------------------------------------

async fn introspect(
    app: &TestApp,
    backend: Backend,
    token: &str,
    secret: Option<&str>,
) -> Response {
    let mut request = app
        .client
        .post(app.url(&format!("/{backend}/introspect")))
        .form(&[("token", token)]);
    if let Some(secret) = secret {
        request = request.bearer_auth(secret);
    }
    request.send().await.unwrap()
}

async fn assert_introspection_refused(response: Response, code: &str) {
    let challenge = header_text(&response, header::WWW_AUTHENTICATE).to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let body = assert_error(response, StatusCode::UNAUTHORIZED, code).await;
    assert!(body.get("active").is_none(), "{body}");
}

#[tokio::test]
async fn introspection_is_refused_to_everybody_when_no_secret_is_configured() {
    let app = spawn_app().await;
    for backend in token_backends() {
        let (_, token) = app.logged_in(backend).await;
        assert_introspection_refused(
            introspect(&app, backend, token.value(), None).await,
            "missing_credentials",
        )
        .await;
        assert_introspection_refused(
            introspect(&app, backend, token.value(), Some(INTROSPECTION_SECRET)).await,
            "invalid_client",
        )
        .await;
        // A client cannot introspect with the token itself either.
        assert_introspection_refused(
            introspect(&app, backend, token.value(), Some(token.value())).await,
            "invalid_client",
        )
        .await;
    }
}

#[tokio::test]
async fn introspection_with_a_wrong_secret_is_refused() {
    let app = spawn_app_with(with_introspection_secret).await;
    for backend in token_backends() {
        let (_, token) = app.logged_in(backend).await;
        let near_miss = format!("{}x", INTROSPECTION_SECRET);
        for wrong in [near_miss.as_str(), &INTROSPECTION_SECRET[1..], "short"] {
            assert_introspection_refused(
                introspect(&app, backend, token.value(), Some(wrong)).await,
                "invalid_client",
            )
            .await;
        }
        assert_introspection_refused(
            introspect(&app, backend, token.value(), None).await,
            "missing_credentials",
        )
        .await;
    }
}

#[tokio::test]
async fn introspection_with_the_right_secret_describes_the_token() {
    let app = spawn_app_with(with_introspection_secret).await;
    for backend in token_backends() {
        let (user, token) = app.logged_in(backend).await;
        let response = introspect(&app, backend, token.value(), Some(INTROSPECTION_SECRET)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["active"], true, "{body}");
        assert_eq!(body["username"], user.username);
    }
}

#[tokio::test]
async fn revocation_stays_open_to_whoever_holds_the_token() {
    let app = spawn_app_with(with_introspection_secret).await;
    for backend in token_backends() {
        let (_, token) = app.logged_in(backend).await;
        let response = app
            .client
            .post(app.url(&format!("/{backend}/revoke")))
            .form(&[("token", token.value())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            app.me(backend, &token).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn a_short_introspection_secret_is_refused_at_start_up() {
    let mut settings = test_settings();
    let file = std::env::temp_dir().join(format!(
        "authlab-test-short-{}.secret",
        uuid::Uuid::new_v4().simple()
    ));
    // 31 bytes and the newline an editor adds.
    std::fs::write(&file, format!("{}\n", "s".repeat(31))).unwrap();
    settings.introspection_secret_file = Some(file.clone());
    let built = authlab::startup::Application::build(settings).await;
    let _ = std::fs::remove_file(&file);
    match built {
        Err(authlab::startup::StartupError::IntrospectionSecretTooShort { bytes, .. }) => {
            assert_eq!(bytes, 31)
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a 31-byte introspection secret was accepted"),
    }
}
