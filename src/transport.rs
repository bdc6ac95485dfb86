//! How a credential travels between client and server: the part of authentication that *is* HTTP.
//!
//! The backends never see a request. They get the credential as a string, found here:
//! - **cookie** (the session backend): `Cookie: sid=<id>`, or `Cookie: __Host-sid=<id>` with
//!   `--cookie-secure` (the `__Host-` prefix makes the browser refuse the cookie unless it is
//!   `Secure`, `Path=/` and has no `Domain`, so a sibling subdomain cannot plant one). The browser
//!   sends it by itself, which is convenient and is also why cookie auth needs CSRF care
//!   (`SameSite=Lax`, then [`crate::middleware::csrf`]).
//! - **bearer** (the redis and jwt backends): `Authorization: Bearer <token>`, the scheme matched
//!   case-insensitively (RFC 7235 §2.1), or `Authorization: JWT <token>`, which Django REST
//!   framework clients send. JavaScript has to attach it, so a cross-site request carries nothing.
//! - **query string**, `?token=<token>`, only when `--allow-query-token` is on. Off by default: a URL
//!   is written to access logs and proxy logs, sent onward in the `Referer` header, and kept in
//!   browser history and bookmarks, so a token in it leaks to everyone who sees any of those.
//!
//! **One credential per request.** Two `Authorization` headers, an `Authorization` header and a
//! `?token=` (when the query is read at all), two `token=` parameters in the query, or two
//! session cookies are refused as
//! [`AuthError::Ambiguous`] (`400 invalid_request`) rather than one of them being picked: a
//! second cookie is what cookie tossing from a sibling subdomain produces, and "the first one
//! wins" in one component and "the last one wins" in another is how a proxy and a server come to
//! disagree about who the caller is. Without `--allow-query-token` the query string is not a
//! place credentials are read from at all, so a `?token=` beside a header is ignored, as it is
//! on its own.
//!
//! These run on every authenticated request, so they borrow from the request and never allocate.

use actix_web::HttpRequest;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use authlab_core::AuthError;

use crate::error::Challenge;

pub mod credential;

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "sid";

/// The name of the session cookie with `--cookie-secure`: the `__Host-` prefix binds it to this
/// host, over HTTPS, for the whole path (browsers refuse it otherwise).
pub const SECURE_SESSION_COOKIE: &str = "__Host-sid";

/// Where a backend's credential is read from and how it is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A `sid` cookie, `HttpOnly; SameSite=Lax; Path=/`; with `secure`, `__Host-sid` and `Secure`.
    Cookie {
        /// Add the `Secure` attribute (send only over HTTPS) and name the cookie `__Host-sid`.
        /// Turn on behind TLS.
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

    /// The name of the session cookie (`sid`, or `__Host-sid` when `Secure`); `None` for bearer.
    pub fn cookie_name(self) -> Option<&'static str> {
        match self {
            Self::Cookie { secure: false, .. } => Some(SESSION_COOKIE),
            Self::Cookie { secure: true, .. } => Some(SECURE_SESSION_COOKIE),
            Self::Bearer { .. } => None,
        }
    }

    /// Finds the credential in a request, or says why there is none. More than one is
    /// [`AuthError::Ambiguous`] (see the module docs). The parsing is in [`credential`].
    pub fn credential(self, req: &HttpRequest) -> Result<&str, AuthError> {
        match self {
            Self::Cookie { .. } => credential::cookie_credential(
                header_values(req, header::COOKIE),
                self.cookie_name().unwrap_or(SESSION_COOKIE),
            ),
            Self::Bearer { allow_query } => credential::bearer_credential(
                header_values(req, header::AUTHORIZATION),
                allow_query.then(|| req.query_string()),
            ),
        }
    }

    /// Every value of this transport's session cookie in the request (none for bearer).
    pub fn session_cookies(self, req: &HttpRequest) -> impl Iterator<Item = &str> {
        self.cookie_name()
            .into_iter()
            .flat_map(move |name| cookie_values(req, name))
    }

    /// Whether the request carries this transport's session cookie at all (valid or not, once or
    /// more): what makes a request subject to the CSRF check. Always false for bearer.
    pub fn carries_cookie(self, req: &HttpRequest) -> bool {
        self.cookie_name()
            .is_some_and(|name| cookie_values(req, name).next().is_some())
    }

    /// The cookie that hands a new session id to the browser.
    pub fn session_cookie(self, id: &str) -> Cookie<'static> {
        let (secure, max_age) = match self {
            Self::Cookie { secure, max_age } => (secure, max_age),
            Self::Bearer { .. } => (true, std::time::Duration::ZERO),
        };
        let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        // `__Host-` requires Secure, Path=/ and no Domain: set exactly those (never a Domain).
        Cookie::build(
            self.cookie_name().unwrap_or(SECURE_SESSION_COOKIE),
            id.to_owned(),
        )
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

/// Every value of the header `name` in the request, as bytes.
fn header_values(req: &HttpRequest, name: header::HeaderName) -> impl Iterator<Item = &[u8]> {
    req.headers().get_all(name).map(|value| value.as_bytes())
}

/// Every value of the cookie `name` in the request.
fn cookie_values<'a>(req: &'a HttpRequest, name: &'a str) -> impl Iterator<Item = &'a str> {
    credential::cookie_values(header_values(req, header::COOKIE), name)
}

#[cfg(test)]
mod tests {
    use super::credential::authorization_token;
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
            assert_eq!(
                authorization_token(header.as_bytes()).ok(),
                Some("abc"),
                "{header}"
            );
        }
        assert!(matches!(
            authorization_token(b"Basic dXNlcjpwYXNz"),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            authorization_token(b"Bearer"),
            Err(AuthError::Invalid)
        ));
        for inside in [&b"Bearer a b"[..], b"Bearer a\tb", b"JWT  a\t\tb "] {
            assert!(
                matches!(authorization_token(inside), Err(AuthError::Invalid)),
                "{inside:?}"
            );
        }
        // Bytes `HeaderValue::to_str` refuses make the header invalid, whatever the scheme.
        for bad in [
            &b"Bearer ab\x80c"[..],
            b"Basic \xff",
            b"Bearer a\x7fb",
            b"Bearer a\x01",
        ] {
            assert!(
                matches!(authorization_token(bad), Err(AuthError::Invalid)),
                "{bad:?}"
            );
        }
        assert_eq!(authorization_token(b"Bearer\tabc").ok(), None);
        assert_eq!(authorization_token(b" Bearer  abc\t").ok(), Some("abc"));
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
    fn two_session_cookies_are_ambiguous_in_one_header_or_two() {
        let cookie = Transport::Cookie {
            secure: false,
            max_age: std::time::Duration::from_secs(60),
        };
        let one_line = TestRequest::default()
            .insert_header((header::COOKIE, "sid=a; theme=dark; sid=b"))
            .to_http_request();
        assert!(matches!(
            cookie.credential(&one_line),
            Err(AuthError::Ambiguous)
        ));
        let two_lines = TestRequest::default()
            .append_header((header::COOKIE, "sid=a"))
            .append_header((header::COOKIE, "sid=a"))
            .to_http_request();
        assert!(matches!(
            cookie.credential(&two_lines),
            Err(AuthError::Ambiguous)
        ));
        assert!(cookie.carries_cookie(&two_lines));
    }

    #[test]
    fn the_secure_cookie_is_host_prefixed_and_the_plain_name_is_then_ignored() {
        let secure = Transport::Cookie {
            secure: true,
            max_age: std::time::Duration::from_secs(60),
        };
        let req = TestRequest::default()
            .insert_header((header::COOKIE, "sid=planted; __Host-sid=abc"))
            .to_http_request();
        assert_eq!(secure.credential(&req).ok(), Some("abc"));
        let plain = TestRequest::default()
            .insert_header((header::COOKIE, "sid=abc"))
            .to_http_request();
        assert!(matches!(secure.credential(&plain), Err(AuthError::Missing)));
        assert!(!secure.carries_cookie(&plain));
    }

    #[test]
    fn two_authorization_headers_or_a_header_and_an_allowed_query_token_are_ambiguous() {
        let two = TestRequest::default()
            .append_header((header::AUTHORIZATION, "Bearer abc"))
            .append_header((header::AUTHORIZATION, "Bearer abc"))
            .to_http_request();
        assert!(matches!(
            bearer(false).credential(&two),
            Err(AuthError::Ambiguous)
        ));
        let both = TestRequest::with_uri("/redis/me?token=xyz")
            .insert_header((header::AUTHORIZATION, "Bearer abc"))
            .to_http_request();
        assert!(matches!(
            bearer(true).credential(&both),
            Err(AuthError::Ambiguous)
        ));
        // Without the flag the query string is not read at all: the header alone counts.
        assert_eq!(bearer(false).credential(&both).ok(), Some("abc"));
    }

    #[test]
    fn two_query_tokens_are_ambiguous_and_never_read_without_the_flag() {
        for uri in [
            "/redis/me?token=abc&token=abc",
            "/redis/me?token=abc&x=1&token=xyz",
            "/redis/me?token=&token=abc",
        ] {
            let req = TestRequest::with_uri(uri).to_http_request();
            assert!(
                matches!(bearer(true).credential(&req), Err(AuthError::Ambiguous)),
                "{uri}"
            );
            assert!(
                matches!(bearer(false).credential(&req), Err(AuthError::Missing)),
                "{uri}"
            );
        }
        // Other parameters whose names merely end in `token` are not a second one.
        let req =
            TestRequest::with_uri("/redis/me?token=abc&csrftoken=x&xtoken=y").to_http_request();
        assert_eq!(bearer(true).credential(&req).ok(), Some("abc"));
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
            "__Host-sid=abc",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Secure",
            "Max-Age=60",
        ] {
            assert!(cookie.contains(part), "{cookie} lacks {part}");
        }
        assert!(!cookie.contains("Domain"), "{cookie}");
        let insecure = Transport::Cookie {
            secure: false,
            max_age: std::time::Duration::from_secs(60),
        }
        .session_cookie("abc")
        .to_string();
        assert!(insecure.starts_with("sid=abc;"), "{insecure}");
        assert!(!insecure.contains("Secure"), "{insecure}");
    }
}
