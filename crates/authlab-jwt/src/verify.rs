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
//!    id > 0 as we write it (no sign, no leading zero, no space), `jti` and `fam` present. A time
//!    claim (`exp`, `nbf`, `iat`) that is present holds a number of seconds: `"nbf": null` is
//!    refused, not read as "no `nbf`" (a claim that is there must say a time; [`crate::Claims`]
//!    refuses it the same way, where a plain `Option<u64>` would read it as absent).
//!
//! Signing still uses `jsonwebtoken`, and the tests check this verifier against it as an oracle:
//! on thousands of mutated tokens both must answer alike, and on generated odd shapes (a property
//! test) whatever this verifier accepts `jsonwebtoken` must accept too, with the same identity.
//! This verifier may be stricter, never looser.

use std::borrow::Cow;
use std::fmt;

use std::sync::Arc;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::cache::{Verified, VerifiedCache, token_hash};
use crate::keys::{KeyAlg, KeyRing, KeySet, UnknownKid, es256_signature_is_canonical, is_kid_form};

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
    /// Signed, by its header, with a key of our `kid` form that the current set does not hold:
    /// invalid, unless a refetch of the issuer's keys brings it (verifiers only).
    UnknownKid,
    /// A verifier without usable keys (never fetched, or too stale): not the token's fault.
    KeysUnavailable,
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

/// What [`read_header`] learnt from a header that passed it.
pub(crate) struct HeaderFacts {
    /// `alg`, as far as we know it.
    alg: HeaderAlg,
    /// `kid`, kept only when reading the header of a token signed with a key pair.
    kid: Option<String>,
}

/// A header's `alg`, read without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HeaderAlg {
    Hs256,
    Key(KeyAlg),
    Other,
}

/// The header of a token whose header is not byte-for-byte ours: see the module documentation.
/// Parsing it may allocate; our own tokens never come here. The stateless refresh path uses it
/// too.
pub(crate) fn check_header(json: &[u8]) -> Result<(), Refusal> {
    match read_header(json, false)?.alg {
        HeaderAlg::Hs256 => Ok(()),
        _ => Err(Refusal::Invalid),
    }
}

/// Checks a header as [`check_header`] does, without deciding on `alg`. With `keyed` (a token
/// signed with a key pair) it also keeps `kid` and refuses the members that point at keys or
/// certificates elsewhere (`jku`, `x5u`, `x5c`): the key comes from our directory, by `kid`,
/// never from the token.
fn read_header(json: &[u8], keyed: bool) -> Result<HeaderFacts, Refusal> {
    struct HeaderCheck {
        keyed: bool,
    }
    impl<'de> Visitor<'de> for HeaderCheck {
        type Value = HeaderFacts;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JOSE header object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderFacts, A::Error> {
            let mut seen: Vec<String> = Vec::new();
            let mut facts = HeaderFacts {
                alg: HeaderAlg::Other,
                kid: None,
            };
            while let Some(name) = map.next_key::<String>()? {
                if seen.contains(&name) {
                    return Err(de::Error::custom("a header member appears twice"));
                }
                match name.as_str() {
                    "alg" => {
                        facts.alg = match &*map.next_value::<CowStr<'_>>()?.0 {
                            "HS256" => HeaderAlg::Hs256,
                            other => other.parse().map_or(HeaderAlg::Other, HeaderAlg::Key),
                        }
                    }
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
                    "jku" | "x5u" | "x5c" if self.keyed => {
                        return Err(de::Error::custom("refused header member"));
                    }
                    "kid" if self.keyed => {
                        facts.kid = Some(map.next_value::<CowStr<'_>>()?.0.into_owned());
                    }
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
            Ok(facts)
        }
    }
    let mut json = serde_json::Deserializer::from_slice(json);
    json.deserialize_map(HeaderCheck { keyed })
        .and_then(|facts| json.end().map(|()| facts))
        .map_err(|_| Refusal::Invalid)
}

/// Splits a compact JWS into its encoded payload if, and only if, it is signed by a key of
/// `keys`: the header names the key by `kid` (exactly the form of one of ours, and known: no
/// other key is tried), `alg` is that key's algorithm (the key decides, the header only has to
/// agree), and the signature verifies under it. ES256 signatures must also be in canonical form
/// (64 bytes, low-S, neither half zero). The header has to be read first (it names the key); it
/// is at most [`MAX_HEADER`] bytes and checked as strictly as any other.
fn check_key_signature<'t>(keys: &KeySet, token: &'t str) -> Result<(&'t str, String), Refusal> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(Refusal::Invalid)?;
    let (header, payload) = signing_input.split_once('.').ok_or(Refusal::Invalid)?;
    if header.is_empty() || payload.is_empty() || payload.contains('.') {
        return Err(Refusal::Invalid);
    }
    let facts = {
        let mut header_buf = [0u8; MAX_HEADER];
        read_header(decode_into(header, &mut header_buf)?, true)?
    };
    let kid = facts.kid.ok_or(Refusal::Invalid)?;
    if !is_kid_form(&kid) {
        return Err(Refusal::Invalid);
    }
    let key = keys.verifier(&kid).ok_or(Refusal::UnknownKid)?;
    if facts.alg != HeaderAlg::Key(key.alg) {
        return Err(Refusal::Invalid);
    }
    let mut signature_buf = [0u8; 65];
    let signature = decode_into(signature, &mut signature_buf)?;
    let canonical = match key.alg {
        KeyAlg::EdDSA => signature.len() == 64,
        KeyAlg::ES256 => es256_signature_is_canonical(signature),
    };
    if !canonical {
        return Err(Refusal::Invalid);
    }
    key.key
        .verify_sig(signing_input.as_bytes(), signature)
        .map_err(|_| Refusal::Invalid)?;
    Ok((payload, kid))
}

/// The claims of an access token, borrowed from the decoded payload where JSON escapes allow.
pub(crate) struct AccessClaims<'a> {
    iss: Cow<'a, str>,
    sub: Cow<'a, str>,
    exp: u64,
    nbf: Option<u64>,
    pub(crate) iat: u64,
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

/// Reads a JSON string without escapes or control characters into an empty `slot`.
fn plain_text<'j>(slot: &mut Option<Cow<'j, str>>, rest: &mut &'j [u8]) -> Option<()> {
    let body = rest.strip_prefix(b"\"")?;
    let end = body
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    if body[end] != b'"' || slot.is_some() {
        return None;
    }
    *slot = Some(Cow::Borrowed(std::str::from_utf8(&body[..end]).ok()?));
    *rest = &body[end + 1..];
    Some(())
}
/// Reads a JSON number of plain digits (no sign, no leading zero, no fraction) into an empty
/// `slot`.
fn plain_number(slot: &mut Option<u64>, rest: &mut &[u8]) -> Option<()> {
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    let digits = &rest[..end];
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') || slot.is_some() {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    *slot = Some(value);
    *rest = &rest[end..];
    Some(())
}

impl<'a> AccessClaims<'a> {
    /// Parses a claims set: a JSON object only, each claim we read at most once, `aud` refused
    /// (whatever its value), unknown claims checked as [`StrictValue`]s.
    fn parse(json: &'a [u8]) -> Result<Self, Refusal> {
        match Self::scan_plain(json) {
            Some(claims) => Ok(claims),
            None => Self::parse_full(json),
        }
    }

    /// The full parse, for claims the scanner does not take ([`AccessClaims::scan_plain`]).
    fn parse_full(json: &'a [u8]) -> Result<Self, Refusal> {
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
                        // Optional, but a present `nbf` is a time: `null` is refused.
                        Claim::Nbf => once(&mut nbf, map.next_value::<u64>()?)?,
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
                    nbf,
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

    /// The fast path of [`AccessClaims::parse`], for the claims as `serde_json` writes ours: one
    /// flat object with no whitespace, only claims we read (each once, `aud` never), strings
    /// without escapes or control characters, numbers as plain digits without a leading zero.
    /// On anything else it gives up (`None`) and the full parse decides, so it can only ever
    /// accept what the full parse accepts, with the same values (a test checks both on the same
    /// inputs). It is a scanner, not a JSON parser: no recursion, no visitor, no `Cow` to build.
    fn scan_plain(json: &'a [u8]) -> Option<Self> {
        let mut rest = json.strip_prefix(b"{")?;
        let (mut iss, mut sub, mut jti, mut fam, mut username) = (None, None, None, None, None);
        let (mut exp, mut nbf, mut iat) = (None, None, None);
        loop {
            rest = rest.strip_prefix(b"\"")?;
            let end = rest.iter().position(|&b| b == b'"')?;
            let (name, after) = (&rest[..end], &rest[end + 1..]);
            rest = after.strip_prefix(b":")?;
            match name {
                b"iss" => plain_text(&mut iss, &mut rest)?,
                b"sub" => plain_text(&mut sub, &mut rest)?,
                b"jti" => plain_text(&mut jti, &mut rest)?,
                b"fam" => plain_text(&mut fam, &mut rest)?,
                b"username" => plain_text(&mut username, &mut rest)?,
                b"exp" => plain_number(&mut exp, &mut rest)?,
                b"iat" => plain_number(&mut iat, &mut rest)?,
                b"nbf" => plain_number(&mut nbf, &mut rest)?,
                // `aud`, claims we do not read, and anything stranger: the full parse decides.
                _ => return None,
            }
            match rest.split_first()? {
                (b',', after) => rest = after,
                (b'}', []) => break,
                _ => return None,
            }
        }
        Some(AccessClaims {
            iss: iss?,
            sub: sub?,
            exp: exp?,
            nbf,
            iat: iat?,
            jti: jti?,
            fam: fam?,
            username: username?,
            user_id: 0,
        })
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

/// Access-token verification: HS256 with a pre-computed key, or (with a key ring) EdDSA/ES256.
pub(crate) struct AccessVerifier {
    key: hmac::Key,
    /// The key pairs that sign access tokens instead of the HMAC key (`--jwt-alg EdDSA|ES256`).
    keys: Option<Arc<KeyRing>>,
    /// Tokens verified with `keys`, by their exact bytes (`--jwt-verify-cache`).
    cache: Option<VerifiedCache>,
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
            keys: None,
            cache: None,
            issuer: issuer.to_owned(),
            canonical_header,
        }
    }

    /// This verifier, checking access tokens against the keys of `ring` instead of the HMAC key.
    pub(crate) fn with_keys(self, ring: Arc<KeyRing>) -> Self {
        Self {
            keys: Some(ring),
            ..self
        }
    }

    /// This verifier, remembering up to `entries` tokens verified with a key ring (0: none).
    pub(crate) fn with_cache(self, entries: usize) -> Self {
        Self {
            cache: VerifiedCache::new(entries),
            ..self
        }
    }

    /// The key ring's refetcher, if this verifier has one (a verifier instance).
    pub(crate) fn unknown_kid(&self) -> Option<&Arc<dyn UnknownKid>> {
        self.keys.as_ref().and_then(|ring| ring.unknown_kid())
    }

    /// How many tokens the verified-token cache holds.
    pub(crate) fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, VerifiedCache::len)
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
    pub(crate) fn check_token<T>(
        &self,
        token: &str,
        now: u64,
        read: impl FnOnce(&AccessClaims<'_>) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let (payload, kid) = match &self.keys {
            None => {
                // The signature first: nothing an attacker wrote is parsed before it checks out.
                let (header, payload) = self.check_signature(token)?;
                if header != self.canonical_header {
                    let mut header_buf = [0u8; MAX_HEADER];
                    check_header(decode_into(header, &mut header_buf)?)?;
                }
                (payload, None)
            }
            Some(ring) => {
                if !ring.usable_at(now) {
                    return Err(Refusal::KeysUnavailable);
                }
                let set = ring.current();
                let hash = self.cache.as_ref().map(|_| token_hash(token));
                if let (Some(cache), Some(hash)) = (&self.cache, &hash)
                    && let Some(hit) = cache.get(hash)
                {
                    // A hit counts only while the key that verified it is still in the set.
                    if set.verifier(&hit.kid).is_some() {
                        return Self::read_cached(&hit, now, read);
                    }
                    cache.remove(hash);
                }
                let (payload, kid) = check_key_signature(&set, token)?;
                (payload, hash.map(|hash| (hash, kid)))
            }
        };

        let mut claims_buf = [0u8; MAX_CLAIMS];
        let mut claims = AccessClaims::parse(decode_into(payload, &mut claims_buf)?)?;
        if claims.iss != self.issuer || claims.nbf.is_some_and(|nbf| now < nbf) {
            return Err(Refusal::Invalid);
        }
        claims.user_id = canonical_user_id(&claims.sub).ok_or(Refusal::Invalid)?;
        if now >= claims.exp {
            return Err(Refusal::Expired);
        }
        // Fully verified and within its lifetime: only now may its bytes enter the cache.
        if let (Some(cache), Some((hash, kid))) = (&self.cache, kid) {
            cache.insert(hash, Verified::of(&claims, kid), now);
        }
        read(&claims)
    }

    /// A cache hit: the time checks again (the token may have expired since), then `read`.
    fn read_cached<T>(
        hit: &Verified,
        now: u64,
        read: impl FnOnce(&AccessClaims<'_>) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        if hit.nbf.is_some_and(|nbf| now < nbf) {
            return Err(Refusal::Invalid);
        }
        if now >= hit.exp {
            return Err(Refusal::Expired);
        }
        read(&AccessClaims {
            iss: Cow::Borrowed(&hit.iss),
            sub: Cow::Borrowed(&hit.sub),
            exp: hit.exp,
            nbf: hit.nbf,
            iat: hit.iat,
            jti: Cow::Borrowed(&hit.jti),
            fam: Cow::Borrowed(&hit.fam),
            username: Cow::Borrowed(&hit.username),
            user_id: hit.user_id,
        })
    }
}

impl Verified {
    fn of(claims: &AccessClaims<'_>, kid: String) -> Self {
        Self {
            kid,
            iss: claims.iss.to_string(),
            sub: claims.sub.to_string(),
            exp: claims.exp,
            nbf: claims.nbf,
            iat: claims.iat,
            jti: claims.jti.to_string(),
            fam: claims.fam.to_string(),
            username: claims.username.to_string(),
            user_id: claims.user_id,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The hand-written verifier against `jsonwebtoken` as an oracle: on every token below, both
    //! must give the same answer, except where this verifier is deliberately stricter (a `typ`
    //! other than `JWT`, a `crit` header, a non-canonical `sub`, a header or claim `jsonwebtoken`
    //! reads leniently), where it must refuse. The property test at the end signs generated odd
    //! shapes and checks that this verifier never accepts what the oracle refuses.

    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use serde_json::{Value, json};

    const KEY: &[u8] = b"oracle-key-0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;
    /// The header `jsonwebtoken` writes, which takes the fast path.
    const CANONICAL: &[u8] = br#"{"typ":"JWT","alg":"HS256"}"#;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with exactly these header and claims bytes, HMAC-SHA256-signed with `key`.
    fn raw_token(header: &str, claims: &str, key: &[u8]) -> String {
        raw_token_bytes(header.as_bytes(), claims.as_bytes(), key)
    }

    /// The same for bytes that need not be UTF-8.
    fn raw_token_bytes(header: &[u8], claims: &[u8], key: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
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

    /// Who a token says it is: user id, user name, family.
    type Who = (i64, String, String);

    /// What the library says, mapped the way the backend used to map it.
    fn oracle(token: &str) -> Result<(), Refusal> {
        oracle_who(token).map(|_| ())
    }

    fn oracle_who(token: &str) -> Result<Who, Refusal> {
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
        if claims.nbf.is_some_and(|nbf| NOW < nbf) {
            return Err(Refusal::Invalid);
        }
        let user_id = claims.sub.parse::<i64>().map_err(|_| Refusal::Invalid)?;
        if NOW >= claims.exp {
            return Err(Refusal::Expired);
        }
        Ok((user_id, claims.username, claims.fam))
    }

    fn ours(token: &str) -> Result<(), Refusal> {
        ours_who(token).map(|_| ())
    }

    fn ours_who(token: &str) -> Result<Who, Refusal> {
        AccessVerifier::new(KEY, "authlab", b64(CANONICAL)).check_token(token, NOW, |c| {
            Ok((c.user_id()?, c.username.to_string(), c.fam.to_string()))
        })
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
            ("nbf", Value::Null),
            ("iat", Value::Null),
            ("exp", Value::Null),
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
            r#"{"alg":"HS256","crit":null}"#,
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

    #[test]
    fn the_six_shapes_the_differential_fuzz_found_are_refused_as_the_oracle_refuses_them() {
        let claims = good_claims().to_string();
        let claims = claims.as_bytes();
        let cases: [(&str, &[u8]); 12] = [
            // 1. A member the JOSE registry types, holding another JSON type.
            ("kid as a number", br#"{"alg":"HS256","kid":1}"#),
            ("x5c as a string", br#"{"alg":"HS256","x5c":"a"}"#),
            ("cty as an array", br#"{"alg":"HS256","cty":[]}"#),
            ("x5c of numbers", br#"{"alg":"HS256","x5c":[1]}"#),
            // 2. The same member twice.
            ("kid twice", br#"{"alg":"HS256","kid":"a","kid":"b"}"#),
            // 3. An unknown member with a number out of range.
            ("1e400", br#"{"alg":"HS256","x":1e400}"#),
            ("-1e400 nested", br#"{"alg":"HS256","x":[{"y":-1e400}]}"#),
            // 4. An unknown member with a lone surrogate, or with invalid UTF-8.
            ("lone surrogate", br#"{"alg":"HS256","x":"\ud800"}"#),
            (
                "lone trailing surrogate",
                br#"{"alg":"HS256","x":"\udc00"}"#,
            ),
            ("invalid UTF-8", b"{\"alg\":\"HS256\",\"x\":\"\xff\"}"),
            // 5. The header as an array.
            ("header array", br#"["HS256"]"#),
            ("header array of two", br#"["JWT","HS256"]"#),
        ];
        for (why, header) in cases {
            let token = raw_token_bytes(header, claims, KEY);
            assert_eq!(oracle(&token), Err(Refusal::Invalid), "oracle, {why}");
            assert_eq!(ours(&token), Err(Refusal::Invalid), "ours, {why}");
        }
        // 6. The claims as an array, in the field order of `crate::Claims`.
        let in_field_order = format!(
            r#"["authlab","42",null,{},{},null,"8b5e4f2c-0a7e-4c55-9c1e-6f0b0d7f3a21","0123456789abcdef0123456789abcdef","alice"]"#,
            NOW - 10,
            NOW + 600
        );
        let token = raw_token_bytes(CANONICAL, in_field_order.as_bytes(), KEY);
        assert_eq!(
            oracle(&token),
            Err(Refusal::Invalid),
            "oracle, claims array"
        );
        assert_eq!(ours(&token), Err(Refusal::Invalid), "ours, claims array");
        // The same claims as an object are good: only the array form was wrong.
        let token = raw_token_bytes(CANONICAL, claims, KEY);
        assert_eq!(ours(&token), Ok(()));
    }

    #[test]
    fn a_time_claim_of_null_is_refused_on_and_off_the_fast_path() {
        let fast = CANONICAL_STR;
        let slow = r#"{"alg":"HS256"}"#;
        for claim in ["exp", "nbf", "iat"] {
            let mut claims = good_claims();
            claims[claim] = Value::Null;
            let claims = claims.to_string();
            assert!(
                AccessClaims::scan_plain(claims.as_bytes()).is_none(),
                "{claim}"
            );
            for header in [fast, slow] {
                let token = raw_token(header, &claims, KEY);
                assert_eq!(
                    ours(&token),
                    Err(Refusal::Invalid),
                    "{claim}: null, {header}"
                );
                // The oracle reads the claims into `crate::Claims`, which refuses it too.
                assert_eq!(
                    oracle(&token),
                    Err(Refusal::Invalid),
                    "oracle, {claim}: null"
                );
            }
        }
        // Absent is still fine, on both paths (`good_claims` has no `nbf`).
        for header in [fast, slow] {
            assert_eq!(
                ours(&raw_token(header, &good_claims().to_string(), KEY)),
                Ok(())
            );
        }
    }

    #[test]
    fn a_crit_header_is_refused_whatever_its_value() {
        let claims = good_claims().to_string();
        for crit in ["null", "[]", r#"["exp"]"#, r#""exp""#, "{}", "0"] {
            let header = format!(r#"{{"alg":"HS256","typ":"JWT","crit":{crit}}}"#);
            let token = raw_token(&header, &claims, KEY);
            assert_eq!(ours(&token), Err(Refusal::Invalid), "{header}");
        }
    }

    #[test]
    fn typed_header_members_of_their_type_and_sound_unknown_members_pass() {
        let claims = good_claims().to_string();
        for header in [
            r#"{"alg":"HS256","typ":"jwt"}"#,
            r#"{"alg":"HS256","kid":"k1","cty":null,"x5c":["MIIB"],"x5t#S256":"abc"}"#,
            r#"{"\u0061lg":"HS256","enc":"A128GCM","zip":"DEF","url":"u","nonce":"n"}"#,
            r#"{"alg":"HS256","x":1e300,"y":"\ud83d\ude00","z":{"a":[1,-0,0.5,true,null]}}"#,
        ] {
            let token = raw_token(header, &claims, KEY);
            assert_eq!(oracle(&token), Ok(()), "oracle, {header}");
            assert_eq!(ours(&token), Ok(()), "ours, {header}");
        }
    }

    #[test]
    fn a_sub_written_any_other_way_than_we_write_it_is_refused() {
        for sub in [
            "+42",
            "042",
            " 42",
            "42 ",
            "-0",
            "0",
            "-42",
            "",
            "4_2",
            "9223372036854775808",
        ] {
            let mut claims = good_claims();
            claims["sub"] = sub.into();
            let token = raw_token(r#"{"alg":"HS256"}"#, &claims.to_string(), KEY);
            assert_eq!(ours(&token), Err(Refusal::Invalid), "{sub:?}");
        }
        for (sub, id) in [("42", 42), ("1", 1), ("9223372036854775807", i64::MAX)] {
            assert_eq!(canonical_user_id(sub), Some(id));
        }
    }

    #[test]
    fn registered_claims_twice_aud_and_unsound_unknown_claims_are_refused() {
        for (why, extra) in [
            ("iss twice", r#""iss":"authlab""#),
            ("exp twice", r#""exp":1800000600"#),
            ("aud null", r#""aud":null"#),
            ("unknown 1e400", r#""x":1e400"#),
            ("unknown lone surrogate", r#""x":"\ud800""#),
        ] {
            let mut claims = good_claims().to_string();
            claims.pop();
            let token = raw_token(CANONICAL_STR, &format!("{claims},{extra}}}"), KEY);
            assert_eq!(ours(&token), Err(Refusal::Invalid), "{why}");
        }
    }

    const CANONICAL_STR: &str = r#"{"typ":"JWT","alg":"HS256"}"#;

    /// Counts the allocations of the current thread, to pin "no allocation on the hot path".
    struct CountingAllocator;

    thread_local! {
        static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    // SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
    // thread-local `Cell` with a const initialiser, which never allocates.
    unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
            // SAFETY: the caller's contract is passed on as it is.
            unsafe { std::alloc::System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: as above.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static COUNTING: CountingAllocator = CountingAllocator;

    fn allocations_in<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = ALLOCATIONS.with(std::cell::Cell::get);
        let out = f();
        (out, ALLOCATIONS.with(std::cell::Cell::get) - before)
    }

    #[test]
    fn our_own_tokens_verify_without_allocating_and_others_are_counted() {
        let verifier = AccessVerifier::new(KEY, "authlab", b64(CANONICAL));
        let ours = raw_token_bytes(CANONICAL, good_claims().to_string().as_bytes(), KEY);
        let (who, allocations) =
            allocations_in(|| verifier.check_token(&ours, NOW, |c| c.user_id()));
        assert_eq!(who, Ok(42));
        assert_eq!(allocations, 0, "the fast path allocated");
        // The counter does count: a header that is not ours is parsed, and that allocates.
        let other = raw_token(
            r#"{"alg":"HS256","kid":"k1"}"#,
            &good_claims().to_string(),
            KEY,
        );
        let (who, allocations) =
            allocations_in(|| verifier.check_token(&other, NOW, |c| c.user_id()));
        assert_eq!(who, Ok(42));
        assert!(allocations > 0);
    }

    /// Generated odd shapes (JSON text, not always valid), for the property test.
    mod odd_shapes {
        use super::{CANONICAL, NOW};
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn join(items: Vec<Vec<u8>>, open: u8, close: u8) -> Vec<u8> {
            let mut out = vec![open];
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(item);
            }
            out.push(close);
            out
        }

        fn pair(key: &[u8], value: &[u8]) -> Vec<u8> {
            [key, b":", value].concat()
        }

        fn quoted(key: &str) -> Vec<u8> {
            format!("\"{key}\"").into_bytes()
        }

        fn bytes(options: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> + Clone {
            proptest::sample::select(options).prop_map(|s| s.as_bytes().to_vec())
        }

        /// Strings that are not UTF-8: a stray byte, and a surrogate encoded directly.
        const INVALID_UTF8: &[&[u8]] = &[b"\"\xff\xfe\"", b"\"\xed\xa0\x80\""];

        /// JSON string literals: plain, escaped, surrogates alone and in pairs, invalid UTF-8.
        fn string() -> impl Strategy<Value = Vec<u8>> + Clone {
            prop_oneof![
                bytes(&[
                    r#""HS256""#,
                    r#""JWT""#,
                    r#""jwt""#,
                    r#""authlab""#,
                    r#""\ud800""#,
                    r#""\udc00x""#,
                    r#""\ud83d\ude00""#,
                    r#""\u0000\"\\\/\b""#,
                    "\"\u{e9}\"",
                ]),
                proptest::sample::select(INVALID_UTF8).prop_map(<[u8]>::to_vec),
                vec(prop_oneof![b'a'..=b'z', Just(b' '), Just(b'-')], 0..6).prop_map(|s| [
                    &b"\""[..],
                    &s,
                    b"\""
                ]
                .concat()),
            ]
        }

        /// JSON values of every kind, numbers at and past the edges, nested up to three deep.
        pub(super) fn value() -> impl Strategy<Value = Vec<u8>> + Clone {
            let leaf = prop_oneof![
                bytes(&["null", "true", "false"]),
                any::<i64>().prop_map(|n| n.to_string().into_bytes()),
                any::<u64>().prop_map(|n| n.to_string().into_bytes()),
                any::<f64>().prop_map(|n| format!("{n:e}").into_bytes()),
                bytes(&[
                    "1e400",
                    "-1e400",
                    "1e-400",
                    "-0",
                    "0.5",
                    "18446744073709551616",
                    "-9223372036854775809",
                    "1E2",
                    "01",
                    "+1",
                    ".5",
                    "NaN",
                ]),
                string(),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    vec(inner.clone(), 0..4).prop_map(|items| join(items, b'[', b']')),
                    vec((string(), inner), 0..4).prop_map(|members| {
                        join(
                            members.iter().map(|(k, v)| pair(k, v)).collect(),
                            b'{',
                            b'}',
                        )
                    }),
                ]
            })
        }

        fn member(
            key: &'static str,
            value: impl Strategy<Value = Vec<u8>>,
        ) -> impl Strategy<Value = Vec<u8>> {
            value.prop_map(move |v| pair(&quoted(key), &v))
        }

        /// Headers: ours byte for byte; objects of registry members (of their type, of another,
        /// twice), unknown members and escaped names, with or without `alg`; other JSON.
        pub(super) fn header() -> impl Strategy<Value = Vec<u8>> {
            let typed = prop_oneof![3 => bytes(&[r#""k1""#, r#"["MIIB"]"#, "null"]), 1 => value()];
            let members = prop_oneof![
                member("typ", prop_oneof![bytes(&[r#""JWT""#]), value()]),
                member("alg", prop_oneof![bytes(&[r#""HS256""#]), value()]),
                proptest::sample::select(
                    &[
                        "kid", "cty", "x5c", "x5t", "x5t#S256", "jku", "x5u", "enc", "zip", "url",
                        "nonce", "jwk", "crit", "b64",
                    ][..]
                )
                .prop_flat_map(move |key| member(key, typed.clone())),
                member("x", value()),
                member(r"\u0061lg", bytes(&[r#""HS256""#])),
                (string(), value()).prop_map(|(k, v)| pair(&k, &v)),
            ];
            let object = (vec(members, 0..3), proptest::bool::weighted(0.9))
                .prop_map(|(mut members, with_alg)| {
                    if with_alg {
                        members.push(br#""alg":"HS256""#.to_vec());
                    }
                    members
                })
                .prop_shuffle()
                .prop_map(|members| join(members, b'{', b'}'));
            prop_oneof![
                4 => Just(CANONICAL.to_vec()),
                4 => object,
                1 => value(),
            ]
        }

        /// One claim: mostly once with its good value (so that a fair share of whole claim sets
        /// are good), sometimes with an odd value or any JSON value, sometimes missing or twice.
        fn claim(
            key: &'static str,
            good: String,
            odd: &'static [&'static str],
        ) -> impl Strategy<Value = Vec<Vec<u8>>> {
            // `exp` goes odd more often: half its odd values are the expired ones.
            let odd_weight = if key == "exp" { 4 } else { 1 };
            let value = prop_oneof![
                16 => Just(good.into_bytes()),
                odd_weight => bytes(odd),
                1 => value(),
            ];
            let times = prop_oneof![23 => Just(1usize), 1 => Just(0usize), 1 => Just(2usize)];
            times.prop_flat_map(move |n| vec(member(key, value.clone()), n..=n))
        }

        /// Claims: ours with members missing, retyped, twice or escaped, an optional extra member,
        /// an optional `nbf` and a rare `aud`; the claims as an array in field order; other JSON.
        pub(super) fn claims() -> impl Strategy<Value = Vec<u8>> {
            let required = (
                claim(
                    "iss",
                    r#""authlab""#.into(),
                    &[r#""evil""#, r#""auth\u006cab""#, r#"["authlab"]"#, "null"],
                ),
                claim(
                    "sub",
                    r#""42""#.into(),
                    &[
                        r#""+42""#,
                        r#""042""#,
                        r#"" 42""#,
                        r#""-0""#,
                        r#""0""#,
                        "42",
                        r#""4\u0032""#,
                        r#""9223372036854775808""#,
                        r#""-42""#,
                    ],
                ),
                claim(
                    "iat",
                    (NOW - 10).to_string(),
                    &["-1", "1.5", "null", r#""0""#],
                ),
                claim(
                    "exp",
                    (NOW + 600).to_string(),
                    &[
                        "1800000000",
                        "1799999999",
                        "1",
                        "1700000000",
                        "1.8000006e9",
                        "1e400",
                        r#""soon""#,
                        "null",
                    ],
                ),
                claim(
                    "jti",
                    r#""8b5e4f2c-0a7e-4c55-9c1e-6f0b0d7f3a21""#.into(),
                    &["1", "null"],
                ),
                claim(
                    "fam",
                    r#""f00d""#.into(),
                    &[r#""\ud800""#, r#""f\u006fod""#, "[]"],
                ),
                claim(
                    "username",
                    r#""alice""#.into(),
                    &[r#""al\u0069ce""#, "7", "null", r#""\udfff""#],
                ),
            );
            let optional = (
                proptest::option::weighted(
                    0.3,
                    claim("nbf", NOW.to_string(), &["1800000005", "null", "-1"]),
                ),
                proptest::option::weighted(
                    0.1,
                    claim("aud", r#""authlab-refresh""#.into(), &["null", "[]"]),
                ),
                proptest::option::weighted(
                    0.2,
                    (string(), value()).prop_map(|(k, v)| pair(&k, &v)),
                ),
            );
            let object = (required, optional)
                .prop_map(|((a, b, c, d, e, f, g), (nbf, aud, extra))| {
                    let mut all = [a, b, c, d, e, f, g].concat();
                    all.extend(nbf.unwrap_or_default());
                    all.extend(aud.unwrap_or_default());
                    all.extend(extra);
                    all
                })
                .prop_shuffle()
                .prop_map(|members| join(members, b'{', b'}'));
            let in_field_order = format!(
                r#"["authlab","42",null,{},{},null,"j","f00d","alice"]"#,
                NOW - 10,
                NOW + 600
            )
            .into_bytes();
            prop_oneof![8 => object, 1 => Just(in_field_order), 1 => value()]
        }
    }

    /// Moderate by default (a few seconds in the debug test build); `PROPTEST_CASES` raises it.
    fn property_cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(4000)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: property_cases(),
            ..proptest::test_runner::Config::default()
        })]

        /// The claims scanner takes a claims set only if the full parse takes it too, and reads
        /// the very same values from it (it gives up on everything else, for the full parse).
        #[test]
        fn whatever_the_scanner_takes_the_full_parse_takes_with_the_same_values(
            claims in odd_shapes::claims(),
        ) {
            if let Some(fast) = AccessClaims::scan_plain(&claims) {
                let full = AccessClaims::parse_full(&claims);
                proptest::prop_assert!(full.is_ok(), "{}", String::from_utf8_lossy(&claims));
                if let Ok(full) = full {
                    proptest::prop_assert_eq!(fields(&fast), fields(&full));
                }
            }
        }

        /// Ours may be stricter than `jsonwebtoken`, never looser: whatever we accept, it accepts
        /// as the same user, name and family; whatever we call expired, it calls expired.
        #[test]
        fn whatever_we_accept_jsonwebtoken_accepts_as_the_same_identity(
            header in odd_shapes::header(),
            claims in odd_shapes::claims(),
        ) {
            let token = raw_token_bytes(&header, &claims, KEY);
            match ours_who(&token) {
                Ok(who) => proptest::prop_assert_eq!(oracle_who(&token), Ok(who)),
                Err(Refusal::Expired) => {
                    proptest::prop_assert_eq!(oracle_who(&token), Err(Refusal::Expired))
                }
                Err(Refusal::Invalid) => {}
                // HS256 has no key ring: neither can happen.
                Err(other @ (Refusal::UnknownKid | Refusal::KeysUnavailable)) => {
                    proptest::prop_assert!(false, "{other:?}")
                }
            }
        }
    }

    /// Every value a claims set yields, for comparing two parses of it.
    #[allow(clippy::type_complexity)]
    fn fields(
        c: &AccessClaims<'_>,
    ) -> (
        String,
        String,
        u64,
        Option<u64>,
        u64,
        String,
        String,
        String,
    ) {
        (
            c.iss.to_string(),
            c.sub.to_string(),
            c.exp,
            c.nbf,
            c.iat,
            c.jti.to_string(),
            c.fam.to_string(),
            c.username.to_string(),
        )
    }

    #[test]
    fn the_scanner_takes_our_own_claims_and_leaves_odd_ones_to_the_full_parse() {
        let ours = good_claims().to_string();
        assert!(AccessClaims::scan_plain(ours.as_bytes()).is_some());
        for odd in [
            r#"{"iss":"authlab", "sub":"42"}"#,
            r#"{"iss":"auth\u006cab","sub":"42","iat":1,"exp":2,"jti":"j","fam":"f","username":"a"}"#,
            r#"{"iss":"authlab","sub":"42","iat":01,"exp":2,"jti":"j","fam":"f","username":"a"}"#,
            r#"{"iss":"authlab","sub":"42","iat":1,"exp":2,"jti":"j","fam":"f","username":"a","x":1}"#,
            r#"{"iss":"authlab","sub":"42","iat":1,"exp":2,"jti":"j","fam":"f","username":"a","aud":"x"}"#,
            r#"{"iss":"authlab","iss":"authlab","sub":"42","iat":1,"exp":2,"jti":"j","fam":"f","username":"a"}"#,
            r#"{"iss":"authlab","sub":"42","iat":1,"exp":2,"jti":"j","fam":"f","username":"a"} "#,
            r#"{"iss":"authlab","sub":"42","iat":1,"exp":2.5,"jti":"j","fam":"f","username":"a"}"#,
            r#"{"iss":"authlab","sub":"42","iat":1,"exp":18446744073709551616,"jti":"j","fam":"f","username":"a"}"#,
            r#"{"iss":"authlab","sub":"42","iat":1,"exp":2,"jti":"j","fam":"f","username":"a","nbf":null}"#,
        ] {
            assert!(AccessClaims::scan_plain(odd.as_bytes()).is_none(), "{odd}");
        }
    }

    /// The property holds something only if the generators reach tokens both verifiers accept,
    /// on the fast path and off it, as well as refused ones: count them on a fixed seed.
    #[test]
    fn the_generated_shapes_include_accepted_and_refused_tokens() {
        use proptest::strategy::{Strategy, ValueTree};
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let (headers, claims) = (odd_shapes::header(), odd_shapes::claims());
        let (mut fast, mut slow, mut expired, mut refused) = (0, 0, 0, 0);
        for _ in 0..1000 {
            let header = headers.new_tree(&mut runner).unwrap().current();
            let claims = claims.new_tree(&mut runner).unwrap().current();
            match ours(&raw_token_bytes(&header, &claims, KEY)) {
                Ok(()) if header == CANONICAL => fast += 1,
                Ok(()) => slow += 1,
                Err(Refusal::Expired) => expired += 1,
                Err(Refusal::Invalid) => refused += 1,
                Err(other) => panic!("HS256 has no key ring: {other:?}"),
            }
        }
        assert!(fast >= 20, "{fast} accepted on the fast path");
        assert!(slow >= 10, "{slow} accepted off the fast path");
        assert!(expired >= 2, "{expired} expired");
        assert!(refused >= 200, "{refused} refused");
    }
}
