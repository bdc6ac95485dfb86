//! Audit events: one structured `tracing` event per security-relevant action, at level `info`
//! under the target `authlab::audit`, so they can be kept, filtered or shipped apart from the
//! rest of the log (`RUST_LOG=authlab::audit=info` keeps only them; `authlab::audit=off` drops
//! them).
//!
//! Every event has these fields (the time is the log line's own timestamp):
//!
//! | field | what |
//! |---|---|
//! | `event` | `login_succeeded`, `login_failed`, `logout`, `refresh`, `refresh_reuse_detected`, `logout_all`, `password_changed`, `password_change_refused`, `throttled`, `csrf_refused` |
//! | `backend` | `session`, `redis`, `jwt`, or `users` for the routes under `/users` |
//! | `user_id` | when the server knows it (never for a failed login: that would say the name exists) |
//! | `account` | the SHA-256 of the normalised user name, on `login_failed` and `throttled` (see [`crate::throttle::account_hash`]) |
//! | `client_ip` | the client address (the peer, or from `X-Forwarded-For` via a `--trusted-proxy`) |
//! | `instance` | this process's `--instance-id` (random when not given) |
//! | `scope`, `revoked` | on `throttled`: which counter refused (`name`, `ip`, `register`); on `logout_all`: how many sessions ended |
//!
//! An event never carries a credential, a password, a token, a session id or the user name.
//! The `account` hash is pseudonymous, not anonymous: whoever has a list of candidate names can
//! hash them and compare.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::{HttpRequest, web};

use crate::throttle::{Cidr, Scope, client_ip};

/// The target every audit event is logged under.
pub const TARGET: &str = "authlab::audit";

/// What every audit event needs from the app: which instance this is, and how to find the
/// client's address. Registered as app data by [`crate::startup`].
pub struct Audit {
    instance: String,
    proxies: Arc<[Cidr]>,
}

impl Audit {
    /// The audit context of an instance named `instance`, behind `proxies`.
    pub fn new(instance: String, proxies: Arc<[Cidr]>) -> Self {
        Self { instance, proxies }
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

/// A short random instance id (8 hex digits), for when `--instance-id` is not given.
pub fn random_instance_id() -> String {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        // Not a secret, only a name: the process id will do if the OS has no randomness.
        return format!("{:08x}", std::process::id());
    }
    format!("{:08x}", u32::from_be_bytes(bytes))
}

/// Whether audit events are written at all (an event is not even assembled when they are not).
fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// The optional parts of an event.
#[derive(Default)]
struct Details<'a> {
    user_id: Option<i64>,
    account: Option<&'a str>,
    scope: Option<&'static str>,
    revoked: Option<u64>,
}

fn emit(req: &HttpRequest, event: &'static str, backend: &str, details: Details<'_>) {
    if !enabled() {
        return;
    }
    let (instance, ip): (&str, IpAddr) = match req.app_data::<web::Data<Audit>>() {
        Some(audit) => (&audit.instance, client_ip(req, &audit.proxies)),
        None => ("unknown", client_ip(req, &[])),
    };
    tracing::info!(
        target: TARGET,
        event,
        backend,
        user_id = details.user_id,
        account = details.account,
        scope = details.scope,
        revoked = details.revoked,
        client_ip = %ip,
        instance,
        "audit"
    );
}

/// A login that issued a credential.
pub fn login_succeeded(req: &HttpRequest, backend: &str, user_id: i64) {
    let details = Details {
        user_id: Some(user_id),
        ..Details::default()
    };
    emit(req, "login_succeeded", backend, details);
}

/// A login refused for a wrong name or password. `account` is the name's hash.
pub fn login_failed(req: &HttpRequest, backend: &str, account: &str) {
    let details = Details {
        account: Some(account),
        ..Details::default()
    };
    emit(req, "login_failed", backend, details);
}

/// A logout (one session, or one token family).
pub fn logout(req: &HttpRequest, backend: &str, user_id: i64) {
    let details = Details {
        user_id: Some(user_id),
        ..Details::default()
    };
    emit(req, "logout", backend, details);
}

/// A refresh token exchanged for new tokens.
pub fn refresh(req: &HttpRequest, backend: &str, user_id: i64) {
    let details = Details {
        user_id: Some(user_id),
        ..Details::default()
    };
    emit(req, "refresh", backend, details);
}

/// A spent refresh token presented again: its whole family has been revoked.
pub fn refresh_reuse_detected(req: &HttpRequest, backend: &str) {
    emit(req, "refresh_reuse_detected", backend, Details::default());
}

/// Every session of a user on one backend ended.
pub fn logout_all(req: &HttpRequest, backend: &str, user_id: i64, revoked: usize) {
    let details = Details {
        user_id: Some(user_id),
        revoked: Some(u64::try_from(revoked).unwrap_or(u64::MAX)),
        ..Details::default()
    };
    emit(req, "logout_all", backend, details);
}

/// A password changed (and every credential of the user revoked).
pub fn password_changed(req: &HttpRequest, user_id: i64) {
    let details = Details {
        user_id: Some(user_id),
        ..Details::default()
    };
    emit(req, "password_changed", "users", details);
}

/// A password change refused for a wrong old password.
pub fn password_change_refused(req: &HttpRequest, user_id: i64) {
    let details = Details {
        user_id: Some(user_id),
        ..Details::default()
    };
    emit(req, "password_change_refused", "users", details);
}

/// A request refused with `429 too_many_attempts`. `account` is the name's hash, if a name
/// was involved.
pub fn throttled(req: &HttpRequest, backend: &str, scope: Scope, account: Option<&str>) {
    let details = Details {
        account,
        scope: Some(scope.as_str()),
        ..Details::default()
    };
    emit(req, "throttled", backend, details);
    crate::metrics::throttled(req, backend);
}

/// A request refused as cross-site (`403 csrf_rejected`). For the CSRF middleware to call with
/// the request it refuses; the backend is read from the path (`/session/...` is `session`).
pub fn csrf_refused(req: &HttpRequest) {
    emit(
        req,
        "csrf_refused",
        backend_of(req.path()),
        Details::default(),
    );
    crate::metrics::csrf_refused(req);
}

/// The scope a path belongs to: `session`, `redis`, `jwt`, `users`, or `none`.
pub fn backend_of(path: &str) -> &'static str {
    match path.trim_start_matches('/').split('/').next() {
        Some("session") => "session",
        Some("redis") => "redis",
        Some("jwt") => "jwt",
        Some("users") => "users",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_short_and_differ() {
        let a = random_instance_id();
        assert_eq!(a.len(), 8, "{a}");
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
        // Two draws of 32 random bits colliding would be a one-in-four-billion event.
        assert_ne!(a, random_instance_id());
    }

    #[test]
    fn the_backend_is_read_from_the_path() {
        assert_eq!(backend_of("/session/logout"), "session");
        assert_eq!(backend_of("/redis/logout-all"), "redis");
        assert_eq!(backend_of("/jwt/sessions/abc"), "jwt");
        assert_eq!(backend_of("/users/me/password"), "users");
        assert_eq!(backend_of("/elsewhere"), "none");
        assert_eq!(backend_of("/"), "none");
    }
}
