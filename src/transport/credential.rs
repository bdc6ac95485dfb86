//! The credential in the bytes of a request: the parsing half of [`super`], with no HTTP
//! framework in it.
//!
//! Every function here takes header values as bytes and the query string as text, exactly as
//! they arrived, and returns a slice of them: no allocation, no request type. [`super::Transport`]
//! hands them the parts of an actix request; the fuzz target `credential_transport` (in `fuzz/`)
//! compiles this very file on its own and drives it with arbitrary bytes, against a plain
//! `to_str`/`trim`/`split` reading of the same rules. So this file imports nothing but
//! `authlab_core`.

use authlab_core::AuthError;

/// The credential of a bearer transport, from every `Authorization` header value of the request
/// and, when `--allow-query-token` is on, its query string (`None` when it is off: the query is
/// then not read at all). One credential per request: two headers, or a header and a query
/// token, are [`AuthError::Ambiguous`].
pub fn bearer_credential<'a>(
    mut authorization: impl Iterator<Item = &'a [u8]>,
    query: Option<&'a str>,
) -> Result<&'a str, AuthError> {
    let query = match query {
        Some(query) => query_token(query)?,
        None => None,
    };
    match (authorization.next(), authorization.next(), query) {
        (Some(_), Some(_), _) | (Some(_), None, Some(_)) => Err(AuthError::Ambiguous),
        (Some(value), None, None) => authorization_token(value),
        (None, _, query) => query.ok_or(AuthError::Missing),
    }
}

/// The value of the cookie `name`, across every `Cookie` header value: exactly one, or
/// [`AuthError::Ambiguous`] (two, in one header or two), or [`AuthError::Missing`].
pub fn cookie_credential<'a>(
    cookie_headers: impl Iterator<Item = &'a [u8]>,
    name: &'a str,
) -> Result<&'a str, AuthError> {
    let mut found = cookie_values(cookie_headers, name);
    match (found.next(), found.next()) {
        (Some(value), None) => Ok(value),
        (Some(_), Some(_)) => Err(AuthError::Ambiguous),
        (None, _) => Err(AuthError::Missing),
    }
}

/// Reads `Authorization: <scheme> <token>` for the schemes we accept.
///
/// A header of anything but visible ASCII, space and tab is refused as invalid (what
/// `HeaderValue::to_str` refuses), whatever its scheme. The header is some 300 bytes on every
/// JWT request, so it is checked in one branch-free pass over its bytes and then searched with
/// `memchr`-style scans, instead of `to_str`, `trim` and `contains` each walking it byte by byte.
pub fn authorization_token(value: &[u8]) -> Result<&str, AuthError> {
    // `fold`, not `all`: no early exit, so the compiler can check 16 or 32 bytes at a time.
    let visible = value.iter().fold(true, |ok, &b| {
        ok & (matches!(b, 0x20..=0x7e) | (b == b'\t'))
    });
    if !visible {
        return Err(AuthError::Invalid);
    }
    let value = value.trim_ascii();
    let (scheme, token) = match value.iter().position(|&b| b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &[][..]),
    };
    if !(scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"jwt")) {
        // Basic, Digest, ...: not a credential this API understands, so none was presented.
        return Err(AuthError::Missing);
    }
    let token = token.trim_ascii();
    // A token has no whitespace inside (RFC 6750's `b64token`): `Bearer a b` and `Bearer a<TAB>b`
    // are malformed, not a token with a blank in it. (The fuzz target found the tab let through.)
    if token.is_empty() || token.iter().any(|&b| b == b' ' || b == b'\t') {
        return Err(AuthError::Invalid);
    }
    // Only visible ASCII and tabs remain: always UTF-8.
    std::str::from_utf8(token).map_err(|_| AuthError::Invalid)
}

/// A header value as text if it is visible ASCII and tabs only (what `HeaderValue::to_str`
/// accepts); `None` otherwise.
fn header_text(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| matches!(b, 0x20..=0x7e) || b == b'\t')
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Every value of the cookie `name`, across all `Cookie` header values, without parsing (and
/// allocating) the others. A header value that is not visible ASCII is skipped whole.
pub fn cookie_values<'a>(
    cookie_headers: impl Iterator<Item = &'a [u8]>,
    name: &'a str,
) -> impl Iterator<Item = &'a str> {
    cookie_headers
        .filter_map(header_text)
        .flat_map(|line| line.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"'))
        })
}

/// Finds `token=` in a query string. Tokens are URL-safe, so there is nothing to percent-decode.
/// A second `token=` (even an empty one) is [`AuthError::Ambiguous`]; an empty one alone is none.
pub fn query_token(query: &str) -> Result<Option<&str>, AuthError> {
    let mut tokens = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("token="));
    match (tokens.next(), tokens.next()) {
        (Some(_), Some(_)) => Err(AuthError::Ambiguous),
        (token, _) => Ok(token.filter(|token| !token.is_empty())),
    }
}
