//! The access-token verifier (`authlab_jwt`'s hand-written `verify.rs`, through the public
//! `JwtAuthenticator::decode`), differential against `jsonwebtoken` as an oracle.
//!
//! The property, as in the crate's own property test: ours may be stricter than `jsonwebtoken`,
//! never looser. Whatever ours accepts, `jsonwebtoken` (same key, algorithm pinned, same issuer,
//! no leeway) accepts with the very same claims; whatever ours calls expired, it reads as a token
//! whose `exp` has passed; the verified-token cache (keyed backend) never changes an answer, on
//! the first sight of a token or the next; a verifier's backend, holding only the public keys
//! read from our JWKS, answers as the issuer's; and nothing panics.
//!
//! Random bytes almost never carry a valid signature, so most inputs are *signed here*: the
//! input names an algorithm and gives the header and claims JSON, and the target signs them with
//! a fixed key. That puts every layer after the signature (header rules, claims parsing, the
//! fast scanner against the full parse, `kid` lookup) in reach of the fuzzer. Input format:
//!
//! - `H<header>\0<claims>`: signed with HS256 under the fixed secret;
//! - `E<header>\0<claims>`: signed with the fixed Ed25519 key (the ring's active key);
//! - `P<header>\0<claims>`: signed with the fixed P-256 key (the ring's `next` key, published,
//!   so it verifies too), low-S as we sign;
//! - anything else: the whole input is the token, checked by both verifiers as it is.
//!
//! `\0` cannot appear in JSON text, so it separates the two parts of any JSON-shaped input. The
//! seeds in `corpus/jwt_verify/` are one good token of each kind and a few odd ones.

#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use authlab_core::{
    AuthError, ClientInfo, Denylist, Exchange, Identity, ManualClock, NewFamily, RefreshFamilies,
    RevokedFamily, SessionInfo, TokenInfo,
};
use authlab_jwt::keys::{KeyAlg, KeyDir, KeyDirState, KeyEntry, KeyState, STATE_FILE, thumbprint};
use authlab_jwt::{Claims, JwtAuthenticator, JwtConfig, JwtSecret, KeyRing, KeySet, RefreshMode};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use libfuzzer_sys::fuzz_target;

/// The time every check runs at (the seeds' `exp` is 600 s later).
const NOW: u64 = 1_800_000_000;
/// A random-looking HMAC key that passes the secret rules.
const SECRET: &[u8] = b"ptFI2DLS1jHq5OarnCRK7wafp2TlaDP5DuRmgNL3MSO+VH86";
const ISSUER: &str = "authlab";
/// Fixed test keys, for fuzzing only (never used anywhere else).
const ED25519_PKCS8: &[u8] = include_bytes!("../keys/ed25519.pk8");
const P256_PKCS8: &[u8] = include_bytes!("../keys/p256.pk8");

/// A denylist that denies nothing: `decode` never asks it.
struct NoDenylist;

impl Denylist for NoDenylist {
    async fn deny(&self, _: &str, _: Option<&str>, _: Duration) -> Result<(), AuthError> {
        Ok(())
    }
    async fn is_denied(&self, _: &str, _: &str, _: u64) -> Result<bool, AuthError> {
        Ok(false)
    }
}

/// No family store: refresh tokens are stateless here, and `decode` never touches them.
struct NoFamilies;

impl RefreshFamilies for NoFamilies {
    async fn start(&self, _: &Identity, _: &ClientInfo) -> Result<NewFamily, AuthError> {
        Err(AuthError::Unsupported)
    }
    async fn exchange(&self, _: &str) -> Result<Exchange, AuthError> {
        Err(AuthError::Unsupported)
    }
    async fn attach(&self, _: &str, _: &str, _: Duration) -> Result<(), AuthError> {
        Err(AuthError::Unsupported)
    }
    async fn revoke_family(&self, _: &str) -> Result<Option<RevokedFamily>, AuthError> {
        Err(AuthError::Unsupported)
    }
    async fn forget_revocation(&self, _: &str, _: &RevokedFamily) -> Result<(), AuthError> {
        Err(AuthError::Unsupported)
    }
    async fn family_ids(&self, _: i64) -> Result<Vec<String>, AuthError> {
        Err(AuthError::Unsupported)
    }
    async fn list(&self, _: i64) -> Result<Vec<SessionInfo>, AuthError> {
        Err(AuthError::Unsupported)
    }
    async fn inspect(&self, _: &str) -> Result<Option<TokenInfo>, AuthError> {
        Err(AuthError::Unsupported)
    }
}

type Jwt = JwtAuthenticator<NoDenylist, NoFamilies>;

/// Everything built once per fuzzing process.
struct World {
    /// HS256.
    hmac: Jwt,
    /// EdDSA active, ES256 next: both verify.
    keyed: Jwt,
    /// The same keys, with the verified-token cache: it must never change an answer.
    cached: Jwt,
    /// A verifier instance's backend: the public keys only, read from the JWKS the keyed
    /// backend publishes (`parse_jwks`, as `--role verifier` does): it must answer alike.
    remote: Jwt,
    ed25519: Ed25519KeyPair,
    p256: EcdsaKeyPair,
    /// The oracle's keys, read from the JWKS the keyed backend publishes: kid, key, algorithm.
    oracle_keys: Vec<(String, DecodingKey, Algorithm)>,
}

fn backend() -> Jwt {
    JwtAuthenticator::new(
        JwtConfig {
            secret: JwtSecret::new(SECRET.to_vec()).expect("the fuzz secret passes the rules"),
            issuer: ISSUER.into(),
            ttl: Duration::from_secs(600),
            denylist: None,
            refresh: RefreshMode::Stateless {
                ttl: Duration::from_secs(3600),
            },
        },
        Arc::new(ManualClock::new(NOW)),
    )
}

/// A key directory holding the two fixed keys (Ed25519 active, P-256 next), loaded into a ring
/// and removed again: the ring keeps the keys in memory and is never reloaded.
fn ring() -> Arc<KeyRing> {
    let dir = std::env::temp_dir().join(format!("authlab-fuzz-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary key directory");
    let ed = Ed25519KeyPair::from_pkcs8(ED25519_PKCS8).expect("fixed Ed25519 key");
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, P256_PKCS8)
        .expect("fixed P-256 key");
    let ed_kid = thumbprint(&[
        ("crv", "Ed25519"),
        ("kty", "OKP"),
        ("x", &URL_SAFE_NO_PAD.encode(ed.public_key().as_ref())),
    ]);
    let point = &ec.public_key().as_ref()[1..];
    let ec_kid = thumbprint(&[
        ("crv", "P-256"),
        ("kty", "EC"),
        ("x", &URL_SAFE_NO_PAD.encode(&point[..32])),
        ("y", &URL_SAFE_NO_PAD.encode(&point[32..])),
    ]);
    let entry = |kid: &str, alg, state| KeyEntry {
        kid: kid.to_owned(),
        alg,
        state,
        created: NOW - 1000,
        activated: None,
        retired: None,
        prune_after: None,
    };
    let state = KeyDirState {
        keys: vec![
            entry(&ed_kid, KeyAlg::EdDSA, KeyState::Active),
            entry(&ec_kid, KeyAlg::ES256, KeyState::Next),
        ],
    };
    for (kid, pkcs8) in [(&ed_kid, ED25519_PKCS8), (&ec_kid, P256_PKCS8)] {
        let path = dir.join(format!("{kid}.pk8"));
        std::fs::write(&path, pkcs8).expect("key file");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("key file mode");
    }
    std::fs::write(
        dir.join(STATE_FILE),
        serde_json::to_vec(&state).expect("state"),
    )
    .expect("state file");
    let ring = KeyRing::open(KeyDir::new(&dir), None).expect("the fixed keys load");
    let _ = std::fs::remove_dir_all(&dir);
    ring
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let ring = ring();
    let keyed = backend().with_keys(ring.clone());
    let cached = backend().with_keys(ring).with_verify_cache(4096);
    let published = keyed.jwks().0;
    let remote_ring = KeyRing::remote();
    remote_ring.replace(
        KeySet::from_jwks(
            authlab_jwt::parse_jwks(published.as_bytes()).expect("our JWKS passes parse_jwks"),
            published.clone(),
        ),
        u64::MAX,
    );
    let remote = backend().with_keys(remote_ring);
    let jwks: JwkSet = serde_json::from_str(&published).expect("our JWKS parses");
    let oracle_keys = jwks
        .keys
        .iter()
        .map(|jwk| {
            let kid = jwk.common.key_id.clone().expect("every key has a kid");
            let alg = match jwk.common.key_algorithm.map(|a| a.to_string()).as_deref() {
                Some("EdDSA") => Algorithm::EdDSA,
                Some("ES256") => Algorithm::ES256,
                other => panic!("unexpected alg {other:?} in our JWKS"),
            };
            let key = DecodingKey::from_jwk(jwk).expect("our JWK makes a key");
            (kid, key, alg)
        })
        .collect();
    World {
        hmac: backend(),
        keyed,
        cached,
        remote,
        ed25519: Ed25519KeyPair::from_pkcs8(ED25519_PKCS8).expect("fixed Ed25519 key"),
        p256: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, P256_PKCS8)
            .expect("fixed P-256 key"),
        oracle_keys,
    }
});

/// `AUTHLAB_FUZZ_SHOW=1`: print each verdict (to see what a corpus reaches, e.g. the seeds).
static SHOW: LazyLock<bool> = LazyLock::new(|| std::env::var_os("AUTHLAB_FUZZ_SHOW").is_some());

/// `floor(n / 2)` for P-256: a signature whose `s` is above it is the high twin.
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

#[derive(Clone, Copy)]
enum Signer {
    Hs256,
    Ed25519,
    P256,
}

/// `header.claims.signature`, base64url, signed with the fixed key of `signer`.
fn sign(world: &World, signer: Signer, header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = match signer {
        Signer::Hs256 => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
            aws_lc_rs::hmac::sign(&key, input.as_bytes())
                .as_ref()
                .to_vec()
        }
        Signer::Ed25519 => world.ed25519.sign(input.as_bytes()).as_ref().to_vec(),
        Signer::P256 => loop {
            // ECDSA is randomised: sign again until `s` is low, as our signer writes it (half
            // of the signatures are; the verifier refuses the other half by design).
            let signature = world
                .p256
                .sign(&SystemRandom::new(), input.as_bytes())
                .expect("ECDSA signing");
            if signature.as_ref()[32..] <= P256_HALF_ORDER[..] {
                break signature.as_ref().to_vec();
            }
        },
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// What `jsonwebtoken` reads from `token` with the key our backend would use: for HS256 the
/// secret; for a key pair the key the header's `kid` names in our published JWKS (no `kid`, or
/// one we do not publish, is a refusal). Algorithm pinned to the key's, our issuer, `exp`, `iss`
/// and `sub` required, time claims left to the caller (no leeway, our clock).
fn oracle(world: &World, keyed: bool, token: &str) -> Option<Claims> {
    let (key, alg) = if keyed {
        let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
        let (_, key, alg) = world.oracle_keys.iter().find(|(k, _, _)| *k == kid)?;
        (key.clone(), *alg)
    } else {
        (DecodingKey::from_secret(SECRET), Algorithm::HS256)
    };
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .ok()
        .map(|data| data.claims)
}

/// A verdict, comparable.
fn verdict(result: &Result<Claims, AuthError>) -> Result<&Claims, String> {
    result.as_ref().map_err(|e| format!("{e:?}"))
}

/// The property, for one token and one of our backends.
fn check(world: &World, keyed: bool, token: &str) {
    let ours = if keyed { &world.keyed } else { &world.hmac };
    let verdict_now = ours.decode(token);
    if keyed {
        assert_eq!(
            verdict(&world.remote.decode(token)),
            verdict(&verdict_now),
            "a verifier on the JWKS answers otherwise than the issuer: {token}"
        );
        // Twice through the cache: the first may enter the token, the second may hit it.
        for _ in 0..2 {
            assert_eq!(
                verdict(&world.cached.decode(token)),
                verdict(&verdict_now),
                "the verified-token cache changed the answer: {token}"
            );
        }
    }
    let verdict = verdict_now;
    if *SHOW {
        eprintln!(
            "{}: {:?}",
            if keyed { "keyed" } else { "HS256" },
            verdict.as_ref().map(|c| &c.sub)
        );
    }
    match verdict {
        Ok(claims) => {
            let theirs = oracle(world, keyed, token);
            assert_eq!(
                theirs.as_ref(),
                Some(&claims),
                "we accept a token jsonwebtoken refuses or reads otherwise: {token}"
            );
            assert!(claims.exp > NOW, "accepted after exp: {token}");
            assert!(
                claims.nbf.is_none_or(|nbf| nbf <= NOW),
                "accepted before nbf: {token}"
            );
            assert_eq!(claims.aud, None, "an access token with aud: {token}");
        }
        Err(AuthError::Expired) => {
            let theirs = oracle(world, keyed, token);
            assert!(
                theirs.as_ref().is_some_and(|c| c.exp <= NOW),
                "we call expired what jsonwebtoken refuses or reads as live: {token}"
            );
        }
        Err(AuthError::Invalid) => {}
        Err(other) => panic!("decode answered {other:?}, neither Invalid nor Expired: {token}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let signer = match data.first() {
        Some(b'H') => Some(Signer::Hs256),
        Some(b'E') => Some(Signer::Ed25519),
        Some(b'P') => Some(Signer::P256),
        _ => None,
    };
    match signer {
        Some(signer) => {
            let rest = &data[1..];
            let (header, claims) = match rest.iter().position(|&b| b == 0) {
                Some(nul) => (&rest[..nul], &rest[nul + 1..]),
                None => (rest, &[][..]),
            };
            let token = sign(world, signer, header, claims);
            check(world, !matches!(signer, Signer::Hs256), &token);
        }
        None => {
            // A token as it comes: the splitting, decoding and signature layers.
            if let Ok(token) = std::str::from_utf8(data) {
                check(world, false, token);
                check(world, true, token);
            }
        }
    }
});
