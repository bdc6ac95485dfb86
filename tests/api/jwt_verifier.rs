//! Issuer and verifier (`--role issuer|verifier`): a verifier holds no private key, checks the
//! issuer's tokens with the keys of its JWKS, refetches on an unknown `kid` (one flight, one per
//! cooldown), keeps its last good set when the issuer is down, refuses a JWKS with a symmetric
//! key, and asks the same denylist. Two real apps per test: the issuer serves the JWKS over HTTP
//! and the verifier fetches it. Where a JWKS the issuer would never publish is needed, or the
//! fetches must be counted, a small HTTP server of the test's own serves it (a real server on a
//! real socket: the verifier's HTTP client is not replaced).
//!
//! Also here: the verified-token cache seen through HTTP, and SIGHUP on the real binary.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authlab::config::{JwtAlg, Role, Settings};
use authlab::startup::Application;
use authlab_jwt::keys::KeyState;
use authlab_jwt::{KeyAlg, KeyDir};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::jwt_forgery::now;

const ACCESS_TTL: Duration = Duration::from_secs(900);

fn key_dir(alg: KeyAlg) -> KeyDir {
    let dir = KeyDir::new(std::env::temp_dir().join(format!("authlab-keys-{}", Uuid::new_v4())));
    dir.generate(alg, now()).unwrap();
    dir.rotate(None, ACCESS_TTL, now()).unwrap();
    dir
}

fn jwt_alg(alg: KeyAlg) -> JwtAlg {
    match alg {
        KeyAlg::EdDSA => JwtAlg::EdDsa,
        KeyAlg::ES256 => JwtAlg::Es256,
    }
}

/// The issuer's settings: signs with the keys of `dir`, re-read every 100 ms.
fn issuer_settings(settings: &mut Settings, dir: &KeyDir, alg: KeyAlg) {
    settings.role = Role::Issuer;
    settings.jwt_alg = jwt_alg(alg);
    settings.jwt_keys_dir = Some(dir.path().to_owned());
    settings.jwt_keys_reload = Duration::from_millis(100);
    settings.access_ttl = ACCESS_TTL;
}

async fn spawn_issuer(dir: &KeyDir, alg: KeyAlg) -> TestApp {
    spawn_app_with(|settings| issuer_settings(settings, dir, alg)).await
}

/// A verifier's settings: no secret, no key directory, the JWKS at `url`, the Redis key space
/// (denylist) of `peer`.
fn verifier_settings(settings: &mut Settings, url: String, peer: &TestApp) {
    settings.role = Role::Verifier;
    settings.jwt_secret = None;
    settings.jwks_url = Some(url);
    settings.redis_prefix = peer.settings.redis_prefix.clone();
}

async fn spawn_verifier(url: String, peer: &TestApp) -> TestApp {
    spawn_app_with(|settings| verifier_settings(settings, url, peer)).await
}

fn jwks_url(app: &TestApp) -> String {
    app.url("/.well-known/jwks.json")
}

/// Waits until `/readyz` of `app` says ready (its first JWKS fetch has landed).
async fn wait_ready(app: &TestApp) {
    let ready = eventually(Duration::from_secs(10), || async {
        app.get("/readyz").await.status() == StatusCode::OK
    })
    .await;
    assert!(ready, "the verifier never became ready");
}

async fn jwks_etag(app: &TestApp) -> String {
    app.get("/.well-known/jwks.json")
        .await
        .headers()
        .get(header::ETAG)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Waits until the issuer has re-read its key directory as it is now (its JWKS is the one the
/// directory's current state gives, not one read between two of the test's changes).
async fn wait_for_reload(app: &TestApp, dir: &KeyDir) {
    let expected = dir.load().unwrap().etag().to_owned();
    let reloaded = eventually(Duration::from_secs(5), || async {
        jwks_etag(app).await == expected
    })
    .await;
    assert!(reloaded, "the issuer did not re-read the key directory");
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

fn bearer(token: &str) -> Credential {
    Credential::Bearer(token.to_owned())
}

/// A token naming a made-up key of the right form (43 base64url characters), with a signature
/// of the right length that nothing signed.
fn unknown_kid_token(user: &TestUser) -> String {
    let kid = URL_SAFE_NO_PAD.encode(Uuid::new_v4().as_bytes().repeat(2));
    assert_eq!(kid.len(), 43);
    let header = json!({"typ": "JWT", "alg": "EdDSA", "kid": kid});
    let claims = crate::jwt_forgery::claims_for(user);
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!(
        "{}.{}.{}",
        b64(&header),
        b64(&claims),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}

/// A small HTTP/1.1 server of the test's own on a free port: answers every request with the
/// current `body` (200, `application/json`) and counts the requests. Stops when dropped.
struct JwksServer {
    url: String,
    body: Arc<Mutex<Vec<u8>>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl JwksServer {
    fn start(body: &[u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let body = Arc::new(Mutex::new(body.to_vec()));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (served, counted, stopped) = (body.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        Self {
            url,
            body,
            requests,
            stop,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn serve(&self, body: &[u8]) {
        *self.body.lock().unwrap() = body.to_vec();
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_verifier_accepts_the_issuers_eddsa_and_es256_tokens_and_issues_nothing() {
    for alg in [KeyAlg::EdDSA, KeyAlg::ES256] {
        let dir = key_dir(alg);
        let issuer = spawn_issuer(&dir, alg).await;
        let verifier = spawn_verifier(jwks_url(&issuer), &issuer).await;
        wait_ready(&verifier).await;

        let (user, credential) = issuer.logged_in(Backend::Jwt).await;
        assert_eq!(header_of(credential.value())["alg"], alg.name());
        let response = verifier.me(Backend::Jwt, &credential).await;
        assert_eq!(response.status(), StatusCode::OK, "{alg}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["user_id"], user.user_id);
        assert_eq!(body["username"], user.username);

        // Logins, refreshes and logouts belong to the issuer.
        let login = verifier
            .login_response(Backend::Jwt, &user.username, &user.password)
            .await;
        assert_error(login, StatusCode::NOT_IMPLEMENTED, "not_an_issuer").await;
        let refresh = verifier
            .post_json("/jwt/refresh", &json!({"refresh_token": "x"}))
            .await;
        assert_error(refresh, StatusCode::NOT_IMPLEMENTED, "not_an_issuer").await;
        let logout = verifier.logout(Backend::Jwt, &credential).await;
        assert_error(logout, StatusCode::NOT_IMPLEMENTED, "not_an_issuer").await;
        // The token still works on both: the refused logout ended nothing.
        assert_eq!(
            issuer.me(Backend::Jwt, &credential).await.status(),
            StatusCode::OK
        );
        // A forged token is refused as on any instance.
        let mut forged = credential.value().to_owned();
        forged.pop();
        forged.push(if credential.value().ends_with('A') {
            'B'
        } else {
            'A'
        });
        assert_error(
            verifier.me(Backend::Jwt, &bearer(&forged)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
        std::fs::remove_dir_all(dir.path()).unwrap();
    }
}

/// What `Application::build` says about these settings, if it refuses them.
async fn refusal(customise: impl FnOnce(&mut Settings)) -> String {
    let mut settings = test_settings();
    customise(&mut settings);
    match Application::build(settings).await {
        Ok(_) => panic!("start-up should have been refused"),
        Err(err) => err.to_string(),
    }
}

#[tokio::test]
async fn a_verifier_refuses_to_start_with_a_private_key_or_without_a_jwks_url() {
    let url = Some("http://127.0.0.1:9/.well-known/jwks.json".to_owned());
    // The test settings carry a JWT secret.
    let with_secret = refusal(|s| {
        s.role = Role::Verifier;
        s.jwks_url = url.clone();
    })
    .await;
    assert!(
        with_secret.contains("holds no private key"),
        "{with_secret}"
    );
    assert!(with_secret.contains("--jwt-secret-file"), "{with_secret}");

    let with_keys = refusal(|s| {
        s.role = Role::Verifier;
        s.jwt_secret = None;
        s.jwks_url = url.clone();
        s.jwt_keys_dir = Some(PathBuf::from("/nonexistent"));
    })
    .await;
    assert!(with_keys.contains("--jwt-keys-dir"), "{with_keys}");

    let without_url = refusal(|s| {
        s.role = Role::Verifier;
        s.jwt_secret = None;
    })
    .await;
    assert!(without_url.contains("needs --jwks-url"), "{without_url}");

    let https = refusal(|s| {
        s.role = Role::Verifier;
        s.jwt_secret = None;
        s.jwks_url = Some("https://issuer.example/.well-known/jwks.json".to_owned());
    })
    .await;
    assert!(https.contains("JWKS"), "{https}");

    let hmac_issuer = refusal(|s| s.role = Role::Issuer).await;
    assert!(hmac_issuer.contains("EdDSA or ES256"), "{hmac_issuer}");

    let url_elsewhere = refusal(|s| s.jwks_url = url.clone()).await;
    assert!(url_elsewhere.contains("--role verifier"), "{url_elsewhere}");
}

#[tokio::test]
async fn a_rotation_to_a_key_the_verifier_never_fetched_is_picked_up_by_the_unknown_kid_refetch() {
    let dir = key_dir(KeyAlg::EdDSA);
    let issuer = spawn_issuer(&dir, KeyAlg::EdDSA).await;
    let verifier = spawn_verifier(jwks_url(&issuer), &issuer).await;
    wait_ready(&verifier).await;
    let (user, before) = issuer.logged_in(Backend::Jwt).await;
    assert_eq!(
        verifier.me(Backend::Jwt, &before).await.status(),
        StatusCode::OK
    );

    // Two rotations: the key that signs now was generated after the verifier's fetch (and its
    // next timed fetch is minutes away), as `authlab keys rotate` run twice would leave it.
    dir.rotate(None, ACCESS_TTL, now()).unwrap();
    dir.rotate(None, ACCESS_TTL, now()).unwrap();
    wait_for_reload(&issuer, &dir).await;
    let after = issuer.login(Backend::Jwt, &user).await;
    assert_ne!(
        header_of(after.value())["kid"],
        header_of(before.value())["kid"]
    );
    let active = dir
        .state()
        .unwrap()
        .keys
        .into_iter()
        .find(|k| k.state == KeyState::Active)
        .unwrap();
    assert_eq!(header_of(after.value())["kid"], active.kid);

    assert_eq!(
        verifier.me(Backend::Jwt, &after).await.status(),
        StatusCode::OK,
        "the new key is fetched on its first use"
    );
    // The retired key is still published, so tokens it signed still pass.
    assert_eq!(
        verifier.me(Backend::Jwt, &before).await.status(),
        StatusCode::OK
    );
    std::fs::remove_dir_all(dir.path()).unwrap();
}

#[tokio::test]
async fn an_unknown_kid_flood_costs_the_issuer_one_fetch_per_cooldown() {
    let dir = key_dir(KeyAlg::EdDSA);
    let issuer = spawn_issuer(&dir, KeyAlg::EdDSA).await;
    // The issuer's own JWKS, served by a server that counts what it is asked.
    let body = issuer
        .get("/.well-known/jwks.json")
        .await
        .bytes()
        .await
        .unwrap();
    let server = JwksServer::start(&body);
    let verifier = spawn_verifier(server.url.clone(), &issuer).await;
    wait_ready(&verifier).await;
    assert_eq!(server.requests(), 1, "the start-up fetch");

    let (user, credential) = issuer.logged_in(Backend::Jwt).await;
    for _ in 0..200 {
        let response = verifier
            .me(Backend::Jwt, &bearer(&unknown_kid_token(&user)))
            .await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    assert_eq!(
        server.requests(),
        2,
        "200 unknown kids within one cooldown make one fetch"
    );
    assert_eq!(
        verifier.me(Backend::Jwt, &credential).await.status(),
        StatusCode::OK
    );
    std::fs::remove_dir_all(dir.path()).unwrap();
}

#[tokio::test]
async fn with_the_issuer_down_the_verifier_keeps_its_last_good_keys_until_they_are_too_stale() {
    let dir = key_dir(KeyAlg::ES256);
    let issuer = spawn_issuer(&dir, KeyAlg::ES256).await;
    let verifier = spawn_verifier(jwks_url(&issuer), &issuer).await;
    wait_ready(&verifier).await;
    let (user, credential) = issuer.logged_in(Backend::Jwt).await;
    drop(issuer);

    // An unknown kid makes the verifier try the (stopped) issuer; the fetch fails...
    let response = verifier
        .me(Backend::Jwt, &bearer(&unknown_kid_token(&user)))
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // ...and the keys it had still verify.
    assert_eq!(
        verifier.me(Backend::Jwt, &credential).await.status(),
        StatusCode::OK
    );
    assert_eq!(verifier.get("/readyz").await.status(), StatusCode::OK);

    // A day later (--jwks-max-stale) without a good fetch, the keys are not used any more.
    verifier
        .clock
        .advance(verifier.settings.jwks_max_stale + Duration::from_secs(1));
    assert_error(
        verifier.me(Backend::Jwt, &credential).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "jwks_unavailable",
    )
    .await;
    let ready = verifier.get("/readyz").await;
    let body = assert_error(ready, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    assert_eq!(body["checks"]["jwks"], "unavailable", "{body}");
    std::fs::remove_dir_all(dir.path()).unwrap();
}

#[tokio::test]
async fn a_jwks_with_an_oct_key_is_refused_and_its_value_never_becomes_an_hmac_key() {
    let dir = key_dir(KeyAlg::EdDSA);
    let issuer = spawn_issuer(&dir, KeyAlg::EdDSA).await;
    let good = issuer
        .get("/.well-known/jwks.json")
        .await
        .bytes()
        .await
        .unwrap();
    // The issuer's keys plus a symmetric one whose value anyone can read.
    let secret = b"a-public-value-that-must-never-become-an-hmac-key";
    let oct_kid = URL_SAFE_NO_PAD.encode([9u8; 32]);
    let mut bad: Value = serde_json::from_slice(&good).unwrap();
    bad["keys"].as_array_mut().unwrap().push(json!({
        "kty": "oct", "k": URL_SAFE_NO_PAD.encode(secret), "alg": "HS256", "use": "sig", "kid": oct_kid,
    }));
    let bad = serde_json::to_vec(&bad).unwrap();

    // Served from the start: the set is refused and the verifier never becomes ready. (No
    // cooldown, so that each request below may fetch again.)
    let server = JwksServer::start(&bad);
    let verifier = spawn_app_with(|settings| {
        verifier_settings(settings, server.url.clone(), &issuer);
        settings.jwks_unknown_kid_cooldown = Duration::ZERO;
    })
    .await;
    let fetched = eventually(Duration::from_secs(10), || async { server.requests() >= 1 }).await;
    assert!(fetched);
    let (user, credential) = issuer.logged_in(Backend::Jwt).await;
    let ready = verifier.get("/readyz").await;
    assert_error(ready, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    assert_error(
        verifier.me(Backend::Jwt, &credential).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "jwks_unavailable",
    )
    .await;

    // The issuer's own set: a verifier without keys fetches on the next request, and is ready.
    server.serve(&good);
    assert_eq!(
        verifier.me(Backend::Jwt, &credential).await.status(),
        StatusCode::OK
    );
    wait_ready(&verifier).await;
    let mut claims = crate::jwt_forgery::claims_for(&user);
    claims["exp"] = (now() + 600).into();
    let hmac_token = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(oct_kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap();
    // A token MACed with the oct value is refused: there is no such key, and HS256 is no
    // algorithm of any key a verifier holds.
    assert_error(
        verifier.me(Backend::Jwt, &bearer(&hmac_token)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // The bad set again (fetched for an unknown kid): refused as a whole, the good keys stay.
    server.serve(&bad);
    let before = server.requests();
    let response = verifier
        .me(Backend::Jwt, &bearer(&unknown_kid_token(&user)))
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(server.requests(), before + 1);
    assert_eq!(
        verifier.me(Backend::Jwt, &credential).await.status(),
        StatusCode::OK
    );
    std::fs::remove_dir_all(dir.path()).unwrap();
}

#[tokio::test]
async fn a_token_logged_out_at_the_issuer_is_refused_by_the_verifier_even_when_cached() {
    issuer_and_verifier_share_a_topology(None).await;
}

#[tokio::test]
async fn a_cached_token_of_a_pruned_key_is_refused_over_http() {
    let dir = key_dir(KeyAlg::ES256);
    let app = spawn_app_with(|settings| {
        issuer_settings(settings, &dir, KeyAlg::ES256);
        settings.role = Role::All;
    })
    .await;
    let (_, credential) = app.logged_in(Backend::Jwt).await;
    for _ in 0..2 {
        assert_eq!(
            app.me(Backend::Jwt, &credential).await.status(),
            StatusCode::OK
        );
    }
    dir.rotate(None, ACCESS_TTL, now()).unwrap();
    dir.rotate(None, ACCESS_TTL, now()).unwrap();
    // `authlab keys prune` once the retired keys' time has come (chosen, not waited for).
    assert_eq!(dir.prune(now() + 86_400).unwrap().len(), 2);
    wait_for_reload(&app, &dir).await;
    assert_error(
        app.me(Backend::Jwt, &credential).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    std::fs::remove_dir_all(dir.path()).unwrap();
}

/// `authlab serve` as a process, with the keys of `dir` re-read only hourly (so a prompt reload
/// can only be SIGHUP's doing). Returns the child and its base URL.
fn serve_keyed(dir: &KeyDir) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = crate::binary::authlab()
        .env("AUTHLAB_JWT_ALG", "EdDSA")
        .env("AUTHLAB_JWT_KEYS_DIR", dir.path())
        .env("AUTHLAB_JWT_KEYS_RELOAD", "1h")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("a 'listening on' line")
            .expect("readable");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().to_owned();
        }
    };
    // Keep draining standard error so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (child, base)
}

#[tokio::test]
async fn sighup_rereads_the_key_directory_at_once() {
    let dir = key_dir(KeyAlg::EdDSA);
    let (mut child, base) = serve_keyed(&dir);
    let client = reqwest::Client::new();
    let username = format!("user-{}", Uuid::new_v4().simple());
    let user = json!({"username": username, "password": PASSWORD});
    let created = client
        .post(format!("{base}/users"))
        .json(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let login: Value = client
        .post(format!("{base}/jwt/login"))
        .json(&user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let me = || async {
        client
            .get(format!("{base}/jwt/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(me().await, StatusCode::OK);

    let etag = || async {
        client
            .get(format!("{base}/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .headers()
            .get(header::ETAG)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let before = etag().await;
    dir.rotate(None, ACCESS_TTL, now()).unwrap();
    dir.rotate(None, ACCESS_TTL, now()).unwrap();
    assert_eq!(dir.prune(now() + 86_400).unwrap().len(), 2);
    assert_eq!(
        etag().await,
        before,
        "no reload for an hour without a signal"
    );

    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let reloaded = eventually(Duration::from_secs(5), || async { etag().await != before }).await;
    let refused = me().await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(reloaded, "SIGHUP did not reload the key directory");
    assert_eq!(refused, StatusCode::UNAUTHORIZED, "the pruned key's token");
    std::fs::remove_dir_all(dir.path()).unwrap();
}

/// An issuer and a verifier on the same Redis (`url`: a Cluster's seeds or a Sentinel set; `None`:
/// the suite's own), for both asymmetric algorithms and both denylist modes: the verifier accepts
/// the issuer's token twice (the second from its verified-token cache, and in the cached mode from
/// its denylist cache too), and refuses it once the issuer has logged it out (the denylist entry
/// the issuer wrote, read by the verifier through the same topology).
async fn issuer_and_verifier_share_a_topology(url: Option<String>) {
    use authlab::config::DenylistMode;
    for alg in [KeyAlg::EdDSA, KeyAlg::ES256] {
        for denylist in [DenylistMode::On, DenylistMode::Cached] {
            let dir = key_dir(alg);
            let issuer = spawn_app_with(|settings| {
                issuer_settings(settings, &dir, alg);
                if let Some(url) = &url {
                    settings.redis.url = url.clone();
                }
                settings.jwt_denylist = denylist;
            })
            .await;
            let verifier = spawn_app_with(|settings| {
                verifier_settings(settings, jwks_url(&issuer), &issuer);
                if let Some(url) = &url {
                    settings.redis.url = url.clone();
                }
                settings.jwt_denylist = denylist;
            })
            .await;
            wait_ready(&verifier).await;
            let (_, credential) = issuer.logged_in(Backend::Jwt).await;
            for _ in 0..2 {
                assert_eq!(
                    verifier.me(Backend::Jwt, &credential).await.status(),
                    StatusCode::OK,
                    "{alg:?}, denylist {denylist:?}"
                );
            }
            assert_eq!(
                issuer.logout(Backend::Jwt, &credential).await.status(),
                StatusCode::NO_CONTENT
            );
            assert_error(
                verifier.me(Backend::Jwt, &credential).await,
                StatusCode::UNAUTHORIZED,
                "token_revoked",
            )
            .await;
            std::fs::remove_dir_all(dir.path()).unwrap();
        }
    }
}

#[tokio::test]
async fn an_issuer_and_a_verifier_on_a_redis_cluster_share_the_denylist() {
    let cluster = crate::redis_cluster::RedisCluster::shared();
    issuer_and_verifier_share_a_topology(Some(cluster.url())).await;
}

#[tokio::test]
async fn an_issuer_and_a_verifier_behind_sentinel_share_the_denylist() {
    let set = crate::sentinel::SentinelSet::start().await;
    issuer_and_verifier_share_a_topology(Some(set.url())).await;
}
