//! `/hello` (the load-test baseline), `/healthz` (liveness) and `/readyz` (readiness).

use std::future::Future;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::Shared;
use super::auth::Me;

/// How long a readiness check waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /hello`: no authentication at all, same body shape as `/me`: the load-test baseline.
pub async fn hello() -> HttpResponse {
    HttpResponse::Ok().json(Me {
        user_id: 0,
        username: "anonymous",
        backend: "none",
    })
}

/// `GET /healthz`: the process is up (no I/O).
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: Redis and the user store both answer within a second (else 503).
pub async fn readyz(shared: web::Data<Shared>) -> HttpResponse {
    async fn check<E>(probe: impl Future<Output = Result<(), E>>) -> &'static str {
        match tokio::time::timeout(READY_TIMEOUT, probe).await {
            Ok(Ok(())) => "ok",
            _ => "unavailable",
        }
    }
    let (redis, database) = tokio::join!(check(shared.redis.ping()), check(shared.users.ping()));
    let checks = serde_json::json!({ "redis": redis, "database": database });
    if redis == "ok" && database == "ok" {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ok", "checks": checks }))
    } else {
        let failing: Vec<&str> = [("redis", redis), ("database", database)]
            .iter()
            .filter(|(_, state)| *state != "ok")
            .map(|(name, _)| *name)
            .collect();
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(serde_json::json!({
                "error": "not_ready",
                "message": format!("unavailable: {}", failing.join(", ")),
                "checks": checks,
            }))
    }
}
