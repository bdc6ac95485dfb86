//! Reading a JWKS (RFC 7517) fetched from an issuer: the keys a verifier-only instance checks
//! tokens with.
//!
//! A verifier holds no private key: what it knows of the issuer's keys is this document, fetched
//! over HTTP by the server (this crate does no I/O). The document comes from the network, so it
//! is read as hostile input: [`parse_jwks`] never panics, bounds what it reads, and accepts a set
//! only if **every** key in it is one we would publish ourselves:
//!
//! - `kty` `OKP` with `crv` `Ed25519` and `alg` `EdDSA` (RFC 8037), or `kty` `EC` with `crv`
//!   `P-256` and `alg` `ES256` (RFC 7518 §6.2); the point must parse (on the curve);
//! - `use` present and `sig`. An absent `use` is refused: RFC 7517 §4.2 leaves such a key's use
//!   open, and our issuer always writes it, so a key without it was not published for us;
//! - `kid` present and equal to the key's own RFC 7638 thumbprint, so a `kid` cannot name another
//!   key than the one it sits on, and every issuer instance names a key alike;
//! - no private member (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`): a set that publishes a private
//!   key is a broken issuer, not one to trust;
//! - `kty` `oct` (or any other) is refused: a symmetric key in a public document would let a
//!   token MACed with that public value pass as signed (the HS256/public-key confusion);
//! - each member at most once, each `kid` at most once, at most [`MAX_KEYS`] keys in at most
//!   [`MAX_JWKS_BYTES`] bytes.
//!
//! One refused entry refuses the whole document rather than skipping it (RFC 7517 §5 would let a
//! general-purpose client ignore keys it does not understand): an authlab issuer publishes only
//! the keys above, so anything else means the document is not what we think it is, and the
//! verifier keeps its last good set instead.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::JwtError;
use crate::keys::{KeyAlg, VerifyingKey, is_kid_form, kid_of, public_members};

/// The largest JWKS document read (an authlab issuer's, with three keys, is under 1 KiB).
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// The most keys one document may hold (an authlab issuer publishes `next`, `active` and the
/// `retired` keys not yet pruned: usually two or three).
pub const MAX_KEYS: usize = 32;

/// A public key from a JWKS, parsed and checked: what a verifier checks signatures with.
pub struct JwksKey {
    /// Its id, equal to its RFC 7638 thumbprint.
    pub kid: String,
    /// Its algorithm (the key's, never a token's).
    pub alg: KeyAlg,
    pub(crate) key: VerifyingKey,
}

impl std::fmt::Debug for JwksKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The document: only `keys` is read; other top-level members are ignored.
#[derive(Deserialize)]
struct Document {
    keys: Vec<Entry>,
}

/// One JWK, with the members we read. Members not named here are ignored, except the private
/// ones, which are named so that their presence can be refused. A member named twice is an error
/// (serde's derive refuses duplicate fields).
#[derive(Deserialize)]
struct Entry {
    kty: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    kid: Option<String>,
    d: Option<serde::de::IgnoredAny>,
    k: Option<serde::de::IgnoredAny>,
    p: Option<serde::de::IgnoredAny>,
    q: Option<serde::de::IgnoredAny>,
    dp: Option<serde::de::IgnoredAny>,
    dq: Option<serde::de::IgnoredAny>,
    qi: Option<serde::de::IgnoredAny>,
}

fn refused(reason: &'static str) -> JwtError {
    JwtError::JwksRejected(reason)
}

/// Decodes a base64url coordinate of exactly 32 bytes.
fn coordinate(value: Option<&str>) -> Result<Vec<u8>, JwtError> {
    let value = value.ok_or(refused("a key lacks a coordinate (x or y)"))?;
    // 32 bytes are 43 characters unpadded; refuse anything longer before decoding.
    if value.len() != 43 {
        return Err(refused("a coordinate is not 32 bytes of base64url"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| refused("a coordinate is not 32 bytes of base64url"))?;
    if bytes.len() != 32 {
        return Err(refused("a coordinate is not 32 bytes of base64url"));
    }
    Ok(bytes)
}

/// One entry, checked (see the module documentation).
fn parse_entry(entry: Entry) -> Result<JwksKey, JwtError> {
    if entry.d.is_some()
        || entry.k.is_some()
        || entry.p.is_some()
        || entry.q.is_some()
        || entry.dp.is_some()
        || entry.dq.is_some()
        || entry.qi.is_some()
    {
        return Err(refused("a key carries a private or symmetric member"));
    }
    if entry.use_.as_deref() != Some("sig") {
        return Err(refused("a key's use is not sig"));
    }
    let (alg, public) = match (
        entry.kty.as_deref(),
        entry.crv.as_deref(),
        entry.alg.as_deref(),
    ) {
        (Some("OKP"), Some("Ed25519"), Some("EdDSA")) => {
            if entry.y.is_some() {
                return Err(refused("an Ed25519 key has a y coordinate"));
            }
            (KeyAlg::EdDSA, coordinate(entry.x.as_deref())?)
        }
        (Some("EC"), Some("P-256"), Some("ES256")) => {
            let mut point = vec![4u8];
            point.extend(coordinate(entry.x.as_deref())?);
            point.extend(coordinate(entry.y.as_deref())?);
            (KeyAlg::ES256, point)
        }
        (Some("oct"), _, _) => {
            return Err(refused(
                "a key is symmetric (kty oct): a public value must never become an HMAC key",
            ));
        }
        _ => {
            return Err(refused("a key is not OKP/Ed25519/EdDSA or EC/P-256/ES256"));
        }
    };
    let kid = entry.kid.ok_or(refused("a key has no kid"))?;
    if !is_kid_form(&kid) || kid_of(&public_members(alg, &public)?) != kid {
        return Err(refused("a key's kid is not its RFC 7638 thumbprint"));
    }
    let verification: &'static dyn aws_lc_rs::signature::VerificationAlgorithm = match alg {
        KeyAlg::EdDSA => &ED25519,
        KeyAlg::ES256 => &ECDSA_P256_SHA256_FIXED,
    };
    let key = ParsedPublicKey::new(verification, &public)
        .map_err(|_| refused("a public key does not parse (not on its curve)"))?;
    Ok(JwksKey {
        kid,
        alg,
        key: VerifyingKey { alg, key },
    })
}

/// Parses a JWKS document into the keys a verifier checks tokens with, refusing the whole
/// document if any key in it is not acceptable (the rules: the module documentation). Never
/// panics, whatever the bytes.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<JwksKey>, JwtError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(refused("the document is larger than 64 KiB"));
    }
    // JSON text throughout, the members we ignore included: serde skips an ignored member's
    // string without checking its UTF-8 or its escapes, so without this a document with
    // invalid UTF-8 or a lone surrogate in an unknown member passed (the `jwks_parse` fuzz target
    // found it). Such a document is not JSON (RFC 8259 §8.1), so not one our issuer wrote.
    serde_json::from_slice::<serde_json::Value>(bytes)
        .map_err(|_| refused("not a JSON document"))?;
    let document: Document = serde_json::from_slice(bytes)
        .map_err(|_| refused("not a JSON object with a keys array"))?;
    if document.keys.len() > MAX_KEYS {
        return Err(refused("the document holds more than 32 keys"));
    }
    let mut keys: Vec<JwksKey> = Vec::with_capacity(document.keys.len());
    for entry in document.keys {
        let key = parse_entry(entry)?;
        if keys.iter().any(|k| k.kid == key.kid) {
            return Err(refused("a kid appears twice"));
        }
        keys.push(key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyDir;
    use serde_json::{Value, json};
    use std::time::Duration;

    /// A directory with an active and a next key of `alg`, and its published JWKS.
    fn published(alg: KeyAlg) -> (KeyDir, Value) {
        let dir = KeyDir::new(std::env::temp_dir().join(format!(
            "authlab-jwks-test-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        )));
        dir.generate(alg, 1).unwrap();
        dir.rotate(None, Duration::from_secs(60), 2).unwrap();
        let jwks = serde_json::from_str(dir.load().unwrap().jwks()).unwrap();
        (dir, jwks)
    }

    fn parse(doc: &Value) -> Result<Vec<JwksKey>, JwtError> {
        parse_jwks(doc.to_string().as_bytes())
    }

    fn reason(doc: &Value) -> &'static str {
        match parse(doc) {
            Err(JwtError::JwksRejected(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_set_an_issuer_publishes_parses_back_with_its_kids_and_algorithms() {
        for alg in [KeyAlg::EdDSA, KeyAlg::ES256] {
            let (dir, jwks) = published(alg);
            let keys = parse(&jwks).unwrap();
            let state = dir.state().unwrap();
            assert_eq!(keys.len(), 2);
            for (key, entry) in keys.iter().zip(&state.keys) {
                assert_eq!(key.kid, entry.kid);
                assert_eq!(key.alg, alg);
            }
            std::fs::remove_dir_all(dir.path()).unwrap();
        }
    }

    #[test]
    fn invalid_utf8_or_a_lone_surrogate_in_a_member_we_ignore_refuses_the_set() {
        let (dir, jwks) = published(KeyAlg::EdDSA);
        let good = jwks.to_string();
        assert!(parse_jwks(good.as_bytes()).is_ok());
        let with_member = |value: &[u8]| {
            let mut doc = good.as_bytes()[..good.len() - 3].to_vec(); // before `}]}`
            doc.extend_from_slice(b",\"ualg\":\"");
            doc.extend_from_slice(value);
            doc.extend_from_slice(b"\"}]}");
            doc
        };
        assert!(
            parse_jwks(&with_member(b"ES256")).is_ok(),
            "an unknown member"
        );
        for bad in [&b"E\xff256"[..], b"\\ud800", b"\xed\xa0\x80"] {
            assert!(
                matches!(
                    parse_jwks(&with_member(bad)),
                    Err(JwtError::JwksRejected("not a JSON document"))
                ),
                "{bad:?}"
            );
        }
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn an_oct_key_refuses_the_whole_set() {
        let (dir, mut jwks) = published(KeyAlg::EdDSA);
        jwks["keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "use": "sig", "kid": "a"}));
        // The private-member check speaks first (`k`); without `k` the kty check does.
        assert_eq!(reason(&jwks), "a key carries a private or symmetric member");
        jwks["keys"][2].as_object_mut().unwrap().remove("k");
        assert!(reason(&jwks).contains("kty oct"));
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn each_rule_refuses_its_case() {
        let (dir, jwks) = published(KeyAlg::ES256);
        let key = jwks["keys"][0].clone();
        let edited = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut key = key.clone();
            edit(key.as_object_mut().unwrap());
            json!({ "keys": [key] })
        };
        let cases: Vec<(Value, &str)> = vec![
            (edited(&|k| drop(k.remove("use"))), "use is not sig"),
            (
                edited(&|k| drop(k.insert("use".into(), "enc".into()))),
                "use is not sig",
            ),
            (edited(&|k| drop(k.remove("kid"))), "no kid"),
            (
                edited(&|k| drop(k.insert("kid".into(), "../../etc/passwd".into()))),
                "thumbprint",
            ),
            (
                edited(&|k| drop(k.insert("alg".into(), "HS256".into()))),
                "not OKP",
            ),
            (
                edited(&|k| drop(k.insert("alg".into(), "EdDSA".into()))),
                "not OKP",
            ),
            (edited(&|k| drop(k.remove("alg"))), "not OKP"),
            (
                edited(&|k| drop(k.insert("crv".into(), "P-384".into()))),
                "not OKP",
            ),
            (
                edited(&|k| drop(k.insert("kty".into(), "RSA".into()))),
                "not OKP",
            ),
            (
                edited(&|k| drop(k.insert("d".into(), "AAAA".into()))),
                "private",
            ),
            (edited(&|k| drop(k.remove("y"))), "coordinate"),
            (
                edited(&|k| drop(k.insert("x".into(), "AAAA".into()))),
                "coordinate",
            ),
            (
                edited(&|k| drop(k.insert("x".into(), 7.into()))),
                "JSON object",
            ),
        ];
        for (doc, expected) in cases {
            let got = reason(&doc);
            assert!(got.contains(expected), "{doc}: {got}");
        }
        // A point off the curve, with the kid it would have: refused when parsed.
        let mut off = key.clone();
        let x = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE";
        let y = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE";
        off["x"] = x.into();
        off["y"] = y.into();
        off["kid"] =
            crate::keys::thumbprint(&[("crv", "P-256"), ("kty", "EC"), ("x", x), ("y", y)]).into();
        assert!(reason(&json!({ "keys": [off] })).contains("curve"));
        // Twice the same key.
        assert_eq!(
            reason(&json!({ "keys": [key.clone(), key.clone()] })),
            "a kid appears twice"
        );
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn shapes_that_are_not_a_key_set_are_refused_without_panicking() {
        for bytes in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"{\"keys\":{}}",
            b"{\"keys\":[1]}",
            b"{\"keys\":[{\"kty\":\"OKP\",\"kty\":\"OKP\"}]}",
            b"{\"keys\":[]} trailing",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(parse_jwks(bytes), Err(JwtError::JwksRejected(_))),
                "{bytes:?}"
            );
        }
        assert!(parse_jwks(b"{\"keys\":[]}").unwrap().is_empty());
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert!(matches!(parse_jwks(&big), Err(JwtError::JwksRejected(_))));
    }
}
