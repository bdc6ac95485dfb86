//! Issue #11, two of its rows: nothing Redis holds is a credential a client could present (opaque
//! tokens hashed at rest), and a logout never un-happens when Redis loses its data (the JWT
//! denylist's epoch).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authlab::config::RedisTokenFormat;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::aio::MultiplexedConnection;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

const RECOVERY: Duration = Duration::from_secs(10);

/// The Redis key of an opaque access token, as the server derives it: `<prefix>tok:<sha256>`.
pub fn token_key(app: &TestApp, token: &str) -> String {
    format!("{}tok:{}", app.settings.redis_prefix, sha256_hex(token))
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

struct Tokens {
    access: String,
    refresh: String,
}

impl Tokens {
    fn bearer(&self) -> Credential {
        Credential::Bearer(self.access.clone())
    }
}

async fn tokens_from(response: Response) -> Tokens {
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    Tokens {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

async fn login_tokens(app: &TestApp, backend: Backend, user: &TestUser) -> Tokens {
    tokens_from(
        app.login_response(backend, &user.username, &user.password)
            .await,
    )
    .await
}

async fn refresh(app: &TestApp, backend: Backend, refresh_token: &str) -> Response {
    app.post_json(
        &format!("/{backend}/refresh"),
        &json!({ "refresh_token": refresh_token }),
    )
    .await
}

/// An RFC 7009/7662 form post; introspection callers prove who they are with the shared secret.
async fn form(app: &TestApp, path: &str, token: &str) -> Response {
    app.client
        .post(app.url(path))
        .bearer_auth(INTROSPECTION_SECRET)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

async fn redis_at(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Everything Redis holds under `prefix`, as text: each key, and each string value, hash field
/// and value, sorted-set member and score, set member and list element stored in it.
async fn dump(conn: &mut MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut texts = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        let cmd = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).clone(),
            "hash" => redis::cmd("HGETALL").arg(&key).clone(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .clone(),
            "set" => redis::cmd("SMEMBERS").arg(&key).clone(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
            // Expired between SCAN and TYPE.
            "none" => continue,
            other => panic!("{key} has a type the dump does not read: {other}"),
        };
        let values: Vec<String> = match kind.as_str() {
            "string" => vec![cmd.query_async(conn).await.unwrap()],
            _ => cmd.query_async(conn).await.unwrap(),
        };
        texts.push(key);
        texts.extend(values);
    }
    texts
}

#[tokio::test]
async fn redis_holds_no_usable_access_or_refresh_token_in_either_format_and_tokens_still_work() {
    for format in [RedisTokenFormat::Uuid, RedisTokenFormat::Random256] {
        let app = spawn_app_with(|s| {
            s.redis_token_format = format;
            with_introspection_secret(s);
        })
        .await;
        let user = app.register().await;

        // Every kind of state there is: a login, a refresh (a spent token, a successor), a second
        // login, and on /jwt a login and a logout (families, the denylist, the epoch).
        let first = login_tokens(&app, Backend::Redis, &user).await;
        match format {
            RedisTokenFormat::Uuid => {
                assert_eq!(first.access.len(), 36, "{}", first.access);
                let parsed = uuid::Uuid::parse_str(&first.access).unwrap();
                assert_eq!(parsed.get_version_num(), 4);
            }
            RedisTokenFormat::Random256 => {
                assert_eq!(first.access.len(), 43, "{}", first.access);
                assert_eq!(URL_SAFE_NO_PAD.decode(&first.access).unwrap().len(), 32);
            }
        }
        let second = tokens_from(refresh(&app, Backend::Redis, &first.refresh).await).await;
        let other = login_tokens(&app, Backend::Redis, &user).await;
        let jwt = login_tokens(&app, Backend::Jwt, &user).await;
        let jwt_out = login_tokens(&app, Backend::Jwt, &user).await;
        assert_eq!(
            app.logout(Backend::Jwt, &jwt_out.bearer()).await.status(),
            StatusCode::NO_CONTENT
        );

        let mut conn = redis_at(&app.settings.redis.url).await;
        let stored = dump(&mut conn, &app.settings.redis_prefix).await;
        // The dump sees the tokens' entries, under their hashes: a key per live access token,
        // and the family's `acc` set holding the same hashes.
        for token in [&first.access, &second.access, &other.access] {
            assert!(
                stored.contains(&token_key(&app, token)),
                "{format:?}: no key for the token's hash in {stored:?}"
            );
            assert!(
                stored.contains(&sha256_hex(token)),
                "{format:?}: the family does not list the token's hash"
            );
        }
        // ...and no token, nor the secret half of a refresh token, anywhere.
        let mut secrets = Vec::new();
        for tokens in [&first, &second, &other, &jwt, &jwt_out] {
            secrets.push(tokens.access.clone());
            secrets.push(tokens.refresh.clone());
            let (_, secret) = tokens.refresh.split_once('.').unwrap();
            secrets.push(secret.to_owned());
        }
        for text in &stored {
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{format:?}: Redis holds a usable token: {text:?}"
                );
            }
        }

        // Hashing changed where tokens are kept, not what they do.
        let me = app.me(Backend::Redis, &second.bearer()).await;
        assert_eq!(me.status(), StatusCode::OK);
        let body: Value = me.json().await.unwrap();
        assert_eq!(body["username"], user.username);
        let info: Value = form(&app, "/redis/introspect", &second.access)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(info["active"], true, "{info}");
        assert_eq!(info["sub"], user.user_id.to_string());
        // RFC 7009 deletes the key of the token's hash.
        assert_eq!(
            form(&app, "/redis/revoke", &second.access).await.status(),
            StatusCode::OK
        );
        assert_error(
            app.me(Backend::Redis, &second.bearer()).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
        assert_eq!(
            form(&app, "/redis/introspect", &second.access)
                .await
                .json::<Value>()
                .await
                .unwrap(),
            json!({ "active": false })
        );
        // The refresh token still rotates; logout ends the family, access tokens included.
        let third = tokens_from(refresh(&app, Backend::Redis, &second.refresh).await).await;
        assert_eq!(
            app.me(Backend::Redis, &third.bearer()).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            app.logout(Backend::Redis, &third.bearer()).await.status(),
            StatusCode::NO_CONTENT
        );
        for token in [&first.access, &third.access] {
            let exists: i64 = redis::cmd("EXISTS")
                .arg(token_key(&app, token))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(exists, 0, "{format:?}: logout deletes the family's tokens");
        }
        assert_error(
            app.me(Backend::Redis, &first.bearer()).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
        assert_eq!(
            app.me(Backend::Redis, &other.bearer()).await.status(),
            StatusCode::OK,
            "{format:?}: another login lives on"
        );
    }
}

#[tokio::test]
async fn both_token_formats_are_accepted_whichever_one_is_issued() {
    // Two instances sharing Redis and users, one per format, as during a change of format.
    let uuids = spawn_app().await;
    let randoms = spawn_app_with(|s| {
        s.redis_prefix = uuids.settings.redis_prefix.clone();
        s.database_url = uuids.settings.database_url.clone();
        s.redis_token_format = RedisTokenFormat::Random256;
    })
    .await;
    let user = uuids.register().await;
    let from_uuids = uuids.login(Backend::Redis, &user).await;
    let from_randoms = randoms.login(Backend::Redis, &user).await;
    assert_eq!(from_uuids.value().len(), 36);
    assert_eq!(from_randoms.value().len(), 43);
    for app in [&uuids, &randoms] {
        for token in [&from_uuids, &from_randoms] {
            assert_eq!(app.me(Backend::Redis, token).await.status(), StatusCode::OK);
        }
    }
}

/// With Redis stopped, a token of the wrong shape is still a 401: it was refused before any
/// round trip. A well-formed one cannot be judged (503).
#[tokio::test]
async fn a_malformed_redis_token_is_refused_without_asking_redis() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| s.redis.url = url).await;
    redis.stop();
    let uuid = uuid::Uuid::new_v4().to_string();
    let random = URL_SAFE_NO_PAD.encode([7u8; 32]);
    for malformed in [
        uuid.to_uppercase(),
        uuid.replace('-', ""),
        format!("{{{uuid}}}"),
        random[..42].to_owned(),
        format!("{random}A"),
        format!("{}+", &random[..42]),
        format!("{}=", &random[..42]),
        // The same 32 bytes with stray bits in the last character: not a spelling we issue.
        format!("{}d", &random[..42]),
    ] {
        assert_error(
            app.me(Backend::Redis, &Credential::Bearer(malformed.clone()))
                .await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
    for well_formed in [uuid, random] {
        assert_error(
            app.me(Backend::Redis, &Credential::Bearer(well_formed))
                .await,
            StatusCode::SERVICE_UNAVAILABLE,
            "backend_unavailable",
        )
        .await;
    }
}

/// The epoch marker: `<prefix>epoch`, Unix seconds, no TTL.
async fn epoch_of(conn: &mut MultiplexedConnection, prefix: &str) -> (Option<u64>, i64) {
    let key = format!("{prefix}epoch");
    let value: Option<u64> = redis::cmd("GET").arg(&key).query_async(conn).await.unwrap();
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(conn).await.unwrap();
    (value, ttl)
}

#[tokio::test]
async fn a_logged_out_jwt_stays_refused_after_redis_restarts_empty_and_so_does_every_older_jwt() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| s.redis.url = url).await;
    let user = app.register().await;
    let logged_out = login_tokens(&app, Backend::Jwt, &user).await;
    let kept = login_tokens(&app, Backend::Jwt, &user).await;
    assert_eq!(
        app.logout(Backend::Jwt, &logged_out.bearer())
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        app.me(Backend::Jwt, &logged_out.bearer()).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    assert_eq!(
        app.me(Backend::Jwt, &kept.bearer()).await.status(),
        StatusCode::OK
    );

    // This Redis keeps nothing on disk: the denylist entry and the epoch marker die with it.
    let restarted_at = unix_now();
    redis.stop();
    redis.restart();

    // The first requests may find the old connection dead (503); none may let the token in.
    let recovered = eventually(RECOVERY, || {
        let (app, token) = (&app, logged_out.bearer());
        async move {
            let status = app.me(Backend::Jwt, &token).await.status();
            assert_ne!(status, StatusCode::OK, "a logout un-happened");
            status != StatusCode::SERVICE_UNAVAILABLE
        }
    })
    .await;
    assert!(recovered, "the app reconnects to the restarted Redis");
    assert_error(
        app.me(Backend::Jwt, &logged_out.bearer()).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    // Issued before the loss and never logged out: Redis cannot vouch for it any more.
    assert_error(
        app.me(Backend::Jwt, &kept.bearer()).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    // Its refresh token's family is gone too: everyone logs in again, and that works at once.
    assert_error(
        refresh(&app, Backend::Jwt, &kept.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let fresh = login_tokens(&app, Backend::Jwt, &user).await;
    assert_eq!(
        app.me(Backend::Jwt, &fresh.bearer()).await.status(),
        StatusCode::OK
    );
    let renewed = tokens_from(refresh(&app, Backend::Jwt, &fresh.refresh).await).await;
    assert_eq!(
        app.me(Backend::Jwt, &renewed.bearer()).await.status(),
        StatusCode::OK
    );

    let mut conn = redis_at(&redis.url()).await;
    let (epoch, ttl) = epoch_of(&mut conn, &app.settings.redis_prefix).await;
    let epoch = epoch.expect("the epoch marker was recreated");
    assert!(
        epoch >= restarted_at,
        "epoch {epoch} predates the restart at {restarted_at}"
    );
    assert_eq!(ttl, -1, "the epoch marker never expires");
}

#[tokio::test]
async fn losing_the_epoch_marker_refuses_every_older_jwt_and_never_lets_a_logout_back() {
    let app = spawn_app_with(with_introspection_secret).await;
    let user = app.register().await;
    let logged_out = login_tokens(&app, Backend::Jwt, &user).await;
    let kept = login_tokens(&app, Backend::Jwt, &user).await;
    assert_eq!(
        app.logout(Backend::Jwt, &logged_out.bearer())
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.me(Backend::Jwt, &kept.bearer()).await.status(),
        StatusCode::OK
    );
    let mut conn = redis_at(&app.settings.redis.url).await;
    let (before, ttl) = epoch_of(&mut conn, &app.settings.redis_prefix).await;
    assert!(before.is_some(), "login created the epoch marker");
    assert_eq!(ttl, -1, "the epoch marker never expires");

    // What a FLUSHALL does to the marker, without the restart that would drop connections.
    let lost_at = unix_now();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{}epoch", app.settings.redis_prefix))
        .query_async(&mut conn)
        .await
        .unwrap();

    // The app re-reads the epoch at least every second: the older token goes, and the
    // logged-out one never comes back meanwhile.
    let refused = eventually(RECOVERY, || {
        let app = &app;
        let (kept, logged_out) = (kept.bearer(), logged_out.bearer());
        async move {
            assert_eq!(
                app.me(Backend::Jwt, &logged_out).await.status(),
                StatusCode::UNAUTHORIZED
            );
            app.me(Backend::Jwt, &kept).await.status() != StatusCode::OK
        }
    })
    .await;
    assert!(refused, "the token issued before the loss is refused");
    assert_error(
        app.me(Backend::Jwt, &kept.bearer()).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    let (after, _) = epoch_of(&mut conn, &app.settings.redis_prefix).await;
    let after = after.expect("the epoch marker was recreated");
    assert!(
        after >= lost_at,
        "epoch {after} predates the loss at {lost_at}"
    );

    // A login right after the loss works at once (its token is dated after the epoch), also on
    // introspection.
    let fresh = login_tokens(&app, Backend::Jwt, &user).await;
    assert_eq!(
        app.me(Backend::Jwt, &fresh.bearer()).await.status(),
        StatusCode::OK
    );
    let info: Value = form(&app, "/jwt/introspect", &fresh.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["active"], true, "{info}");
    let stale: Value = form(&app, "/jwt/introspect", &kept.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stale, json!({ "active": false }));
}
