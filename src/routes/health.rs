//! `/hello` (the load-test baseline), `/healthz` (liveness) and `/readyz` (readiness).

use std::future::Future;
use std::time::Duration;

use actix_web::{HttpResponse, web};

use super::Shared;
use super::auth::Me;
use crate::error::{ApiError, DependencyState, Readiness};
use crate::json::JsonLine;

/// How long a readiness check waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /hello`: no authentication at all, same body shape as `/me`: the load-test baseline.
pub async fn hello() -> HttpResponse {
    HttpResponse::Ok().json_line(Me {
        user_id: 0,
        username: "anonymous",
        backend: "none",
    })
}

/// `GET /healthz`: the process is up (no I/O).
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json_line(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: Redis and the user store both answer within a second (else 503, through the
/// one error mapping, naming what is down).
pub async fn readyz(shared: web::Data<Shared>) -> Result<HttpResponse, ApiError> {
    async fn check<E>(probe: impl Future<Output = Result<(), E>>) -> DependencyState {
        match tokio::time::timeout(READY_TIMEOUT, probe).await {
            Ok(Ok(())) => DependencyState::Ok,
            _ => DependencyState::Unavailable,
        }
    }
    let (redis, database) = tokio::join!(check(shared.redis.ping()), check(shared.users.ping()));
    let checks = Readiness { redis, database };
    if !checks.failing().is_empty() {
        return Err(ApiError::NotReady(checks));
    }
    Ok(HttpResponse::Ok().json_line(serde_json::json!({ "status": "ok", "checks": checks })))
}
