//! The access-token check on the hot path, written out by hand.
//!
//! `jsonwebtoken::decode` is correct but general: per call it builds the HMAC key from the secret
//! again, decodes and parses the header, and parses the claims twice (once for validation, once
//! for the caller). On a route whose whole job is "who is this?", that is most of the cost. This
//! verifier does the same checks in one pass:
//!
//! 1. split the token at its two dots (exactly two; empty parts are rejected);
//! 2. check the HMAC-SHA256 over `header.payload` with a key prepared once (the inner and outer
//!    pads are computed at start-up), comparing in constant time, *before* parsing any JSON
//!    ([`AccessVerifier::check_signature`]);
//! 3. check the header (≤ 256 bytes; [`check_header`]). A header byte-for-byte equal to the one we
//!    sign with is known to pass and is not parsed again; any other must be a JSON object whose
//!    `alg` is `HS256`, whose `typ` if present is `JWT` (in any case), without `crit` (RFC 7515
//!    §4.1.11: we understand no extensions; refused whatever its value, `null` included) or `jwk`
//!    (we never take a key from the token), with each member at most once, the members the JOSE
//!    registry types (`kid`, `cty`, `x5c`, ...) holding their type, and every other value valid
//!    JSON: numbers in range, strings valid UTF-8 with no lone surrogate;
//! 4. parse the claims (≤ 1 KiB, [`MAX_CLAIMS`]) on the stack into borrowed strings, as a JSON
//!    object only (never an array read in field order), each claim we read at most once, unknown
//!    claims valid JSON as above: `iss` must be ours, `exp` required, `nbf` honoured, `aud`
//!    refused (access tokens have none; refresh JWTs do), `sub` the canonical decimal of a user
//!    id > 0 as we write it (no sign, no leading zero, no space), `jti` and `fam` present.
//!
//! Signing still uses `jsonwebtoken`, and the tests check this verifier against it as an oracle:
//! on thousands of mutated tokens both must answer alike, and on generated odd shapes (a property
//! test) whatever this verifier accepts `jsonwebtoken` must accept too, with the same identity.
//! This verifier may be stricter, never looser.

use std::borrow::Cow;
use std::fmt;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

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

/// The user id a `sub` stands for, if it is written exactly as we write one: the decimal digits
/// of an `i64` greater than zero, without sign, leading zero or spaces (`"42"`, never `"+42"`,
/// `"042"`, `" 42"` or `"-0"`). One user has one spelling, so one token cannot pass for another.
pub(crate) fn canonical_user_id(sub: &str) -> Option<i64> {
    let bytes = sub.as_bytes();
    if bytes.first().is_none_or(|&b| b == b'0') || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Only digits, no leading zero: the parse fails exactly on overflow, and the value is > 0.
    sub.parse().ok()
}

/// Any JSON value, checked as strictly as `serde_json::Value` parses it (numbers in range,
/// strings valid UTF-8 without lone surrogates) but kept nowhere.
struct StrictValue;

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictValue)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(StrictValue)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(StrictValue)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(StrictValue)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(StrictValue)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(StrictValue)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(StrictValue)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<StrictValue>()?.is_some() {}
        Ok(StrictValue)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<StrictValue, StrictValue>()?.is_some() {}
        Ok(StrictValue)
    }
}

/// A JSON string, borrowed from the input unless it holds escapes.
struct CowStr<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// The header of a token whose header is not byte-for-byte ours: see the module documentation.
/// Parsing it may allocate; our own tokens never come here. The stateless refresh path uses it
/// too.
pub(crate) fn check_header(json: &[u8]) -> Result<(), Refusal> {
    struct HeaderCheck;
    impl<'de> Visitor<'de> for HeaderCheck {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JOSE header object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen: Vec<String> = Vec::new();
            let mut alg_ok = false;
            while let Some(name) = map.next_key::<String>()? {
                if seen.contains(&name) {
                    return Err(de::Error::custom("a header member appears twice"));
                }
                match name.as_str() {
                    "alg" => alg_ok = map.next_value::<CowStr<'_>>()?.0 == "HS256",
                    // Absent is fine; `null` or anything but "JWT" (in any case: RFC 7515 §4.1.9
                    // compares media types case-insensitively) is not.
                    "typ" => {
                        if !map
                            .next_value::<CowStr<'_>>()?
                            .0
                            .eq_ignore_ascii_case("JWT")
                        {
                            return Err(de::Error::custom("typ is not JWT"));
                        }
                    }
                    "crit" | "jwk" => return Err(de::Error::custom("refused header member")),
                    // Typed by the JOSE registries (RFC 7515 §4.1, RFC 7516 §4.1, RFC 8555 §6.4)
                    // as `jsonwebtoken::Header` types them; `null` reads as absent there too.
                    "cty" | "jku" | "kid" | "x5u" | "x5t" | "x5t#S256" | "enc" | "zip" | "url"
                    | "nonce" => {
                        map.next_value::<Option<CowStr<'_>>>()?;
                    }
                    "x5c" => {
                        map.next_value::<Option<Vec<CowStr<'_>>>>()?;
                    }
                    _ => {
                        map.next_value::<StrictValue>()?;
                    }
                }
                seen.push(name);
            }
            if alg_ok {
                Ok(())
            } else {
                Err(de::Error::custom("alg is not HS256"))
            }
        }
    }
    let mut json = serde_json::Deserializer::from_slice(json);
    json.deserialize_map(HeaderCheck)
        .and_then(|()| json.end())
        .map_err(|_| Refusal::Invalid)
}

/// The claims of an access token, borrowed from the decoded payload where JSON escapes allow.
pub(crate) struct AccessClaims<'a> {
    iss: Cow<'a, str>,
    sub: Cow<'a, str>,
    exp: u64,
    nbf: Option<u64>,
    iat: u64,
    pub(crate) jti: Cow<'a, str>,
    pub(crate) fam: Cow<'a, str>,
    pub(crate) username: Cow<'a, str>,
    /// `sub` read as a user id (set once the claims are checked).
    user_id: i64,
}

/// The claims a token's payload can name, as far as this verifier is concerned.
enum Claim {
    Iss,
    Sub,
    Aud,
    Exp,
    Nbf,
    Iat,
    Jti,
    Fam,
    Username,
    Other,
}

impl<'de> Deserialize<'de> for Claim {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Claim;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim name")
            }
            fn visit_str<E>(self, name: &str) -> Result<Claim, E> {
                Ok(match name {
                    "iss" => Claim::Iss,
                    "sub" => Claim::Sub,
                    "aud" => Claim::Aud,
                    "exp" => Claim::Exp,
                    "nbf" => Claim::Nbf,
                    "iat" => Claim::Iat,
                    "jti" => Claim::Jti,
                    "fam" => Claim::Fam,
                    "username" => Claim::Username,
                    _ => Claim::Other,
                })
            }
        }
        deserializer.deserialize_identifier(V)
    }
}

impl<'a> AccessClaims<'a> {
    /// Parses a claims set: a JSON object only, each claim we read at most once, `aud` refused
    /// (whatever its value), unknown claims checked as [`StrictValue`]s.
    fn parse(json: &'a [u8]) -> Result<Self, Refusal> {
        struct ClaimsVisitor;
        impl<'de> Visitor<'de> for ClaimsVisitor {
            type Value = AccessClaims<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JWT claims object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                fn once<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
                    match slot.replace(value) {
                        None => Ok(()),
                        Some(_) => Err(E::custom("a claim appears twice")),
                    }
                }
                let (mut iss, mut sub, mut jti, mut fam, mut username) =
                    (None, None, None, None, None);
                let (mut exp, mut nbf, mut iat) = (None, None, None);
                while let Some(claim) = map.next_key::<Claim>()? {
                    match claim {
                        Claim::Iss => once(&mut iss, map.next_value::<CowStr<'de>>()?.0)?,
                        Claim::Sub => once(&mut sub, map.next_value::<CowStr<'de>>()?.0)?,
                        Claim::Jti => once(&mut jti, map.next_value::<CowStr<'de>>()?.0)?,
                        Claim::Fam => once(&mut fam, map.next_value::<CowStr<'de>>()?.0)?,
                        Claim::Username => once(&mut username, map.next_value::<CowStr<'de>>()?.0)?,
                        Claim::Exp => once(&mut exp, map.next_value::<u64>()?)?,
                        Claim::Iat => once(&mut iat, map.next_value::<u64>()?)?,
                        // `null` reads as absent, as it does for `Option<u64>` in `jsonwebtoken`.
                        Claim::Nbf => once(&mut nbf, map.next_value::<Option<u64>>()?)?,
                        Claim::Aud => return Err(de::Error::custom("access tokens have no aud")),
                        Claim::Other => {
                            map.next_value::<StrictValue>()?;
                        }
                    }
                }
                let missing = || de::Error::custom("a required claim is missing");
                Ok(AccessClaims {
                    iss: iss.ok_or_else(missing)?,
                    sub: sub.ok_or_else(missing)?,
                    exp: exp.ok_or_else(missing)?,
                    nbf: nbf.flatten(),
                    iat: iat.ok_or_else(missing)?,
                    jti: jti.ok_or_else(missing)?,
                    fam: fam.ok_or_else(missing)?,
                    username: username.ok_or_else(missing)?,
                    user_id: 0,
                })
            }
        }
        let mut json = serde_json::Deserializer::from_slice(json);
        let claims = json
            .deserialize_map(ClaimsVisitor)
            .map_err(|_| Refusal::Invalid)?;
        json.end().map_err(|_| Refusal::Invalid)?;
        Ok(claims)
    }

    /// The user id in `sub` (checked to be canonical before the claims are handed out).
    pub(crate) fn user_id(&self) -> Result<i64, Refusal> {
        Ok(self.user_id)
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

    /// Splits a compact JWS into its encoded header and payload if, and only if, its signature is
    /// the HMAC-SHA256 of `header.payload` under our key (compared in constant time). Nothing
    /// else is read: this is the signature layer alone.
    pub(crate) fn check_signature<'t>(
        &self,
        token: &'t str,
    ) -> Result<(&'t str, &'t str), Refusal> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(Refusal::Invalid)?;
        let (header, payload) = signing_input.split_once('.').ok_or(Refusal::Invalid)?;
        if header.is_empty() || payload.is_empty() || payload.contains('.') {
            return Err(Refusal::Invalid);
        }
        let mut tag = [0u8; 33];
        let tag = decode_into(signature, &mut tag)?;
        if tag.len() != 32 {
            return Err(Refusal::Invalid);
        }
        hmac::verify(&self.key, signing_input.as_bytes(), tag).map_err(|_| Refusal::Invalid)?;
        Ok((header, payload))
    }

    /// Checks `token` at time `now` and hands its claims to `read` (they borrow from a stack
    /// buffer, so they cannot leave this call).
    pub(crate) fn verify<T>(
        &self,
        token: &str,
        now: u64,
        read: impl FnOnce(&AccessClaims<'_>) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        // The signature first: nothing an attacker wrote is parsed before it checks out.
        let (header, payload) = self.check_signature(token)?;

        if header != self.canonical_header {
            let mut header_buf = [0u8; MAX_HEADER];
            check_header(decode_into(header, &mut header_buf)?)?;
        }

        let mut claims_buf = [0u8; MAX_CLAIMS];
        let mut claims = AccessClaims::parse(decode_into(payload, &mut claims_buf)?)?;
        if claims.iss != self.issuer || claims.nbf.is_some_and(|nbf| now < nbf) {
            return Err(Refusal::Invalid);
        }
        claims.user_id = canonical_user_id(&claims.sub).ok_or(Refusal::Invalid)?;
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
