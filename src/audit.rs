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
//! Audit events are only written here: nothing in this module counts metrics. A caller that
//! refuses a request records both, in the open (see [`crate::throttle`] and
//! [`crate::middleware::csrf`]).
//!
//! An event never carries a credential, a password, a token, a session id or the user name.
//! The `account` hash is pseudonymous, not anonymous: whoever has a list of candidate names can
//! hash them and compare.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::{HttpRequest, web};

use crate::backend_kind::{BackendKind, RouteGroup};
use crate::client_address::{Cidr, client_ip};

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

fn emit(req: &HttpRequest, event: &'static str, group: RouteGroup, details: Details<'_>) {
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
        backend = group.label(),
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
pub fn login_succeeded(req: &HttpRequest, backend: BackendKind, user_id: i64) {
    let details = Details {
        user_id: Some(user_id),
        ..Details::default()
    };
    emit(
        req,
        "login_succeeded",
        RouteGroup::Backend(backend),
        details,
    );
}

/// A login refused for a wrong name or password. `account` is the name's hash.
pub fn login_failed(req: &HttpRequest, backend: BackendKind, account: &str) {
    let details = Details {
        account: Some(account),
        ..Details::default()
    };
    emit(req, "login_failed", RouteGroup::Backend(backend), details);
}

/// A logout (one session, or one token family).
pub fn logout(req: &HttpRequest, backend: BackendKind, user_id: i64) {
    let details = Details {
        user_id: Some(user_id),
        ..Details::default()
    };
    emit(req, "logout", RouteGroup::Backend(backend), details);
}

/// A refresh token exchanged for new tokens.
pub fn refresh(req: &HttpRequest, backend: BackendKind, user_id: i64) {
    let details = Details {
        user_id: Some(user_id),
        ..Details::default()
    };
    emit(req, "refresh", RouteGroup::Backend(backend), details);
}

/// A spent refresh token presented again: its whole family has been revoked.
pub fn refresh_reuse_detected(req: &HttpRequest, backend: BackendKind) {
    emit(
        req,
        "refresh_reuse_detected",
        RouteGroup::Backend(backend),
        Details::default(),
    );
}

/// Every session of a user on one backend ended.
pub fn logout_all(req: &HttpRequest, backend: BackendKind, user_id: i64, revoked: usize) {
    let details = Details {
        user_id: Some(user_id),
        revoked: Some(u64::try_from(revoked).unwrap_or(u64::MAX)),
        ..Details::default()
    };
    emit(req, "logout_all", RouteGroup::Backend(backend), details);
}

/// A password changed (and every credential of the user revoked).
pub fn password_changed(req: &HttpRequest, user_id: i64) {
    let details = Details {
        user_id: Some(user_id),
        ..Details::default()
    };
    emit(req, "password_changed", RouteGroup::Users, details);
}

/// A password change refused for a wrong old password.
pub fn password_change_refused(req: &HttpRequest, user_id: i64) {
    let details = Details {
        user_id: Some(user_id),
        ..Details::default()
    };
    emit(req, "password_change_refused", RouteGroup::Users, details);
}

/// A request refused with `429 too_many_attempts` by the counter `counter` (`name`, `ip`,
/// `register`). `account` is the name's hash, if a name was involved.
pub fn throttled(
    req: &HttpRequest,
    group: RouteGroup,
    counter: &'static str,
    account: Option<&str>,
) {
    let details = Details {
        account,
        scope: Some(counter),
        ..Details::default()
    };
    emit(req, "throttled", group, details);
}

/// A request refused as cross-site (`403 csrf_rejected`). For the CSRF middleware to call with
/// the request it refuses; the backend is read from the path (`/session/...` is `session`).
pub fn csrf_refused(req: &HttpRequest) {
    emit(
        req,
        "csrf_refused",
        RouteGroup::of_path(req.path()),
        Details::default(),
    );
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
}
