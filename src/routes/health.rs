//! `/hello` (the load-test baseline), `/healthz` (liveness), `/readyz` (readiness) and `/livez`
//! (the load balancer's check).
//!
//! # Three checks, three questions
//! - `/healthz`: is the process up? No I/O; for a supervisor that restarts dead processes.
//! - `/readyz`: is *everything* up (Redis and the user store)? Strict: 503 as soon as one is down.
//!   Right for a rolling deploy ("do not send traffic until it is fully connected").
//! - `/livez`: can *this instance* serve anything? 200 whenever the process answers, with each
//!   backend's state in the body (`degraded` when a dependency is down). This is the check a load
//!   balancer should use. Redis and the user store are shared by every instance: when Redis is
//!   down it is down for all of them, so a balancer checking `/readyz` takes *every* instance out
//!   of the pool at once and turns a Redis outage (which only `/redis` and the JWT denylist need)
//!   into a total one, in-memory sessions and stateless JWT included. A shared dependency's outage
//!   is not a reason to prefer one instance over another; a dead process is, and `/livez` fails
//!   exactly then (no answer). It is a separate path rather than `/readyz?for=balancer` so that
//!   each path has one meaning and one set of answers (and one entry in the OpenAPI document),
//!   and a check configured without the query cannot silently become the strict one.

use std::future::Future;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Me;
use super::mounted::Shared;
use crate::error::{ApiError, refusals};
use crate::json::JsonLine;
use crate::readiness::{BackendStates, DependencyState, Readiness};

/// How long a readiness check waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// `200` of `/healthz` and `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct Health<'a> {
    /// `/readyz` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<&'a Readiness>,
    /// `ok`.
    status: &'static str,
}

/// `200` of `/livez`.
#[derive(Serialize, ToSchema)]
pub struct Serving {
    /// Each backend: `ok`, `degraded` or `unavailable`.
    backends: BackendStates,
    /// Each dependency, `ok` or `unavailable`.
    checks: Readiness,
    /// `ok`, or `degraded` when a backend is not fully `ok`.
    status: &'static str,
}

refusals!(
    /// What `/readyz` answers when a dependency is down.
    ReadyRefusals: NotReady
);

/// `body` with the keys of every object in alphabetical order, as these answers have always
/// been (the order of a `serde_json::Value`'s map). The fields of [`Health`] and [`Serving`] are
/// in that order already; the objects inside them are not.
fn keys_sorted(body: impl Serialize) -> serde_json::Value {
    serde_json::to_value(body).unwrap_or_default()
}

/// `GET /hello`: no authentication at all, same body shape as `/me`: the load-test baseline.
#[utoipa::path(
    get,
    path = "/hello",
    summary = "Unauthenticated baseline",
    description = "Shaped like `/me`, for load tests.",
    responses((status = 200, description = "Always", body = Me))
)]
pub async fn hello() -> HttpResponse {
    HttpResponse::Ok().json_line(Me {
        user_id: 0,
        username: "anonymous",
        backend: "none",
    })
}

/// `GET /healthz`: the process is up (no I/O).
#[utoipa::path(
    get,
    path = "/healthz",
    summary = "Liveness",
    description = "The process is up (no I/O).",
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json_line(Health {
        checks: None,
        status: "ok",
    })
}

/// `GET /readyz`: Redis and the user store both answer within a second (else 503, through the
/// one error mapping, naming what is down).
#[utoipa::path(
    get,
    path = "/readyz",
    summary = "Readiness",
    description = "Redis and the user store both answer within a second. Strict: do not balance \
                   on it (a Redis outage would take every instance out at once); use `/livez`.",
    responses((status = 200, description = "Ready", body = Health), ReadyRefusals)
)]
pub async fn readyz(shared: web::Data<Shared>) -> Result<HttpResponse, ApiError> {
    let checks = dependencies(&shared).await;
    if !checks.failing().is_empty() {
        return Err(ApiError::NotReady(checks));
    }
    Ok(HttpResponse::Ok().json_line(keys_sorted(Health {
        checks: Some(&checks),
        status: "ok",
    })))
}

/// `GET /livez`: the load balancer's check. 200 whenever this process answers, with what each
/// backend can do right now (see the module doc for why it does not fail on a shared dependency).
#[utoipa::path(
    get,
    path = "/livez",
    summary = "The load balancer's check",
    description = "200 whenever this instance can serve (in-memory sessions need nothing else), \
                   with each backend's state: `ok`, `degraded` (issued credentials work, logins \
                   do not: the user store is down) or `unavailable` (Redis is down and the \
                   backend needs it). `status` is `degraded` when any backend is not `ok`. It \
                   fails only when the process does not answer.",
    responses((status = 200, description = "This instance can serve", body = Serving))
)]
pub async fn livez(shared: web::Data<Shared>) -> HttpResponse {
    let checks = dependencies(&shared).await;
    let backends = BackendStates::from_checks(&checks, &shared.needs_redis);
    let status = if backends.all_ok() { "ok" } else { "degraded" };
    HttpResponse::Ok().json_line(keys_sorted(Serving {
        backends,
        checks,
        status,
    }))
}

/// Redis and the user store, each asked once with [`READY_TIMEOUT`], side by side.
async fn dependencies(shared: &Shared) -> Readiness {
    async fn check<E>(probe: impl Future<Output = Result<(), E>>) -> DependencyState {
        match tokio::time::timeout(READY_TIMEOUT, probe).await {
            Ok(Ok(())) => DependencyState::Ok,
            _ => DependencyState::Unavailable,
        }
    }
    let (redis, database) = tokio::join!(check(shared.redis.ping()), check(shared.users.ping()));
    let jwks = shared.jwks_ready.as_ref().map(|ready| {
        if ready() {
            DependencyState::Ok
        } else {
            DependencyState::Unavailable
        }
    });
    Readiness {
        redis,
        database,
        jwks,
    }
}
