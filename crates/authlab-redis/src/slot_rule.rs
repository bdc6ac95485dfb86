//! The Redis Cluster slot rule, checked with redis-rs's own slot function on the keys the real
//! key builders make: every script and pipeline touches keys of one hash slot, and every script
//! names each key it touches in `KEYS`.
//!
//! The groups below are the ones the code sends together (a script's `KEYS`, a pipeline's keys,
//! a multi-key command). Flows that span slots (a token and its family, a user's registry) send
//! one group per slot, in the order the module docs of `families` explain.

use std::sync::Arc;
use std::time::Duration;

use redis::cluster_routing::Slot;
use secrecy::SecretSlice;
use uuid::Uuid;

use crate::families::{ATTACH, EXCHANGE, REVOKE_FAMILY};
use crate::throttle::COUNTER;
use crate::{
    AttemptCounters, FamilyConfig, RedisConnection, RedisDenylist, RedisFamilies, RedisTimeouts,
    RedisTokenAuthenticator, RedisTokenConfig, TokenFormat,
};

fn slot(key: &str) -> Slot {
    Slot::for_key(key)
}

/// Asserts that every key of one group sits in the slot of the first.
fn one_slot(what: &str, keys: &[String]) {
    let first = slot(&keys[0]);
    for key in keys {
        assert_eq!(
            slot(key),
            first,
            "{what}: {key} is not in the slot of {}",
            keys[0]
        );
    }
}

fn families(conn: &Arc<RedisConnection>, prefix: &str, scope: &'static str) -> RedisFamilies {
    RedisFamilies::new(
        conn.clone(),
        FamilyConfig {
            prefix: prefix.to_owned(),
            scope,
            refresh_ttl: Duration::from_secs(60),
            grace: Duration::from_secs(10),
            secret: SecretSlice::from(vec![7u8; 32]),
            live_markers: Some(Duration::from_secs(900)),
        },
    )
}

#[test]
fn every_script_and_pipeline_of_a_user_and_a_family_touches_one_slot() {
    // Nothing connects: the builders only need the configuration.
    let conn = Arc::new(
        RedisConnection::new("redis://127.0.0.1:1", RedisTimeouts::default())
            .unwrap_or_else(|err| panic!("{err}")),
    );
    let mut distinct_family_slots = std::collections::HashSet::new();
    for prefix in ["authlab:", "bench-3f2a:", "x"] {
        for scope in ["redis", "jwt"] {
            let fams = families(&conn, prefix, scope);
            let tokens = RedisTokenAuthenticator::new(
                conn.clone(),
                families(&conn, prefix, scope),
                RedisTokenConfig {
                    prefix: prefix.to_owned(),
                    ttl: Duration::from_secs(60),
                    format: TokenFormat::Uuid,
                },
            );
            let deny = RedisDenylist::new(conn.clone(), prefix);
            let throttle = AttemptCounters::new(conn.clone(), prefix);
            for user_id in [1_i64, 42, 7_000_000_001] {
                let family = Uuid::new_v4().simple().to_string();
                let (fam, spent, acc, ended) = (
                    fams.family_key(&family),
                    fams.spent_key(&family),
                    fams.access_key(&family),
                    fams.ended_key(&family),
                );
                distinct_family_slots.insert(slot(&fam));
                // Scripts: EXCHANGE and REVOKE_FAMILY (fam, spent, acc, ended), ATTACH (fam,
                // acc); forgetting a finished revocation: one `DEL` of ended, acc and spent.
                let live = fams
                    .live_markers()
                    .map(|markers| markers.key(&family))
                    .unwrap_or_default();
                let tombstone = [
                    fam.clone(),
                    spent.clone(),
                    acc.clone(),
                    ended.clone(),
                    live.clone(),
                ];
                one_slot("EXCHANGE", &tombstone);
                one_slot("REVOKE_FAMILY", &tombstone[..4]);
                one_slot("ATTACH", &[fam.clone(), acc.clone()]);
                one_slot("forget_revocation DEL", &[ended, acc, spent]);
                // Login: the registry pipeline (ZADD + EXPIRE x2) and the family pipeline
                // (HSET + EXPIRE) each name one key.
                let user = fams.user_key(user_id);
                one_slot("login registry pipeline", &[user.clone(), user.clone()]);
                // The registry's prune: ZREMRANGEBYSCORE + ZREM of one key.
                one_slot("registry prune pipeline", &[user.clone(), user.clone()]);
                one_slot("login family pipeline", &[fam.clone(), fam.clone()]);
                // The registry and the family are different slots on purpose: never grouped.
                assert!(user.contains(&format!("{{{user_id}}}")), "{user}");
                // Introspection: GET + TTL of one token key.
                let token = TokenFormat::Uuid.generate().unwrap_or_default();
                let key = tokens.key(&token);
                one_slot("introspect pipeline", &[key.clone(), key]);
                // The JWT denylist: one EXISTS over the token's and the family's entries; the
                // epoch's SET NX + GET pipeline.
                let jti = Uuid::new_v4().to_string();
                // The denylist's `EXISTS` also names the family's live marker (the JWT scope's
                // families write it; the slot rule must hold whichever scope it is).
                one_slot(
                    "denylist EXISTS",
                    &[
                        deny.token_key(&family, &jti),
                        deny.family_key(&family),
                        live.clone(),
                    ],
                );
                one_slot(
                    "login family pipeline with its marker",
                    &[fam.clone(), live],
                );
                let epoch = deny.epoch_key().to_owned();
                one_slot("epoch pipeline", &[epoch.clone(), epoch]);
                // Login throttling: one counter per script call.
                one_slot(
                    "throttle",
                    &[throttle.key("name", "ab12"), throttle.key("name", "ab12")],
                );
            }
        }
    }
    // The hash tags really spread families over the cluster (not all in one slot).
    assert!(distinct_family_slots.len() > 1);
}

/// The keys a Lua script passes to `redis.call` as its first argument.
fn called_keys(script: &str) -> Vec<String> {
    script
        .split("redis.call(")
        .skip(1)
        .filter_map(|call| {
            let args = call.split(')').next()?;
            let mut args = args.split(',').map(str::trim);
            let _command = args.next()?;
            args.next().map(str::to_owned)
        })
        .collect()
}

#[test]
fn every_script_names_each_key_it_touches_in_keys() {
    for (name, script, aliases) in [
        ("EXCHANGE", EXCHANGE, &["fam", "spent", "KEYS[3]"][..]),
        ("ATTACH", ATTACH, &["KEYS[1]", "KEYS[2]"][..]),
        ("REVOKE_FAMILY", REVOKE_FAMILY, &[][..]),
        ("COUNTER", COUNTER, &["key"][..]),
    ] {
        let keys = called_keys(script);
        assert!(!keys.is_empty(), "{name}");
        for key in keys {
            assert!(
                key.starts_with("KEYS[") || aliases.contains(&key.as_str()),
                "{name} touches {key}, which is not one of its KEYS"
            );
        }
        // The aliases are bound to KEYS, never built from ARGV or by concatenation.
        assert!(!script.contains(".."), "{name} builds a string");
        for alias in aliases.iter().filter(|a| !a.starts_with("KEYS[")) {
            assert!(
                script.lines().any(|l| l.trim_start().starts_with("local")
                    && l.contains(alias)
                    && l.contains("KEYS[")),
                "{name}: {alias} is not bound to KEYS"
            );
        }
    }
}
