//! The JWKS parser a verifier reads its issuer's keys with (`authlab_jwt::parse_jwks`): the
//! document comes from the network, so it is hostile input.
//!
//! Checked on every input: nothing panics; a document it accepts is within the bounds
//! ([`MAX_JWKS_BYTES`], [`MAX_KEYS`]), names every key once by a `kid` of our form, and is read
//! alike by `jsonwebtoken` (as an oracle): its `JwkSet` parses the same document, finds each of
//! our keys by `kid` with the same algorithm, computes the same RFC 7638 thumbprint for it, and
//! turns it into a decoding key.
//!
//! The seeds in `corpus/jwks_parse/` are a JWKS as our issuer writes it (an Ed25519 and a P-256
//! key) and documents each rule refuses (an `oct` key, a private `d`, a `kid` that is not the
//! thumbprint, no `use`).

#![no_main]

use authlab_jwt::jwks::{MAX_JWKS_BYTES, MAX_KEYS};
use authlab_jwt::keys::is_kid_form;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{JwkSet, ThumbprintHash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(keys) = authlab_jwt::parse_jwks(data) else {
        return;
    };
    assert!(data.len() <= MAX_JWKS_BYTES && keys.len() <= MAX_KEYS);
    let oracle: JwkSet = serde_json::from_slice(data)
        .unwrap_or_else(|e| panic!("we accept a JWKS jsonwebtoken does not parse: {e}"));
    for (i, key) in keys.iter().enumerate() {
        assert!(is_kid_form(&key.kid), "{:?}", key.kid);
        assert!(
            keys[..i].iter().all(|other| other.kid != key.kid),
            "kid {} twice",
            key.kid
        );
        let jwk = oracle
            .find(&key.kid)
            .unwrap_or_else(|| panic!("jsonwebtoken finds no key {}", key.kid));
        let alg = jwk.common.key_algorithm.map(|a| a.to_string());
        assert_eq!(alg.as_deref(), Some(key.alg.name()), "kid {}", key.kid);
        assert_eq!(
            jwk.thumbprint(ThumbprintHash::SHA256).ok().as_deref(),
            Some(key.kid.as_str()),
            "the kid is not the key's thumbprint as jsonwebtoken computes it"
        );
        assert!(DecodingKey::from_jwk(jwk).is_ok(), "kid {}", key.kid);
    }
});
