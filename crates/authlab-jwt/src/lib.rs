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
//! - [`JwtSecret`]: the HMAC key, at least 32 bytes (RFC 7518 §3.2: a key as long as the hash).
//! - [`Claims`]: what authlab puts in a token: `iss`, `sub`, `iat`, `exp`, `jti`, `username`.
//! - [`JwtAuthenticator`]: issue and verify with the algorithm pinned to HS256, following RFC 8725:
//!   the `alg` in a token's header is checked against ours, never obeyed.
//!
//! The denylist is any [`Denylist`]; the server hands in the Redis one. This crate knows nothing of
//! Redis.
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use authlab_core::{
    AuthError, Authenticator, ClientInfo, Clock, Denylist, FamilyAccess, FamilyLifecycle, Identity,
    Issued, IssuedRefresh, RefreshFamilies, RevokedFamily, SessionInfo, SessionRegistry,
    TokenEndpoints, TokenInfo, TokenKind,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod verify;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use verify::{AccessVerifier, Refusal};

impl From<Refusal> for AuthError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid => AuthError::Invalid,
            Refusal::Expired => AuthError::Expired,
        }
    }
}

/// The shortest HMAC key we accept: 32 bytes, the output size of SHA-256 (RFC 7518 §3.2).
pub const MIN_SECRET_LEN: usize = 32;

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The configured secret is too short to be safe for HS256.
    #[error(
        "the JWT secret is {len} bytes long; HS256 needs at least {MIN_SECRET_LEN} bytes (for example: `head -c 48 /dev/urandom | base64 > jwt.secret`)"
    )]
    SecretTooShort {
        /// How long the rejected secret was.
        len: usize,
    },
    /// The operating system could not provide random bytes for a generated secret or id.
    #[error("the operating system's random number generator failed: {0}")]
    Randomness(String),
    /// Signing failed (this does not happen with a valid HMAC key, but the library can say so).
    #[error("could not sign the token")]
    Signing(#[source] jsonwebtoken::errors::Error),
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
    /// Accepts a key of at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, JwtError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(JwtError::SecretTooShort { len: bytes.len() });
        }
        Ok(Self(bytes.into()))
    }

    /// A fresh random 32-byte key from the OS generator. Tokens signed with it die with the
    /// process and are not accepted by any other instance: for demos and tests only.
    pub fn generate() -> Result<Self, JwtError> {
        let mut bytes = vec![0u8; MIN_SECRET_LEN];
        getrandom::fill(&mut bytes).map_err(|e| JwtError::Randomness(e.to_string()))?;
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
    /// Not before, Unix seconds. authlab does not set it, but honours it when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Token id (a UUID): what the denylist remembers when this one token is revoked.
    pub jti: String,
    /// The token family (the login it descends from): what the denylist remembers when a whole
    /// login is revoked (logout, logout everywhere, refresh-token theft).
    pub fam: String,
    /// The user name, so `/me` needs no lookup.
    pub username: String,
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
            refresh_validation,
            issuer: config.issuer,
            ttl: config.ttl,
            denylist: config.denylist,
            refresh: config.refresh,
            clock,
        }
    }

    /// Checks signature, algorithm, issuer and lifetime of an access token (see [`verify`]);
    /// does not consult the denylist.
    pub fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let now = self.clock.now_unix();
        Ok(self
            .access
            .verify(token, now, |c| Ok(c.to_owned_claims()))?)
    }

    fn decode_with(&self, token: &str, validation: &Validation) -> Result<Claims, AuthError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding_key, validation)
            .map_err(|_| AuthError::Invalid)?
            .claims;
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
            jti: Uuid::new_v4().to_string(),
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
        let access = self.sign(&claims)?;
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
                let family = Uuid::new_v4().simple().to_string();
                let refresh = self.stateless_refresh(identity, &family, *ttl)?;
                self.mint(identity, &family, refresh).await
            }
        }
    }

    async fn verify(&self, credential: &str) -> Result<Identity, AuthError> {
        let now = self.clock.now_unix();
        let (identity, asked) = self.access.verify(credential, now, |claims| {
            let identity =
                Identity::new(claims.user_id()?, &*claims.username).in_session(&*claims.fam);
            // The token id and issue time are copied out only when a denylist will ask about
            // them (`iat` against the denylist's epoch: a token older than its memory is refused).
            let asked = self.denylist.as_ref().map(|_| {
                let owned = claims.to_owned_claims();
                (owned.jti, owned.iat)
            });
            Ok((identity, asked))
        })?;
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
    async fn revoke(&self, credential: &str) -> Result<(), AuthError> {
        let identity = self.verify(credential).await?;
        let family = identity.session_id.as_deref().unwrap_or_default();
        self.end_family(family).await?;
        Ok(())
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
    ) -> Result<Issued, AuthError> {
        match &self.refresh {
            RefreshMode::Stored(families) => {
                // A reused refresh token ends the whole login, access tokens included.
                let lifecycle = FamilyLifecycle {
                    families,
                    access: self,
                };
                let rotated = lifecycle.exchange(refresh_token).await?;
                let family = rotated.identity.session_id.clone().unwrap_or_default();
                self.mint(
                    &rotated.identity,
                    &family,
                    IssuedRefresh {
                        token: rotated.refresh_token,
                        expires_in: rotated.refresh_ttl,
                    },
                )
                .await
            }
            RefreshMode::Stateless { ttl } => {
                let claims = self.decode_with(refresh_token, &self.refresh_validation)?;
                let user_id = claims.sub.parse().map_err(|_| AuthError::Invalid)?;
                let identity = Identity::new(user_id, claims.username);
                let refresh = self.stateless_refresh(&identity, &claims.fam, *ttl)?;
                self.mint(&identity, &claims.fam, refresh).await
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

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
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
        assert!(JwtSecret::new(vec![b'x'; 32]).is_ok());
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
        assert!(Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
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
            jti: Uuid::new_v4().to_string(),
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
            jti: Uuid::new_v4().to_string(),
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
            auth.verify(renewed.credential.expose_secret())
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

    /// RFC 7515 appendix A.1 signs with HS256; its key and signing input give a known MAC. Our
    /// verifier must accept that exact token's signature (we check it with the RFC's own issuer
    /// rules turned off, since the RFC's claims are not ours).
    #[test]
    fn rfc7515_appendix_a1_signature_verifies() {
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
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
}
