//! Who may call RFC 7662 introspection (`/redis/introspect`, `/jwt/introspect`).
//!
//! Introspection tells its caller whose a token is, which login it belongs to and when it
//! expires, so RFC 7662 §2.1 requires the endpoint to authorize its callers. authlab has no
//! client registry; a resource server proves it is one by sending a shared secret,
//! `Authorization: Bearer <secret>`, read at start-up from `--introspection-secret-file` (at least
//! 32 bytes, one trailing newline ignored) and compared in constant time.
//!
//! Every other caller gets `401` with `WWW-Authenticate: Bearer`: `missing_credentials` when no
//! `Authorization` header was sent, `invalid_client` when a secret was sent that is not the
//! configured one, or when no secret is configured (then nobody may introspect). Two
//! `Authorization` headers are `400 invalid_request`, as everywhere.
//!
//! RFC 7009 revocation stays open on purpose: whoever holds a token may always end it.

use actix_web::HttpRequest;
use actix_web::http::header;
use authlab_core::AuthError;
use secrecy::{ExposeSecret, SecretSlice};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, Challenge};

/// The shortest accepted secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The configured secret, if any.
pub struct IntrospectionClients {
    secret: Option<SecretSlice<u8>>,
}

impl IntrospectionClients {
    /// Nobody may introspect.
    pub fn closed() -> Self {
        Self { secret: None }
    }

    /// Callers presenting `secret` may introspect; `None` if it is shorter than
    /// [`MIN_SECRET_BYTES`].
    pub fn with_secret(secret: Vec<u8>) -> Option<Self> {
        (secret.len() >= MIN_SECRET_BYTES).then(|| Self {
            secret: Some(SecretSlice::from(secret)),
        })
    }

    /// `Ok` if the request carries the configured secret; otherwise the 401 (or 400) to answer.
    pub fn authorize(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let refuse = |cause| ApiError::Unauthenticated {
            cause,
            challenge: Challenge::Bearer,
        };
        let mut values = req.headers().get_all(header::AUTHORIZATION);
        let value = match (values.next(), values.next()) {
            (None, _) => return Err(refuse(AuthError::Missing)),
            (Some(_), Some(_)) => return Err(refuse(AuthError::Ambiguous)),
            (Some(value), None) => value.as_bytes(),
        };
        let presented = value
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|_| value[7..].trim_ascii())
            .ok_or(ApiError::InvalidClient)?;
        let secret = self.secret.as_ref().ok_or(ApiError::InvalidClient)?;
        // Constant time in the bytes compared (the length of the secret is not a secret).
        if bool::from(secret.expose_secret().ct_eq(presented)) {
            Ok(())
        } else {
            Err(ApiError::InvalidClient)
        }
    }
}

impl std::fmt::Debug for IntrospectionClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionClients")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn code(result: Result<(), ApiError>) -> &'static str {
        result.err().map_or("ok", |e| e.code())
    }

    #[test]
    fn only_the_configured_secret_opens_introspection() {
        let clients = IntrospectionClients::with_secret(SECRET.into()).expect("32 bytes");
        let with = |value: &str| {
            TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request()
        };
        assert_eq!(
            code(clients.authorize(&with(&format!("Bearer {SECRET}")))),
            "ok"
        );
        assert_eq!(
            code(clients.authorize(&with(&format!("bearer {SECRET}")))),
            "ok"
        );
        assert_eq!(
            code(clients.authorize(&with(&format!("Bearer {SECRET}x")))),
            "invalid_client"
        );
        assert_eq!(
            code(clients.authorize(&with("Basic abc"))),
            "invalid_client"
        );
        let none = TestRequest::default().to_http_request();
        assert_eq!(code(clients.authorize(&none)), "missing_credentials");
        let closed = IntrospectionClients::closed();
        assert_eq!(
            code(closed.authorize(&with(&format!("Bearer {SECRET}")))),
            "invalid_client"
        );
        assert!(IntrospectionClients::with_secret(vec![b'x'; 31]).is_none());
        assert!(!format!("{clients:?}").contains(SECRET));
    }
}
