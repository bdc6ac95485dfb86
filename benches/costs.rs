//! Two costs the docs quote, measured here so that anyone can reproduce them:
//!
//! - `token_key/hash_*`: the SHA-256 (hex) that stands for an opaque token in Redis, which every
//!   `/redis/me` computes before its `GET` (docs/security.md, "Tokens at rest");
//! - `password_policy/*`: judging a new password (zxcvbn over the first 64 characters, plus the
//!   length and user-name rules), from a passphrase to the slowest input found, l33t substitutes
//!   (docs/security.md, "Password policy": why it runs on the blocking pool).
//!
//! `cargo bench --bench costs` (about a minute; no Redis needed).

use std::hint::black_box;
use std::time::Duration;

use authlab_users::PasswordPolicy;
use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::SecretString;

fn token_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_key");
    let uuid = "f77fb441-0799-4edb-b8b0-203ca035561a";
    let random256 = "8gKi-m_vCNtecQUvb4peYeg61g4PYahQUq7Bq3ajByw";
    group.bench_function("hash_uuid", |b| {
        b.iter(|| authlab_redis::token_hash(black_box(uuid)))
    });
    group.bench_function("hash_random256", |b| {
        b.iter(|| authlab_redis::token_hash(black_box(random256)))
    });
    group.finish();
}

fn password_policy(c: &mut Criterion) {
    let policy = match PasswordPolicy::new(15) {
        Ok(policy) => policy,
        Err(err) => panic!("policy: {err}"),
    };
    let leet: String = "4@8({[<3!1|0$5+7%2a".chars().cycle().take(64).collect();
    let inputs = [
        ("passphrase_28", "violet tundra harbor sixteen".to_owned()),
        (
            "random_64",
            "Zq7#vL2!pR9@xW4$mK8^tB3&nH6*cJ1(yF5)gD0-sA+eU_iO=oP[lQ]wE{rT}uY".to_owned(),
        ),
        ("leet_64", leet),
    ];
    let mut group = c.benchmark_group("password_policy");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    for (label, password) in inputs {
        group.bench_function(label, |b| {
            b.iter(|| {
                // The verdict is what is measured; refused or accepted does not matter here.
                let verdict =
                    policy.check(SecretString::from(password.clone()), black_box("alice"));
                black_box(verdict.is_ok())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, token_key, password_policy);
criterion_main!(benches);
