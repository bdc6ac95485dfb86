//! Security headers on every response, errors and 404s included:
//!
//! - `X-Content-Type-Options: nosniff`: a browser never guesses a type other than the one sent;
//! - `Referrer-Policy: no-referrer`: a link followed from anything served here sends no `Referer`;
//! - `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'` on JSON: an answer
//!   opened as a page can load nothing and cannot be framed (clickjacking);
//! - `Cache-Control: no-store` on every response that has no `Cache-Control` of its own: every
//!   answer of this API carries an identity or a credential (`/me`, `POST /users`, logins,
//!   refresh, the session lists, introspection) or is an error or a probe that must not be
//!   replayed from a cache, so no route is cacheable and none opts out;
//! - `Strict-Transport-Security: max-age=63072000; includeSubDomains` with `--cookie-secure` only
//!   (the flag says the service is reached over HTTPS; two years, as the HSTS preload list asks).
//!
//! Every response also names the instance that answered, `X-Authlab-Instance: <--instance-id>`
//! (random when not given): behind a load balancer, which instance served a request is otherwise
//! invisible, and where a session lives is the whole point of comparing the backends. It is the
//! name the audit events and the start-up log use, not a secret.
//!
//! They are set outermost, after every other middleware, so nothing answers without them.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

/// The CSP of JSON answers: nothing may load, nothing may frame them.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// HSTS, with `--cookie-secure`: two years, subdomains included.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=63072000; includeSubDomains";

/// The header that names the instance that answered, so that a person (or the demo page) behind
/// a load balancer can see which of several instances served each request.
pub const INSTANCE_HEADER: &str = "x-authlab-instance";

/// Which optional headers to send.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    /// Send `Strict-Transport-Security` (with `--cookie-secure`).
    pub hsts: bool,
    /// This instance's `--instance-id`, sent as `X-Authlab-Instance` on every response.
    pub instance: HeaderValue,
}

impl SecurityHeaders {
    /// Adds the headers to a response's header map.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(
            header::HeaderName::from_static(INSTANCE_HEADER),
            self.instance.clone(),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if json {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
        }
        if self.hsts {
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
            );
        }
    }
}

/// The middleware: [`SecurityHeaders::apply`] on every response, including the one actix makes
/// later from an error an inner middleware returned instead of a response.
pub async fn security_headers(
    policy: web::Data<SecurityHeaders>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let policy = policy.into_inner();
    match next.call(req).await {
        Ok(mut res) => {
            policy.apply(res.headers_mut());
            Ok(res)
        }
        Err(mut err) => {
            err.add_response_mapper(move |mut res| {
                policy.apply(res.headers_mut());
                res
            });
            Err(err)
        }
    }
}
