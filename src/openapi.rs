//! The OpenAPI 3.1 description of the API (`GET /openapi.json`) and Swagger UI (`GET /docs/`),
//! bundled into the binary: nothing is fetched from a network.
//!
//! # Where each part comes from
//! - **Operations**: each handler carries its own `#[utoipa::path]` (summary, body, answers) next
//!   to its code, with its path *within* its scope (`/login`, not `/redis/login`).
//! - **Schemas**: derived (`ToSchema`) on the very types the handlers read and write, so a field
//!   added to a body is in the document.
//! - **Error codes**: [`ErrorCode`], the one table `ApiError` maps onto; each handler names the
//!   codes it answers ([`crate::error`]'s `refusals!`), and `common_refusals` adds what the
//!   router and the middleware answer on every route.
//! - **Paths**: the routes the app really mounted ([`MountedRoute`], recorded by the router),
//!   handed to [`ApiDocument`] by `startup`. Each mounted route gets its handler's operation,
//!   placed at its full path; a route whose handler has no operation is left out, and
//!   `tests/api/openapi.rs` fails.
//!
//! The same handlers serve every backend's scope; what differs is the scope's name, which prefixes
//! the `operationId` (`session_login`, `redis_login`, ...) and is the tag, and how its credential
//! travels (`for_transport`).

use std::sync::{Arc, OnceLock};

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{OpenApi, Paths, Ref, RefOr};
use utoipa::{OpenApi as _, ToSchema};

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::routes::auth::{BearerLogin, CookieLogin};
use crate::routes::mount::MountedRoute;
use crate::routes::{auth, demo, health, jwks, lifecycle, oauth};
use crate::transport::Transport;

/// The Content-Security-Policy of the Swagger UI pages. The bundled UI loads its scripts and
/// styles from files (no inline `<script>`), but React sets `style` attributes, so inline styles
/// are allowed; its icons are `data:` images. It talks to this server only (`/openapi.json` and
/// the "Try it out" calls), and the validator badge, which would call validator.swagger.io, is
/// turned off.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Every handler's own operation, keyed by its path within its scope, and the schemas the
/// error answers name (the ones the operations name are gathered from them).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        auth::register,
        auth::login,
        auth::me,
        auth::logout,
        auth::refresh,
        lifecycle::change_password,
        lifecycle::logout_all,
        lifecycle::list,
        lifecycle::revoke_one,
        lifecycle::renew_session_id,
        oauth::revoke,
        oauth::introspect,
        health::hello,
        health::healthz,
        health::readyz,
        health::livez,
        demo::page,
        demo::script,
        demo::style,
        demo::icon,
        openapi_json,
        docs_redirect,
        docs,
        crate::metrics::scrape,
        jwks::jwks,
    ),
    components(schemas(ErrorBody, ErrorCode, CookieLogin))
)]
struct Handlers;

/// The security scheme of a bearer credential; the handlers that take their backend's credential
/// name it, and [`for_transport`] turns it into [`COOKIE`] in a cookie scope.
const BEARER: &str = "bearer";
/// The security scheme of the session cookie.
const COOKIE: &str = "cookie";

/// The tag of the routes outside the backends' scopes.
const SERVICE_TAG: &str = "service";

/// What every route can answer whatever its handler does: the router's 405, a failure nobody
/// expected; a body the extractor refuses; the CSRF defence's refusal of an unsafe request.
fn common_refusals(route: &MountedRoute, operation: &Operation) -> Vec<ErrorCode> {
    let mut codes = Vec::new();
    if operation.request_body.is_some() {
        codes.extend([ErrorCode::PayloadTooLarge, ErrorCode::UnsupportedMediaType]);
    }
    codes.extend([ErrorCode::MethodNotAllowed, ErrorCode::InternalError]);
    if route.method != "GET" {
        codes.push(ErrorCode::CsrfRejected);
    }
    codes
}

/// A handler's operation made for a backend whose credential travels by `transport`. The
/// handlers are the same; only a cookie scope differs from what they declare: its credential is
/// the `sid` cookie, not a bearer token, and a login answers with [`CookieLogin`], not
/// [`BearerLogin`].
fn for_transport(mut operation: Operation, transport: Transport) -> Operation {
    let Transport::Cookie { .. } = transport else {
        return operation;
    };
    let bearer = SecurityRequirement::new(BEARER, Vec::<String>::new());
    for requirement in operation.security.iter_mut().flatten() {
        if *requirement == bearer {
            *requirement = SecurityRequirement::new(COOKIE, Vec::<String>::new());
        }
    }
    let bearer_login = Ref::from_schema_name(BearerLogin::name()).ref_location;
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        for content in response.content.values_mut() {
            if let RefOr::T(content) = content
                && let Some(RefOr::Ref(schema)) = &mut content.schema
                && schema.ref_location == bearer_login
            {
                *schema = Ref::from_schema_name(CookieLogin::name());
            }
        }
    }
    operation
}

/// The operation `item` has for `method`, and that method as utoipa names it.
fn operation_for(item: &PathItem, method: &str) -> Option<(HttpMethod, Operation)> {
    let (method, operation) = match method {
        "GET" => (HttpMethod::Get, &item.get),
        "POST" => (HttpMethod::Post, &item.post),
        "PUT" => (HttpMethod::Put, &item.put),
        "DELETE" => (HttpMethod::Delete, &item.delete),
        "PATCH" => (HttpMethod::Patch, &item.patch),
        _ => return None,
    };
    Some((method, operation.clone()?))
}

/// The whole document for `routes`, and the routes whose handler has no operation.
pub fn document(routes: &[MountedRoute]) -> (OpenApi, Vec<MountedRoute>) {
    let mut api = Handlers::openapi();
    let handlers = std::mem::replace(&mut api.paths, Paths::new());
    let mut undescribed = Vec::new();
    for route in routes {
        let scope = route.backend.map(|backend| backend.kind.name());
        let within = match scope {
            Some(name) => route
                .path
                .strip_prefix('/')
                .and_then(|path| path.strip_prefix(name))
                .unwrap_or(&route.path),
            None => &route.path,
        };
        let Some((method, mut operation)) = handlers
            .paths
            .get(within)
            .and_then(|item| operation_for(item, route.method))
        else {
            undescribed.push(route.clone());
            continue;
        };
        let refusals = common_refusals(route, &operation);
        ErrorCode::add_responses(&refusals, &mut operation.responses.responses);
        operation.tags = Some(vec![scope.unwrap_or(SERVICE_TAG).to_owned()]);
        if let Some(backend) = route.backend {
            operation.operation_id = operation
                .operation_id
                .map(|id| format!("{}_{id}", backend.kind.name()));
            operation = for_transport(operation, backend.transport);
        }
        api.paths
            .add_path_operation(&route.path, vec![method], operation);
    }
    api.info = utoipa::openapi::InfoBuilder::new()
        .title("authlab")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(introduction()))
        .build();
    if let Some(components) = api.components.as_mut() {
        components.add_security_scheme(
            COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "sid",
                "The session backend's cookie (HttpOnly, SameSite=Lax), set by /session/login; \
                 named `__Host-sid` with `--cookie-secure`.",
            ))),
        );
        components.add_security_scheme(
            "introspection",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The introspection client secret (`--introspection-secret-file`), as \
                         `Authorization: Bearer <secret>`: only resource servers introspect.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <token>` (or `JWT <token>`): a redis access \
                         token (a UUID) or a JWT, from /redis/login or /jwt/login.",
                    ))
                    .build(),
            ),
        );
    }
    api.tags =
        Some(vec![
        TagBuilder::new()
            .name(SERVICE_TAG)
            .description(Some("Users, health, this document and metrics."))
            .build(),
        TagBuilder::new()
            .name("session")
            .description(Some(
                "Server-side sessions: the `sid` cookie names an entry in this process's memory. \
                 This scope has no `/session/refresh`, `/session/revoke` or \
                 `/session/introspect`: a session has no refresh token (those paths answer \
                 `404 not_found`); `/session/rotate` renews the id instead.",
            ))
            .build(),
        TagBuilder::new()
            .name("redis")
            .description(Some("Opaque bearer tokens kept in Redis, with refresh tokens."))
            .build(),
        TagBuilder::new()
            .name("jwt")
            .description(Some(
                "Signed JWTs (HS256), with a Redis denylist for logout (`--jwt-denylist`) and \
                 refresh tokens.",
            ))
            .build(),
    ]);
    (api, undescribed)
}

/// The document's introduction: the error shape and every code with its status.
fn introduction() -> String {
    let codes: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|code| format!("`{}` {}", code.as_str(), code.status().as_u16()))
        .collect();
    format!(
        "One login / who-am-I / logout API over three authentication backends: `/session` \
         (cookie), `/redis` (opaque bearer token), `/jwt` (signed bearer token). The session \
         scope has no refresh, revoke or introspect routes.\n\n\
         Every error is `{{\"error\": \"<code>\", \"message\": \"<text>\"}}` with \
         `Cache-Control: no-store`; the code is stable, the message is for people. The codes: \
         {}.",
        codes.join(", ")
    )
}

/// The document of the routes an app mounted, built as JSON at its first request (the router
/// records the routes as the first worker mounts them).
pub struct ApiDocument {
    routes: fn() -> &'static [MountedRoute],
    json: OnceLock<Bytes>,
}

impl ApiDocument {
    /// The document of what `routes` lists once the app is mounted.
    pub fn new(routes: fn() -> &'static [MountedRoute]) -> Self {
        Self {
            routes,
            json: OnceLock::new(),
        }
    }

    /// The document as JSON, ended by a newline (empty if it did not serialize).
    fn json(&self) -> Bytes {
        self.json
            .get_or_init(|| {
            let (api, undescribed) = document((self.routes)());
            for route in &undescribed {
                tracing::warn!(method = route.method, path = %route.path, "a mounted route has no OpenAPI description");
            }
            match serde_json::to_vec(&api) {
                Ok(mut json) => {
                    json.push(b'\n');
                    json.into()
                }
                Err(err) => {
                    tracing::error!(error = %err, "the OpenAPI document did not serialize");
                    Bytes::new()
                }
            }
        })
            .clone()
    }
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    summary = "This document",
    description = "OpenAPI 3.1, built from the routes the server mounts.",
    responses((status = 200, description = "The OpenAPI document"))
)]
pub async fn openapi_json(document: web::Data<ApiDocument>) -> Result<HttpResponse, ApiError> {
    let json = document.json();
    if json.is_empty() {
        return Err(ApiError::Internal(
            "the OpenAPI document did not serialize".into(),
        ));
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(json))
}

/// `GET /docs`: the UI's page is `/docs/` (its files are addressed relative to it).
#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "docs_redirect",
    summary = "Swagger UI (redirect)",
    description = "Redirects to `/docs/`.",
    responses((status = 308, description = "Go to `/docs/`"))
)]
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// The Swagger UI configuration: this server's document, no validator badge (it would call
/// validator.swagger.io).
fn swagger_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Arc::new(
                utoipa_swagger_ui::Config::from("/openapi.json")
                    .validator_url("none")
                    .try_it_out_enabled(true),
            )
        })
        .clone()
}

crate::error::refusals!(
    /// What `/docs/{file}` answers for a file the UI does not have.
    DocsRefusals: NotFound
);

/// `GET /docs/{file}`: a file of the bundled Swagger UI, with its own CSP.
#[utoipa::path(
    get,
    path = "/docs/{file}",
    operation_id = "docs",
    summary = "Swagger UI",
    description = "The bundled Swagger UI (`/docs/` is its page; its scripts and styles are files \
                   beside it), served with its own Content-Security-Policy.",
    params(("file" = String, Path, description = "a file of the UI; empty for its page")),
    responses((status = 200, description = "A file of the UI"), DocsRefusals)
)]
pub async fn docs(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let file = match utoipa_swagger_ui::serve(file.as_str(), swagger_config()) {
        Ok(Some(file)) => file,
        Ok(None) => return Err(ApiError::NotFound),
        Err(err) => return Err(ApiError::Internal(err.to_string().into())),
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type(file.content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, DOCS_CSP))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if file.gzpipped {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    Ok(response.body(file.bytes.into_owned()))
}
