//! The token lifecycle: refresh with rotation, reuse detection and the grace window; the per-user
//! registry (list, revoke one, log out everywhere); password change; RFC 7009 and RFC 7662.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::*;

/// What a bearer login or refresh returned.
#[derive(Debug, Clone)]
pub(crate) struct Tokens {
    pub(crate) access: Credential,
    pub(crate) refresh: String,
}

pub(crate) async fn tokens_from(response: reqwest::Response) -> Tokens {
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    Tokens {
        access: Credential::Bearer(body["access_token"].as_str().unwrap().to_owned()),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

pub(crate) async fn login_tokens(app: &TestApp, backend: Backend, user: &TestUser) -> Tokens {
    tokens_from(
        app.login_response(backend, &user.username, &user.password)
            .await,
    )
    .await
}

pub(crate) async fn refresh(
    app: &TestApp,
    backend: Backend,
    refresh_token: &str,
) -> reqwest::Response {
    app.post_json(
        &format!("/{backend}/refresh"),
        &json!({ "refresh_token": refresh_token }),
    )
    .await
}

pub(crate) async fn form(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// The code `/me` gives for an access token whose family was revoked.
pub(crate) fn revoked_code(backend: Backend) -> &'static str {
    if backend == Backend::Jwt {
        "token_revoked"
    } else {
        "invalid_token"
    }
}

pub async fn refresh_rotates_both_tokens_and_spends_the_old_refresh_token(store: &Store) {
    let app = store.spawn_with(|s| s.refresh_grace = Duration::ZERO).await;
    for backend in token_backends() {
        let user = app.register().await;
        let first = login_tokens(&app, backend, &user).await;
        let second = tokens_from(refresh(&app, backend, &first.refresh).await).await;
        assert_ne!(first.refresh, second.refresh);
        assert_ne!(first.access.value(), second.access.value());
        let body: Value = app.me(backend, &second.access).await.json().await.unwrap();
        assert_eq!(body["user_id"], user.user_id);
        // The successor can be spent in turn.
        let third = tokens_from(refresh(&app, backend, &second.refresh).await).await;
        assert_eq!(
            app.me(backend, &third.access).await.status(),
            StatusCode::OK
        );
    }
}

pub async fn a_reused_refresh_token_revokes_its_whole_family_and_nothing_else(store: &Store) {
    let app = store.spawn_with(|s| s.refresh_grace = Duration::ZERO).await;
    for backend in token_backends() {
        let user = app.register().await;
        let stolen = login_tokens(&app, backend, &user).await;
        let legit = tokens_from(refresh(&app, backend, &stolen.refresh).await).await;
        let other_device = login_tokens(&app, backend, &user).await;

        let replay = refresh(&app, backend, &stolen.refresh).await;
        assert_error(replay, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;

        let code = revoked_code(backend);
        for access in [&stolen.access, &legit.access] {
            assert_error(
                app.me(backend, access).await,
                StatusCode::UNAUTHORIZED,
                code,
            )
            .await;
        }
        let successor = refresh(&app, backend, &legit.refresh).await;
        assert_error(successor, StatusCode::UNAUTHORIZED, "invalid_token").await;
        // Another login of the same user is another family, untouched.
        assert_eq!(
            app.me(backend, &other_device.access).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            refresh(&app, backend, &other_device.refresh).await.status(),
            StatusCode::OK
        );
    }
}

pub async fn within_the_grace_window_a_retry_gets_the_same_successor(store: &Store) {
    let app = store.spawn().await; // the default 10 s grace
    for backend in token_backends() {
        let user = app.register().await;
        let first = login_tokens(&app, backend, &user).await;
        let a = tokens_from(refresh(&app, backend, &first.refresh).await).await;
        let b = tokens_from(refresh(&app, backend, &first.refresh).await).await;
        assert_eq!(
            a.refresh, b.refresh,
            "the same successor, not a second branch"
        );
        for access in [&a.access, &b.access] {
            assert_eq!(app.me(backend, access).await.status(), StatusCode::OK);
        }
        // Once the successor has itself been spent, the grace for its parent is over.
        let _ = tokens_from(refresh(&app, backend, &a.refresh).await).await;
        let late = refresh(&app, backend, &first.refresh).await;
        assert_error(late, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    }
}

/// Sends `n` refreshes of the same token at once, truly in parallel (separate tasks on a
/// multi-threaded runtime, separate connections), and collects every answer.
async fn race_refreshes(
    app: &TestApp,
    backend: Backend,
    token: &str,
    n: usize,
) -> Vec<(StatusCode, Value)> {
    let racers: Vec<_> = (0..n)
        .map(|_| {
            let request = app
                .client
                .post(app.url(&format!("/{backend}/refresh")))
                .json(&json!({ "refresh_token": token }));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                (response.status(), response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for racer in racers {
        answers.push(racer.await.unwrap());
    }
    answers
}

/// Two tabs (here eight) refreshing the same token at the same instant, many times over: with the
/// grace window none of them is taken for a thief, and they all agree on one successor.
pub async fn concurrent_refreshes_within_the_grace_window_all_succeed_with_one_successor(
    store: &Store,
) {
    let app = store.spawn_with(|s| s.workers = Some(2)).await;
    let user = app.register().await;
    for backend in token_backends() {
        for round in 0..20 {
            let start = login_tokens(&app, backend, &user).await;
            let mut successors = std::collections::HashSet::new();
            for (status, body) in race_refreshes(&app, backend, &start.refresh, 8).await {
                assert_eq!(status, StatusCode::OK, "{backend} round {round}: {body}");
                successors.insert(body["refresh_token"].as_str().unwrap().to_owned());
            }
            assert_eq!(
                successors.len(),
                1,
                "{backend} round {round}: {successors:?}"
            );
            let successor = successors.into_iter().next().unwrap();
            assert_eq!(
                refresh(&app, backend, &successor).await.status(),
                StatusCode::OK
            );
        }
    }
}

/// Without a grace window, racing refreshes are exactly what theft looks like. The exchange is
/// atomic, so at most one racer gets new tokens, the others are told the token was reused, and
/// the family is revoked, winner included: no racer walks away with a live token, not even one
/// minted while the revocation was under way.
pub async fn without_grace_racing_refreshes_have_exactly_one_winner_and_trip_the_alarm(
    store: &Store,
) {
    let app = store
        .spawn_with(|s| {
            s.workers = Some(2);
            s.refresh_grace = Duration::ZERO;
        })
        .await;
    let user = app.register().await;
    for backend in token_backends() {
        for round in 0..10 {
            let start = login_tokens(&app, backend, &user).await;
            let mut winners = Vec::new();
            let mut alarms = 0;
            for (status, body) in race_refreshes(&app, backend, &start.refresh, 6).await {
                match (status, body["error"].as_str()) {
                    (StatusCode::OK, _) => winners.push(body),
                    (StatusCode::UNAUTHORIZED, Some("refresh_token_reused")) => alarms += 1,
                    // The winner's own exchange, when the family died under it mid-way.
                    (StatusCode::UNAUTHORIZED, Some("invalid_token")) => {}
                    (other, _) => panic!("{backend} round {round}: {other} {body}"),
                }
            }
            assert!(winners.len() <= 1, "{backend} round {round}: {winners:?}");
            assert!(
                alarms >= 1,
                "{backend} round {round}: the replays were noticed"
            );
            // The alarm revoked the family, winner included: nobody walks away with a live token.
            for winner in &winners {
                let access =
                    Credential::Bearer(winner["access_token"].as_str().unwrap().to_owned());
                let status = app.me(backend, &access).await.status();
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend} round {round}");
                let refreshed =
                    refresh(&app, backend, winner["refresh_token"].as_str().unwrap()).await;
                assert_eq!(
                    refreshed.status(),
                    StatusCode::UNAUTHORIZED,
                    "{backend} round {round}"
                );
            }
        }
    }
}

pub async fn logout_also_kills_the_refresh_token(store: &Store) {
    let app = store.spawn().await;
    for backend in token_backends() {
        let user = app.register().await;
        let tokens = login_tokens(&app, backend, &user).await;
        assert_eq!(
            app.logout(backend, &tokens.access).await.status(),
            StatusCode::NO_CONTENT
        );
        let refreshed = refresh(&app, backend, &tokens.refresh).await;
        assert_error(refreshed, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
}

pub async fn garbage_refresh_tokens_are_401_and_malformed_bodies_400(store: &Store) {
    let app = store.spawn().await;
    for backend in token_backends() {
        for junk in [
            "",
            "x",
            "a.b",
            &"a".repeat(76),
            "0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_error(
                refresh(&app, backend, junk).await,
                StatusCode::UNAUTHORIZED,
                "invalid_token",
            )
            .await;
        }
        let no_field = app
            .post_json(&format!("/{backend}/refresh"), &json!({}))
            .await;
        assert_error(no_field, StatusCode::BAD_REQUEST, "malformed_json").await;
    }
    // Sessions have no refresh tokens: the route does not exist there.
    assert_error(
        refresh(&app, Backend::Session, "x").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

pub(crate) async fn sessions_of(
    app: &TestApp,
    backend: Backend,
    credential: &Credential,
) -> Vec<Value> {
    let response = app
        .authed(Method::GET, &format!("/{backend}/sessions"), credential)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["sessions"].as_array().unwrap().clone()
}

async fn login_with_agent(
    app: &TestApp,
    backend: Backend,
    user: &TestUser,
    agent: &str,
) -> Credential {
    let response = app
        .client
        .post(app.url(&format!("/{backend}/login")))
        .header(header::USER_AGENT, agent)
        .json(&json!({ "username": user.username, "password": user.password }))
        .send()
        .await
        .unwrap();
    credential_from_login(backend, response).await
}

pub async fn each_backend_lists_revokes_one_and_logs_out_everywhere(store: &Store) {
    let app = store.spawn().await;
    for backend in Backend::ALL {
        let user = app.register().await;
        let laptop = login_with_agent(&app, backend, &user, "Laptop/1.0").await;
        let phone = login_with_agent(&app, backend, &user, "Phone/2.0").await;
        let tablet = login_with_agent(&app, backend, &user, "Tablet/3.0").await;

        let listed = sessions_of(&app, backend, &laptop).await;
        assert_eq!(listed.len(), 3, "{backend}: {listed:?}");
        let current: Vec<&Value> = listed.iter().filter(|s| s["current"] == true).collect();
        assert_eq!(current.len(), 1, "{backend}");
        assert_eq!(current[0]["user_agent"], "Laptop/1.0");
        for entry in &listed {
            let id = entry["id"].as_str().unwrap();
            assert!(!id.is_empty());
            for secret in [laptop.value(), phone.value(), tablet.value()] {
                assert_ne!(id, secret, "a listed id is never the credential itself");
            }
            assert!(entry["expires_at"].as_u64() > entry["created_at"].as_u64());
        }

        // Revoke the phone from the laptop.
        let phone_id = listed
            .iter()
            .find(|s| s["user_agent"] == "Phone/2.0")
            .and_then(|s| s["id"].as_str())
            .unwrap()
            .to_owned();
        let delete = |credential: &Credential, id: &str| {
            app.authed(
                Method::DELETE,
                &format!("/{backend}/sessions/{id}"),
                credential,
            )
            .send()
        };
        assert_eq!(
            delete(&laptop, &phone_id).await.unwrap().status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            app.me(backend, &phone).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(sessions_of(&app, backend, &laptop).await.len(), 2);
        let again = delete(&laptop, &phone_id).await.unwrap();
        assert_error(again, StatusCode::NOT_FOUND, "session_not_found").await;

        // Another user cannot revoke this user's sessions, even knowing the id.
        let (_, stranger) = app.logged_in(backend).await;
        let laptop_id = sessions_of(&app, backend, &laptop).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let foreign = delete(&stranger, &laptop_id).await.unwrap();
        assert_error(foreign, StatusCode::NOT_FOUND, "session_not_found").await;
        assert_eq!(app.me(backend, &laptop).await.status(), StatusCode::OK);

        // Log out everywhere: the laptop's own credential and the tablet's die at once.
        let response = app
            .authed(Method::POST, &format!("/{backend}/logout-all"), &laptop)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["revoked"], 2, "{backend}");
        for credential in [&laptop, &tablet] {
            assert_eq!(
                app.me(backend, credential).await.status(),
                StatusCode::UNAUTHORIZED,
                "{backend}"
            );
        }
        assert_eq!(
            app.me(backend, &stranger).await.status(),
            StatusCode::OK,
            "other users keep theirs"
        );
    }
}

/// Revocation latency, the honest version: the first request after logout-all returns is already
/// refused, for every backend whose verify consults state. A JWT checked without a denylist
/// cannot be refused until its `exp`: that is the price of no lookup. (The time it takes is
/// measured by `authlab compare`; here we pin down *how many requests* get through: zero.)
pub async fn after_logout_all_the_very_next_request_is_refused_except_for_jwt_without_a_denylist(
    store: &Store,
) {
    let app = store.spawn().await;
    let stateless = store
        .spawn_with(|s| s.jwt_denylist = authlab::config::DenylistMode::Off)
        .await;
    for (app, backend, refused) in [
        (&app, Backend::Session, true),
        (&app, Backend::Redis, true),
        (&app, Backend::Jwt, true),
        (&stateless, Backend::Jwt, false),
    ] {
        let (_, credential) = app.logged_in(backend).await;
        let request = app.authed(Method::POST, &format!("/{backend}/logout-all"), &credential);
        assert_eq!(request.send().await.unwrap().status(), StatusCode::OK);
        let started = Instant::now();
        let status = app.me(backend, &credential).await.status();
        let latency = started.elapsed();
        eprintln!(
            "revocation: {backend} (refused: {refused}) first request after logout-all: {status} in {latency:?}"
        );
        if refused {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend}");
        } else {
            assert_eq!(
                status,
                StatusCode::OK,
                "a JWT without a denylist outlives logout-all"
            );
        }
    }
}

pub async fn changing_the_password_revokes_every_credential_on_every_backend(store: &Store) {
    let app = store.spawn().await;
    let user = app.register().await;
    let sid = app.login(Backend::Session, &user).await;
    let opaque = login_tokens(&app, Backend::Redis, &user).await;
    let jwt = login_tokens(&app, Backend::Jwt, &user).await;
    let change = |credential: &Credential, old: &str, new: &str| {
        app.authed(Method::POST, "/users/me/password", credential)
            .json(&json!({ "old_password": old, "new_password": new }))
            .send()
    };

    // A wrong old password changes nothing and revokes nothing.
    let wrong = change(&jwt.access, "not my password", "a brand new password")
        .await
        .unwrap();
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let weak = change(&jwt.access, PASSWORD, "short").await.unwrap();
    assert_error(weak, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let anonymous = app
        .post_json(
            "/users/me/password",
            &json!({ "old_password": PASSWORD, "new_password": "a brand new password" }),
        )
        .await;
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "missing_credentials").await;
    assert_eq!(
        app.me(Backend::Session, &sid).await.status(),
        StatusCode::OK
    );

    // Changed through the redis backend's token; everything everywhere dies.
    let changed = change(&opaque.access, PASSWORD, "a brand new password")
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.me(Backend::Session, &sid).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.me(Backend::Redis, &opaque.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.me(Backend::Jwt, &jwt.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    for (backend, tokens) in [(Backend::Redis, &opaque), (Backend::Jwt, &jwt)] {
        let refreshed = refresh(&app, backend, &tokens.refresh).await;
        assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED, "{backend}");
    }
    let old = app
        .login_response(Backend::Session, &user.username, PASSWORD)
        .await;
    assert_error(old, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let new = app
        .login_response(Backend::Session, &user.username, "a brand new password")
        .await;
    assert_eq!(new.status(), StatusCode::OK);
}

pub async fn rfc7009_revocation_answers_200_and_kills_what_it_names(store: &Store) {
    let app = store.spawn().await;
    for backend in token_backends() {
        let user = app.register().await;
        // An access token alone.
        let tokens = login_tokens(&app, backend, &user).await;
        let response = form(&app, &format!("/{backend}/revoke"), tokens.access.value()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            app.me(backend, &tokens.access).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            refresh(&app, backend, &tokens.refresh).await.status(),
            StatusCode::OK,
            "the refresh token survives"
        );

        // A refresh token: the family, access tokens included.
        let tokens = login_tokens(&app, backend, &user).await;
        let response = form(&app, &format!("/{backend}/revoke"), &tokens.refresh).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            app.me(backend, &tokens.access).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            refresh(&app, backend, &tokens.refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );

        // Unknown and malformed tokens: still 200 (RFC 7009 §2.2).
        for junk in ["nonsense", "00000000-0000-4000-8000-000000000000", "a.b.c"] {
            assert_eq!(
                form(&app, &format!("/{backend}/revoke"), junk)
                    .await
                    .status(),
                StatusCode::OK
            );
        }
        // The RFC's body is a form; JSON is refused, an empty form is a 400.
        let json_body = app
            .post_json(&format!("/{backend}/revoke"), &json!({ "token": "x" }))
            .await;
        assert_error(
            json_body,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
        let empty = app
            .client
            .post(app.url(&format!("/{backend}/revoke")))
            .form(&[("nothing", "here")])
            .send()
            .await
            .unwrap();
        assert_error(empty, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

pub async fn rfc7662_introspection_describes_live_tokens_and_nothing_else(store: &Store) {
    let app = store.spawn_with(with_introspection_secret).await;
    for backend in token_backends() {
        let user = app.register().await;
        let tokens = login_tokens(&app, backend, &user).await;
        let introspect = |token: String| {
            let app = &app;
            async move {
                let response = app
                    .client
                    .post(app.url(&format!("/{backend}/introspect")))
                    .bearer_auth(INTROSPECTION_SECRET)
                    .form(&[("token", token.as_str())])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                response.json::<Value>().await.unwrap()
            }
        };
        let access = introspect(tokens.access.value().to_owned()).await;
        assert_eq!(access["active"], true, "{access}");
        assert_eq!(access["token_type"], "access_token");
        assert_eq!(access["sub"], user.user_id.to_string());
        assert_eq!(access["username"], user.username);
        assert!(access["exp"].as_u64().is_some());

        let refresh_info = introspect(tokens.refresh.clone()).await;
        assert_eq!(refresh_info["active"], true, "{refresh_info}");
        assert_eq!(refresh_info["token_type"], "refresh_token");
        assert_eq!(
            refresh_info["session_id"], access["session_id"],
            "one family"
        );

        for junk in [
            "",
            "garbage",
            "a.b.c",
            "00000000-0000-4000-8000-000000000000",
        ] {
            assert_eq!(
                introspect(junk.to_owned()).await,
                json!({ "active": false })
            );
        }
        // A spent refresh token and a logged-out access token are no longer active.
        let next = tokens_from(refresh(&app, backend, &tokens.refresh).await).await;
        assert_eq!(
            introspect(tokens.refresh.clone()).await,
            json!({ "active": false })
        );
        app.logout(backend, &next.access).await;
        assert_eq!(
            introspect(next.access.value().to_owned()).await,
            json!({ "active": false })
        );
    }
}

#[tokio::test]
async fn rotating_a_session_id_keeps_the_session_and_kills_the_old_id() {
    let app = spawn_app().await;
    let (_, old) = app.logged_in(Backend::Session).await;
    let before = sessions_of(&app, Backend::Session, &old).await;
    let response = app
        .client
        .post(app.url("/session/rotate"))
        .header(header::COOKIE, format!("sid={}", old.value()))
        .send()
        .await
        .unwrap();
    let new = credential_from_login(Backend::Session, response).await;
    assert_ne!(new.value(), old.value());
    assert_error(
        app.me(Backend::Session, &old).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_eq!(
        app.me(Backend::Session, &new).await.status(),
        StatusCode::OK
    );
    let after = sessions_of(&app, Backend::Session, &new).await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0]["id"], before[0]["id"],
        "the same session under a new id"
    );
    assert_eq!(after[0]["created_at"], before[0]["created_at"]);
}

#[tokio::test]
async fn registry_entries_go_when_their_families_expire() {
    let app = spawn_app_with(|s| s.refresh_ttl = Duration::from_secs(1)).await;
    let client = redis::Client::open(app.settings.redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for backend in token_backends() {
        let user = app.register().await;
        let tokens = login_tokens(&app, backend, &user).await;
        let registry = format!(
            "{}{backend}:user:{{{}}}:fams",
            app.settings.redis_prefix, user.user_id
        );
        let members: i64 = redis::cmd("ZCARD")
            .arg(&registry)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(members, 1, "{backend}");
        let ttl: i64 = redis::cmd("TTL")
            .arg(&registry)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            (0..=1).contains(&ttl),
            "{backend}: the index never outlives its newest family ({ttl})"
        );

        // Real time is the subject here: Redis expires the keys by itself.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let refreshed = refresh(&app, backend, &tokens.refresh).await;
        assert_error(refreshed, StatusCode::UNAUTHORIZED, "invalid_token").await;
        assert!(
            sessions_of(&app, backend, &tokens.access).await.is_empty(),
            "{backend}"
        );
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&registry)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            exists, 0,
            "{backend}: no index entry outlives its credential"
        );
    }
}

pub async fn stateless_jwt_refresh_works_but_cannot_be_revoked_or_listed(store: &Store) {
    let app = store
        .spawn_with(|s| s.jwt_refresh = authlab::config::RefreshKind::Stateless)
        .await;
    let user = app.register().await;
    let tokens = login_tokens(&app, Backend::Jwt, &user).await;
    assert_eq!(
        tokens.refresh.split('.').count(),
        3,
        "the refresh token is a JWT"
    );
    let next = tokens_from(refresh(&app, Backend::Jwt, &tokens.refresh).await).await;
    assert_eq!(
        app.me(Backend::Jwt, &next.access).await.status(),
        StatusCode::OK
    );
    // No state, so no reuse detection: the spent refresh token still works...
    assert_eq!(
        refresh(&app, Backend::Jwt, &tokens.refresh).await.status(),
        StatusCode::OK
    );
    // ...even after logout, which (with the denylist) ends the access tokens only.
    assert_eq!(
        app.logout(Backend::Jwt, &next.access).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        refresh(&app, Backend::Jwt, &tokens.refresh).await.status(),
        StatusCode::OK
    );
    // And the server has no list of sessions to show.
    let fresh = login_tokens(&app, Backend::Jwt, &user).await;
    let listing = app
        .client
        .get(app.url("/jwt/sessions"))
        .bearer_auth(fresh.access.value())
        .send()
        .await
        .unwrap();
    assert_error(listing, StatusCode::NOT_IMPLEMENTED, "unsupported").await;
}

pub async fn a_password_change_with_stateless_jwt_refresh_still_succeeds(store: &Store) {
    let app = store
        .spawn_with(|s| s.jwt_refresh = authlab::config::RefreshKind::Stateless)
        .await;
    let (user, sid) = app.logged_in(Backend::Session).await;
    let response = app
        .authed(Method::POST, "/users/me/password", &sid)
        .json(&json!({ "old_password": user.password, "new_password": "a brand new password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.me(Backend::Session, &sid).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_password_change_that_cannot_revoke_everything_leaves_the_password_unchanged() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| s.redis.url = url).await;
    let (user, sid) = app.logged_in(Backend::Session).await;
    redis.stop();
    let response = app
        .authed(Method::POST, "/users/me/password", &sid)
        .json(&json!({ "old_password": user.password, "new_password": "a brand new password" }))
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "backend_unavailable",
    )
    .await;
    // The password is unchanged: the old one still works, so the client can retry later.
    let login = app
        .login_response(Backend::Session, &user.username, &user.password)
        .await;
    assert_eq!(login.status(), StatusCode::OK);
}

/// Generates the lifecycle tests that run on every store (the machine's Redis here, a Redis
/// Cluster in `tests/api/cluster.rs`), with the same names.
macro_rules! lifecycle_suite {
    ($store:expr) => {
        #[tokio::test]
        async fn refresh_rotates_both_tokens_and_spends_the_old_refresh_token() {
            crate::lifecycle::refresh_rotates_both_tokens_and_spends_the_old_refresh_token(&$store).await
        }
        #[tokio::test]
        async fn a_reused_refresh_token_revokes_its_whole_family_and_nothing_else() {
            crate::lifecycle::a_reused_refresh_token_revokes_its_whole_family_and_nothing_else(&$store).await
        }
        #[tokio::test]
        async fn within_the_grace_window_a_retry_gets_the_same_successor() {
            crate::lifecycle::within_the_grace_window_a_retry_gets_the_same_successor(&$store).await
        }
        #[tokio::test]
        async fn logout_also_kills_the_refresh_token() {
            crate::lifecycle::logout_also_kills_the_refresh_token(&$store).await
        }
        #[tokio::test]
        async fn garbage_refresh_tokens_are_401_and_malformed_bodies_400() {
            crate::lifecycle::garbage_refresh_tokens_are_401_and_malformed_bodies_400(&$store).await
        }
        #[tokio::test]
        async fn each_backend_lists_revokes_one_and_logs_out_everywhere() {
            crate::lifecycle::each_backend_lists_revokes_one_and_logs_out_everywhere(&$store).await
        }
        #[tokio::test]
        async fn after_logout_all_the_very_next_request_is_refused_except_for_jwt_without_a_denylist() {
            crate::lifecycle::after_logout_all_the_very_next_request_is_refused_except_for_jwt_without_a_denylist(&$store).await
        }
        #[tokio::test]
        async fn changing_the_password_revokes_every_credential_on_every_backend() {
            crate::lifecycle::changing_the_password_revokes_every_credential_on_every_backend(&$store).await
        }
        #[tokio::test]
        async fn rfc7009_revocation_answers_200_and_kills_what_it_names() {
            crate::lifecycle::rfc7009_revocation_answers_200_and_kills_what_it_names(&$store).await
        }
        #[tokio::test]
        async fn rfc7662_introspection_describes_live_tokens_and_nothing_else() {
            crate::lifecycle::rfc7662_introspection_describes_live_tokens_and_nothing_else(&$store).await
        }
        #[tokio::test]
        async fn stateless_jwt_refresh_works_but_cannot_be_revoked_or_listed() {
            crate::lifecycle::stateless_jwt_refresh_works_but_cannot_be_revoked_or_listed(&$store).await
        }
        #[tokio::test]
        async fn a_password_change_with_stateless_jwt_refresh_still_succeeds() {
            crate::lifecycle::a_password_change_with_stateless_jwt_refresh_still_succeeds(&$store).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_refreshes_within_the_grace_window_all_succeed_with_one_successor() {
            crate::lifecycle::concurrent_refreshes_within_the_grace_window_all_succeed_with_one_successor(&$store).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn without_grace_racing_refreshes_have_exactly_one_winner_and_trip_the_alarm() {
            crate::lifecycle::without_grace_racing_refreshes_have_exactly_one_winner_and_trip_the_alarm(&$store).await
        }
    };
}

pub(crate) use lifecycle_suite;

mod standalone {
    crate::lifecycle::lifecycle_suite!(crate::helpers::Store::Standalone);
}
