//! One contract, every backend: the same test names run against `/session`, `/redis` and `/jwt`.
//! Where a backend legitimately differs (what "expired" looks like, what logout leaves behind),
//! the expectation says so in one place.

use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::*;

/// The code `/me` gives after logout: the session and the Redis key are gone (so the id means
/// nothing any more), while a JWT is still genuine and is refused by the denylist.
fn code_after_logout(backend: Backend) -> &'static str {
    match backend {
        Backend::Jwt => "token_revoked",
        _ => "invalid_token",
    }
}

/// The code `/me` gives for an expired credential. Redis forgets an expired key, so the redis
/// backend cannot tell "expired" from "never existed".
fn code_after_expiry(backend: Backend) -> &'static str {
    match backend {
        Backend::Redis => "invalid_token",
        _ => "token_expired",
    }
}

fn is_bearer(backend: Backend) -> bool {
    backend != Backend::Session
}

pub async fn login_then_me_answers_who_the_user_is(backend: Backend, store: &Store) {
    let app = store.spawn().await;
    let (user, credential) = app.logged_in(backend).await;
    let response = app.me(backend, &credential).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "user_id": user.user_id, "username": user.username, "backend": backend.name() })
    );
}

pub async fn login_answers_with_the_documented_shape(backend: Backend, store: &Store) {
    let app = store.spawn().await;
    let user = app.register().await;
    let response = app
        .login_response(backend, &user.username, &user.password)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let ttl = if is_bearer(backend) {
        app.settings.access_ttl
    } else {
        app.settings.session_ttl
    }
    .as_secs();
    if is_bearer(backend) {
        assert!(response.headers().get(header::SET_COOKIE).is_none());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], ttl);
        assert!(body["access_token"].as_str().is_some_and(|t| t.len() >= 36));
        assert!(
            body["refresh_token"]
                .as_str()
                .is_some_and(|t| t.len() >= 64)
        );
        assert_eq!(
            body["refresh_expires_in"],
            app.settings.refresh_ttl.as_secs()
        );
    } else {
        let cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned();
        for attribute in [
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            // The cookie lives as long as the session's absolute lifetime; the idle timeout is
            // the server's to enforce (a cookie's Max-Age cannot slide with use).
            &format!("Max-Age={}", app.settings.session_max_age.as_secs()),
        ] {
            assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
        }
        assert!(
            !cookie.contains("Secure"),
            "Secure is off unless configured"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({ "token_type": "cookie", "expires_in": ttl }));
    }
}

pub async fn every_login_mints_a_new_credential(backend: Backend, store: &Store) {
    let app = store.spawn().await;
    let (user, first) = app.logged_in(backend).await;
    // Log in again while presenting the first credential: the server must not adopt it.
    let request = app
        .authed(Method::POST, &format!("/{backend}/login"), &first)
        .json(&json!({ "username": user.username, "password": user.password }));
    let second = credential_from_login(backend, request.send().await.unwrap()).await;
    assert_ne!(first.value(), second.value());
    assert_eq!(app.me(backend, &second).await.status(), StatusCode::OK);
    // A session login also ends the session whose cookie it presents (one browser, one live
    // session); a bearer token sent along to a login is not read, so it lives on.
    let first_after = app.me(backend, &first).await;
    if backend == Backend::Session {
        assert_error(first_after, StatusCode::UNAUTHORIZED, "invalid_token").await;
    } else {
        assert_eq!(first_after.status(), StatusCode::OK);
    }
}

pub async fn a_wrong_password_and_an_unknown_user_get_the_same_401(
    backend: Backend,
    store: &Store,
) {
    let app = store.spawn().await;
    let user = app.register().await;
    let wrong = app
        .login_response(backend, &user.username, "not the password")
        .await;
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    let wrong = assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let unknown = app
        .login_response(backend, "nobody-by-this-name", &user.password)
        .await;
    let unknown = assert_error(unknown, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(
        wrong, unknown,
        "the answer must not reveal which names exist"
    );
}

pub async fn me_without_a_credential_is_401_missing_credentials(backend: Backend, store: &Store) {
    let app = store.spawn().await;
    let response = app.get(&format!("/{backend}/me")).await;
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    assert_error(response, StatusCode::UNAUTHORIZED, "missing_credentials").await;
    if is_bearer(backend) {
        // RFC 6750 §3.1: a request without a token gets a challenge with no error code.
        assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="authlab""#));
    } else {
        assert_eq!(challenge, None);
    }
}

pub async fn a_tampered_credential_is_401_invalid_token(backend: Backend, store: &Store) {
    let app = store.spawn().await;
    let (_, credential) = app.logged_in(backend).await;
    let value = credential.value();
    // Change one character in the middle (a JWT's middle is its payload).
    let middle = value.len() / 2;
    let original = value.as_bytes()[middle];
    let replacement = if original == b'A' { 'B' } else { 'A' };
    let tampered = format!(
        "{}{}{}",
        &value[..middle],
        replacement,
        &value[middle + 1..]
    );
    for bad in [
        tampered,
        format!("{value}x"),
        value[..value.len() - 1].to_owned(),
        "garbage".to_owned(),
    ] {
        let response = app.me(backend, &credential.with_value(bad.clone())).await;
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        if is_bearer(backend) {
            let challenge = challenge.expect("a Bearer challenge");
            assert!(
                challenge.starts_with(r#"Bearer realm="authlab", error="invalid_token""#),
                "{challenge}"
            );
        }
    }
}

pub async fn logout_kills_the_credential(backend: Backend, store: &Store) {
    let app = store.spawn().await;
    let (_, credential) = app.logged_in(backend).await;
    let response = app.logout(backend, &credential).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    if !is_bearer(backend) {
        let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(cookie.starts_with("sid=;"), "{cookie}");
        assert!(cookie.contains("Max-Age=0"), "{cookie}");
    }
    let code = code_after_logout(backend);
    assert_error(
        app.me(backend, &credential).await,
        StatusCode::UNAUTHORIZED,
        code,
    )
    .await;
    // Logging out twice is refused like any other use of a dead credential.
    assert_error(
        app.logout(backend, &credential).await,
        StatusCode::UNAUTHORIZED,
        code,
    )
    .await;
}

pub async fn logout_without_a_credential_is_401(backend: Backend, store: &Store) {
    let app = store.spawn().await;
    let response = app
        .client
        .post(app.url(&format!("/{backend}/logout")))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "missing_credentials").await;
}

pub async fn an_expired_credential_is_refused(backend: Backend, store: &Store) {
    let app = store
        .spawn_with(|s| {
            s.access_ttl = Duration::from_secs(1);
            s.session_ttl = Duration::from_secs(1);
            s.session_sweep_interval = Duration::from_secs(3600);
        })
        .await;
    let (_, credential) = app.logged_in(backend).await;
    assert_eq!(app.me(backend, &credential).await.status(), StatusCode::OK);
    match backend {
        // The app times these itself, by its clock: two seconds on is past the 1 s lifetime
        // (whole seconds from login, or from a session's last use), whatever the fraction of
        // the second it started in.
        Backend::Session | Backend::Jwt => app.clock.advance(Duration::from_secs(2)),
        // Redis expires the key by its own clock, in milliseconds: real time is the thing under
        // test, so this one sleeps, just past the 1 s TTL.
        Backend::Redis => tokio::time::sleep(Duration::from_millis(1200)).await,
    }
    let code = code_after_expiry(backend);
    assert_error(
        app.me(backend, &credential).await,
        StatusCode::UNAUTHORIZED,
        code,
    )
    .await;
}

pub async fn a_credential_from_another_backend_is_refused(backend: Backend, store: &Store) {
    let app = store.spawn().await;
    for other in Backend::ALL.into_iter().filter(|b| *b != backend) {
        let (_, foreign) = app.logged_in(other).await;
        // Present the foreign value the way this backend expects credentials.
        let presented = if is_bearer(backend) {
            Credential::Bearer(foreign.value().to_owned())
        } else {
            Credential::Cookie(foreign.value().to_owned())
        };
        assert_error(
            app.me(backend, &presented).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
}

/// Generates the contract's tests for one backend, with identical names in each module, on the
/// machine's Redis or on the store given (`tests/api/cluster.rs` runs them on a Redis Cluster).
macro_rules! contract_suite {
    ($backend:ident, $typed:expr) => {
        contract_suite!($backend, $typed, crate::helpers::Store::Standalone);
    };
    ($backend:ident, $typed:expr, $store:expr) => {
        mod $backend {
            use crate::helpers::Backend;
            const BACKEND: Backend = $typed;

            #[tokio::test]
            async fn login_then_me_answers_who_the_user_is() {
                crate::contract::login_then_me_answers_who_the_user_is(BACKEND, &$store).await
            }
            #[tokio::test]
            async fn login_answers_with_the_documented_shape() {
                crate::contract::login_answers_with_the_documented_shape(BACKEND, &$store).await
            }
            #[tokio::test]
            async fn every_login_mints_a_new_credential() {
                crate::contract::every_login_mints_a_new_credential(BACKEND, &$store).await
            }
            #[tokio::test]
            async fn a_wrong_password_and_an_unknown_user_get_the_same_401() {
                crate::contract::a_wrong_password_and_an_unknown_user_get_the_same_401(
                    BACKEND, &$store,
                )
                .await
            }
            #[tokio::test]
            async fn me_without_a_credential_is_401_missing_credentials() {
                crate::contract::me_without_a_credential_is_401_missing_credentials(
                    BACKEND, &$store,
                )
                .await
            }
            #[tokio::test]
            async fn a_tampered_credential_is_401_invalid_token() {
                crate::contract::a_tampered_credential_is_401_invalid_token(BACKEND, &$store).await
            }
            #[tokio::test]
            async fn logout_kills_the_credential() {
                crate::contract::logout_kills_the_credential(BACKEND, &$store).await
            }
            #[tokio::test]
            async fn logout_without_a_credential_is_401() {
                crate::contract::logout_without_a_credential_is_401(BACKEND, &$store).await
            }
            #[tokio::test]
            async fn an_expired_credential_is_refused() {
                crate::contract::an_expired_credential_is_refused(BACKEND, &$store).await
            }
            #[tokio::test]
            async fn a_credential_from_another_backend_is_refused() {
                crate::contract::a_credential_from_another_backend_is_refused(BACKEND, &$store)
                    .await
            }
        }
    };
}

contract_suite!(session, Backend::Session);
contract_suite!(redis, Backend::Redis);
contract_suite!(jwt, Backend::Jwt);

pub(crate) use contract_suite;
