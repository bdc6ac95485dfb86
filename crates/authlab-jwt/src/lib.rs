//! Signed JSON Web Tokens: the credential carries its own claims, the signature vouches for them.
//!
//! - **State**: none on the server in the pure design; the token says who the user is and until when.
//! - **Verify** is an HMAC over the token's first two parts plus a few claim checks: no I/O at all.
//! - **Revocation** is the catch: a signed token stays valid until `exp` whatever happens. Rejecting
//!   one earlier means remembering its `jti` on a denylist and looking it up on *every* request,
//!   which is a store again. This crate offers both designs ([`JwtConfig::denylist`]) so they can be
//!   measured side by side.
//! - **Scaling out** needs only the key: every instance with the same secret verifies every token.
//!
//! # Layout
//! - [`JwtSecret`]: the HMAC key, judged once at start-up (`secret.rs`, list in
//!   `weak_secrets.txt`); see [Secrets](#secrets).
//! - [`Claims`]: what authlab puts in a token: `iss`, `sub`, `iat`, `exp`, `jti`, `username`.
//! - [`JwtAuthenticator`]: issue and verify with the algorithm pinned to HS256, following RFC 8725:
//!   the `alg` in a token's header is checked against ours, never obeyed. Access tokens go through
//!   a hand-written verifier (`verify.rs`); stateless refresh JWTs through `jsonwebtoken` plus the
//!   same header and `sub` rules; see [Tokens](#tokens).
//!
//! The denylist is any [`Denylist`]; the server hands in the Redis one. This crate knows nothing of
//! Redis.
//!
//! # Secrets
//! Whoever knows the HMAC key signs tokens as anyone, and one token is all an attacker needs to try
//! guesses offline, as fast as their hardware hashes (RFC 8725 §3.5: human-memorable passwords must
//! not be HMAC keys; ASVS asks for keys of at least 128 bits of security). [`JwtSecret::new`] refuses,
//! each with its own [`JwtError`] variant whose message says how to make a good key
//! (`head -c 48 /dev/urandom | base64 > jwt.secret`):
//! - a key under [`MIN_SECRET_LEN`] (32) bytes: [`JwtError::SecretTooShort`];
//! - a published secret, compared ignoring ASCII case and surrounding whitespace: documentation
//!   examples (`a-string-secret-at-least-256-bits-long`, `your-256-bit-secret`, the RFC 7515 key),
//!   framework and tutorial defaults, the first entries of JWT-cracking wordlists; also when
//!   repeated or padded with digits, punctuation or one repeated character to reach 32 bytes:
//!   [`JwtError::SecretPublished`];
//! - one byte or a short pattern repeated, or a run of sequences (digits, letters, hex, keyboard
//!   rows, by steps of one or two): [`JwtError::SecretTooRegular`];
//! - an estimated entropy under [`MIN_SECRET_BITS`] (128): [`JwtError::SecretLowEntropy`]. The
//!   estimate is the smaller of *length × log2(alphabet)* (digits 10, hex 16, letters 26 per case,
//!   base64 specials 3, other printable ASCII 33, any other byte makes it 256) and the cost of the
//!   cheapest parse into literals, LZ77 copies and sequences. It catches machine regularity, not
//!   human phrasing: an English sentence gets the per-character estimate. The list in
//!   `weak_secrets.txt` is written from knowledge of the published sources; a real deployment
//!   would also ship the full cracking wordlists, compressed.
//!
//! [`JwtSecret::generate`] (32 bytes from the OS, about 256 bits) always passes.
//!
//! # Tokens
//! The access verifier accepts a token only if `jsonwebtoken` 11 with the same validation would,
//! with the same identity, and is stricter where that library is lenient: a header other than
//! ours byte for byte must be a JSON object with each member once, `alg` `HS256`, `typ` absent or
//! `JWT` (any case), no `crit` (whatever its value, `null` included: we understand no extension),
//! no `jwk`, registry members (`kid`, `x5c`, `cty`, ...) of their registered type, every other
//! value valid JSON (no `1e400`, lone surrogate or invalid UTF-8); the claims must be a JSON object
//! (never an array read in field order), `aud` absent, and `sub` the canonical decimal of a
//! positive user id (`"42"`, never `"+42"`, `"042"`, `" 42"` or `"-0"`): one user, one spelling. A
//! property test signs generated odd shapes and checks this against `jsonwebtoken`. The stateless
//! refresh path applies the same header rules and the same `sub` rule after `jsonwebtoken`.
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use authlab_core::{
    AuthError, Authenticator, ClientInfo, Clock, Denylist, FamilyAccess, FamilyLifecycle, Identity,
    Issued, IssuedRefresh, RefreshFamilies, Refreshed, RevokedFamily, SessionInfo, SessionRegistry,
    TokenEndpoints, TokenInfo, TokenKind, random,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use uuid::Builder;

mod cache;
pub mod jwks;
pub mod keys;
mod secret;
mod verify;

pub use jwks::{JwksKey, parse_jwks};
pub use keys::{KeyAlg, KeyDir, KeyRing, KeySet, UnknownKid};
pub use secret::MIN_SECRET_BITS;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use verify::{AccessVerifier, Refusal};

impl From<Refusal> for AuthError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid | Refusal::UnknownKid => AuthError::Invalid,
            Refusal::Expired => AuthError::Expired,
            Refusal::KeysUnavailable => AuthError::unavailable(JwtError::KeysUnavailable),
        }
    }
}

/// The shortest HMAC key we accept: 32 bytes, the output size of SHA-256 (RFC 7518 §3.2).
pub const MIN_SECRET_LEN: usize = 32;

/// How to make a good secret, said by every refusal.
macro_rules! make_one {
    () => {
        "make a random one: `head -c 48 /dev/urandom | base64 > jwt.secret`"
    };
}

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The configured secret is too short to be safe for HS256.
    #[error(
        "the JWT secret is {len} bytes long; HS256 needs at least {MIN_SECRET_LEN} bytes ({})",
        make_one!()
    )]
    SecretTooShort {
        /// How long the rejected secret was.
        len: usize,
    },
    /// The configured secret is a published example or a well-known weak secret (see
    /// `weak_secrets.txt`), alone, repeated or padded.
    #[error(
        "the JWT secret is a published example or a well-known weak secret, the first thing JWT-cracking tools try: anyone could sign tokens with it ({})",
        make_one!()
    )]
    SecretPublished,
    /// The configured secret is a repeated byte or pattern, or a run of sequences.
    #[error(
        "the JWT secret is {pattern}, which a cracking tool guesses at once ({})",
        make_one!()
    )]
    SecretTooRegular {
        /// What the secret is made of: `one byte repeated`, `a short pattern repeated` or
        /// `a run of sequences`.
        pattern: &'static str,
    },
    /// The configured secret's estimated entropy is under [`MIN_SECRET_BITS`].
    #[error(
        "the JWT secret has an estimated {bits} bits of entropy; an HS256 key needs at least {MIN_SECRET_BITS} bits (RFC 8725 section 3.5) ({})",
        make_one!()
    )]
    SecretLowEntropy {
        /// The estimate, in whole bits (see the crate documentation for how it is made).
        bits: u32,
    },
    /// The operating system could not provide random bytes for a generated secret or id.
    #[error("the operating system's random number generator failed")]
    Randomness(#[source] getrandom::Error),
    /// Signing failed (this does not happen with a valid HMAC key, but the library can say so).
    #[error("could not sign the token")]
    Signing(#[source] jsonwebtoken::errors::Error),
    /// A key file or the key directory could not be read, written or deleted.
    #[error("cannot {what} {path}")]
    KeyFile {
        /// What we tried to do.
        what: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A private key file can be read or written by its group or by everyone.
    #[error("the key file {path} has mode {mode:03o}; a private key must be 0600 (chmod 600 it)")]
    KeyFileMode {
        /// The file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key directory's state file does not parse.
    #[error("the key state file {path} does not parse: {reason}")]
    KeyState {
        /// The file.
        path: std::path::PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A key could not be parsed, generated or used.
    #[error("unusable key: {0}")]
    KeyRejected(&'static str),
    /// A key file holds a key whose thumbprint is not the `kid` it is filed under.
    #[error("the key in {0} is not the key its name says (its thumbprint differs)")]
    KeyMismatch(std::path::PathBuf),
    /// The key directory is not in a state that allows this (no active key, two active keys,
    /// no next key to rotate to, ...).
    #[error("key directory: {0}")]
    KeyLifecycle(&'static str),
    /// `--jwt-alg` names another algorithm than the active key's.
    #[error("--jwt-alg is {configured} but the active key in the key directory is {active}")]
    KeyAlgMismatch {
        /// What `--jwt-alg` says.
        configured: KeyAlg,
        /// The active key's algorithm.
        active: KeyAlg,
    },
    /// A JWKS document fetched from an issuer was refused (see [`parse_jwks`] for the rules).
    #[error("the JWKS was refused: {0}")]
    JwksRejected(&'static str),
    /// A verifier has no keys it may use: no JWKS was fetched from the issuer yet, or the last
    /// good one is older than `--jwks-max-stale`.
    #[error(
        "no usable signing keys: the issuer's JWKS was never fetched, or not for longer than the allowed staleness"
    )]
    KeysUnavailable,
    /// The clock has not left the denylist's epoch second, so a token signed now would be
    /// refused as older than the denylist's memory.
    #[error("the clock ({now}) is not past the denylist's epoch ({epoch})")]
    BeforeEpoch {
        /// The epoch, Unix seconds.
        epoch: u64,
        /// This backend's clock, Unix seconds.
        now: u64,
    },
}

impl From<JwtError> for AuthError {
    fn from(err: JwtError) -> Self {
        AuthError::unavailable(err)
    }
}

/// The HS256 key. Kept behind [`secrecy`] so it is zeroed on drop and never printed.
pub struct JwtSecret(SecretSlice<u8>);

impl JwtSecret {
    /// Accepts a key of at least [`MIN_SECRET_LEN`] bytes that is not a published secret, not a
    /// repeated pattern or sequence, and has at least [`MIN_SECRET_BITS`] bits of estimated
    /// entropy (the rules and the estimator: the crate documentation).
    pub fn new(bytes: Vec<u8>) -> Result<Self, JwtError> {
        // Held as a secret before it is judged, so a refused key is zeroed on drop as well.
        let secret = SecretSlice::from(bytes);
        secret::check(secret.expose_secret())?;
        Ok(Self(secret))
    }

    /// A fresh random 32-byte key from the OS generator. Tokens signed with it die with the
    /// process and are not accepted by any other instance: for demos and tests only. It passes
    /// every rule of [`JwtSecret::new`] (32 random bytes estimate at 256 bits).
    pub fn generate() -> Result<Self, JwtError> {
        let mut bytes = vec![0u8; MIN_SECRET_LEN];
        getrandom::fill(&mut bytes).map_err(JwtError::Randomness)?;
        Self::new(bytes)
    }
}

impl JwtSecret {
    /// The key's bytes, for deriving other keys from it (with domain separation). Never log them.
    pub fn expose_bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret([redacted])")
    }
}

/// The `aud` of refresh JWTs (stateless refresh mode only), so that a refresh token can never be
/// used as an access token or the other way round: access validation rejects any `aud`, refresh
/// validation requires this one.
pub const REFRESH_AUDIENCE: &str = "authlab-refresh";

/// The claims authlab signs. Registered claims follow RFC 7519 §4.1; `fam` and `username` are
/// private claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: who signed the token; verify rejects tokens from any other issuer.
    pub iss: String,
    /// Subject: the user id, as a string (RFC 7519 makes `sub` a string).
    pub sub: String,
    /// Audience: absent on access tokens, [`REFRESH_AUDIENCE`] on stateless refresh tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds: the token is rejected from this second on.
    pub exp: u64,
    /// Not before, Unix seconds. authlab does not set it, but honours it when present. Present
    /// means a number: `"nbf": null` is refused, not read as absent (as `iat` and `exp`, which
    /// are required, refuse `null` too).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_time"
    )]
    pub nbf: Option<u64>,
    /// Token id (a UUID): what the denylist remembers when this one token is revoked.
    pub jti: String,
    /// The token family (the login it descends from): what the denylist remembers when a whole
    /// login is revoked (logout, logout everywhere, refresh-token theft).
    pub fam: String,
    /// The user name, so `/me` needs no lookup.
    pub username: String,
}

/// An optional time claim that is present: a number of seconds, never `null` (absent is
/// `#[serde(default)]`'s `None`).
fn present_time<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    u64::deserialize(deserializer).map(Some)
}

/// How refresh tokens work for the JWT backend.
pub enum RefreshMode<F> {
    /// Opaque refresh tokens in a server-side family store, with rotation, reuse detection and
    /// the registry behind "log out everywhere" (the default).
    Stored(F),
    /// The articles' design: the refresh token is itself a long-lived JWT (with
    /// `aud` = [`REFRESH_AUDIENCE`]) that the server never stores. What it gives up: a refresh
    /// token cannot be revoked (logout, logout everywhere and a password change all leave it
    /// working until its `exp`), a stolen one cannot be detected (there is no record of which were
    /// spent), and the server cannot list a user's sessions.
    Stateless {
        /// Lifetime of a refresh JWT.
        ttl: Duration,
    },
}

/// Settings for [`JwtAuthenticator`].
pub struct JwtConfig<D, F> {
    /// The HS256 key.
    pub secret: JwtSecret,
    /// The `iss` we write and require.
    pub issuer: String,
    /// Lifetime of an access token (`exp - iat`).
    pub ttl: Duration,
    /// Where revoked tokens and families are remembered. `None` is the pure stateless design:
    /// verify does no I/O, and nothing can stop an access token before its `exp`.
    pub denylist: Option<D>,
    /// How refresh tokens work.
    pub refresh: RefreshMode<F>,
}

/// JSON Web Tokens signed with HS256.
pub struct JwtAuthenticator<D, F> {
    encoding_key: EncodingKey,
    decoding_key: DecodingKey,
    header: Header,
    access: AccessVerifier,
    /// The key pairs that sign access tokens, if not the HMAC key (`with_keys`).
    keys: Option<Arc<KeyRing>>,
    refresh_validation: Validation,
    issuer: String,
    ttl: Duration,
    denylist: Option<D>,
    refresh: RefreshMode<F>,
    clock: Arc<dyn Clock>,
}

impl<D: Denylist, F: RefreshFamilies> JwtAuthenticator<D, F> {
    /// The backend, reading time from `clock`.
    pub fn new(config: JwtConfig<D, F>, clock: Arc<dyn Clock>) -> Self {
        let key = config.secret.0.expose_secret();
        // Access tokens are checked by `verify::AccessVerifier` (HS256 pinned, our `iss`, no `aud`).
        // `jsonwebtoken` checks only the stateless refresh JWTs: HS256 pinned, our `iss`, and the
        // refresh audience required; expiry and not-before against the injected clock, to the
        // second (no leeway: only our clock matters, both when signing and when checking).
        let mut refresh_validation = Validation::new(Algorithm::HS256);
        refresh_validation.validate_exp = false;
        refresh_validation.validate_nbf = false;
        refresh_validation.leeway = 0;
        refresh_validation.set_issuer(&[config.issuer.as_str()]);
        refresh_validation.set_audience(&[REFRESH_AUDIENCE]);
        refresh_validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let header = Header::new(Algorithm::HS256);
        // What `jsonwebtoken::encode` writes as the first part of every token we sign.
        let canonical_header = serde_json::to_vec(&header)
            .map(|json| URL_SAFE_NO_PAD.encode(json))
            .unwrap_or_default();
        Self {
            encoding_key: EncodingKey::from_secret(key),
            decoding_key: DecodingKey::from_secret(key),
            header,
            access: AccessVerifier::new(key, &config.issuer, canonical_header),
            keys: None,
            refresh_validation,
            issuer: config.issuer,
            ttl: config.ttl,
            denylist: config.denylist,
            refresh: config.refresh,
            clock,
        }
    }

    /// This backend, signing and verifying access tokens with the active key of `ring` (EdDSA or
    /// ES256) instead of the HMAC key; refresh tokens are unchanged (only the issuer reads them).
    pub fn with_keys(self, ring: Arc<KeyRing>) -> Self {
        Self {
            access: self.access.with_keys(ring.clone()),
            keys: Some(ring),
            ..self
        }
    }

    /// This backend, remembering up to `entries` access tokens verified with the key ring, by
    /// their exact bytes, until their `exp` (0: off; HS256 tokens are never cached). See the
    /// `cache` module: only fully verified bytes are entered, a hit still needs its key in the
    /// ring, and the denylist is asked on every request.
    pub fn with_verify_cache(self, entries: usize) -> Self {
        Self {
            access: self.access.with_cache(entries),
            ..self
        }
    }

    /// How many tokens the verified-token cache holds (0 without one).
    pub fn verify_cache_len(&self) -> usize {
        self.access.cached()
    }

    /// The JWKS document and its `ETag`: the public keys of the key ring, or no keys at all
    /// with HS256 (an HMAC secret is never published).
    pub fn jwks(&self) -> (String, String) {
        match &self.keys {
            Some(ring) => {
                let set = ring.current();
                (set.jwks().to_owned(), set.etag().to_owned())
            }
            None => keys::empty_jwks(),
        }
    }

    /// Signs an access token: with the key ring's active key if there is one, else HS256.
    pub fn sign_access(&self, claims: &Claims) -> Result<String, JwtError> {
        match &self.keys {
            Some(ring) => {
                let payload = serde_json::to_vec(claims)
                    .map_err(|_| JwtError::KeyRejected("claims do not serialize"))?;
                ring.current()
                    .signing_key()?
                    .sign(&URL_SAFE_NO_PAD.encode(payload))
            }
            None => self.sign(claims),
        }
    }

    /// The denylist, if this backend has one (for its counters; verification goes through it).
    pub fn denylist(&self) -> Option<&D> {
        self.denylist.as_ref()
    }

    /// Checks signature, algorithm, issuer and lifetime of an access token (the hand-written checks of `verify.rs`);
    /// does not consult the denylist.
    pub fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let now = self.clock.now_unix();
        Ok(self
            .access
            .check_token(token, now, |c| Ok(c.to_owned_claims()))?)
    }

    /// Checks a stateless refresh JWT: `jsonwebtoken` checks signature, algorithm, issuer and
    /// audience; then, as for access tokens, the header must pass [`verify::check_header`] (no
    /// `crit` whatever its value, `typ` absent or `JWT` in any case, typed members typed) and
    /// `sub` must be the canonical decimal of a user id > 0.
    fn decode_with(&self, token: &str, validation: &Validation) -> Result<Claims, AuthError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding_key, validation)
            .map_err(|_| AuthError::Invalid)?
            .claims;
        // The signature has checked out: now the header, which `jsonwebtoken` reads leniently
        // (`"crit": null` is no `crit` to it, and it ignores `typ`).
        let header = token.split('.').next().unwrap_or_default();
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| AuthError::Invalid)?;
        verify::check_header(&header)?;
        if verify::canonical_user_id(&claims.sub).is_none() {
            return Err(AuthError::Invalid);
        }
        let now = self.clock.now_unix();
        if claims.nbf.is_some_and(|nbf| now < nbf) {
            return Err(AuthError::Invalid);
        }
        if now >= claims.exp {
            return Err(AuthError::Expired);
        }
        Ok(claims)
    }

    /// Signs arbitrary claims with this backend's key (tests use it to mint edge cases).
    pub fn sign(&self, claims: &Claims) -> Result<String, JwtError> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding_key).map_err(JwtError::Signing)
    }

    fn claims(
        &self,
        identity: &Identity,
        family: &str,
        ttl: Duration,
        aud: Option<&str>,
    ) -> Claims {
        let iat = self.clock.now_unix();
        Claims {
            iss: self.issuer.clone(),
            sub: identity.user_id.to_string(),
            aud: aud.map(str::to_owned),
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
            nbf: None,
            // 122 random bits from the thread-local CSPRNG ([`random`]).
            jti: Builder::from_random_bytes(random::bytes())
                .into_uuid()
                .to_string(),
            fam: family.to_owned(),
            username: identity.username.to_string(),
        }
    }

    /// A new access token and refresh token for `identity` in `family`. With a denylist, the
    /// token must be dated after the denylist's epoch (see [`Denylist`]), or it would be refused
    /// as older than the denylist's memory: the denylist waits out the epoch's second, and a
    /// clock still not past it (this instance's clock lags the one that set the epoch) is
    /// refused here rather than signing a token that cannot be used.
    async fn mint(
        &self,
        identity: &Identity,
        family: &str,
        refresh: IssuedRefresh,
    ) -> Result<Issued, AuthError> {
        let epoch = match &self.denylist {
            Some(denylist) => denylist.epoch().await?,
            None => None,
        };
        let claims = self.claims(identity, family, self.ttl, None);
        if let Some(epoch) = epoch
            && claims.iat <= epoch
        {
            return Err(JwtError::BeforeEpoch {
                epoch,
                now: claims.iat,
            }
            .into());
        }
        let access = self.sign_access(&claims)?;
        Ok(Issued {
            credential: access.into(),
            expires_in: self.ttl,
            refresh: Some(refresh),
        })
    }

    fn stateless_refresh(
        &self,
        identity: &Identity,
        family: &str,
        ttl: Duration,
    ) -> Result<IssuedRefresh, AuthError> {
        let token = self.sign(&self.claims(identity, family, ttl, Some(REFRESH_AUDIENCE)))?;
        Ok(IssuedRefresh {
            token: token.into(),
            expires_in: ttl,
        })
    }

    /// The family logic shared with the opaque backend, with this backend's access side; `None`
    /// with stateless refresh tokens, which keep no families.
    fn lifecycle(&self) -> Option<FamilyLifecycle<'_, F, Self>> {
        match &self.refresh {
            RefreshMode::Stored(families) => Some(FamilyLifecycle {
                families,
                access: self,
            }),
            RefreshMode::Stateless { .. } => None,
        }
    }

    /// Ends a whole family: its refresh token (if stored) and, with a denylist, every access
    /// token issued from it.
    async fn end_family(&self, family: &str) -> Result<bool, AuthError> {
        match self.lifecycle() {
            Some(lifecycle) => lifecycle.end(family).await,
            None => {
                self.revoke_access(family, None).await?;
                Ok(false)
            }
        }
    }

    /// The family logic, or [`AuthError::Unsupported`] with stateless refresh tokens (the one
    /// capability that depends on run-time configuration).
    fn stored_lifecycle(&self) -> Result<FamilyLifecycle<'_, F, Self>, AuthError> {
        self.lifecycle().ok_or(AuthError::Unsupported)
    }
}

impl<D: Denylist, F: RefreshFamilies> FamilyAccess for JwtAuthenticator<D, F> {
    /// With a denylist, every access token of the family is denied for as long as the newest
    /// of them can live (`ttl`); without one, nothing on the server can end them before `exp`.
    async fn revoke_access(
        &self,
        family: &str,
        _ended: Option<&RevokedFamily>,
    ) -> Result<(), AuthError> {
        if let Some(denylist) = &self.denylist {
            denylist.deny(family, None, self.ttl).await?;
        }
        Ok(())
    }
}

impl<D: Denylist, F: RefreshFamilies> Authenticator for JwtAuthenticator<D, F> {
    async fn issue(&self, identity: &Identity, client: &ClientInfo) -> Result<Issued, AuthError> {
        match &self.refresh {
            RefreshMode::Stored(families) => {
                let family = families.start(identity, client).await?;
                self.mint(
                    identity,
                    &family.id,
                    IssuedRefresh {
                        token: family.refresh_token,
                        expires_in: family.refresh_ttl,
                    },
                )
                .await
            }
            RefreshMode::Stateless { ttl } => {
                let family = Builder::from_random_bytes(random::bytes())
                    .into_uuid()
                    .simple()
                    .to_string();
                let refresh = self.stateless_refresh(identity, &family, *ttl)?;
                self.mint(identity, &family, refresh).await
            }
        }
    }

    async fn verify(&self, credential: &str) -> Result<Identity, AuthError> {
        let read = |claims: &verify::AccessClaims<'_>| {
            let identity =
                Identity::new(claims.user_id()?, &*claims.username).in_session(&*claims.fam);
            // The token id and issue time are copied out only when a denylist will ask about
            // them (`iat` against the denylist's epoch: a token older than its memory is refused).
            let asked = self
                .denylist
                .as_ref()
                .map(|_| (claims.jti.to_string(), claims.iat));
            Ok((identity, asked))
        };
        let checked = match self
            .access
            .check_token(credential, self.clock.now_unix(), read)
        {
            // A verifier meeting a key it has not fetched (the issuer may have rotated), or
            // holding no usable keys (the issuer was down): refetch (one flight, at most once
            // per cooldown; `jku`/`x5u` in the token are never followed, the fetch goes to the
            // configured JWKS URL) and look once more.
            Err(refusal @ (Refusal::UnknownKid | Refusal::KeysUnavailable)) => {
                match self.access.unknown_kid() {
                    Some(refetch) => {
                        refetch.refetch().await;
                        self.access
                            .check_token(credential, self.clock.now_unix(), read)
                    }
                    None => Err(refusal),
                }
            }
            other => other,
        };
        let (identity, asked) = checked?;
        if let (Some(denylist), Some((jti, iat)), Some(family)) =
            (&self.denylist, asked, identity.session_id.as_deref())
            && denylist.is_denied(family, &jti, iat).await?
        {
            return Err(AuthError::Revoked);
        }
        Ok(identity)
    }

    /// Logout ends the login: the refresh token is revoked and, with a denylist, every access
    /// token of the family. Without a denylist the access token stays valid until `exp`: nothing
    /// on the server can end it early, the client just forgets it.
    async fn revoke(&self, credential: &str) -> Result<Identity, AuthError> {
        let identity = self.verify(credential).await?;
        let family = identity.session_id.as_deref().unwrap_or_default();
        self.end_family(family).await?;
        Ok(identity)
    }
}

impl<D: Denylist, F: RefreshFamilies> SessionRegistry for JwtAuthenticator<D, F> {
    async fn sessions(&self, user_id: i64) -> Result<Vec<SessionInfo>, AuthError> {
        self.stored_lifecycle()?.families.list(user_id).await
    }

    async fn revoke_session(&self, user_id: i64, session_id: &str) -> Result<bool, AuthError> {
        self.stored_lifecycle()?
            .revoke_session(user_id, session_id)
            .await
    }

    async fn revoke_all(&self, user_id: i64) -> Result<usize, AuthError> {
        self.stored_lifecycle()?.revoke_all(user_id).await
    }
}

impl<D: Denylist, F: RefreshFamilies> TokenEndpoints for JwtAuthenticator<D, F> {
    async fn refresh(
        &self,
        refresh_token: &str,
        _client: &ClientInfo,
    ) -> Result<Refreshed, AuthError> {
        match &self.refresh {
            RefreshMode::Stored(families) => {
                // A reused refresh token ends the whole login, access tokens included.
                let lifecycle = FamilyLifecycle {
                    families,
                    access: self,
                };
                let rotated = lifecycle.exchange(refresh_token).await?;
                let family = rotated.identity.session_id.clone().unwrap_or_default();
                let issued = self
                    .mint(
                        &rotated.identity,
                        &family,
                        IssuedRefresh {
                            token: rotated.refresh_token,
                            expires_in: rotated.refresh_ttl,
                        },
                    )
                    .await?;
                Ok(Refreshed {
                    identity: rotated.identity,
                    issued,
                })
            }
            RefreshMode::Stateless { ttl } => {
                let claims = self.decode_with(refresh_token, &self.refresh_validation)?;
                let user_id = claims.sub.parse().map_err(|_| AuthError::Invalid)?;
                let identity = Identity::new(user_id, claims.username);
                let refresh = self.stateless_refresh(&identity, &claims.fam, *ttl)?;
                let issued = self.mint(&identity, &claims.fam, refresh).await?;
                Ok(Refreshed {
                    identity: identity.in_session(claims.fam),
                    issued,
                })
            }
        }
    }

    async fn introspect(&self, token: &str) -> Result<Option<TokenInfo>, AuthError> {
        let info = |kind, claims: Claims| -> Option<TokenInfo> {
            let user_id = claims.sub.parse().ok()?;
            Some(TokenInfo {
                kind,
                identity: Identity::new(user_id, claims.username).in_session(claims.fam),
                issued_at: Some(claims.iat),
                expires_at: claims.exp,
            })
        };
        if let Ok(claims) = self.decode(token) {
            if let Some(denylist) = &self.denylist
                && denylist
                    .is_denied(&claims.fam, &claims.jti, claims.iat)
                    .await?
            {
                return Ok(None);
            }
            return Ok(info(TokenKind::Access, claims));
        }
        match &self.refresh {
            RefreshMode::Stored(families) => families.inspect(token).await,
            RefreshMode::Stateless { .. } => Ok(self
                .decode_with(token, &self.refresh_validation)
                .ok()
                .and_then(|claims| info(TokenKind::Refresh, claims))),
        }
    }

    async fn revoke_token(&self, token: &str) -> Result<(), AuthError> {
        if let Ok(claims) = self.decode(token) {
            // One access token: only a denylist can end it before `exp`.
            if let Some(denylist) = &self.denylist {
                let remaining = claims.exp.saturating_sub(self.clock.now_unix());
                denylist
                    .deny(
                        &claims.fam,
                        Some(&claims.jti),
                        Duration::from_secs(remaining),
                    )
                    .await?;
            }
            return Ok(());
        }
        if let Some(lifecycle) = self.lifecycle() {
            lifecycle.revoke_refresh_token(token).await?;
        }
        // A stateless refresh JWT cannot be revoked; RFC 7009 still answers 200.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authlab_core::ManualClock;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// An in-memory denylist for unit tests of this crate only (the server's tests use Redis),
    /// with an epoch a test can move as if the store had lost its memory.
    #[derive(Default)]
    struct MemoryDenylist(Mutex<HashMap<String, Duration>>, Mutex<u64>);

    impl Denylist for MemoryDenylist {
        async fn deny(
            &self,
            family: &str,
            jti: Option<&str>,
            ttl: Duration,
        ) -> Result<(), AuthError> {
            let key = format!("{family}/{}", jti.unwrap_or("*"));
            self.0.lock().unwrap().insert(key, ttl);
            Ok(())
        }
        async fn is_denied(
            &self,
            family: &str,
            jti: &str,
            issued_at: u64,
        ) -> Result<bool, AuthError> {
            let map = self.0.lock().unwrap();
            Ok(map.contains_key(&format!("{family}/{jti}"))
                || map.contains_key(&format!("{family}/*"))
                || issued_at <= *self.1.lock().unwrap())
        }
        async fn epoch(&self) -> Result<Option<u64>, AuthError> {
            Ok(Some(*self.1.lock().unwrap()))
        }
    }

    /// Stands in for the family store in the stateless-refresh tests (the stored mode is tested
    /// end to end against Redis in the server's tests).
    struct NoFamilies;

    impl RefreshFamilies for NoFamilies {
        async fn start(
            &self,
            _: &Identity,
            _: &ClientInfo,
        ) -> Result<authlab_core::NewFamily, AuthError> {
            Err(AuthError::Unsupported)
        }
        async fn exchange(&self, _: &str) -> Result<authlab_core::Exchange, AuthError> {
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

    type TestJwt = JwtAuthenticator<MemoryDenylist, NoFamilies>;

    /// A random-looking key (`head -c 36 /dev/urandom | base64`): it passes the secret rules.
    const SECRET: &[u8] = b"ptFI2DLS1jHq5OarnCRK7wafp2TlaDP5DuRmgNL3MSO+VH86";
    const START: u64 = 1_700_000_000;

    fn backend(denylist: bool) -> (TestJwt, ManualClock) {
        let clock = ManualClock::new(START);
        let auth = JwtAuthenticator::new(
            JwtConfig {
                secret: JwtSecret::new(SECRET.to_vec()).unwrap(),
                issuer: "authlab".into(),
                ttl: Duration::from_secs(900),
                denylist: denylist.then(MemoryDenylist::default),
                refresh: RefreshMode::Stateless {
                    ttl: Duration::from_secs(3600),
                },
            },
            Arc::new(clock.clone()),
        );
        (auth, clock)
    }

    async fn login(auth: &TestJwt) -> String {
        let issued = auth
            .issue(&Identity::new(7, "alice"), &ClientInfo::default())
            .await
            .unwrap();
        issued.credential.expose_secret().to_owned()
    }

    /// A key directory with an active and a next key of `alg`, in a fresh temporary directory.
    fn key_dir(alg: KeyAlg) -> KeyDir {
        let dir = KeyDir::new(std::env::temp_dir().join(format!(
            "authlab-jwt-lib-test-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        )));
        dir.generate(alg, START).unwrap();
        dir.rotate(None, Duration::from_secs(900), START).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_cached_token_of_a_key_removed_from_the_ring_is_refused() {
        let dir = key_dir(KeyAlg::EdDSA);
        let ring = KeyRing::open(KeyDir::new(dir.path()), None).unwrap();
        let (auth, _) = backend(true);
        let auth = auth.with_keys(ring.clone()).with_verify_cache(100);
        let token = login(&auth).await;
        assert_eq!(auth.verify(&token).await.unwrap().user_id, 7);
        assert_eq!(auth.verify_cache_len(), 1, "verified once, entered once");
        assert_eq!(auth.verify(&token).await.unwrap().user_id, 7);
        // Rotate twice and prune: the key that signed `token` leaves the directory and the ring.
        dir.rotate(None, Duration::from_secs(900), START + 10)
            .unwrap();
        dir.rotate(None, Duration::from_secs(900), START + 20)
            .unwrap();
        assert_eq!(dir.prune(START + 10_000).unwrap().len(), 2);
        ring.reload();
        assert!(matches!(auth.verify(&token).await, Err(AuthError::Invalid)));
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    #[tokio::test]
    async fn a_revoked_token_is_refused_while_cached_and_an_expired_one_expires() {
        let dir = key_dir(KeyAlg::ES256);
        let ring = KeyRing::open(KeyDir::new(dir.path()), None).unwrap();
        let (auth, clock) = backend(true);
        let auth = auth.with_keys(ring).with_verify_cache(100);
        let token = login(&auth).await;
        assert!(auth.verify(&token).await.is_ok());
        assert_eq!(auth.verify_cache_len(), 1);
        auth.revoke(&token).await.unwrap();
        assert!(matches!(auth.verify(&token).await, Err(AuthError::Revoked)));
        assert_eq!(auth.verify_cache_len(), 1, "still cached, still refused");

        let other = login(&auth).await;
        assert!(auth.verify(&other).await.is_ok());
        clock.advance(Duration::from_secs(900));
        assert!(matches!(auth.verify(&other).await, Err(AuthError::Expired)));
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    #[tokio::test]
    async fn refused_tokens_are_never_cached_and_a_zero_sized_cache_is_off() {
        let dir = key_dir(KeyAlg::EdDSA);
        let ring = KeyRing::open(KeyDir::new(dir.path()), None).unwrap();
        let (auth, _) = backend(false);
        let auth = auth.with_keys(ring.clone()).with_verify_cache(100);
        let token = login(&auth).await;
        let (input, signature) = token.rsplit_once('.').unwrap();
        let mut forged = URL_SAFE_NO_PAD.decode(signature).unwrap();
        forged[0] ^= 1;
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(forged));
        for _ in 0..2 {
            assert!(matches!(
                auth.verify(&forged).await,
                Err(AuthError::Invalid)
            ));
        }
        assert_eq!(auth.verify_cache_len(), 0);
        let (off, _) = backend(false);
        let off = off.with_keys(ring).with_verify_cache(0);
        assert!(off.verify(&token).await.is_ok());
        assert_eq!(off.verify_cache_len(), 0);
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    /// A refetcher that loads the issuer's JWKS from a directory, counting its calls.
    struct DirFetch {
        ring: Arc<KeyRing>,
        dir: KeyDir,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl UnknownKid for DirFetch {
        fn refetch(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(async move {
                self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let jwks = self.dir.load().unwrap().jwks().to_owned();
                let keys = parse_jwks(jwks.as_bytes()).unwrap();
                self.ring.replace(KeySet::from_jwks(keys, jwks), u64::MAX);
            })
        }
    }

    #[tokio::test]
    async fn a_verifier_ring_checks_issuer_tokens_refetches_an_unknown_kid_and_signs_nothing() {
        let dir = key_dir(KeyAlg::EdDSA);
        let issuer = backend(false)
            .0
            .with_keys(KeyRing::open(KeyDir::new(dir.path()), None).unwrap());
        let ring = KeyRing::remote();
        let verifier = backend(false)
            .0
            .with_keys(ring.clone())
            .with_verify_cache(10);
        let token = login(&issuer).await;
        // Before any fetch: unavailable, not invalid (the token is not at fault).
        match verifier.verify(&token).await {
            Err(AuthError::Unavailable(source)) => assert!(matches!(
                source.downcast_ref::<JwtError>(),
                Some(JwtError::KeysUnavailable)
            )),
            other => panic!("{other:?}"),
        }
        let fetch = Arc::new(DirFetch {
            ring: ring.clone(),
            dir: KeyDir::new(dir.path()),
            calls: Default::default(),
        });
        ring.on_unknown_kid(fetch.clone());
        let jwks = dir.load().unwrap().jwks().to_owned();
        ring.replace(
            KeySet::from_jwks(parse_jwks(jwks.as_bytes()).unwrap(), jwks),
            START + 100,
        );
        assert_eq!(verifier.verify(&token).await.unwrap().user_id, 7);
        assert_eq!(fetch.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
        // The issuer activates a key the verifier has never seen: one refetch, then accepted.
        for _ in 0..3 {
            dir.rotate(None, Duration::from_secs(900), START + 1)
                .unwrap();
        }
        let issuer = backend(false)
            .0
            .with_keys(KeyRing::open(KeyDir::new(dir.path()), None).unwrap());
        let rotated = login(&issuer).await;
        assert_ne!(part(&rotated, 0)["kid"], part(&token, 0)["kid"]);
        assert_eq!(verifier.verify(&rotated).await.unwrap().user_id, 7);
        assert_eq!(fetch.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A verifier signs nothing.
        assert!(matches!(
            verifier
                .issue(&Identity::new(7, "alice"), &ClientInfo::default())
                .await,
            Err(AuthError::Unavailable(_))
        ));
        // Past its staleness limit the set is not used, cached tokens included.
        ring.still_good_until(START);
        assert!(matches!(
            verifier.verify(&token).await,
            Err(AuthError::Unavailable(_))
        ));
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    fn part(token: &str, n: usize) -> serde_json::Value {
        let raw = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(n).unwrap())
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    }

    #[test]
    fn a_short_secret_is_refused_with_a_clear_message() {
        let err = JwtSecret::new(vec![b'x'; 31]).unwrap_err();
        assert!(matches!(err, JwtError::SecretTooShort { len: 31 }));
        assert!(err.to_string().contains("at least 32 bytes"));
        assert!(JwtSecret::new(SECRET[..32].to_vec()).is_ok());
    }

    #[test]
    fn weak_secrets_of_32_bytes_or_more_are_refused_for_the_reason_they_are_weak() {
        let published = b"a-string-secret-at-least-256-bits-long".to_vec();
        assert!(matches!(
            JwtSecret::new(published),
            Err(JwtError::SecretPublished)
        ));
        assert!(matches!(
            JwtSecret::new(vec![b'a'; 32]),
            Err(JwtError::SecretTooRegular {
                pattern: "one byte repeated"
            })
        ));
        assert!(matches!(
            JwtSecret::new(b"12345678901234567890123456789012".to_vec()),
            Err(JwtError::SecretTooRegular {
                pattern: "a short pattern repeated"
            })
        ));
        assert!(matches!(
            JwtSecret::new(b"abcdefghijklmnopqrstuvwxyz012345".to_vec()),
            Err(JwtError::SecretTooRegular {
                pattern: "a run of sequences"
            })
        ));
        assert!(matches!(
            JwtSecret::new(b"0123456789abcdef0123456789abcdef".to_vec()),
            Err(JwtError::SecretTooRegular {
                pattern: "a short pattern repeated"
            })
        ));
        assert!(matches!(
            JwtSecret::new(b"test-secret-0123456789abcdef0123456789abcdef".to_vec()),
            Err(JwtError::SecretLowEntropy { bits }) if bits < MIN_SECRET_BITS
        ));
    }

    #[test]
    fn every_refusal_says_how_to_make_a_good_secret_and_never_shows_the_secret() {
        for secret in [
            &b"a-string-secret-at-least-256-bits-long"[..],
            &[b'a'; 32][..],
            &b"abcdefghijklmnopqrstuvwxyz012345"[..],
            &b"test-secret-0123456789abcdef0123456789abcdef"[..],
            &b"short"[..],
        ] {
            let message = JwtSecret::new(secret.to_vec()).unwrap_err().to_string();
            assert!(
                message.contains("head -c 48 /dev/urandom | base64 > jwt.secret"),
                "{message}"
            );
            assert!(
                !message.contains(std::str::from_utf8(secret).unwrap()),
                "{message}"
            );
        }
    }

    #[test]
    fn generated_secrets_always_pass_the_rules() {
        for _ in 0..1000 {
            let secret = JwtSecret::generate().unwrap();
            assert_eq!(secret.expose_bytes().len(), MIN_SECRET_LEN);
        }
    }

    #[test]
    fn a_randomness_failure_keeps_the_operating_systems_error_as_its_source() {
        use std::error::Error as _;
        let err = JwtError::Randomness(getrandom::Error::UNSUPPORTED);
        let source = err.source().expect("the getrandom error is kept");
        assert_eq!(
            source.to_string(),
            getrandom::Error::UNSUPPORTED.to_string()
        );
        assert!(!err.to_string().contains(&source.to_string()));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let shown = format!("{:?}", JwtSecret::new(SECRET.to_vec()).unwrap());
        assert_eq!(shown, "JwtSecret([redacted])");
    }

    #[tokio::test]
    async fn issued_tokens_carry_the_registered_claims_and_verify() {
        let (auth, _) = backend(false);
        let token = login(&auth).await;
        let header = part(&token, 0);
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["typ"], "JWT");
        let claims = part(&token, 1);
        assert_eq!(claims["iss"], "authlab");
        assert_eq!(claims["sub"], "7");
        assert_eq!(claims["username"], "alice");
        assert_eq!(claims["iat"], START);
        assert_eq!(claims["exp"], START + 900);
        assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
        assert!(
            claims.get("aud").is_none(),
            "access tokens carry no audience"
        );
        let fam = claims["fam"].as_str().unwrap().to_owned();
        assert_eq!(
            auth.verify(&token).await.unwrap(),
            Identity::new(7, "alice").in_session(fam)
        );
    }

    #[tokio::test]
    async fn issued_tokens_take_the_verifiers_canonical_header_fast_path() {
        let (auth, _) = backend(false);
        let token = login(&auth).await;
        let header = token.split('.').next().unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).unwrap(),
            br#"{"typ":"JWT","alg":"HS256"}"#
        );
        assert!(auth.access.is_canonical_header(header));
    }

    #[tokio::test]
    async fn a_token_expires_at_exp_to_the_second() {
        let (auth, clock) = backend(false);
        let token = login(&auth).await;
        clock.advance(Duration::from_secs(899));
        assert!(auth.verify(&token).await.is_ok());
        clock.advance(Duration::from_secs(1));
        assert!(matches!(auth.verify(&token).await, Err(AuthError::Expired)));
    }

    #[tokio::test]
    async fn a_token_not_yet_valid_is_rejected() {
        let (auth, _) = backend(false);
        let claims = Claims {
            iss: "authlab".into(),
            sub: "7".into(),
            iat: START,
            exp: START + 900,
            nbf: Some(START + 60),
            aud: None,
            fam: "f".into(),
            jti: uuid::Uuid::new_v4().to_string(),
            username: "alice".into(),
        };
        let token = auth.sign(&claims).unwrap();
        assert!(matches!(auth.verify(&token).await, Err(AuthError::Invalid)));
    }

    #[tokio::test]
    async fn a_token_from_another_issuer_is_invalid() {
        let (auth, _) = backend(false);
        let claims = Claims {
            iss: "somebody-else".into(),
            sub: "7".into(),
            iat: START,
            exp: START + 900,
            nbf: None,
            aud: None,
            fam: "f".into(),
            jti: uuid::Uuid::new_v4().to_string(),
            username: "alice".into(),
        };
        let token = auth.sign(&claims).unwrap();
        assert!(matches!(auth.verify(&token).await, Err(AuthError::Invalid)));
    }

    #[tokio::test]
    async fn with_a_denylist_logout_revokes_and_without_one_it_cannot() {
        let (auth, _) = backend(true);
        let token = login(&auth).await;
        auth.revoke(&token).await.unwrap();
        assert!(matches!(auth.verify(&token).await, Err(AuthError::Revoked)));
        assert!(matches!(auth.revoke(&token).await, Err(AuthError::Revoked)));
        let remembered = auth.denylist.as_ref().unwrap().0.lock().unwrap().clone();
        assert_eq!(
            remembered.values().copied().collect::<Vec<_>>(),
            vec![Duration::from_secs(900)],
            "the family's denylist entry lives as long as its newest access token could"
        );

        let (stateless, _) = backend(false);
        let token = login(&stateless).await;
        stateless.revoke(&token).await.unwrap();
        assert!(
            stateless.verify(&token).await.is_ok(),
            "a stateless JWT outlives its logout"
        );
    }

    #[tokio::test]
    async fn a_token_issued_before_the_denylists_epoch_is_revoked_and_a_new_login_is_not() {
        let (auth, clock) = backend(true);
        let before = login(&auth).await;
        clock.advance(Duration::from_secs(10));
        // The store lost its memory now: it cannot know whether `before` was logged out.
        let denylist = auth.denylist.as_ref().unwrap();
        denylist.0.lock().unwrap().clear();
        *denylist.1.lock().unwrap() = START + 10;
        assert!(matches!(
            auth.verify(&before).await,
            Err(AuthError::Revoked)
        ));
        assert_eq!(auth.introspect(&before).await.unwrap(), None);
        // A token of the epoch's own second may be older than the loss: refused too.
        let same_second = auth
            .sign(&Claims {
                iat: START + 10,
                exp: START + 910,
                ..auth.decode(&before).unwrap()
            })
            .unwrap();
        assert!(matches!(
            auth.verify(&same_second).await,
            Err(AuthError::Revoked)
        ));
        // No token is signed in the epoch's own second (it would be refused)...
        assert!(matches!(
            auth.issue(&Identity::new(7, "alice"), &ClientInfo::default())
                .await,
            Err(AuthError::Unavailable(_))
        ));
        // ...and from the next one on, a login works.
        clock.advance(Duration::from_secs(1));
        let after = login(&auth).await;
        assert_eq!(part(&after, 1)["iat"], START + 11);
        assert_eq!(
            auth.verify(&after).await.unwrap().username.as_ref(),
            "alice"
        );

        // Without a denylist there is no memory to lose and no epoch: `before` lives to `exp`.
        let (stateless, clock) = backend(false);
        let before = login(&stateless).await;
        clock.advance(Duration::from_secs(10));
        assert!(stateless.verify(&before).await.is_ok());
    }

    #[tokio::test]
    async fn stateless_refresh_tokens_are_not_access_tokens_and_vice_versa() {
        let (auth, clock) = backend(true);
        let issued = auth
            .issue(&Identity::new(7, "alice"), &ClientInfo::default())
            .await
            .unwrap();
        let access = issued.credential.expose_secret().to_owned();
        let refresh = issued.refresh.unwrap().token.expose_secret().to_owned();
        assert_eq!(part(&refresh, 1)["aud"], REFRESH_AUDIENCE);
        assert!(matches!(
            auth.verify(&refresh).await,
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            auth.refresh(&access, &ClientInfo::default()).await,
            Err(AuthError::Invalid)
        ));

        clock.advance(Duration::from_secs(1000));
        assert!(matches!(
            auth.verify(&access).await,
            Err(AuthError::Expired)
        ));
        let renewed = auth
            .refresh(&refresh, &ClientInfo::default())
            .await
            .unwrap();
        assert!(
            auth.verify(renewed.issued.credential.expose_secret())
                .await
                .is_ok()
        );
        // What the stateless design gives up: the old refresh token still works after use.
        assert!(auth.refresh(&refresh, &ClientInfo::default()).await.is_ok());
        assert!(matches!(
            auth.sessions(7).await,
            Err(AuthError::Unsupported)
        ));
    }

    /// A token with exactly these header and claims bytes, signed with the test key.
    fn raw_token(header: &str, claims: &str) -> String {
        use aws_lc_rs::hmac;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    fn claims_json(sub: &str, aud: Option<&str>) -> String {
        let mut claims = serde_json::json!({
            "iss": "authlab", "sub": sub, "iat": START, "exp": START + 900,
            "jti": "8b5e4f2c-0a7e-4c55-9c1e-6f0b0d7f3a21", "fam": "f", "username": "alice",
        });
        if let Some(aud) = aud {
            claims["aud"] = aud.into();
        }
        claims.to_string()
    }

    #[tokio::test]
    async fn a_stateless_refresh_jwt_with_crit_or_a_foreign_typ_is_refused() {
        let (auth, _) = backend(false);
        let claims = claims_json("7", Some(REFRESH_AUDIENCE));
        let refresh =
            |header: &str| auth.decode_with(&raw_token(header, &claims), &auth.refresh_validation);
        for header in [
            r#"{"alg":"HS256","typ":"JWT","crit":null}"#,
            r#"{"alg":"HS256","crit":["exp"]}"#,
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"HS256","typ":"at+jwt"}"#,
            r#"{"alg":"HS256","typ":null}"#,
            r#"{"alg":"HS256","typ":"JWT","typ":"JWT"}"#,
            r#"{"alg":"HS256","kid":1}"#,
        ] {
            assert!(
                matches!(refresh(header), Err(AuthError::Invalid)),
                "{header}"
            );
        }
        for header in [
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"alg":"HS256","typ":"jwt"}"#,
            r#"{"alg":"HS256"}"#,
        ] {
            assert_eq!(refresh(header).unwrap().sub, "7", "{header}");
        }
        // The same through the HTTP-facing operation: a refused refresh token mints nothing.
        let token = raw_token(r#"{"alg":"HS256","crit":null}"#, &claims);
        assert!(matches!(
            auth.refresh(&token, &ClientInfo::default()).await,
            Err(AuthError::Invalid)
        ));
        assert_eq!(auth.introspect(&token).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_stateless_refresh_jwt_with_a_null_time_claim_is_refused() {
        let (auth, _) = backend(false);
        let header = r#"{"typ":"JWT","alg":"HS256"}"#;
        let good = claims_json("7", Some(REFRESH_AUDIENCE));
        let refresh =
            |claims: &str| auth.decode_with(&raw_token(header, claims), &auth.refresh_validation);
        assert_eq!(refresh(&good).unwrap().sub, "7");
        for claim in ["nbf", "iat", "exp"] {
            let mut claims: serde_json::Value = serde_json::from_str(&good).unwrap();
            claims[claim] = serde_json::Value::Null;
            let token = raw_token(header, &claims.to_string());
            assert!(
                matches!(
                    auth.decode_with(&token, &auth.refresh_validation),
                    Err(AuthError::Invalid)
                ),
                "{claim}: null"
            );
            assert!(
                matches!(
                    auth.refresh(&token, &ClientInfo::default()).await,
                    Err(AuthError::Invalid)
                ),
                "{claim}: null"
            );
        }
    }

    #[tokio::test]
    async fn a_sub_that_is_not_the_canonical_decimal_of_a_user_id_is_refused_everywhere() {
        let (auth, _) = backend(false);
        let header = r#"{"typ":"JWT","alg":"HS256"}"#;
        for sub in [
            "+7",
            "07",
            " 7",
            "7 ",
            "-0",
            "0",
            "-7",
            "",
            "7.0",
            "9223372036854775808",
        ] {
            let access = raw_token(header, &claims_json(sub, None));
            assert!(
                matches!(auth.verify(&access).await, Err(AuthError::Invalid)),
                "access, sub {sub:?}"
            );
            assert!(matches!(auth.decode(&access), Err(AuthError::Invalid)));
            let refresh = raw_token(header, &claims_json(sub, Some(REFRESH_AUDIENCE)));
            assert!(
                matches!(
                    auth.refresh(&refresh, &ClientInfo::default()).await,
                    Err(AuthError::Invalid)
                ),
                "refresh, sub {sub:?}"
            );
        }
        let access = raw_token(header, &claims_json("9223372036854775807", None));
        assert_eq!(auth.verify(&access).await.unwrap().user_id, i64::MAX);
        let refresh = raw_token(header, &claims_json("7", Some(REFRESH_AUDIENCE)));
        assert!(auth.refresh(&refresh, &ClientInfo::default()).await.is_ok());
    }

    const RFC7515_A1_TOKEN: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC7515_A1_KEY: &str =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";

    /// RFC 7515 appendix A.1 signs with HS256; its key and signing input give a known MAC. Our
    /// verifier must accept that exact token's signature (we check it with the RFC's own issuer
    /// rules turned off, since the RFC's claims are not ours).
    #[test]
    fn rfc7515_appendix_a1_signature_verifies() {
        let token = RFC7515_A1_TOKEN;
        let key = URL_SAFE_NO_PAD.decode(RFC7515_A1_KEY).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &DecodingKey::from_secret(&key),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["iss"], "joe");
        // One flipped bit in the signature and it fails.
        let tampered = token.replace("OEjXk", "OFjXk");
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(
                tampered,
                &DecodingKey::from_secret(&key),
                &validation
            )
            .is_err()
        );
    }

    /// The same vector through this crate's own signature layer (the access verifier's HMAC
    /// check, with the RFC's key): its signing input and MAC verify, and a change of one bit in
    /// the signature, the header or the payload does not. The RFC's claims are not authlab's, so
    /// only the signature layer is under test here.
    #[test]
    fn rfc7515_appendix_a1_signature_verifies_through_our_own_hmac_check() {
        let key = URL_SAFE_NO_PAD.decode(RFC7515_A1_KEY).unwrap();
        let verifier = verify::AccessVerifier::new(&key, "joe", String::new());
        let (header, payload) = verifier.check_signature(RFC7515_A1_TOKEN).unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).unwrap(),
            b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}"
        );
        assert!(payload.starts_with("eyJpc3MiOiJqb2UiLA0K"));

        // Flip each bit of the MAC in turn (the last character holds 4 padding bits too, so flip
        // the decoded bytes and re-encode).
        let (input, signature) = RFC7515_A1_TOKEN.rsplit_once('.').unwrap();
        let mac = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert_eq!(mac.len(), 32);
        for bit in 0..256 {
            let mut flipped = mac.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let tampered = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&flipped));
            assert_eq!(
                verifier.check_signature(&tampered),
                Err(verify::Refusal::Invalid),
                "bit {bit}"
            );
        }
        // One bit of the signing input ("joe" -> "jne" in the payload's first word).
        let tampered = RFC7515_A1_TOKEN.replacen("eyJpc3MiOiJqb2UiLA0K", "eyJpc3MiOiJqb2UiLA0L", 1);
        assert_eq!(
            verifier.check_signature(&tampered),
            Err(verify::Refusal::Invalid)
        );
        // And another key does not verify the genuine token.
        let mut other = key.clone();
        other[0] ^= 1;
        let other = verify::AccessVerifier::new(&other, "joe", String::new());
        assert_eq!(
            other.check_signature(RFC7515_A1_TOKEN),
            Err(verify::Refusal::Invalid)
        );
    }
}
