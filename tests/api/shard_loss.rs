//! The JWT denylist when one Redis Cluster shard loses its data (issue 18): each family's live
//! marker sits in the slot of its deny keys and is checked in the same `EXISTS`, so a shard that
//! forgets its deny keys forgets its markers too and refuses its own families' tokens, while the
//! families of the other shards keep working. A standalone test shows what a missing marker does
//! there, with the denylist cached and not.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;

use authlab::config::DenylistMode;

use crate::helpers::*;
use crate::redis_cluster::{Node, RedisCluster, wait_until};

/// A JWT login: the access token, its refresh token, and the family (`fam`) the token names.
struct JwtLogin {
    access: Credential,
    refresh: String,
    family: String,
}

/// The `fam` claim of a JWT, read from its payload (no verification: the test made the token).
pub(crate) fn family_of(jwt: &str) -> String {
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    let claims: Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims["fam"].as_str().expect("a fam claim").to_owned()
}

async fn jwt_login(app: &TestApp, user: &TestUser) -> JwtLogin {
    let response = app
        .login_response(Backend::Jwt, &user.username, &user.password)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("a JSON login");
    let access = body["access_token"].as_str().expect("an access token");
    JwtLogin {
        family: family_of(access),
        access: Credential::Bearer(access.to_owned()),
        refresh: body["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_owned(),
    }
}

/// The family's deny key, whose slot holds everything the denylist checks for it.
fn deny_key(app: &TestApp, family: &str) -> String {
    format!("{}deny:{{{family}}}", app.settings.redis_prefix)
}

/// The family's live marker.
fn live_key(app: &TestApp, family: &str) -> String {
    format!("{}jwt:fam:{{{family}}}:live", app.settings.redis_prefix)
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.post_json(
        "/jwt/refresh",
        &serde_json::json!({ "refresh_token": refresh_token }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_shard_that_loses_its_data_refuses_its_families_and_lets_no_logout_back() {
    let cluster = RedisCluster::start();
    let app = spawn_app_with(|s| s.redis.url = cluster.url()).await;
    let user = app.register().await;
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "three masters: {masters:?}");

    // Logins until every master holds at least two families: one to log out, one to keep.
    let mut by_master: Vec<(u16, Vec<JwtLogin>)> = masters.iter().map(|&m| (m, vec![])).collect();
    for _ in 0..200 {
        if by_master.iter().all(|(_, logins)| logins.len() >= 2) {
            break;
        }
        let login = jwt_login(&app, &user).await;
        let master = cluster.master_of(&deny_key(&app, &login.family));
        if let Some((_, logins)) = by_master.iter_mut().find(|(m, _)| *m == master) {
            logins.push(login);
        }
    }
    assert!(
        by_master.iter().all(|(_, logins)| logins.len() >= 2),
        "the families did not span all three masters"
    );

    // On every master: the first family logs out, the others stay.
    for (master, logins) in &by_master {
        assert_eq!(
            app.logout(Backend::Jwt, &logins[0].access).await.status(),
            StatusCode::NO_CONTENT,
            "logout of a family on {master}"
        );
    }
    for (master, logins) in &by_master {
        assert_error(
            app.me(Backend::Jwt, &logins[0].access).await,
            StatusCode::UNAUTHORIZED,
            "token_revoked",
        )
        .await;
        for login in &logins[1..] {
            assert_eq!(
                app.me(Backend::Jwt, &login.access).await.status(),
                StatusCode::OK,
                "a live family on {master}"
            );
        }
    }

    // The shard that loses its data is one that does not hold the epoch marker: the epoch
    // survives, as it does whenever a shard other than its own is lost.
    let epoch_master = cluster.master_of(&format!("{}epoch", app.settings.redis_prefix));
    let victim = *masters
        .iter()
        .find(|&&m| m != epoch_master)
        .expect("a master without the epoch");
    let replica = cluster.replica_of(victim);
    assert_eq!(
        Node::at(victim).command(&["FLUSHALL"]).as_deref(),
        Some("OK\n")
    );
    // The replica applies the same FLUSHALL from the replication stream.
    let synced = wait_until(Duration::from_secs(10), || {
        Node::at(replica)
            .command(&["DBSIZE"])
            .is_some_and(|n| n.trim() == "0")
    });
    assert!(synced.is_some(), "the replica on {replica} kept its data");

    for (master, logins) in &by_master {
        // No logout comes back, on any shard: the wiped shard's included.
        assert_error(
            app.me(Backend::Jwt, &logins[0].access).await,
            StatusCode::UNAUTHORIZED,
            "token_revoked",
        )
        .await;
        for login in &logins[1..] {
            let me = app.me(Backend::Jwt, &login.access).await;
            if *master == victim {
                // Fail closed: the shard cannot tell whether these were revoked.
                assert_error(me, StatusCode::UNAUTHORIZED, "token_revoked").await;
                // ...and their families are gone with it: the user logs in again.
                assert_eq!(
                    refresh(&app, &login.refresh).await.status(),
                    StatusCode::UNAUTHORIZED
                );
            } else {
                assert_eq!(me.status(), StatusCode::OK, "a family on {master}");
            }
        }
    }
    // A new login works whichever shard its family lands on, the wiped one included.
    let mut landed_on_victim = false;
    for _ in 0..30 {
        let login = jwt_login(&app, &user).await;
        assert_eq!(
            app.me(Backend::Jwt, &login.access).await.status(),
            StatusCode::OK
        );
        if cluster.master_of(&deny_key(&app, &login.family)) == victim {
            landed_on_victim = true;
            break;
        }
    }
    assert!(landed_on_victim, "no new family landed on the wiped shard");
}

/// Standalone: a token whose family has no live marker is refused, with the denylist in Redis
/// and cached alike (a missing marker is remembered as a refusal, never as "fine"); the family's
/// next rotation writes the marker again, so a client that refreshes carries on.
#[tokio::test]
async fn a_jwt_whose_family_lost_its_live_marker_is_refused_until_the_family_rotates() {
    for mode in [DenylistMode::On, DenylistMode::Cached] {
        let redis = PrivateRedis::start();
        let app = spawn_app_with(|s| {
            s.redis.url = redis.url();
            s.jwt_denylist = mode;
        })
        .await;
        let user = app.register().await;
        let lost = jwt_login(&app, &user).await;
        let kept = jwt_login(&app, &user).await;
        // Both answered (and, cached, both families' answers are now held in memory).
        for login in [&lost, &kept] {
            assert_eq!(
                app.me(Backend::Jwt, &login.access).await.status(),
                StatusCode::OK,
                "{mode:?}"
            );
        }
        let deleted =
            crate::client_cache::redis_cli(&redis, &["DEL", &live_key(&app, &lost.family)]);
        assert_eq!(deleted.trim(), "1", "{mode:?}: the marker existed");
        // The cache hears of the deletion from Redis (an invalidation), not from this instance.
        let refused = eventually(Duration::from_secs(2), || async {
            app.me(Backend::Jwt, &lost.access).await.status() == StatusCode::UNAUTHORIZED
        })
        .await;
        assert!(
            refused,
            "{mode:?}: a token without its family's marker was accepted"
        );
        assert_error(
            app.me(Backend::Jwt, &lost.access).await,
            StatusCode::UNAUTHORIZED,
            "token_revoked",
        )
        .await;
        assert_eq!(
            app.me(Backend::Jwt, &kept.access).await.status(),
            StatusCode::OK,
            "{mode:?}: the other family"
        );
        // The family itself is live: its rotation writes the marker again.
        let rotated = refresh(&app, &lost.refresh).await;
        assert_eq!(rotated.status(), StatusCode::OK, "{mode:?}");
        let body: Value = rotated.json().await.expect("a JSON refresh");
        let next = Credential::Bearer(body["access_token"].as_str().unwrap_or_default().to_owned());
        assert_eq!(
            app.me(Backend::Jwt, &next).await.status(),
            StatusCode::OK,
            "{mode:?}: the rotated token"
        );
        let ttl = crate::client_cache::redis_cli(&redis, &["TTL", &live_key(&app, &lost.family)]);
        let ttl: i64 = ttl.trim().parse().unwrap_or(-2);
        assert!(
            ttl > app.settings.access_ttl.as_secs() as i64 - 5,
            "{mode:?}: the marker lives at least as long as an access token ({ttl} s)"
        );
        // A logout refuses the family by its deny key; the marker is left to expire.
        assert_eq!(
            app.logout(Backend::Jwt, &next).await.status(),
            StatusCode::NO_CONTENT
        );
        assert_error(
            app.me(Backend::Jwt, &next).await,
            StatusCode::UNAUTHORIZED,
            "token_revoked",
        )
        .await;
    }
}
