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

use authlab_core::{AuthError, Authenticator, Clock, Denylist, Identity, Issued};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret([redacted])")
    }
}

/// The claims authlab signs. Registered claims follow RFC 7519 §4.1; `username` is private.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: who signed the token; verify rejects tokens from any other issuer.
    pub iss: String,
    /// Subject: the user id, as a string (RFC 7519 makes `sub` a string).
    pub sub: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds: the token is rejected from this second on.
    pub exp: u64,
    /// Not before, Unix seconds. authlab does not set it, but honours it when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Token id (a UUID): what the denylist remembers when the token is revoked.
    pub jti: String,
    /// The user name, so `/me` needs no lookup.
    pub username: String,
}

/// Settings for [`JwtAuthenticator`].
pub struct JwtConfig<D> {
    /// The HS256 key.
    pub secret: JwtSecret,
    /// The `iss` we write and require.
    pub issuer: String,
    /// Lifetime of an access token (`exp - iat`).
    pub ttl: Duration,
    /// Where revoked `jti`s are remembered. `None` is the pure stateless design: verify does no
    /// I/O, and logout cannot stop a token before its `exp` (the client just forgets it).
    pub denylist: Option<D>,
}

/// JSON Web Tokens signed with HS256.
pub struct JwtAuthenticator<D> {
    encoding_key: EncodingKey,
    decoding_key: DecodingKey,
    header: Header,
    validation: Validation,
    issuer: String,
    ttl: Duration,
    denylist: Option<D>,
    clock: Arc<dyn Clock>,
}

impl<D: Denylist> JwtAuthenticator<D> {
    /// The backend, reading time from `clock`.
    pub fn new(config: JwtConfig<D>, clock: Arc<dyn Clock>) -> Self {
        let key = config.secret.0.expose_secret();
        // Only HS256 is accepted. A token whose header names another algorithm (`none`, HS512,
        // RS256 with our secret as a "public key") is rejected before any signature check.
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry and not-before are checked below against the injected clock, to the second
        // (no leeway: client clocks do not matter, only ours does, both when signing and checking).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.set_issuer(&[config.issuer.as_str()]);
        Self {
            encoding_key: EncodingKey::from_secret(key),
            decoding_key: DecodingKey::from_secret(key),
            header: Header::new(Algorithm::HS256),
            validation,
            issuer: config.issuer,
            ttl: config.ttl,
            denylist: config.denylist,
            clock,
        }
    }

    /// Whether revocation is backed by a denylist (and so whether verify does I/O).
    pub fn has_denylist(&self) -> bool {
        self.denylist.is_some()
    }

    /// Checks signature, algorithm, issuer and lifetime; does not consult the denylist.
    pub fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding_key, &self.validation)
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
}

impl<D: Denylist> Authenticator for JwtAuthenticator<D> {
    async fn issue(&self, identity: &Identity) -> Result<Issued, AuthError> {
        let iat = self.clock.now_unix();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: identity.user_id.to_string(),
            iat,
            exp: iat.saturating_add(self.ttl.as_secs()),
            nbf: None,
            jti: Uuid::new_v4().to_string(),
            username: identity.username.to_string(),
        };
        Ok(Issued {
            credential: self.sign(&claims)?.into(),
            expires_in: self.ttl,
        })
    }

    async fn verify(&self, credential: &str) -> Result<Identity, AuthError> {
        let claims = self.decode(credential)?;
        if let Some(denylist) = &self.denylist
            && denylist.is_denied(&claims.jti).await?
        {
            return Err(AuthError::Revoked);
        }
        let user_id = claims.sub.parse().map_err(|_| AuthError::Invalid)?;
        Ok(Identity::new(user_id, claims.username))
    }

    async fn revoke(&self, credential: &str) -> Result<(), AuthError> {
        let claims = self.decode(credential)?;
        let Some(denylist) = &self.denylist else {
            // Pure stateless JWT: nothing on the server can end the token early. Logout "works"
            // only in the sense that the client throws the token away; a copy stays valid until
            // `exp`. This is the trade-off the denylist exists to fix.
            return Ok(());
        };
        if denylist.is_denied(&claims.jti).await? {
            return Err(AuthError::Revoked);
        }
        let remaining = claims.exp.saturating_sub(self.clock.now_unix());
        denylist
            .deny(&claims.jti, Duration::from_secs(remaining))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authlab_core::ManualClock;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// An in-memory denylist for unit tests of this crate only (the server's tests use Redis).
    #[derive(Default)]
    struct MemoryDenylist(Mutex<HashMap<String, Duration>>);

    impl Denylist for MemoryDenylist {
        async fn deny(&self, id: &str, ttl: Duration) -> Result<(), AuthError> {
            self.0.lock().unwrap().insert(id.to_owned(), ttl);
            Ok(())
        }
        async fn is_denied(&self, id: &str) -> Result<bool, AuthError> {
            Ok(self.0.lock().unwrap().contains_key(id))
        }
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const START: u64 = 1_700_000_000;

    fn backend(denylist: bool) -> (JwtAuthenticator<MemoryDenylist>, ManualClock) {
        let clock = ManualClock::new(START);
        let auth = JwtAuthenticator::new(
            JwtConfig {
                secret: JwtSecret::new(SECRET.to_vec()).unwrap(),
                issuer: "authlab".into(),
                ttl: Duration::from_secs(900),
                denylist: denylist.then(MemoryDenylist::default),
            },
            Arc::new(clock.clone()),
        );
        (auth, clock)
    }

    async fn login(auth: &JwtAuthenticator<MemoryDenylist>) -> String {
        let issued = auth.issue(&Identity::new(7, "alice")).await.unwrap();
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
        assert_eq!(
            auth.verify(&token).await.unwrap(),
            Identity::new(7, "alice")
        );
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
            "the denylist entry lives exactly as long as the token would have"
        );

        let (stateless, _) = backend(false);
        let token = login(&stateless).await;
        stateless.revoke(&token).await.unwrap();
        assert!(
            stateless.verify(&token).await.is_ok(),
            "a stateless JWT outlives its logout"
        );
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
