//! Attacks on the JWT backend. Every forgery must be 401 `invalid_token` with an RFC 6750
//! challenge; only a genuine token that ran out of time is `token_expired`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims as authlab would write them for `user`.
pub(crate) fn claims_for(user: &TestUser) -> Value {
    json!({
        "iss": "authlab",
        "sub": user.user_id.to_string(),
        "iat": now(),
        "exp": now() + 600,
        "jti": Uuid::new_v4().to_string(),
        "fam": Uuid::new_v4().simple().to_string(),
        "username": user.username,
    })
}

/// [`claims_for`] in the family of a real login, so that a correctly signed token is accepted:
/// with the denylist on, a family authlab never started has no live marker and is refused.
pub(crate) fn claims_in(user: &TestUser, login: &Credential) -> Value {
    let mut claims = claims_for(user);
    claims["fam"] = json!(crate::shard_loss::family_of(login.value()));
    claims
}

fn sign(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

async fn assert_invalid(app: &TestApp, token: &str, why: &str) {
    let response = app
        .me(Backend::Jwt, &Credential::Bearer(token.to_owned()))
        .await;
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {body}");
    assert_eq!(body["error"], "invalid_token", "{why}: {body}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{why}: {challenge}"
    );
}

#[tokio::test]
async fn a_token_signed_by_the_test_key_is_accepted_so_the_forgeries_below_mean_something() {
    let app = spawn_app().await;
    let user = app.register().await;
    // A login first, as any client's token follows one: it creates the denylist's epoch (and
    // waits out its second), and a JWT issued at or before the epoch is refused (at_rest.rs);
    // the token names the login's family, which has the live marker the denylist asks for
    // (shard_loss.rs).
    let login = app.login(Backend::Jwt, &user).await;
    let token = sign(
        Algorithm::HS256,
        TEST_JWT_SECRET.as_bytes(),
        &claims_in(&user, &login),
    );
    assert_eq!(
        app.me(Backend::Jwt, &Credential::Bearer(token))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_tampered_payload_is_invalid() {
    let app = spawn_app().await;
    let (user, credential) = app.logged_in(Backend::Jwt).await;
    let parts: Vec<&str> = credential.value().split('.').collect();
    let mut claims = claims_for(&user);
    claims["sub"] = json!("1");
    claims["username"] = json!("admin");
    let forged = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    assert_invalid(&app, &forged, "payload swapped, signature kept").await;
}

#[tokio::test]
async fn alg_none_is_invalid() {
    let app = spawn_app().await;
    let user = app.register().await;
    let payload = b64(&claims_for(&user));
    for alg in ["none", "None", "NONE"] {
        let header = b64(&json!({ "alg": alg, "typ": "JWT" }));
        assert_invalid(&app, &format!("{header}.{payload}."), alg).await;
        assert_invalid(&app, &format!("{header}.{payload}"), alg).await;
    }
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_invalid() {
    let app = spawn_app().await;
    let user = app.register().await;
    let other = sign(
        Algorithm::HS256,
        b"another-secret-0123456789abcdef0123456789",
        &claims_for(&user),
    );
    assert_invalid(&app, &other, "another secret").await;
}

#[tokio::test]
async fn another_hmac_algorithm_with_the_right_secret_is_invalid() {
    let app = spawn_app().await;
    let user = app.register().await;
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign(alg, TEST_JWT_SECRET.as_bytes(), &claims_for(&user));
        assert_invalid(&app, &token, &format!("{alg:?}")).await;
    }
    // An HS256 signature under a header that claims HS512: the pinned algorithm decides.
    let good = sign(
        Algorithm::HS256,
        TEST_JWT_SECRET.as_bytes(),
        &claims_for(&user),
    );
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[0] = b64(&json!({ "alg": "HS512", "typ": "JWT" }));
    assert_invalid(&app, &parts.join("."), "header relabelled").await;
}

#[tokio::test]
async fn truncated_and_malformed_tokens_are_invalid() {
    let app = spawn_app().await;
    let (_, credential) = app.logged_in(Backend::Jwt).await;
    let token = credential.value();
    let (without_signature, _) = token.rsplit_once('.').unwrap();
    let cases = [
        token[..token.len() - 1].to_owned(),
        token[..token.len() / 2].to_owned(),
        without_signature.to_owned(),
        format!("{without_signature}."),
        format!("{token}.extra"),
        "a.b.c".to_owned(),
        "..".to_owned(),
        "not-a-jwt".to_owned(),
        format!(
            "{}.{}.sig",
            b64(&json!({ "alg": "HS256" })),
            URL_SAFE_NO_PAD.encode("not json")
        ),
        format!("!!!.{}", token.split_once('.').unwrap().1),
    ];
    for (i, case) in cases.iter().enumerate() {
        assert_invalid(&app, case, &format!("case {i}")).await;
    }
}

#[tokio::test]
async fn claims_that_break_the_rules_are_invalid() {
    let app = spawn_app().await;
    let user = app.register().await;
    let secret = TEST_JWT_SECRET.as_bytes();
    let mut wrong_issuer = claims_for(&user);
    wrong_issuer["iss"] = json!("evil");
    let mut no_exp = claims_for(&user);
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_sub = claims_for(&user);
    no_sub.as_object_mut().unwrap().remove("sub");
    let mut not_yet = claims_for(&user);
    not_yet["nbf"] = json!(now() + 3600);
    let mut no_family = claims_for(&user);
    no_family.as_object_mut().unwrap().remove("fam");
    let mut with_audience = claims_for(&user);
    with_audience["aud"] = json!("another-service");
    for (why, claims) in [
        ("issuer", wrong_issuer),
        ("no exp", no_exp),
        ("no sub", no_sub),
        ("nbf in the future", not_yet),
        ("an audience we are not", with_audience),
        ("no family", no_family),
    ] {
        assert_invalid(&app, &sign(Algorithm::HS256, secret, &claims), why).await;
    }
}

#[tokio::test]
async fn a_validly_signed_token_with_a_null_time_claim_is_invalid() {
    let app = spawn_app().await;
    let user = app.register().await;
    // A login first, so that a genuine token of this user is accepted (see the first test).
    let login = app.login(Backend::Jwt, &user).await;
    let secret = TEST_JWT_SECRET.as_bytes();
    for claim in ["nbf", "exp", "iat"] {
        let mut claims = claims_for(&user);
        claims[claim] = Value::Null;
        assert_invalid(
            &app,
            &sign(Algorithm::HS256, secret, &claims),
            &format!("\"{claim}\": null"),
        )
        .await;
    }
    // The same claims without `nbf` at all are fine: only a present `null` is refused.
    let token = sign(Algorithm::HS256, secret, &claims_in(&user, &login));
    assert_eq!(
        app.me(Backend::Jwt, &Credential::Bearer(token))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_genuine_token_past_its_exp_is_token_expired() {
    let app = spawn_app().await;
    let user = app.register().await;
    let mut claims = claims_for(&user);
    claims["iat"] = json!(now() - 1000);
    claims["exp"] = json!(now() - 10);
    let token = sign(Algorithm::HS256, TEST_JWT_SECRET.as_bytes(), &claims);
    let response = app.me(Backend::Jwt, &Credential::Bearer(token)).await;
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert_error(response, StatusCode::UNAUTHORIZED, "token_expired").await;
}
