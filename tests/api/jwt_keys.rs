//! Access JWTs signed with key pairs (`--jwt-alg EdDSA|ES256 --jwt-keys-dir DIR`): login and
//! `/jwt/me` with each algorithm, the JWKS, rotation without downtime across two instances, and
//! the attacks on asymmetric JWTs, each refused as `401 invalid_token`.
//!
//! The key directory is driven as `authlab keys` drives it (the same library calls), at times the
//! test chooses, so "after the retired key's time" needs no waiting; the servers re-read the
//! directory every 100 ms and the tests poll the JWKS `ETag` until they have.

use std::path::PathBuf;
use std::time::Duration;

use authlab::config::JwtAlg;
use authlab_jwt::keys::{CLOCK_SKEW, KeyState};
use authlab_jwt::{KeyAlg, KeyDir};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::jwt_forgery::{claims_for, claims_in, now};

const ACCESS_TTL: Duration = Duration::from_secs(900);

/// A fresh key directory with an active key and a next key of `alg`.
fn key_dir(alg: KeyAlg) -> KeyDir {
    let dir = KeyDir::new(std::env::temp_dir().join(format!("authlab-keys-{}", Uuid::new_v4())));
    dir.generate(alg, now()).unwrap();
    dir.rotate(None, ACCESS_TTL, now()).unwrap();
    dir
}

fn active_kid(dir: &KeyDir) -> String {
    dir.state()
        .unwrap()
        .keys
        .into_iter()
        .find(|k| k.state == KeyState::Active)
        .unwrap()
        .kid
}

/// An app signing with the keys of `dir`, re-reading it every 100 ms.
async fn spawn_keyed(dir: &KeyDir, alg: KeyAlg) -> TestApp {
    spawn_keyed_beside(dir, alg, None).await
}

/// The same, sharing the Redis key space (denylist, refresh families) of `peer` if given, as
/// instances of one deployment do.
async fn spawn_keyed_beside(dir: &KeyDir, alg: KeyAlg, peer: Option<&TestApp>) -> TestApp {
    let path: PathBuf = dir.path().to_owned();
    let prefix = peer.map(|app| app.settings.redis_prefix.clone());
    spawn_app_with(move |settings| {
        if let Some(prefix) = prefix {
            settings.redis_prefix = prefix;
        }
        settings.jwt_alg = match alg {
            KeyAlg::EdDSA => JwtAlg::EdDsa,
            KeyAlg::ES256 => JwtAlg::Es256,
        };
        settings.jwt_keys_dir = Some(path);
        settings.jwt_keys_reload = Duration::from_millis(100);
        settings.access_ttl = ACCESS_TTL;
    })
    .await
}

async fn jwks(app: &TestApp) -> (Value, String, String) {
    let response = app.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (etag, cache) = (header(header::ETAG), header(header::CACHE_CONTROL));
    assert_eq!(cache, "public, max-age=300");
    let body = response.text().await.unwrap();
    (serde_json::from_str(&body).unwrap(), body, etag)
}

/// Waits until the app's JWKS `ETag` is no longer `old` (it has re-read the directory).
async fn wait_for_reload(app: &TestApp, old: &str) {
    let reloaded = eventually(Duration::from_secs(5), || async {
        jwks(app).await.2 != old
    })
    .await;
    assert!(reloaded, "the app did not re-read the key directory");
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// A token with exactly this header and these claims, signed by the Ed25519 key `kid` of `dir`
/// itself: a valid signature, so only the header or claims can be the reason for a refusal.
fn signed_by_key(dir: &KeyDir, kid: &str, header: &Value, claims: &Value) -> String {
    let pkcs8 = std::fs::read(dir.path().join(format!("{kid}.pk8"))).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap();
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature = pair.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

async fn status_of(app: &TestApp, token: &str) -> StatusCode {
    app.me(Backend::Jwt, &Credential::Bearer(token.to_owned()))
        .await
        .status()
}

async fn assert_invalid(app: &TestApp, token: &str, why: &str) {
    let response = app
        .me(Backend::Jwt, &Credential::Bearer(token.to_owned()))
        .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {body}");
    assert_eq!(body["error"], "invalid_token", "{why}: {body}");
}

#[tokio::test]
async fn login_and_me_work_with_eddsa_and_es256_and_the_header_names_the_key() {
    for alg in [KeyAlg::EdDSA, KeyAlg::ES256] {
        let dir = key_dir(alg);
        let app = spawn_keyed(&dir, alg).await;
        let (user, credential) = app.logged_in(Backend::Jwt).await;
        let header = header_of(credential.value());
        assert_eq!(header["alg"], alg.name(), "{header}");
        assert_eq!(header["kid"], active_kid(&dir), "{header}");
        let response = app.me(Backend::Jwt, &credential).await;
        assert_eq!(response.status(), StatusCode::OK, "{alg}");
        let me: Value = response.json().await.unwrap();
        assert_eq!(me["user_id"], user.user_id);

        // The JWKS: the active and the next key, public halves only, each with kid, alg, use.
        let (set, _, etag) = jwks(&app).await;
        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "{set}");
        for key in keys {
            assert_eq!(key["alg"], alg.name());
            assert_eq!(key["use"], "sig");
            assert_eq!(key["kid"].as_str().unwrap().len(), 43);
            assert!(
                key.get("d").is_none(),
                "a private member is published: {key}"
            );
        }
        assert!(keys.iter().any(|k| k["kid"] == header["kid"]));
        assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
        // A client holding the current set is told so.
        let response = app
            .client
            .get(app.url("/.well-known/jwks.json"))
            .header(header::IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        std::fs::remove_dir_all(dir.path()).unwrap();
    }
}

#[tokio::test]
async fn under_hs256_the_jwks_is_empty_and_publishes_no_secret() {
    let app = spawn_app().await;
    let (set, body, _) = jwks(&app).await;
    assert_eq!(set, json!({ "keys": [] }));
    assert!(!body.contains(TEST_JWT_SECRET));
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_until_prune_and_a_second_instance_agrees() {
    let dir = key_dir(KeyAlg::EdDSA);
    let first = spawn_keyed(&dir, KeyAlg::EdDSA).await;
    let second = spawn_keyed_beside(&dir, KeyAlg::EdDSA, Some(&first)).await;

    // Two instances reading one directory serve the same bytes and the same ETag, and each
    // verifies what the other signed.
    let (_, body_one, etag_one) = jwks(&first).await;
    let (_, body_two, etag_two) = jwks(&second).await;
    assert_eq!((&body_one, &etag_one), (&body_two, &etag_two));
    let (_, old_token) = first.logged_in(Backend::Jwt).await;
    let old_kid = header_of(old_token.value())["kid"].clone();
    assert_eq!(
        second.me(Backend::Jwt, &old_token).await.status(),
        StatusCode::OK
    );

    // Rotate: the old token still verifies on both, a new login signs with the new key.
    let rotated_at = now();
    dir.rotate(None, ACCESS_TTL, rotated_at).unwrap();
    wait_for_reload(&first, &etag_one).await;
    wait_for_reload(&second, &etag_one).await;
    let (_, body_one, etag_one) = jwks(&first).await;
    let (_, body_two, etag_two) = jwks(&second).await;
    assert_eq!((&body_one, &etag_one), (&body_two, &etag_two));
    for app in [&first, &second] {
        assert_eq!(
            app.me(Backend::Jwt, &old_token).await.status(),
            StatusCode::OK
        );
    }
    let (_, new_token) = second.logged_in(Backend::Jwt).await;
    let new_kid = header_of(new_token.value())["kid"].clone();
    assert_ne!(new_kid, old_kid);
    assert_eq!(new_kid, active_kid(&dir));
    assert_eq!(
        first.me(Backend::Jwt, &new_token).await.status(),
        StatusCode::OK
    );

    // Not yet past the retired key's time: prune keeps it.
    let keep_until = rotated_at + ACCESS_TTL.as_secs() + CLOCK_SKEW.as_secs();
    assert!(dir.prune(keep_until - 1).unwrap().is_empty());
    // Past it: the key is deleted, and its token is refused everywhere.
    assert_eq!(dir.prune(keep_until).unwrap().len(), 1);
    wait_for_reload(&first, &etag_one).await;
    wait_for_reload(&second, &etag_one).await;
    for app in [&first, &second] {
        assert_invalid(app, old_token.value(), "signed by a pruned key").await;
        assert_eq!(
            app.me(Backend::Jwt, &new_token).await.status(),
            StatusCode::OK
        );
    }
    std::fs::remove_dir_all(dir.path()).unwrap();
}

#[tokio::test]
async fn hs256_tokens_maced_with_the_public_key_are_refused() {
    let dir = key_dir(KeyAlg::EdDSA);
    let app = spawn_keyed(&dir, KeyAlg::EdDSA).await;
    let (user, _) = app.logged_in(Backend::Jwt).await;
    let kid = active_kid(&dir);
    let (set, _, _) = jwks(&app).await;
    let jwk = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap()
        .clone();
    let pkcs8 = std::fs::read(dir.path().join(format!("{kid}.pk8"))).unwrap();
    let public = Ed25519KeyPair::from_pkcs8(&pkcs8)
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    // SubjectPublicKeyInfo for Ed25519 (RFC 8410): a fixed 12-byte prefix and the key.
    let der = [
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ][..],
        &public,
    ]
    .concat();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(&der)
    );
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.clone());
    for (what, secret) in [
        ("PEM", pem.into_bytes()),
        ("DER", der),
        ("JWK", serde_json::to_vec(&jwk).unwrap()),
        ("raw", public),
    ] {
        let token = jsonwebtoken::encode(
            &header,
            &claims_for(&user),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_invalid(&app, &token, what).await;
    }
    std::fs::remove_dir_all(dir.path()).unwrap();
}

#[tokio::test]
async fn forged_headers_and_claims_are_refused_even_with_a_valid_signature() {
    let dir = key_dir(KeyAlg::EdDSA);
    let app = spawn_keyed(&dir, KeyAlg::EdDSA).await;
    let (user, login) = app.logged_in(Backend::Jwt).await;
    let kid = active_kid(&dir);
    let claims = claims_in(&user, &login);
    // The control: our header, signed by the key, is accepted.
    let good = json!({ "typ": "JWT", "alg": "EdDSA", "kid": kid });
    assert_eq!(
        status_of(&app, &signed_by_key(&dir, &kid, &good, &claims)).await,
        StatusCode::OK
    );

    // A listener standing in for an attacker's key server: nothing may ever connect to it.
    let attacker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    attacker.set_nonblocking(true).unwrap();
    let url = format!("http://{}/jwks.json", attacker.local_addr().unwrap());
    let with = |name: &str, value: Value| {
        let mut header = good.clone();
        header[name] = value;
        header
    };
    let forged = [
        ("alg ES256 on an EdDSA key", with("alg", json!("ES256"))),
        ("alg HS256 on an EdDSA key", with("alg", json!("HS256"))),
        ("alg none", with("alg", json!("none"))),
        ("jku", with("jku", json!(url))),
        ("x5u", with("x5u", json!(url))),
        (
            "x5c",
            with(
                "x5c",
                json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
            ),
        ),
        (
            "jwk",
            with(
                "jwk",
                json!({ "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }),
            ),
        ),
        ("kid path traversal", with("kid", json!("../../etc/passwd"))),
        ("kid SQL", with("kid", json!("' OR '1'='1' --"))),
        (
            "kid unknown, of the right form",
            with("kid", json!("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")),
        ),
        (
            "kid with a slash",
            with("kid", json!(format!("{}/", &kid[..42]))),
        ),
        ("no kid", {
            let mut header = good.clone();
            header.as_object_mut().unwrap().remove("kid");
            header
        }),
    ];
    for (why, header) in &forged {
        assert_invalid(&app, &signed_by_key(&dir, &kid, header, &claims), why).await;
    }
    // `alg: none` with no signature at all.
    let none = format!("{}.{}.", b64(&with("alg", json!("none"))), b64(&claims));
    assert_invalid(&app, &none, "alg none, unsigned").await;
    // A null time claim is not an absent one.
    let mut null_nbf = claims.clone();
    null_nbf["nbf"] = Value::Null;
    assert_invalid(
        &app,
        &signed_by_key(&dir, &kid, &good, &null_nbf),
        "nbf null",
    )
    .await;
    assert!(
        matches!(attacker.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the server followed a key URL"
    );
    std::fs::remove_dir_all(dir.path()).unwrap();
}

/// The order of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

#[tokio::test]
async fn es256_high_s_twins_and_zero_signatures_are_refused() {
    let dir = key_dir(KeyAlg::ES256);
    let app = spawn_keyed(&dir, KeyAlg::ES256).await;
    let (_, credential) = app.logged_in(Backend::Jwt).await;
    let token = credential.value();
    assert_eq!(status_of(&app, token).await, StatusCode::OK);
    let (input, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    assert_eq!(signature.len(), 64);
    // (r, n - s): the same signature to ECDSA's equation, another token to us.
    let mut twin = signature[..32].to_vec();
    let mut borrow = 0i16;
    let mut s = [0u8; 32];
    for i in (0..32).rev() {
        let mut d = i16::from(P256_ORDER[i]) - i16::from(signature[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        s[i] = d as u8;
    }
    twin.extend_from_slice(&s);
    let forged = [
        ("high-S twin", twin),
        ("all zero", vec![0u8; 64]),
        ("r = 0", [&[0u8; 32][..], &signature[32..]].concat()),
        ("s = 0", [&signature[..32], &[0u8; 32][..]].concat()),
        ("truncated", signature[..63].to_vec()),
    ];
    for (why, bytes) in forged {
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_invalid(&app, &forged, why).await;
    }
    std::fs::remove_dir_all(dir.path()).unwrap();
}

#[tokio::test]
async fn the_server_refuses_to_start_on_unsafe_or_inconsistent_key_settings() {
    use authlab::startup::{Application, StartupError};
    let dir = key_dir(KeyAlg::EdDSA);
    let build = |customise: &dyn Fn(&mut authlab::config::Settings)| {
        let mut settings = test_settings();
        customise(&mut settings);
        Application::build(settings)
    };
    let path = dir.path().to_owned();
    // A key file the group can read.
    let key_file = path.join(format!("{}.pk8", active_kid(&dir)));
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    let refused = build(&|s| {
        s.jwt_alg = JwtAlg::EdDsa;
        s.jwt_keys_dir = Some(path.clone());
    })
    .await;
    assert!(matches!(refused, Err(StartupError::JwtKeys { .. })));
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // The active key is EdDSA, the flag says ES256.
    let refused = build(&|s| {
        s.jwt_alg = JwtAlg::Es256;
        s.jwt_keys_dir = Some(path.clone());
    })
    .await;
    assert!(matches!(refused, Err(StartupError::JwtKeys { .. })));
    // EdDSA without a directory; HS256 with one.
    let refused = build(&|s| s.jwt_alg = JwtAlg::EdDsa).await;
    assert!(matches!(refused, Err(StartupError::JwtKeysFlags(_))));
    let refused = build(&|s| s.jwt_keys_dir = Some(path.clone())).await;
    assert!(matches!(refused, Err(StartupError::JwtKeysFlags(_))));
    std::fs::remove_dir_all(dir.path()).unwrap();
}

#[test]
fn authlab_keys_runs_the_life_cycle_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("authlab-keys-cli-{}", Uuid::new_v4()));
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_authlab"))
            .arg("keys")
            .args(args)
            .arg("--dir")
            .arg(&dir)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, out, _) = run(&["generate", "--alg", "ES256"]);
    assert!(ok && out.contains("(next)"), "{out}");
    let (ok, _, err) = run(&["generate"]);
    assert!(!ok && err.contains("next key already"), "{err}");
    let (ok, out, _) = run(&["rotate", "--access-ttl", "5m"]);
    assert!(ok, "{out}");
    let (ok, out, _) = run(&["list"]);
    assert!(ok);
    let states: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(states, ["active", "next"], "{out}");
    let (ok, out, _) = run(&["rotate"]);
    assert!(ok && out.contains("retired"), "{out}");
    // Retired a moment ago: its tokens may live another 15 minutes, so prune keeps it.
    let (ok, out, _) = run(&["prune"]);
    assert!(ok && out.is_empty(), "{out}");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &entry.unwrap().metadata().unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
