//! The OpenAPI 3.1 description of the API (`GET /openapi.json`) and Swagger UI (`GET /docs/`),
//! bundled into the binary: nothing is fetched from a network.
//!
//! The document is built from the routes the app actually mounted ([`routes::mounted_routes`]):
//! each one is looked up in `describe` (below), so a route added to `routes::configure` without a
//! description here is missing from the document, and `tests/api/openapi.rs` fails. The same
//! handlers serve `/session`, `/redis` and `/jwt`; each backend's operations get their own
//! `operationId` (`session_login`, `redis_login`, ...).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ContentBuilder, OpenApi, Paths, Ref, Required, ResponseBuilder, ResponsesBuilder,
};
use utoipa::{OpenApi as _, ToSchema};

use crate::error::ApiError;
use crate::routes::{self, MountedRoute};

/// The Content-Security-Policy of the Swagger UI pages. The bundled UI loads its scripts and
/// styles from files (no inline `<script>`), but React sets `style` attributes, so inline styles
/// are allowed; its icons are `data:` images. It talks to this server only (`/openapi.json` and
/// the "Try it out" calls), and the validator badge, which would call validator.swagger.io, is
/// turned off.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Every error code of the one mapping (`crate::error`), its status, and what it means. A unit
/// test checks it against `ApiError` itself.
pub const ERRORS: &[(&str, u16, &str)] = &[
    (
        "malformed_json",
        400,
        "the body is not the JSON the route takes",
    ),
    (
        "invalid_request",
        400,
        "a form body (revoke, introspect) that does not parse",
    ),
    ("missing_credentials", 401, "no credential was presented"),
    (
        "invalid_token",
        401,
        "the credential is malformed, forged or unknown",
    ),
    ("token_expired", 401, "the credential's lifetime is over"),
    ("token_revoked", 401, "the credential was revoked (logout)"),
    (
        "refresh_token_reused",
        401,
        "a spent refresh token came back: its whole login was revoked",
    ),
    (
        "invalid_credentials",
        401,
        "wrong user name or password (one answer for both)",
    ),
    (
        "invalid_client",
        401,
        "`/introspect` without the right client secret",
    ),
    (
        "csrf_rejected",
        403,
        "an unsafe request carrying the session cookie came from another site",
    ),
    (
        "cors_rejected",
        403,
        "a CORS preflight this server does not grant",
    ),
    ("session_not_found", 404, "no such session of the caller's"),
    ("not_found", 404, "no such route"),
    (
        "method_not_allowed",
        405,
        "the route exists, the method does not (see `Allow`)",
    ),
    ("username_taken", 409, "the user name is taken"),
    ("payload_too_large", 413, "the body is larger than 64 KiB"),
    (
        "unsupported_media_type",
        415,
        "the body is not of the type the route takes",
    ),
    (
        "invalid_field",
        422,
        "a field breaks a rule (name, password policy)",
    ),
    (
        "too_many_attempts",
        429,
        "login throttling: too many failures; see `Retry-After`",
    ),
    (
        "internal_error",
        500,
        "an unexpected failure; the body says nothing more",
    ),
    (
        "unsupported",
        501,
        "this backend cannot do it in its current configuration (stateless JWT refresh)",
    ),
    (
        "backend_unavailable",
        503,
        "Redis or the user store did not answer; see `Retry-After`",
    ),
    (
        "not_ready",
        503,
        "`/readyz`: a dependency is down (`checks` names it)",
    ),
];

/// `{"error", "message"}`: the body of every error.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Error {
    /// Stable, for programs: one of the codes listed in the API description.
    error: ErrorCode,
    /// For people; may change.
    message: String,
    /// `/readyz` only: each dependency, `ok` or `unavailable`.
    checks: Option<Checks>,
}

/// Every error code (see the API description for statuses).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum ErrorCode {
    MalformedJson,
    InvalidRequest,
    MissingCredentials,
    InvalidToken,
    TokenExpired,
    TokenRevoked,
    RefreshTokenReused,
    InvalidCredentials,
    InvalidClient,
    CsrfRejected,
    CorsRejected,
    SessionNotFound,
    NotFound,
    MethodNotAllowed,
    UsernameTaken,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidField,
    TooManyAttempts,
    InternalError,
    Unsupported,
    BackendUnavailable,
    NotReady,
}

/// `/readyz`: each dependency's state.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Checks {
    /// `ok` or `unavailable`.
    redis: String,
    /// `ok` or `unavailable`.
    database: String,
}

/// Body of `POST /users` and `POST /{backend}/login`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Credentials {
    /// 1-64 characters, no control characters, no leading or trailing space.
    #[schema(example = "alice")]
    username: String,
    /// At registration: `--password-min-length` (15) to 1024 characters, not easy to guess.
    #[schema(example = "correct horse battery staple")]
    password: String,
}

/// `201` of `POST /users`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct User {
    user_id: i64,
    username: String,
}

/// `200` of `POST /session/login` and `/session/rotate`: the id travels only in the `sid` cookie.
#[derive(ToSchema)]
#[allow(dead_code)]
struct CookieLogin {
    /// Always `cookie`.
    token_type: String,
    /// The idle timeout, in seconds.
    expires_in: u64,
}

/// `200` of a bearer login or refresh (RFC 6749 §5.1 names).
#[derive(ToSchema)]
#[allow(dead_code)]
struct BearerLogin {
    access_token: String,
    /// Always `Bearer`.
    token_type: String,
    /// Seconds.
    expires_in: u64,
    refresh_token: String,
    /// Seconds.
    refresh_expires_in: u64,
}

/// Body of `POST /{redis,jwt}/refresh`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct RefreshRequest {
    refresh_token: String,
}

/// `200` of `GET /{backend}/me` (and `/hello`, with user 0).
#[derive(ToSchema)]
#[allow(dead_code)]
struct Me {
    user_id: i64,
    username: String,
    /// `session`, `redis`, `jwt` (`none` on `/hello`).
    backend: String,
}

/// Body of `POST /users/me/password`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct PasswordChange {
    old_password: String,
    new_password: String,
}

/// One live session (or token family) of the caller.
#[derive(ToSchema)]
#[allow(dead_code)]
struct SessionEntry {
    id: String,
    /// Unix seconds.
    created_at: u64,
    /// Unix seconds.
    last_used_at: u64,
    /// Unix seconds.
    expires_at: u64,
    user_agent: Option<String>,
    /// Whether this is the session the request came with.
    current: bool,
}

/// `200` of `GET /{backend}/sessions`, newest first.
#[derive(ToSchema)]
#[allow(dead_code)]
struct SessionList {
    sessions: Vec<SessionEntry>,
}

/// Form body of `/revoke` (RFC 7009) and `/introspect` (RFC 7662).
#[derive(ToSchema)]
#[allow(dead_code)]
struct TokenForm {
    /// An access or refresh token.
    token: String,
    /// Accepted and not needed.
    token_type_hint: Option<String>,
}

/// `200` of `/introspect`: `{"active": false}` for anything but a live token.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Introspection {
    active: bool,
    /// `access_token` or `refresh_token`.
    token_type: Option<String>,
    /// The user id, as a string.
    sub: Option<String>,
    username: Option<String>,
    /// Unix seconds.
    exp: Option<u64>,
    /// Unix seconds, when known.
    iat: Option<u64>,
    session_id: Option<String>,
}

/// `200` of `/healthz` and `/readyz`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Health {
    /// `ok`.
    status: String,
    /// `/readyz` only.
    checks: Option<Checks>,
}

/// `200` of `/livez`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Serving {
    /// `ok`, or `degraded` when a backend is not fully `ok`.
    status: String,
    /// Each dependency, `ok` or `unavailable`.
    checks: Checks,
    /// Each backend: `ok`, `degraded` or `unavailable`.
    backends: BackendStates,
}

/// `/livez`: what each backend can do now.
#[derive(ToSchema)]
#[allow(dead_code)]
struct BackendStates {
    /// In-memory sessions: `ok`, or `degraded` while the user store is down.
    session: String,
    /// Opaque tokens: `unavailable` while Redis is down.
    redis: String,
    /// JWT: `unavailable` while Redis is down if the denylist or stored refresh tokens are on.
    jwt: String,
}

/// The schemas, gathered by utoipa.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    Error,
    ErrorCode,
    Checks,
    Credentials,
    User,
    CookieLogin,
    BearerLogin,
    RefreshRequest,
    Me,
    PasswordChange,
    SessionEntry,
    SessionList,
    TokenForm,
    Introspection,
    Health,
    Serving,
    BackendStates
)))]
struct Schemas;

/// How a route's request body looks.
#[derive(Clone, Copy)]
enum Body {
    None,
    Json(&'static str),
    Form(&'static str),
}

/// What a route needs to be described.
struct Doc {
    /// `operationId` without the backend: `login`, `sessions_list`.
    name: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: &'static str,
    body: Body,
    /// The success status, what it means and the schema of its body (none: empty).
    ok: (u16, &'static str, Option<&'static str>),
    /// The error codes this route can answer beyond the ones every route has.
    errors: &'static [&'static str],
    /// Which credential it takes: none, the backend's own, or any backend's.
    auth: Auth,
}

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    None,
    Backend,
    Any,
    /// The introspection client secret.
    Introspection,
}

/// A presented credential can be refused in these ways.
const CREDENTIAL_ERRORS: &[&str] = &[
    "invalid_request",
    "missing_credentials",
    "invalid_token",
    "token_expired",
    "token_revoked",
    "backend_unavailable",
];

/// The description of one mounted route, or `None` if nobody wrote one.
fn describe(route: &MountedRoute) -> Option<Doc> {
    let mut scope = None;
    let mut rest = route.path.clone();
    for name in ["session", "redis", "jwt"] {
        if let Some(tail) = route.path.strip_prefix(&format!("/{name}/")) {
            scope = Some(name);
            rest = format!("/{tail}");
        }
    }
    let tag = scope.unwrap_or("service");
    let json = |s| Body::Json(s);
    let doc = |name, summary, description, body, ok, errors, auth| Doc {
        name,
        tag,
        summary,
        description,
        body,
        ok,
        errors,
        auth,
    };
    Some(match (scope, route.method, rest.as_str()) {
        (None, "POST", "/users") => doc(
            "users_register",
            "Register a user",
            "Hashes the password (argon2id) and stores the user. 20 registrations per client \
             address per window.",
            json("Credentials"),
            (201, "Registered", Some("User")),
            &[
                "malformed_json",
                "invalid_field",
                "username_taken",
                "too_many_attempts",
                "backend_unavailable",
            ],
            Auth::None,
        ),
        (None, "POST", "/users/me/password") => doc(
            "users_change_password",
            "Change the caller's password",
            "Takes any backend's credential (cookie or bearer) and the old password; ends every \
             credential of the user on every backend (and clears the caller's cookie).",
            json("PasswordChange"),
            (204, "Changed; every credential of the user is dead", None),
            &[
                "missing_credentials",
                "invalid_token",
                "token_expired",
                "token_revoked",
                "malformed_json",
                "invalid_credentials",
                "invalid_field",
                "too_many_attempts",
                "backend_unavailable",
            ],
            Auth::Any,
        ),
        (None, "GET", "/hello") => doc(
            "hello",
            "Unauthenticated baseline",
            "Shaped like `/me`, for load tests.",
            Body::None,
            (200, "Always", Some("Me")),
            &[],
            Auth::None,
        ),
        (None, "GET", "/healthz") => doc(
            "healthz",
            "Liveness",
            "The process is up (no I/O).",
            Body::None,
            (200, "Alive", Some("Health")),
            &[],
            Auth::None,
        ),
        (None, "GET", "/readyz") => doc(
            "readyz",
            "Readiness",
            "Redis and the user store both answer within a second. Strict: do not balance on it \
             (a Redis outage would take every instance out at once); use `/livez`.",
            Body::None,
            (200, "Ready", Some("Health")),
            &["not_ready"],
            Auth::None,
        ),
        (None, "GET", "/livez") => doc(
            "livez",
            "The load balancer's check",
            "200 whenever this instance can serve (in-memory sessions need nothing else), with \
             each backend's state: `ok`, `degraded` (issued credentials work, logins do not: the \
             user store is down) or `unavailable` (Redis is down and the backend needs it). \
             `status` is `degraded` when any backend is not `ok`. It fails only when the \
             process does not answer.",
            Body::None,
            (200, "This instance can serve", Some("Serving")),
            &[],
            Auth::None,
        ),
        (None, "GET", "/") => doc(
            "demo",
            "The demo page",
            "The three backends side by side in a browser (HTML, compiled into the binary, with \
             its own strict Content-Security-Policy).",
            Body::None,
            (200, "The page", None),
            &[],
            Auth::None,
        ),
        (None, "GET", "/static/demo.js" | "/static/demo.css" | "/static/favicon.svg") => Doc {
            name: match rest.as_str() {
                "/static/demo.js" => "demo_script",
                "/static/demo.css" => "demo_style",
                _ => "demo_icon",
            },
            tag,
            summary: "A file of the demo page",
            description: "Compiled into the binary.",
            body: Body::None,
            ok: (200, "The file", None),
            errors: &[],
            auth: Auth::None,
        },
        (None, "GET", "/.well-known/jwks.json") => doc(
            "jwks",
            "Public keys of the access JWTs (JWKS)",
            "RFC 7517 key set: the `next`, `active` and `retired` keys of `--jwt-keys-dir`, public halves only, each with `kid`, `alg` and `use: sig`. `Cache-Control: public, max-age=300`, an `ETag` (a hash of the body, the same on every instance). Empty with `--jwt-alg HS256`.",
            Body::None,
            (200, "The key set", None),
            &[],
            Auth::None,
        ),
        (None, "GET", "/openapi.json") => doc(
            "openapi",
            "This document",
            "OpenAPI 3.1, built from the routes the server mounts.",
            Body::None,
            (200, "The OpenAPI document", None),
            &[],
            Auth::None,
        ),
        (None, "GET", "/docs") => doc(
            "docs_redirect",
            "Swagger UI (redirect)",
            "Redirects to `/docs/`.",
            Body::None,
            (308, "Go to `/docs/`", None),
            &[],
            Auth::None,
        ),
        (None, "GET", "/docs/{file}") => doc(
            "docs",
            "Swagger UI",
            "The bundled Swagger UI (`/docs/` is its page; its scripts and styles are files \
             beside it), served with its own Content-Security-Policy.",
            Body::None,
            (200, "A file of the UI", None),
            &["not_found"],
            Auth::None,
        ),
        (None, "GET", "/metrics") => doc(
            "metrics",
            "Prometheus metrics",
            "The text exposition format (see docs/observability.md). `404 not_found` with \
             `--metrics off`.",
            Body::None,
            (200, "Every series", None),
            &["not_found"],
            Auth::None,
        ),
        (Some(_), "POST", "/login") => doc(
            "login",
            "Log in",
            "Checks the name and password and issues this backend's credential (session: the \
             `sid` cookie; redis, jwt: an access token and a refresh token). Every login starts \
             a new session or token family.",
            json("Credentials"),
            (
                200,
                "Logged in",
                Some(if scope == Some("session") {
                    "CookieLogin"
                } else {
                    "BearerLogin"
                }),
            ),
            &[
                "malformed_json",
                "invalid_credentials",
                "too_many_attempts",
                "backend_unavailable",
            ],
            Auth::None,
        ),
        (Some(_), "GET", "/me") => doc(
            "me",
            "Who the credential belongs to",
            "The hot path every load test measures.",
            Body::None,
            (200, "The caller", Some("Me")),
            CREDENTIAL_ERRORS,
            Auth::Backend,
        ),
        (Some(_), "POST", "/logout") => doc(
            "logout",
            "Log out",
            "Ends the presented credential and its login (family): on redis and jwt, every \
             access token and the refresh token of that login. With `--jwt-denylist off`, a JWT \
             access token stays valid until `exp`.",
            Body::None,
            (204, "Logged out", None),
            CREDENTIAL_ERRORS,
            Auth::Backend,
        ),
        (Some(_), "POST", "/logout-all") => doc(
            "logout_all",
            "End every session of the caller on this backend",
            "Every session (or token family) of the user on this backend.",
            Body::None,
            (204, "All ended", None),
            &[
                "missing_credentials",
                "invalid_token",
                "token_expired",
                "token_revoked",
                "unsupported",
                "backend_unavailable",
            ],
            Auth::Backend,
        ),
        (Some(_), "GET", "/sessions") => doc(
            "sessions_list",
            "The caller's live sessions",
            "Sessions (session backend) or token families (redis, jwt), newest first.",
            Body::None,
            (200, "The list", Some("SessionList")),
            &[
                "missing_credentials",
                "invalid_token",
                "token_expired",
                "token_revoked",
                "unsupported",
                "backend_unavailable",
            ],
            Auth::Backend,
        ),
        (Some(_), "DELETE", "/sessions/{id}") => doc(
            "sessions_revoke",
            "End one of the caller's sessions",
            "`id` as listed by `GET /sessions`.",
            Body::None,
            (204, "Ended", None),
            &[
                "missing_credentials",
                "invalid_token",
                "token_expired",
                "token_revoked",
                "session_not_found",
                "unsupported",
                "backend_unavailable",
            ],
            Auth::Backend,
        ),
        (Some("session"), "POST", "/rotate") => doc(
            "rotate",
            "A new session id for the same session",
            "After a privilege change: the old id stops working.",
            Body::None,
            (
                200,
                "Rotated; the new id is in `Set-Cookie`",
                Some("CookieLogin"),
            ),
            CREDENTIAL_ERRORS,
            Auth::Backend,
        ),
        (Some(_), "POST", "/refresh") => doc(
            "refresh",
            "Exchange a refresh token",
            "Rotation: a new access token and a new refresh token; the old one is spent. A spent \
             one presented again revokes the whole login (`refresh_token_reused`), except within \
             `--refresh-grace`, which gives the same successor.",
            json("RefreshRequest"),
            (200, "The new pair", Some("BearerLogin")),
            &[
                "malformed_json",
                "invalid_token",
                "token_expired",
                "token_revoked",
                "refresh_token_reused",
                "backend_unavailable",
            ],
            Auth::None,
        ),
        (Some(_), "POST", "/revoke") => doc(
            "revoke",
            "RFC 7009 token revocation",
            "Always 200 once the token, if it was live, is dead (an unknown token too). A \
             refresh token revokes its family.",
            Body::Form("TokenForm"),
            (200, "Revoked (empty body)", None),
            &["invalid_request", "backend_unavailable"],
            Auth::None,
        ),
        (Some(_), "POST", "/introspect") => doc(
            "introspect",
            "RFC 7662 token introspection",
            "What a live token is, or `{\"active\": false}`.",
            Body::Form("TokenForm"),
            (200, "The answer", Some("Introspection")),
            &[
                "invalid_request",
                "missing_credentials",
                "invalid_client",
                "backend_unavailable",
            ],
            Auth::Introspection,
        ),
        _ => return None,
    })
}

/// The operation for one route.
fn operation(route: &MountedRoute, doc: &Doc, scope: Option<&str>) -> Operation {
    let operation_id = match scope {
        Some(scope) => format!("{scope}_{}", doc.name),
        None => doc.name.to_owned(),
    };
    let mut op = OperationBuilder::new()
        .operation_id(Some(operation_id))
        .tag(doc.tag)
        .summary(Some(doc.summary))
        .description(Some(doc.description));
    if route.path.contains("{id}") {
        op = op.parameter(
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("a session or family id, as listed"))
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String),
                )),
        );
    }
    if route.path.contains("{file}") {
        op = op.parameter(
            ParameterBuilder::new()
                .name("file")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("a file of the UI; empty for its page"))
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String),
                )),
        );
    }
    let mut extra_errors: Vec<&str> = doc.errors.to_vec();
    match doc.body {
        Body::None => {}
        Body::Json(schema) => {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(schema)))
                            .build(),
                    )
                    .build(),
            ));
            extra_errors.extend(["payload_too_large", "unsupported_media_type"]);
        }
        Body::Form(schema) => {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(
                        "application/x-www-form-urlencoded",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(schema)))
                            .build(),
                    )
                    .build(),
            ));
            extra_errors.extend(["payload_too_large", "unsupported_media_type"]);
        }
    }
    match (doc.auth, scope) {
        (Auth::None, _) => {}
        (Auth::Backend, Some("session")) => {
            op = op.security(SecurityRequirement::new("cookie", Vec::<String>::new()));
        }
        (Auth::Backend, _) => {
            op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        (Auth::Introspection, _) => {
            op = op.security(SecurityRequirement::new(
                "introspection",
                Vec::<String>::new(),
            ));
        }
        (Auth::Any, _) => {
            op = op
                .security(SecurityRequirement::new("cookie", Vec::<String>::new()))
                .security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
    }
    // Every route can answer these; an unsafe one also the CSRF refusal.
    extra_errors.extend(["method_not_allowed", "internal_error"]);
    if route.method != "GET" {
        extra_errors.push("csrf_rejected");
    }

    let mut responses = ResponsesBuilder::new();
    let ok = match doc.ok.2 {
        Some(schema) => ResponseBuilder::new().description(doc.ok.1).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build(),
        ),
        None => ResponseBuilder::new().description(doc.ok.1),
    };
    responses = responses.response(doc.ok.0.to_string(), ok.build());
    let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for code in extra_errors {
        if let Some((_, status, _)) = ERRORS.iter().find(|(c, _, _)| *c == code) {
            let codes = by_status.entry(*status).or_default();
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
    }
    for (status, codes) in by_status {
        let listed: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
        responses = responses.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(listed.join(", "))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Error")))
                        .build(),
                )
                .build(),
        );
    }
    op.responses(responses.build()).build()
}

/// The whole document for `routes`, and the routes nobody described.
pub fn document(routes: &[MountedRoute]) -> (OpenApi, Vec<MountedRoute>) {
    let mut paths = Paths::new();
    let mut undescribed = Vec::new();
    for route in routes {
        let Some(doc) = describe(route) else {
            undescribed.push(route.clone());
            continue;
        };
        let scope = ["session", "redis", "jwt"]
            .contains(&doc.tag)
            .then_some(doc.tag);
        let method = match route.method {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "DELETE" => HttpMethod::Delete,
            "PUT" => HttpMethod::Put,
            _ => HttpMethod::Patch,
        };
        let op = operation(route, &doc, scope);
        paths.add_path_operation(&route.path, vec![method], op);
    }
    let mut api = Schemas::openapi();
    api.paths = paths;
    api.info = utoipa::openapi::InfoBuilder::new()
        .title("authlab")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(INFO))
        .build();
    if let Some(components) = api.components.as_mut() {
        components.add_security_scheme(
            "cookie",
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
            "bearer",
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
            .name("service")
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

/// The document's introduction: the error shape and every code.
const INFO: &str = "One login / who-am-I / logout API over three authentication backends: \
    `/session` (cookie), `/redis` (opaque bearer token), `/jwt` (signed bearer token). The \
    session scope has no refresh, revoke or introspect routes.\n\n\
    Every error is `{\"error\": \"<code>\", \"message\": \"<text>\"}` with \
    `Cache-Control: no-store`; the code is stable, the message is for people. The codes: \
    `malformed_json` 400, `invalid_request` 400, `missing_credentials` 401, `invalid_token` 401, \
    `token_expired` 401, `token_revoked` 401, `refresh_token_reused` 401, \
    `invalid_credentials` 401, `invalid_client` 401, `csrf_rejected` 403, `cors_rejected` 403, \
    `session_not_found` 404, `not_found` 404, `method_not_allowed` 405, \
    `username_taken` 409, `payload_too_large` 413, `unsupported_media_type` 415, \
    `invalid_field` 422, `too_many_attempts` 429, `internal_error` 500, `unsupported` 501, \
    `backend_unavailable` 503, `not_ready` 503.";

/// The document as JSON, built once from the routes the app mounted.
fn document_json() -> &'static [u8] {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    JSON.get_or_init(|| {
        let (api, undescribed) = document(routes::mounted_routes());
        for route in &undescribed {
            tracing::warn!(method = route.method, path = %route.path, "a mounted route has no OpenAPI description");
        }
        match serde_json::to_vec(&api) {
            Ok(mut json) => {
                json.push(b'\n');
                json
            }
            Err(err) => {
                tracing::error!(error = %err, "the OpenAPI document did not serialize");
                Vec::new()
            }
        }
    })
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> Result<HttpResponse, ApiError> {
    let json = document_json();
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

/// `GET /docs/{file}`: a file of the bundled Swagger UI, with its own CSP.
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;
    use authlab_core::AuthError;

    /// Fails to compile when `ApiError` gets a variant: then add its code to [`ERRORS`].
    fn every_variant(err: &ApiError) {
        match err {
            ApiError::Unauthenticated { .. }
            | ApiError::InvalidCredentials
            | ApiError::UsernameTaken
            | ApiError::InvalidField { .. }
            | ApiError::MalformedJson(_)
            | ApiError::PayloadTooLarge
            | ApiError::UnsupportedMediaType
            | ApiError::InvalidRequest(_)
            | ApiError::NotFound
            | ApiError::SessionNotFound
            | ApiError::MethodNotAllowed
            | ApiError::Unavailable { .. }
            | ApiError::NotReady(_)
            | ApiError::TooManyAttempts { .. }
            | ApiError::CsrfRejected
            | ApiError::CorsRejected(_)
            | ApiError::InvalidClient
            | ApiError::Internal(_) => {}
        }
    }

    #[test]
    fn every_code_of_the_error_mapping_is_listed_with_its_status() {
        use crate::error::Challenge;
        use crate::readiness::{DependencyState, Readiness};
        let unauthenticated = |cause| ApiError::Unauthenticated {
            cause,
            challenge: Challenge::None,
        };
        let errors = vec![
            unauthenticated(AuthError::Missing),
            unauthenticated(AuthError::Invalid),
            unauthenticated(AuthError::Expired),
            unauthenticated(AuthError::Revoked),
            unauthenticated(AuthError::Reused),
            unauthenticated(AuthError::Unsupported),
            unauthenticated(AuthError::Unavailable("down".into())),
            unauthenticated(AuthError::Ambiguous),
            ApiError::CsrfRejected,
            ApiError::CorsRejected(actix_cors::CorsError::MissingOrigin),
            ApiError::InvalidClient,
            ApiError::InvalidCredentials,
            ApiError::UsernameTaken,
            ApiError::InvalidField {
                field: "username",
                reason: "empty".into(),
            },
            ApiError::MalformedJson("x".into()),
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
            ApiError::InvalidRequest("x".into()),
            ApiError::NotFound,
            ApiError::SessionNotFound,
            ApiError::MethodNotAllowed,
            ApiError::Unavailable {
                dependency: "Redis",
                source: "down".into(),
            },
            ApiError::NotReady(Readiness {
                redis: DependencyState::Unavailable,
                database: DependencyState::Ok,
            }),
            ApiError::TooManyAttempts {
                retry_after: std::time::Duration::from_secs(1),
            },
            ApiError::Internal("x".into()),
        ];
        let mut seen: Vec<(&str, u16)> = errors
            .iter()
            .map(|e| {
                every_variant(e);
                (e.code(), e.status_code().as_u16())
            })
            .collect();
        seen.sort();
        seen.dedup();
        let mut listed: Vec<(&str, u16)> = ERRORS.iter().map(|(c, s, _)| (*c, *s)).collect();
        listed.sort();
        assert_eq!(seen, listed);
        for (code, status, _) in ERRORS {
            assert!(
                INFO.contains(&format!("`{code}` {status}")),
                "{code} is missing from the document's introduction"
            );
        }
    }
}
