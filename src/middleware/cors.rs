//! CORS: which other origins' pages may read this API's answers, and send it credentials.
//!
//! Only the origins given with `--cors-origin` (exact match, as browsers write them; never `*`):
//! for those, `Access-Control-Allow-Origin` names the origin, `Access-Control-Allow-Credentials:
//! true` lets the session cookie travel, preflights allow `GET`, `POST` and `DELETE` with the
//! `Authorization` and `Content-Type` headers, and every answer carries `Vary: Origin`. For any
//! other origin there is no CORS header at all: a simple request is served as if CORS did not
//! exist (the browser then hides the answer from the page), and a preflight is refused with
//! `403 cors_rejected`. With no `--cors-origin`, none of this is mounted.
//!
//! actix-cors does the work. [`cors_guard`] wraps it for two things it does differently: its
//! refusals are plain text (here they go through the one error mapping, as JSON), and it adds
//! `Access-Control-Allow-Credentials` to answers for origins it did not allow (here removed).
//!
//! CORS is not a CSRF defence (it decides who may *read* answers, not who may *send* requests);
//! [`super::csrf`] is, and it trusts the same origins.

use actix_cors::{Cors, CorsError};
use actix_web::ResponseError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;

use crate::error::ApiError;

/// Longest time a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: usize = 600;

/// The CORS middleware for the allow-list `origins` (validated by the settings parser).
pub fn cors(origins: &[String]) -> Cors {
    origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods([Method::GET, Method::POST, Method::DELETE])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .supports_credentials()
        .max_age(PREFLIGHT_MAX_AGE)
}

/// Wraps [`cors`]: its refusals become JSON errors, and an answer that does not allow the
/// request's origin carries no CORS header at all.
pub async fn cors_guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let refusal = res
        .response()
        .error()
        .and_then(|e| e.as_error::<CorsError>())
        .cloned();
    if let Some(refusal) = refusal {
        let mut answer = ApiError::CorsRejected(refusal).error_response();
        answer
            .headers_mut()
            .insert(header::VARY, header::HeaderValue::from_static("Origin"));
        return Ok(res.into_response(answer).map_into_right_body());
    }
    let headers = res.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
    }
    Ok(res.map_into_left_body())
}
