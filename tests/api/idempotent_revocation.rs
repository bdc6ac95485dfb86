//! Revocations are idempotent: whatever happened to an earlier attempt, an acknowledged
//! revocation means every access token of the login is refused.
//!
//! The fault is the one that found the bug: Redis runs a revocation's write *late*, after the
//! app gave up waiting (`--redis-timeout`) and answered 503. `CLIENT PAUSE <ms> WRITE` holds the
//! request's first write back while its reads go through, then `SIGSTOP` freezes Redis until the
//! app has answered 503; after `SIGCONT` Redis runs the held write. The client then retries, as a
//! 503 tells it to, and the retry must finish the job before it answers success.
//!
//! Each test runs a private `redis-server` (stopped by pid, never the machine's shared one), and
//! checks both token backends: `/redis` (opaque tokens, each a key of its own) and `/jwt` (with
//! the denylist on, as the test apps have it).

use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use crate::client_cache::redis_cli;
use crate::helpers::*;
use crate::lifecycle::{
    Tokens, form, login_tokens, refresh, revoked_code, sessions_of, tokens_from,
};

/// The apps' `--redis-timeout`: short, so an interrupted request answers 503 quickly.
const REDIS_TIMEOUT: Duration = Duration::from_millis(200);
/// How long Redis holds writes back: long enough to reach the `SIGSTOP`.
const PAUSE_MS: &str = "300";
/// How long Redis is frozen: longer than the app waits for it.
const STOPPED: Duration = Duration::from_millis(500);
/// How long a check waits for the app to talk to Redis again after `SIGCONT`.
const RECOVERY: Duration = Duration::from_secs(5);

/// An app on a Redis of its own that the test can pause and freeze.
struct Faulty {
    redis: PrivateRedis,
    app: TestApp,
}

impl Faulty {
    async fn start() -> Self {
        let redis = PrivateRedis::start();
        let url = redis.url();
        let app = spawn_app_with(|s| {
            s.redis.url = url;
            s.redis.timeout = REDIS_TIMEOUT;
        })
        .await;
        Self { redis, app }
    }

    /// Sends `request` under the fault (see the module docs) and returns its answer, given while
    /// Redis was frozen. Redis runs whatever write it held back once it is resumed.
    async fn interrupted(&self, request: RequestBuilder) -> Response {
        assert_eq!(
            redis_cli(&self.redis, &["CLIENT", "PAUSE", PAUSE_MS, "WRITE"]).trim(),
            "OK"
        );
        let pending = tokio::spawn(request.send());
        // The request's reads go through meanwhile; its first write waits for the pause to end.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let resume = self.redis.pause();
        let stopped_at = Instant::now();
        let response = pending.await.unwrap().unwrap();
        tokio::time::sleep(STOPPED.saturating_sub(stopped_at.elapsed())).await;
        drop(resume); // SIGCONT: Redis runs the held write now, after the app gave up on it.
        assert_error_status(&response, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            eventually(RECOVERY, || async {
                self.app.get("/readyz").await.status() == StatusCode::OK
            })
            .await,
            "the app talks to Redis again"
        );
        response
    }

    /// A login of `user` on `backend` refreshed three times: four live access tokens and the
    /// last refresh token, with the refresh tokens spent on the way.
    async fn four_access_tokens(&self, backend: Backend, user: &TestUser) -> Login {
        let first = login_tokens(&self.app, backend, user).await;
        let mut access = vec![first.access.clone()];
        let mut spent = Vec::new();
        let mut current = first;
        for _ in 0..3 {
            let next = tokens_from(refresh(&self.app, backend, &current.refresh).await).await;
            spent.push(current.refresh);
            access.push(next.access.clone());
            current = next;
        }
        for token in &access {
            assert_eq!(self.app.me(backend, token).await.status(), StatusCode::OK);
        }
        Login {
            access,
            spent,
            last: current,
        }
    }

    /// The id of the family a login's token belongs to, as its session list shows it.
    async fn session_id(&self, backend: Backend, credential: &Credential) -> String {
        sessions_of(&self.app, backend, credential)
            .await
            .iter()
            .find(|s| s["current"] == true)
            .and_then(|s| s["id"].as_str())
            .expect("the login is listed")
            .to_owned()
    }

    /// Waits until the interrupted revocation has run (late) in Redis: of the user's two logins,
    /// only one is still listed. From here on the retry faces a half-done revocation.
    async fn ran_late(&self, backend: Backend, witness: &Credential) {
        assert!(
            eventually(RECOVERY, || async {
                let listed = self
                    .app
                    .authed(Method::GET, &format!("/{backend}/sessions"), witness)
                    .send()
                    .await
                    .unwrap();
                if listed.status() != StatusCode::OK {
                    return false;
                }
                let body: Value = listed.json().await.unwrap();
                body["sessions"]
                    .as_array()
                    .is_some_and(|all| all.len() == 1)
            })
            .await,
            "{backend}: the held write ran once Redis was resumed"
        );
    }

    /// Every one of `tokens` is refused on `/{backend}/me`.
    async fn all_refused(&self, backend: Backend, tokens: &[Credential]) {
        let mut answers = Vec::new();
        for token in tokens {
            answers.push(self.app.me(backend, token).await.status());
        }
        assert!(
            answers.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
            "{backend}: every access token of the login is refused, got {answers:?}"
        );
        for token in tokens {
            assert_error(
                self.app.me(backend, token).await,
                StatusCode::UNAUTHORIZED,
                revoked_code(backend),
            )
            .await;
        }
    }
}

/// One login and what it was given.
struct Login {
    /// Every access token, oldest first.
    access: Vec<Credential>,
    /// The refresh tokens spent by the three refreshes, oldest first.
    spent: Vec<String>,
    /// The newest pair.
    last: Tokens,
}

fn assert_error_status(response: &Response, status: StatusCode) {
    assert_eq!(response.status(), status, "{response:?}");
}

#[tokio::test]
async fn a_logout_retried_after_a_late_write_refuses_every_access_token_of_the_login() {
    let faulty = Faulty::start().await;
    for backend in token_backends() {
        let user = faulty.app.register().await;
        let login = faulty.four_access_tokens(backend, &user).await;
        let witness = faulty.app.login(backend, &user).await;

        let path = format!("/{backend}/logout");
        let first = faulty.app.authed(Method::POST, &path, &login.access[0]);
        faulty.interrupted(first).await;
        faulty.ran_late(backend, &witness).await;

        let retry = faulty.app.logout(backend, &login.access[0]).await;
        assert_eq!(retry.status(), StatusCode::NO_CONTENT, "{backend}");
        faulty.all_refused(backend, &login.access).await;
        let refreshed = refresh(&faulty.app, backend, &login.last.refresh).await;
        assert_error(refreshed, StatusCode::UNAUTHORIZED, "invalid_token").await;
        // Another login of the same user is untouched.
        assert_eq!(
            faulty.app.me(backend, &witness).await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_logout_all_retried_after_a_late_write_refuses_every_access_token() {
    let faulty = Faulty::start().await;
    for backend in token_backends() {
        let user = faulty.app.register().await;
        let requester = login_tokens(&faulty.app, backend, &user).await;
        // Two logins: whichever is ended first is the one whose end is held back and runs late.
        let login = faulty.four_access_tokens(backend, &user).await;

        let path = format!("/{backend}/logout-all");
        faulty
            .interrupted(faulty.app.authed(Method::POST, &path, &requester.access))
            .await;
        faulty.ran_late(backend, &requester.access).await;

        let retry = faulty
            .app
            .authed(Method::POST, &path, &requester.access)
            .send()
            .await
            .unwrap();
        assert_eq!(retry.status(), StatusCode::OK, "{backend}");
        let body: Value = retry.json().await.unwrap();
        assert_eq!(
            body["revoked"], 2,
            "{backend}: both logins, the half-ended one included"
        );
        let mut every = login.access.clone();
        every.push(requester.access.clone());
        faulty.all_refused(backend, &every).await;
    }
}

#[tokio::test]
async fn a_session_revocation_retried_after_a_late_write_refuses_every_access_token_of_it() {
    let faulty = Faulty::start().await;
    for backend in token_backends() {
        let user = faulty.app.register().await;
        let requester = faulty.app.login(backend, &user).await;
        let login = faulty.four_access_tokens(backend, &user).await;
        let family = faulty.session_id(backend, &login.access[0]).await;

        let path = format!("/{backend}/sessions/{family}");
        faulty
            .interrupted(faulty.app.authed(Method::DELETE, &path, &requester))
            .await;
        faulty.ran_late(backend, &requester).await;

        let retry = faulty
            .app
            .authed(Method::DELETE, &path, &requester)
            .send()
            .await
            .unwrap();
        assert_eq!(retry.status(), StatusCode::NO_CONTENT, "{backend}");
        faulty.all_refused(backend, &login.access).await;
        assert_eq!(
            faulty.app.me(backend, &requester).await.status(),
            StatusCode::OK
        );
        // Finished is finished: a third attempt finds nothing left to revoke.
        let again = faulty
            .app
            .authed(Method::DELETE, &path, &requester)
            .send()
            .await
            .unwrap();
        assert_error(again, StatusCode::NOT_FOUND, "session_not_found").await;
    }
}

#[tokio::test]
async fn a_reuse_detection_retried_after_a_late_write_refuses_every_access_token_of_the_login() {
    let faulty = Faulty::start().await;
    for backend in token_backends() {
        let user = faulty.app.register().await;
        let login = faulty.four_access_tokens(backend, &user).await;
        let stolen = &login.spent[0];

        // The write held back here is the exchange itself (a script that may write): it runs
        // late and ends nothing, and the retry must still end the family and every token of it.
        let path = format!("/{backend}/refresh");
        let replay = faulty
            .app
            .client
            .post(faulty.app.url(&path))
            .json(&json!({ "refresh_token": stolen }));
        faulty.interrupted(replay).await;

        let retry = refresh(&faulty.app, backend, stolen).await;
        assert_error(retry, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
        faulty.all_refused(backend, &login.access).await;
        let successor = refresh(&faulty.app, backend, &login.last.refresh).await;
        assert_error(successor, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
}

#[tokio::test]
async fn a_password_change_retried_after_a_late_write_refuses_every_access_token() {
    let faulty = Faulty::start().await;
    let user = faulty.app.register().await;
    let requester = faulty.app.login(Backend::Redis, &user).await;
    let opaque = faulty.four_access_tokens(Backend::Redis, &user).await;
    let jwt = faulty.four_access_tokens(Backend::Jwt, &user).await;
    let change = || {
        faulty
            .app
            .authed(Method::POST, "/users/me/password", &requester)
            .json(&json!({ "old_password": user.password, "new_password": "a brand new password" }))
    };

    // The first write this request sends is the login throttle's counter, so that is what is
    // held back; whatever it was, the 503 leaves the password unchanged and the retry revokes
    // everything (the revocation itself is `logout-all`'s, tested against a late write above).
    faulty.interrupted(change()).await;

    let retry = change().send().await.unwrap();
    assert_eq!(retry.status(), StatusCode::NO_CONTENT);
    let mut every = opaque.access.clone();
    every.push(requester.clone());
    faulty.all_refused(Backend::Redis, &every).await;
    faulty.all_refused(Backend::Jwt, &jwt.access).await;
}

#[tokio::test]
async fn an_rfc7009_refresh_token_revocation_retried_after_a_late_write_refuses_every_access_token()
{
    let faulty = Faulty::start().await;
    for backend in token_backends() {
        let user = faulty.app.register().await;
        let login = faulty.four_access_tokens(backend, &user).await;
        let witness = faulty.app.login(backend, &user).await;

        let path = format!("/{backend}/revoke");
        let revoke = faulty
            .app
            .client
            .post(faulty.app.url(&path))
            .form(&[("token", login.last.refresh.as_str())]);
        faulty.interrupted(revoke).await;
        faulty.ran_late(backend, &witness).await;

        let retry = form(&faulty.app, &path, &login.last.refresh).await;
        assert_eq!(retry.status(), StatusCode::OK, "{backend}");
        faulty.all_refused(backend, &login.access).await;
        assert_eq!(
            faulty.app.me(backend, &witness).await.status(),
            StatusCode::OK
        );
    }
}
