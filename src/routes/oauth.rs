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
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::mounted::{MountedBackend, Shared, refresh_refused};
use crate::error::{ApiError, refusals};
use crate::json::JsonLine;

/// The form both endpoints take (`token_type_hint` is accepted and, as the RFCs allow, not
/// needed: the token's shape tells us what it is).
#[derive(Deserialize, ToSchema)]
pub struct TokenForm {
    /// An access or refresh token.
    #[schema(value_type = String)]
    token: SecretString,
    /// Accepted and not needed.
    #[serde(rename = "token_type_hint")]
    _token_type_hint: Option<String>,
}

/// `200` of `/introspect`: `{"active": false}` for anything but a live token (RFC 7662 §2.2:
/// optional members are left out, not null, when unknown). The fields are in alphabetical
/// order, the order this answer has always had.
#[derive(Serialize, ToSchema)]
pub struct Introspection<'a> {
    active: bool,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    exp: Option<u64>,
    /// Unix seconds, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    iat: Option<u64>,
    /// The login (session or token family) the token belongs to, `null` if none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    session_id: Option<Option<&'a str>>,
    /// The user id, as a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    sub: Option<String>,
    /// `access_token` or `refresh_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    username: Option<&'a str>,
}

refusals!(
    /// What `/revoke` can answer besides 200.
    RevokeRefusals: InvalidRequest, BackendUnavailable
);

refusals!(
    /// What `/introspect` can answer besides 200.
    IntrospectRefusals: InvalidRequest, MissingCredentials, InvalidClient, BackendUnavailable
);

/// `POST /{backend}/revoke` (RFC 7009): always 200 once the token, if it was live, is dead.
#[utoipa::path(
    post,
    path = "/revoke",
    summary = "RFC 7009 token revocation",
    description = "Always 200 once the token, if it was live, is dead (an unknown token too). A \
                   refresh token revokes its family.",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked (empty body)"), RevokeRefusals)
)]
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
#[utoipa::path(
    post,
    path = "/introspect",
    summary = "RFC 7662 token introspection",
    description = "What a live token is, or `{\"active\": false}`.",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The answer", body = Introspection), IntrospectRefusals),
    security(("introspection" = []))
)]
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
    let body = match &info {
        Some(info) => Introspection {
            active: true,
            exp: Some(info.expires_at),
            iat: info.issued_at,
            session_id: Some(info.identity.session_id.as_deref()),
            sub: Some(info.identity.user_id.to_string()),
            token_type: Some(match info.kind {
                TokenKind::Access => "access_token",
                TokenKind::Refresh => "refresh_token",
            }),
            username: Some(&*info.identity.username),
        },
        None => Introspection {
            active: false,
            exp: None,
            iat: None,
            session_id: None,
            sub: None,
            token_type: None,
            username: None,
        },
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json_line(body))
}
