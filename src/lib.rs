//! authlab: server-side sessions, opaque Redis tokens and JWTs behind one actix-web service.
//!
//! This crate is the *transport* half of authlab: it owns HTTP (routes, cookies, headers, status
//! codes) and wires the backend crates together. The backends themselves live in `crates/` and
//! know nothing of HTTP.
//!
//! # Reading order
//! `src/` reads bottom-up: every file imports only files above it in this list, never one below
//! (`src/import_graph.rs` is a test that fails on any import circle, and prints this order with
//! `cargo test -p authlab --lib reading_order -- --nocapture`).
//!
//! 1. The bottom: [`backend_kind`] (the backend set, named once), [`client_address`] (who sent a
//!    request), [`json`], [`telemetry`], [`middleware::headers`], which import nothing of the
//!    server; [`config`], the one [`config::Settings`] type (flags over `AUTHLAB_*` variables over
//!    defaults), and [`readiness`] (what `/readyz` and `/livez` report), which import only those.
//! 2. [`error`]: every error the API answers, mapped to a status code in exactly one place;
//!    [`audit`]: the audit events (`authlab::audit`); [`metrics`]: Prometheus metrics at
//!    `/metrics`, handed what they watch; [`introspection`]: who may call RFC 7662
//!    introspection.
//! 3. [`throttle`]: login throttling shared by every instance (counted in Redis, with an
//!    in-process stand-in); [`transport`]: where a credential is found in a request (cookie,
//!    `Authorization`, query); [`middleware`]: the HTTP defences (security headers, CORS, CSRF).
//! 4. [`routes`]: the handlers, written once and mounted under `/session`, `/redis` and `/jwt`
//!    (their own order: `routes::mount` and `routes::mounted`, then the handler files, then the
//!    router); [`openapi`]: the OpenAPI 3.1 document at `/openapi.json` and Swagger UI at
//!    `/docs/`.
//! 5. [`backends`]: the one place each backend is built from the settings, and the
//!    [`backends::BackendSet`] that knows each backend's type (startup, `authlab compare` and the
//!    benches all build them here);
//! 6. [`startup`]: [`startup::Application`], which builds and runs the service (tests use it too).
//!
//! The routes a backend gets follow from its type: the capability traits of `authlab-core`
//! ([`authlab_core::Authenticator`], [`authlab_core::SessionRegistry`],
//! [`authlab_core::TokenEndpoints`]). The two token backends share one refresh-token family store
//! ([`authlab_core::RefreshFamilies`], kept in Redis by `authlab-redis`).
//!
//! This package serves requests and nothing else. The `authlab` command is `crates/authlab-cli`;
//! `authlab compare`, which measures this server, is `crates/authlab-compare` and depends on this
//! crate, never the other way round.
#![deny(missing_docs)]

pub mod audit;
pub mod backend_kind;
pub mod backends;
pub mod client_address;
pub mod config;
pub mod error;
pub mod introspection;
pub mod json;
pub mod jwks_fetch;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod readiness;
pub mod routes;
pub mod startup;
pub mod telemetry;
pub mod throttle;
pub mod transport;

#[cfg(test)]
mod import_graph;
