//! The access-token check on the hot path, written out by hand.
//!
//! `jsonwebtoken::decode` is correct but general: per call it builds the HMAC key from the secret
//! again, decodes and parses the header, and parses the claims twice (once for validation, once
//! for the caller). On a route whose whole job is "who is this?", that is most of the cost. This
//! verifier does the same checks in one pass:
//!
//! 1. split the token at its two dots (exactly two; empty parts are rejected);
//! 2. check the HMAC-SHA256 over `header.payload` with a key prepared once (the inner and outer
//!    pads are computed at start-up), comparing in constant time, *before* parsing any JSON;
//! 3. parse the header (≤ 256 bytes) on the stack: `alg` must be `HS256`, `typ` if present `JWT`,
//!    and a `crit` header is refused (RFC 7515 §4.1.11: we understand no extensions). A header
//!    byte-for-byte equal to the one we sign with is known to pass, and is not parsed again;
//! 4. parse the claims (≤ 2 KiB) on the stack into borrowed strings: `iss` must be ours, `exp`
//!    required, `nbf` honoured, `aud` refused (access tokens have none; refresh JWTs do), `sub`
//!    numeric, `jti` and `fam` present.
//!
//! Signing still uses `jsonwebtoken`, and the unit tests check this verifier against it as an
//! oracle on thousands of mutated tokens: both must accept and refuse exactly the same ones.

use std::borrow::Cow;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;

/// Largest header we read (ours is 36 bytes of JSON).
const MAX_HEADER: usize = 256;
/// Largest claims set we read (ours is about 230 bytes of JSON).
const MAX_CLAIMS: usize = 1024;

/// Why a token was refused, before it becomes an `AuthError`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Anything that makes the token not ours.
    Invalid,
    /// Ours, but `exp` has passed.
    Expired,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// The claims of an access token, borrowed from the decoded payload where JSON escapes allow.
#[derive(Deserialize)]
pub(crate) struct AccessClaims<'a> {
    #[serde(borrow)]
    iss: Cow<'a, str>,
    #[serde(borrow)]
    sub: Cow<'a, str>,
    #[serde(default)]
    aud: Option<IgnoredAny>,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    iat: u64,
    #[serde(borrow)]
    pub(crate) jti: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) fam: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) username: Cow<'a, str>,
}

impl AccessClaims<'_> {
    pub(crate) fn user_id(&self) -> Result<i64, Refusal> {
        self.sub.parse().map_err(|_| Refusal::Invalid)
    }

    /// An owned copy, for the paths that are not hot (logout, introspection).
    pub(crate) fn to_owned_claims(&self) -> crate::Claims {
        crate::Claims {
            iss: self.iss.to_string(),
            sub: self.sub.to_string(),
            aud: None,
            iat: self.iat,
            exp: self.exp,
            nbf: self.nbf,
            jti: self.jti.to_string(),
            fam: self.fam.to_string(),
            username: self.username.to_string(),
        }
    }
}

/// HS256 access-token verification with a pre-computed key.
pub(crate) struct AccessVerifier {
    key: hmac::Key,
    issuer: String,
    /// The encoded header we sign with. A token carrying exactly these bytes (every token we
    /// issued) needs no header parse; any other header is decoded and checked in full.
    canonical_header: String,
}

/// Base64url-decodes `part` into `buf`, returning the decoded bytes.
fn decode_into<'b>(part: &str, buf: &'b mut [u8]) -> Result<&'b [u8], Refusal> {
    // Decoded length is at most 3/4 of the encoded length; refuse before decoding if too big.
    if part.is_empty() || part.len() / 4 * 3 > buf.len() {
        return Err(Refusal::Invalid);
    }
    let n = URL_SAFE_NO_PAD
        .decode_slice(part, buf)
        .map_err(|_| Refusal::Invalid)?;
    Ok(&buf[..n])
}

impl AccessVerifier {
    pub(crate) fn new(secret: &[u8], issuer: &str, canonical_header: String) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            issuer: issuer.to_owned(),
            canonical_header,
        }
    }

    /// Whether `header` is the encoded header we sign with.
    #[cfg(test)]
    pub(crate) fn is_canonical_header(&self, header: &str) -> bool {
        header == self.canonical_header
    }

    /// Checks `token` at time `now` and hands its claims to `read` (they borrow from a stack
    /// buffer, so they cannot leave this call).
    pub(crate) fn verify<T>(
        &self,
        token: &str,
        now: u64,
        read: impl FnOnce(&AccessClaims<'_>) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(Refusal::Invalid)?;
        let (header, payload) = signing_input.split_once('.').ok_or(Refusal::Invalid)?;
        if header.is_empty() || payload.is_empty() || payload.contains('.') {
            return Err(Refusal::Invalid);
        }

        // The signature first: nothing an attacker wrote is parsed before it checks out.
        let mut tag = [0u8; 33];
        let tag = decode_into(signature, &mut tag)?;
        if tag.len() != 32 {
            return Err(Refusal::Invalid);
        }
        hmac::verify(&self.key, signing_input.as_bytes(), tag).map_err(|_| Refusal::Invalid)?;

        if header != self.canonical_header {
            let mut header_buf = [0u8; MAX_HEADER];
            let header: Header<'_> = serde_json::from_slice(decode_into(header, &mut header_buf)?)
                .map_err(|_| Refusal::Invalid)?;
            if header.alg != "HS256"
                || header.crit.is_some()
                || header.typ.as_deref().is_some_and(|typ| typ != "JWT")
            {
                return Err(Refusal::Invalid);
            }
        }

        let mut claims_buf = [0u8; MAX_CLAIMS];
        let claims: AccessClaims<'_> =
            serde_json::from_slice(decode_into(payload, &mut claims_buf)?)
                .map_err(|_| Refusal::Invalid)?;
        if claims.iss != self.issuer
            || claims.aud.is_some()
            || claims.nbf.is_some_and(|nbf| now < nbf)
        {
            return Err(Refusal::Invalid);
        }
        if now >= claims.exp {
            return Err(Refusal::Expired);
        }
        read(&claims)
    }
}

#[cfg(test)]
mod tests {
    //! The hand-written verifier against `jsonwebtoken` as an oracle: on every token below, both
    //! must give the same answer, except where this verifier is deliberately stricter (a `typ`
    //! other than `JWT`, a `crit` header), where it must refuse.

    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use serde_json::{Value, json};

    const KEY: &[u8] = b"oracle-key-0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with exactly these header and claims bytes, HMAC-SHA256-signed with `key`.
    fn raw_token(header: &str, claims: &str, key: &[u8]) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
        format!("{input}.{}", b64(tag.as_ref()))
    }

    fn good_claims() -> Value {
        json!({
            "iss": "authlab", "sub": "42", "iat": NOW - 10, "exp": NOW + 600,
            "jti": "8b5e4f2c-0a7e-4c55-9c1e-6f0b0d7f3a21", "fam": "0123456789abcdef0123456789abcdef",
            "username": "alice",
        })
    }

    /// What the library says, mapped the way the backend used to map it.
    fn oracle(token: &str) -> Result<(), Refusal> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.set_issuer(&["authlab"]);
        let claims = jsonwebtoken::decode::<crate::Claims>(
            token,
            &DecodingKey::from_secret(KEY),
            &validation,
        )
        .map_err(|_| Refusal::Invalid)?
        .claims;
        if claims.nbf.is_some_and(|nbf| NOW < nbf) || claims.sub.parse::<i64>().is_err() {
            return Err(Refusal::Invalid);
        }
        if NOW >= claims.exp {
            return Err(Refusal::Expired);
        }
        Ok(())
    }

    fn ours(token: &str) -> Result<(), Refusal> {
        let canonical = b64(br#"{"typ":"JWT","alg":"HS256"}"#);
        AccessVerifier::new(KEY, "authlab", canonical)
            .verify(token, NOW, |c| c.user_id().map(|_| ()))
    }

    #[test]
    fn a_good_token_is_accepted_by_both() {
        let token = raw_token(
            r#"{"typ":"JWT","alg":"HS256"}"#,
            &good_claims().to_string(),
            KEY,
        );
        assert_eq!(oracle(&token), Ok(()));
        assert_eq!(ours(&token), Ok(()));
    }

    #[test]
    fn crafted_headers_and_claims_get_the_oracles_answer() {
        let mut claim_cases: Vec<Value> = vec![good_claims()];
        for field in ["iss", "sub", "iat", "exp", "jti", "fam", "username"] {
            let mut c = good_claims();
            c.as_object_mut().unwrap().remove(field);
            claim_cases.push(c);
        }
        let edits: Vec<(&str, Value)> = vec![
            ("iss", json!("evil")),
            ("iss", json!(["authlab"])),
            ("iss", json!("authlab ")),
            ("sub", json!(42)),
            ("sub", json!("not-a-number")),
            ("exp", json!(NOW)),
            ("exp", json!(NOW - 1)),
            ("exp", json!((NOW + 600) as f64 + 0.5)),
            ("exp", json!("soon")),
            ("nbf", json!(NOW + 5)),
            ("nbf", json!(NOW)),
            ("aud", json!("authlab-refresh")),
            ("aud", json!(["x"])),
            ("username", json!("al\u{0069}ce \"quoted\" \\ back")),
            ("username", json!(7)),
            ("extra", json!({"nested": [1, 2, 3]})),
        ];
        for (field, value) in edits {
            let mut c = good_claims();
            c[field] = value;
            claim_cases.push(c);
        }
        let headers = [
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"alg":"HS256"}"#,
            r#"{ "alg" : "HS256" , "typ" : "JWT" }"#,
            r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#,
            r#"{"alg":"HS384","typ":"JWT"}"#,
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"hs256","typ":"JWT"}"#,
            r#"{"typ":"JWT"}"#,
            r#"{"alg":"HS256","alg":"HS256"}"#,
            r#"[]"#,
            r#"not json"#,
        ];
        let stricter = [
            r#"{"alg":"HS256","typ":"at+jwt"}"#,
            r#"{"alg":"HS256","crit":["exp"]}"#,
        ];
        let mut compared = 0;
        for claims in &claim_cases {
            let claims = claims.to_string();
            for header in headers {
                let token = raw_token(header, &claims, KEY);
                assert_eq!(
                    ours(&token),
                    oracle(&token),
                    "header {header}, claims {claims}"
                );
                compared += 1;
            }
            for header in stricter {
                let token = raw_token(header, &claims, KEY);
                assert_eq!(ours(&token), Err(Refusal::Invalid), "{header}");
            }
            let forged = raw_token(headers[0], &claims, b"another-key-0123456789abcdef01234567");
            assert_eq!(ours(&forged), Err(Refusal::Invalid));
            assert_eq!(oracle(&forged), Err(Refusal::Invalid));
        }
        assert!(compared > 250);
    }

    #[test]
    fn thousands_of_mutated_tokens_get_the_oracles_answer() {
        let token = raw_token(
            r#"{"typ":"JWT","alg":"HS256"}"#,
            &good_claims().to_string(),
            KEY,
        );
        let alphabet: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5000 {
            let mut bytes = token.clone().into_bytes();
            match next() % 4 {
                0 => {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = alphabet[(next() as usize) % alphabet.len()];
                }
                1 => {
                    let i = (next() as usize) % bytes.len();
                    bytes.remove(i);
                }
                2 => {
                    let i = (next() as usize) % bytes.len();
                    bytes.insert(i, alphabet[(next() as usize) % alphabet.len()]);
                }
                _ => bytes.truncate((next() as usize) % bytes.len()),
            }
            let mutated = String::from_utf8(bytes).unwrap();
            assert_eq!(ours(&mutated), oracle(&mutated), "{mutated}");
        }
    }
}
