//! How a credential travels between client and server: the part of authentication that *is* HTTP.
//!
//! The backends never see a request. They get the credential as a string, found here:
//! - **cookie** (the session backend): `Cookie: sid=<id>`. The browser sends it by itself, which is
//!   convenient and is also why cookie auth needs CSRF care (`SameSite=Lax` is our first line).
//! - **bearer** (the redis and jwt backends): `Authorization: Bearer <token>`, the scheme matched
//!   case-insensitively (RFC 7235 §2.1), or `Authorization: JWT <token>`, which Django REST
//!   framework clients send. JavaScript has to attach it, so a cross-site request carries nothing.
//! - **query string**, `?token=<token>`, only when `--allow-query-token` is on. Off by default: a URL
//!   is written to access logs and proxy logs, sent onward in the `Referer` header, and kept in
//!   browser history and bookmarks, so a token in it leaks to everyone who sees any of those.
//!
//! These run on every authenticated request, so they borrow from the request and never allocate.

use actix_web::HttpRequest;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use authlab_core::AuthError;

use crate::error::Challenge;

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "sid";

/// Where a backend's credential is read from and how it is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A `sid` cookie, `HttpOnly; SameSite=Lax; Path=/`, plus `Secure` when `secure` is set.
    Cookie {
        /// Add the `Secure` attribute (send only over HTTPS). Turn on behind TLS.
        secure: bool,
        /// The cookie's `Max-Age`: the session's absolute lifetime. (The idle timeout is enforced
        /// by the server; a cookie that expired on idle time could not slide with use.)
        max_age: std::time::Duration,
    },
    /// An `Authorization` header (`Bearer` or `JWT`), and the query string if explicitly allowed.
    Bearer {
        /// Also accept `?token=`. Unsafe: see the module docs.
        allow_query: bool,
    },
}

impl Transport {
    /// The challenge a 401 from this transport carries.
    pub fn challenge(self) -> Challenge {
        match self {
            Self::Cookie { .. } => Challenge::None,
            Self::Bearer { .. } => Challenge::Bearer,
        }
    }

    /// Finds the credential in a request, or says why there is none.
    pub fn credential(self, req: &HttpRequest) -> Result<&str, AuthError> {
        match self {
            Self::Cookie { .. } => cookie_value(req, SESSION_COOKIE).ok_or(AuthError::Missing),
            Self::Bearer { allow_query } => match req.headers().get(header::AUTHORIZATION) {
                Some(value) => {
                    let value = value.to_str().map_err(|_| AuthError::Invalid)?;
                    authorization_token(value)
                }
                None if allow_query => query_token(req.query_string()).ok_or(AuthError::Missing),
                None => Err(AuthError::Missing),
            },
        }
    }

    /// The cookie that hands a new session id to the browser.
    pub fn session_cookie(self, id: &str) -> Cookie<'static> {
        let (secure, max_age) = match self {
            Self::Cookie { secure, max_age } => (secure, max_age),
            Self::Bearer { .. } => (true, std::time::Duration::ZERO),
        };
        let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        Cookie::build(SESSION_COOKIE, id.to_owned())
            // HttpOnly: page scripts (and so XSS) cannot read the id.
            .http_only(true)
            // Lax: not sent on cross-site POSTs, the first defence against CSRF.
            .same_site(SameSite::Lax)
            .path("/")
            .secure(secure)
            .max_age(CookieDuration::seconds(seconds))
            .finish()
    }

    /// The cookie that tells the browser to forget the session id.
    pub fn expired_session_cookie(self) -> Cookie<'static> {
        let mut cookie = self.session_cookie("");
        cookie.make_removal();
        cookie
    }
}

/// Reads `Authorization: <scheme> <token>` for the schemes we accept.
fn authorization_token(value: &str) -> Result<&str, AuthError> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("jwt")) {
        // Basic, Digest, ...: not a credential this API understands, so none was presented.
        return Err(AuthError::Missing);
    }
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(AuthError::Invalid);
    }
    Ok(token)
}

/// Finds `name` among the request's cookies without parsing (and allocating) all of them.
fn cookie_value<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"'))
        })
}

/// Finds `token=` in a query string. Tokens are URL-safe, so there is nothing to percent-decode.
fn query_token(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn bearer(allow_query: bool) -> Transport {
        Transport::Bearer { allow_query }
    }

    #[test]
    fn authorization_schemes_are_case_insensitive_and_include_jwt() {
        for header in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "JWT abc",
            "jwt  abc ",
        ] {
            assert_eq!(authorization_token(header).ok(), Some("abc"), "{header}");
        }
        assert!(matches!(
            authorization_token("Basic dXNlcjpwYXNz"),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            authorization_token("Bearer"),
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            authorization_token("Bearer a b"),
            Err(AuthError::Invalid)
        ));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let req = TestRequest::default()
            .insert_header((header::COOKIE, "theme=dark; sid=abc; other=1"))
            .to_http_request();
        let cookie = Transport::Cookie {
            secure: false,
            max_age: std::time::Duration::from_secs(60),
        };
        assert_eq!(cookie.credential(&req).ok(), Some("abc"));
        let none = TestRequest::default()
            .insert_header((header::COOKIE, "sidx=abc"))
            .to_http_request();
        assert!(matches!(cookie.credential(&none), Err(AuthError::Missing)));
    }

    #[test]
    fn the_query_token_is_read_only_when_allowed() {
        let req = TestRequest::with_uri("/redis/me?x=1&token=abc").to_http_request();
        assert_eq!(bearer(true).credential(&req).ok(), Some("abc"));
        assert!(matches!(
            bearer(false).credential(&req),
            Err(AuthError::Missing)
        ));
    }

    #[test]
    fn the_session_cookie_has_the_safe_attributes() {
        let cookie = Transport::Cookie {
            secure: true,
            max_age: std::time::Duration::from_secs(60),
        }
        .session_cookie("abc")
        .to_string();
        for part in [
            "sid=abc",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Secure",
            "Max-Age=60",
        ] {
            assert!(cookie.contains(part), "{cookie} lacks {part}");
        }
        let insecure = Transport::Cookie {
            secure: false,
            max_age: std::time::Duration::from_secs(60),
        }
        .session_cookie("abc")
        .to_string();
        assert!(!insecure.contains("Secure"), "{insecure}");
    }
}
