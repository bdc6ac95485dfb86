//! The credential transport parser (`src/transport/credential.rs`, compiled here as it is): the
//! `Authorization` header, the session cookie and, under `--allow-query-token`, `token=` in the
//! query string.
//!
//! Checked on every input: nothing panics; the answer is the one a plain reading of the rules
//! gives (`to_str`, `trim`, `split_once`, counting every place a credential can be: the
//! reference below, written for clarity, not speed), so the byte-scanning fast path cannot drift
//! from them; and a credential handed out is a non-empty slice of what the client sent: one
//! query parameter's value, or a header's token with no whitespace inside.
//!
//! Input: the first byte's lowest bit turns `--allow-query-token` on; the rest is lines split at
//! `\n` (a header value cannot hold one), each starting with `A` (an `Authorization` value), `C`
//! (a `Cookie` value) or `Q` (the query string; the last one counts); other lines are ignored.

#![no_main]

use authlab_core::AuthError;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/transport/credential.rs"]
mod credential;

/// An answer, comparable.
#[derive(Debug, PartialEq, Eq)]
enum Answer<'a> {
    Found(&'a str),
    Missing,
    Invalid,
    Ambiguous,
}

fn answer(result: Result<&str, AuthError>) -> Answer<'_> {
    match result {
        Ok(credential) => Answer::Found(credential),
        Err(AuthError::Missing) => Answer::Missing,
        Err(AuthError::Invalid) => Answer::Invalid,
        Err(AuthError::Ambiguous) => Answer::Ambiguous,
        Err(other) => panic!("the transport answered {other:?}"),
    }
}

/// `HeaderValue::to_str`: visible ASCII and tabs only.
fn to_str(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| (32..127).contains(&b) || b == b'\t')
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

fn reference_authorization(value: &[u8]) -> Answer<'_> {
    let Some(text) = to_str(value) else {
        return Answer::Invalid;
    };
    let text = text.trim();
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    if !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("jwt")) {
        return Answer::Missing;
    }
    let token = token.trim();
    if token.is_empty() || token.contains([' ', '\t']) {
        Answer::Invalid
    } else {
        Answer::Found(token)
    }
}

fn reference_bearer<'a>(authorization: &[&'a [u8]], query: Option<&'a str>) -> Answer<'a> {
    let mut query_token = None;
    if let Some(query) = query {
        let tokens: Vec<&str> = query
            .split('&')
            .filter_map(|pair| pair.strip_prefix("token="))
            .collect();
        if tokens.len() > 1 {
            return Answer::Ambiguous;
        }
        query_token = tokens.first().copied().filter(|t| !t.is_empty());
    }
    match (authorization, query_token) {
        ([], Some(token)) => Answer::Found(token),
        ([], None) => Answer::Missing,
        ([value], None) => reference_authorization(value),
        _ => Answer::Ambiguous,
    }
}

fn reference_cookie<'a>(cookies: &[&'a [u8]], name: &str) -> Answer<'a> {
    let mut found = Vec::new();
    for line in cookies.iter().filter_map(|value| to_str(value)) {
        for pair in line.split(';') {
            if let Some((key, value)) = pair.trim().split_once('=')
                && key == name
            {
                found.push(value.trim_matches('"'));
            }
        }
    }
    match found.as_slice() {
        [] => Answer::Missing,
        [value] => Answer::Found(value),
        _ => Answer::Ambiguous,
    }
}

/// Whether `part` lies within `whole` (a slice of it, not a copy).
fn within(part: &str, whole: &[u8]) -> bool {
    let (start, end) = (part.as_ptr() as usize, part.as_ptr() as usize + part.len());
    let (from, to) = (
        whole.as_ptr() as usize,
        whole.as_ptr() as usize + whole.len(),
    );
    from <= start && end <= to
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let allow_query = flags & 1 == 1;
    let (mut authorization, mut cookies, mut query) = (Vec::new(), Vec::new(), None);
    for line in rest.split(|&b| b == b'\n') {
        match line.split_first() {
            Some((b'A', value)) => authorization.push(value),
            Some((b'C', value)) => cookies.push(value),
            Some((b'Q', value)) => query = std::str::from_utf8(value).ok(),
            _ => {}
        }
    }
    let query = if allow_query { query } else { None };

    let bearer = answer(credential::bearer_credential(
        authorization.iter().copied(),
        query,
    ));
    assert_eq!(bearer, reference_bearer(&authorization, query), "bearer");
    if let Answer::Found(token) = bearer {
        assert!(!token.is_empty());
        if authorization.iter().any(|value| within(token, value)) {
            // RFC 6750's token68: no whitespace inside.
            assert!(
                !token.contains([' ', '\t']),
                "whitespace inside a header credential: {token:?}"
            );
        } else {
            assert!(
                query.is_some_and(|q| within(token, q.as_bytes())) && !token.contains('&'),
                "the credential is not one parameter of the request: {token:?}"
            );
        }
    }

    for name in ["sid", "__Host-sid"] {
        let cookie = answer(credential::cookie_credential(cookies.iter().copied(), name));
        assert_eq!(cookie, reference_cookie(&cookies, name), "cookie {name}");
        if let Answer::Found(value) = cookie {
            assert!(
                cookies.iter().any(|line| within(value, line)),
                "the cookie is not a slice of the request"
            );
        }
    }
});
