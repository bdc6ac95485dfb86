//! The two OAuth endpoints every token server is expected to have, for the token backends:
//!
//! - RFC 7009 revocation, `POST /{backend}/revoke` with a form body `token=...`: always 200 (a
//!   token that is unknown or already dead is "revoked" too; the RFC says so, so that the endpoint
//!   does not tell a prober which tokens exist). Revoking a refresh token revokes its family.
//! - RFC 7662 introspection, `POST /{backend}/introspect` with a form body `token=...`:
//!   `{"active": true, ...}` for a live token, `{"active": false}` for anything else.
//!
//! Introspection authorizes its callers (RFC 7662 §2.1) with a shared secret, see
//! [`crate::introspection`]. Revocation stays open: anyone holding a token may end it, which
//! RFC 7009 allows for public clients, and which tells the caller nothing.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use authlab_core::{TokenEndpoints, TokenKind};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::mounted::{MountedBackend, Shared, refresh_refused};
use crate::error::ApiError;
use crate::json::JsonLine;

/// The form both endpoints take (`token_type_hint` is accepted and, as the RFCs allow, not
/// needed: the token's shape tells us what it is).
#[derive(Deserialize)]
pub struct TokenForm {
    token: SecretString,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// `POST /{backend}/revoke` (RFC 7009): always 200 once the token, if it was live, is dead.
pub async fn revoke<A: TokenEndpoints>(
    backend: web::Data<MountedBackend<A>>,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, ApiError> {
    backend
        .auth
        .revoke_token(form.token.expose_secret())
        .await
        .map_err(refresh_refused)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// `POST /{backend}/introspect` (RFC 7662): what a live token is, or `{"active": false}`, for
/// a caller holding the introspection secret.
pub async fn introspect<A: TokenEndpoints>(
    req: HttpRequest,
    shared: web::Data<Shared>,
    backend: web::Data<MountedBackend<A>>,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, ApiError> {
    shared.introspection.authorize(&req)?;
    let info = backend
        .auth
        .introspect(form.token.expose_secret())
        .await
        .map_err(refresh_refused)?;
    let body = match info {
        Some(info) => {
            let mut body = serde_json::json!({
                "active": true,
                "token_type": match info.kind {
                    TokenKind::Access => "access_token",
                    TokenKind::Refresh => "refresh_token",
                },
                "sub": info.identity.user_id.to_string(),
                "username": &*info.identity.username,
                "exp": info.expires_at,
                "session_id": info.identity.session_id.as_deref(),
            });
            // RFC 7662 §2.2: optional members are left out, not null, when unknown.
            if let Some(iat) = info.issued_at {
                body["iat"] = iat.into();
            }
            body
        }
        None => serde_json::json!({ "active": false }),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json_line(body))
}
