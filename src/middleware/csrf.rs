//! Cross-site request forgery: refusing unsafe requests that a browser sent from another site
//! with the session cookie attached, by the algorithm of Go 1.25's
//! `net/http.CrossOriginProtection`: no token, no state, two request headers that pages cannot
//! forge.
//!
//! A request is checked only if its method is unsafe (anything but `GET`, `HEAD`, `OPTIONS`; the
//! API's unsafe methods are `POST` and `DELETE`, and `PUT`/`PATCH` are covered all the same) and it
//! carries the session cookie (`sid`, or `__Host-sid` with `--cookie-secure`), whether or not the
//! cookie is valid. Bearer-token requests without the cookie are never checked: a browser does not
//! attach an `Authorization` header by itself, so a forged request has no credential to abuse.
//! Then, in order:
//!
//! 1. `Sec-Fetch-Site` (sent by every current browser since 2023) is `same-origin` or `none` (the
//!    user typed the URL or used a bookmark): allowed;
//! 2. `Sec-Fetch-Site` says anything else (`same-site`, `cross-site`): allowed only if `Origin` is
//!    a trusted origin (`--cors-origin`), otherwise refused;
//! 3. no `Sec-Fetch-Site` and no `Origin`: allowed. That is curl, a server, or a very old
//!    browser on a same-origin request, none of which a page on another site can make;
//! 4. no `Sec-Fetch-Site` but an `Origin`: allowed if it is this server's own origin, or a trusted
//!    one; otherwise refused.
//!
//! A refusal is `403 csrf_rejected`, answered before any handler runs, so it changes nothing,
//! and it is an audit event (`csrf_refused`, see [`crate::audit`]).
//!
//! **This server's own origin** (step 4) is the scheme of the connection (`http`: authlab itself
//! does not terminate TLS) and the `Host` header. Go compares the host alone; the scheme is
//! compared here too, so that a page on `http://host` cannot act on `https://host`. Behind a
//! TLS-terminating proxy the browser's origin is `https://host` while the connection the server
//! sees is `http`, so step 4 refuses same-origin requests from browsers that send `Origin` but no
//! `Sec-Fetch-Site` (browsers from before 2023; current ones are decided at step 1), and a proxy
//! that rewrites `Host` does the same. The fix is to list the public origin with `--cors-origin`,
//! which trusts it. `X-Forwarded-Proto` and `Forwarded` are not read: a client can write them.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};

use crate::audit;
use crate::backend_kind::RouteGroup;
use crate::error::ApiError;
use crate::metrics::{Metrics, Outcome};
use crate::transport::Transport;

/// What the CSRF check needs to know: which cookie makes a request subject to it, and which
/// other origins are trusted.
#[derive(Debug, Clone)]
pub struct CsrfPolicy {
    session: Transport,
    trusted: Vec<String>,
}

impl CsrfPolicy {
    /// The check for the session cookie of `session`, trusting `trusted` origins (the
    /// `--cors-origin` list, written exactly as browsers send them).
    pub fn new(session: Transport, trusted: &[String]) -> Self {
        Self {
            session,
            trusted: trusted.to_vec(),
        }
    }

    /// Whether the request may go on (see the module docs for the rules, in order).
    pub fn allows(&self, req: &HttpRequest) -> bool {
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
            || !self.session.carries_cookie(req)
        {
            return true;
        }
        let headers = req.headers();
        let origin = headers.get(header::ORIGIN).map(|v| v.as_bytes());
        let trusted = || origin.is_some_and(|o| self.trusted.iter().any(|t| t.as_bytes() == o));
        match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
            Some(b"same-origin" | b"none") => true,
            Some(_) => trusted(),
            None => match origin {
                None => true,
                Some(origin) => is_own_origin(req, origin) || trusted(),
            },
        }
    }
}

/// `origin` is `<scheme of the connection>://<Host header>`.
fn is_own_origin(req: &HttpRequest, origin: &[u8]) -> bool {
    let scheme: &[u8] = if req.app_config().secure() {
        b"https"
    } else {
        b"http"
    };
    let host = match req.headers().get(header::HOST) {
        Some(host) => host.as_bytes(),
        None => match req.uri().authority() {
            Some(authority) => authority.as_str().as_bytes(),
            None => return false,
        },
    };
    origin
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix(b"://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// The middleware: refuses what [`CsrfPolicy::allows`] does not allow with `403 csrf_rejected`.
pub async fn csrf(
    policy: web::Data<CsrfPolicy>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if policy.allows(req.request()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    // Recorded twice, in the open: the audit event and the metrics' `csrf` outcome.
    audit::csrf_refused(req.request());
    if let Some(metrics) = req.app_data::<web::Data<Metrics>>() {
        metrics.refused(RouteGroup::of_path(req.path()), Outcome::Csrf);
    }
    // Answered here, before routing: the handler never runs, so nothing changes.
    Ok(req
        .error_response(ApiError::CsrfRejected)
        .map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn policy() -> CsrfPolicy {
        CsrfPolicy::new(
            Transport::Cookie {
                secure: false,
                max_age: std::time::Duration::from_secs(60),
            },
            &["https://app.example".to_owned()],
        )
    }

    fn post(headers: &[(&str, &str)]) -> HttpRequest {
        let mut req = TestRequest::post()
            .uri("/session/logout")
            .insert_header(("host", "api.example:8080"))
            .insert_header(("cookie", "sid=abc"));
        for &(name, value) in headers {
            req = req.insert_header((name, value));
        }
        req.to_http_request()
    }

    #[test]
    fn the_rules_in_order() {
        let p = policy();
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[], true),
            (&[("sec-fetch-site", "same-origin")], true),
            (&[("sec-fetch-site", "none")], true),
            (&[("sec-fetch-site", "cross-site")], false),
            (&[("sec-fetch-site", "same-site")], false),
            (
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://app.example"),
                ],
                true,
            ),
            (&[("origin", "http://api.example:8080")], true),
            (&[("origin", "https://api.example:8080")], false),
            (&[("origin", "http://api.example")], false),
            (&[("origin", "https://evil.example")], false),
            (&[("origin", "null")], false),
            (&[("origin", "https://app.example")], true),
        ];
        for (headers, allowed) in cases {
            assert_eq!(p.allows(&post(headers)), *allowed, "{headers:?}");
        }
    }

    #[test]
    fn safe_methods_and_requests_without_the_cookie_are_not_checked() {
        let p = policy();
        let get = TestRequest::get()
            .insert_header(("cookie", "sid=abc"))
            .insert_header(("sec-fetch-site", "cross-site"))
            .to_http_request();
        assert!(p.allows(&get));
        let bearer = TestRequest::post()
            .insert_header(("authorization", "Bearer abc"))
            .insert_header(("sec-fetch-site", "cross-site"))
            .to_http_request();
        assert!(p.allows(&bearer));
        let delete = TestRequest::delete()
            .insert_header(("cookie", "sid=abc"))
            .insert_header(("sec-fetch-site", "cross-site"))
            .to_http_request();
        assert!(!p.allows(&delete));
    }
}
