//! The credential lifecycle beyond login and logout: each user's registry of live sessions
//! (list, revoke one, revoke all), password change (which revokes everything, everywhere), and
//! rotating a session id after a privilege change.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use authlab_core::{AuthError, Authenticator, Identity, SessionRegistry};
use authlab_session::SessionAuthenticator;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{CookieLogin, CredentialRefusals, issued_response};
use super::mounted::{MountedBackend, Shared};
use crate::audit;
use crate::error::{ApiError, CauseChain, Challenge, refusals};
use crate::json::JsonLine;
use crate::throttle::Throttle;
use crate::transport::Transport;

/// One live session (or token family) of the caller, in `GET /{backend}/sessions`. The fields
/// are in alphabetical order, the order this answer has always had.
#[derive(Serialize, ToSchema)]
pub struct SessionEntry<'a> {
    /// Unix seconds.
    created_at: u64,
    /// Whether this is the session the request itself came with.
    current: bool,
    /// Unix seconds.
    expires_at: u64,
    id: &'a str,
    /// Unix seconds.
    last_used_at: u64,
    user_agent: Option<&'a str>,
}

/// `200` of `GET /{backend}/sessions`, newest first.
#[derive(Serialize, ToSchema)]
pub struct SessionList<'a> {
    sessions: Vec<SessionEntry<'a>>,
}

/// `200` of `POST /{backend}/logout-all`.
#[derive(Serialize, ToSchema)]
pub struct Revoked {
    /// How many sessions (or token families) ended.
    revoked: usize,
}

/// Body of `POST /users/me/password`.
#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    #[schema(value_type = String)]
    old_password: SecretString,
    #[schema(value_type = String)]
    new_password: SecretString,
}

refusals!(
    /// What the registry's routes can answer besides success: a refused credential, or a
    /// backend that keeps no list.
    RegistryRefusals: MissingCredentials, InvalidToken, TokenExpired, TokenRevoked, Unsupported,
        BackendUnavailable
);

refusals!(
    /// What `DELETE /{backend}/sessions/{id}` can answer besides 204.
    RevokeOneRefusals: MissingCredentials, InvalidToken, TokenExpired, TokenRevoked,
        SessionNotFound, Unsupported, BackendUnavailable
);

refusals!(
    /// What a password change can answer besides 204.
    PasswordChangeRefusals: MissingCredentials, InvalidToken, TokenExpired, TokenRevoked,
        MalformedJson, InvalidCredentials, InvalidField, TooManyAttempts, BackendUnavailable
);

/// A logout-all or password change also clears the caller's session cookie, if it had one.
fn finish(response: &mut actix_web::HttpResponseBuilder, transport: Transport) {
    if let Transport::Cookie { .. } = transport {
        response.cookie(transport.expired_session_cookie());
    }
}

/// `GET /{backend}/sessions`: the caller's live sessions (or token families), newest first.
#[utoipa::path(
    get,
    path = "/sessions",
    operation_id = "sessions_list",
    summary = "The caller's live sessions",
    description = "Sessions (session backend) or token families (redis, jwt), newest first.",
    responses((status = 200, description = "The list", body = SessionList), RegistryRefusals),
    security(("bearer" = []))
)]
pub async fn list<A: Authenticator + SessionRegistry>(
    req: HttpRequest,
    backend: web::Data<MountedBackend<A>>,
) -> Result<HttpResponse, ApiError> {
    let identity = backend.authenticate(&req).await?;
    let sessions = backend
        .auth
        .sessions(identity.user_id)
        .await
        .map_err(|c| backend.refuse(c))?;
    let entries = sessions
        .iter()
        .map(|s| SessionEntry {
            id: &s.id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            user_agent: s.user_agent.as_deref(),
            current: identity.session_id.as_deref() == Some(s.id.as_str()),
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json_line(SessionList { sessions: entries }))
}

/// `DELETE /{backend}/sessions/{id}`: revokes one of the caller's sessions (204, or 404).
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    operation_id = "sessions_revoke",
    summary = "End one of the caller's sessions",
    description = "`id` as listed by `GET /sessions`.",
    params(("id" = String, Path, description = "a session or family id, as listed")),
    responses((status = 204, description = "Ended"), RevokeOneRefusals),
    security(("bearer" = []))
)]
pub async fn revoke_one<A: Authenticator + SessionRegistry>(
    req: HttpRequest,
    backend: web::Data<MountedBackend<A>>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let identity = backend.authenticate(&req).await?;
    let revoked = backend
        .auth
        .revoke_session(identity.user_id, &id)
        .await
        .map_err(|c| backend.refuse(c))?;
    if !revoked {
        // Another user's session id gets the same answer as one that never existed.
        return Err(ApiError::SessionNotFound);
    }
    let mut response = HttpResponse::NoContent();
    if identity.session_id.as_deref() == Some(id.as_str()) {
        finish(&mut response, backend.transport);
    }
    Ok(response.finish())
}

/// `POST /{backend}/logout-all`: revokes every session of the caller on this backend.
#[utoipa::path(
    post,
    path = "/logout-all",
    summary = "End every session of the caller on this backend",
    description = "Every session (or token family) of the user on this backend.",
    responses((status = 200, description = "All ended", body = Revoked), RegistryRefusals),
    security(("bearer" = []))
)]
pub async fn logout_all<A: Authenticator + SessionRegistry>(
    req: HttpRequest,
    backend: web::Data<MountedBackend<A>>,
) -> Result<HttpResponse, ApiError> {
    let identity = backend.authenticate(&req).await?;
    let revoked = backend
        .auth
        .revoke_all(identity.user_id)
        .await
        .map_err(|c| backend.refuse(c))?;
    audit::logout_all(&req, backend.kind, identity.user_id, revoked);
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    finish(&mut response, backend.transport);
    Ok(response.json_line(Revoked { revoked }))
}

/// Whoever the request's credential (of any backend) says the caller is.
async fn identify_any(shared: &Shared, req: &HttpRequest) -> Result<Identity, ApiError> {
    let mut refusal = AuthError::Missing;
    for backend in &shared.backends {
        match backend.identify(req).await {
            Some(Ok(identity)) => return Ok(identity),
            // A bearer token is offered to both token backends; only one can accept it.
            Some(Err(cause)) => {
                if matches!(refusal, AuthError::Missing | AuthError::Invalid) {
                    refusal = cause;
                }
            }
            None => {}
        }
    }
    Err(ApiError::Unauthenticated {
        cause: refusal,
        challenge: Challenge::Bearer,
    })
}

/// Revokes every credential of the user on every backend. A backend that keeps no list of
/// credentials (stateless JWT refresh tokens) has nothing it *can* revoke and is skipped.
async fn revoke_everywhere(shared: &Shared, user_id: i64) -> Result<usize, ApiError> {
    let mut revoked = 0;
    for backend in &shared.backends {
        match backend.revoke_all(user_id).await {
            Ok(n) => revoked += n,
            Err(AuthError::Unsupported) => {}
            Err(cause) => {
                return Err(ApiError::Unauthenticated {
                    cause,
                    challenge: Challenge::None,
                });
            }
        }
    }
    Ok(revoked)
}

/// `POST /users/me/password`: the old password proves it is really the user (a stolen session
/// alone is not enough), and afterwards every credential of the user, on every backend, is dead:
/// whoever had the old password may have logged in with it.
///
/// Order matters. Everything is revoked *before* the password changes, so if a store is down the
/// answer is 503 and the password is unchanged (some credentials may already be revoked, which
/// errs on the safe side; the client logs in again and retries); and everything is revoked once
/// more afterwards, for a login that slipped in with the old password in between.
#[utoipa::path(
    post,
    path = "/users/me/password",
    operation_id = "users_change_password",
    summary = "Change the caller's password",
    description = "Takes any backend's credential (cookie or bearer) and the old password; ends \
                   every credential of the user on every backend (and clears the caller's \
                   cookie).",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; every credential of the user is dead"),
        PasswordChangeRefusals
    ),
    security(("cookie" = []), ("bearer" = []))
)]
pub async fn change_password(
    req: HttpRequest,
    shared: web::Data<Shared>,
    throttle: web::Data<Throttle>,
    body: web::Json<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    let identity = identify_any(&shared, &req).await?;
    let PasswordChange {
        old_password,
        new_password,
    } = body.into_inner();
    // The policy first: a refused password must change nothing (below, everything is revoked).
    let new_password = shared
        .users
        .check_new_password(&identity.username, new_password)
        .await?;
    // A wrong old password is a guess at the account's password, as a failed login is: it is
    // counted in the same per-name counter, so a stolen session cannot guess the password.
    let guess = throttle.password_check(&req, &identity.username).await?;
    match shared
        .users
        .verify_password(identity.user_id, old_password)
        .await
    {
        Ok(true) => guess.right().await,
        Ok(false) => {
            audit::password_change_refused(&req, identity.user_id);
            guess.wrong().await;
            return Err(ApiError::InvalidCredentials);
        }
        Err(err) => {
            guess.undecided().await;
            return Err(err.into());
        }
    }
    revoke_everywhere(&shared, identity.user_id).await?;
    shared
        .users
        .set_password(identity.user_id, new_password)
        .await?;
    if let Err(err) = revoke_everywhere(&shared, identity.user_id).await {
        tracing::warn!(error.cause_chain = %CauseChain(&err), "second revocation after a password change failed");
    }
    audit::password_changed(&req, identity.user_id);
    let mut response = HttpResponse::NoContent();
    finish(&mut response, shared.session_transport);
    Ok(response.finish())
}

/// `POST /session/rotate`: a new id for the caller's session, the old one dead at once. This is
/// what an application calls when the session's privileges change (a role granted, a "sudo"
/// re-authentication), so that an id seen or planted before the change is worthless after it.
#[utoipa::path(
    post,
    path = "/rotate",
    operation_id = "rotate",
    summary = "A new session id for the same session",
    description = "After a privilege change: the old id stops working.",
    responses(
        (status = 200, description = "Rotated; the new id is in `Set-Cookie`", body = CookieLogin),
        CredentialRefusals
    ),
    security(("cookie" = []))
)]
pub async fn renew_session_id(
    req: HttpRequest,
    backend: web::Data<MountedBackend<SessionAuthenticator>>,
) -> Result<HttpResponse, ApiError> {
    let credential = backend
        .transport
        .credential(&req)
        .map_err(|c| backend.refuse(c))?;
    let issued = backend
        .auth
        .renew_id(credential)
        .await
        .map_err(|c| backend.refuse(c))?;
    Ok(issued_response(&backend, &issued))
}
