//! `GET /.well-known/jwks.json`: the public keys that verify this service's access JWTs.
//!
//! A JSON Web Key Set (RFC 7517 §5) with every key of the key directory that is `next`,
//! `active` or `retired`, public halves only, each with `kid`, `alg` and `use: sig`. A verifier
//! that fetches it can check our tokens without holding anything that signs them. The `next` key
//! is published before it signs, so a verifier that caches the set (`Cache-Control: public,
//! max-age=300`) already knows it when a rotation starts using it.
//!
//! The body is built when the directory is loaded, in the state file's order, and the `ETag` is a
//! hash of it: every instance reading the same directory answers the same bytes and the same
//! `ETag`, and `If-None-Match` with it answers `304`. With `--jwt-alg HS256` the set is empty
//! (`{"keys":[]}`, never `404`): an HMAC secret is never published.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

/// Where the route reads the current set from: a closure over the JWT backend, handed in at
/// start-up, so this module knows no backend type.
pub struct Jwks(Box<dyn Fn() -> (String, String) + Send + Sync>);

impl Jwks {
    /// A source answering `(body, etag)` on each call.
    pub fn new(current: impl Fn() -> (String, String) + Send + Sync + 'static) -> Self {
        Self(Box::new(current))
    }
}

/// How long a client or cache may keep the set (seconds).
const MAX_AGE: u32 = 300;

/// `GET /.well-known/jwks.json`.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    summary = "The JWT verification keys (JWKS)",
    description = "RFC 7517: the public keys (`next`, `active`, `retired`) that verify this \
                   service's EdDSA or ES256 access tokens, each with `kid`, `alg` and `use: sig`; \
                   `{\"keys\":[]}` with HS256. `Cache-Control: public, max-age=300` and an `ETag` \
                   (`If-None-Match` answers 304).",
    responses(
        (status = 200, description = "The key set", content_type = "application/json"),
        (status = 304, description = "The set has not changed (`If-None-Match`)")
    )
)]
pub async fn jwks(source: web::Data<Jwks>, req: HttpRequest) -> HttpResponse {
    let (body, etag) = (source.0)();
    let cache_control = format!("public, max-age={MAX_AGE}");
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response.insert_header((header::CACHE_CONTROL, cache_control));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.insert_header((header::ETAG, value));
    }
    if matches {
        return response.finish();
    }
    response.content_type("application/json").body(body)
}
